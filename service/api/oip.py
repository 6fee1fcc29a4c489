"""The Open Inference Protocol's meaning, shared by its HTTP (``routes/v2.py``) and gRPC
(``poolops_service.grpc_server``) encodings: model metadata, inference with Triton's
classification extension, statistics (Triton's statistics extension) and version checks.

Models are the registry's; inputs ``x`` (FP32 [N, C, H, W]) and, for padding-invariant
models, ``valid`` (INT64 [N, 2]); outputs the card's (``logits``, ``embedding``). Inference
goes through the model's batcher image by image (``Engine.infer_tensor``), so concurrent
requests of either encoding share batches with each other and with ``/v1``.

Classification: a requested output with ``classification: k`` (HTTP ``parameters``; gRPC
``int64_param``) is answered, as Triton answers it, by a BYTES tensor [N, k] of
``"<value>:<index>:<label>"`` strings (``"<value>:<index>"`` for an output without
labels), the k largest values of each row in descending order, ``value`` printed as C's
``%f`` (Triton's ``std::to_string``); k above the output's length gives them all.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np

from poolops_models import size_policy
from poolops_service.api.schemas import V2ModelMetadata, V2ServerMetadata, V2TensorMeta
from poolops_service.codecs.tensors import as_float32, nonempty
from poolops_service.engine import Engine
from poolops_service.engine.budget import Reservation
from poolops_service.engine.errors import BadInput, NotFound, Unavailable
from poolops_service.engine.stats import Request

EXTENSIONS = ["binary_tensor_data", "classification", "statistics", "model_repository"]
CLASSIFICATION = "classification"
MAX_CLASS_COUNT = 1000


def server_metadata() -> V2ServerMetadata:
    return V2ServerMetadata(name="poolops", version=version("poolops"), extensions=EXTENSIONS)


def check_version(v: str) -> None:
    """Each model has version "1"; an empty version means the model's latest (gRPC)."""
    if v not in ("", "1"):
        raise NotFound(f"model version {v!r} does not exist; each model has version '1'")


def entry(engine: Engine, name: str):
    if name not in engine.registry:
        raise NotFound(f"unknown model {name!r}; registered: {', '.join(engine.registry) or 'none'}", model=name)
    return engine.registry[name]


def servable_card(engine: Engine, name: str):
    """The card of model ``name``: ``NotFound`` (404) when unknown, ``Unavailable`` (503)
    when it has none (the checks of :func:`model_metadata`, without building it)."""
    e = entry(engine, name)
    if e.card is None:
        raise Unavailable(f"model {name!r} is unavailable: {e.reason}", retry_after=60)
    return e.card


def input_names(card) -> list[str]:
    """The inputs a model takes: ``x``, and ``valid`` when it is padding-invariant."""
    return ["x", "valid"] if card.padding_invariant else ["x"]


def model_metadata(engine: Engine, name: str) -> V2ModelMetadata:
    card = servable_card(engine, name)
    metas = {"x": V2TensorMeta(name="x", datatype="FP32", shape=[-1, card.input.channels, -1, -1]),
             "valid": V2TensorMeta(name="valid", datatype="INT64", shape=[-1, 2])}
    inputs = [metas[n] for n in input_names(card)]
    outs = [V2TensorMeta(name=o, datatype="FP32", shape=[-1, -1]) for o in card.outputs]
    params = {  # the policy /v2 cannot apply to ready tensors: clients apply it (see routes/v2.py)
        "size_policy": size_policy.as_parameters(card.size_policy),
        "min_size": list(card.input.min_size), "max_size": list(card.input.max_size),
    }
    return V2ModelMetadata(name=name, versions=["1"], platform="onnxruntime_onnx", inputs=inputs, outputs=outs,
                           parameters=params)


def model_config(engine: Engine, name: str) -> dict[str, Any]:
    """Triton's model configuration (``GET /v2/models/{name}/config``, gRPC ``ModelConfig``)
    as JSON: ``max_batch_size`` is the images per batch the server forms for this model
    (``POOLOPS_MODEL_BATCH_MAX_SIZE`` or ``POOLOPS_BATCH_MAX_SIZE``); dims leave out the batch
    axis, as Triton's do when ``max_batch_size`` > 0. A request may carry up to
    ``max_request_images`` images (a parameter) whatever the batch size: they queue through
    the batcher."""
    card = servable_card(engine, name)
    s = engine.settings
    ins = {"x": {"name": "x", "data_type": "TYPE_FP32", "dims": [card.input.channels, -1, -1]},
           "valid": {"name": "valid", "data_type": "TYPE_INT64", "dims": [2]}}
    return {
        "name": name, "platform": "onnxruntime_onnx", "backend": "onnxruntime",
        "max_batch_size": s.batch_size_of(name),
        "input": [ins[n] for n in input_names(card)],
        "output": [{"name": o, "data_type": "TYPE_FP32", "dims": [-1]} for o in card.outputs],
        "dynamic_batching": {"max_queue_delay_microseconds": round(s.batch_wait_ms * 1000)},
        "parameters": {"max_request_images": {"string_value": str(s.max_batch_images)}},
    }


def model_ready(engine: Engine, name: str) -> bool:
    entry(engine, name)
    status = engine.model_status(name)
    return bool(status.get("available") and status.get("ready"))


@dataclass
class Wanted:
    """A requested output: its name and, for the classification extension, k (0: the tensor)."""

    name: str
    class_count: int = 0


def class_count(value: Any, output: str) -> int:
    """The ``classification`` parameter's k: a whole number >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CLASS_COUNT:
        raise BadInput(f"output {output}: parameters.classification must be a whole number of classes in "
                       f"1..{MAX_CLASS_COUNT}, got {value!r}")
    return value


def check_inputs(engine: Engine, name: str, tensors: dict[str, np.ndarray],
                 reservation: Reservation | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """(x float32, valid int64 or None) after the checks that need no inference."""
    allowed = set(input_names(servable_card(engine, name)))
    unknown = set(tensors) - allowed
    if unknown or "x" not in tensors:
        raise BadInput(f"model {name!r} takes inputs {sorted(allowed)} (x required), got {sorted(tensors)}")
    if reservation is not None:  # the float32 copy of x
        reservation.add(4 * tensors["x"].size, "its input x")
    x = as_float32(tensors["x"], "input x")
    if x.ndim == 4:  # check_tensor says what x must be otherwise
        nonempty(x, "input x")
    valid = tensors.get("valid")
    if valid is not None:
        if valid.dtype.kind not in "iu":
            raise BadInput(f"input valid must be INT64 (or another integer type), got {valid.dtype.name}")
        valid = valid.astype(np.int64)
    engine.runner(name).check_tensor(x, valid)
    return x, valid


def check_outputs(engine: Engine, name: str, wanted: list[Wanted]) -> None:
    outputs = entry(engine, name).card.outputs
    seen = set()
    for w in wanted:
        if w.name not in outputs:
            raise BadInput(f"model {name!r} has outputs {outputs}, not {w.name!r}")
        if w.name in seen:
            raise BadInput(f"output {w.name} is requested twice")
        seen.add(w.name)


async def infer(engine: Engine, name: str, x: np.ndarray, valid: np.ndarray | None, wanted: list[Wanted] | None,
                req: Request) -> list[tuple[str, np.ndarray]]:
    """The requested outputs (all of the card's when ``wanted`` is None or empty), each a
    float32 tensor or, with ``class_count``, a classification (an object array of bytes)."""
    wanted = wanted or [Wanted(n) for n in entry(engine, name).card.outputs]
    check_outputs(engine, name, wanted)  # before any work
    outs = await engine.infer_tensor(name, x, valid, req)
    card = engine.registry[name].card
    result = []
    for w in wanted:
        a = outs[w.name]
        if w.class_count:
            labels = card.labels if w.name == "logits" else None
            a = classify(a, w.class_count, labels)
        result.append((w.name, a))
    return result


def classify(a: np.ndarray, k: int, labels: list[str] | None) -> np.ndarray:
    """``a`` [N, L] -> object array [N, min(k, L)] of ``b"<value>:<index>[:<label>]"``."""
    rows = a.reshape(a.shape[0], -1)
    k = min(k, rows.shape[1])
    order = np.argsort(-rows, axis=1, kind="stable")[:, :k]
    out = np.empty((rows.shape[0], k), dtype=object)
    for i, row in enumerate(order):
        for j, idx in enumerate(row):
            s = f"{float(rows[i, idx]):f}:{int(idx)}"
            if labels is not None and idx < len(labels):
                s += f":{labels[idx]}"
            out[i, j] = s.encode()
    return out


def bytes_tensor(a: np.ndarray) -> bytes:
    """A BYTES tensor's raw form (Triton's): each element as a 4-byte little-endian length
    and its bytes, row-major."""
    return b"".join(struct.pack("<I", len(v)) + v for v in a.reshape(-1))


def statistics(engine: Engine, name: str | None = None, model_version: str = "") -> dict:
    """``{"model_stats": [...]}`` for ``name`` (or every registered model)."""
    check_version(model_version)
    if name:
        entry(engine, name)
        names = [name]
    else:
        names = list(engine.registry)
    return {"model_stats": [engine.model_stats(n).triton(n) for n in names]}


def check_load_parameters(params: Any) -> None:
    """Triton's load may carry a model config or files to load instead of the repository's
    folder: this server loads the folder on disk only, and says so."""
    bad = [k for k in params or () if k == "config" or str(k).startswith("file:")]
    if bad:
        raise BadInput(f"load parameters {bad[:5]} are not supported: put the model folder (model.onnx, card.json, "
                       "labels.txt) into the repository, then load it by name")
