"""Spatial pyramid pooling (He et al. 2015): a fixed-length vector from any H, W.

Each level ``n`` pools the map into ``n x n`` bins; output ``[N, C * sum(n^2)]``,
each level's ``[N, C, n, n]`` flattened C-major, levels concatenated in order.
Example: levels (1, 2, 4) give ``C + 4C + 16C = 21C`` features whatever H and W.

A level may also be a pair ``(rows, cols)``: ``rows`` bins down H and ``cols`` across W
(TF-Addons' ``SpatialPyramidPooling2D(bins=[[r, c], ...])``), each axis binned as PyTorch's
adaptive pooling does (or by the SPP-net rule), output ``[N, C * sum(r * c)]``. Example:
levels ``(1, (2, 3))`` give ``C + 6C = 7C`` features. (TF-Addons crops ``H mod r`` rows
and ``W mod c`` columns and splits the rest equally, and lays out ``[N, r*c, C]``: the
same values where H and W are divisible by the bins.)

With the optional input ``valid`` (``[N, 2]`` int64, see :mod:`poolops.inputs`) sample
n is pooled over ``x[n, :, :h_n, :w_n]`` only: a padded batch of different-size maps
gives the same vectors as pooling each map alone (what exact batching needs).

``bins='adaptive'`` (default): PyTorch's adaptive bins, exact for any ``H, W >= 1``.
``bins='sppnet'``: the paper's rule, window ``ceil(a/n)``, stride ``floor(a/n)``:
bins may leave trailing rows uncovered (a=7, n=4: window 2, stride 1, rows 5-6
unused), and when ``a < n`` the stride is clamped to 1 and bins repeat the last row.

ONNX: avg levels share one ``x @ A_w^T`` product over all levels' column bins (inputs
with NaN or infinities take an exact pass that keeps each in its own bins); max
levels that divide the finest level are pooled from it (adaptive bins nest exactly:
bin j of level m is the union of bins kj..kj+k-1 of level km). With ``valid``: a Loop
over the samples, each cropped to its valid region and pooled as above (the padding is
never read).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from poolops.onnx import blocks
from poolops.onnx.builder import const_f32, const_i64, const_scalar_i64, dim, scalar, unsqueeze
from poolops.params import OpParams
from poolops.registry import OpSpec, register
from poolops.shapes import sppnet_bins


DEFAULT_LEVELS = (1, 2, 4)
"""The default pyramid: 1, 2 and 4 bins per side, ``21C`` features."""


class SPPParams(OpParams):
    levels: tuple[int | tuple[int, int], ...] = Field(default=DEFAULT_LEVELS, min_length=1)
    """Bins per side (``n``: ``n x n``) or ``(rows, cols)`` per level, each >= 1."""
    mode: Literal["max", "avg"] = "max"
    bins: Literal["adaptive", "sppnet"] = "adaptive"
    propagate_nan: bool = True
    """See ``max``: False skips the NaN pass in ONNX (max mode)."""

    def model_post_init(self, _ctx) -> None:
        from poolops.params import check_list_length, invalid

        check_list_length("levels", self.levels, "levels (each level n adds n*n features per channel)")
        if any(min(n) < 1 for n in self.grid):
            raise invalid("levels", f"every level must be >= 1, got {self.levels}")

    @property
    def grid(self) -> tuple[tuple[int, int], ...]:
        """Each level as ``(rows, cols)``: ``n`` is ``(n, n)``."""
        return tuple(_rows_cols(n) for n in self.levels)


def _rows_cols(level) -> tuple[int, int]:
    return (level, level) if isinstance(level, int) else (int(level[0]), int(level[1]))


def feature_multiplier(levels) -> int:
    """Features per channel: ``sum(n^2)``, ``sum(rows * cols)`` (heads use ``C * feature_multiplier``)."""
    return sum(r * c for r, c in map(_rows_cols, levels))


def _shape(p, s):
    return (s[0], s[1] * feature_multiplier(p.levels))


# ---------------------------------------------------------------- torch


def _torch_bin_pool(x, n: tuple[int, int], mode: str):
    """Pool ``x`` into ``rows x cols`` SPP-net bins with explicit loops (reference)."""
    import torch

    rows = sppnet_bins(x.shape[2], n[0])
    cols = sppnet_bins(x.shape[3], n[1])
    out = []
    for r0, r1 in rows:
        for c0, c1 in cols:
            window = x[:, :, r0:r1, c0:c1].flatten(2)
            # max over the flattened window: first maximum in row-major order, NaN propagates
            out.append(window.max(dim=2).values if mode == "max" else window.mean(dim=2))
    return torch.stack(out, dim=2).reshape(x.shape[0], x.shape[1], *n)


def torch_spp(p: SPPParams, x, valid=None, outputs=("y",)):
    import torch
    import torch.nn.functional as F

    if valid is not None:  # each sample on its own valid region (the reference: a loop)
        rows = [torch_spp(p, x[i : i + 1, :, : int(h), : int(w)])[0] for i, (h, w) in enumerate(valid.tolist())]
        return (torch.cat(rows, dim=0),)

    feats = []
    for n in p.grid:
        if p.bins == "sppnet":
            level = _torch_bin_pool(x, n, p.mode)
        elif p.mode == "max":
            level = F.adaptive_max_pool2d(x, n)
        else:
            level = F.adaptive_avg_pool2d(x, n)
        feats.append(level.flatten(1))
    return (torch.cat(feats, dim=1),)


# ---------------------------------------------------------------- ONNX


def _sizes(op, x, valid):
    """(height, width): dims ``[1]`` of x, or per sample ``[N, 1]`` from ``valid``."""
    if valid is None:
        return dim(op, x, 2), dim(op, x, 3)
    return tuple(op.Slice(valid, const_i64(op, [a]), const_i64(op, [a + 1]), const_i64(op, [1])) for a in range(2))


def _valid_mask(op, x, sizes):
    """``[N, 1, H, W]`` bool: inside each sample's valid region."""
    def inside(axis, size):
        r = op.Range(const_scalar_i64(op, 0), scalar(op, dim(op, x, axis)), const_scalar_i64(op, 1))
        shape = [1, 1, -1, 1] if axis == 2 else [1, 1, 1, -1]
        return op.Less(op.Reshape(r, const_i64(op, shape)), op.Reshape(size, const_i64(op, [-1, 1, 1, 1])))

    return op.And(inside(2, sizes[0]), inside(3, sizes[1]))


def _bounds(op, p, sizes, n):
    make = blocks.adaptive_bounds if p.bins == "adaptive" else blocks.sppnet_bounds
    return tuple(make(op, size, k) for size, k in zip(sizes, n))


def _flatten(op, t):
    return op.Flatten(t, axis=1)  # [N, C * r * c]; a Reshape to [0, -1] fails for N = 0


def _bin_sums(op, p, x, sizes, normalise: bool, per_sample: bool, matmul=None, mats=None):
    """``[N, C, n, n]`` bin sums (means if ``normalise``: sums divided by the bin sizes, as
    PyTorch) per level, all levels' column bins in one pass over ``x``
    (``x @ [A_w1; A_w2; ...]^T``), then each level's rows. With ``per_sample`` the
    matrices are ``[N, 1, n, L]`` (bins of each valid region). ``matmul(op, a, b,
    matrix_left)``: plain MatMuls by default, :func:`blocks.bin_matmul` for NaN and
    infinities kept in their bins. ``mats``: :func:`_bin_matrices` made before (an exact
    pass reuses the fast one's)."""
    if matmul is None:
        matmul = _plain_matmul
    a_h, a_w_t, divisors = mats if mats is not None else _bin_matrices(op, p, x, sizes, per_sample)
    cols = matmul(op, x, a_w_t, False)  # [N, C, H, sum n]
    out, offset = [], 0
    for n, ah, div in zip(p.grid, a_h, divisors):
        part = op.Slice(cols, const_i64(op, [offset]), const_i64(op, [offset + n[1]]), const_i64(op, [3]))
        sums = matmul(op, ah, part, True)
        out.append(op.Div(sums, div) if normalise else sums)
        offset += n[1]
    return out


def _bin_matrices(op, p, x, sizes, per_sample: bool):
    """Per level the 0/1 row matrices and bin sizes, and all levels' column matrices
    stacked and transposed: ``(a_h, a_w^T, sizes)``."""
    member = blocks.membership_per_sample if per_sample else blocks.membership
    a_h, a_w, divisors = [], [], []
    for n in p.grid:
        (bh, bw) = _bounds(op, p, sizes, n)
        divisors.append(blocks.bin_sizes(op, bh, bw, per_sample=per_sample))
        a_h.append(member(op, *bh, dim(op, x, 2), normalise=False))
        a_w.append(member(op, *bw, dim(op, x, 3), normalise=False))
    a_w = op.Concat(*a_w, axis=2 if per_sample else 0)
    return a_h, op.Transpose(a_w, perm=[0, 1, 3, 2] if per_sample else [1, 0]), divisors


def _plain_matmul(op, a, b, matrix_left: bool):
    return op.MatMul(a, b)


def _nested_base(grid) -> tuple[int, int] | None:
    """The finest level ``(rows, cols)`` all others can be pooled from, or None."""
    finest = tuple(math.lcm(*axis) for axis in zip(*grid))
    return finest if all(f <= 4 * max(axis) for f, axis in zip(finest, zip(*grid))) else None


def _max_levels(op, p, x, sizes, per_sample: bool):
    """``[N, C, n, n]`` per level, NaN propagated if ``p.propagate_nan``."""
    base = _nested_base(p.grid) if p.bins == "adaptive" else None

    def pool(op, n):
        bounds = _bounds(op, p, sizes, n)
        if per_sample:
            return blocks.bin_max_per_sample(op, x, *bounds)
        if p.bins == "adaptive":
            return blocks.adaptive_bin_max(op, x, n, *bounds)
        return blocks.bin_max(op, x, *bounds)

    def levels(op):
        if base is None:
            return [pool(op, n) for n in p.grid]
        fine = pool(op, base)  # [N, C, *base]
        return [fine if n == base else _coarsen(op, fine, n, (base[0] // n[0], base[1] // n[1])) for n in p.grid]

    pooled = levels(op)  # built once, outside the If below (both of its branches read it)
    if not p.propagate_nan:
        return pooled

    def exact(op):  # x holds a NaN or an infinity: NaN where a bin counts a NaN
        counts = _bin_sums(op, p, blocks.nan_indicator(op, x), sizes, normalise=False, per_sample=per_sample)
        return [blocks.nan_where(op, y, c) for y, c in zip(pooled, counts)]

    out = blocks.if_finite(op, x, lambda op: pooled, exact, len(p.levels))
    return [out] if len(p.levels) == 1 else out


def _coarsen(op, fine, n: tuple[int, int], k: tuple[int, int]):
    """Level ``n`` (rows, cols) from the nested finer level: the max of each ``k`` block."""
    blocks_shape = const_i64(op, [0, 0, n[0], k[0], n[1], k[1]])
    return op.ReduceMax(op.Reshape(fine, blocks_shape), const_i64(op, [3, 5]), keepdims=0)


def _each_sample(op, p: SPPParams, x, valid):
    """With ``valid``: a ``Loop`` over the samples, each cropped to its valid region
    (``x[n:n+1, :, :h_n, :w_n]``, a Slice) and pooled as a batch of one, with that
    path's fast bins and its NaN pass only where the crop needs it; the padding is never
    read. ``[N, C * features]``."""
    def one(sub, it):
        i = unsqueeze(sub, it, [0])
        starts = sub.Concat(i, const_i64(sub, [0, 0]), axis=0)
        ends = sub.Concat(sub.Add(i, const_i64(sub, [1])), sub.Gather(valid, it, axis=0), axis=0)
        crop = sub.Slice(x, starts, ends, const_i64(sub, [0, 2, 3]))  # [1, C, h_n, w_n]
        return onnx_spp(sub, p, crop)[0]  # [1, F]

    stacked = blocks.loop_stack(op, scalar(op, dim(op, x, 0)), one, "spp_sample")  # [N, 1, F]
    features = op.Mul(dim(op, x, 1), const_i64(op, [feature_multiplier(p.levels)]))
    return op.Reshape(stacked, op.Concat(dim(op, x, 0), features, axis=0))


def onnx_spp(op, p: SPPParams, x, valid=None, outputs=("y",)):
    if valid is not None and blocks.has_subgraphs(op):
        return blocks.take_outputs(outputs, y=_each_sample(op, p, x, valid))
    sizes, per_sample = _sizes(op, x, valid), valid is not None
    if p.mode == "max":
        levels = _max_levels(op, p, x, sizes, per_sample)
    else:
        if per_sample:  # padding may hold anything (inf, NaN): zero it, as 0 * NaN is NaN
            x = op.Where(_valid_mask(op, x, sizes), x, const_f32(op, 0.0))
        mats = _bin_matrices(op, p, x, sizes, per_sample)
        levels = _bin_sums(op, p, x, sizes, normalise=True, per_sample=per_sample, mats=mats)
    y = op.Concat(*[_flatten(op, level) for level in levels], axis=1)
    if p.mode == "avg":  # NaN and infinities in their own bins (see blocks.bin_sums)
        def exact(op):
            means = _bin_sums(op, p, x, sizes, True, per_sample, matmul=blocks.bin_matmul, mats=mats)
            return op.Concat(*[_flatten(op, level) for level in means], axis=1)

        y = blocks.if_finite(op, y, lambda op: y, exact)
    return blocks.take_outputs(outputs, y=y)


def onnx_spp_backward(op, p: SPPParams, x, grad_y):
    """Split ``grad_y`` per level, route each level like adaptive pooling, sum."""
    sizes = _sizes(op, x, None)
    grads, offset = [], 0
    c = dim(op, x, 1)
    for n in p.grid:
        size = n[0] * n[1]
        start = op.Mul(c, const_i64(op, [offset]))
        g = op.Slice(grad_y, start, op.Add(start, op.Mul(c, const_i64(op, [size]))), const_i64(op, [1]))
        grads.append(op.Reshape(g, op.Concat(op.Shape(x, start=0, end=2), const_i64(op, n), axis=0)))  # N may be 0
        offset += size
    if p.mode == "avg":
        total = None
        for n, g in zip(p.grid, grads):
            bh, bw = _bounds(op, p, sizes, n)
            a_h = blocks.membership(op, *bh, dim(op, x, 2), normalise=True)
            a_w = blocks.membership(op, *bw, dim(op, x, 3), normalise=True)
            part = blocks.separable_matmul_t(op, g, a_h, a_w)
            total = part if total is None else op.Add(total, part)
        return total
    per_level = [op.Concat(op.Shape(x, start=0, end=2), const_i64(op, [n[0] * n[1]]), axis=0) for n in p.grid]
    indices = [
        op.Reshape(blocks.bin_argmax(op, x, *_bounds(op, p, sizes, n))[1], shape)
        for n, shape in zip(p.grid, per_level)
    ]
    values = [op.Reshape(g, shape) for g, shape in zip(grads, per_level)]
    return blocks.scatter_add(op, x, op.Concat(*indices, axis=2), op.Concat(*values, axis=2))


def _bin_len(p: SPPParams, size: int, n: int, per_sample: bool = False) -> int:
    """The longest bin of ``size`` (any size up to it, ``per_sample``) into ``n``:
    adaptive, or the SPP-net window."""
    if p.bins == "adaptive":
        return blocks.adaptive_len(size, n, up_to=per_sample)
    return -(-size // n) if size > 0 else 0


def _bin_sums_work(p: SPPParams, n, c, h, w, per_sample: bool) -> int:
    """:func:`_bin_sums`: every level's matrices, ``x @ [A_w1; ...]^T`` ``[N, C, H, sum n]``."""
    total = sum(cols for _, cols in p.grid)
    rows = n if per_sample else 1
    mats = max(max(blocks.membership_work(lv[0], h, rows), blocks.membership_work(lv[1], w, rows)) for lv in p.grid)
    return max(mats, rows * total * w, n * c * h * total, n * c * max(lv[0] * lv[1] for lv in p.grid))


def _max_levels_work(p: SPPParams, n, c, h, w, per_sample: bool) -> int:
    """:func:`_max_levels`: each level's (or the nested finest level's) bin max."""
    bin_max = blocks.bin_max_per_sample_work if per_sample else blocks.bin_max_work
    base = _nested_base(p.grid) if p.bins == "adaptive" else None
    pooled = [base] if base is not None else p.grid
    lens = [(_bin_len(p, h, lv[0], per_sample), _bin_len(p, w, lv[1], per_sample)) for lv in pooled]
    work = max(bin_max(n, c, h, w, *lv, *k) for lv, k in zip(pooled, lens))
    if p.propagate_nan:
        work = max(work, n * c * h * w, _bin_sums_work(p, n, c, h, w, per_sample))
    return work


def spp_work(p: SPPParams, shapes, outputs=("y",), backward=False) -> int:
    """Max: each level's bins gathered (rows ``[N, C, n, Kh, W]``, Kh the longest bin; a
    nested finest level instead of each), NaN counts as avg; avg: ``[N, C, H, sum n]``
    and the bin matrices. With ``valid``: per-sample matrices and x's valid mask.
    Backward: per level the argmax (max) or ``A_h^T g`` (avg), one scatter into x."""
    n, c, h, w = shapes["x"]
    per_sample = "valid" in shapes
    if p.mode == "max":
        work = _max_levels_work(p, n, c, h, w, per_sample)
    else:  # x's valid region, or the exact pass's copies of x for NaN and infinities
        work = max(_bin_sums_work(p, n, c, h, w, per_sample), n * c * h * w)
    work = max(work, n * c * feature_multiplier(p.levels))
    if backward:
        for lv in p.grid:
            kh, kw = _bin_len(p, h, lv[0]), _bin_len(p, w, lv[1])
            if p.mode == "avg":
                work = max(
                    work,
                    blocks.window_membership_work(h, w, *lv),
                    blocks.separable_matmul_t_work(n, c, h, w, *lv),
                )
            else:
                work = max(work, blocks.bin_argmax_work(n, c, h, w, *lv, kh, kw))
        if p.mode == "max":
            work = max(work, blocks.scatter_add_work(n, c, h, w, feature_multiplier(p.levels)))
    return work


register(
    OpSpec(
        name="spp",
        torch_stock="F.adaptive_max_pool2d per level + cat",
        family="pyramid",
        params=SPPParams,
        torch_fn=torch_spp,
        onnx_fn=onnx_spp,
        onnx_backward=onnx_spp_backward,
        output_shape=_shape,
        module_name="SpatialPyramidPool",
        optional_inputs=("valid",),
        work=spp_work,
        bench_params=(("levels 1, 2x3, 3x6", {"levels": (1, (2, 3), (3, 6))}),),
        doc=__doc__,
    )
)
