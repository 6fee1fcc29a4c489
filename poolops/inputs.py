"""The kinds of tensor inputs ops take besides ``x``, defined once for every face.

Each kind has a shape (symbolic dims), a dtype, a description, and an example
generator (for tests, benchmarks and the UI). An op lists the ones it takes in
``OpSpec.inputs`` (required) and ``OpSpec.optional_inputs``.
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
    example: Callable[[tuple[int, ...], np.random.Generator], np.ndarray] | None = None


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
