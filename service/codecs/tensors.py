"""Tensors in and out of requests: JSON nested lists, base64 raw buffers, ``.npy`` bytes,
and the Open Inference Protocol's flat ``data`` with a ``datatype``."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np

from service.engine.errors import BadInput, TooLarge

DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int64": np.int64,
          "int32": np.int32, "uint8": np.uint8}
# Open Inference Protocol v2 datatypes
OIP_DTYPES = {"FP32": np.float32, "FP64": np.float64, "FP16": np.float16, "INT64": np.int64, "INT32": np.int32,
              "INT16": np.int16, "INT8": np.int8, "UINT8": np.uint8, "BOOL": np.bool_}
OIP_NAMES = {np.dtype(v): k for k, v in OIP_DTYPES.items()}


def from_nested(data: Any, what: str, max_elements: int) -> np.ndarray:
    """A JSON nested list of numbers -> float32 array (rectangular, finite or not)."""
    try:
        a = np.asarray(data, dtype=np.float32)
    except (ValueError, TypeError):
        raise BadInput(f"{what} must be a rectangular nested list of numbers (every row the same length)") from None
    if a.size > max_elements:
        raise TooLarge(f"{what} has {a.size} elements, more than the limit {max_elements}: send a smaller tensor")
    return a


def from_base64(b64: str, shape: list[int], dtype: str, what: str, max_elements: int) -> np.ndarray:
    """Base64 of the raw little-endian C-order buffer -> array of ``shape``."""
    if dtype not in DTYPES:
        raise BadInput(f"{what}: dtype must be one of {list(DTYPES)}, got {dtype!r}")
    if any(d < 0 for d in shape):
        raise BadInput(f"{what}: shape must be non-negative, got {shape}")
    n = int(np.prod(shape)) if shape else 1
    if n > max_elements:
        raise TooLarge(f"{what} has {n} elements, more than the limit {max_elements}: send a smaller tensor")
    try:
        raw = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{what}: 'b64' is not valid base64") from None
    itemsize = np.dtype(DTYPES[dtype]).itemsize
    if len(raw) != n * itemsize:
        raise BadInput(f"{what}: {len(raw)} bytes do not make shape {shape} of {dtype} ({n * itemsize} bytes expected)")
    return np.frombuffer(raw, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<")).reshape(shape)


def from_oip(data: Any, shape: list[int], datatype: str, what: str, max_elements: int) -> np.ndarray:
    """An Open Inference Protocol tensor (flat or nested ``data``, row-major) -> array."""
    if datatype not in OIP_DTYPES:
        raise BadInput(f"{what}: datatype must be one of {list(OIP_DTYPES)}, got {datatype!r}")
    n = int(np.prod(shape)) if shape else 1
    if data is None:
        raise BadInput(f"{what}: give 'data', or binary data with parameters.binary_data_size")
    if any(d < 0 for d in shape):
        raise BadInput(f"{what}: shape must be non-negative, got {shape}")
    if n > max_elements:
        raise TooLarge(f"{what} has {n} elements, more than the limit {max_elements}: send a smaller tensor")
    try:
        a = np.asarray(data, dtype=OIP_DTYPES[datatype]).reshape(-1)
    except (ValueError, TypeError, OverflowError):
        raise BadInput(f"{what}: data must be numbers of datatype {datatype}") from None
    if a.size != n:
        raise BadInput(f"{what}: {a.size} values do not fill shape {shape} ({n} expected)")
    return a.reshape(shape)


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
        return a[None, None]
    if a.ndim == 3:
        return a[None]
    if a.ndim == 4:
        return a
    raise BadInput(
        f"{what} must be 2-D (one plane H x W), 3-D (C x H x W) or 4-D (N x C x H x W), got {a.ndim}-D shape {list(a.shape)}"
    )
