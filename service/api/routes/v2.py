"""Open Inference Protocol v2 (KServe / Triton HTTP), so their clients work unchanged.

JSON tensors and Triton's binary tensor extension (``Inference-Header-Content-Length``:
a JSON header followed by raw little-endian tensor bytes) both work, in and out.
Models are the registry's; inputs ``x`` (FP32 [N, C, H, W]) and, for padding-invariant
models, ``valid`` (INT64 [N, 2]); outputs ``logits`` and ``embedding``. What the protocol
means (batching, classification, statistics) is ``poolops_service.api.oip``'s, shared with
gRPC; Triton's repository extension (index, load, unload) is ``Engine.repository``'s.

Size policy: ``/v2`` takes ready tensors, so a model card's ``size_policy`` (which
``/v1/models/{name}/predict`` and ``/embed``, the UI and ``poolops experiments`` apply) cannot
apply here. Clients apply it themselves before making ``x``: the model metadata's
``parameters.size_policy`` says which (``{"shorter_side": [lo, hi]}``: resize bilinear, aspect
kept, no crop, so that the shorter side lies in [lo, hi], a side beyond ``max_size`` scaling to
fit instead; null: no resizing); ``models/size_policy.py`` (``apply``) is the reference
implementation, which the server's own routes use. ``x``'s H and W are checked against the
card's limits as sent.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from poolops_service.api import bodies, oip
from poolops_service.api.deps import EngineDep, app_state, reservation
from poolops_service.api.errors import responses
from poolops_service.api.routes.health import readiness
from poolops_service.api.schemas import (
    Live, Ready, V2InferRequest, V2InferResponse, V2ModelMetadata, V2RepositoryIndexRequest, V2RepositoryModel,
    V2RepositoryRequest, V2ServerMetadata, V2Statistics, V2Tensor,
)
from poolops_service.codecs.tensors import OIP_DTYPES, OIP_NAMES, element_count, from_oip
from poolops_service.engine import Engine
from poolops_service.engine.errors import BadInput, NotFound

router = APIRouter(prefix="/v2", tags=["open inference protocol v2"])
HEADER_LEN = "inference-header-content-length"


@router.get("", response_model=V2ServerMetadata, summary="Server metadata")
async def server_metadata() -> V2ServerMetadata:
    return oip.server_metadata()


@router.get("/health/live", response_model=Live, summary="Server live")
async def live() -> Live:
    return Live()


@router.get("/health/ready", response_model=Ready, responses={503: {"model": Ready}}, summary="Server ready")
async def ready(engine: EngineDep):
    ok, body = readiness(engine)
    return JSONResponse(body, status_code=200 if ok else 503)


# before /models/{name}: "stats" is no model name here
@router.get("/models/stats", response_model=V2Statistics, responses=responses(404, v2=True),
            summary="Statistics of every model (Triton's statistics extension)")
async def all_statistics(engine: EngineDep) -> dict:
    return oip.statistics(engine)


@router.get("/models/{name}", response_model=V2ModelMetadata, responses=responses(404, 503, v2=True), summary="Model metadata")
async def model_metadata(name: str, engine: EngineDep) -> V2ModelMetadata:
    return oip.model_metadata(engine, name)


@router.get("/models/{name}/versions/{model_version}", response_model=V2ModelMetadata,
            responses=responses(404, 503, v2=True), summary="Model metadata (version 1 only)")
async def model_metadata_v(name: str, model_version: str, engine: EngineDep) -> V2ModelMetadata:
    _version(model_version)
    return oip.model_metadata(engine, name)


@router.get("/models/{name}/config", responses={200: {"content": {"application/json": {}}}, **responses(404, 503, v2=True)},
            summary="Model configuration, as Triton's (max_batch_size: images per batch this server forms)")
async def model_config(name: str, engine: EngineDep) -> dict:
    return oip.model_config(engine, name)


@router.get("/models/{name}/versions/{model_version}/config",
            responses={200: {"content": {"application/json": {}}}, **responses(404, 503, v2=True)},
            summary="Model configuration (version 1 only)")
async def model_config_v(name: str, model_version: str, engine: EngineDep) -> dict:
    _version(model_version)
    return oip.model_config(engine, name)


def _version(v: str) -> None:
    if v != "1":
        raise NotFound(f"model version {v!r} does not exist; each model has version '1'")


async def _ready(name: str, engine: Engine):
    ok = oip.model_ready(engine, name)
    return JSONResponse({"name": name, "ready": ok}, status_code=200 if ok else 503)


@router.get("/models/{name}/ready", summary="Model ready (200) or not (503)",
            responses={200: {"content": {"application/json": {}}}, **responses(404, 503, v2=True)})
async def model_ready(name: str, engine: EngineDep):
    return await _ready(name, engine)


@router.get("/models/{name}/versions/{model_version}/ready", summary="Model ready (version 1 only)",
            responses={200: {"content": {"application/json": {}}}, **responses(404, 503, v2=True)})
async def model_ready_v(name: str, model_version: str, engine: EngineDep):
    _version(model_version)
    return await _ready(name, engine)


@router.get("/models/{name}/stats", response_model=V2Statistics, responses=responses(404, v2=True),
            summary="Model statistics (Triton's statistics extension)")
async def model_statistics(name: str, engine: EngineDep) -> dict:
    return oip.statistics(engine, name)


@router.get("/models/{name}/versions/{model_version}/stats", response_model=V2Statistics,
            responses=responses(404, v2=True), summary="Model statistics (version 1 only)")
async def model_statistics_v(name: str, model_version: str, engine: EngineDep) -> dict:
    _version(model_version)
    return oip.statistics(engine, name)


async def _parse(request: Request, max_numbers: int) -> tuple[V2InferRequest, bytes]:
    body = await request.body()
    hl = request.headers.get(HEADER_LEN)
    if hl is not None:
        try:
            n = int(hl)
        except ValueError:
            raise BadInput(f"{HEADER_LEN} must be an integer, got {hl!r}") from None
        if not 0 < n <= len(body):
            raise BadInput(f"{HEADER_LEN} {n} is outside the body of {len(body)} bytes")
        head, rest = body[:n], body[n:]
    else:
        head, rest = body, b""
    if not head:
        raise BadInput("the request body is empty: send an inference request (JSON)")
    bodies.check_numbers(head, max_numbers)  # big tensors come as binary data instead
    try:
        return V2InferRequest.model_validate_json(head), rest
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False, include_context=False)) from None


def _binary_size(t: V2Tensor) -> int | None:
    """``parameters.binary_data_size``: None when absent, else a byte count (an int >= 0)."""
    size = (t.parameters or {}).get("binary_data_size")
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BadInput(f"input {t.name}: parameters.binary_data_size must be a whole number of bytes (>= 0), "
                       f"got {size!r}")
    return size


def _inputs(req: V2InferRequest, binary: bytes, limit: int) -> dict[str, np.ndarray]:
    out, offset = {}, 0
    for t in req.inputs:
        what = f"input {t.name}"
        if t.name in out:
            raise BadInput(f"{what} is given twice")
        size = _binary_size(t)
        if size is not None:
            if t.datatype not in OIP_DTYPES:
                raise BadInput(f"{what}: datatype must be one of {list(OIP_DTYPES)}, got {t.datatype!r}")
            dt = np.dtype(OIP_DTYPES[t.datatype]).newbyteorder("<")
            n = element_count(t.shape, what, limit)
            if size != n * dt.itemsize or offset + size > len(binary):
                raise BadInput(f"{what}: binary_data_size {size} does not match shape {t.shape} of {t.datatype} "
                               f"({n * dt.itemsize} bytes), or goes past the {len(binary)} bytes sent")
            out[t.name] = np.frombuffer(binary[offset: offset + size], dtype=dt).reshape(t.shape)
            offset += size
        else:
            out[t.name] = from_oip(t.data, t.shape, t.datatype, what, limit)
    return out


def _wanted(req: V2InferRequest) -> list[oip.Wanted]:
    out = []
    for o in req.outputs or []:
        k = (o.parameters or {}).get(oip.CLASSIFICATION)
        out.append(oip.Wanted(o.name, 0 if k is None else oip.class_count(k, o.name)))
    return out


async def _infer(name: str, request: Request, engine: Engine, settings) -> Response:
    oip.servable_card(engine, name)  # 404 / 503 before reading the body
    with engine.track(name) as stat:
        req, binary = await _parse(request, settings.max_json_elements)
        tensors = _inputs(req, binary, settings.max_tensor_elements)
        x, valid = oip.check_inputs(engine, name, tensors, reservation(request))
        wanted = _wanted(req)
        stat.mark_input()
        outs = await oip.infer(engine, name, x, valid, wanted, stat)
        t0 = time.perf_counter()
        response = _answer(name, req, outs)
        stat.output_s = time.perf_counter() - t0
    return response


def _answer(name: str, req: V2InferRequest, outs: list[tuple[str, np.ndarray]]) -> Response:
    params = {o.name: o.parameters or {} for o in req.outputs or []}
    binary_all = bool((req.parameters or {}).get("binary_data_output", False))
    header: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for oname, a in outs:
        is_bytes = a.dtype == object
        entry: dict[str, Any] = {"name": oname, "shape": list(a.shape),
                                 "datatype": "BYTES" if is_bytes else OIP_NAMES[a.dtype]}
        if params.get(oname, {}).get("binary_data", binary_all):
            raw = oip.bytes_tensor(a) if is_bytes else np.ascontiguousarray(a, a.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = [v.decode() for v in a.reshape(-1)] if is_bytes else a.reshape(-1).tolist()
        header.append(entry)
    body = {"model_name": name, "model_version": "1", "outputs": header}
    if req.id is not None:
        body["id"] = req.id
    head = orjson.dumps(body)  # NaN and infinities as null (json.dumps refuses them in JSONResponse)
    if not chunks:
        return Response(head, media_type="application/json")
    return Response(head + b"".join(chunks), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(head))})


_INFER = dict(
    response_model=V2InferResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **responses(400, 404, 413, 422, 503, v2=True)},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/V2InferRequest"}}}}},
)


@router.post("/models/{name}/infer", summary="Inference (JSON tensors or the binary tensor extension)", **_INFER)
async def infer(name: str, request: Request):
    return await _infer(name, request, *app_state(request))


@router.post("/models/{name}/versions/{model_version}/infer", summary="Inference (version 1 only)", **_INFER)
async def infer_v(name: str, model_version: str, request: Request):
    _version(model_version)
    return await _infer(name, request, *app_state(request))


# ---- Triton's model repository extension ----------------------------------------------

async def _small_json(request: Request, model: type[BaseModel]) -> Any:
    """An optional small JSON body (tritonclient sends none, or ``{}``, or parameters)."""
    body = await request.body()
    if not body.strip():
        return model()
    if len(body) > 64 * 1024:
        raise BadInput(f"the body is {len(body)} bytes: a repository request is a small JSON object")
    try:
        return model.model_validate_json(body)
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False, include_context=False)) from None


_REPO_BODY = {"requestBody": {"required": False, "content": {"application/json": {"schema": {
    "$ref": "#/components/schemas/V2RepositoryRequest"}}}}}


@router.post("/repository/index", response_model=list[V2RepositoryModel], responses=responses(422, v2=True),
             summary="Every model folder and loaded model, with its state (Triton's repository extension)",
             openapi_extra={"requestBody": {"required": False, "content": {"application/json": {"schema": {
                 "$ref": "#/components/schemas/V2RepositoryIndexRequest"}}}}})
async def repository_index(request: Request, engine: EngineDep) -> list[dict]:
    req = await _small_json(request, V2RepositoryIndexRequest)
    return engine.repository.index(ready_only=bool(req.ready))


@router.post("/repository/models/{name}/load", responses={200: {"content": {"application/json": {}}},
                                                           **responses(400, 404, 422, 503, v2=True)},
             summary="Load (or reload) a model folder: checked, opened and warmed up before it serves; a folder "
                     "that fails its checks never replaces the model being served", openapi_extra=_REPO_BODY)
async def repository_load(name: str, request: Request, engine: EngineDep):
    oip.check_load_parameters((await _small_json(request, V2RepositoryRequest)).parameters)
    await engine.repository.load(name)
    return JSONResponse({})


@router.post("/repository/models/{name}/unload", responses={200: {"content": {"application/json": {}}},
                                                             **responses(400, 404, 422, 503, v2=True)},
             summary="Stop serving a model (requests already queued finish)", openapi_extra=_REPO_BODY)
async def repository_unload(name: str, request: Request, engine: EngineDep):
    await _small_json(request, V2RepositoryRequest)
    await engine.repository.unload(name)
    return JSONResponse({})
