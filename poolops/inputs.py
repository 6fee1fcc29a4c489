"""The kinds of tensor inputs ops take besides ``x``, defined once for every face.

Each kind has a shape (symbolic dims), a dtype, a description, and an example
generator (for tests, benchmarks and the UI). An op lists the ones it takes in
``OpSpec.inputs`` (required) and ``OpSpec.optional_inputs``.

Shapes are checked from ``dims`` by :func:`check_inputs` (``OpSpec.check`` calls it):
``N``, ``C``, ``H``, ``W`` are x's dims, any other name is bound by the first input
that has it (``se_w1`` ``[R, C]`` binds ``R``, then ``se_b1`` must be ``[R]``), ints are
exact. A kind's ``check(op_name, p, inputs)`` adds value checks (``valid``: within H
and W; ``boxes``: batch indices in [0, N)), given the parsed parameters and every
given input by name.

Example generators are called ``example(x_shape, rng)``; those whose shape depends on
the op's parameters or on other inputs (``offsets``: ``[K, 2, oh, ow]``) also take
keywords ``p`` (the parsed parameters) and ``inputs`` (the inputs made so far, by name).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np


@dataclass(frozen=True)
class InputKind:
    """One kind of input.

    Attributes:
        example: ``(x_shape, rng) -> array`` for tests, benchmarks and the UI; it may
            also take keyword arguments ``p`` (the op's parsed parameters) and
            ``inputs`` (the examples made so far, by name), which
            :func:`example_inputs` passes when the function names them.
        check: ``(op_name, p, inputs) -> None`` (``inputs``: every given input by name,
            ``x`` included), raising ``ParamError``: checks beyond the shape and dtype
            (which :func:`check_inputs` does from ``dims``).
    """

    name: str
    dims: tuple[str | int, ...]
    dtype: str  # "float32" or "int64"
    doc: str
    example: Callable[..., np.ndarray] | None = None
    check: Callable[..., None] | None = None
    differentiable: bool = True  # False: ops give no gradient to it (RoI boxes)


def _example_valid(x_shape, rng):
    n, _, h, w = x_shape
    return np.stack([rng.integers(1, h + 1, n), rng.integers(1, w + 1, n)], axis=1).astype(np.int64)


# bilinear / attention / se: example generators


def _example_x2(x_shape, rng):
    n, c, h, w = x_shape
    return rng.standard_normal((n, int(rng.integers(1, c + 1)), h, w)).astype(np.float32)


def _example_attn(x_shape, rng):
    n, c, h, w = x_shape
    return rng.standard_normal((n, int(rng.choice([1, c])), h, w)).astype(np.float32)


def se_hidden(channels: int) -> int:
    """The hidden size R of the example ``se`` weights: ``max(2, C // 4)``."""
    return max(2, channels // 4)


def _example_se(rows, cols, scale_by):
    def make(x_shape, rng):
        c = x_shape[1]
        sizes = {"C": c, "R": se_hidden(c)}
        shape = tuple(sizes[d] for d in (rows, cols) if d)
        return (rng.standard_normal(shape) / np.sqrt(sizes[scale_by])).astype(np.float32)

    return make


def check_attn(op_name: str, x, attn) -> None:
    """``ParamError`` unless the attention map has 1 or C channels."""
    from poolops.params import ParamError

    a, c = int(attn.shape[1]), int(x.shape[1])
    if a not in (1, c):
        raise ParamError(
            op_name, "attn", f"expected shape [N, 1, H, W] or [N, C, H, W] = [N, {c}, H, W], got {tuple(attn.shape)}"
        )


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
        differentiable=False,
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
    # bilinear / attention / se
    "x2": InputKind(
        "x2",
        ("N", "C2", "H", "W"),
        "float32",
        "a second feature map for multimodal bilinear pooling: same N, H, W as x, any C2 channels",
        _example_x2,
    ),
    "attn": InputKind(
        "attn",
        ("N", "A", "H", "W"),
        "float32",
        "attention logits, softmaxed over the H*W positions: A = 1 (one map for all channels) or A = C "
        "(one map per channel); same N, H, W as x",
        _example_attn,
        check=lambda op, p, inputs: check_attn(op, inputs["x"], inputs["attn"]),
    ),
    "se_w1": InputKind("se_w1", ("R", "C"), "float32", "squeeze-and-excitation reduction weights [R, C]",
                       _example_se("R", "C", "C")),
    "se_b1": InputKind("se_b1", ("R",), "float32", "squeeze-and-excitation reduction bias [R]",
                       _example_se("R", None, "R")),
    "se_w2": InputKind("se_w2", ("C", "R"), "float32", "squeeze-and-excitation expansion weights [C, R]",
                       _example_se("C", "R", "R")),
    "se_b2": InputKind("se_b2", ("C",), "float32", "squeeze-and-excitation expansion bias [C]",
                       _example_se("C", None, "C")),
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


_X_DIMS = ("N", "C", "H", "W")


def _is_float(value) -> bool:
    if hasattr(value, "is_floating_point"):  # torch
        return bool(value.is_floating_point())
    return np.issubdtype(np.asarray(value).dtype, np.floating)


def check_inputs(op_name: str, p: Any, x, values: Mapping[str, Any]) -> None:
    """``ParamError`` naming the input unless each given (not None) input has the shape
    of its kind's ``dims`` (symbols bound by x and by the inputs before it), its dtype
    (float or integer) and passes the kind's ``check``."""
    from poolops.params import ParamError

    bound: dict[str, int] = dict(zip(_X_DIMS, (int(d) for d in x.shape)))
    given = {"x": x, **{n: v for n, v in values.items() if v is not None}}
    if hasattr(p, "output_size"):  # dims named after the output (offsets: [K, 2, oh, ow])
        bound["oh"], bound["ow"] = (int(d) for d in p.output_size)
    for name, value in values.items():
        if value is None:
            continue
        k = kind(name)
        shape = tuple(int(d) for d in value.shape)
        want = [d if isinstance(d, int) else bound.get(d) for d in k.dims]
        if len(shape) != len(k.dims) or any(w is not None and w != s for w, s in zip(want, shape)):
            symbolic = ", ".join(map(str, k.dims))
            resolved = ", ".join(str(d if w is None else w) for d, w in zip(k.dims, want))
            raise ParamError(op_name, name, f"expected shape [{symbolic}] = [{resolved}], got {shape}")
        for d, s in zip(k.dims, shape):
            if isinstance(d, str):
                bound.setdefault(d, s)
        if k.dtype == "float32" and not _is_float(value):
            raise ParamError(op_name, name, f"expected float32 (floating point) values, got {value.dtype}")
        if k.dtype == "int64" and _is_float(value):
            raise ParamError(op_name, name, f"expected integers, got {value.dtype}")
        if k.check is not None:
            k.check(op_name, p, given)


def example_inputs(
    names, x_shape: tuple[int, ...], rng: np.random.Generator, p: Any = None
) -> dict[str, np.ndarray]:
    """Example arrays of the inputs ``names`` (not ``x``) for an ``x`` of ``x_shape``,
    from their kinds' generators; ``ValueError`` for a kind without one."""
    made: dict[str, np.ndarray] = {}
    for name in names:
        k = kind(name)
        if k.example is None:
            raise ValueError(f"input kind {name!r} has no example generator")
        wanted = inspect.signature(k.example).parameters
        extra = {key: v for key, v in (("p", p), ("inputs", dict(made))) if key in wanted}
        made[name] = k.example(tuple(x_shape), rng, **extra)
    return made
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
