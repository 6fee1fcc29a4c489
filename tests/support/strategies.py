"""Hypothesis strategies for each op's parameters, and shapes.

Each op file ``poolops/ops/<file>.py`` has a test-support module
``tests/support/ops/<file>.py`` whose ``PARAMS`` maps its ops' names to strategies of
their parameters; :func:`params_for` collects them. Ops without an entry are tested
with their default parameters (so a new op is still covered by the parity tests,
which enumerate the registry).
"""

from __future__ import annotations

import importlib
import pkgutil

from hypothesis import strategies as st

small = st.integers(1, 4)


@st.composite
def window(draw, dilation: bool = False, divisor: bool = False, nan: bool = False):
    """Parameters of a sliding window: kernel, stride, padding, ceil_mode, and optionally
    dilation, the average's divisor options and ``propagate_nan``."""
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    params = dict(
        kernel=k,
        stride=draw(st.none() | st.tuples(small, small)),
        padding=(draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2))),
        ceil_mode=draw(st.booleans()),
    )
    if dilation:
        params["dilation"] = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if divisor:
        params["count_include_pad"] = draw(st.booleans())
        params["divisor_override"] = draw(st.none() | st.integers(1, 9))
    if nan:
        params["propagate_nan"] = draw(st.booleans())
    return params


@st.composite
def same_window(draw, dilation: bool = False, divisor: bool = False, nan: bool = False):
    """A window with TF "SAME" padding (``tf_same``): kernel, stride, and optionally
    dilation, the divisor override and ``propagate_nan`` (no padding or ceil mode)."""
    params = dict(kernel=(draw(st.integers(1, 5)), draw(st.integers(1, 5))),
                  stride=draw(st.none() | st.tuples(small, small)), tf_same=True)
    if dilation:
        params["dilation"] = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if divisor:
        params["divisor_override"] = draw(st.none() | st.integers(1, 9))
    if nan:
        params["propagate_nan"] = draw(st.booleans())
    return params


output_size = st.tuples(st.integers(1, 8), st.integers(1, 8))

# H and W from 1 to ~100; a few shapes per example so one graph is run at several sizes.
spatial = st.integers(1, 100)
shape = st.tuples(st.integers(1, 3), st.integers(1, 4), spatial, spatial)
# x of the 1-D ([N, C, L]) and 3-D ([N, C, D, H, W]) ops; 3-D sides kept small
shape_1d = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 300))
shape_3d = st.tuples(st.integers(1, 2), st.integers(1, 3), *(st.integers(1, 14),) * 3)
SHAPES = {1: shape_1d, 2: shape, 3: shape_3d}


def shape_of(spec):
    """The strategy of x shapes for ``spec`` (by its number of spatial axes)."""
    return SHAPES[spec.spatial_dims]

_PARAMS: dict | None = None


def all_params() -> dict:
    """Every op's parameter strategy, from the modules of ``support.ops``."""
    global _PARAMS
    if _PARAMS is None:
        import support.ops as pkg

        found: dict = {}
        for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
            module = importlib.import_module(f"support.ops.{info.name}")
            for name, strategy in getattr(module, "PARAMS", {}).items():
                if name in found:
                    raise ValueError(f"parameter strategy of {name!r} given twice")
                found[name] = strategy
        _PARAMS = found
    return _PARAMS


def params_for(name: str):
    return all_params().get(name, st.just({}))
