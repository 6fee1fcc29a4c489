"""The kinds of tensor inputs ops take besides ``x``, each defined once for every face.

Each kind has a shape (symbolic dims), a dtype, a description, and an example
generator (for tests, benchmarks and the UI). An op lists the ones it takes in
``OpSpec.inputs`` (required) and ``OpSpec.optional_inputs``. This module defines the
kinds every op family may take (``x``, ``valid``); an op file defines its own with
:func:`register_kind` (RoI boxes in ``poolops/ops/roi.py``, ...), so the kinds are
known once the registry has loaded the op files (:func:`kind` loads them).

Shapes are checked from ``dims`` by :func:`check_inputs` (``OpSpec.check`` calls it):
``N``, ``C``, ``H``, ``W`` are x's dims, names the op binds from its parameters
(``OpSpec.param_dims``: ``offsets`` ``[K, 2, oh, ow]`` with ``oh, ow`` its
``output_size``) are exact, and any other name is bound by the first input that has it
(a kind ``[R, C]`` binds ``R``, then another ``[R]`` must match it); ints are exact. A
kind's ``check(op_name, p, inputs)`` adds value checks (``valid``: within H and W),
given the parsed parameters and every given input by name.

Example generators are called ``example(x_shape, rng)``; those whose shape depends on
the op's parameters or on other inputs also take keywords ``p`` (the parsed
parameters) and ``inputs`` (the inputs made so far, by name).
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
    differentiable: bool = True  # False: ops give no gradient to it (e.g. box coordinates)


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
}


def register_kind(k: InputKind) -> InputKind:
    """Add an input kind (called by the op files that define one)."""
    if k.name in KINDS:
        raise ValueError(f"input kind {k.name!r} is registered twice")
    KINDS[k.name] = k
    return k


def kind(name: str) -> InputKind:
    """The input kind ``name`` (the op files, which register theirs, loaded first)."""
    if name not in KINDS:
        from poolops.registry import list_ops

        list_ops()  # imports every op file once
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


def check_inputs(
    op_name: str, p: Any, x, values: Mapping[str, Any], param_dims: Mapping[str, int] | None = None
) -> None:
    """``ParamError`` naming the input unless each given (not None) input has the shape
    of its kind's ``dims`` (symbols bound by x, by ``param_dims``, the dims the op binds
    from its parameters, and by the inputs before it), its dtype (float or integer) and
    passes the kind's ``check``."""
    from poolops.params import ParamError

    bound: dict[str, int] = dict(zip(_X_DIMS, (int(d) for d in x.shape)))
    bound.update({k: int(v) for k, v in (param_dims or {}).items()})
    given = {"x": x, **{n: v for n, v in values.items() if v is not None}}
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
