"""Prometheus metrics: HTTP requests (prometheus-fastapi-instrumentator) plus inference
latency by model/op and provider, batch sizes and queue depth, on a per-app registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram
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
        self.queue_depth = Gauge("poolops_queue_depth", "images waiting per model", ["model"], registry=self.registry)
        self.ready = Gauge("poolops_ready", "1 when /readyz is 200", registry=self.registry)
        self.sessions = Gauge(
            "poolops_sessions", "ONNX Runtime sessions by the provider they actually got", ["provider"],
            registry=self.registry,
        )

    def inference(self, kind: str, name: str, provider: str, seconds: float) -> None:
        self.inference_seconds.labels(kind, name, provider).observe(seconds)

    def batch(self, model: str, size: int, seconds: float) -> None:
        self.batch_size.labels(model).observe(size)

    def refresh(self, engine) -> None:
        """Gauges read at scrape time."""
        for m, d in engine.queue_depths().items():
            self.queue_depth.labels(m).set(d)
        self.ready.set(1 if engine.ready else 0)
        counts: dict[str, int] = {}
        for r in engine.runners.values():
            counts[r.provider] = counts.get(r.provider, 0) + 1
        for s in list(engine.ops.cache._items.values()):
            counts[s.provider] = counts.get(s.provider, 0) + 1
        for p, n in counts.items():
            self.sessions.labels(p).set(n)

    def instrument(self, app, engine) -> None:
        inst = Instrumentator(registry=self.registry, excluded_handlers=["/metrics"], should_group_untemplated=True)
        inst.instrument(app)

        @app.middleware("http")
        async def _refresh(request, call_next):  # gauges are current when scraped
            if request.url.path == "/metrics":
                self.refresh(engine)
            return await call_next(request)

        inst.expose(app, endpoint="/metrics", include_in_schema=True, tags=["health"])
