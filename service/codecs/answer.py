"""JSON answers holding arrays, encoded by orjson straight from numpy buffers (no Python
float per number), with NaN and +-inf written as the strings ``"NaN"``, ``"Infinity"``,
``"-Infinity"`` as everywhere else in the API."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from poolops_service.codecs.tensors import to_nested

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


def _default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj: Any) -> bytes:
    """``obj`` (dicts, lists, numbers, strings, numpy arrays) -> JSON bytes."""

    def prepare(v: Any) -> Any:
        if isinstance(v, np.ndarray):  # orjson takes C-contiguous native-order arrays
            a = np.ascontiguousarray(v)
            if (a.dtype.kind == "f" and not np.isfinite(a).all()) or a.ndim == 0:
                return to_nested(a)
            return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))
        if isinstance(v, dict):
            return {k: prepare(x) for k, x in v.items()}
        return v

    return orjson.dumps(prepare(obj), default=_default, option=_OPTIONS)


def op_answer(name: str, res: Any) -> bytes:
    """The JSON answer of an op run (``OpResponse``; ``res`` an engine ``OpResult``),
    encoded without pydantic's per-number work."""
    y = res.outputs["y"]
    return dumps({
        "op": name, "params": res.params, "shape": list(y.shape), "output": y,
        "indices": res.outputs.get("indices"), "grad_input": res.outputs.get("grad_input"),
        "provider": res.provider, "timing_ms": {k: round(v, 3) for k, v in res.ms.items()},
    })
