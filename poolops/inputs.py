"""The kinds of tensor inputs ops take besides ``x``, defined once for every face.

Each kind has a shape (symbolic dims), a dtype, a description, an example
generator (for tests, benchmarks and the UI) and optionally a check. An op lists the
ones it takes in ``OpSpec.inputs`` (required) and ``OpSpec.optional_inputs``.

Example generators are called ``example(x_shape, rng)``; those whose shape depends on
the op's parameters or on other inputs (``offsets``: ``[K, 2, oh, ow]``) also take
keywords ``p`` (the parsed parameters) and ``inputs`` (the inputs made so far, by name).
Checks are called ``check(op_name, p, inputs)`` with every given input by name and
raise :class:`poolops.ParamError` naming the input (``OpSpec.check`` calls them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np


@dataclass(frozen=True)
class InputKind:
    name: str
    dims: tuple[str | int, ...]
    dtype: str  # "float32" or "int64"
    doc: str
    example: Callable[..., np.ndarray] | None = None
    check: Callable[..., None] | None = None


def _example_valid(x_shape, rng):
    n, _, h, w = x_shape
    return np.stack([rng.integers(1, h + 1, n), rng.integers(1, w + 1, n)], axis=1).astype(np.int64)


KINDS: dict[str, InputKind] = {
    "x": InputKind("x", ("N", "C", "H", "W"), "float32", "the feature map or image batch"),
    "valid": InputKind(
        "valid",
        ("N", 2),
        "int64",
        "valid (height, width) of each sample of a padded batch: sample n is x[n, :, :h, :w], "
        "the rest is padding the op ignores (1 <= h <= H, 1 <= w <= W)",
        _example_valid,
        lambda op_name, p, inputs: check_valid(op_name, inputs["x"], inputs["valid"]),
    ),
    # RoI ops
    "boxes": InputKind(
        "boxes",
        ("K", 5),
        "float32",
        "regions of interest, one row (batch index, x1, y1, x2, y2) each, in input "
        "coordinates (multiplied by the op's spatial_scale to reach x's); the batch index "
        "is an integer in [0, N); K may be 0",
        lambda x_shape, rng, p=None, inputs=None: _example_boxes(x_shape, rng, p),
        lambda op_name, p, inputs: check_boxes(op_name, inputs["x"], inputs["boxes"]),
    ),
    "offsets": InputKind(
        "offsets",
        ("K", 2, "oh", "ow"),
        "float32",
        "per-bin offsets of deformable RoI pooling, normalised by the RoI size: "
        "[k, 0, i, j] moves bin (i, j) of box k along x (width), [k, 1, i, j] along y (height)",
        lambda x_shape, rng, p=None, inputs=None: _example_offsets(rng, p, inputs),
        lambda op_name, p, inputs: check_offsets(op_name, p, inputs["boxes"], inputs["offsets"]),
    ),
}


def kind(name: str) -> InputKind:
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown input kind {name!r}; known: {', '.join(KINDS)}") from None


def check_valid(op_name: str, x, valid) -> None:
    """``ParamError`` unless ``valid`` is ``[N, 2]`` integers within x's H and W."""
    from poolops.params import ParamError

    shape = tuple(valid.shape)
    n, _, h, w = x.shape
    if shape != (n, 2):
        raise ParamError(op_name, "valid", f"expected shape [N, 2] = [{n}, 2] (height, width per sample), got {shape}")
    v = np.asarray(valid.detach().cpu() if hasattr(valid, "detach") else valid)
    if not np.issubdtype(v.dtype, np.integer):
        raise ParamError(op_name, "valid", f"expected integers, got {v.dtype}")
    if (v < 1).any() or (v[:, 0] > h).any() or (v[:, 1] > w).any():
        raise ParamError(op_name, "valid", f"each (height, width) must be within 1..{h} and 1..{w}, got {v.tolist()}")


# ---------------------------------------------------------------- RoI ops


def _example_boxes(x_shape, rng, p=None):
    """1-4 boxes with valid batch indices and x2 >= x1, y2 >= y1, in input coordinates
    (feature coordinates / ``p.spatial_scale``); some reach outside the map, and about
    half have coordinates on a quarter-pixel grid (rounding ties of ``roi_pool``)."""
    n, _, h, w = x_shape
    k = int(rng.integers(1, 5))
    scale = float(getattr(p, "spatial_scale", 1.0))
    x1 = rng.uniform(-0.25 * w, w, k)
    y1 = rng.uniform(-0.25 * h, h, k)
    x2 = x1 + rng.uniform(0, 0.8 * w + 1, k)
    y2 = y1 + rng.uniform(0, 0.8 * h + 1, k)
    coords = np.stack([x1, y1, x2, y2], axis=1)
    if rng.random() < 0.5:
        coords = np.round(coords * 4) / 4
    batch = rng.integers(0, n, k).astype(np.float64)
    return np.concatenate([batch[:, None], coords / scale], axis=1).astype(np.float32)


def _example_offsets(rng, p=None, inputs=None):
    """Standard normal offsets ``[K, 2, oh, ow]`` (K from ``inputs['boxes']``, else 1)."""
    k = int(inputs["boxes"].shape[0]) if inputs and inputs.get("boxes") is not None else 1
    oh, ow = getattr(p, "output_size", (7, 7))
    return rng.standard_normal((k, 2, oh, ow)).astype(np.float32)


def _numpy(t) -> np.ndarray:
    return np.asarray(t.detach().cpu() if hasattr(t, "detach") else t)


def check_boxes(op_name: str, x, boxes) -> None:
    """``ParamError`` unless ``boxes`` is ``[K, 5]`` finite floats whose batch indices
    (column 0) are integers in ``[0, N)``."""
    from poolops.params import ParamError

    shape = tuple(boxes.shape)
    if len(shape) != 2 or shape[1] != 5:
        raise ParamError(op_name, "boxes", f"expected shape [K, 5] (batch index, x1, y1, x2, y2), got {shape}")
    b = _numpy(boxes)
    if not np.issubdtype(b.dtype, np.floating):
        raise ParamError(op_name, "boxes", f"expected float32 boxes, got {b.dtype}")
    if not np.isfinite(b).all():
        raise ParamError(op_name, "boxes", "every coordinate and batch index must be finite")
    n = x.shape[0]
    idx = b[:, 0]
    bad = (idx != np.round(idx)) | (idx < 0) | (idx >= n)
    if bad.any():
        raise ParamError(
            op_name,
            "boxes",
            f"column 0 is the batch index: an integer in [0, {n}) for x with N={n}; got {idx[bad].tolist()}",
        )


def check_offsets(op_name: str, p, boxes, offsets) -> None:
    """``ParamError`` unless ``offsets`` is ``[K, 2, oh, ow]`` for K boxes and ``p.output_size``."""
    from poolops.params import ParamError

    want = (int(boxes.shape[0]), 2, *p.output_size)
    if tuple(offsets.shape) != want:
        raise ParamError(
            op_name,
            "offsets",
            f"expected shape [K, 2, oh, ow] = {list(want)} (one (dx, dy) per box and output bin), got {tuple(offsets.shape)}",
        )
