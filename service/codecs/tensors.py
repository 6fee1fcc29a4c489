"""Tensors in and out of requests: JSON nested lists, base64 raw buffers, ``.npy`` bytes,
and the Open Inference Protocol's flat ``data`` with a ``datatype``."""

from __future__ import annotations

import base64
import binascii
import io
import math
from typing import Any

import numpy as np

from poolops_service.engine.errors import BadInput, TooLarge

DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int64": np.int64,
          "int32": np.int32, "uint8": np.uint8}
# Open Inference Protocol v2 datatypes
OIP_DTYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
              "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}
OIP_NAMES = {np.dtype(v): k for k, v in OIP_DTYPES.items()}


MAX_DIMS = 8  # no input of any op or model has more


def element_count(shape: list[int], what: str, max_elements: int) -> int:
    """Elements of ``shape``, counted with Python ints (numpy's would wrap around) and
    refused above ``max_elements`` before anything is allocated."""
    if len(shape) > MAX_DIMS:
        raise BadInput(f"{what}: shape has {len(shape)} dimensions, at most {MAX_DIMS} are allowed")
    if any(d < 0 for d in shape):
        raise BadInput(f"{what}: shape must be non-negative, got {shape}")
    n = math.prod(shape)
    if n > max_elements:
        raise TooLarge(f"{what}: shape {shape} has {n} elements, more than the limit {max_elements} "
                       "(POOLOPS_MAX_TENSOR_ELEMENTS): send a smaller tensor")
    return n


def _float_range(what: str, dtype) -> BadInput:
    return BadInput(f"{what}: a number is beyond the range of {np.dtype(dtype).name} "
                    f"(largest {float(np.finfo(dtype).max):.4g}); write \"Infinity\" or \"-Infinity\" to mean infinity")


def _not_a_number(data: Any) -> str | None:
    """What in nested lists became NaN or infinity without being written "NaN" or
    "Infinity": a JSON number beyond float64 (e.g. 1e400), or null."""
    stack = [data]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        elif v is None:
            return "null"
        elif isinstance(v, float) and math.isinf(v):
            return "overflow"
    return None


def _convert(data: Any, dtype, what: str) -> np.ndarray:
    """Nested lists -> array of ``dtype``; a number beyond the dtype's range is refused,
    not made infinite, and null is not a number (numpy would make it NaN)."""
    try:
        with np.errstate(over="raise"):
            a = np.asarray(data, dtype=dtype)
    except FloatingPointError:
        raise _float_range(what, dtype) from None
    except OverflowError:  # a Python int beyond any float
        raise _float_range(what, dtype) if np.dtype(dtype).kind == "f" else BadInput(
            f"{what}: a number is beyond the range of {np.dtype(dtype).name}") from None
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        bad = _not_a_number(data)
        if bad == "overflow":
            raise _float_range(what, dtype)
        if bad == "null":
            raise BadInput(f"{what}: null is not a number; write \"NaN\" for a missing value")
    return a


def from_nested(data: Any, what: str, max_elements: int) -> np.ndarray:
    """A JSON nested list of numbers -> float32 array (rectangular; NaN and infinities as
    the strings "NaN", "Infinity", "-Infinity")."""
    try:
        a = _convert(data, np.float32, what)
    except (ValueError, TypeError):
        raise BadInput(f"{what} must be a rectangular nested list of numbers (every row the same length; "
                       "strings only as \"NaN\", \"Infinity\", \"-Infinity\")") from None
    if a.size > max_elements:
        raise TooLarge(f"{what} has {a.size} elements, more than the limit {max_elements}: send a smaller tensor")
    return a


def from_base64(b64: str, shape: list[int], dtype: str, what: str, max_elements: int) -> np.ndarray:
    """Base64 of the raw little-endian C-order buffer -> array of ``shape``."""
    if dtype not in DTYPES:
        raise BadInput(f"{what}: dtype must be one of {list(DTYPES)}, got {dtype!r}")
    n = element_count(shape, what, max_elements)
    itemsize = np.dtype(DTYPES[dtype]).itemsize
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{what}: 'b64' is not valid base64") from None
    if len(raw) != n * itemsize:
        raise BadInput(f"{what}: {len(raw)} bytes do not make shape {shape} of {dtype} ({n * itemsize} bytes expected)")
    return np.frombuffer(raw, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<")).reshape(shape)


def from_oip(data: Any, shape: list[int], datatype: str, what: str, max_elements: int) -> np.ndarray:
    """An Open Inference Protocol tensor (flat or nested ``data``, row-major) -> array."""
    if datatype not in OIP_DTYPES:
        raise BadInput(f"{what}: datatype must be one of {list(OIP_DTYPES)}, got {datatype!r}")
    if data is None:
        raise BadInput(f"{what}: give 'data', or binary data with parameters.binary_data_size")
    n = element_count(shape, what, max_elements)
    try:
        a = _convert(data, OIP_DTYPES[datatype], what).reshape(-1)
    except (ValueError, TypeError):
        raise BadInput(f"{what}: data must be numbers of datatype {datatype}") from None
    if a.size != n:
        raise BadInput(f"{what}: {a.size} values do not fill shape {shape} ({n} expected)")
    return a.reshape(shape)


def from_request(t: Any, what: str, max_elements: int) -> np.ndarray:
    """A request's tensor: a raw tensor (an object with ``b64``, ``shape`` and ``dtype``)
    or JSON nested lists."""
    if hasattr(t, "b64"):
        return from_base64(t.b64, t.shape, t.dtype, what, max_elements)
    return from_nested(t, what, max_elements)


def op_arrays(
    req: Any, max_elements: int, spatial_dims: int = 2
) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray | None]:
    """``x`` ``[N, C, H, W]`` (``[N, C, L]``, ``[N, C, D, H, W]`` for an op of 1 or 3
    ``spatial_dims``: :func:`as_batch`), the other inputs by name and ``grad_output`` (or
    None) of an op request (``input``, ``inputs``, ``grad_output``)."""
    raw = from_request(req.input, "input", max_elements)
    x = as_nchw(raw) if spatial_dims == 2 else as_batch(raw, spatial_dims)
    extra = {k: from_request(v, f"inputs.{k}", max_elements) for k, v in req.inputs.items()}
    grad = None if req.grad_output is None else from_request(req.grad_output, "grad_output", max_elements)
    return x, extra, grad


def to_nested(a: np.ndarray) -> Any:
    """Array -> JSON-safe nested lists (NaN and +-inf as the strings 'NaN', 'Infinity', '-Infinity')."""
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        obj = a.astype(object)
        obj[np.isnan(a)] = "NaN"
        obj[np.isposinf(a)] = "Infinity"
        obj[np.isneginf(a)] = "-Infinity"
        return obj.tolist()
    return a.tolist()


def to_npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def as_nchw(a: np.ndarray, what: str = "input") -> np.ndarray:
    """2-D = one plane [H, W], 3-D = [C, H, W], 4-D = [N, C, H, W] -> [N, C, H, W]."""
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[None]
    elif a.ndim != 4:
        raise BadInput(
            f"{what} must be 2-D (one plane H x W), 3-D (C x H x W) or 4-D (N x C x H x W), got {a.ndim}-D shape {list(a.shape)}"
        )
    return nonempty(a, what)


_BATCH_DIMS = {1: ("N", "C", "L"), 3: ("N", "C", "D", "H", "W")}


def as_batch(a: np.ndarray, spatial_dims: int, what: str = "input") -> np.ndarray:
    """The input of a 1-D or 3-D op as a batch: one signal ``[L]`` or ``[C, L]`` ->
    ``[1, 1, L]`` / ``[1, C, L]``; one volume ``[D, H, W]`` or ``[C, D, H, W]`` ->
    ``[1, 1, D, H, W]`` / ``[1, C, D, H, W]``; a batch as it is."""
    dims = _BATCH_DIMS[spatial_dims]
    rank = len(dims)
    if not rank - 2 <= a.ndim <= rank:
        forms = " or ".join(f"{k}-D ({' x '.join(dims[rank - k:])})" for k in range(rank - 2, rank + 1))
        raise BadInput(f"{what} must be {forms}, got {a.ndim}-D shape {list(a.shape)}")
    a = a.reshape((1,) * (rank - a.ndim) + a.shape)
    if 0 in a.shape:
        raise BadInput(f"{what} has shape {list(a.shape)} as [{', '.join(dims)}]: every dimension must be at least 1")
    return a


def as_float32(a: np.ndarray, what: str) -> np.ndarray:
    """``a`` as float32, refused where a value is beyond float32's range (not made infinite)."""
    try:
        with np.errstate(over="raise"):
            return a.astype(np.float32)
    except FloatingPointError:
        raise _float_range(what, np.float32) from None


def nonempty(a: np.ndarray, what: str) -> np.ndarray:
    """``a`` [N, C, H, W] unless a dimension is 0 (no op or model runs on an empty batch,
    zero channels or an empty plane)."""
    if 0 in a.shape:
        raise BadInput(f"{what} has shape {list(a.shape)} as [N, C, H, W]: every dimension must be at least 1")
    return a
