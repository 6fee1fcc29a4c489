"""Prometheus metrics: HTTP requests (prometheus-fastapi-instrumentator) plus inference
latency by model/op and provider, batch sizes and queue depth, on a per-app registry."""

from __future__ import annotations

from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_fastapi_instrumentator import Instrumentator

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    """Implements the engine's ``Observer``; ``instrument(app)`` adds ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.inference_seconds = Histogram(
            "poolops_inference_seconds", "ONNX Runtime time per run (a model batch or an op request)",
            ["kind", "name", "provider"], buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.batch_size = Histogram(
            "poolops_batch_size", "images per model batch", ["model"], buckets=BATCH_BUCKETS, registry=self.registry
        )
        self._engine = None
        self.registry.register(self)  # the gauges below are read from the engine at scrape time

    def describe(self):
        return []

    def collect(self):
        e = self._engine
        if e is None:
            return
        depth = GaugeMetricFamily("poolops_queue_depth", "images waiting per model", labels=["model"])
        for m, d in e.queue_depths().items():
            depth.add_metric([m], d)
        yield depth
        yield GaugeMetricFamily("poolops_ready", "1 when /readyz is 200", value=1 if e.ready else 0)
        sessions = GaugeMetricFamily(
            "poolops_sessions", "ONNX Runtime sessions by the provider they actually got", labels=["provider"]
        )
        counts: dict[str, int] = {}
        for p in [r.provider for r in e.runners.values()] + [s.provider for s in e.ops.cache.sessions()]:
            counts[p] = counts.get(p, 0) + 1
        for p, n in counts.items():
            sessions.add_metric([p], n)
        yield sessions

    def inference(self, kind: str, name: str, provider: str, seconds: float) -> None:
        self.inference_seconds.labels(kind, name, provider).observe(seconds)

    def batch(self, model: str, size: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(size)

    def instrument(self, app, engine) -> None:
        self._engine = engine
        inst = Instrumentator(registry=self.registry, excluded_handlers=["/metrics"], should_group_untemplated=True)
        inst.instrument(app)
        registry = self.registry

        @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=PlainTextResponse,
                 responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}})
        def metrics() -> Response:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
