"""``create_app(settings)``: wires settings, engine, routers, errors, limits, metrics and UI."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from importlib.metadata import version

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from poolops.registry import list_ops
from poolops_service.api import auth, errors
from poolops_service.api.middleware import Guard
from poolops_service.api.routes import health, info, models, ops, v2
from poolops_service.config import Settings
from poolops_service.engine import Engine
from poolops_service.metrics import Metrics

log = logging.getLogger("poolops.service")

DOCS_ASSETS = "/docs-assets"  # Swagger UI and ReDoc files (fastapi-offline's copies)

DESCRIPTION = """Every CNN pooling op, served by ONNX Runtime: run ops (forward, indices, backward),
classify and embed images of any size with the model registry, and the Open Inference Protocol v2."""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()
    engine = Engine(settings, observer=metrics)  # refuses CUDA-required settings without CUDA

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # load and warm up in the background: /healthz answers meanwhile, /readyz says 503
        loading = asyncio.create_task(asyncio.to_thread(engine.load))
        loading.add_done_callback(lambda _: _say_ready(engine, settings))
        app.state.loading = loading
        grpc = None
        if settings.grpc_port:  # same process, same event loop, same engine and batchers
            from poolops_service import grpc_server

            grpc = await grpc_server.start(engine, settings)
        poller = None
        if settings.repository_poll_s > 0:
            poller = asyncio.create_task(engine.repository.poll_forever(settings.repository_poll_s))
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
            if grpc is not None:
                await grpc.stop(settings.shutdown_grace_s)
            engine.close()

    # /docs and /redoc with Swagger UI's and ReDoc's files served from the fastapi-offline
    # package, not a CDN: the API docs work with no internet
    app = FastAPIOffline(
        title="poolops", version=version("poolops"), description=DESCRIPTION, lifespan=lifespan,
        static_url=DOCS_ASSETS,
    )  # a proxy prefix (settings.root_path) is the server's: `poolops serve` hands it to uvicorn
    app.state.settings = settings
    app.state.engine = engine
    errors.install(app)
    for r in (health.router, info.router, ops.router, models.router, v2.router):
        app.include_router(r)
    metrics.instrument(app, engine)
    _document(app, engine)
    if settings.ui:
        _mount_ui(app, engine, settings)
    # no key, no work; /ui checks its own (Gradio's login, service/ui/guard.py)
    gate = auth.install(app, settings, delegated=["/ui"] if settings.ui else [])
    # around all: request ids, the key, the memory budget, body deadline and size, JSON 500s
    app.add_middleware(Guard, budget=engine.budget, max_bytes=settings.max_body_bytes,
                       body_timeout_s=settings.body_timeout_s, gate=gate)
    return app


def _say_ready(engine: Engine, settings: Settings) -> None:
    """The last start-up line: where to go (or why not)."""
    if engine.phase != "ready":
        log.error("not ready: %s", "; ".join(engine.reasons()) or engine.phase)
        return
    where = f"http://{settings.host}:{settings.port}{settings.root_path.rstrip('/')}"
    log.info("ready at %s", f"{where}/ui (API docs: {where}/docs)" if settings.ui else f"{where}/docs")
    if engine.reasons():
        log.warning("but /readyz says 503: %s", "; ".join(engine.reasons()))


def _document(app: FastAPI, engine: Engine) -> None:
    """Complete the OpenAPI document: the JSON bodies that routes parse themselves (they
    also take multipart, so FastAPI cannot declare them) go into the components their
    ``$ref`` points to, and ``{name}`` lists the registered ops and models."""
    from fastapi.openapi.utils import get_openapi

    from poolops_service.api.schemas import (
        EmbedRequest, OpRequest, PredictRequest, V2InferRequest, V2RepositoryIndexRequest, V2RepositoryRequest,
    )

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        comps = doc.setdefault("components", {}).setdefault("schemas", {})
        for model in (OpRequest, PredictRequest, EmbedRequest, V2InferRequest, V2RepositoryIndexRequest,
                      V2RepositoryRequest):
            s = model.model_json_schema(ref_template="#/components/schemas/{model}")
            comps.update(s.pop("$defs", {}))
            comps[model.__name__] = s
        ops, models = list_ops(), sorted(engine.registry)
        for path, item in doc["paths"].items():
            # a repository load takes any folder name, not only the models served now
            names = ops if path.startswith("/v1/ops/") else models if (
                "/models/{name}" in path and not path.startswith("/v2/repository/")) else None
            for op in item.values():
                for param in op.get("parameters", []):
                    if param["name"] == "name" and names:
                        param["schema"] = {"type": "string", "enum": names}
        if engine.phase == "ready":  # the model list is complete: keep the document
            app.openapi_schema = doc
        return doc

    app.openapi = openapi


def _mount_ui(app: FastAPI, engine: Engine, settings: Settings) -> None:
    # after the routers: a mount matches its whole prefix
    from poolops_service.ui import mount_ui

    mount_ui(app, engine, settings)
