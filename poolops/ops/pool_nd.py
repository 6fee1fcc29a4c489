"""1-D and 3-D pooling: ``max``, ``avg``, ``adaptive_avg``, ``adaptive_max``,
``global_avg`` and ``global_max`` on ``x [N, C, L]`` (``*1d``) and ``x [N, C, D, H, W]``
(``*3d``), with PyTorch's semantics: ``F.max_pool1d/3d`` (kernel, stride, padding,
dilation, ceil_mode, indices into each ``(n, c)`` signal / volume, ``l`` or
``(d*H + h)*W + w``), ``F.avg_pool1d/3d`` (count_include_pad; divisor_override in 3-D,
as torch), ``F.adaptive_avg_pool1d/3d`` and ``F.adaptive_max_pool1d/3d`` (bin ``i``
covers ``[floor(i*L/o), ceil((i+1)*L/o))`` on each axis; with indices) and the global
mean / max over all spatial axes (``[N, C, 1]``, ``[N, C, 1, 1, 1]``). NaN propagates
through every max as in PyTorch (the graphs add the NaN pass ``propagate_nan=False``
skips), ties go to the first maximum in row-major order. Parameters are given per axis
(an int stands for all axes: ``kernel=3`` is ``(3, 3, 3)`` in 3-D). As PyTorch,
``avg3d`` takes no input smaller than its kernel on any axis (padding or not), and no
op takes a window of padding only (``dilation``).

Example: ``max1d`` of ``[1, 3, 2, 2, 5]`` with kernel 2 gives ``[3, 2]`` (indices
``[1, 2]``; the last element is dropped, ``ceil_mode=True`` keeps it: ``[3, 2, 5]``);
``adaptive_avg1d`` of ``[1, 2, 3, 4, 5]`` to 3 bins (``[0, 2) [1, 4) [3, 5)``) gives
``[1.5, 3, 4.5]``.

ONNX (standard opset, N, C and every spatial size dynamic): MaxPool / AveragePool of
the input's rank (explicit padding in ceil mode, indices converted from the whole
tensor to each signal / volume; in 1-D, for finite inputs, windows that tile x
(kernel = stride, no padding or dilation, L a multiple of the kernel) take their indices
from an ArgMax over x viewed ``[N, C, L/k, k]`` instead), window sums over PyTorch's divisors where
AveragePool's differ; adaptive average as one bin-summing matrix product per axis (in
1-D, for L a multiple of 64 and L >= 256 * output_size, from the sums of blocks of 64:
each bin's whole blocks and its two partial edges, one pass over x);
adaptive max as bin gathers per axis and ReduceMax (with indices: every bin gathered
whole, first ArgMax), in 1-D, for finite inputs and L >= 256 * output_size, from
the maxima of blocks of 64 (one pass over x: each bin's whole blocks and its two partial
edges; indices: the first element equal to the max among the edges and the first block
that reaches it); in 3-D, for finite inputs and uniform bins (D, H, W multiples of the
output size), as ReduceMax over runs of x, W then H then D (indices: the first slab and
row of the bin that reach the max, then that row's first element equal to it); global
ops as ReduceMean / ReduceMax (indices: the first block that
reaches the max, then its first element equal to it). The max ops run their NaN and
-inf passes only for inputs that hold a NaN or an infinity (an ``If`` on one
``ReduceSum`` of x). Backward graphs: max and
adaptive max scatter-add to the argmax, average ops spread evenly (the transposed
matrices), global max to the first maximum. As for ``adaptive_avg``, the matrix
products keep a NaN or inf in its own bins: where one is present (one ``ReduceSum`` of
the small result, or of the gradient) they run as exact passes, where plain ones would
spread ``0 * inf`` as NaN to the other bins of its row.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator

from poolops.onnx import blocks
from poolops.onnx.builder import const_f32, const_i64, const_scalar_i64, dim, scalar, unsqueeze
from poolops.ops._window import padding_only_window
from poolops.params import OpParams, ParamError, invalid
from poolops.registry import OpSpec, register
from poolops.shapes import pool_out_size

_Pos = Annotated[int, Field(gt=0)]
_NonNeg = Annotated[int, Field(ge=0)]


def _repeat(n: int):
    """``3 -> (3,) * n``; a 1-sequence is repeated; anything else goes on to validation."""

    def to(value):
        if isinstance(value, bool):
            return value
        if isinstance(value, int):
            return (value,) * n
        if isinstance(value, (list, tuple)) and len(value) == 1:
            return (value[0],) * n
        return value

    return to


def _maybe(to):
    return lambda v: None if v is None else to(v)


Positive1 = Annotated[tuple[_Pos], BeforeValidator(_repeat(1))]
NonNegative1 = Annotated[tuple[_NonNeg], BeforeValidator(_repeat(1))]
OptionalPositive1 = Annotated[tuple[_Pos] | None, BeforeValidator(_maybe(_repeat(1)))]
Positive3 = Annotated[tuple[_Pos, _Pos, _Pos], BeforeValidator(_repeat(3))]
NonNegative3 = Annotated[tuple[_NonNeg, _NonNeg, _NonNeg], BeforeValidator(_repeat(3))]
OptionalPositive3 = Annotated[tuple[_Pos, _Pos, _Pos] | None, BeforeValidator(_maybe(_repeat(3)))]


class _Window(OpParams):
    """A window per axis; ``strides`` defaults to the kernel, padding at most half of it."""

    @property
    def strides(self) -> tuple[int, ...]:
        return self.stride or self.kernel

    @property
    def dilations(self) -> tuple[int, ...]:
        return getattr(self, "dilation", None) or (1,) * len(self.kernel)

    @model_validator(mode="after")
    def _padding_at_most_half_kernel(self):
        if any(p > k // 2 for k, p in zip(self.kernel, self.padding)):
            raise invalid("padding", f"must be at most half the kernel ({self.kernel}), got {self.padding}")
        return self


class Max1dParams(_Window):
    kernel: Positive1 = (2,)
    stride: OptionalPositive1 = None
    padding: NonNegative1 = (0,)
    dilation: Positive1 = (1,)
    ceil_mode: bool = False
    propagate_nan: bool = True
    """See ``max``: False skips the NaN pass in ONNX."""


class Max3dParams(_Window):
    kernel: Positive3 = (2, 2, 2)
    stride: OptionalPositive3 = None
    padding: NonNegative3 = (0, 0, 0)
    dilation: Positive3 = (1, 1, 1)
    ceil_mode: bool = False
    propagate_nan: bool = True
    """See ``max``: False skips the NaN pass in ONNX."""


class Avg1dParams(_Window):
    kernel: Positive1 = (2,)
    stride: OptionalPositive1 = None
    padding: NonNegative1 = (0,)
    ceil_mode: bool = False
    count_include_pad: bool = True


class Avg3dParams(_Window):
    kernel: Positive3 = (2, 2, 2)
    stride: OptionalPositive3 = None
    padding: NonNegative3 = (0, 0, 0)
    ceil_mode: bool = False
    count_include_pad: bool = True
    divisor_override: int | None = Field(default=None, gt=0)


class Adaptive1dParams(OpParams):
    output_size: Positive1 = (7,)


class Adaptive3dParams(OpParams):
    output_size: Positive3 = (4, 4, 4)


class AdaptiveMax1dParams(Adaptive1dParams):
    propagate_nan: bool = True
    """See ``max``: False skips the NaN pass in ONNX."""


class AdaptiveMax3dParams(Adaptive3dParams):
    propagate_nan: bool = True
    """See ``max``: False skips the NaN pass in ONNX."""


class GlobalAvgParams(OpParams):
    pass


class GlobalMaxParams(OpParams):
    propagate_nan: bool = True
    """See ``max``: False skips the NaN check in ONNX."""


def _prod(values) -> int:
    out = 1
    for v in values:
        out *= v
    return out


# ---------------------------------------------------------------- shapes and checks


def _window_shape(p: _Window, s):
    return (s[0], s[1], *(pool_out_size(s[2 + a], k, st, pd, d, p.ceil_mode)
                          for a, (k, st, pd, d) in enumerate(zip(p.kernel, p.strides, p.padding, p.dilations))))


def _axis_name(r: int, a: int) -> str:
    return "L" if r == 1 else "DHW"[a]


def _check_window(name: str, unpadded: bool = False):
    def check(p: _Window, x) -> None:
        """As ``max``'s check, per axis: ``kernel`` when a window is larger than the padded
        input (with ``unpadded``, than the input: PyTorch's ``avg_pool3d`` rule),
        ``dilation`` when a window holds only padding."""
        r = len(p.kernel)
        for a, (k, s, pad, d) in enumerate(zip(p.kernel, p.strides, p.padding, p.dilations)):
            size = int(x.shape[2 + a])
            if unpadded and size < k:
                raise ParamError(name, "kernel", f"kernel {k} is larger than the input ({size}) on axis "
                                 f"{_axis_name(r, a)}: PyTorch's avg_pool3d takes no input smaller than its kernel, "
                                 "padding or not; use a smaller kernel")
            if size + 2 * pad < d * (k - 1) + 1:
                raise ParamError(name, "kernel", f"window {d * (k - 1) + 1} is larger than the padded input "
                                 f"({size} + 2*{pad}) on axis {_axis_name(r, a)}; use a smaller kernel or more padding")
            w = padding_only_window(size, k, s, pad, d)
            if w is not None:
                raise ParamError(name, "dilation", f"window {w} on axis {_axis_name(r, a)} covers only padding "
                                 f"(input {size}, padding {pad}, dilation {d}); use less padding or dilation, or a larger input")

    return check


# ---------------------------------------------------------------- torch


def _torch_max(r: int):
    def fn(p, x, outputs=("y", "indices")):
        import torch.nn.functional as F

        pool = F.max_pool1d if r == 1 else F.max_pool3d
        args = (p.kernel, p.strides, p.padding, p.dilation, p.ceil_mode)
        if "indices" not in outputs:
            return (pool(x, *args),)
        y, indices = pool(x, *args, return_indices=True)
        return blocks.take_outputs(outputs, y=y, indices=indices)

    return fn


def _torch_avg(r: int):
    def fn(p, x, outputs=("y",)):
        import torch.nn.functional as F

        if r == 1:
            return (F.avg_pool1d(x, p.kernel, p.strides, p.padding, p.ceil_mode, p.count_include_pad),)
        return (F.avg_pool3d(x, p.kernel, p.strides, p.padding, p.ceil_mode, p.count_include_pad, p.divisor_override),)

    return fn


def _torch_adaptive_avg(r: int):
    def fn(p, x, outputs=("y",)):
        import torch.nn.functional as F

        return ((F.adaptive_avg_pool1d if r == 1 else F.adaptive_avg_pool3d)(x, p.output_size),)

    return fn


def _torch_adaptive_max(r: int):
    def fn(p, x, outputs=("y", "indices")):
        import torch.nn.functional as F

        pool = F.adaptive_max_pool1d if r == 1 else F.adaptive_max_pool3d
        if "indices" not in outputs:
            return (pool(x, p.output_size),)
        y, indices = pool(x, p.output_size, return_indices=True)
        return blocks.take_outputs(outputs, y=y, indices=indices)

    return fn


def _torch_global_avg(r: int):
    def fn(p, x, outputs=("y",)):
        return (x.mean(dim=tuple(range(2, 2 + r)), keepdim=True),)

    return fn


def _torch_global_max(r: int):
    def fn(p, x, outputs=("y", "indices")):
        import torch.nn.functional as F

        # adaptive max pooling to 1, not amax: its gradient goes to one argmax, amax splits ties
        pool = F.adaptive_max_pool1d if r == 1 else F.adaptive_max_pool3d
        if "indices" not in outputs:
            return (pool(x, 1),)
        y, indices = pool(x, 1, return_indices=True)
        return blocks.take_outputs(outputs, y=y, indices=indices)

    return fn


# ---------------------------------------------------------------- ONNX building blocks (any rank)


def _sizes(op, x, r: int) -> list:
    return [dim(op, x, 2 + a) for a in range(r)]


def _product(op, dims):
    out = dims[0]
    for d in dims[1:]:
        out = op.Mul(out, d)
    return out


def _ceil_padding(op, x, p: _Window, value: float):
    """x padded so that a floor-mode pool without padding gives PyTorch's ceil-mode
    output (``p`` before, ``p`` plus what the last window needs after, every axis)."""
    r = len(p.kernel)
    ends = []
    for a, (k, s, pad, d) in enumerate(zip(p.kernel, p.strides, p.padding, p.dilations)):
        size = dim(op, x, 2 + a)
        out = blocks.pool_out_dim(op, size, k, s, pad, d, True)
        need = op.Sub(op.Add(op.Mul(op.Sub(out, const_i64(op, [1])), const_i64(op, [s])), const_i64(op, [d * (k - 1) + 1])),
                      op.Add(size, const_i64(op, [2 * pad])))
        ends.append(op.Add(op.Max(need, const_i64(op, [0])), const_i64(op, [pad])))
    pads = op.Concat(const_i64(op, [0, 0, *p.padding, 0, 0]), *ends, axis=0) if r else None
    return op.Pad(x, pads, const_f32(op, value))


def _ravel(op, coords, sizes):
    """Row-major flat index of per-axis ``coords`` in ``sizes``."""
    flat = coords[0]
    for c, s in zip(coords[1:], sizes[1:]):
        flat = op.Add(op.Mul(flat, s), c)
    return flat


def _unravel(op, flat, sizes):
    coords = []
    for s in reversed(sizes[1:]):
        coords.append(op.Mod(flat, s))
        flat = op.Div(flat, s)
    return [flat, *reversed(coords)]


def max_pool_nd(op, x, p: _Window, with_indices: bool):
    """PyTorch ``max_pool1d/3d`` on ONNX MaxPool: ``(y, indices or None)``, indices into
    each ``(n, c)`` signal or volume."""
    r = len(p.kernel)
    attrs = dict(kernel_shape=list(p.kernel), strides=list(p.strides), dilations=list(p.dilations))
    if not p.ceil_mode:
        attrs["pads"] = list(p.padding) * 2
        if not with_indices:
            return op.MaxPool(x, **attrs, _outputs=1), None
        y, idx = op.MaxPool(x, **attrs, _outputs=2)
        return y, op.Mod(idx, _product(op, _sizes(op, x, r)))
    xp = _ceil_padding(op, x, p, -float("inf"))
    if not with_indices:
        return op.MaxPool(xp, **attrs, _outputs=1), None
    y, idx = op.MaxPool(xp, **attrs, _outputs=2)
    padded = _sizes(op, xp, r)
    coords = _unravel(op, op.Mod(idx, _product(op, padded)), padded)
    coords = [op.Sub(c, const_i64(op, [pad])) for c, pad in zip(coords, p.padding)]
    return y, _ravel(op, coords, _sizes(op, x, r))


def scatter_add_nd(op, x, indices, values, r: int):
    """``zeros_like(x)`` plus ``values`` added at the flat spatial ``indices`` of each
    ``(n, c)`` (no -1 in the shapes: N or C may be 0)."""
    nc = op.Mul(dim(op, x, 0), dim(op, x, 1))
    flat_in = op.Concat(nc, _product(op, _sizes(op, indices, r)), axis=0)
    zeros = op.ConstantOfShape(op.Concat(nc, _product(op, _sizes(op, x, r)), axis=0))
    out = op.ScatterElements(zeros, op.Reshape(indices, flat_in), op.Reshape(values, flat_in), axis=1, reduction="add")
    return op.Reshape(out, op.Shape(x))


def _window_sum(op, x, p: _Window):
    """Sum over each window (zero padding), PyTorch's output size."""
    if p.ceil_mode:
        xp, pads = _ceil_padding(op, x, p, 0.0), [0] * (2 * len(p.kernel))
    else:
        xp, pads = x, list(p.padding) * 2
    mean = op.AveragePool(xp, kernel_shape=list(p.kernel), strides=list(p.strides), pads=pads, count_include_pad=1)
    return op.Mul(mean, const_f32(op, _prod(p.kernel)))


def _window_bounds(op, x, p: _Window):
    """Per axis ``(starts, ends, size)`` of PyTorch's windows (unpadded coordinates)."""
    out = []
    for a, (k, s, pad) in enumerate(zip(p.kernel, p.strides, p.padding)):
        size = dim(op, x, 2 + a)
        n = blocks.pool_out_dim(op, size, k, s, pad, 1, p.ceil_mode)
        starts, ends = blocks.window_bounds(op, n, k, s, pad)
        out.append((starts, ends, size))
    return out


def _along(op, v, a: int, r: int):
    """A ``[o]`` vector shaped to broadcast along spatial axis ``a`` of an ``r``-axis map."""
    return op.Reshape(v, const_i64(op, [-1] + [1] * (r - 1 - a)))


def _avg_divisor(op, x, p):
    """PyTorch's divisor of each window: the product over axes of the window clipped to
    the padded input (``count_include_pad``) or to the input."""
    if getattr(p, "divisor_override", None) is not None:
        return const_f32(op, p.divisor_override)
    r = len(p.kernel)
    total = None
    for a, ((starts, ends, size), pad) in enumerate(zip(_window_bounds(op, x, p), p.padding)):
        ends = op.Min(ends, op.Add(size, const_i64(op, [pad])))
        if not p.count_include_pad:
            starts, ends = op.Max(starts, const_i64(op, [0])), op.Min(ends, size)
        count = _along(op, op.Cast(op.Sub(ends, starts), to=1), a, r)
        total = count if total is None else op.Mul(total, count)
    return total


def _contract(op, t, mats, matmul=None):
    """Apply ``mats[a]`` (``[out_a, in_a]``) along each spatial axis ``a`` of ``t``
    (``[N, C, in_1, ...]`` -> ``[N, C, out_1, ...]``): the last axis by ``t @ M^T``, the
    one before by ``M @ t``, a third (D) on ``t`` viewed ``[N, C, D, H*W]``.
    ``matmul(op, a, b, matrix_left)``: plain MatMuls by default (see :func:`_bin_contract`)."""
    if matmul is None:
        matmul = _plain_matmul
    r = len(mats)
    t = matmul(op, t, op.Transpose(mats[-1], perm=[1, 0]), False)
    if r >= 2:
        t = matmul(op, mats[-2], t, True)
    if r == 3:
        n, c, d, h, w = (dim(op, t, i) for i in range(5))
        flat = op.Reshape(t, op.Concat(n, c, d, op.Mul(h, w), axis=0))
        t = matmul(op, mats[0], flat, True)
        t = op.Reshape(t, op.Concat(n, c, dim(op, mats[0], 0), h, w, axis=0))
    return t


def _plain_matmul(op, a, b, matrix_left: bool):
    return op.MatMul(a, b)


def _bin_contract(op, t, mats, check_result: bool):
    """:func:`_contract` with PyTorch's NaN and infinities (each output as if its bin were
    summed alone; plain MatMuls spread ``0 * inf`` as NaN): plain MatMuls, and
    :func:`blocks.bin_matmul` where ``t`` holds NaN or an infinity. Which is asked of a
    ``ReduceSum`` of the plain result (``check_result``: any NaN or infinity of ``t``
    makes all of it non-finite, see :func:`blocks.bin_sums`) or of ``t`` (when ``t`` is the
    smaller, a gradient)."""
    def exact(sub):
        return _contract(sub, t, mats, blocks.bin_matmul)

    if check_result:
        fast = _contract(op, t, mats)
        return blocks.if_finite(op, fast, lambda sub: fast, exact)
    return blocks.if_finite(op, t, lambda sub: _contract(sub, t, mats), exact)


def _transposed(op, mats):
    return [op.Transpose(m, perm=[1, 0]) for m in mats]


def _adaptive_bounds(op, x, output_size):
    return [(*blocks.adaptive_bounds(op, dim(op, x, 2 + a), o), dim(op, x, 2 + a)) for a, o in enumerate(output_size)]


def _bin_index(op, starts, ends):
    """``[o, K]`` (K the longest bin): ``min(start + k, end - 1)``; repeating a bin's last
    element changes neither its max nor its first argmax."""
    k = op.ReduceMax(op.Sub(ends, starts), keepdims=0)
    ks = unsqueeze(op, op.Range(const_scalar_i64(op, 0), k, const_scalar_i64(op, 1)), [0])
    return op.Min(op.Add(unsqueeze(op, starts, [1]), ks), unsqueeze(op, op.Sub(ends, const_i64(op, [1])), [1]))


def _bin_max(op, x, bounds):
    """Max over adaptive bins, one axis at a time (ReduceMax: NaN not propagated)."""
    t = x
    for a, (starts, ends, _) in enumerate(bounds):
        t = op.ReduceMax(op.Gather(t, _bin_index(op, starts, ends), axis=2 + a), const_i64(op, [3 + a]), keepdims=0)
    return t


def _bin_argmax(op, x, bounds):
    """``(y, indices, nan)`` over adaptive bins: every bin gathered whole ``[N, C, o..., K...]``,
    its first maximum in row-major order (as PyTorch's), its flat index in x's spatial
    axes, and whether the bin holds a NaN."""
    r = len(bounds)
    t = x
    idxs = []
    for a, (starts, ends, _) in enumerate(bounds):
        idx = _bin_index(op, starts, ends)
        idxs.append(idx)
        t = op.Gather(t, idx, axis=2 + 2 * a)  # [N, C, o1, K1, ..., L_{a+1}, ...]
    t = op.Transpose(t, perm=[0, 1] + [2 + 2 * a for a in range(r)] + [3 + 2 * a for a in range(r)])
    ks = [dim(op, i, 1) for i in idxs]
    flat = op.Reshape(t, op.Concat(op.Shape(t, start=0, end=2 + r), _product(op, ks), axis=0))
    y = op.ReduceMax(flat, const_i64(op, [-1]), keepdims=0)
    nan = op.IsNaN(op.ReduceSumSquare(flat, const_i64(op, [-1]), keepdims=0))
    first = op.ArgMax(flat, axis=-1, keepdims=0, select_last_index=0)
    coords = _unravel(op, first, ks)
    pos = [op.Add(_along(op, starts, a, r), c) for a, ((starts, _, _), c) in enumerate(zip(bounds, coords))]
    return y, _ravel(op, pos, [b[2] for b in bounds]), nan


def _nan_where(op, nan, y):
    return op.Where(nan, const_f32(op, float("nan")), y)


# ---------------------------------------------------------------- block maxima (finite inputs, 1-D bins)

BLOCK = 64
"""Window of the block maxima (one MaxPool over x): ONNX Runtime's MaxPool runs fastest
near there, and a bin's two edges gather at most ``2 * BLOCK`` elements."""

_NEVER = 2**62  # a position no input reaches: the neutral element of the first-match ReduceMin


def _if_finite(op, x, r: int, fast, exact, n: int = 1):
    """:func:`blocks.if_finite` with its sum over x viewed ``[N, C, S / BLOCK, BLOCK]`` (S the
    spatial size) where BLOCK divides S: down the middle axis first (vectorised along the
    contiguous blocks), about twice as fast in ONNX Runtime as a ReduceSum over all of x."""
    if not blocks.has_subgraphs(op):
        return exact(op)
    flat = _flat(op, x, r) if r > 1 else x
    size, b = dim(op, flat, 2), const_i64(op, [BLOCK])

    def columns(op):
        runs = op.Reshape(flat, op.Concat(op.Shape(x, start=0, end=2), op.Div(size, b), b, axis=0))
        return op.ReduceSum(op.ReduceSum(runs, const_i64(op, [2]), keepdims=0), keepdims=0)

    total = blocks.branch(op, op.Equal(op.Mod(size, b), const_i64(op, [0])), columns,
                          lambda op: op.ReduceSum(x, keepdims=0))
    return blocks.branch(op, op.IsNaN(op.Mul(total, const_f32(op, 0.0))), exact, fast, n)


def _block_max(op, x, lowest_is_inf: bool = False):
    """Maxima of the blocks of :data:`BLOCK` elements of ``x [N, C, L]``, ``[N, C, ceil(L / B)]``
    (the last block may be shorter): a ReduceMax over x viewed ``[N, C, L / B, B]`` when B
    divides L (an ``If``; twice as fast), else a MaxPool. For finite x: the MaxPool skips
    NaN and gives -FLT_MAX for a block of only -inf (``lowest_is_inf``: taken for -inf)."""
    b = BLOCK

    def pooled(op):
        bm = op.MaxPool(x, kernel_shape=[b], strides=[b], ceil_mode=1)
        if lowest_is_inf:
            bm = op.Where(op.Equal(bm, const_f32(op, blocks.FLOAT_LOWEST)), const_f32(op, -float("inf")), bm)
        return bm

    if not blocks.has_subgraphs(op):
        return pooled(op)
    size = dim(op, x, 2)
    runs = op.Concat(op.Shape(x, start=0, end=2), op.Div(size, const_i64(op, [b])), const_i64(op, [b]), axis=0)
    return blocks.branch(op, op.Equal(op.Mod(size, const_i64(op, [b])), const_i64(op, [0])),
                         lambda op: op.ReduceMax(op.Reshape(x, runs), const_i64(op, [3]), keepdims=0), pooled)


def _first_max(op, x, lowest_is_inf: bool = False):
    """Max of ``x [N, C, L]`` and the position of its first maximum, ``[N, C, 1]`` each: the
    first block that reaches the max (:func:`_block_max`), then the first element of that
    block that does. For finite x (see :func:`_block_max`)."""
    b = BLOCK
    bm = _block_max(op, x, lowest_is_inf)
    y = op.ReduceMax(bm, const_i64(op, [2]), keepdims=1)
    block = op.ArgMax(bm, axis=2, keepdims=1, select_last_index=0)  # [N, C, 1]
    inside = op.Min(op.Add(op.Mul(block, const_i64(op, [b])), const_i64(op, range(b))), op.Sub(dim(op, x, 2), const_i64(op, [1])))
    # the last element repeated past the end comes after the first maximum
    first = op.ArgMax(op.GatherElements(x, inside, axis=2), axis=2, keepdims=1, select_last_index=0)
    return y, op.Add(op.Mul(block, const_i64(op, [b])), first)


def _block_bin_max(op, x, starts, ends, with_indices: bool, lowest_is_inf: bool = False):
    """Max over 1-D bins ``[starts, ends)`` (``[o]``, non-empty) of ``x [N, C, L]`` from one
    MaxPool over blocks of :data:`BLOCK` elements: each bin is its whole blocks (a gather of
    the small block maxima) and its two partial edges (a gather of at most ``2 * BLOCK``
    elements), where a gather of each bin whole copies x element by element (ten times a
    read of x in ONNX Runtime). With indices, the first position that reaches the max: the
    first edge element, or the first element of the first whole block, equal to it.

    Returns ``(y, indices or None)``, ``[N, C, o]``. For finite x (ONNX Runtime's MaxPool
    skips NaN and gives -FLT_MAX for a block of only -inf; ``lowest_is_inf`` takes
    -FLT_MAX for -inf)."""
    b = BLOCK
    one, bb = const_i64(op, [1]), const_i64(op, [b])
    bm = _block_max(op, x, lowest_is_inf)
    first_full = op.Div(op.Add(starts, const_i64(op, [b - 1])), bb)  # [o]
    end_full = op.Div(ends, bb)
    count = op.Max(op.Sub(end_full, first_full), const_i64(op, [0]))  # whole blocks per bin
    kb = op.Max(op.ReduceMax(count, keepdims=0), const_scalar_i64(op, 1))
    js = unsqueeze(op, op.Range(const_scalar_i64(op, 0), kb, const_scalar_i64(op, 1)), [0])  # [1, kb]
    which = op.Min(op.Add(unsqueeze(op, first_full, [1]), js), op.Sub(dim(op, bm, 2), one))  # [o, kb]
    # gathered as rows of the transposed block maxima [L / B, N*C] (a row copied per index,
    # where a gather along the last axis copies element by element)
    nc = op.Shape(x, start=0, end=2)
    rows = op.Transpose(op.Reshape(bm, op.Concat(op.Mul(dim(op, x, 0), dim(op, x, 1)), dim(op, bm, 2), axis=0)), perm=[1, 0])
    whole = op.Where(unsqueeze(op, op.Less(js, unsqueeze(op, count, [1])), [2]), op.Gather(rows, which, axis=0),
                     const_f32(op, -float("inf")))  # [o, kb, N*C]
    per_plane = op.Concat(nc, op.Shape(starts), axis=0)  # [N, C, o]
    # the edges [start, head_end) and [tail_start, end), each shorter than a block (a bin
    # within one block: both are the whole bin); clamped indices repeat an element of the bin
    ks = unsqueeze(op, const_i64(op, range(b)), [0])  # [1, B]
    head_end = op.Max(op.Min(ends, op.Mul(first_full, bb)), op.Add(starts, one))
    tail_start = op.Min(op.Max(starts, op.Mul(end_full, bb)), op.Sub(ends, one))
    head = op.Min(op.Add(unsqueeze(op, starts, [1]), ks), unsqueeze(op, op.Sub(head_end, one), [1]))
    tail = op.Min(op.Add(unsqueeze(op, tail_start, [1]), ks), unsqueeze(op, op.Sub(ends, one), [1]))
    pos = op.Concat(head, tail, axis=1)  # [o, 2B]
    # GatherElements: several times faster than a Gather along x's last axis in ONNX Runtime
    edges = op.Reshape(op.GatherElements(x, op.Expand(op.Reshape(pos, const_i64(op, [1, 1, -1])), op.Concat(
        nc, op.Mul(op.Shape(starts), const_i64(op, [2 * b])), axis=0)), axis=2), op.Concat(per_plane, const_i64(op, [2 * b]), axis=0))
    whole_max = op.Reshape(op.Transpose(op.ReduceMax(whole, const_i64(op, [1]), keepdims=0), perm=[1, 0]), per_plane)
    y = op.Max(op.ReduceMax(edges, const_i64(op, [3]), keepdims=0), whole_max)
    if not with_indices:
        return y, None
    never = op.Constant(value_int=_NEVER)
    yk = unsqueeze(op, y, [3])
    at_edges = op.ReduceMin(op.Where(op.Equal(edges, yk), pos, never), const_i64(op, [3]), keepdims=0)
    first_block = op.Reshape(op.Transpose(op.ArgMax(whole, axis=1, keepdims=0, select_last_index=0), perm=[1, 0]), per_plane)
    block = unsqueeze(op, op.Add(first_block, first_full), [3])  # [N, C, o, 1]
    inside = op.Min(op.Add(op.Mul(block, bb), ks), op.Sub(dim(op, x, 2), one))  # [N, C, o, B]
    vals = op.GatherElements(x, op.Reshape(inside, op.Concat(nc, op.Mul(op.Shape(starts), bb), axis=0)), axis=2)
    hit = op.And(op.Equal(op.Reshape(vals, op.Shape(inside)), yk), unsqueeze(op, op.Greater(count, const_i64(op, [0])), [1]))
    in_blocks = op.ReduceMin(op.Where(hit, inside, never), const_i64(op, [3]), keepdims=0)
    return y, op.Min(at_edges, in_blocks)


# ---------------------------------------------------------------- ONNX ops


def _tiles(p) -> bool:
    """Windows that tile x where each size is a multiple of the kernel: kernel = stride,
    no padding, no dilation."""
    return tuple(p.kernel) == tuple(p.strides) and not any(p.padding) and all(d == 1 for d in p.dilations)


def _tiled_argmax(op, x, p):
    """``(y, indices)`` of a 1-D max pool whose windows tile x (:func:`_tiles`, L a multiple
    of the kernel): the MaxPool and the first ArgMax over x viewed ``[N, C, L/k, k]``, about
    twice as fast as MaxPool's own indices in ONNX Runtime. (In 3-D the same over runs,
    :func:`_runs_max3d`, was slower at kernel 2: every step broadcasts over runs of 2.)
    For finite x."""
    size, k = dim(op, x, 2), const_i64(op, [p.kernel[0]])
    out = op.Div(size, k)
    rows = op.Reshape(x, op.Concat(op.Shape(x, start=0, end=2), out, k, axis=0))
    first = op.ArgMax(rows, axis=3, keepdims=0, select_last_index=0)
    y = op.MaxPool(x, kernel_shape=list(p.kernel), strides=list(p.strides), _outputs=1)
    return y, op.Add(op.Mul(_range(op, out), k), first)


def _onnx_max(op, p, x, outputs=("y", "indices")):
    with_indices = "indices" in outputs
    if len(p.kernel) == 1 and not with_indices and p.propagate_nan and blocks.has_subgraphs(op):
        # 1-D: the MaxPool inside each branch, where a branch that returned one made outside
        # copies it (an Identity: 0.66 ms beside the MaxPool's 2.5 at 1x64x65536, kernel 2).
        # 3-D (y 1/8 of x at kernel 2) measured slower so at 1x64x16x64x64: as before
        def pool(op, m):
            return max_pool_nd(op, m, p, False)[0]

        y = _if_finite(op, x, len(p.kernel), lambda op: pool(op, x), lambda op: blocks.exact_max(op, x, pool(op, x), pool))
        return blocks.take_outputs(outputs, y=y)
    if not (with_indices and blocks.has_subgraphs(op)):
        y, indices = max_pool_nd(op, x, p, with_indices)
        if p.propagate_nan:
            y = _if_finite(op, x, len(p.kernel), lambda op: y,
                           lambda op: blocks.exact_max(op, x, y, lambda op, m: max_pool_nd(op, m, p, False)[0]))
        return blocks.take_outputs(outputs, y=y, indices=indices)

    def pooled(op, exact: bool):
        y, indices = max_pool_nd(op, x, p, True)
        if exact:
            y = blocks.exact_max(op, x, y, lambda op, m: max_pool_nd(op, m, p, False)[0])
        return [y, indices]

    def fast(op):  # x finite
        if not (len(p.kernel) == 1 and _tiles(p)):
            return pooled(op, False)
        tiled = op.Equal(op.Mod(dim(op, x, 2), const_i64(op, [p.kernel[0]])), const_i64(op, [0]))
        return blocks.branch(op, tiled, lambda op: list(_tiled_argmax(op, x, p)), lambda op: pooled(op, False), 2)

    y, indices = _if_finite(op, x, len(p.kernel), fast, lambda op: pooled(op, True), 2) if p.propagate_nan else fast(op)
    return blocks.take_outputs(outputs, y=y, indices=indices)


def _onnx_max_backward(op, p, x, grad_y):
    _, indices = max_pool_nd(op, x, p, True)
    return scatter_add_nd(op, x, indices, grad_y, len(p.kernel))


def _onnx_avg(op, p, x, outputs=("y",)):
    if not p.ceil_mode and getattr(p, "divisor_override", None) is None:
        y = op.AveragePool(x, kernel_shape=list(p.kernel), strides=list(p.strides), pads=list(p.padding) * 2,
                           count_include_pad=int(p.count_include_pad))
    else:
        y = op.Div(_window_sum(op, x, p), _avg_divisor(op, x, p))
    return blocks.take_outputs(outputs, y=y)


def _onnx_avg_backward(op, p, x, grad_y):
    """Every window hands ``g / D`` to each input it covers: the transposed 0/1 window
    matrices along each axis."""
    mats = [blocks.membership(op, s, e, size, normalise=False) for s, e, size in _window_bounds(op, x, p)]
    return _bin_contract(op, op.Div(grad_y, _avg_divisor(op, x, p)), _transposed(op, mats), check_result=False)


def _adaptive_mats(op, x, p, normalise: bool = True):
    bounds = _adaptive_bounds(op, x, p.output_size)
    return [blocks.membership(op, s, e, size, normalise=normalise) for s, e, size in bounds]


def _block_bin_sum(op, x, starts, ends):
    """Sums over 1-D bins ``[starts, ends)`` (``[o]``, non-empty) of ``x [N, C, L]``, L a
    multiple of :data:`BLOCK`, ``[N, C, o]``: each bin is its whole blocks (the block sums,
    a ReduceSum over x viewed ``[N, C, L / B, B]``, times the bins' 0/1 block matrix) and its
    two partial edges (a gather of fewer than ``B`` elements each, the slots past an edge
    zeroed): one pass over x, where the bin matrix over all of x (:func:`_contract`, a
    MatMul with K = L) took 2.5-3.5x the time in ONNX Runtime at L = 65536. NaN and infinities stay in their own bins: the block product runs as
    :func:`_bin_contract` (exact where a block sum is not finite), an edge's NaN or
    infinity is summed with its own bin's values only."""
    b = BLOCK
    one, bb = const_i64(op, [1]), const_i64(op, [b])
    size = dim(op, x, 2)
    nc = op.Shape(x, start=0, end=2)
    count = op.Div(size, bb)
    sums = op.ReduceSum(op.Reshape(x, op.Concat(nc, count, bb, axis=0)), const_i64(op, [3]), keepdims=0)  # [N, C, L / B]
    first_full = op.Div(op.Add(starts, const_i64(op, [b - 1])), bb)  # [o]
    end_full = op.Div(ends, bb)
    whole = _bin_contract(op, sums, [blocks.membership(op, first_full, end_full, count, normalise=False)], check_result=True)
    # head [start, head_end) and tail [tail_start, end): the bin less its whole blocks (a bin
    # inside one block is all head); each shorter than a block
    head_end = op.Min(ends, op.Mul(first_full, bb))
    tail_start = op.Max(head_end, op.Mul(end_full, bb))
    ks = unsqueeze(op, const_i64(op, range(b)), [0])  # [1, B]
    head = op.Add(unsqueeze(op, starts, [1]), ks)  # [o, B]
    tail = op.Add(unsqueeze(op, tail_start, [1]), ks)
    inside = op.Concat(op.Less(head, unsqueeze(op, head_end, [1])), op.Less(tail, unsqueeze(op, ends, [1])), axis=1)  # [o, 2B]
    pos = op.Min(op.Concat(head, tail, axis=1), op.Sub(size, one))  # clamped into x (masked below)
    per_plane = op.Concat(nc, op.Shape(starts), const_i64(op, [2 * b]), axis=0)  # [N, C, o, 2B]
    edges = op.Reshape(op.GatherElements(x, op.Expand(op.Reshape(pos, const_i64(op, [1, 1, -1])), op.Concat(
        nc, op.Mul(op.Shape(starts), const_i64(op, [2 * b])), axis=0)), axis=2), per_plane)
    edge_sums = op.ReduceSum(op.Where(inside, edges, const_f32(op, 0.0)), const_i64(op, [3]), keepdims=0)
    return op.Add(whole, edge_sums)


def _onnx_adaptive_avg(op, p, x, outputs=("y",)):
    # each bin summed, then divided by its size (PyTorch's order: a sum that overflows is inf)
    def products(op):
        return _bin_contract(op, x, _adaptive_mats(op, x, p, normalise=False), check_result=True)

    if len(p.output_size) == 1 and blocks.has_subgraphs(op):
        # 1-D bins of at least 4 blocks, L a multiple of the block: block sums and edges
        starts, ends, size = _adaptive_bounds(op, x, p.output_size)[0]
        by_blocks = op.And(op.GreaterOrEqual(size, const_i64(op, [4 * BLOCK * p.output_size[0]])),
                           op.Equal(op.Mod(size, const_i64(op, [BLOCK])), const_i64(op, [0])))
        sums = blocks.branch(op, by_blocks, lambda op: _block_bin_sum(op, x, starts, ends), products)
    else:
        sums = products(op)
    r = len(p.output_size)
    sizes = None
    for a, (starts, ends, _) in enumerate(_adaptive_bounds(op, x, p.output_size)):
        length = _along(op, op.Cast(op.Sub(ends, starts), to=1), a, r)
        sizes = length if sizes is None else op.Mul(sizes, length)
    return blocks.take_outputs(outputs, y=op.Div(sums, sizes))


def _onnx_adaptive_avg_backward(op, p, x, grad_y):
    return _bin_contract(op, grad_y, _transposed(op, _adaptive_mats(op, x, p)), check_result=False)


def _adaptive_max_gathered(op, x, bounds, with_indices: bool, propagate_nan: bool):
    """Bins gathered per axis (every bin whole with indices), ``(y, indices or None)``;
    ``propagate_nan``: the bins' NaN map (without indices only for inputs that hold a NaN)."""
    if with_indices:
        y, indices, nan = _bin_argmax(op, x, bounds)
        return (_nan_where(op, nan, y) if propagate_nan else y), indices
    y = _bin_max(op, x, bounds)
    if propagate_nan:
        y = blocks.if_nan(op, x, lambda op: _nan_where(
            op, op.Greater(_bin_max(op, blocks.nan_indicator(op, x), bounds), const_f32(op, 0.0)), y), y)
    return y, None


def _values(out, with_indices: bool):
    """A branch's values as ``(y, indices or None)``."""
    return (out[0], out[1]) if with_indices else (out, None)


def _adaptive_max1d(op, p, x, bounds, with_indices: bool):
    """Bins of at least ``4 * BLOCK`` elements from block maxima (:func:`_block_bin_max`,
    an ``If`` on L), shorter ones gathered; for x with NaN or infinities
    (:func:`blocks.if_finite`, unless ``propagate_nan=False``) the gathered bins and their
    NaN map."""
    starts, ends, size = bounds[0]
    n = 2 if with_indices else 1
    long_bins = op.GreaterOrEqual(size, const_i64(op, [4 * BLOCK * p.output_size[0]]))

    def fast(op, lowest_is_inf=False):
        def by_blocks(op):
            y, indices = _block_bin_max(op, x, starts, ends, with_indices, lowest_is_inf)
            return [y, indices] if with_indices else y

        def gathered(op):
            y, indices = _adaptive_max_gathered(op, x, bounds, with_indices, False)
            return [y, indices] if with_indices else y

        return blocks.branch(op, long_bins, by_blocks, gathered, n)

    if not p.propagate_nan:
        return _values(fast(op, lowest_is_inf=True), with_indices)

    def exact(op):
        y, indices = _adaptive_max_gathered(op, x, bounds, with_indices, True)
        return [y, indices] if with_indices else y

    return _values(_if_finite(op, x, 1, fast, exact, n), with_indices)


def _range(op, n):
    """``[0, n)`` (``n`` a dim)."""
    return op.Range(const_scalar_i64(op, 0), scalar(op, n), const_scalar_i64(op, 1))


def _runs_max3d(op, x, outs, ks, with_indices: bool, row_max=None):
    """Max over 3-D bins that tile x (``outs[a] * ks[a]`` = the size of axis ``a``, all
    dims), ``[N, C, od, oh, ow]``: x viewed in runs, W then H then D (each a ReduceMax over
    the last or one middle axis of a view, no copy; ``row_max(op)``, if given, makes the
    first step's ``[N, C, D, H, ow]``). With indices (first maximum in row-major order,
    PyTorch's): the first slab of the bin that reaches the max, its first row that does
    (ArgMax over the row maxima), and that row's first element equal to it (a
    GatherElements of y's size times kw), where an ArgMax over x costs several passes. For
    finite x (-inf bins: their first element)."""
    od, oh, ow = outs
    kd, kh, kw = ks
    nc = op.Shape(x, start=0, end=2)
    d, h, w = _sizes(op, x, 3)
    rows = op.Reshape(x, op.Concat(nc, op.Mul(op.Mul(d, h), ow), kw, axis=0))  # [N, C, D*H*ow, kw]
    shape2 = op.Concat(nc, op.Mul(d, oh), kh, ow, axis=0)  # [N, C, D*oh, kh, ow]
    shape3 = op.Concat(nc, od, kd, op.Mul(oh, ow), axis=0)  # [N, C, od, kd, oh*ow]
    out = op.Concat(nc, od, oh, ow, axis=0)
    m1 = row_max(op) if row_max is not None else op.ReduceMax(rows, const_i64(op, [3]), keepdims=0)
    m1 = op.Reshape(m1, shape2)  # each row's max per column bin
    if not with_indices:
        three = const_i64(op, [3])
        t = op.ReduceMax(m1, three, keepdims=0)
        return op.Reshape(op.ReduceMax(op.Reshape(t, shape3), three, keepdims=0), out), None
    h2 = op.ArgMax(m1, axis=3, keepdims=1, select_last_index=0)  # [N, C, D*oh, 1, ow]: first row of the slab
    m2 = op.Reshape(op.GatherElements(m1, h2, axis=3), shape3)
    d3 = op.ArgMax(m2, axis=3, keepdims=1, select_last_index=0)  # [N, C, od, 1, oh*ow]: first slab
    y = op.Reshape(op.GatherElements(m2, d3, axis=3), out)
    h3 = op.Reshape(op.GatherElements(op.Reshape(h2, shape3), d3, axis=3), out)
    dd = op.Add(op.Mul(_along(op, _range(op, od), 0, 3), kd), op.Reshape(d3, out))
    hh = op.Add(op.Mul(_along(op, _range(op, oh), 1, 3), kh), h3)
    # that row's kw columns read again (y's size times kw), its first maximum
    starts = _ravel(op, [dd, hh, op.Mul(_range(op, ow), kw)], [d, h, w])  # [N, C, od, oh, ow]
    cells = op.Add(unsqueeze(op, starts, [5]), _range(op, kw))  # [N, C, od, oh, ow, kw]
    flat = op.Reshape(x, op.Concat(nc, _product(op, [d, h, w]), axis=0))
    row = op.GatherElements(flat, op.Reshape(cells, op.Concat(nc, _product(op, [od, oh, ow, kw]), axis=0)), axis=2)
    first = op.ArgMax(op.Reshape(row, op.Shape(cells)), axis=5, keepdims=0, select_last_index=0)
    return y, op.Add(starts, first)


def _adaptive_max3d(op, p, x, bounds, with_indices: bool):
    """Uniform bins (an ``If`` on D, H, W) by :func:`_runs_max3d`, others gathered; for x
    with NaN or infinities (:func:`blocks.if_finite`, unless ``propagate_nan=False``) the
    gathered bins and their NaN map."""
    od, oh, ow = p.output_size
    zero = const_i64(op, [0])
    d, h, w = _sizes(op, x, 3)
    uniform = op.And(op.And(op.Equal(op.Mod(d, const_i64(op, [od])), zero), op.Equal(op.Mod(h, const_i64(op, [oh])), zero)),
                     op.Equal(op.Mod(w, const_i64(op, [ow])), zero))
    n = 2 if with_indices else 1

    def fast(op):
        def runs(op):
            outs = [const_i64(op, [o]) for o in p.output_size]
            y, indices = _runs_max3d(op, x, outs, [op.Div(s, o) for s, o in zip((d, h, w), outs)], with_indices)
            return [y, indices] if with_indices else y

        def gathered(op):
            y, indices = _adaptive_max_gathered(op, x, bounds, with_indices, False)
            return [y, indices] if with_indices else y

        return blocks.branch(op, uniform, runs, gathered, n)

    if not p.propagate_nan:
        return _values(fast(op), with_indices)

    def exact(op):
        y, indices = _adaptive_max_gathered(op, x, bounds, with_indices, True)
        return [y, indices] if with_indices else y

    return _values(_if_finite(op, x, 3, fast, exact, n), with_indices)


def _onnx_adaptive_max(op, p, x, outputs=("y", "indices")):
    with_indices = "indices" in outputs
    bounds = _adaptive_bounds(op, x, p.output_size)
    if len(bounds) == 1 and blocks.has_subgraphs(op):
        y, indices = _adaptive_max1d(op, p, x, bounds, with_indices)
    elif blocks.has_subgraphs(op):
        y, indices = _adaptive_max3d(op, p, x, bounds, with_indices)
    else:
        y, indices = _adaptive_max_gathered(op, x, bounds, with_indices, p.propagate_nan)
    return blocks.take_outputs(outputs, y=y, indices=indices)


def _onnx_adaptive_max_backward(op, p, x, grad_y):
    _, indices, _ = _bin_argmax(op, x, _adaptive_bounds(op, x, p.output_size))
    return scatter_add_nd(op, x, indices, grad_y, len(p.output_size))


def _spatial_axes(op, r: int):
    return const_i64(op, list(range(2, 2 + r)))


def _flat(op, x, r: int):
    """``[N, C, prod(spatial)]`` (no -1: N or C may be 0)."""
    return op.Reshape(x, op.Concat(op.Shape(x, start=0, end=2), _product(op, _sizes(op, x, r)), axis=0))


def _ones(r: int):
    return [1] * r


def _onnx_global_avg(r: int):
    def fn(op, p, x, outputs=("y",)):
        return blocks.take_outputs(outputs, y=op.ReduceMean(x, _spatial_axes(op, r), keepdims=1))

    return fn


def _onnx_global_avg_backward(r: int):
    def fn(op, p, x, grad_y):
        size = op.Cast(_product(op, _sizes(op, x, r)), to=1)
        return op.Expand(op.Div(grad_y, size), op.Shape(x))

    return fn


def _onnx_global_max(r: int):
    def fn(op, p, x, outputs=("y", "indices")):
        """ReduceMax; with indices the first maximum from block maxima of x flattened
        (:func:`_first_max`), where an ArgMax over all of x costs several
        passes. For x with NaN or infinities (:func:`blocks.if_finite`, unless
        ``propagate_nan=False``): ReduceMax, NaN where a sum of squares is (it is NaN exactly
        when it summed a NaN: no inf - inf can arise), the first ArgMax."""
        axes = _spatial_axes(op, r)
        with_indices = "indices" in outputs
        kept = op.Concat(op.Shape(x, start=0, end=2), const_i64(op, _ones(r)), axis=0)  # [N, C, 1, ..]

        def fast(op, lowest_is_inf=False):
            if not with_indices:
                return op.ReduceMax(x, axes, keepdims=1)
            flat = _flat(op, x, r)
            y, first = _first_max(op, flat, lowest_is_inf)
            return [op.Reshape(y, kept), op.Reshape(first, kept)]

        def exact(op):
            y = op.ReduceMax(x, axes, keepdims=1)
            y = _nan_where(op, op.IsNaN(op.ReduceSumSquare(x, axes, keepdims=1)), y)
            if not with_indices:
                return y
            first = op.ArgMax(_flat(op, x, r), axis=2, keepdims=1, select_last_index=0)  # [N, C, 1]
            return [y, op.Reshape(first, kept)]

        n = 2 if with_indices else 1
        if not p.propagate_nan:
            out = fast(op, lowest_is_inf=True)
        else:
            out = _if_finite(op, x, r, fast, exact, n)
        y, indices = _values(out, with_indices)
        return blocks.take_outputs(outputs, y=y, indices=indices)

    return fn


def _onnx_global_max_backward(r: int):
    def fn(op, p, x, grad_y):
        """One-hot of the first argmax times ``g`` (elementwise, no scatter)."""
        flat = _flat(op, x, r)
        first = op.ArgMax(flat, axis=2, keepdims=1, select_last_index=0)
        positions = op.Range(const_scalar_i64(op, 0), scalar(op, dim(op, flat, 2)), const_scalar_i64(op, 1))
        g = op.Reshape(grad_y, op.Concat(op.Shape(x, start=0, end=2), const_i64(op, [1]), axis=0))
        return op.Reshape(op.Where(op.Equal(positions, first), g, const_f32(op, 0.0)), op.Shape(x))

    return fn


# ---------------------------------------------------------------- work rules


def _out_lens(p, spatial) -> list[int]:
    return [blocks.out_len(s, k, st, pd, d, p.ceil_mode)
            for s, k, st, pd, d in zip(spatial, p.kernel, p.strides, p.padding, p.dilations)]


def _padded(p, spatial) -> list[int]:
    return [blocks.padded_len(s, k, st, pd, d) for s, k, st, pd, d in zip(spatial, p.kernel, p.strides, p.padding, p.dilations)]


def _contract_work(nc: int, ins, outs) -> int:
    """:func:`_contract` from sizes ``ins`` to ``outs``: each step's result (axes replaced
    last to first) and the matrices."""
    dims, work = list(ins), 0
    for a in reversed(range(len(dims))):
        dims[a] = outs[a]
        work = max(work, nc * _prod(dims), ins[a] * outs[a])
    return work


def max_nd_work(p, shapes, outputs=("y",), backward=False) -> int:
    """MaxPool (with int64 indices: 3 units per output), the ceil-mode padding, the NaN map
    of x and its pooling, the indices' int64 coordinates; backward: MaxPool with indices
    and the scatter into x's shape."""
    n, c, *spatial = shapes["x"]
    nc, x = n * c, n * c * _prod(spatial)
    y = nc * _prod(_out_lens(p, spatial))
    with_indices = "indices" in outputs or backward
    work = max(3 * y, 2 * _prod(_out_lens(p, spatial))) if with_indices else y  # 1-D tiles: the int64 window starts
    if p.ceil_mode:
        work = max(work, nc * _prod(_padded(p, spatial)))
    if p.propagate_nan:
        work = max(work, x)
    if backward:
        work = max(work, x, 2 * y)
    return work


def avg_nd_work(p, shapes, outputs=("y",), backward=False) -> int:
    """AveragePool, or the window sums (ceil-mode padding) and the divisors; backward: the
    0/1 window matrices and their transposed products along each axis."""
    n, c, *spatial = shapes["x"]
    outs = _out_lens(p, spatial)
    work = n * c * _prod(outs)
    if p.ceil_mode or getattr(p, "divisor_override", None) is not None:
        work = max(work, n * c * _prod(_padded(p, spatial)))
    work = max(work, _prod(outs), *(2 * o for o in outs))
    if backward:
        work = max(work, _contract_work(n * c, outs, spatial), *(2 * s for s in spatial))
    return work


def adaptive_avg_nd_work(p, shapes, outputs=("y",), backward=False) -> int:
    """The bin matrices and the products along each axis (forward, and backward's
    transposed ones); for inputs with NaN or infinities the exact pass's copies of x
    (finite values, indicators). 1-D block sums (:func:`_block_bin_sum`, L >= 4 * BLOCK *
    o): the block sums ``[N, C, L / BLOCK]`` and the edges' int64 positions expanded to
    ``[N, C, o, 2 * BLOCK]``, both within x's size."""
    n, c, *spatial = shapes["x"]
    outs = list(p.output_size)
    work = max(_contract_work(n * c, spatial, outs), n * c * _prod(spatial), *(2 * s for s in spatial), *(2 * o for o in outs))
    if backward:
        work = max(work, _contract_work(n * c, outs, spatial))
    return work


def _block_work(nc: int, size: int, o: int, k: int, with_indices: bool) -> int:
    """:func:`_block_bin_max` over ``o`` bins of at most ``k`` of ``size`` elements: the block
    maxima (and their transpose), every bin's whole blocks ``[o, kb, N*C]`` (their int64
    numbers), the edges' int64 positions expanded to ``[N, C, o, 2B]`` and the first match
    among them, the If's outputs."""
    b = BLOCK
    kb = max(-(-k // b), 1)
    work = max(nc * -(-size // b), nc * o * kb, 2 * o * kb, 4 * nc * o * b)
    return max(work, 3 * nc * o) if with_indices else work


def adaptive_max_nd_work(p, shapes, outputs=("y",), backward=False) -> int:
    """Without indices: each axis's bins gathered ``[N, C, o.., o_a, K_a, L..]`` and reduced
    (the NaN map: x's size); with indices or backward: every bin gathered whole
    ``[N, C, o_1, K_1, ...]`` and int64 argmax positions, the scatter into x's shape.
    1-D bins of at least ``4 * BLOCK`` elements: from block maxima (:func:`_block_work`)."""
    n, c, *spatial = shapes["x"]
    outs = list(p.output_size)
    ks = [blocks.adaptive_len(s, o) for s, o in zip(spatial, outs)]
    nc, x = n * c, n * c * _prod(spatial)
    y = nc * _prod(outs)
    index = max(*(2 * o * k for o, k in zip(outs, ks)), *(2 * s for s in spatial), 2)
    with_indices = "indices" in outputs
    fast = 0
    if len(outs) == 1 and spatial[0] >= 4 * BLOCK * outs[0]:
        fast = _block_work(nc, spatial[0], outs[0], ks[0], with_indices)
    if with_indices or backward:
        whole = [nc * _prod(o * k for o, k in zip(outs[: a + 1], ks[: a + 1])) * _prod(spatial[a + 1:]) for a in range(len(outs))]
        work = max(*whole, 3 * y, index, fast)
        if backward:
            work = max(work, x, 2 * y)
        return work
    steps = [nc * _prod(outs[:a]) * outs[a] * ks[a] * _prod(spatial[a + 1:]) for a in range(len(outs))]
    work = max(*steps, y, index, fast)
    return max(work, x) if p.propagate_nan else work


def global_avg_nd_work(p, shapes, outputs=("y",), backward=False) -> int:
    """ReduceMean ``[N, C, 1..]``; backward: the gradient expanded to x's shape."""
    n, c, *spatial = shapes["x"]
    return n * c * _prod(spatial) if backward else n * c


def global_max_nd_work(p, shapes, outputs=("y",), backward=False) -> int:
    """ReduceMax (and ReduceSumSquare), the guard's views of x; indices: the block maxima of x flattened, the int64
    positions of the first maximum's block ``[N, C, BLOCK]``, the If's outputs; for x with
    NaN or infinities x flattened and an int64 ArgMax; backward: a one-hot mask of x's size."""
    n, c, *spatial = shapes["x"]
    work = 2 * n * c
    if p.propagate_nan:  # the guard's views of x (ONNX Runtime's profiler counts a Reshape's output)
        work = max(work, n * c * _prod(spatial))
    if "indices" in outputs or backward:
        size = _prod(spatial)
        work = max(work, n * c * size, 2 * size, 2 * n * c * BLOCK, 3 * n * c)
    return work


# ---------------------------------------------------------------- registration


def _register(r: int) -> None:
    suffix = f"{r}d"
    register(OpSpec(
        name=f"max{suffix}", family="window", params=Max1dParams if r == 1 else Max3dParams,
        torch_fn=_torch_max(r), onnx_fn=_onnx_max, onnx_backward=_onnx_max_backward,
        output_shape=_window_shape, check_input=_check_window(f"max{suffix}"), module_name=f"MaxPool{suffix}",
        outputs=("y", "indices"), work=max_nd_work, doc=__doc__, torch_stock=f"F.max_pool{suffix}", spatial_dims=r,
    ))
    register(OpSpec(
        name=f"avg{suffix}", family="window", params=Avg1dParams if r == 1 else Avg3dParams,
        torch_fn=_torch_avg(r), onnx_fn=_onnx_avg, onnx_backward=_onnx_avg_backward,
        output_shape=_window_shape, check_input=_check_window(f"avg{suffix}", unpadded=r == 3), module_name=f"AvgPool{suffix}",
        work=avg_nd_work, doc=__doc__, torch_stock=f"F.avg_pool{suffix}", spatial_dims=r,
    ))
    register(OpSpec(
        name=f"adaptive_avg{suffix}", family="adaptive", params=Adaptive1dParams if r == 1 else Adaptive3dParams,
        torch_fn=_torch_adaptive_avg(r), onnx_fn=_onnx_adaptive_avg, onnx_backward=_onnx_adaptive_avg_backward,
        output_shape=lambda p, s: (s[0], s[1], *p.output_size), module_name=f"AdaptiveAvgPool{suffix}",
        work=adaptive_avg_nd_work, doc=__doc__, torch_stock=f"F.adaptive_avg_pool{suffix}", spatial_dims=r,
    ))
    register(OpSpec(
        name=f"adaptive_max{suffix}", family="adaptive", params=AdaptiveMax1dParams if r == 1 else AdaptiveMax3dParams,
        torch_fn=_torch_adaptive_max(r), onnx_fn=_onnx_adaptive_max, onnx_backward=_onnx_adaptive_max_backward,
        output_shape=lambda p, s: (s[0], s[1], *p.output_size), module_name=f"AdaptiveMaxPool{suffix}",
        outputs=("y", "indices"), work=adaptive_max_nd_work, doc=__doc__,
        torch_stock=f"F.adaptive_max_pool{suffix}", spatial_dims=r,
    ))
    register(OpSpec(
        name=f"global_avg{suffix}", family="global", params=GlobalAvgParams,
        torch_fn=_torch_global_avg(r), onnx_fn=_onnx_global_avg(r), onnx_backward=_onnx_global_avg_backward(r),
        output_shape=lambda p, s: (s[0], s[1], *(1,) * (len(s) - 2)), module_name=f"GlobalAvgPool{suffix}",
        work=global_avg_nd_work, doc=__doc__, torch_stock=f"x.mean({tuple(range(2, 2 + r))})", spatial_dims=r,
    ))
    register(OpSpec(
        name=f"global_max{suffix}", family="global", params=GlobalMaxParams,
        torch_fn=_torch_global_max(r), onnx_fn=_onnx_global_max(r), onnx_backward=_onnx_global_max_backward(r),
        output_shape=lambda p, s: (s[0], s[1], *(1,) * (len(s) - 2)), module_name=f"GlobalMaxPool{suffix}",
        outputs=("y", "indices"), work=global_max_nd_work, doc=__doc__,
        torch_stock=f"F.adaptive_max_pool{suffix}(x, 1)", spatial_dims=r,
    ))


for _r in (1, 3):
    _register(_r)
