"""Oriented pooling: ``roi_align_rotated`` (rotated RoIs) and ``rotation_invariant``
(max or alignment over orientation channels).

``roi_align_rotated`` (detectron2 ``ROIAlignRotated``, mmcv ``roi_align_rotated``) takes
``x [N, C, H, W]`` and ``rboxes [K, 6]``: batch index, centre ``(cx, cy)``, size
``(w, h)`` and angle in degrees (counter-clockwise, detectron2's convention; mmcv takes
radians: multiply by 180/pi), in input coordinates, and gives ``y [K, C, oh, ow]``, any
``output_size`` (non-square included: mmcv's ONNX export passes the output height as
the width, poolops' graphs do not). In float32, in detectron2's order: centre
``c * scale - 0.5`` if ``aligned`` (else ``c * scale``, and ``w, h`` clamped to at least
1, mmcv's legacy mode), ``theta = angle * pi/180`` (negated if ``clockwise``, mmcv),
``bin = size / o``, ``g = sampling_ratio`` samples per bin side (``0`` or ``-1``:
adaptive, ``ceil(size / o)`` for each box and axis, as detectron2), sample
``(yy, xx) = (-h/2 + i*bin_h + (s + 0.5)*bin_h/g_h, -w/2 + ...)`` in the box's frame,
rotated and moved to ``y = yy*cos - xx*sin + cy``, ``x = yy*sin + xx*cos + cx``, read
bilinearly as torchvision's ``roi_align`` (0 beyond ``[-1, H]``, clamped within it); a
bin is the mean of its ``g_h*g_w`` samples. With angle 0 it is ``roi_align`` of the box
``(cx - w/2, cy - h/2, cx + w/2, cy + h/2)``. Example: the 4x4 ramp ``x[h, w] = 4h + w``,
box ``(0, 2, 2, 2, 2, 90)``, output 1x2, ``sampling_ratio=1``, aligned: the two bins'
samples sit at ``(yy, xx) = (0, -0.5)`` and ``(0, 0.5)``, rotated by 90 degrees to
``(y, x) = (1.5 + 0.5, 1.5)`` and ``(1.5 - 0.5, 1.5)``, so ``y = [[9.5, 5.5]]`` (an
unrotated box gives ``[[7, 8]]``).

ONNX: there is no rotated RoI op; the samples' bilinear weights and the rows of their
four neighbours are computed for every box on the largest sample grid of the batch
(``ReduceMax`` over boxes; samples beyond a box's own grid weigh 0), the neighbours are
gathered from x laid out ``[N*H*W, C]`` and contracted with the weights (one corner at
a time: memory ``K*oh*ow*g_h*g_w*C``). Adaptive sampling refuses a box whose ``w`` or
``h`` (in x's coordinates) exceeds ``2 * max(H, W) + 2`` (``ParamError`` naming
``rboxes``), which bounds the work; a fixed ``sampling_ratio`` takes any box.
Gradients: torch autograd (to x; not to the boxes); no ONNX backward graph.

``rotation_invariant`` (ORN, Zhou et al. 2017; mmrotate ``RotationInvariantPooling``):
the channels of ``x [N, C, H, W]`` are ``C / orientations`` features of
``orientations`` channels each (``x.view(N, F, O, H, W)``). ``mode="max"`` (ORN
``ORPool``, mmrotate) takes the max over each feature's orientation channels:
``y [N, C/O, H, W]``, NaN propagating as ``torch.max``. ``mode="align"`` (ORN
``ORAlign``, which takes 1x1 maps; here every position on its own) rotates each
feature's orientation channels cyclically so that its main direction, the first
maximum (NaN counted as -inf), comes first: ``y[:, f, l] = x[:, f, (l + d) % O]``,
``y [N, C, H, W]``. Example: O=4, one position with orientation responses
``[1, 5, 2, 5]``: max gives 5, align gives ``[5, 2, 5, 1]`` (main direction 1).
ONNX: ReduceMax (with a NaN check), or ArgMax and GatherElements. Gradients: torch
autograd (max: to the first maximum).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field

from poolops.inputs import InputKind, register_kind
from poolops.onnx import blocks
from poolops.onnx.builder import const_f32, const_i64, const_scalar_i64, dim, unsqueeze
from poolops.ops.roi import _batch_index, _col, _columns, _max_at_least_one, check_boxes, grid_limit
from poolops.params import OpParams, ParamError, PositivePair
from poolops.registry import OpSpec, register

DEG = math.pi / 180.0
"""Degrees to radians; multiplied in float32 (``theta = angle * float32(pi/180)``)."""


class RoIAlignRotatedParams(OpParams):
    output_size: PositivePair = (7, 7)
    """(oh, ow): bins per box, any shape."""
    spatial_scale: float = Field(default=1.0, gt=0, allow_inf_nan=False)
    """Multiplies box centres and sizes to reach x's coordinates (1/16 for stride 16)."""
    sampling_ratio: int = Field(default=0, ge=-1)
    """Samples per bin side; 0 or -1: adaptive, ceil(box size / output size) per box (detectron2)."""
    aligned: bool = True
    """Shift centres by -0.5 pixel (detectron2 always does); False: mmcv's legacy mode, sizes >= 1."""
    clockwise: bool = False
    """Angles count clockwise (mmcv's ``clockwise``): theta is negated."""


class RotationInvariantParams(OpParams):
    orientations: int = Field(default=8, gt=0, le=1024)
    """Channels per feature (ORN's nOrientation); C must be a multiple of it."""
    mode: Literal["max", "align"] = "max"
    """``max``: pool over orientations (ORPool), [N, C/O, H, W]; ``align``: ORAlign, [N, C, H, W]."""


# ---------------------------------------------------------------- the boxes


def _example_rboxes(x_shape, rng, p=None):
    """1-4 rotated boxes with valid batch indices, centres in and a little around the
    map, sizes up to 0.8 of its side plus 1, any angle, in input coordinates."""
    n, _, h, w = x_shape
    k = int(rng.integers(1, 5))
    scale = float(getattr(p, "spatial_scale", 1.0))
    cx = rng.uniform(-0.1 * w, 1.1 * w, k)
    cy = rng.uniform(-0.1 * h, 1.1 * h, k)
    bw = rng.uniform(0, 0.8 * w + 1, k)
    bh = rng.uniform(0, 0.8 * h + 1, k)
    angle = rng.uniform(-180, 180, k)
    batch = rng.integers(0, n, k).astype(np.float64)
    coords = np.stack([cx, cy, bw, bh], axis=1) / scale
    return np.concatenate([batch[:, None], coords, angle[:, None]], axis=1).astype(np.float32)


def check_rboxes(op_name: str, p, x, boxes) -> None:
    """``ParamError`` unless ``boxes`` is ``[K, 6]`` finite floats with integer batch
    indices in ``[0, N)`` and non-negative sizes, and (adaptive sampling) no side beyond
    ``2 * max(H, W) + 2`` in x's coordinates."""
    if boxes is None:  # a missing input is reported by OpSpec.bind
        return
    b = check_boxes(op_name, x, boxes, "rboxes", ("batch index", "cx", "cy", "w", "h", "angle"))
    negative = np.flatnonzero((b[:, 3] < 0) | (b[:, 4] < 0))
    if negative.size:
        k = int(negative[0])
        raise ParamError(op_name, "rboxes", f"box {k} has a negative size (w, h) = ({b[k, 3]:g}, {b[k, 4]:g})")
    if p.sampling_ratio > 0 or not len(b):
        return
    side = max(int(x.shape[2]), int(x.shape[3]))
    limit = 2 * side + 2
    with np.errstate(over="ignore"):
        sizes = b[:, 3:5] * np.float32(p.spatial_scale)
    k, axis = np.unravel_index(int(np.argmax(sizes)), sizes.shape)
    if sizes[k, axis] > limit:
        raise ParamError(
            op_name,
            "rboxes",
            f"box {k} has {'wh'[axis]} {float(sizes[k, axis]):g} in x's coordinates (after spatial_scale "
            f"{p.spatial_scale:g}), more than 2 * {side} + 2 = {limit}; adaptive sampling (sampling_ratio "
            f"{p.sampling_ratio}) would take ceil({float(sizes[k, axis]):g} / {p.output_size[1 - axis]}) samples per "
            "bin side: use smaller boxes, check spatial_scale, or set a fixed sampling_ratio",
        )


register_kind(
    InputKind(
        "rboxes",
        ("K", 6),
        "float32",
        "rotated regions of interest, one row (batch index, cx, cy, w, h, angle in degrees, counter-clockwise) "
        "each, in input coordinates (centre and size multiplied by the op's spatial_scale); the batch index is "
        "an integer in [0, N), w, h >= 0; K may be 0",
        lambda x_shape, rng, p=None, inputs=None: _example_rboxes(x_shape, rng, p),
        None,  # checked with the op's parameters (adaptive sampling bound): check_rboxes
        differentiable=False,
    )
)


# ---------------------------------------------------------------- roi_align_rotated, torch


def _f32(value, device=None):
    import torch

    return torch.tensor(value, dtype=torch.float32, device=device)


def _rotated_samples(p: RoIAlignRotatedParams, boxes, h: int, w: int):
    """Per box, bin and sample: the flat plane positions ``[4, K, P, G]`` (``P = oh*ow``,
    ``G = g_h*g_w`` of the largest grid) of the four bilinear neighbours, their weights
    ``[4, K, P, G]`` (0 for samples outside the map or beyond the box's grid) and the
    sample count ``[K]``; float32 arithmetic in detectron2's order."""
    import torch

    dev = boxes.device
    b = boxes.to(torch.float32)
    k = b.shape[0]
    oh, ow = p.output_size
    scale = _f32(p.spatial_scale, dev)
    offset = _f32(0.5 if p.aligned else 0.0, dev)
    cx, cy = b[:, 1] * scale - offset, b[:, 2] * scale - offset
    rw, rh = b[:, 3] * scale, b[:, 4] * scale
    theta = b[:, 5] * _f32(DEG, dev)
    if p.clockwise:
        theta = -theta
    cos, sin = torch.cos(theta), torch.sin(theta)
    if not p.aligned:
        rw, rh = rw.clamp_min(1.0), rh.clamp_min(1.0)
    bin_h, bin_w = rh / oh, rw / ow
    if p.sampling_ratio > 0:
        gh = gw = torch.full((k,), p.sampling_ratio, dtype=torch.long, device=dev)
    else:
        gh, gw = torch.ceil(rh / oh).long(), torch.ceil(rw / ow).long()
    count = (gh * gw).clamp_min(1)
    mh = max(int(gh.max()) if k else 1, 1)
    mw = max(int(gw.max()) if k else 1, 1)

    # yy: [K, oh, 1, Gh, 1]; xx: [K, 1, ow, 1, Gw]
    ih = torch.arange(oh, dtype=torch.float32, device=dev).reshape(1, oh, 1, 1, 1)
    iw = torch.arange(ow, dtype=torch.float32, device=dev).reshape(1, 1, ow, 1, 1)
    sh = torch.arange(mh, dtype=torch.float32, device=dev).reshape(1, 1, 1, mh, 1)
    sw = torch.arange(mw, dtype=torch.float32, device=dev).reshape(1, 1, 1, 1, mw)
    e = lambda t: t.reshape(k, 1, 1, 1, 1)  # noqa: E731 - per box, broadcast
    yy = (e(-rh / 2.0) + ih * e(bin_h)) + ((sh + 0.5) * e(bin_h)) / e(gh.to(torch.float32))
    xx = (e(-rw / 2.0) + iw * e(bin_w)) + ((sw + 0.5) * e(bin_w)) / e(gw.to(torch.float32))
    used = (sh < e(gh)) & (sw < e(gw))  # [K, 1, 1, Gh, Gw]
    y = (yy * e(cos) - xx * e(sin)) + e(cy)  # [K, oh, ow, Gh, Gw]
    x = (yy * e(sin) + xx * e(cos)) + e(cx)
    used = used & (y >= -1.0) & (y <= h) & (x >= -1.0) & (x <= w)
    y, x = y.clamp_min(0.0), x.clamp_min(0.0)
    y_low, x_low = torch.floor(y).long(), torch.floor(x).long()
    top_y, top_x = y_low >= h - 1, x_low >= w - 1
    y_low, x_low = torch.where(top_y, h - 1, y_low), torch.where(top_x, w - 1, x_low)
    y_high, x_high = torch.where(top_y, y_low, y_low + 1), torch.where(top_x, x_low, x_low + 1)
    zero = torch.zeros_like(y)
    ly = torch.where(top_y, zero, y - y_low.to(torch.float32))
    lx = torch.where(top_x, zero, x - x_low.to(torch.float32))
    hy, hx = 1.0 - ly, 1.0 - lx
    weights = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx])
    weights = torch.where(used, weights, torch.zeros_like(weights))
    pos = torch.stack([y_low * w + x_low, y_low * w + x_high, y_high * w + x_low, y_high * w + x_high])
    shape = (4, k, oh * ow, mh * mw)
    return pos.reshape(shape), weights.reshape(shape), count, used.expand(k, oh, ow, mh, mw).reshape(shape[1:])


def torch_roi_align_rotated(p: RoIAlignRotatedParams, x, rboxes, outputs=("y",)):
    import torch

    n, c, h, w = x.shape
    k = rboxes.shape[0]
    oh, ow = p.output_size
    pos, weights, count, used = _rotated_samples(p, rboxes, h, w)
    rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c)  # [N*H*W, C]
    base = (rboxes[:, 0].long() * (h * w))[None, :, None, None]

    def pool(skip_unused: bool):
        y = torch.zeros(k, oh * ow, 1, c, dtype=x.dtype, device=x.device)
        for corner in range(4):  # one corner at a time: memory K*P*G*C
            vals = rows[base[0] + pos[corner]]  # [K, P, G, C]
            if skip_unused:  # samples outside the map (weight 0) read no cell, as mmcv's
                vals = torch.where(used[..., None], vals, torch.zeros_like(vals))
            y = y + weights[corner].to(x.dtype)[:, :, None, :] @ vals
        return y

    y = pool(False)
    # an unused sample's 0 weight times an infinity it read is NaN: then again without them
    if torch.compiler.is_compiling() or torch.jit.is_tracing() or not torch.isfinite(y).all():
        y = pool(True)
    y = y[:, :, 0, :] / count.to(x.dtype)[:, None, None]
    return (y.permute(0, 2, 1).reshape(k, c, oh, ow),)


# ---------------------------------------------------------------- roi_align_rotated, ONNX


def _onnx_rotated_samples(op, p: RoIAlignRotatedParams, boxes, h, w):
    """As :func:`_rotated_samples`: ``(positions, weights, count)`` lists of four
    ``[K, P, G]`` tensors and ``[K]``, sizes ``h``, ``w`` dims of x."""
    oh, ow = p.output_size
    f = lambda v: const_f32(op, v)  # noqa: E731
    col = lambda i: _col(op, boxes, i)  # noqa: E731
    scale = f(p.spatial_scale)
    offset = f(0.5 if p.aligned else 0.0)
    cx, cy = op.Sub(op.Mul(col(1), scale), offset), op.Sub(op.Mul(col(2), scale), offset)
    rw, rh = op.Mul(col(3), scale), op.Mul(col(4), scale)
    theta = op.Mul(col(5), f(DEG))
    if p.clockwise:
        theta = op.Neg(theta)
    cos, sin = op.Cos(theta), op.Sin(theta)
    if not p.aligned:
        rw, rh = op.Max(rw, f(1.0)), op.Max(rh, f(1.0))
    bin_h, bin_w = op.Div(rh, f(float(oh))), op.Div(rw, f(float(ow)))
    if p.sampling_ratio > 0:
        gh = gw = op.Expand(const_i64(op, [p.sampling_ratio]), op.Shape(rh))
    else:
        gh, gw = op.Cast(op.Ceil(bin_h), to=7), op.Cast(op.Ceil(bin_w), to=7)
    count = op.Cast(op.Max(op.Mul(gh, gw), const_i64(op, [1])), to=1)

    def e(t):  # [K] -> [K, 1, 1, 1, 1]
        return op.Reshape(t, const_i64(op, [-1, 1, 1, 1, 1]))

    def steps(g, shape):  # 0 .. max grid - 1, float and int, shaped to broadcast
        si = op.Reshape(op.Range(const_scalar_i64(op, 0), _max_at_least_one(op, g), const_scalar_i64(op, 1)), const_i64(op, shape))
        return op.Cast(si, to=1), si

    ih = op.Reshape(blocks.float_index(op, oh), const_i64(op, [1, oh, 1, 1, 1]))
    iw = op.Reshape(blocks.float_index(op, ow), const_i64(op, [1, 1, ow, 1, 1]))
    sh, shi = steps(gh, [1, 1, 1, -1, 1])
    sw, swi = steps(gw, [1, 1, 1, 1, -1])
    half = f(0.5)
    yy = op.Add(op.Add(e(op.Div(op.Neg(rh), f(2.0))), op.Mul(ih, e(bin_h))),
                op.Div(op.Mul(op.Add(sh, half), e(bin_h)), e(op.Cast(gh, to=1))))
    xx = op.Add(op.Add(e(op.Div(op.Neg(rw), f(2.0))), op.Mul(iw, e(bin_w))),
                op.Div(op.Mul(op.Add(sw, half), e(bin_w)), e(op.Cast(gw, to=1))))
    y = op.Add(op.Sub(op.Mul(yy, e(cos)), op.Mul(xx, e(sin))), e(cy))  # [K, oh, ow, Gh, Gw]
    x = op.Add(op.Add(op.Mul(yy, e(sin)), op.Mul(xx, e(cos))), e(cx))
    hf, wf = op.Cast(h, to=1), op.Cast(w, to=1)
    inside = op.And(
        op.And(op.GreaterOrEqual(y, f(-1.0)), op.LessOrEqual(y, hf)),
        op.And(op.GreaterOrEqual(x, f(-1.0)), op.LessOrEqual(x, wf)),
    )
    used = op.And(op.And(op.Less(shi, e(gh)), op.Less(swi, e(gw))), inside)

    def axis(v, size):
        v = op.Max(v, f(0.0))
        low = op.Cast(op.Floor(v), to=7)
        last = op.Sub(size, const_i64(op, [1]))
        top = op.GreaterOrEqual(low, last)
        low = op.Where(top, last, low)
        high = op.Where(top, low, op.Add(low, const_i64(op, [1])))
        frac = op.Where(top, f(0.0), op.Sub(v, op.Cast(low, to=1)))
        return low, high, frac, op.Sub(f(1.0), frac)

    y_low, y_high, ly, hy = axis(y, h)
    x_low, x_high, lx, hx = axis(x, w)
    samples = op.Mul(dim(op, sh, 3), dim(op, sw, 4))  # G (no -1 in the shape: K may be 0)
    flat = op.Concat(dim(op, y, 0), const_i64(op, [oh * ow]), samples, axis=0)
    zero = f(0.0)
    corners = [(y_low, x_low, hy, hx), (y_low, x_high, hy, lx), (y_high, x_low, ly, hx), (y_high, x_high, ly, lx)]
    positions, weights = [], []
    for r, c, wr, wc in corners:
        positions.append(op.Reshape(op.Add(op.Mul(r, w), c), flat))
        weights.append(op.Reshape(op.Where(used, op.Mul(wr, wc), zero), flat))
    return positions, weights, count, op.Reshape(op.Expand(used, op.Shape(y)), flat)


def onnx_roi_align_rotated(op, p: RoIAlignRotatedParams, x, rboxes, outputs=("y",)):
    oh, ow = p.output_size
    c, h, w = dim(op, x, 1), dim(op, x, 2), dim(op, x, 3)
    positions, weights, count, used = _onnx_rotated_samples(op, p, rboxes, h, w)
    rows = op.Reshape(op.Transpose(x, perm=[0, 2, 3, 1]), op.Concat(const_i64(op, [-1]), c, axis=0))  # [N*H*W, C]
    base = op.Reshape(op.Mul(_batch_index(op, rboxes), op.Mul(h, w)), const_i64(op, [-1, 1, 1]))

    def pool(op, skip_unused: bool):
        y = None
        for pos, wt in zip(positions, weights):  # [K, P, 1, G] @ [K, P, G, C]
            vals = op.Gather(rows, op.Add(base, pos), axis=0)
            if skip_unused:  # samples outside the map (weight 0) read no cell, as mmcv's
                vals = op.Where(unsqueeze(op, used, [3]), vals, const_f32(op, 0.0))
            term = op.MatMul(unsqueeze(op, wt, [2]), vals)
            y = term if y is None else op.Add(y, term)
        return y

    # an unused sample's 0 weight times an infinity it read is NaN: then again without them
    y = pool(op, False)
    y = blocks.if_finite(op, y, lambda op: y, lambda op: pool(op, True))
    y = op.Div(op.Squeeze(y, const_i64(op, [2])), op.Reshape(count, const_i64(op, [-1, 1, 1])))  # [K, P, C]
    shape = op.Concat(dim(op, rboxes, 0), c, const_i64(op, [oh, ow]), axis=0)
    return (op.Reshape(op.Transpose(y, perm=[0, 2, 1]), shape),)


def _grids(p: RoIAlignRotatedParams, h: int, w: int) -> tuple[int, int]:
    """The most samples per bin side (rows, columns): the sampling_ratio or, adaptive,
    those of a box of side ``2 * max(H, W) + 2`` (what :func:`check_rboxes` takes)."""
    if p.sampling_ratio > 0:
        return p.sampling_ratio, p.sampling_ratio
    side = max(h, w, 1)
    return grid_limit(side, p.output_size[0]), grid_limit(side, p.output_size[1])


def roi_align_rotated_work(p: RoIAlignRotatedParams, shapes, outputs=("y",), backward=False) -> int:
    """x laid out ``[N*H*W, C]``; per box, bin and sample (``G = g_h*g_w``) the int64
    positions and float weights of the four neighbours ``[K, P, G]`` (and the float
    sample coordinates ``[K, oh, ow, g_h, g_w]``); each corner's gathered neighbours
    ``[K, P, G, C]`` (``P = oh*ow``)."""
    n, c, h, w = shapes["x"]
    k = shapes["rboxes"][0]
    gh, gw = _grids(p, h, w)
    samples = k * p.output_size[0] * p.output_size[1] * gh * gw
    return max(n * c * h * w, samples * max(c, 2), 6 * k)


register(
    OpSpec(
        name="roi_align_rotated",
        family="roi",
        params=RoIAlignRotatedParams,
        torch_fn=torch_roi_align_rotated,
        onnx_fn=onnx_roi_align_rotated,
        onnx_backward=None,
        output_shape=lambda p, x_shape, rboxes_shape=None: (
            rboxes_shape[0] if rboxes_shape is not None else None, x_shape[1], *p.output_size),
        module_name="RoIAlignRotated",
        inputs=("x", "rboxes"),
        check_input=lambda p, x, rboxes: check_rboxes("roi_align_rotated", p, x, rboxes),
        work=roi_align_rotated_work,
        doc=__doc__,
    )
)


# ---------------------------------------------------------------- rotation_invariant


def _check_orientations(p: RotationInvariantParams, x) -> None:
    c = int(x.shape[1])
    if c % p.orientations:
        raise ParamError(
            "rotation_invariant",
            "orientations",
            f"x's C ({c}) must be a multiple of orientations ({p.orientations}): C / orientations features "
            "of orientations channels each",
        )


def _ri_shape(p: RotationInvariantParams, s):
    c = s[1] // p.orientations if p.mode == "max" else s[1]
    return (s[0], c, s[2], s[3])


def torch_rotation_invariant(p: RotationInvariantParams, x, outputs=("y",)):
    import torch

    n, c, h, w = x.shape
    o = p.orientations
    x5 = x.reshape(n, c // o, o, h, w)
    if p.mode == "max":  # torch.max(dim): NaN propagates, the gradient goes to one maximum
        return (x5.max(dim=2).values,)
    main = torch.where(torch.isnan(x5), -float("inf"), x5).argmax(dim=2, keepdim=True)  # first maximum
    idx = (torch.arange(o, device=x.device).reshape(1, 1, o, 1, 1) + main) % o
    return (torch.gather(x5, 2, idx).reshape(n, c, h, w),)


def onnx_rotation_invariant(op, p: RotationInvariantParams, x, outputs=("y",)):
    o = p.orientations
    n, c = dim(op, x, 0), dim(op, x, 1)
    hw = op.Shape(x, start=2)
    x5 = op.Reshape(x, op.Concat(n, op.Div(c, const_i64(op, [o])), const_i64(op, [o]), hw, axis=0))
    axis = const_i64(op, [2])
    if p.mode == "max":
        y = op.ReduceMax(x5, axis, keepdims=0)
        # ONNX Runtime's ReduceMax skips NaN; a sum of squares is NaN exactly when it summed one
        nan = op.IsNaN(op.ReduceSumSquare(x5, axis, keepdims=0))
        return (op.Where(nan, const_f32(op, float("nan")), y),)
    finite = op.Where(op.IsNaN(x5), const_f32(op, -float("inf")), x5)
    main = op.ArgMax(finite, axis=2, keepdims=1, select_last_index=0)  # [N, F, 1, H, W]
    steps = op.Reshape(op.Range(const_scalar_i64(op, 0), const_scalar_i64(op, o), const_scalar_i64(op, 1)),
                       const_i64(op, [1, 1, o, 1, 1]))
    idx = op.Mod(op.Add(steps, main), const_i64(op, [o]))
    return (op.Reshape(op.GatherElements(x5, idx, axis=2), op.Shape(x)),)


def rotation_invariant_work(p: RotationInvariantParams, shapes, outputs=("y",), backward=False) -> int:
    """x viewed ``[N, F, O, H, W]``; max: the max and the sums of squares ``[N, F, H, W]``;
    align: x without NaN, the int64 main directions and gather positions ``[N, F, O, H, W]``
    and the gathered result."""
    n, c, h, w = shapes["x"]
    size = n * c * h * w
    return 2 * size if p.mode == "align" else size


register(
    OpSpec(
        name="rotation_invariant",
        family="oriented",
        params=RotationInvariantParams,
        torch_fn=torch_rotation_invariant,
        onnx_fn=onnx_rotation_invariant,
        onnx_backward=None,
        output_shape=_ri_shape,
        module_name="RotationInvariantPool",
        check_input=_check_orientations,
        work=rotation_invariant_work,
        doc=__doc__,
    )
)
