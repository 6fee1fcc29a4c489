"""Open Inference Protocol v2 (KServe / Triton HTTP), so their clients work unchanged.

JSON tensors and Triton's binary tensor extension (``Inference-Header-Content-Length``:
a JSON header followed by raw little-endian tensor bytes) both work, in and out.
Models are the registry's; inputs ``x`` (FP32 [N, C, H, W]) and, for padding-invariant
models, ``valid`` (INT64 [N, 2]); outputs ``logits`` and ``embedding``.

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

import json
from importlib.metadata import version
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from fastapi.exceptions import RequestValidationError

from poolops_models import size_policy
from poolops_service.api import bodies
from poolops_service.api.deps import EngineDep, SettingsDep
from poolops_service.api.errors import responses
from poolops_service.api.routes.health import readiness
from poolops_service.api.schemas import (
    Live, Ready, V2InferRequest, V2InferResponse, V2RequestOutput, V2ModelMetadata, V2ServerMetadata, V2TensorMeta,
)
from poolops_service.codecs.tensors import OIP_DTYPES, OIP_NAMES, as_float32, element_count, from_oip, nonempty
from poolops_service.engine import Engine
from poolops_service.engine.errors import BadInput, NotFound, Unavailable

router = APIRouter(prefix="/v2", tags=["open inference protocol v2"])
HEADER_LEN = "inference-header-content-length"


@router.get("", response_model=V2ServerMetadata, summary="Server metadata")
async def server_metadata() -> V2ServerMetadata:
    return V2ServerMetadata(name="poolops", version=version("poolops"), extensions=["binary_tensor_data"])


@router.get("/health/live", response_model=Live, summary="Server live")
async def live() -> Live:
    return Live()


@router.get("/health/ready", response_model=Ready, responses={503: {"model": Ready}}, summary="Server ready")
async def ready(engine: EngineDep):
    ok, body = readiness(engine)
    return JSONResponse(body, status_code=200 if ok else 503)


def _entry(engine: Engine, name: str):
    if name not in engine.registry:
        raise NotFound(f"unknown model {name!r}; registered: {', '.join(engine.registry) or 'none'}", model=name)
    return engine.registry[name]


def _metadata(engine: Engine, name: str) -> V2ModelMetadata:
    entry = _entry(engine, name)
    card = entry.card
    if card is None:
        raise Unavailable(f"model {name!r} is unavailable: {entry.reason}", retry_after=60)
    inputs = [V2TensorMeta(name="x", datatype="FP32", shape=[-1, card.input.channels, -1, -1])]
    if card.padding_invariant:
        inputs.append(V2TensorMeta(name="valid", datatype="INT64", shape=[-1, 2]))
    outs = [V2TensorMeta(name=o, datatype="FP32", shape=[-1, -1]) for o in card.outputs]
    params = {  # the policy /v2 cannot apply to ready tensors: clients apply it (see the module docstring)
        "size_policy": size_policy.as_parameters(card.size_policy),
        "min_size": list(card.input.min_size), "max_size": list(card.input.max_size),
    }
    return V2ModelMetadata(name=name, versions=["1"], platform="onnxruntime_onnx", inputs=inputs, outputs=outs,
                           parameters=params)


@router.get("/models/{name}", response_model=V2ModelMetadata, responses=responses(404, 503, v2=True), summary="Model metadata")
async def model_metadata(name: str, engine: EngineDep) -> V2ModelMetadata:
    return _metadata(engine, name)


@router.get("/models/{name}/versions/{model_version}", response_model=V2ModelMetadata,
            responses=responses(404, 503, v2=True), summary="Model metadata (version 1 only)")
async def model_metadata_v(name: str, model_version: str, engine: EngineDep) -> V2ModelMetadata:
    _version(model_version)
    return _metadata(engine, name)


def _version(v: str) -> None:
    if v != "1":
        raise NotFound(f"model version {v!r} does not exist; each model has version '1'")


async def _ready(name: str, engine: Engine):
    _entry(engine, name)
    status = engine.model_status(name)
    ok = bool(status.get("available") and status.get("ready"))
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


async def _infer(name: str, request: Request, engine: Engine, settings) -> Response:
    meta = _metadata(engine, name)
    req, binary = await _parse(request, settings.max_json_elements)
    tensors = _inputs(req, binary, settings.max_tensor_elements)
    allowed = {i.name for i in meta.inputs}
    unknown = set(tensors) - allowed
    if unknown or "x" not in tensors:
        raise BadInput(f"model {name!r} takes inputs {sorted(allowed)} (x required), got {sorted(tensors)}")
    x = as_float32(tensors["x"], "input x")
    if x.ndim == 4:  # check_tensor below says what x must be otherwise
        nonempty(x, "input x")
    valid = tensors.get("valid")
    runner = engine.runner(name)
    runner.check_tensor(x, None if valid is None else valid.astype(np.int64))
    outs = await engine.run_model_tensor(name, x, None if valid is None else valid.astype(np.int64))
    wanted = req.outputs or [V2RequestOutput(name=n) for n in outs]
    binary_all = bool((req.parameters or {}).get("binary_data_output", False))
    header: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    for o in wanted:
        if o.name not in outs:
            raise BadInput(f"model {name!r} has outputs {list(outs)}, not {o.name!r}")
        a = np.ascontiguousarray(outs[o.name])
        entry: dict[str, Any] = {"name": o.name, "shape": list(a.shape), "datatype": OIP_NAMES[a.dtype]}
        if (o.parameters or {}).get("binary_data", binary_all):
            raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            entry["data"] = a.reshape(-1).tolist()
        header.append(entry)
    body = {"model_name": name, "model_version": "1", "outputs": header}
    if req.id is not None:
        body["id"] = req.id
    if not chunks:
        return JSONResponse(body)
    head = json.dumps(body).encode()
    return Response(head + b"".join(chunks), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(head))})


_INFER = dict(
    response_model=V2InferResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **responses(400, 404, 413, 422, 503, v2=True)},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/V2InferRequest"}}}}},
)


@router.post("/models/{name}/infer", summary="Inference (JSON tensors or the binary tensor extension)", **_INFER)
async def infer(name: str, request: Request, engine: EngineDep, settings: SettingsDep):
    return await _infer(name, request, engine, settings)


@router.post("/models/{name}/versions/{model_version}/infer", summary="Inference (version 1 only)", **_INFER)
async def infer_v(name: str, model_version: str, request: Request, engine: EngineDep, settings: SettingsDep):
    _version(model_version)
    return await _infer(name, request, engine, settings)
