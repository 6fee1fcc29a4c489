"""Fractional max pooling (Graham 2014): max over ``kernel`` windows placed at
pseudo-random, overlapping starts, so that the output size can be any fraction of the
input's (``output_size``, or ``output_ratio`` in (0, 1): ``int(H * ratio)``, in float64
as PyTorch computes it). PyTorch ``F.fractional_max_pool2d`` semantics, with its
sampling rule (aten ``FractionalMaxPooling.h``, ``generate_intervals``): for each
``(n, c)`` plane and axis, a sample ``u`` in ``[0, 1)`` gives the window starts
``int((i + u) * alpha) - int(u * alpha)`` for ``i < out - 1``, ``alpha = (in - k) /
(out - 1)``, all in float32, and ``in - k`` for the last window. Each window gives its
first maximum in row-major order (the last NaN if it holds NaN) and its plane index
``h * W + w``. Needs ``out + k - 1 <= in`` on each axis (PyTorch's check).

Samples: PyTorch draws them from its generator on every call (``_random_samples``
``[N, C, 2]``: ``(u_w, u_h)`` per plane); here they come from ``seed`` through the
counter-based hash of ``stochastic`` (``u`` of counter ``(n*C + c)*2 + k``, 24-bit,
exact in float32), the same in torch and ONNX on any device: the same seed gives the
same windows, use a new seed per step. ``poolops.ops.fractional_max.samples(seed, N, C)``
gives them, and ``F.fractional_max_pool2d(x, kernel, output_size, _random_samples=
samples(...))`` is this op exactly (the torch function calls it so).

Example: ``[[1, 5, 2, 0, 3]]`` with kernel ``(1, 2)``, output ``(1, 3)`` and a width
sample ``u = 0.5``: ``alpha = 3/2``, starts ``[int(0.75) - int(0.75), int(2.25) - 0,
5 - 2] = [0, 2, 3]``, windows ``[1, 5], [2, 0], [0, 3]``: ``y = [5, 2, 3]``, indices
``[1, 2, 4]``. Backward: to the argmax of each window, accumulated (windows overlap).

ONNX: the starts computed per plane from the hash samples (float32 Add, Mul and a
truncating Cast, as the C++); one MaxPool at stride 1 gives every window's maximum,
read at each plane's sampled rows (Gather) and columns (GatherElements). With indices,
a MaxPool over ``(1, kw)`` gives each row's maximum over a window's columns: each window
takes the first of its ``kh`` rows reaching the largest (ArgMax), then the first of
that row's ``kw`` cells (ArgMax), the first maximum in row-major order, as PyTorch,
without MaxPool's slow indices output. The last NaN only when x holds one (an If on
``IsNaN(ReduceSum(x))``, as ``max``: ONNX Runtime's MaxPool skips NaN): the graph does
not grow with the kernel. Backward a scatter-add. The ratio's output size is a
float64 Mul and Cast on the shape (shape arithmetic).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator

from poolops.onnx import blocks
from poolops.onnx.builder import const_i64, const_scalar_i64, dim, scalar, unsqueeze
from poolops.ops.stochastic import onnx_uniform, torch_uniform
from poolops.params import OpParams, OptionalPositivePair, ParamError, PositivePair, invalid
from poolops.registry import OpSpec, register

NAME = "fractional_max"
DEFAULT_RATIO = (0.5, 0.5)


def _to_ratio_pair(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (value, value)
    return value


Ratio = Annotated[float, Field(gt=0.0, lt=1.0)]
RatioPair = Annotated[tuple[Ratio, Ratio] | None, BeforeValidator(_to_ratio_pair)]


class FractionalMaxParams(OpParams):
    kernel: PositivePair = (2, 2)
    output_size: OptionalPositivePair = None
    """The output ``(oh, ow)``; or give ``output_ratio``."""
    output_ratio: RatioPair = None
    """``(rh, rw)`` in (0, 1): output ``(int(H * rh), int(W * rw))``; (0.5, 0.5) when
    neither this nor ``output_size`` is given."""
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    """Seed of the window samples (same seed, same windows)."""

    @model_validator(mode="after")
    def _one_size(self):
        if self.output_size is not None and self.output_ratio is not None:
            raise invalid("output_ratio", "give output_size or output_ratio, not both")
        return self

    @property
    def ratio(self) -> tuple[float, float] | None:
        """The output ratio, None when ``output_size`` is given."""
        return None if self.output_size is not None else (self.output_ratio or DEFAULT_RATIO)


def _ratio_size(size, ratio: float):
    """``int(size * ratio)`` as PyTorch (float64); SymInt-safe."""
    if isinstance(size, int):
        return int(size * ratio)
    import torch

    return torch.sym_int(size * ratio)


def out_hw(p: FractionalMaxParams, s) -> tuple:
    if p.output_size is not None:
        return tuple(p.output_size)
    return _ratio_size(s[2], p.ratio[0]), _ratio_size(s[3], p.ratio[1])


def output_shape(p: FractionalMaxParams, s) -> tuple:
    return (s[0], s[1], *out_hw(p, s))


def check_input(p: FractionalMaxParams, x) -> None:
    param = "output_size" if p.output_size is not None else "output_ratio"
    for axis, (out, k) in enumerate(zip(out_hw(p, x.shape), p.kernel)):
        size, name = int(x.shape[2 + axis]), "HW"[axis]
        if out < 1:
            raise ParamError(NAME, param, f"gives an empty output on axis {name} (input {size}); use a larger ratio")
        if out + k - 1 > size:
            raise ParamError(
                NAME,
                param,
                f"output {out} with kernel {k} on axis {name} needs an input of at least {out + k - 1} "
                f"(output + kernel - 1), got {size}; use a smaller output or kernel",
            )


def samples(seed: int, n: int, c: int, device=None):
    """PyTorch's ``_random_samples`` ``[N, C, 2]`` (``(u_w, u_h)`` per plane) for ``seed``."""
    return torch_uniform(seed, (n, c, 2), device)


# ---------------------------------------------------------------- torch


def torch_fractional_max(p: FractionalMaxParams, x, outputs=("y", "indices")):
    import torch.nn.functional as F

    n, c = x.shape[0], x.shape[1]
    u = samples(p.seed, n, c, x.device).to(x.dtype)
    y, indices = F.fractional_max_pool2d(x, p.kernel, output_size=out_hw(p, x.shape), return_indices=True,
                                         _random_samples=u)
    return blocks.take_outputs(outputs, y=y, indices=indices)


# ---------------------------------------------------------------- ONNX


def _onnx_out(op, p: FractionalMaxParams, x, axis: int):
    if p.output_size is not None:
        return const_i64(op, [p.output_size[axis]])
    import numpy as np
    import onnx

    ratio = onnx.numpy_helper.from_array(np.array([p.ratio[axis]], np.float64))
    scaled = op.Mul(op.Cast(dim(op, x, 2 + axis), to=onnx.TensorProto.DOUBLE), op.Constant(value=ratio))
    return op.Cast(scaled, to=onnx.TensorProto.INT64)  # truncates, as int()


def _starts(op, u, size, out, k: int):
    """Window starts ``[N, C, out]`` for samples ``u`` ``[N, C]`` (``generate_intervals``)."""
    one = const_i64(op, [1])
    span = op.Cast(op.Sub(size, const_i64(op, [k])), to=1)
    alpha = op.Div(span, op.Cast(op.Max(op.Sub(out, one), one), to=1))  # out = 1: only the last start
    i = op.Range(const_scalar_i64(op, 0), scalar(op, out), const_scalar_i64(op, 1))
    u3 = unsqueeze(op, u, [2])
    scaled = op.Mul(op.Add(op.Cast(i, to=1), u3), alpha)
    starts = op.Sub(op.Cast(scaled, to=7), op.Cast(op.Mul(u3, alpha), to=7))
    last = op.Sub(size, const_i64(op, [k]))
    return op.Where(op.Equal(i, op.Sub(out, one)), last, starts)


def _range(op, n):
    return op.Range(const_scalar_i64(op, 0), n, const_scalar_i64(op, 1))


def _pick(op, p: FractionalMaxParams, x, with_indices: bool = True):
    """``(y, indices)``: each window's first maximum (row-major) or its last NaN.

    Every window's maximum at stride 1 is one MaxPool; each plane's windows are then read
    from it at the sampled rows and columns (Gather, GatherElements). With indices
    :func:`_pick_separable` instead (MaxPool's indices output is several times slower in
    ONNX Runtime). Only when x holds a NaN (ONNX
    Runtime's MaxPool skips NaN; :func:`blocks.if_nan`) are the windows searched for their
    last NaN instead (:func:`_pick_nan`). ``indices`` None unless ``with_indices``.
    """
    (kh, kw) = p.kernel
    n, c, h, w = (dim(op, x, a) for a in range(4))
    oh, ow = _onnx_out(op, p, x, 0), _onnx_out(op, p, x, 1)
    u = onnx_uniform(op, p.seed, [n, c, const_i64(op, [2])])
    rows = _starts(op, op.Gather(u, const_scalar_i64(op, 1), axis=2), h, oh, kh)  # [N, C, oh]
    cols = _starts(op, op.Gather(u, const_scalar_i64(op, 0), axis=2), w, ow, kw)  # [N, C, ow]
    plane = op.Reshape(_range(op, scalar(op, op.Mul(n, c))), op.Concat(n, c, const_i64(op, [1]), axis=0))

    def exact(op):
        return list(_pick_nan(op, x, rows, cols, plane, kh, kw))

    if with_indices:
        # the fast pick built inside the If's branch: its outputs then need no Identity copies
        return tuple(blocks.if_nan(op, x, exact, lambda op: _pick_fast(op, x, rows, cols, kh, kw), 2))

    def at_windows(op):  # inside the If's branch too
        dense = op.MaxPool(x, kernel_shape=[kh, kw], strides=[1, 1])
        wd = op.Sub(w, const_i64(op, [kw - 1]))
        row_ids = op.Add(op.Mul(plane, op.Sub(h, const_i64(op, [kh - 1]))), rows)  # rows of dense viewed [N*C*Hd, Wd]
        col_ids = op.Expand(unsqueeze(op, cols, [2]), op.Concat(n, c, oh, ow, axis=0))
        rows_of = op.Gather(op.Reshape(dense, op.Concat(const_i64(op, [-1]), wd, axis=0)), row_ids, axis=0)
        return op.GatherElements(rows_of, col_ids, axis=3)  # [N, C, oh, ow]

    return blocks.if_nan(op, x, lambda op: exact(op)[0], at_windows), None


def _pick_fast(op, x, rows, cols, kh: int, kw: int):
    """:func:`_pick_separable` with int32 positions where a plane has fewer than 2**31
    elements (an ``If`` on x's shape), else int64."""
    small = op.Less(op.Mul(dim(op, x, 2), dim(op, x, 3)), const_i64(op, [2**31]))
    return blocks.branch(op, op.Squeeze(small), lambda op: _pick_separable(op, x, rows, cols, kh, kw, True),
                         lambda op: _pick_separable(op, x, rows, cols, kh, kw), 2)


def _pick_separable(op, x, rows, cols, kh: int, kw: int, i32: bool = False):
    """``(y, indices)`` of each window's first maximum in row-major order, for x without
    NaN: ``m = MaxPool(x, (1, kw))`` (each row's maximum over a window's columns) read at
    each window's ``kh`` rows ``[N, C, oh, kh, ow]``, the first row reaching their
    largest (ArgMax, first index), then that row's ``kw`` cells of x ``[N, C, oh, kw,
    ow]`` and the first reaching their largest. The window axis sits before ``ow``: ONNX
    Runtime broadcasts over a last axis of 1 element by element. A row or window of only
    -inf (where MaxPool may give the lowest float) gives its first cell, as PyTorch."""
    w = dim(op, x, 3)
    wd = op.Sub(w, const_i64(op, [kw - 1]))
    row_max = op.MaxPool(x, kernel_shape=[1, kw], strides=[1, 1])  # [N, C, H, Wd]
    flat = const_i64(op, [0, 0, -1])
    cols5, rows5 = unsqueeze(op, cols, [2, 3]), unsqueeze(op, rows, [3, 4])  # [N, C, 1, 1, ow], [N, C, oh, 1, 1]
    a = unsqueeze(op, _range(op, const_scalar_i64(op, kh)), [1])  # [kh, 1]
    kr = unsqueeze(op, _range(op, const_scalar_i64(op, kw)), [1])
    it = 6 if i32 else 7
    if i32:  # positions within a plane in int32: half the bytes to build and read
        w, wd, cols5, rows5, a, kr = (op.Cast(t, to=6) for t in (w, wd, cols5, rows5, a, kr))
    at_rows = op.Add(op.Mul(op.Add(rows5, a), wd), cols5)  # [N, C, oh, kh, ow] into row_max
    v = op.Reshape(op.GatherElements(op.Reshape(row_max, flat), op.Reshape(at_rows, flat), axis=2), op.Shape(at_rows))
    start = op.Add(op.Mul(op.Add(rows5, unsqueeze(op, _first_max(op, v, kh, it)[0], [3])), w), cols5)
    at_cells = op.Add(start, kr)  # [N, C, oh, kw, ow] into x
    cells = op.Reshape(op.GatherElements(op.Reshape(x, flat), op.Reshape(at_cells, flat), axis=2), op.Shape(at_cells))
    axis3 = const_i64(op, [3])
    # both outputs from compute ops (a Squeeze returned out of the If's branch is copied);
    # y the cells' max: their first maximum's value, x holding no NaN here
    col, y = _first_max(op, cells, kw, it)  # [N, C, oh, ow]
    if i32:
        return [y, op.Cast(op.Add(op.Squeeze(start, axis3), col), to=7)]
    return [y, op.Add(op.Squeeze(start, axis3), col)]


def _first_max(op, t, k: int, to: int = 7):
    """``(position, value)`` of the first maximum of ``t`` along axis 3 (``k`` long, no
    NaN), that axis removed. For ``k = 2`` the two halves' Greater and Max (a Split),
    where ONNX Runtime's ArgMax and ReduceMax over a middle axis cost several passes."""
    axis3 = const_i64(op, [3])
    if k == 2:
        a, b = (op.Squeeze(h, axis3) for h in op.Split(t, axis=3, num_outputs=2, _outputs=2))
        return op.Cast(op.Greater(b, a), to=to), op.Max(a, b)
    first = op.ArgMax(t, axis=3, keepdims=0, select_last_index=0)
    return (first if to == 7 else op.Cast(first, to=to)), op.ReduceMax(t, axis3, keepdims=0)


def _pick_nan(op, x, rows, cols, plane, kh: int, kw: int):
    """``(y, indices)``: the value and plane index of each window's last NaN, or (none) of
    its first maximum, on any input: rows first, the column maxima, the first row reaching each and the last NaN row
    ``[N, C, oh, W]``; then each window's columns of those ``[N, C, oh, ow, kw]``: the
    smallest flat index ``r * W + c`` reaching the maximum, the largest holding a NaN."""
    n, c, h, w = (dim(op, x, a) for a in range(4))
    oh, ow = op.Shape(rows, start=2, end=3), op.Shape(cols, start=2, end=3)
    a = _range(op, const_scalar_i64(op, kh))
    row_ids = op.Add(unsqueeze(op, op.Add(op.Mul(plane, h), rows), [3]), a)  # [N, C, oh, kh]
    g = op.Gather(op.Reshape(x, op.Concat(const_i64(op, [-1]), w, axis=0)), row_ids, axis=0)  # [N, C, oh, kh, W]
    axis3, last = const_i64(op, [3]), const_i64(op, [4])
    col_ids = op.Add(unsqueeze(op, cols, [3]), _range(op, const_scalar_i64(op, kw)))  # [N, C, ow, kw]
    spread = op.Concat(n, c, oh, op.Mul(ow, const_i64(op, [kw])), axis=0)
    flat_cols = op.Expand(op.Reshape(col_ids, const_i64(op, [0, 0, 1, -1])), spread)  # [N, C, oh, ow*kw]
    shape5 = op.Concat(n, c, oh, ow, const_i64(op, [kw]), axis=0)
    cols5, rows5 = unsqueeze(op, col_ids, [2]), unsqueeze(op, rows, [3, 4])

    def take(t):  # [N, C, oh, W] -> [N, C, oh, ow, kw] at each window's columns
        return op.Reshape(op.GatherElements(t, flat_cols, axis=3), shape5)

    top = op.ReduceMax(g, axis3, keepdims=1)
    first_row = op.ArgMax(op.Cast(op.Equal(g, top), to=1), axis=3, keepdims=0)
    cm = take(op.Squeeze(top, axis3))
    flat = op.Add(op.Mul(op.Add(rows5, take(first_row)), w), cols5)
    hit = op.Equal(cm, op.ReduceMax(cm, last, keepdims=1))
    first = op.ReduceMin(op.Where(hit, flat, const_scalar_i64(op, 2**62)), last, keepdims=0)
    nan_row = take(op.ReduceMax(op.Where(op.IsNaN(g), unsqueeze(op, a, [1]), const_scalar_i64(op, -1)), axis3,
                                keepdims=0))
    found = op.GreaterOrEqual(nan_row, const_scalar_i64(op, 0))
    nan_flat = op.Where(found, op.Add(op.Mul(op.Add(rows5, nan_row), w), cols5), const_scalar_i64(op, -1))
    last_nan = op.ReduceMax(nan_flat, last, keepdims=0)
    indices = op.Where(op.GreaterOrEqual(last_nan, const_scalar_i64(op, 0)), last_nan, first)  # [N, C, oh, ow]
    nc_flat = const_i64(op, [0, 0, -1])
    y = op.GatherElements(op.Reshape(x, nc_flat), op.Reshape(indices, nc_flat), axis=2)
    return op.Reshape(y, op.Shape(indices)), indices


def onnx_fractional_max(op, p: FractionalMaxParams, x, outputs=("y", "indices")):
    y, indices = _pick(op, p, x, "indices" in outputs)
    return blocks.take_outputs(outputs, y=y, indices=indices)


def onnx_fractional_max_backward(op, p: FractionalMaxParams, x, grad_y):
    _, indices = _pick(op, p, x)
    return blocks.scatter_add(op, x, indices, grad_y)


def fractional_max_work(p: FractionalMaxParams, shapes, outputs=("y",), backward=False) -> int:
    """The stride-1 MaxPool ``[N, C, H - kh + 1, W - kw + 1]``, its rows at the windows
    ``[N, C, oh, W']``, the int64 column index ``[N, C, oh, ow]``; with indices (and for
    backward) the row maxima ``[N, C, H, W - kw + 1]`` and the int64 positions of each
    window's rows and cells ``[N, C, oh, kh or kw, ow]``; on input holding NaN, the row
    windows ``[N, C, oh, kh, W]`` (and their int64 NaN rows) and each window's columns
    ``[N, C, oh, ow, kw]`` with int64 flat indices; backward: the scatter into x's shape."""
    n, c, h, w = shapes["x"]
    oh, ow = (max(int(d), 0) for d in out_hw(p, shapes["x"]))
    kh, kw = p.kernel
    hd, wd = max(h - kh + 1, 0), max(w - kw + 1, 0)
    work = max(n * c * hd * wd, 2 * n * c * oh * wd, 2 * n * c * oh * ow,
               2 * n * c * oh * kh * w, 2 * n * c * oh * ow * kw)
    if backward or "indices" in outputs:
        work = max(work, n * c * h * wd, 2 * n * c * oh * max(kh, kw) * ow)
    if backward:
        work = max(work, blocks.scatter_add_work(n, c, h, w, oh * ow))
    return work


register(
    OpSpec(
        name=NAME,
        torch_stock="F.fractional_max_pool2d",
        family="window",
        params=FractionalMaxParams,
        torch_fn=torch_fractional_max,
        onnx_fn=onnx_fractional_max,
        onnx_backward=onnx_fractional_max_backward,
        output_shape=output_shape,
        check_input=check_input,
        module_name="FractionalMaxPool",
        outputs=("y", "indices"),
        work=fractional_max_work,
        doc=__doc__,
    )
)
