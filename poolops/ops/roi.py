"""RoI pooling: ``roi_pool``, ``roi_align`` (torchvision semantics) and ``deform_roi_pool``.

Each takes ``x [N, C, H, W]`` and ``boxes [K, 5]`` (batch index, x1, y1, x2, y2 in input
coordinates; the input kinds are defined below) and gives ``y [K, C, oh, ow]``: one pooled map
per box (K may be 0). Box coordinates are multiplied by ``spatial_scale`` (as float32)
to reach x's coordinates. Box geometry is float32 arithmetic in torchvision's order, so
bin edges and sample positions are bit-identical (sums of samples may differ in the last
bits: the tests measure at most ~3e-7 relative).

``roi_pool`` (Girshick 2015, torchvision ``RoIPool``): box corners rounded half away
from zero (C ``round``; torch's and ONNX's Round are half to even, so the torch
function and the graph build it from trunc/floor), ``roi = max(end - start + 1, 1)``, ``bin = roi / o``; bin ``i`` covers
``[floor(i*bin), ceil((i+1)*bin)) + start`` clipped to the map; the max over it, 0 for
an empty bin. As in torchvision, NaN is skipped and the max is at least -FLT_MAX (a bin
of only -inf gives -3.4e38). Example: a 4x4 ramp ``x[h, w] = 4h + w``, box
(0, 0.5, 0.5, 2.5, 2.5), output 2x2: corners round to 1 and 3, roi 3, bin 1.5, rows
[1, 3) and [2, 4) (likewise columns), so ``y = [[10, 11], [14, 15]]``.

``roi_align`` (He et al. 2017, torchvision ``roi_align``): corners ``c*scale - 0.5`` if
``aligned`` (else ``c*scale``, and the RoI size is clamped to at least 1), ``bin = roi/o``,
``g = sampling_ratio`` samples per bin side (``-1``/``0``: adaptive, ``ceil(roi/o)``
for each box, each axis) at ``start + i*bin + (s + 0.5)*bin/g``; each sample is
torchvision's ``bilinear_interpolate`` (0 beyond ``[-1, H]``; coordinates <= 0 read row 0,
>= H-1 read row H-1), and a bin is the mean of its ``g_h*g_w`` samples. Example: the
ramp, box (0, 0, 0, 2, 2), output 1x1, sampling_ratio 2, aligned=False: samples at
0.5 and 1.5 on each axis, values 2.5, 3.5, 6.5, 7.5, so ``y = 5``.

``deform_roi_pool`` (Dai et al. 2017, mmcv ``DeformRoIPool``): ``roi_align`` whose bin
``(i, j)`` of box ``k`` starts shifted by ``gamma*roi_w*offsets[k, 0, i, j]`` along x
(width) and ``gamma*roi_h*offsets[k, 1, i, j]`` along y (height): channel 0 is dx,
channel 1 is dy, as in mmcv. With zero offsets it is ``roi_align`` with the same
parameters; ``aligned`` defaults to True and ``sampling_ratio`` to adaptive, as mmcv.
Example: the ramp, box (0, 0, 0, 2, 2), 1x1, sampling_ratio 2, aligned=False,
gamma 0.5, offsets (dx, dy) = (0.5, 0): the samples move right by 0.5*2*0.5 = 0.5, so
``y = 5.5``.

ONNX: ``roi_align`` is ONNX ``RoiAlign`` (opset 16, mode avg, ``half_pixel`` for
aligned, else ``output_half_pixel``), which ONNX Runtime implements with torchvision's
rules (the tests check it against the torch function and the loop reference, adaptive
sampling included) and has a CUDA kernel for. ``deform_roi_pool`` is built from parts:
the samples' bilinear weights are summed (a scatter-add, memory linear in the samples
and rows) into per-bin weight rows over the input rows and columns (bilinear
interpolation is separable), so a bin is ``a_h @ x[b] @ a_w^T``;
the data-dependent sample counts (adaptive ``sampling_ratio``) are handled by sampling
every box on the largest grid of the batch (``ReduceMax`` over boxes, computed in the
graph) and masking samples beyond a box's own grid. Only the band of rows the box's
samples touch is gathered (its height is the tallest band of the batch).
Adaptive sampling takes ``ceil(roi / o)`` samples per bin side, so with it
(``roi_align``, ``deform_roi_pool``) a box whose RoI, in x's coordinates, is more than
``2 * side + 2`` on an axis is refused (``ParamError`` naming ``boxes``): the work is
then bounded by the map's size (``OpSpec.cost``); a fixed ``sampling_ratio`` takes any box.
``roi_pool`` is not ONNX ``MaxRoiPool``: that has no CUDA kernel in ONNX Runtime and
rounds box corners differently; it gathers each bin's rows (bins padded to the longest
by repeating their last row, which does not change a max), reduces, then the columns.

Gradients: the torch functions are differentiable in ``x`` (and ``offsets`` for
``deform_roi_pool``), not in ``boxes``. No ONNX backward graph (it would need the boxes).
Non-finite inputs: the torch ``roi_align``/``deform_roi_pool`` and the ``deform_roi_pool``
graph multiply weight rows with whole row bands, so a NaN or inf in ``x`` can reach bins
whose samples do not read it (0 * inf = NaN); finite inputs are exact.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from poolops.inputs import InputKind, register_kind
from poolops.onnx import blocks
from poolops.onnx.builder import const_f32, const_i64, const_scalar_i64, dim, scalar, unsqueeze
from poolops.params import OpParams, ParamError, PositivePair
from poolops.registry import OpSpec, register

FLOAT_MAX = 3.4028234663852886e38


class RoIPoolParams(OpParams):
    output_size: PositivePair = (7, 7)
    """(oh, ow): bins per box."""
    spatial_scale: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    """Multiplies box coordinates to reach x's (1/16 for a stride-16 feature map)."""


class RoIAlignParams(RoIPoolParams):
    sampling_ratio: int = Field(default=-1, ge=-1)
    """Samples per bin side; -1 or 0: adaptive, ceil(roi size / output size) per box."""
    aligned: bool = False
    """Shift box corners by -0.5 pixel (pixel centres); False: legacy, RoI size >= 1."""


class DeformRoIPoolParams(RoIAlignParams):
    gamma: float = Field(default=0.1, allow_inf_nan=False)
    """Offset scale: bin shift = gamma * offset * RoI size."""
    aligned: bool = True
    """As roi_align; mmcv's DeformRoIPool is aligned (True)."""


def _shape(p, x_shape, boxes_shape=None, offsets_shape=None):
    """``[K, C, oh, ow]``; K is None when the boxes' shape is not given."""
    k = boxes_shape[0] if boxes_shape is not None else None
    return (k, x_shape[1], p.output_size[0], p.output_size[1])


# ---------------------------------------------------------------- inputs


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


def check_boxes(op_name: str, x, boxes, name: str = "boxes",
                columns: tuple[str, ...] = ("batch index", "x1", "y1", "x2", "y2")) -> np.ndarray:
    """``ParamError`` unless ``boxes`` is ``[K, len(columns)]`` finite floats whose batch
    indices (column 0) are integers in ``[0, N)``; returns them as numpy. ``name`` and
    ``columns`` name the input in messages (rotated boxes share this check)."""
    shape = tuple(boxes.shape)
    if len(shape) != 2 or shape[1] != len(columns):
        raise ParamError(op_name, name, f"expected shape [K, {len(columns)}] ({', '.join(columns)}), got {shape}")
    b = _numpy(boxes)
    if not np.issubdtype(b.dtype, np.floating):
        raise ParamError(op_name, name, f"expected float32 boxes, got {b.dtype}")
    if not np.isfinite(b).all():
        raise ParamError(op_name, name, f"every {', '.join(columns[1:])} and batch index must be finite")
    n = x.shape[0]
    idx = b[:, 0]
    bad = (idx != np.round(idx)) | (idx < 0) | (idx >= n)
    if bad.any():
        raise ParamError(
            op_name,
            name,
            f"column 0 is the batch index: an integer in [0, {n}) for x with N={n}; got {idx[bad].tolist()}",
        )
    return b


def check_offsets(op_name: str, p, boxes, offsets) -> None:
    """``ParamError`` unless ``offsets`` is ``[K, 2, oh, ow]`` for K boxes and ``p.output_size``."""
    want = (int(boxes.shape[0]), 2, *p.output_size)
    if tuple(offsets.shape) != want:
        raise ParamError(
            op_name,
            "offsets",
            f"expected shape [K, 2, oh, ow] = {list(want)} (one (dx, dy) per box and output bin), got {tuple(offsets.shape)}",
        )


register_kind(
    InputKind(
        "boxes",
        ("K", 5),
        "float32",
        "regions of interest, one row (batch index, x1, y1, x2, y2) each, in input "
        "coordinates (multiplied by the op's spatial_scale to reach x's); the batch index "
        "is an integer in [0, N); K may be 0",
        lambda x_shape, rng, p=None, inputs=None: _example_boxes(x_shape, rng, p),
        lambda op_name, p, inputs: check_boxes(op_name, inputs["x"], inputs["boxes"]),
        differentiable=False,
    )
)
register_kind(
    InputKind(
        "offsets",
        ("K", 2, "oh", "ow"),
        "float32",
        "per-bin offsets of deformable RoI pooling, normalised by the RoI size: "
        "[k, 0, i, j] moves bin (i, j) of box k along x (width), [k, 1, i, j] along y (height)",
        lambda x_shape, rng, p=None, inputs=None: _example_offsets(rng, p, inputs),
        lambda op_name, p, inputs: check_offsets(op_name, p, inputs["boxes"], inputs["offsets"]),
    )
)


def _output_dims(p: RoIPoolParams) -> dict[str, int]:
    """``oh``, ``ow``: the dims of ``offsets`` named after the output size."""
    return {"oh": int(p.output_size[0]), "ow": int(p.output_size[1])}


# ---------------------------------------------------------------- torch


def _f32(value):
    import torch

    return torch.tensor(value, dtype=torch.float32)


def _round_half_away(v):
    """C ``round`` (half away from zero) of a float tensor, exactly (``v - trunc(v)`` is exact)."""
    import torch

    t = torch.trunc(v)
    return t + torch.where((v - t).abs() >= 0.5, torch.sign(v), torch.zeros_like(v))


def _pool_bounds(start, roi, n: int, size: int):
    """torchvision RoIPool bins of one axis: ``(starts, ends)`` ``[K, n]``, clipped to the map."""
    import torch

    bin_size = roi.to(torch.float32) / n
    i = torch.arange(n, dtype=torch.float32, device=roi.device)
    lo = torch.floor(i * bin_size[:, None]).long() + start[:, None]
    hi = torch.ceil((i + 1) * bin_size[:, None]).long() + start[:, None]
    return lo.clamp(0, size), hi.clamp(0, size)


def _bin_index(lo, hi, size: int):
    """``[K, n, L]`` the rows of each bin (L the longest bin, at least 1), the last one
    repeated (which does not change a max), clamped into the map."""
    import torch

    length = max(int((hi - lo).max()) if lo.numel() else 1, 1)
    idx = torch.minimum(lo[..., None] + torch.arange(length, device=lo.device), (hi - 1)[..., None])
    return idx.clamp(0, size - 1)


def torch_roi_pool(p: RoIPoolParams, x, boxes, outputs=("y",)):
    import torch

    k = boxes.shape[0]
    _, c, h, w = x.shape
    oh, ow = p.output_size
    corners = _round_half_away(boxes[:, 1:] * _f32(p.spatial_scale)).long()  # x1, y1, x2, y2
    h0, h1 = _pool_bounds(corners[:, 1], (corners[:, 3] - corners[:, 1] + 1).clamp_min(1), oh, h)
    w0, w1 = _pool_bounds(corners[:, 0], (corners[:, 2] - corners[:, 0] + 1).clamp_min(1), ow, w)
    xs = torch.where(torch.isnan(x), -float("inf"), x)  # torchvision skips NaN (NaN > max is false)
    rows = xs[boxes[:, 0].long()[:, None, None], :, _bin_index(h0, h1, h)]  # [K, oh, Lh, C, W]
    t = rows.max(dim=2).values  # [K, oh, C, W]
    cols = t[torch.arange(k, device=x.device)[:, None, None], :, :, _bin_index(w0, w1, w)]  # [K, ow, Lw, oh, C]
    y = cols.max(dim=2).values.permute(0, 3, 2, 1).clamp_min(-FLOAT_MAX)  # [K, C, oh, ow]
    empty = ((h1 <= h0)[:, :, None] | (w1 <= w0)[:, None, :])[:, None]  # [K, 1, oh, ow]
    return (torch.where(empty, torch.zeros((), dtype=y.dtype), y).reshape(k, c, oh, ow),)


def _geometry(p, boxes):
    """Per box ``[K]``: starts (x, y), RoI sizes, bin sizes and sample grids (torch)."""
    import torch

    corners = boxes[:, 1:] * _f32(p.spatial_scale) - _f32(0.5 if p.aligned else 0.0)
    start, roi = corners[:, :2], corners[:, 2:] - corners[:, :2]  # (x, y) columns
    if not p.aligned:
        roi = roi.clamp_min(1.0)
    bins = roi / torch.tensor([p.output_size[1], p.output_size[0]], dtype=torch.float32, device=boxes.device)
    grid = torch.ceil(bins).long() if p.sampling_ratio <= 0 else torch.full_like(bins, p.sampling_ratio, dtype=torch.long)
    return start, roi, bins, grid


def _axis_weights(start, bin_size, grid, n: int, axis: int, size: int, band: bool, marks: bool = False):
    """Bilinear weights of one axis, summed over each bin's samples (torchvision's
    ``bilinear_interpolate`` is separable: a sample's weight is the product of a row and a
    column weight, and 0 when either coordinate is outside ``[-1, size]``).

    ``start`` ``[K, a, b]``: each bin's sampling origin; the bin index ``0..n-1`` runs along
    ``axis`` (1 or 2). Returns ``(A, lo)``: ``A [K, a', b', L]`` the weight of row
    ``lo[k] + l``; with ``band`` only the rows the box's samples touch (L the tallest band
    of all boxes), else all rows (``lo = 0``, L = size). With ``marks`` also ``(T, Z)``
    of A's shape: how often the bin's samples touch each row, and touch it with weight 0
    (see :func:`_exact_bins`).
    """
    import torch

    k, dev = start.shape[0], start.device
    shape = [1, 1, 1]
    shape[axis] = n
    i = torch.arange(n, dtype=torch.float32, device=dev).reshape(shape)
    s = torch.arange(max(int(grid.max()) if k else 1, 1), dtype=torch.float32, device=dev)
    bs, gs = bin_size[:, None, None], grid[:, None, None, None]
    pos = (start + i * bs)[..., None] + ((s + 0.5) * bs[..., None]) / gs.to(torch.float32)  # [K, a', b', G]
    used = (s < gs) & (pos >= -1.0) & (pos <= size)
    pos = pos.clamp_min(0.0)
    low = torch.floor(pos).long()
    top = low >= size - 1
    low = torch.where(top, size - 1, low)
    high = torch.where(top, low, low + 1)
    frac = torch.where(top, torch.zeros_like(pos), pos - low.to(torch.float32))
    zero = torch.zeros_like(frac)
    w_low, w_high = torch.where(used, 1.0 - frac, zero), torch.where(used, frac, zero)
    if band and k:
        lo = torch.where(used, low, size).flatten(1).amin(dim=1)
        hi = torch.where(used, high, -1).flatten(1).amax(dim=1)
        rows = max(int((hi - lo).max()) + 1, 1)
        lo = lo.clamp(0, size - 1)
    else:
        lo, rows = torch.zeros(k, dtype=torch.long, device=dev), size
    r = lo[:, None, None, None, None] + torch.arange(rows, device=dev)  # [K, 1, 1, 1, L]

    def spread(v_low, v_high):
        return (v_low[..., None] * (low[..., None] == r)).sum(3) + (v_high[..., None] * (high[..., None] == r)).sum(3)

    a = spread(w_low, w_high)
    if not marks:
        return a, lo
    u = used.to(torch.float32)
    return a, lo, spread(u, u), spread(u * (w_low == 0), u * (w_high == 0))


def _bilinear_pool(p, x, boxes, offsets=None, gamma: float = 0.0):
    """``roi_align`` (``offsets`` None) or deformable RoI pooling: ``[K, C, oh, ow]``."""
    import torch

    k = boxes.shape[0]
    h, w = x.shape[2], x.shape[3]
    oh, ow = p.output_size
    start, roi, bins, grid = _geometry(p, boxes)
    start_w, start_h = start[:, 0, None, None], start[:, 1, None, None]  # [K, 1, 1]
    if offsets is not None:  # mmcv: start += (gamma * roi) * offset; channel 0 is x, 1 is y
        g = _f32(gamma)
        start_w = start_w + (g * roi[:, 0, None, None]) * offsets[:, 0]
        start_h = start_h + (g * roi[:, 1, None, None]) * offsets[:, 1]
    weights_h = (start_h, bins[:, 1], grid[:, 1], oh, 1, h, True)
    weights_w = (start_w, bins[:, 0], grid[:, 0], ow, 2, w, False)
    a_h, lo = _axis_weights(*weights_h)  # [K, oh, 1|ow, Lh]
    a_w, _ = _axis_weights(*weights_w)  # [K, 1|oh, ow, W]
    rows = (lo[:, None] + torch.arange(a_h.shape[-1], device=x.device)).clamp(max=h - 1)  # [K, Lh]
    band = x[boxes[:, 0].long()[:, None], :, rows]  # [K, Lh, C, W]

    def contract(v, m_h, m_w):  # sum over each bin's rows and columns of m_h * v * m_w
        m_h, m_w = m_h.to(x.dtype), m_w.to(x.dtype)
        if offsets is None:  # separable: A_h @ band @ A_w^T
            return torch.einsum("kil,kclj->kcij", m_h[:, :, 0], torch.einsum("klcw,kjw->kclj", v, m_w[:, 0]))
        return torch.einsum("kijl,kclij->kcij", m_h, torch.einsum("klcw,kijw->kclij", v, m_w))

    y = contract(band, a_h, a_w)
    # any NaN or infinity in the band makes all of its box's y NaN or infinite (0 * inf):
    # then the exact rule, each bin from the cells its samples touch
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or not torch.isfinite(y).all():
        def marked(args):  # the weights again, with their touch counts
            a, _, touched, zero = _axis_weights(*args, marks=True)
            return a, touched, zero

        y = _exact_bins(band, contract, marked(weights_h), marked(weights_w))
    count = (grid[:, 0] * grid[:, 1]).clamp_min(1).to(torch.float32)
    return y.reshape(k, x.shape[1], oh, ow) / count[:, None, None, None]


def _exact_bins(band, contract, rows, cols):
    """torchvision's sums over each bin's bilinear samples where ``band`` holds NaN or
    infinities: NaN if a touched cell is NaN, an infinity is touched with weight 0 (a
    sample exactly on a row or column, or at the last one: ``0 * inf``), or +inf and -inf
    are both touched; else the infinity touched; else the sum of the finite cells.
    ``rows``/``cols``: the weights, touch counts and zero-weight touch counts of each
    axis; ``contract(v, m_h, m_w)`` sums ``m_h * v * m_w`` over each bin (one term per
    sample pair: a grid of row and column samples)."""
    import torch

    (a_h, t_h, z_h), (a_w, t_w, z_w) = rows, cols
    finite = contract(torch.where(torch.isfinite(band), band, torch.zeros_like(band)), a_h, a_w)
    inf = torch.isinf(band).to(band.dtype)
    bad = contract(torch.isnan(band).to(band.dtype), t_h, t_w) + contract(inf, z_h, t_w) + contract(inf, t_h, z_w)
    up = contract((band == float("inf")).to(band.dtype), t_h, t_w) > 0
    down = contract((band == -float("inf")).to(band.dtype), t_h, t_w) > 0
    nan = torch.full_like(finite, float("nan"))
    out = torch.where(up, torch.full_like(finite, float("inf")), torch.where(down, -torch.full_like(finite, float("inf")), finite))
    return torch.where((bad > 0) | (up & down), nan, out)


def torch_roi_align(p: RoIAlignParams, x, boxes, outputs=("y",)):
    return (_bilinear_pool(p, x, boxes),)


def torch_deform_roi_pool(p: DeformRoIPoolParams, x, boxes, offsets, outputs=("y",)):
    return (_bilinear_pool(p, x, boxes, offsets, p.gamma),)


# ---------------------------------------------------------------- ONNX


# Columns are taken with Gather, not Slice: the exporter's optimizer turns sibling Slices
# into a Split it can place after their users (an invalid graph).


def _columns(op, t, a: int, b: int):
    """``t[:, a:b]`` of a 2-D tensor."""
    return op.Gather(t, const_i64(op, range(a, b)), axis=1)


def _col(op, t, i: int):
    """``t[:, i]``: ``[K]``."""
    return op.Gather(t, const_scalar_i64(op, i), axis=1)


def _batch_index(op, boxes):
    """``[K]`` int64 batch index of each box."""
    return op.Cast(_col(op, boxes, 0), to=7)


def _max_at_least_one(op, t):
    """``max(t)`` over all elements, at least 1 (also for an empty ``t``): a 0-D int64."""
    return op.ReduceMax(op.Concat(op.Reshape(t, const_i64(op, [-1])), const_i64(op, [1]), axis=0), keepdims=0)


def _onnx_round_half_away(op, v):
    a = op.Abs(v)
    t = op.Floor(a)
    up = op.Cast(op.GreaterOrEqual(op.Sub(a, t), const_f32(op, 0.5)), to=1)
    return op.Mul(op.Sign(v), op.Add(t, up))


def _onnx_pool_bounds(op, start, roi, n: int, size):
    """As :func:`_pool_bounds`: ``(lo, hi)`` ``[K, n]`` int64, clipped to ``[0, size]``."""
    bin_size = unsqueeze(op, op.Div(op.Cast(roi, to=1), const_f32(op, n)), [1])
    s = unsqueeze(op, start, [1])
    lo = op.Add(op.Cast(op.Floor(op.Mul(blocks.float_index(op, n), bin_size)), to=7), s)
    hi = op.Add(op.Cast(op.Ceil(op.Mul(blocks.float_index(op, n, 1), bin_size)), to=7), s)
    zero = const_i64(op, [0])
    return op.Min(op.Max(lo, zero), size), op.Min(op.Max(hi, zero), size)


def _onnx_bin_index(op, lo, hi, size):
    """As :func:`_bin_index`: ``[K, n, L]``."""
    ks = op.Range(const_scalar_i64(op, 0), _max_at_least_one(op, op.Sub(hi, lo)), const_scalar_i64(op, 1))
    idx = op.Min(op.Add(unsqueeze(op, lo, [2]), ks), unsqueeze(op, op.Sub(hi, const_i64(op, [1])), [2]))
    return op.Min(op.Max(idx, const_i64(op, [0])), op.Sub(size, const_i64(op, [1])))


def onnx_roi_pool(op, p: RoIPoolParams, x, boxes, outputs=("y",)):
    oh, ow = p.output_size
    c, h, w = dim(op, x, 1), dim(op, x, 2), dim(op, x, 3)
    corners = op.Cast(_onnx_round_half_away(op, op.Mul(_columns(op, boxes, 1, 5), const_f32(op, p.spatial_scale))), to=7)
    x1, y1, x2, y2 = (_col(op, corners, i) for i in range(4))
    one = const_i64(op, [1])
    h0, h1 = _onnx_pool_bounds(op, y1, op.Max(op.Add(op.Sub(y2, y1), one), one), oh, h)
    w0, w1 = _onnx_pool_bounds(op, x1, op.Max(op.Add(op.Sub(x2, x1), one), one), ow, w)
    xs = op.Where(op.IsNaN(x), const_f32(op, -float("inf")), x)
    # rows of every box from x as [N*H, C, W] (sample b's row r is b*H + r), max per row bin
    flat = op.Reshape(op.Transpose(xs, perm=[0, 2, 1, 3]), op.Concat(const_i64(op, [-1]), c, w, axis=0))
    b = unsqueeze(op, _batch_index(op, boxes), [1, 2])
    t = op.ReduceMax(op.Gather(flat, op.Add(op.Mul(b, h), _onnx_bin_index(op, h0, h1, h)), axis=0), const_i64(op, [2]), keepdims=0)
    # then columns from the reduced [K*W, oh, C] (box k's column j is k*W + j)
    k = dim(op, boxes, 0)
    cols = op.Reshape(op.Transpose(t, perm=[0, 3, 1, 2]), op.Concat(const_i64(op, [-1, oh]), c, axis=0))
    kk = unsqueeze(op, op.Range(const_scalar_i64(op, 0), scalar(op, k), const_scalar_i64(op, 1)), [1, 2])
    y = op.ReduceMax(op.Gather(cols, op.Add(op.Mul(kk, w), _onnx_bin_index(op, w0, w1, w)), axis=0), const_i64(op, [2]), keepdims=0)
    y = op.Max(op.Transpose(y, perm=[0, 3, 2, 1]), const_f32(op, -FLOAT_MAX))  # [K, C, oh, ow]
    empty = unsqueeze(op, op.Or(unsqueeze(op, op.LessOrEqual(h1, h0), [2]), unsqueeze(op, op.LessOrEqual(w1, w0), [1])), [1])
    return (op.Where(empty, const_f32(op, 0.0), y),)


def onnx_roi_align(op, p: RoIAlignParams, x, boxes, outputs=("y",)):
    rois = _columns(op, boxes, 1, 5)
    if p.aligned and p.sampling_ratio <= 0:
        # x2 < x1 makes a negative adaptive grid: torchvision then takes no sample (0),
        # ONNX Runtime fails (integer overflow). x2 = x1 gives the same 0 in both.
        first = _columns(op, rois, 0, 2)
        rois = op.Concat(first, op.Max(_columns(op, rois, 2, 4), first), axis=1)
    y = op.RoiAlign(
        x,
        rois,
        _batch_index(op, boxes),
        mode="avg",
        output_height=p.output_size[0],
        output_width=p.output_size[1],
        sampling_ratio=max(p.sampling_ratio, 0),
        spatial_scale=p.spatial_scale,
        coordinate_transformation_mode="half_pixel" if p.aligned else "output_half_pixel",
    )
    # ONNX Runtime's RoiAlign gives a sample outside the map weight 0 on cell (0, 0): a NaN
    # or an infinity there makes such bins NaN, where torchvision takes no sample. Where y
    # is not all finite, the bins again through deform_roi_pool's band matrices (offsets
    # none), which keep NaN and infinities in the bins whose samples touch them.
    return (blocks.if_finite(op, y, lambda op: y, lambda op: _onnx_bilinear_pool(op, p, x, boxes, None, exact_only=True)),)


def _onnx_axis_weights(op, start, bin_size, grid, n: int, axis: int, size, band: bool):
    """As :func:`_axis_weights`, on ``start [K, oh, ow]``, ``bin_size``/``grid`` ``[K]``:
    ``(A [K, oh, ow, L], lo [K], marks)``, ``marks(op)`` building ``(T, Z)`` (touch and
    zero-weight touch counts, for :func:`_onnx_exact_bins`). The sample grid is the
    largest of the batch (``ReduceMax`` over boxes), samples beyond a box's own grid are
    masked."""
    shape = [1, 1, 1]
    shape[axis] = n
    i = op.Reshape(blocks.float_index(op, n), const_i64(op, shape))
    si = op.Range(const_scalar_i64(op, 0), _max_at_least_one(op, grid), const_scalar_i64(op, 1))
    s = op.Cast(si, to=1)
    bs = op.Reshape(bin_size, const_i64(op, [-1, 1, 1]))
    g = op.Reshape(grid, const_i64(op, [-1, 1, 1, 1]))
    step = op.Div(op.Mul(op.Add(s, const_f32(op, 0.5)), unsqueeze(op, bs, [3])), op.Cast(g, to=1))
    pos = op.Add(unsqueeze(op, op.Add(start, op.Mul(i, bs)), [3]), step)  # [K, oh, ow, G]
    size_f = op.Cast(size, to=1)
    used = op.And(
        op.Less(si, g),
        op.And(op.GreaterOrEqual(pos, const_f32(op, -1.0)), op.LessOrEqual(pos, size_f)),
    )
    pos = op.Max(pos, const_f32(op, 0.0))
    last = op.Sub(size, const_i64(op, [1]))
    low = op.Cast(op.Floor(pos), to=7)
    top = op.GreaterOrEqual(low, last)
    low = op.Where(top, last, low)
    high = op.Where(top, low, op.Add(low, const_i64(op, [1])))
    zero = const_f32(op, 0.0)
    frac = op.Where(top, zero, op.Sub(pos, op.Cast(low, to=1)))
    w_low = op.Where(used, op.Sub(const_f32(op, 1.0), frac), zero)
    w_high = op.Where(used, frac, zero)
    if band:
        axes = const_i64(op, [1, 2, 3])
        lo = op.ReduceMin(op.Where(used, low, size), axes, keepdims=0)
        hi = op.ReduceMax(op.Where(used, high, const_i64(op, [-1])), axes, keepdims=0)
        rows = _max_at_least_one(op, op.Add(op.Sub(hi, lo), const_i64(op, [1])))
        lo = op.Min(op.Max(lo, const_i64(op, [0])), last)
    else:
        lo = op.Expand(const_i64(op, [0]), dim(op, start, 0))
        rows = scalar(op, size)

    def marks(op):
        u = op.Cast(used, to=1)
        zeros = [op.Mul(u, op.Cast(op.Equal(v, const_f32(op, 0.0)), to=1)) for v in (w_low, w_high)]
        return _scatter_weights(op, low, high, u, u, lo, rows), _scatter_weights(op, low, high, *zeros, lo, rows)

    return _scatter_weights(op, low, high, w_low, w_high, lo, rows), lo, marks


def _scatter_weights(op, low, high, w_low, w_high, lo, rows):
    """``A [K, oh, ow, L]``: each sample's two weights ``[K, oh, ow, G]`` added into rows
    ``low - lo`` and ``high - lo`` of its bin (L = ``rows``, a 0-D int64). A scatter-add
    keeps memory at ``K*oh*ow*(G + L)`` (a one-hot ``[K, oh, ow, G, L]`` would not). Unused
    samples weigh exactly 0; their rows are clamped into the band."""
    last = op.Sub(rows, const_scalar_i64(op, 1))
    idx = op.Sub(op.Concat(low, high, axis=3), op.Reshape(lo, const_i64(op, [-1, 1, 1, 1])))
    idx = op.Min(op.Max(idx, const_i64(op, [0])), last)
    weights = op.Concat(w_low, w_high, axis=3)
    bins = op.Mul(op.Mul(dim(op, idx, 0), dim(op, idx, 1)), dim(op, idx, 2))
    flat = op.Concat(bins, op.Shape(idx, start=3), axis=0)
    length = unsqueeze(op, rows, [0])
    zeros = op.ConstantOfShape(op.Concat(bins, length, axis=0))
    a = op.ScatterElements(zeros, op.Reshape(idx, flat), op.Reshape(weights, flat), axis=1, reduction="add")
    return op.Reshape(a, op.Concat(op.Shape(idx, start=0, end=3), length, axis=0))


def onnx_deform_roi_pool(op, p: DeformRoIPoolParams, x, boxes, offsets, outputs=("y",)):
    return (_onnx_bilinear_pool(op, p, x, boxes, offsets),)


def _onnx_bilinear_pool(op, p, x, boxes, offsets, exact_only: bool = False):
    """deform_roi_pool (``offsets`` None: roi_align's bins), ``[K, C, oh, ow]``; with
    ``exact_only`` only its exact path (:func:`_onnx_exact_bins`), for roi_align's."""
    oh, ow = p.output_size
    c, h = dim(op, x, 1), dim(op, x, 2)
    corners = op.Sub(op.Mul(_columns(op, boxes, 1, 5), const_f32(op, p.spatial_scale)), const_f32(op, 0.5 if p.aligned else 0.0))
    start = _columns(op, corners, 0, 2)  # [K, 2]: x, y
    roi = op.Sub(_columns(op, corners, 2, 4), start)
    if not p.aligned:
        roi = op.Max(roi, const_f32(op, 1.0))
    bins = op.Div(roi, op.Constant(value_floats=[float(ow), float(oh)]))
    if p.sampling_ratio > 0:
        grid = op.Expand(const_i64(op, [p.sampling_ratio]), op.Shape(bins))
    else:
        grid = op.Cast(op.Ceil(bins), to=7)
    col = lambda t, i: _col(op, t, i)  # noqa: E731
    starts = []
    for a in range(2):  # mmcv: start += (gamma * roi) * offset; offsets channel 0 is x, 1 is y
        origin = op.Reshape(col(start, a), const_i64(op, [-1, 1, 1]))
        if offsets is None:  # roi_align's bins (its exact path)
            starts.append(op.Expand(origin, op.Concat(dim(op, boxes, 0), const_i64(op, [oh, ow]), axis=0)))
            continue
        shift = op.Mul(op.Reshape(op.Mul(const_f32(op, p.gamma), col(roi, a)), const_i64(op, [-1, 1, 1])), col(offsets, a))
        starts.append(op.Add(origin, shift))  # [K, oh, ow]
    a_h, lo, marks_h = _onnx_axis_weights(op, starts[1], col(bins, 1), col(grid, 1), oh, 1, h, band=True)  # [K, oh, ow, Lh]
    a_w, _, marks_w = _onnx_axis_weights(op, starts[0], col(bins, 0), col(grid, 0), ow, 2, dim(op, x, 3), band=False)
    lh = op.Shape(a_h, start=3, end=4)
    rows = op.Min(op.Add(unsqueeze(op, lo, [1]), op.Range(const_scalar_i64(op, 0), scalar(op, lh), const_scalar_i64(op, 1))), op.Sub(h, const_i64(op, [1])))
    flat = op.Reshape(op.Transpose(x, perm=[0, 2, 1, 3]), op.Concat(const_i64(op, [-1]), c, dim(op, x, 3), axis=0))
    band = op.Gather(flat, op.Add(op.Mul(unsqueeze(op, _batch_index(op, boxes), [1]), h), rows), axis=0)  # [K, Lh, C, W]
    def bins_flat(op, a, axis: int):  # [K, oh, ow, L] -> [K, L, 1, P] (rows) or [K, 1, L, P] (columns)
        flat = op.Reshape(a, op.Concat(const_i64(op, [-1, oh * ow]), op.Shape(a, start=3), axis=0))  # K may be 0
        return unsqueeze(op, op.Transpose(flat, perm=[0, 2, 1]), [axis])

    def contract(op, v, f_h, f_w):  # [K, Lh, C, W] -> [K, C, P]: sum of m_h * v * m_w over each bin
        t = op.MatMul(v, f_w)  # [K, Lh, C, W] @ [K, 1, W, P]
        return op.ReduceSum(op.Mul(t, f_h), const_i64(op, [1]), keepdims=0)

    f_h, f_w = bins_flat(op, a_h, 2), bins_flat(op, a_w, 1)

    def exact(op):  # NaN or infinities in the band (all of a box's y is then NaN or inf)
        (t_h, z_h), (t_w, z_w) = marks_h(op), marks_w(op)
        rows = (f_h, bins_flat(op, t_h, 2), bins_flat(op, z_h, 2))
        cols = (f_w, bins_flat(op, t_w, 1), bins_flat(op, z_w, 1))
        return _onnx_exact_bins(op, band, contract, rows, cols)

    if exact_only:
        y = exact(op)
    else:
        y = contract(op, band, f_h, f_w)
        y = blocks.if_finite(op, y, lambda op: y, exact)
    count = op.Cast(op.Max(op.Mul(col(grid, 0), col(grid, 1)), const_i64(op, [1])), to=1)
    y = op.Div(y, op.Reshape(count, const_i64(op, [-1, 1, 1])))
    return op.Reshape(y, const_i64(op, [0, 0, oh, ow]))


def _onnx_exact_bins(op, band, contract, rows, cols):
    """:func:`_exact_bins` in ONNX (``rows``/``cols``: the weights and touch counts as
    ``contract`` takes them)."""
    (a_h, t_h, z_h), (a_w, t_w, z_w) = rows, cols
    inf, zero = const_f32(op, float("inf")), const_f32(op, 0.0)
    finite = contract(op, op.Where(op.Less(op.Abs(band), inf), band, zero), a_h, a_w)
    is_inf = op.Cast(op.IsInf(band), to=1)
    bad = op.Add(op.Add(contract(op, op.Cast(op.IsNaN(band), to=1), t_h, t_w), contract(op, is_inf, z_h, t_w)),
                 contract(op, is_inf, t_h, z_w))
    up = op.Greater(contract(op, op.Cast(op.IsInf(band, detect_negative=0), to=1), t_h, t_w), zero)
    down = op.Greater(contract(op, op.Cast(op.IsInf(band, detect_positive=0), to=1), t_h, t_w), zero)
    out = op.Where(up, inf, op.Where(down, const_f32(op, -float("inf")), finite))
    return op.Where(op.Or(op.Greater(bad, zero), op.And(up, down)), const_f32(op, float("nan")), out)


# ---------------------------------------------------------------- checks and cost


def grid_limit(size: int, n: int) -> int:
    """The most adaptive samples per bin side on an axis of ``size`` into ``n`` bins:
    those of a RoI of ``2 * size + 2`` (see :func:`check_sample_grid`)."""
    return max(-(-(2 * size + 2) // n), 1)


def check_sample_grid(name: str, p: RoIAlignParams, x, boxes) -> None:
    """With adaptive sampling (``sampling_ratio`` <= 0) a bin takes ``ceil(roi / o)^2``
    samples, so a box's RoI (in x's coordinates) is refused beyond ``2 * side + 2`` on
    each axis: that bounds the work by the map's size (:func:`grid_limit`)."""
    import numpy as np

    if p.sampling_ratio > 0 or boxes is None or not len(boxes):
        return
    b = np.asarray(boxes.detach().cpu() if hasattr(boxes, "detach") else boxes, dtype=np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        corners = b[:, 1:] * np.float32(p.spatial_scale) - np.float32(0.5 if p.aligned else 0.0)
        roi = corners[:, 2:] - corners[:, :2]  # width, height
    sides = (int(x.shape[3]), int(x.shape[2]))
    for axis, side in enumerate(sides):
        limit = 2 * side + 2
        bad = np.flatnonzero(~(roi[:, axis] <= limit))
        if bad.size:
            k = int(bad[0])
            raise ParamError(
                name,
                "boxes",
                f"box {k} spans {float(roi[k, axis]):g} on axis {'WH'[axis]} in x's coordinates (after "
                f"spatial_scale {p.spatial_scale:g}), more than 2 * {side} + 2 = {limit}; adaptive sampling "
                f"(sampling_ratio {p.sampling_ratio}) would take ceil({float(roi[k, axis]):g} / "
                f"{p.output_size[1 - axis]}) samples per bin side: use smaller boxes, check spatial_scale, "
                "or set a fixed sampling_ratio",
            )


def roi_pool_work(p: RoIPoolParams, shapes, outputs=("y",), backward=False) -> int:
    """x without NaN (x's size); each bin's rows gathered ``[K, oh, Lh, C, W]``, then its
    columns ``[K, ow, Lw, oh, C]`` (Lh, Lw: the longest bin, at most H, W: bins are
    clipped to the map), with int64 indices ``[K, oh, Lh]``."""
    n, c, h, w = shapes["x"]
    k = shapes["boxes"][0]
    oh, ow = p.output_size
    lh, lw = max(h, 1), max(w, 1)
    return max(
        n * c * h * w,
        k * oh * lh * c * w,
        k * ow * lw * oh * c,
        2 * k * oh * lh,
        2 * k * ow * lw,
        k * oh * ow,
        8 * k,
    )


PRECALC_UNITS = 12
"""Float32 units of one entry of ONNX Runtime's CPU RoiAlign sample table (``PreCalc``:
four int64 positions and four float weights), ``gh * gw * oh * ow`` entries per box."""


def _grids(p: RoIAlignParams, h: int, w: int) -> tuple[int, int]:
    """Samples per bin side (rows, columns): the sampling_ratio, or :func:`grid_limit`."""
    if p.sampling_ratio > 0:
        return p.sampling_ratio, p.sampling_ratio
    return grid_limit(h, p.output_size[0]), grid_limit(w, p.output_size[1])


def roi_align_work(p: RoIAlignParams, shapes, outputs=("y",), backward=False) -> int:
    """ONNX RoiAlign: the output, the boxes' columns, and the sample table ONNX Runtime's
    CPU kernel fills for each box (``gh * gw * oh * ow`` entries: not a graph tensor, so
    the profiler does not see it, but the largest buffer when the grid is large); for
    inputs with NaN or infinities :func:`deform_roi_pool_work`'s band path."""
    n, c, h, w = shapes["x"]
    k = shapes["boxes"][0]
    bins = p.output_size[0] * p.output_size[1]
    gh, gw = _grids(p, h, w)
    table = PRECALC_UNITS * gh * gw * bins if k else 0
    return max(k * c * bins, 5 * k, table, deform_roi_pool_work(p, shapes))


def deform_roi_pool_work(p: DeformRoIPoolParams, shapes, outputs=("y",), backward=False) -> int:
    """Per axis the samples ``[K, oh, ow, G]`` (int64 rows of both neighbours: 4 units
    per sample; G the sampling_ratio or :func:`grid_limit`) scattered into weight rows
    ``[K, oh*ow, L]`` (L: H or W); the boxes' row bands ``[K, H, C, W]`` and their
    column products ``[K, H, C, oh*ow]``."""
    n, c, h, w = shapes["x"]
    k = shapes["boxes"][0]
    oh, ow = p.output_size
    bins = oh * ow
    g = max(_grids(p, h, w))
    samples, weight_rows = 4 * k * bins * g, k * bins * max(h, w, 1)
    return max(samples, weight_rows, k * h * c * max(w, bins), n * c * h * w, 2 * k * max(h, 1))


_OPS = (  # name, parameters, torch function, ONNX builder, module, inputs, input check, work
    ("roi_pool", RoIPoolParams, torch_roi_pool, onnx_roi_pool, "RoIPool", ("x", "boxes"), None, roi_pool_work),
    (
        "roi_align",
        RoIAlignParams,
        torch_roi_align,
        onnx_roi_align,
        "RoIAlign",
        ("x", "boxes"),
        lambda p, x, boxes: check_sample_grid("roi_align", p, x, boxes),
        roi_align_work,
    ),
    (
        "deform_roi_pool",
        DeformRoIPoolParams,
        torch_deform_roi_pool,
        onnx_deform_roi_pool,
        "DeformRoIPool",
        ("x", "boxes", "offsets"),
        lambda p, x, boxes, offsets: check_sample_grid("deform_roi_pool", p, x, boxes),
        deform_roi_pool_work,
    ),
)
for _name, _params, _torch_fn, _onnx_fn, _module, _inputs, _check, _work in _OPS:
    register(
        OpSpec(
            name=_name,
            family="roi",
            params=_params,
            torch_fn=_torch_fn,
            onnx_fn=_onnx_fn,
            onnx_backward=None,
            output_shape=_shape,
            module_name=_module,
            inputs=_inputs,
            check_input=_check,
            param_dims=_output_dims,
            work=_work,
            doc=__doc__,
        )
    )
