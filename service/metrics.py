"""Prometheus metrics: HTTP requests (the metrics of prometheus-fastapi-instrumentator's
``default()``, recorded by :class:`HttpMetrics`) plus inference latency by model/op and
provider, batch sizes and queue depth, on a per-app registry."""

from __future__ import annotations

from collections import OrderedDict
from timeit import default_timer

from fastapi.responses import PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, Summary, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_fastapi_instrumentator.routing import get_route_name
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

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
        app.add_middleware(HttpMetrics, registry=self.registry, excluded={"/metrics"})
        registry = self.registry

        @app.get("/metrics", tags=["health"], summary="Prometheus metrics", response_class=PlainTextResponse,
                 responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}})
        def metrics() -> Response:
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


HIGHR_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 7.5, 10, 30, 60)
LOWR_BUCKETS = (0.1, 0.5, 1)
HANDLERS_CACHED = 1024


class HttpMetrics:
    """Pure ASGI middleware recording what prometheus-fastapi-instrumentator's ``default()``
    records (same names, labels and buckets): ``http_requests_total`` (method, status as
    ``2xx``.., handler), ``http_request_size_bytes`` and ``http_response_size_bytes``
    (handler; Content-Length), ``http_request_duration_highr_seconds`` and
    ``http_request_duration_seconds`` (method, handler). The handler is the route template
    (``/v1/models/{name}/predict``; ``none`` for a path no route has), found by the
    instrumentator's own ``get_route_name`` once per (method, path) and kept for the last
    ``HANDLERS_CACHED`` of them: its route walk is the largest part of the instrumentator's
    cost per request, and paths repeat."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry, excluded: set[str] = frozenset()):
        self.app = app
        self.excluded = excluded
        self._handlers: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self.total = Counter("http_requests_total", "Total number of requests by method, status and handler.",
                             ("method", "status", "handler"), registry=registry)
        self.in_size = Summary(
            "http_request_size_bytes", "Content length of incoming requests by handler. Only value of header is "
            "respected. Otherwise ignored. No percentile calculated. ", ("handler",), registry=registry)
        self.out_size = Summary(
            "http_response_size_bytes", "Content length of outgoing responses by handler. Only value of header is "
            "respected. Otherwise ignored. No percentile calculated. ", ("handler",), registry=registry)
        self.highr = Histogram(
            "http_request_duration_highr_seconds", "Latency with many buckets but no API specific labels. Made for "
            "more accurate percentile calculations. ", buckets=HIGHR_BUCKETS, registry=registry)
        self.lowr = Histogram(
            "http_request_duration_seconds", "Latency with only few buckets by handler. Made to be only used if "
            "aggregation by handler is important. ", ("method", "handler"), buckets=LOWR_BUCKETS, registry=registry)

    def handler(self, scope: Scope) -> str:
        key = (scope["method"], scope.get("root_path", ""), scope["path"])
        name = self._handlers.get(key)
        if name is None:
            name = get_route_name(HTTPConnection(scope), should_include_root_path=False) or "none"
            self._handlers[key] = name
            if len(self._handlers) > HANDLERS_CACHED:
                self._handlers.popitem(last=False)
        return name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = default_timer()
        handler = self.handler(scope)
        if handler in self.excluded:
            return await self.app(scope, receive, send)
        status, out_size = 500, 0

        async def send_wrapper(msg: Message) -> None:
            nonlocal status, out_size
            if msg["type"] == "http.response.start":
                status = msg["status"]
                for k, v in msg.get("headers", ()):
                    if k == b"content-length":
                        out_size = int(v)
            await send(msg)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            duration = max(default_timer() - start, 0.0)
            method = scope["method"]
            in_size = 0
            for k, v in scope.get("headers", ()):
                if k == b"content-length":
                    in_size = int(v) if v.isdigit() else 0
            self.total.labels(method, f"{str(int(status))[0]}xx", handler).inc()
            self.in_size.labels(handler).observe(in_size)
            self.out_size.labels(handler).observe(out_size)
            self.highr.observe(duration)
            self.lowr.labels(method, handler).observe(duration)
