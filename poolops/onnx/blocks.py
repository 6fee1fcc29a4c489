"""Pooling building blocks in ONNX, shared by the op builders.

All take ``op`` (see :mod:`poolops.onnx.builder`) and work on ``x: [N, C, H, W]``
float32 with every dimension dynamic. Sizes are 1-element int64 tensors ("dims").
Only ops with ONNX Runtime CUDA kernels at opset 18 are used.
"""

from __future__ import annotations

import itertools
from typing import Callable, Sequence

from poolops.onnx.builder import (
    FLOAT_INF,
    const_f32,
    const_i64,
    const_scalar_i64,
    dim,
    scalar,
    unsqueeze,
)


# ---------------------------------------------------------------- sizes and bins


def pool_out_dim(op, size, kernel: int, stride: int, pad: int, dilation: int, ceil: bool):
    """:func:`poolops.shapes.pool_out_size` in ONNX (``size`` a dim)."""
    eff = dilation * (kernel - 1) + 1
    num = op.Add(size, const_i64(op, [2 * pad - eff + (stride - 1 if ceil else 0)]))
    out = op.Add(op.Div(num, const_i64(op, [stride])), const_i64(op, [1]))
    if ceil:
        last = op.Add(
            op.Div(op.Add(size, const_i64(op, [pad - 1])), const_i64(op, [stride])),
            const_i64(op, [1]),
        )
        out = op.Min(out, last)
    return out


def window_bounds(op, out, kernel: int, stride: int, pad: int):
    """Starts and ends ``[o]`` of fixed windows in unpadded coordinates (may pass the edges)."""
    i = op.Range(const_scalar_i64(op, 0), scalar(op, out), const_scalar_i64(op, 1))
    starts = op.Sub(op.Mul(i, const_i64(op, [stride])), const_i64(op, [pad]))
    return starts, op.Add(starts, const_i64(op, [kernel]))


def bin_index(op, n: int):
    """``[0, 1, ..., n - 1]`` (int64) by a Range: a constant of n values would make the
    graph grow with n (12,000 bins of a large spp took a third of its build time)."""
    return op.Range(const_scalar_i64(op, 0), const_scalar_i64(op, n), const_scalar_i64(op, 1))


def float_index(op, n: int, start: int = 0):
    """``[start, ..., start + n - 1]`` as float32 (exact below 2**24), by a Range."""
    return op.Cast(op.Range(const_scalar_i64(op, start), const_scalar_i64(op, start + n), const_scalar_i64(op, 1)), to=1)


def adaptive_bounds(op, size, n: int):
    """PyTorch adaptive bins ``[n]``: start ``floor(i*L/n)``, end ``ceil((i+1)*L/n)``."""
    i = bin_index(op, n)
    starts = op.Div(op.Mul(i, size), const_i64(op, [n]))
    ends = op.Div(
        op.Add(op.Mul(op.Add(i, const_i64(op, [1])), size), const_i64(op, [n - 1])),
        const_i64(op, [n]),
    )
    return starts, ends


def sppnet_bounds(op, size, n: int):
    """:func:`poolops.shapes.sppnet_bins` in ONNX."""
    win = op.Div(op.Add(size, const_i64(op, [n - 1])), const_i64(op, [n]))
    stride = op.Max(op.Div(size, const_i64(op, [n])), const_i64(op, [1]))
    starts = op.Min(op.Mul(bin_index(op, n), stride), op.Sub(size, win))
    return starts, op.Add(starts, win)


def membership(op, starts, ends, size, normalise: bool):
    """``A[o, L]``: 1 where ``starts[i] <= r < ends[i]`` (divided by the bin length if
    ``normalise``). Pooling with it is a MatMul: ``A_h @ x @ A_w^T``."""
    r = unsqueeze(op, op.Range(const_scalar_i64(op, 0), scalar(op, size), const_scalar_i64(op, 1)), [0])
    s = unsqueeze(op, starts, [1])
    e = unsqueeze(op, ends, [1])
    inside = op.And(op.GreaterOrEqual(r, s), op.Less(r, e))
    a = op.Cast(inside, to=1)
    if normalise:
        a = op.Div(a, op.Cast(op.Sub(e, s), to=1))
    return a


def membership_per_sample(op, starts, ends, size, normalise: bool):
    """``A[N, 1, o, L]`` from per-sample bounds ``[N, o]`` (``size``: the padded L), ready
    to broadcast over channels in :func:`separable_matmul`."""
    r = unsqueeze(op, op.Range(const_scalar_i64(op, 0), scalar(op, size), const_scalar_i64(op, 1)), [0, 1])
    s, e = unsqueeze(op, starts, [-1]), unsqueeze(op, ends, [-1])
    a = op.Cast(op.And(op.GreaterOrEqual(r, s), op.Less(r, e)), to=1)
    if normalise:
        a = op.Div(a, op.Cast(op.Sub(e, s), to=1))
    return unsqueeze(op, a, [1])


def bin_sizes(op, bounds_h, bounds_w, per_sample: bool = False):
    """Elements per bin ``[oh, ow]`` (float) from bounds ``[o]``, or ``[N, 1, oh, ow]`` from
    per-sample bounds ``[N, o]``: the divisors of bin sums."""
    lengths = [op.Cast(op.Sub(e, s), to=1) for s, e in (bounds_h, bounds_w)]
    sizes = op.Mul(unsqueeze(op, lengths[0], [-1]), unsqueeze(op, lengths[1], [-2]))
    return unsqueeze(op, sizes, [1]) if per_sample else sizes


def separable_matmul(op, x, a_h, a_w, per_sample: bool = False):
    """``A_h @ x @ A_w^T`` over the last two axes: ``[N, C, H, W] -> [N, C, oh, ow]``
    (matrices ``[o, L]``, or ``[N, 1, o, L]`` with ``per_sample``).

    The W contraction goes first: it reads the big input once, contiguously. Plain
    MatMuls: an infinity in x makes every bin beside it NaN (``0 * inf``); pool values
    that may hold one with :func:`bin_sums`.
    """
    t = op.MatMul(x, _transposed(op, a_w, per_sample))
    return op.MatMul(a_h, t)


def _transposed(op, a, per_sample: bool = False):
    return op.Transpose(a, perm=[0, 1, 3, 2] if per_sample else [1, 0])


def bin_matmul(op, a, b, matrix_left: bool):
    """``a @ b`` where the matrix side (``a`` if ``matrix_left``, else ``b``) holds
    non-negative bin weights, zero outside each bin (:func:`membership`), and the other
    side may hold NaN or infinities: each output is PyTorch's sum over its bin alone (NaN
    if the bin holds a NaN or both infinities, else the infinity it holds, else the sum),
    where a plain MatMul makes every bin in a row or column beside an infinity NaN
    (``0 * inf``). Three MatMuls: of the finite values (the others as 0), and of the
    indicators of +inf-or-NaN and -inf-or-NaN (counted per bin: both present means NaN)."""
    t = b if matrix_left else a

    def mm(v):
        return op.MatMul(a, v) if matrix_left else op.MatMul(v, b)

    inf, zero = const_f32(op, FLOAT_INF), const_f32(op, 0.0)
    sums = mm(op.Where(op.Less(op.Abs(t), inf), t, zero))
    up = op.Greater(mm(op.Cast(op.Not(op.Less(t, inf)), to=1)), zero)  # the bin holds +inf or NaN
    down = op.Greater(mm(op.Cast(op.Not(op.Greater(t, const_f32(op, -FLOAT_INF))), to=1)), zero)  # -inf or NaN
    return op.Where(
        up,
        op.Where(down, const_f32(op, float("nan")), inf),
        op.Where(down, const_f32(op, -FLOAT_INF), sums),
    )


def bin_sums(op, x, a_h, a_w, per_sample: bool = False):
    """:func:`separable_matmul` with PyTorch's NaN and infinities: the sums over each bin
    of ``x`` (``[N, C, oh, ow]``; means with normalised matrices), as if each bin were
    summed alone. The plain MatMuls give the result; an infinity or NaN anywhere in x
    makes every one of their outputs NaN or infinite (``0 * inf`` spreads it along its
    row, then that row into every bin), so one ``ReduceSum`` of the small result
    (:func:`if_finite`) tells whether :func:`bin_matmul`'s exact pass must run: finite
    inputs pay for nothing but that. A finite sum that overflows takes the exact pass
    too, which gives PyTorch's infinity in its own bin only."""
    fast = separable_matmul(op, x, a_h, a_w, per_sample)
    return if_finite(op, fast, lambda sub: fast, lambda sub: _bin_sums_exact(sub, x, a_h, a_w, per_sample))


def _bin_sums_exact(op, x, a_h, a_w, per_sample: bool = False):
    return bin_matmul(op, a_h, bin_matmul(op, x, _transposed(op, a_w, per_sample), False), True)


def bin_max_per_sample(op, x, bounds_h, bounds_w):
    """:func:`bin_max` with per-sample bins (bounds ``[N, o]``): ``[N, C, oh, ow]``.

    Rows of all samples are gathered from ``x`` viewed as ``[N*H, C, W]`` (sample n's
    row r is row ``n*H + r``), then columns from the reduced ``[N*W, oh, C]``.
    """
    n_i = op.Range(const_scalar_i64(op, 0), scalar(op, dim(op, x, 0)), const_scalar_i64(op, 1))
    offsets = unsqueeze(op, n_i, [1, 2])  # [N, 1, 1]
    c, w = dim(op, x, 1), dim(op, x, 3)
    idx_h = op.Add(_bin_index(op, *bounds_h), op.Mul(offsets, dim(op, x, 2)))  # [N, oh, Kh]
    rows = op.Reshape(op.Transpose(x, perm=[0, 2, 1, 3]), op.Concat(const_i64(op, [-1]), c, w, axis=0))
    t = op.ReduceMax(op.Gather(rows, idx_h, axis=0), const_i64(op, [2]), keepdims=0)  # [N, oh, C, W]
    oh = op.Shape(t, start=1, end=2)
    idx_w = op.Add(_bin_index(op, *bounds_w), op.Mul(offsets, w))  # [N, ow, Kw]
    cols = op.Reshape(op.Transpose(t, perm=[0, 3, 1, 2]), op.Concat(const_i64(op, [-1]), oh, c, axis=0))
    y = op.ReduceMax(op.Gather(cols, idx_w, axis=0), const_i64(op, [2]), keepdims=0)  # [N, ow, oh, C]
    return op.Transpose(y, perm=[0, 3, 2, 1])


def separable_matmul_t(op, g, a_h, a_w):
    """The transpose: ``A_h^T @ g @ A_w``: ``[N, C, oh, ow] -> [N, C, H, W]`` (each input
    gets the sum of the gradients of the bins it is in), with PyTorch's NaN and
    infinities: where ``g`` holds one (a ``ReduceSum`` of the small ``g``,
    :func:`if_finite`), :func:`bin_matmul`, so that inputs outside its bins stay finite."""
    a_ht = op.Transpose(a_h, perm=[1, 0])
    return if_finite(
        op,
        g,
        lambda sub: sub.MatMul(sub.MatMul(a_ht, g), a_w),
        lambda sub: bin_matmul(sub, bin_matmul(sub, a_ht, g, True), a_w, False),
    )


# ---------------------------------------------------------------- gather-based bin max


def _bin_index(op, starts, ends):
    """``idx[..., o, K]``, K the longest bin: ``min(start + k, end - 1)`` (bounds ``[o]``
    or per sample ``[N, o]``).

    Repeating a bin's last element does not change its max (or its first argmax).
    """
    k = op.ReduceMax(op.Sub(ends, starts), keepdims=0)
    ks = unsqueeze(op, op.Range(const_scalar_i64(op, 0), k, const_scalar_i64(op, 1)), [0])
    idx = op.Add(unsqueeze(op, starts, [-1]), ks)
    return op.Min(idx, unsqueeze(op, op.Sub(ends, const_i64(op, [1])), [-1]))


def bin_max(op, x, bounds_h, bounds_w):
    """Max over bins ``[N, C, H, W] -> [N, C, oh, ow]`` (bins from ``*_bounds``); skips NaN.

    Rows first: the H gather copies whole contiguous rows, then the W reduction
    (:func:`column_bins_max`) works on the ``oh`` reduced rows only.
    """
    idx_h = _bin_index(op, *bounds_h)  # [oh, Kh]
    g = op.Gather(x, idx_h, axis=2)  # [N, C, oh, Kh, W]
    t = op.ReduceMax(g, const_i64(op, [3]), keepdims=0)  # [N, C, oh, W]
    return column_bins_max(op, t, bounds_w)  # [N, C, oh, ow]


def column_bins_max(op, t, bounds_w):
    """Max over column bins ``[N, C, oh, W] -> [N, C, oh, ow]`` (skips NaN): each bin's
    ``Kw`` columns (:func:`_bin_index`) by a GatherElements along W with the indices
    expanded over ``[N, C, oh]``, then a ReduceMax. ONNX Runtime's Gather along a last
    axis copies element by element (several times slower), and a Gather of the transposed
    t pays for two Transposes."""
    cols = gather_columns(op, t, _bin_index(op, *bounds_w))  # [N, C, oh, ow, Kw]
    return op.ReduceMax(cols, const_i64(op, [4]), keepdims=0)


def gather_columns(op, t, idx):
    """``t[..., idx]``: ``[N, C, o, W]`` at columns ``idx [ow, K]`` -> ``[N, C, o, ow, K]``, as
    ``Gather(t, idx, axis=3)`` but by a GatherElements with ``idx`` expanded over ``[N, C, o]``
    (ONNX Runtime's Gather along a last axis copies element by element, several times
    slower)."""
    lead = op.Shape(t, start=0, end=3)
    flat = op.Reshape(idx, const_i64(op, [1, 1, 1, -1]))
    g = op.GatherElements(t, op.Expand(flat, op.Concat(lead, op.Shape(flat, start=3), axis=0)), axis=3)
    return op.Reshape(g, op.Concat(lead, op.Shape(idx), axis=0))


def adaptive_bin_max(op, x, output_size, bounds_h, bounds_w):
    """:func:`bin_max` over PyTorch's adaptive bins (``output_size``, their ``*_bounds``):
    when they are uniform (``H % oh == 0`` and ``W % ow == 0``, an ONNX ``If`` at run time)
    two reductions over contiguous runs, columns first (``x`` viewed as
    ``[N, C, H, ow, W/ow]``: one read of x, no copy), else :func:`bin_max`. Skips NaN.
    Without subgraphs (``torch.onnx.export``) :func:`bin_max`."""
    if not has_subgraphs(op):
        return bin_max(op, x, bounds_h, bounds_w)
    oh, ow = output_size
    uniform = op.And(
        op.Equal(op.Mod(dim(op, x, 2), const_i64(op, [oh])), const_i64(op, [0])),
        op.Equal(op.Mod(dim(op, x, 3), const_i64(op, [ow])), const_i64(op, [0])),
    )

    def runs(op):
        cols = op.ReduceMax(op.Reshape(x, const_i64(op, [0, 0, 0, ow, -1])), const_i64(op, [4]), keepdims=0)
        return op.ReduceMax(op.Reshape(cols, const_i64(op, [0, 0, oh, -1, ow])), const_i64(op, [3]), keepdims=0)

    return branch(op, uniform, runs, lambda op: bin_max_rows_looped(op, x, bounds_h, bounds_w))


ROWS_PER_STEP = 8


def _row_bins_looped(op, x, bounds_h):
    """The row bins' maxima ``[N, C, oh, W]`` in an ONNX ``Loop``: step ``k`` gathers
    rows ``start + 8k ..`` of every bin (``[N, C, oh, <= 8, W]``, small enough to stay in
    cache), reduces them and keeps the running max ``[N, C, oh, W]``, so that x is read
    about once instead of copied whole into ``[N, C, oh, Kh, W]`` and read again.
    ``ceil(Kh / 8)`` steps; the graph's size does not depend on them. Skips NaN."""
    import onnx_ir as ir

    starts, ends = bounds_h
    u = ROWS_PER_STEP
    first = unsqueeze(op, starts, [1])  # [oh, 1]
    last = unsqueeze(op, op.Sub(ends, const_i64(op, [1])), [1])
    longest = op.ReduceMax(op.Sub(ends, starts), keepdims=0)
    steps = op.Div(op.Add(longest, const_scalar_i64(op, u - 1)), const_scalar_i64(op, u))

    def body(sub, it, cond, acc):
        begin = sub.Mul(it, const_scalar_i64(sub, u))
        offsets = sub.Range(begin, sub.Min(sub.Add(begin, const_scalar_i64(sub, u)), longest), const_scalar_i64(sub, 1))
        rows = sub.Min(sub.Add(first, unsqueeze(sub, offsets, [0])), last)  # [oh, u], inside each bin
        part = sub.ReduceMax(sub.Gather(x, rows, axis=2), const_i64(sub, [3]), keepdims=0)  # [N, C, oh, W]
        return [sub.Identity(cond), sub.Max(acc, part)]

    body_graph = op.builder.subgraph(
        body,
        inputs=[ir.Value(name="it", type=ir.TensorType(ir.DataType.INT64), shape=ir.Shape([])),
                ir.Value(name="cond", type=ir.TensorType(ir.DataType.BOOL), shape=ir.Shape([])),
                ir.Value(name="acc", type=ir.TensorType(ir.DataType.FLOAT))],
        outputs=_branch_outs("step", 2),
        name="rows_step",
    )
    _prefix_names(body_graph, f"rows{next(_BRANCHES)}_")
    return op.Loop(steps, op.Constant(value=ir.tensor(True)), op.Gather(x, starts, axis=2), body=body_graph)


RUN = 8
RUN_MIN_BIN = 32
"""Bins this long or longer take :func:`_row_bins_from_runs` (its at most 14 rows per bin
gathered from x, beside one pass over x), shorter ones the loop gathering every row:
measured faster from 32 rows (37-row bins at H = 256, 55 at 384), slower at 18."""


def _row_bins(op, x, bounds_h):
    """The row bins' maxima ``[N, C, oh, W]`` (skips NaN): :func:`_row_bins_from_runs` where
    ``H % 8 == 0`` and every bin is at least 32 rows long (an ONNX ``If`` at run time),
    else :func:`_row_bins_looped`."""
    starts, ends = bounds_h
    shortest = op.ReduceMin(op.Sub(ends, starts), keepdims=1)
    runs_fit = op.And(op.Equal(op.Mod(dim(op, x, 2), const_i64(op, [RUN])), const_i64(op, [0])),
                      op.GreaterOrEqual(shortest, const_i64(op, [RUN_MIN_BIN])))
    return branch(op, op.Squeeze(runs_fit), lambda op: _row_bins_from_runs(op, x, bounds_h),
                  lambda op: _row_bins_looped(op, x, bounds_h))


def _row_bins_from_runs(op, x, bounds_h):
    """The row bins' maxima ``[N, C, oh, W]`` from runs of 8 rows: ``R = ReduceMax`` over x
    viewed ``[N, C, H/8, 8, W]`` (one read of x, no copy), then each bin's whole runs
    gathered from the small R, and its rows before its first and after its last whole run
    (fewer than 8 each) gathered from x, a ReduceMax each and their Max. Where ONNX
    Runtime's Gather copies bytes several times slower than a memcpy, only about
    ``14 * oh`` rows of x are gathered instead of all of them. Needs ``H % 8 == 0`` and
    bins of at least 16 rows (each then holds a whole run). Skips NaN."""
    u = RUN
    starts, ends = bounds_h
    runs = op.ReduceMax(op.Reshape(x, op.Concat(const_i64(op, [0, 0, -1, u]), dim(op, x, 3), axis=0)),
                        const_i64(op, [3]), keepdims=0)  # [N, C, H/8, W]
    eight = const_i64(op, [u])
    first = op.Div(op.Add(starts, const_i64(op, [u - 1])), eight)  # each bin's first whole run
    count = op.Sub(op.Div(ends, eight), first)  # its whole runs (>= 1)
    k = op.Range(const_scalar_i64(op, 0), op.ReduceMax(count, keepdims=0), const_scalar_i64(op, 1))
    whole = op.Add(unsqueeze(op, first, [1]), op.Min(unsqueeze(op, k, [0]), unsqueeze(op, op.Sub(count, const_i64(op, [1])), [1])))
    # rows before the first whole run and after the last, in one gather: clamped into the
    # bin (an empty head or tail repeats the bin's first or last row)
    j = const_i64(op, range(u - 1))  # [7], against [oh, 1]
    head = op.Min(op.Add(unsqueeze(op, starts, [1]), j), unsqueeze(op, op.Max(op.Sub(op.Mul(first, eight), const_i64(op, [1])), starts), [1]))
    tail = op.Min(op.Add(unsqueeze(op, op.Mul(op.Add(first, count), eight), [1]), j), unsqueeze(op, op.Sub(ends, const_i64(op, [1])), [1]))
    axis3 = const_i64(op, [3])
    edges = op.ReduceMax(op.Gather(x, op.Concat(head, tail, axis=1), axis=2), axis3, keepdims=0)  # [N, C, oh, W]
    return op.Max(op.ReduceMax(op.Gather(runs, whole, axis=2), axis3, keepdims=0), edges)


def bin_max_rows_looped(op, x, bounds_h, bounds_w):
    """:func:`bin_max` with the row bins reduced in an ONNX ``Loop`` (:func:`_row_bins_looped`):
    x is read about once instead of copied whole into ``[N, C, oh, Kh, W]`` and read
    again. Skips NaN."""
    t = _row_bins(op, x, bounds_h)  # [N, C, oh, W]
    return column_bins_max(op, t, bounds_w)


def adaptive_bin_argmax(op, x, output_size, bounds_h, bounds_w):
    """``(y, indices)`` as :func:`bin_argmax` over PyTorch's adaptive bins, reading x about
    once: the row bins' maxima ``t [N, C, oh, W]`` (runs of x when ``H % oh == 0``, else
    :func:`_row_bins_looped`), their column bins ``[N, C, ow, Kw, oh]`` give y; each bin's
    first column reaching y (ArgMax), and that column's first row in the bin reaching y
    (ArgMax over ``[N, C, ow, Kh, oh]`` cells of x). That is the first maximum in row-major
    order whenever one column of the bin holds it; where a bin's maximum is in two of its
    columns (a tie, a bin of only -inf) an ONNX ``If`` takes :func:`bin_argmax` instead.
    Skips NaN in y; in a bin holding NaN the index points at some element of the bin (as
    :func:`bin_argmax`). Without subgraphs (``torch.onnx.export``) :func:`bin_argmax`."""
    if not has_subgraphs(op):
        return bin_argmax(op, x, bounds_h, bounds_w)
    oh = output_size[0]
    uniform = op.Equal(op.Mod(dim(op, x, 2), const_i64(op, [oh])), const_i64(op, [0]))

    def runs(op):
        return op.ReduceMax(op.Reshape(x, op.Concat(const_i64(op, [0, 0, oh, -1]), dim(op, x, 3), axis=0)),
                            const_i64(op, [3]), keepdims=0)

    t = branch(op, uniform, runs, lambda op: _row_bins(op, x, bounds_h))  # [N, C, oh, W]
    (h_starts, h_ends), (w_starts, w_ends) = bounds_h, bounds_w
    col_idx = _bin_index(op, w_starts, w_ends)  # [ow, Kw]
    # gathered [N, C, oh, ow, Kw] (gather_columns), then laid out with oh last for the
    # broadcasts below (ONNX Runtime broadcasts over a last axis of 1 element by element)
    tg = op.Transpose(gather_columns(op, t, col_idx), perm=[0, 1, 3, 4, 2])  # [N, C, ow, Kw, oh]
    axis3 = const_i64(op, [3])
    y5 = op.ReduceMax(tg, axis3, keepdims=1)  # [N, C, ow, 1, oh]
    hit = op.Cast(op.Equal(tg, y5), to=1)
    # columns of a bin at its max, the repeats of its last column (_bin_index) not counted
    kw = op.Range(const_scalar_i64(op, 0), scalar(op, op.Shape(col_idx, start=1)), const_scalar_i64(op, 1))
    own = op.Cast(op.Less(unsqueeze(op, kw, [0]), unsqueeze(op, op.Sub(w_ends, w_starts), [1])), to=1)  # [ow, Kw]
    ties = op.ReduceMax(op.ReduceSum(op.Mul(hit, unsqueeze(op, own, [2])), axis3, keepdims=0), keepdims=0)
    w = dim(op, x, 3)
    col = op.Add(op.ArgMax(hit, axis=3, keepdims=1, select_last_index=0), unsqueeze(op, w_starts, [1, 2]))  # [N, C, ow, 1, oh]
    at = op.Add(op.Mul(op.Transpose(_bin_index(op, h_starts, h_ends), perm=[1, 0]), w), col)  # [N, C, ow, Kh, oh]
    flat = const_i64(op, [0, 0, -1])
    cells = op.Reshape(op.GatherElements(op.Reshape(x, flat), op.Reshape(at, flat), axis=2), op.Shape(at))
    row = op.Add(op.ArgMax(cells, axis=3, keepdims=1, select_last_index=0), h_starts)  # [N, C, ow, 1, oh]
    fast = [op.Transpose(op.Squeeze(v, axis3), perm=[0, 1, 3, 2]) for v in (y5, op.Add(op.Mul(row, w), col))]
    return branch(op, op.Greater(ties, const_f32(op, 1.0)), lambda op: list(bin_argmax(op, x, bounds_h, bounds_w)),
                  lambda op: fast, 2)


def loop_stack(op, count, fn, name: str = "each"):
    """``fn(sub, i)`` for ``i`` in ``range(count)`` (``count`` a 0-D int64), its one
    value per step stacked: ``[count, *shape]`` (an ONNX ``Loop`` with a scan output;
    ``fn`` may build subgraphs of its own). The graph's size does not depend on count."""
    import onnx_ir as ir

    def body(sub, it, cond):
        return [sub.Identity(cond), fn(sub, it)]

    graph = op.builder.subgraph(
        body,
        inputs=[ir.Value(name="it", type=ir.TensorType(ir.DataType.INT64), shape=ir.Shape([])),
                ir.Value(name="cond", type=ir.TensorType(ir.DataType.BOOL), shape=ir.Shape([]))],
        outputs=_branch_outs("step", 2),
        name=f"{name}_step",
    )
    _prefix_names(graph, f"{name}{next(_BRANCHES)}_")
    return op.Loop(count, op.Constant(value=ir.tensor(True)), body=graph)


def bin_argmax(op, x, bounds_h, bounds_w):
    """Max over bins and the flat ``H*W`` index of the first maximum in row-major order.

    Rows first, as :func:`bin_max`, keeping for each column of a row bin the first
    row that holds the column's max; then, in each bin, the smallest flat index
    ``row * W + col`` among the columns that reach the bin's max. That is PyTorch's
    rule (first maximum in row-major order). In a bin holding NaN the index points
    at some element of the bin. Returns ``(y, indices)``, both ``[N, C, oh, ow]``.
    """
    starts, ends = bounds_h
    g = op.Gather(x, _bin_index(op, starts, ends), axis=2)  # [N, C, oh, Kh, W]
    first = op.ArgMax(g, axis=3, keepdims=1, select_last_index=0)  # [N, C, oh, 1, W]
    t = op.Squeeze(op.GatherElements(g, first, axis=3), const_i64(op, [3]))  # [N, C, oh, W]
    first = op.Squeeze(first, const_i64(op, [3]))
    # the first max comes before the repeats of a bin's last row: its row is start + first
    rows = op.Min(op.Add(first, unsqueeze(op, starts, [1])), unsqueeze(op, op.Sub(ends, const_i64(op, [1])), [1]))
    width = dim(op, x, 3)
    cols = op.Range(const_scalar_i64(op, 0), scalar(op, width), const_scalar_i64(op, 1))
    flat = op.Add(op.Mul(rows, width), cols)  # [N, C, oh, W]: where each column's max is

    idx_w = _bin_index(op, *bounds_w)  # [ow, Kw]
    tg = gather_columns(op, t, idx_w)  # [N, C, oh, ow, Kw]
    y = op.ReduceMax(tg, const_i64(op, [4]), keepdims=1)  # [N, C, oh, ow, 1]
    hit = op.Or(op.Equal(tg, y), op.IsNaN(tg))
    never = op.Constant(value_int=2**62)
    key = op.Where(hit, gather_columns(op, flat, idx_w), never)
    indices = op.ReduceMin(key, const_i64(op, [4]), keepdims=0)
    return op.Squeeze(y, const_i64(op, [4])), indices


def nan_indicator(op, x):
    """1.0 where ``x`` is NaN, else 0.0: pooled by sums, it counts the NaN of each window."""
    return op.Cast(op.IsNaN(x), to=1)


def nan_where(op, y, nan_count):
    """``y`` with NaN where ``nan_count`` (NaN per window, see :func:`nan_indicator`) is
    positive. ONNX Runtime's MaxPool and ReduceMax skip NaN; PyTorch's max propagates it."""
    return op.Where(op.Greater(nan_count, const_f32(op, 0.0)), const_f32(op, float("nan")), y)


# ---------------------------------------------------------------- fixed-window pooling


def _ceil_padding(op, x, kernel, stride, padding, dilation, value: float):
    """Pad ``x`` so that a floor-mode pool without padding gives PyTorch's ceil-mode output.

    ONNX Runtime has had wrong results for ceil_mode together with pads, so the
    padding is explicit: ``p`` on the left, ``p`` plus what the last window needs on
    the right. Returns the padded tensor.
    """
    extra = []
    for axis, (k, s, p, d) in enumerate(zip(kernel, stride, padding, dilation)):
        size = dim(op, x, 2 + axis)
        out = pool_out_dim(op, size, k, s, p, d, True)
        need = op.Sub(
            op.Add(op.Mul(op.Sub(out, const_i64(op, [1])), const_i64(op, [s])), const_i64(op, [d * (k - 1) + 1])),
            op.Add(size, const_i64(op, [2 * p])),
        )
        extra.append(op.Max(need, const_i64(op, [0])))
    pads = op.Concat(
        const_i64(op, [0, 0, padding[0], padding[1], 0, 0]),
        op.Add(extra[0], const_i64(op, [padding[0]])),
        op.Add(extra[1], const_i64(op, [padding[1]])),
        axis=0,
    )
    return op.Pad(x, pads, const_f32(op, value))


def max_pool(op, x, kernel, stride, padding, dilation, ceil_mode: bool, with_indices: bool):
    """PyTorch ``max_pool2d`` on ONNX MaxPool; indices index each ``(n, c)`` plane.

    ONNX MaxPool's ``Indices`` index the whole ``N*C*H*W`` tensor (and, with the
    ``pads`` attribute, the unpadded input): they are converted to plane indices.
    """
    attrs = dict(kernel_shape=list(kernel), strides=list(stride), dilations=list(dilation))
    if not ceil_mode:
        attrs["pads"] = [padding[0], padding[1], padding[0], padding[1]]
        if not with_indices:
            return op.MaxPool(x, **attrs, _outputs=1), None
        y, idx = op.MaxPool(x, **attrs, _outputs=2)
        return y, op.Sub(idx, _plane_offsets(op, x))
    xp = _ceil_padding(op, x, kernel, stride, padding, dilation, -FLOAT_INF)
    if not with_indices:
        return op.MaxPool(xp, **attrs, _outputs=1), None
    y, idx = op.MaxPool(xp, **attrs, _outputs=2)
    hp, wp = dim(op, xp, 2), dim(op, xp, 3)
    flat = op.Sub(idx, _plane_offsets(op, xp))
    r = _into_input(op, op.Sub(op.Div(flat, wp), const_i64(op, [padding[0]])), padding[0], dilation[0])
    c = _into_input(op, op.Sub(op.Mod(flat, wp), const_i64(op, [padding[1]])), padding[1], dilation[1])
    return y, op.Add(op.Mul(r, dim(op, x, 3)), c)


def _into_input(op, r, pad: int, dilation: int):
    """A row (or column) ``r`` of a window, moved from the -inf padding to the window's
    first row inside the input: where a window holds only -inf, the padding's -inf comes
    first and PyTorch points at the first real element."""
    if pad == 0:
        return r
    if dilation == 1:
        return op.Max(r, const_i64(op, [0]))
    before = op.Max(op.Neg(r), const_i64(op, [0]))  # rows in the padding above r
    steps = op.Div(op.Add(before, const_i64(op, [dilation - 1])), const_i64(op, [dilation]))
    return op.Add(r, op.Mul(steps, const_i64(op, [dilation])))


def _plane_offsets(op, x):
    """``[N, C, 1, 1]`` int64: where plane ``(n, c)`` starts in the flat ``N*C*H*W`` tensor
    (subtracted from MaxPool's indices: a Sub, where a Mod by ``H*W`` costs an int64
    division per output)."""
    plane = op.Mul(dim(op, x, 2), dim(op, x, 3))
    planes = op.Range(const_scalar_i64(op, 0), scalar(op, op.Mul(dim(op, x, 0), dim(op, x, 1))), const_scalar_i64(op, 1))
    return op.Reshape(op.Mul(planes, plane), op.Concat(op.Shape(x, start=0, end=2), const_i64(op, [1, 1]), axis=0))


def window_sum(op, x, kernel, stride, padding, ceil_mode: bool):
    """Sum over each window (zero padding), ``[N, C, oh, ow]``, PyTorch output size."""
    if ceil_mode:
        xp = _ceil_padding(op, x, kernel, stride, padding, (1, 1), 0.0)
        pads = [0, 0, 0, 0]
    else:
        xp, pads = x, [padding[0], padding[1], padding[0], padding[1]]
    mean = op.AveragePool(xp, kernel_shape=list(kernel), strides=list(stride), pads=pads, count_include_pad=1)
    return op.Mul(mean, const_f32(op, kernel[0] * kernel[1]))


def avg_divisor(op, x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """The divisor of each window ``[oh, ow]`` (PyTorch's rule), as float32.

    ``count_include_pad``: window clipped to the padded input; else to the input.
    """
    if divisor_override is not None:
        return const_f32(op, divisor_override)
    counts = []
    for axis, (k, s, p) in enumerate(zip(kernel, stride, padding)):
        size = dim(op, x, 2 + axis)
        out = pool_out_dim(op, size, k, s, p, 1, ceil_mode)
        starts, ends = window_bounds(op, out, k, s, p)
        ends = op.Min(ends, op.Add(size, const_i64(op, [p])))
        if not count_include_pad:
            starts = op.Max(starts, const_i64(op, [0]))
            ends = op.Min(ends, size)
        counts.append(op.Cast(op.Sub(ends, starts), to=1))
    return op.Mul(unsqueeze(op, counts[0], [1]), unsqueeze(op, counts[1], [0]))


def window_membership(op, x, kernel, stride, padding, ceil_mode):
    """``(A_h, A_w)``: 0/1 matrices ``[o, L]`` of which input rows/cols each window covers."""
    mats = []
    for axis, (k, s, p) in enumerate(zip(kernel, stride, padding)):
        size = dim(op, x, 2 + axis)
        out = pool_out_dim(op, size, k, s, p, 1, ceil_mode)
        starts, ends = window_bounds(op, out, k, s, p)
        mats.append(membership(op, starts, ends, size, normalise=False))
    return mats


# ---------------------------------------------------------------- gradients and NaN


def scatter_add(op, x, indices, values):
    """Gradient routing: ``zeros_like(x)`` plus ``values`` added at plane ``indices``.

    ``indices``/``values``: ``[N, C, ...]`` with flat ``H*W`` indices; overlapping
    windows accumulate. N or C may be 0.
    """
    shape = op.Shape(x)
    nc = op.Mul(dim(op, x, 0), dim(op, x, 1))
    plane = op.Mul(dim(op, x, 2), dim(op, x, 3))
    # values per plane without a -1 in the Reshape (ONNX Runtime cannot infer it when N*C = 0)
    per_plane = op.Div(op.Size(indices), op.Max(nc, const_i64(op, [1])))
    flat_shape = op.Concat(nc, per_plane, axis=0)
    zeros = op.ConstantOfShape(op.Concat(nc, plane, axis=0))
    out = op.ScatterElements(
        zeros,
        op.Reshape(indices, flat_shape),
        op.Reshape(values, flat_shape),
        axis=1,
        reduction="add",
    )
    return op.Reshape(out, shape)


FLOAT_LOWEST = -3.4028234663852886e38


def exact_max(op, x, y, pool: Callable):
    """``y = pool(op, x)`` (a MaxPool) made PyTorch's: NaN wherever its window holds a NaN
    (ONNX Runtime's MaxPool skips NaN; the NaN map is pooled the same way), and -inf for a
    window of only -inf (ONNX Runtime's MaxPool then gives -FLT_MAX; a window whose true
    max is exactly -FLT_MAX is taken for one of -inf). Unconditional: guard it with
    :func:`if_finite`, as :func:`propagate_nan` does."""
    y = op.Where(op.Equal(y, const_f32(op, FLOAT_LOWEST)), const_f32(op, -FLOAT_INF), y)
    mask = pool(op, op.Cast(op.IsNaN(x), to=1))
    return op.Where(op.Greater(mask, const_f32(op, 0.0)), const_f32(op, float("nan")), y)


def propagate_nan(op, x, pool: Callable):
    """``pool(op, x)`` (a MaxPool) made PyTorch's by :func:`exact_max` only for inputs that
    hold a NaN or an infinity (:func:`if_finite`); for finite x the MaxPool's result already
    is. The pool is built inside each branch: one built outside and returned by a branch
    costs ONNX Runtime an Identity's copy of it."""
    return if_finite(op, x, lambda sub: pool(sub, x), lambda sub: exact_max(sub, x, pool(sub, x), pool))


def if_finite(op, x, fast: Callable, exact: Callable, n: int = 1):
    """``fast(op)`` when every element of ``x`` is finite, else ``exact(op)``: an ONNX ``If``
    on one ``ReduceSum`` of x (``sum * 0`` is NaN exactly when the sum is NaN or infinite:
    x holds a NaN or an infinity, or a finite sum overflowed, where ``exact`` runs and is
    still right). The max ops' NaN and -inf passes then cost one read of x on the inputs
    that need none of them. ``n``: how many values each branch returns (a list if n > 1).

    Inside ``torch.onnx.export`` (whose recorder builds no subgraphs) ``exact(op)`` is
    emitted unconditionally: the same results, at the cost of the passes."""
    if not has_subgraphs(op):
        return exact(op)
    cond = op.IsNaN(op.Mul(op.ReduceSum(x, keepdims=0), const_f32(op, 0.0)))  # no axes: all of x
    return branch(op, cond, exact, fast, n)


def if_nan(op, x, then: Callable, otherwise, n: int | None = None):
    """``then(op)`` if ``x`` may hold a NaN, else ``otherwise``: an ONNX ``If`` on
    ``IsNaN(ReduceSum(x))`` (NaN exactly when x holds a NaN or both infinities; ``then``
    runs too then, which is still exact). ``otherwise``: a value or a list of values built
    outside, or a callable building its ``n`` values (a list if n > 1) inside the branch,
    where ONNX Runtime then spares an Identity's copy of each.
    Without subgraphs (``torch.onnx.export``) ``then(op)`` unconditionally."""
    if not has_subgraphs(op):
        return then(op)
    cond = op.IsNaN(op.ReduceSum(x, keepdims=0))
    if callable(otherwise):
        return branch(op, cond, then, otherwise, n or 1)
    many = isinstance(otherwise, (tuple, list))
    n = len(otherwise) if many else 1
    out = branch(op, cond, then, lambda sub: otherwise, n)
    return [out] if many and n == 1 else out


def has_subgraphs(op) -> bool:
    """Whether ``op`` can build ``If`` branches (not inside ``torch.onnx.export``)."""
    builder = getattr(op, "builder", None)
    return builder is not None and hasattr(builder, "subgraph")


def branch(op, cond, then: Callable, otherwise: Callable, n: int = 1):
    """An ONNX ``If`` on ``cond`` (one bool): ``then(sub)`` or ``otherwise(sub)``, each
    returning ``n`` values (one value, or a list if n > 1) traced into its branch.

    A value a branch computes is its output as it is; one from outside is passed
    through an Identity (a branch output must be a value of the branch).
    """
    builder = op.builder

    def trace(fn):
        def run(sub):
            out = fn(sub)
            values = list(out) if isinstance(out, (tuple, list)) else [out]
            if len(values) != n:
                raise ValueError(f"a branch returned {len(values)} values, expected {n}")
            inside = {v for node in sub.builder.graph for v in node.outputs}
            seen, result = set(), []
            for v in values:
                result.append(v if v in inside and v not in seen else sub.Identity(v))
                seen.add(v)
            return result

        return run

    graphs = []
    for fn, name in ((then, "then"), (otherwise, "else")):
        g = builder.subgraph(trace(fn), inputs=[], outputs=_branch_outs(name, n), name=f"{name}_branch")
        _prefix_names(g, f"{name}{next(_BRANCHES)}_")  # the sub-builder numbers names afresh: keep them unique
        graphs.append(g)
    out = op.If(cond, then_branch=graphs[0], else_branch=graphs[1], _outputs=n)
    if n == 1:
        return out
    return list(out)


_BRANCHES = itertools.count()


def _prefix_names(graph, prefix: str) -> None:
    for v in graph.inputs:
        v.name = prefix + v.name
    for node in graph:
        if node.name:
            node.name = prefix + node.name
        for v in node.outputs:
            if v.name and v not in graph.outputs:
                v.name = prefix + v.name
    for v in graph.outputs:
        v.name = prefix + v.name


def _branch_outs(name: str, n: int):
    import onnx_ir as ir

    return [ir.Value(name=f"{name}_{i}") for i in range(n)]


def take_outputs(outputs: Sequence[str], **values):
    """The requested outputs, in order."""
    return tuple(values[name] for name in outputs)


# ---------------------------------------------------------------- work rules
#
# Plain-int upper bounds of the largest tensor each block above produces (a node's
# outputs together), in float32 units: an int64 element counts 2, a bool 1. The ops'
# ``work`` rules (``OpSpec.cost``) combine them; tests/poolops/test_cost.py checks them
# against ONNX Runtime's profiler. Dims are ``n, c, h, w`` of x and ``oh, ow`` of the output.


def out_len(size: int, kernel: int, stride: int, pad: int, dilation: int, ceil: bool) -> int:
    """:func:`poolops.shapes.pool_out_size`, at least 0 (for shapes not yet checked)."""
    from poolops.shapes import pool_out_size

    return max(pool_out_size(size, kernel, stride, pad, dilation, ceil), 0)


def padded_len(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    """The length :func:`_ceil_padding` pads an axis to (ceil mode)."""
    out = out_len(size, kernel, stride, pad, dilation, True)
    return size + 2 * pad + max((out - 1) * stride + dilation * (kernel - 1) + 1 - (size + 2 * pad), 0)


def adaptive_len(size: int, n: int, up_to: bool = False) -> int:
    """The longest PyTorch adaptive bin of ``size`` into ``n`` bins (0 for no bins); with
    ``up_to``, of any size from 1 to ``size`` (per-sample bins of a padded batch)."""
    if size <= 0 or n <= 0:
        return 0
    if size % n == 0 and not up_to:
        return size // n
    return min(size, -(-size // n) + 1)


def max_pool_work(n, c, h, w, kernel, stride, padding, dilation, ceil: bool, with_indices: bool) -> int:
    """:func:`max_pool`: the pooled values (with int64 indices), the ceil-mode padding."""
    oh, ow = (out_len((h, w)[a], kernel[a], stride[a], padding[a], dilation[a], ceil) for a in range(2))
    y = n * c * oh * ow
    work = 3 * y if with_indices else y
    return max(work, _padded_work(n, c, h, w, kernel, stride, padding, dilation)) if ceil else work


def _padded_work(n, c, h, w, kernel, stride, padding, dilation) -> int:
    """x padded by :func:`_ceil_padding`."""
    hp, wp = (padded_len((h, w)[a], kernel[a], stride[a], padding[a], dilation[a]) for a in range(2))
    return n * c * hp * wp


def propagate_nan_work(n, c, h, w, kernel, stride, padding, dilation, ceil: bool) -> int:
    """:func:`propagate_nan` around a max pool: the NaN map of x, its pooling."""
    return max(n * c * h * w, max_pool_work(n, c, h, w, kernel, stride, padding, dilation, ceil, False))


def window_sum_work(n, c, h, w, kernel, stride, padding, ceil: bool) -> int:
    """:func:`window_sum`: the window sums, the ceil-mode padding."""
    oh, ow = (out_len((h, w)[a], kernel[a], stride[a], padding[a], 1, ceil) for a in range(2))
    work = n * c * oh * ow
    return max(work, _padded_work(n, c, h, w, kernel, stride, padding, (1, 1))) if ceil else work


def avg_divisor_work(oh: int, ow: int) -> int:
    """:func:`avg_divisor`: int64 window bounds per axis, the ``[oh, ow]`` divisors."""
    return max(oh * ow, 2 * oh, 2 * ow)


def membership_work(o: int, size: int, per_sample: int = 1) -> int:
    """:func:`membership` ``[o, L]`` (``per_sample`` N: :func:`membership_per_sample`)."""
    return max(per_sample * o * size, 2 * per_sample * o, 2 * size)


def window_membership_work(h, w, oh, ow) -> int:
    """:func:`window_membership`: both 0/1 matrices."""
    return max(membership_work(oh, h), membership_work(ow, w))


def separable_matmul_work(n, c, h, w, oh, ow) -> int:
    """:func:`separable_matmul`: ``x @ A_w^T`` ``[N, C, H, ow]`` then ``[N, C, oh, ow]``."""
    return max(n * c * h * ow, n * c * oh * ow, ow * w)


def separable_matmul_t_work(n, c, h, w, oh, ow) -> int:
    """:func:`separable_matmul_t`: ``[N, C, H, ow]`` then ``[N, C, H, W]``."""
    return max(n * c * h * ow, n * c * h * w, oh * h)


def scatter_add_work(n, c, h, w, m: int) -> int:
    """:func:`scatter_add` of ``m`` values per plane: the zeros, the int64 indices."""
    return max(n * c * h * w, 2 * n * c * m)


def _bin_index_work(o: int, k: int, per_sample: int = 1) -> int:
    return max(2 * per_sample * o * k, 2 * per_sample * o, 2 * k)


def bin_max_work(n, c, h, w, oh, ow, kh, kw) -> int:
    """:func:`bin_max` with bins at most ``kh`` rows and ``kw`` columns long (the column
    bins' int64 indices expanded over ``[N, C, oh]``, :func:`column_bins_max`)."""
    return max(
        n * c * oh * kh * w, n * c * oh * w, 2 * n * c * oh * ow * kw, _bin_index_work(oh, kh), _bin_index_work(ow, kw)
    )


def bin_argmax_work(n, c, h, w, oh, ow, kh, kw) -> int:
    """:func:`bin_argmax`: as :func:`bin_max`, plus int64 positions of each row bin's
    maxima ``[N, C, oh, W]`` and of each bin's candidates ``[N, C, oh, ow, kw]``."""
    return max(bin_max_work(n, c, h, w, oh, ow, kh, kw), 2 * n * c * oh * w, 2 * n * c * oh * ow * kw, 2 * h * w)


def adaptive_bin_argmax_work(n, c, h, w, oh, ow, kh, kw) -> int:
    """:func:`adaptive_bin_argmax`: the row bins' maxima ``[N, C, oh, W]``, their column
    bins ``[N, C, ow, Kw, oh]`` (gathered by int64 column indices expanded over ``[N, C,
    oh]``), the int64 positions of each bin's cells in its first column at the max
    ``[N, C, ow, Kh, oh]``, y and int64 indices out of the ``If``."""
    return max(n * c * oh * w, 2 * n * c * ow * kw * oh, 2 * n * c * ow * kh * oh, 3 * n * c * oh * ow, 2 * ow * kw)


def bin_max_per_sample_work(n, c, h, w, oh, ow, kh, kw) -> int:
    """:func:`bin_max_per_sample`: x's rows, the gathered row and column bins (also
    bounding :func:`bin_max` on one sample's crop: int64 column indices expanded over
    ``[1, C, oh]``, :func:`column_bins_max`)."""
    return max(
        n * c * h * w,
        n * oh * kh * c * w,
        n * oh * c * w,
        2 * n * ow * kw * oh * c,
        _bin_index_work(oh, kh, n),
        _bin_index_work(ow, kw, n),
    )
