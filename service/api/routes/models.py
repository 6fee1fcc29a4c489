"""The model registry: list, card, predict and embed (one or many images of any sizes)."""

from __future__ import annotations

import base64
import binascii
import inspect
import time

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from poolops_service.api import bodies
from poolops_service.api.deps import EngineDep, app_state, reservation
from poolops_service.api.errors import responses
from poolops_service.api.schemas import (
    RESIZE_DOC, EmbedRequest, EmbedResponse, ModelInfo, ModelList, PredictRequest, PredictResponse,
)
from poolops_service.codecs import images
from poolops_service.engine import Engine
from poolops_service.engine.errors import BadInput, NotFound
from poolops_service.engine.models import ModelRunner, top_k

router = APIRouter(prefix="/v1/models", tags=["models"])


class DirectRoute(APIRoute):
    """A route whose endpoint is ``async (name: str, request: Request) -> Response`` and
    reads its own body: called straight with the path's ``name``, without FastAPI's
    per-request dependency solving and response handling (it has nothing to solve and its
    answer is a ready ``Response``). Everything else is the APIRoute's: matching, the
    405s, the app's error handlers, and its OpenAPI entry (built from the same
    declarations). Refuses an endpoint that declares anything more, which this call would
    skip."""

    def __init__(self, path: str, endpoint, **kw):
        params = list(inspect.signature(endpoint).parameters.values())
        if [(p.name, p.annotation) for p in params] not in ([("name", str), ("request", Request)],
                                                            [("name", "str"), ("request", "Request")]):
            raise ValueError(f"DirectRoute takes an endpoint (name: str, request: Request), got {endpoint.__name__}"
                             f"{inspect.signature(endpoint)}")
        if kw.get("dependencies"):
            raise ValueError("DirectRoute runs no dependencies: declare none")
        super().__init__(path, endpoint, **kw)

    def get_route_handler(self):
        endpoint = self.endpoint

        async def handler(request: Request) -> Response:
            return await endpoint(request.path_params["name"], request)

        return handler


def model_info(engine: Engine, name: str) -> ModelInfo:
    entry = engine.registry.get(name)
    if entry is None:
        raise NotFound(f"unknown model {name!r}; registered: {', '.join(engine.registry) or 'none'}", model=name)
    status = engine.model_status(name)
    return ModelInfo(
        name=name, available=status["available"], reason=status.get("reason"), provider=status.get("provider"),
        card=entry.card.model_dump() if entry.card else None,
    )


@router.get("", response_model=ModelList, summary="The registry: every model with its card and status")
async def list_models(engine: EngineDep) -> ModelList:
    return ModelList(models=[model_info(engine, n) for n in engine.registry])


@router.get("/{name}", response_model=ModelInfo, responses=responses(404), summary="One model's card and status")
async def get_model(name: str, engine: EngineDep) -> ModelInfo:
    return model_info(engine, name)


_RESIZE = {"type": "string", "enum": ["card", "none"], "default": "card", "description": RESIZE_DOC}
_FORM = bodies.multipart_schema(
    {
        "files": {"type": "array", "items": {"type": "string", "format": "binary"},
                  "description": "one or more image files, any sizes"},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5},
        "resize": _RESIZE,
    },
    ["files"],
)
_EMBED_FORM = bodies.multipart_schema(
    {"files": _FORM["properties"]["files"], "resize": _RESIZE}, ["files"]
)


async def _images(request: Request, engine: Engine, settings, model_cls) -> tuple[list, dict]:
    """(list of (name, bytes), the request's other fields) from JSON or multipart."""
    mt = bodies.kind_of(request, (bodies.JSON, bodies.MULTIPART))
    if mt == bodies.JSON:
        req = await bodies.json_body(request, model_cls, engine.offload, settings.max_json_elements)

        def unpack() -> list:
            out = []
            for i, im in enumerate(req.images):
                try:
                    out.append((im.name, base64.b64decode(im.b64, validate=True)))
                except (binascii.Error, ValueError):
                    raise BadInput(f"images.{i}.b64 is not valid base64") from None
            return out

        size = sum(len(im.b64) for im in req.images)
        return await engine.offload(unpack, large=size > bodies.INLINE_BYTES), req.model_dump(exclude={"images"})
    form = await bodies.form_body(request, max_files=settings.max_batch_images + 1)
    out = await bodies.files(form, "files")
    extra = {}
    if "top_k" in form:
        try:
            extra["top_k"] = int(str(form["top_k"]))
        except ValueError:
            raise BadInput(f"top_k must be an integer, got {form['top_k']!r}") from None
        if not 1 <= extra["top_k"] <= 1000:
            raise BadInput("top_k must be within 1..1000")
    if "resize" in form:
        extra["resize"] = str(form["resize"]).strip()
        if extra["resize"] not in ("card", "none"):
            raise BadInput(f"resize must be 'card' (the card's size policy) or 'none', got {extra['resize']!r}")
    return out, extra


async def _tensors(
    engine: Engine, runner: ModelRunner, files: list, settings, res, resize: bool = True
) -> list[tuple[np.ndarray, tuple[int, int]]]:
    """Each image as the model's input [C, H, W] (resized by the card's size policy unless
    ``resize`` is off) with its original (H, W); every size checked from the headers first."""
    if not files:
        raise BadInput("send at least one image (form field 'files', or 'images' in JSON)")
    if len(files) > settings.max_batch_images:
        raise BadInput(
            f"{len(files)} images in one request, more than the limit {settings.max_batch_images} "
            "(POOLOPS_MAX_BATCH_IMAGES): split the request"
        )
    c = runner.card.input.channels
    opened = []
    pixels = 0
    for i, (fname, data) in enumerate(files):  # headers only: sizes refused before any decoding
        what = f"image {i} ({fname or 'unnamed'})"
        im = images.open_image(data, settings.max_image_pixels, what)
        h, w = images.oriented_size(im)
        try:  # the size fed to the model (after the policy) is what the card's limits bound
            h2, w2 = runner.target_size(h, w, resize)
        except BadInput as e:
            raise BadInput(f"{what}: {e.message}", model=runner.name) from None
        opened.append((im, what, ((h, w), (h2, w2))))
        pixels += max(h * w, h2 * w2)  # the decoded and the resized pixels exist together for a moment

    def decode_all() -> list[tuple[np.ndarray, tuple[int, int]]]:
        return [(runner.preprocess_image(images.to_image(im, c, what), resize, sizes), sizes[0])
                for im, what, sizes in opened]

    res.add(2 * 4 * c * pixels, "decoding its images")  # decoded (or resized) pixels and the model's input
    return await engine.offload(decode_all, large=pixels > settings.inline_decode_pixels)


async def _run(request: Request, engine: Engine, name: str, settings, model_cls):
    """Read, decode and infer the request's images: (the model's runner, per image (name,
    input [C, H, W], original (H, W), output), the request's other fields with the size
    policy applied, the start time)."""
    t0 = time.perf_counter()
    runner = engine.runner(name)  # 404 / 503 before reading images
    files, extra = await _images(request, engine, settings, model_cls)
    resize = extra.get("resize", "card") != "none"
    done = await _tensors(engine, runner, files, settings, reservation(request), resize)
    outs = await engine.infer_images(name, [x for x, _ in done], runner=runner)
    extra["size_policy"] = runner.describe_policy(resize)
    return runner, [(f[0], x, hw, o) for f, (x, hw), o in zip(files, done, outs)], extra, t0


def _json(body: dict) -> Response:
    """The answer, encoded once by orjson (NaN and infinities as null, as pydantic writes
    them): the route's ``response_model`` documents it, and FastAPI passes a ``Response``
    through without validating and encoding it a second time."""
    return Response(orjson.dumps(body), media_type="application/json")


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1e3, 3)


_DOC = (
    "One or many images of any sizes, as multipart files or JSON base64. Each is resized by the model card's "
    "size_policy (e.g. shorter side into [lo, hi], bilinear, aspect kept, no crop) unless resize=none; the "
    "size fed to the model must lie within the card's input limits. Each result reports original_size, "
    "input_size (fed to the model) and the size_policy applied."
)


async def predict(name: str, request: Request) -> Response:
    engine, settings = app_state(request)
    runner, done, extra, t0 = await _run(request, engine, name, settings, PredictRequest)
    k = extra.get("top_k", 5)
    pol = extra["size_policy"]
    results = [
        {"name": f, "input_size": list(x.shape[1:]), "original_size": list(hw), "size_policy": pol,
         "top": top_k(runner.card, o.logits, k)}
        for f, x, hw, o in done
    ]
    return _json({"model": name, "provider": runner.provider, "results": results, "timing_ms": _ms(t0)})


router.add_api_route(
    "/{name}/predict",
    predict,
    methods=["POST"],
    route_class_override=DirectRoute,
    response_model=PredictResponse,
    summary="Classify images (top-k labels and probabilities per image)",
    description=_DOC,
    openapi_extra=bodies.body_doc(PredictRequest, _FORM, "JSON (PredictRequest) or multipart files"),
    responses=responses(400, 404, 413, 415, 422, 503),
)


@router.post(
    "/{name}/embed",
    response_model=EmbedResponse,
    summary="The fixed-length pooled feature vector of each image",
    description=_DOC,
    openapi_extra=bodies.body_doc(EmbedRequest, _EMBED_FORM, "JSON (EmbedRequest) or multipart files"),
    responses=responses(400, 404, 413, 415, 422, 503),
)
async def embed(name: str, request: Request) -> Response:
    engine, settings = app_state(request)
    card = engine.runner(name).card
    if "embedding" not in card.outputs:  # before any work: the graph has none to give
        raise BadInput(f"model {name!r} has no embedding output (its outputs: {card.outputs}); "
                       f"use POST /v1/models/{name}/predict")
    runner, done, extra, t0 = await _run(request, engine, name, settings, EmbedRequest)
    results = [
        {"name": f, "input_size": list(x.shape[1:]), "original_size": list(hw), "size_policy": extra["size_policy"],
         "embedding": o.embedding.astype(float).tolist()}
        for f, x, hw, o in done
    ]
    return _json({"model": name, "provider": runner.provider, "dim": len(results[0]["embedding"]),
                  "results": results, "timing_ms": _ms(t0)})
