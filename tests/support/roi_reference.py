"""Naive references of the RoI ops, written from the definitions with explicit loops over
boxes, bins and samples (numpy float32 scalars, in the order of torchvision's / mmcv's C
code). Slow: for small tests only. Independent of ``poolops.ops.roi``."""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32
FLT_MAX = float(np.finfo(np.float32).max)


def c_round(v) -> int:
    """C ``round``: half away from zero (exact: a float32 plus 0.5 is exact in float64)."""
    v = float(v)
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def roi_pool(x: np.ndarray, boxes: np.ndarray, output_size, spatial_scale: float = 1.0) -> np.ndarray:
    """torchvision ``RoIPool``: max over each bin, 0 for an empty bin, NaN skipped,
    at least -FLT_MAX; returns ``(y [K, C, oh, ow], argmax [K, C, oh, ow])`` (flat h*W+w, -1 if none)."""
    _, c, h, w = x.shape
    oh, ow = output_size
    scale = F32(spatial_scale)
    y = np.zeros((len(boxes), c, oh, ow), np.float32)
    arg = np.full((len(boxes), c, oh, ow), -1, np.int64)
    for k, box in enumerate(boxes):
        b = int(box[0])
        start_w, start_h, end_w, end_h = (c_round(F32(v) * scale) for v in box[1:])
        roi_w = max(end_w - start_w + 1, 1)
        roi_h = max(end_h - start_h + 1, 1)
        bin_h = F32(roi_h) / F32(oh)
        bin_w = F32(roi_w) / F32(ow)
        for ph in range(oh):
            for pw in range(ow):
                h0 = min(max(int(math.floor(F32(ph) * bin_h)) + start_h, 0), h)
                h1 = min(max(int(math.ceil(F32(ph + 1) * bin_h)) + start_h, 0), h)
                w0 = min(max(int(math.floor(F32(pw) * bin_w)) + start_w, 0), w)
                w1 = min(max(int(math.ceil(F32(pw + 1) * bin_w)) + start_w, 0), w)
                empty = h1 <= h0 or w1 <= w0
                for ch in range(c):
                    best = 0.0 if empty else -FLT_MAX
                    for r in range(h0, h1):
                        for col in range(w0, w1):
                            if x[b, ch, r, col] > best:
                                best = x[b, ch, r, col]
                                arg[k, ch, ph, pw] = r * w + col
                    y[k, ch, ph, pw] = best
    return y, arg


def bilinear_interpolate(plane: np.ndarray, y, x):
    """torchvision's ``bilinear_interpolate`` of ``plane [C, H, W]`` at (y, x): ``[C]``."""
    _, h, w = plane.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return np.zeros(plane.shape[0], np.float32)
    y, x = max(y, F32(0)), max(x, F32(0))
    y_low, x_low = int(y), int(x)
    if y_low >= h - 1:
        y_high = y_low = h - 1
        y = F32(y_low)
    else:
        y_high = y_low + 1
    if x_low >= w - 1:
        x_high = x_low = w - 1
        x = F32(x_low)
    else:
        x_high = x_low + 1
    ly, lx = F32(y - y_low), F32(x - x_low)
    hy, hx = F32(1) - ly, F32(1) - lx
    return (
        hy * hx * plane[:, y_low, x_low]
        + hy * lx * plane[:, y_low, x_high]
        + ly * hx * plane[:, y_high, x_low]
        + ly * lx * plane[:, y_high, x_high]
    )


def roi_align(
    x: np.ndarray,
    boxes: np.ndarray,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    offsets: np.ndarray | None = None,
    gamma: float = 0.1,
) -> np.ndarray:
    """torchvision ``roi_align``; with ``offsets [K, 2, oh, ow]`` mmcv's deformable RoI
    pooling (bin (i, j) of box k starts ``gamma*roi_w*offsets[k,0,i,j]`` further along x
    and ``gamma*roi_h*offsets[k,1,i,j]`` along y)."""
    _, c, _, _ = x.shape
    oh, ow = output_size
    scale = F32(spatial_scale)
    shift = F32(0.5) if aligned else F32(0)
    y = np.zeros((len(boxes), c, oh, ow), np.float32)
    for k, box in enumerate(boxes):
        plane = x[int(box[0])]
        x1, y1, x2, y2 = (F32(v) * scale - shift for v in box[1:])
        roi_w, roi_h = F32(x2 - x1), F32(y2 - y1)
        if not aligned:
            roi_w, roi_h = max(roi_w, F32(1)), max(roi_h, F32(1))
        bin_h, bin_w = roi_h / F32(oh), roi_w / F32(ow)
        grid_h = sampling_ratio if sampling_ratio > 0 else int(math.ceil(roi_h / F32(oh)))
        grid_w = sampling_ratio if sampling_ratio > 0 else int(math.ceil(roi_w / F32(ow)))
        count = F32(max(grid_h * grid_w, 1))
        for ph in range(oh):
            for pw in range(ow):
                start_h, start_w = y1, x1
                if offsets is not None:
                    start_w = F32(start_w + F32(F32(gamma) * roi_w) * F32(offsets[k, 0, ph, pw]))
                    start_h = F32(start_h + F32(F32(gamma) * roi_h) * F32(offsets[k, 1, ph, pw]))
                total = np.zeros(c, np.float32)
                for iy in range(grid_h):
                    sy = F32(start_h + F32(ph) * bin_h) + F32(iy + 0.5) * bin_h / F32(grid_h)
                    for ix in range(grid_w):
                        sx = F32(start_w + F32(pw) * bin_w) + F32(ix + 0.5) * bin_w / F32(grid_w)
                        total += bilinear_interpolate(plane, F32(sy), F32(sx))
                y[k, :, ph, pw] = total / count
    return y
