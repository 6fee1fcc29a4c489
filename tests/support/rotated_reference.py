"""Naive references of the oriented ops, written from detectron2's / mmcv's C code
(``ROIAlignRotated_cpu.cpp``, ``roi_align_rotated.cpp``) and ORN's ``align_feature``
with explicit loops over boxes, bins, samples and orientations, in numpy float32
scalars. Slow: for small tests only. Independent of ``poolops.ops.rotated``."""

from __future__ import annotations

import math

import numpy as np

F32 = np.float32


def _bilinear(plane: np.ndarray, y, x) -> np.ndarray:
    """``plane [C, H, W]`` at (y, x) with detectron2's rules: ``[C]``."""
    _, h, w = plane.shape
    if y < -1.0 or y > h or x < -1.0 or x > w:
        return np.zeros(plane.shape[0], np.float32)
    y = F32(0) if y < 0 else y
    x = F32(0) if x < 0 else x
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
    ly, lx = F32(y - F32(y_low)), F32(x - F32(x_low))
    hy, hx = F32(1) - ly, F32(1) - lx
    w1, w2, w3, w4 = hy * hx, hy * lx, ly * hx, ly * lx
    return w1 * plane[:, y_low, x_low] + w2 * plane[:, y_low, x_high] + w3 * plane[:, y_high, x_low] + w4 * plane[:, y_high, x_high]


def roi_align_rotated(x: np.ndarray, boxes: np.ndarray, output_size, spatial_scale: float = 1.0,
                      sampling_ratio: int = 0, aligned: bool = True, clockwise: bool = False) -> np.ndarray:
    """detectron2 ``ROIAlignRotated`` (``aligned``) / mmcv ``roi_align_rotated`` with the
    angle in degrees: ``y [K, C, oh, ow]``."""
    _, c, _, _ = x.shape
    oh, ow = output_size
    scale = F32(spatial_scale)
    y = np.zeros((len(boxes), c, oh, ow), np.float32)
    for k, box in enumerate(boxes):
        plane = x[int(box[0])]
        offset = F32(0.5) if aligned else F32(0)
        cx = F32(F32(box[1]) * scale) - offset
        cy = F32(F32(box[2]) * scale) - offset
        rw, rh = F32(F32(box[3]) * scale), F32(F32(box[4]) * scale)
        theta = F32(F32(box[5]) * F32(math.pi / 180.0))
        if clockwise:
            theta = -theta
        cos_t, sin_t = F32(np.cos(theta)), F32(np.sin(theta))
        if not aligned:
            rw, rh = max(rw, F32(1)), max(rh, F32(1))
        bin_h, bin_w = F32(rh / F32(oh)), F32(rw / F32(ow))
        grid_h = sampling_ratio if sampling_ratio > 0 else int(math.ceil(rh / F32(oh)))
        grid_w = sampling_ratio if sampling_ratio > 0 else int(math.ceil(rw / F32(ow)))
        count = F32(max(grid_h * grid_w, 1))
        start_h, start_w = F32(-rh / F32(2)), F32(-rw / F32(2))
        for ph in range(oh):
            for pw in range(ow):
                total = np.zeros(c, np.float32)
                for iy in range(grid_h):
                    yy = F32(start_h + F32(ph) * bin_h) + F32(F32(iy + 0.5) * bin_h) / F32(grid_h)
                    for ix in range(grid_w):
                        xx = F32(start_w + F32(pw) * bin_w) + F32(F32(ix + 0.5) * bin_w) / F32(grid_w)
                        sy = F32(F32(yy * cos_t) - F32(xx * sin_t)) + cy
                        sx = F32(F32(yy * sin_t) + F32(xx * cos_t)) + cx
                        total += _bilinear(plane, F32(sy), F32(sx))
                y[k, :, ph, pw] = total / count
    return y


def rotation_invariant(x: np.ndarray, orientations: int, mode: str = "max") -> np.ndarray:
    """ORN: ``max`` over each feature's orientation channels (ORPool), or ``align``: each
    position's orientation vector rotated so its first maximum comes first (ORAlign's
    loop, NaN never taken as a maximum; all NaN or -inf: direction 0)."""
    n, c, h, w = x.shape
    feats = c // orientations
    out = np.zeros((n, feats if mode == "max" else c, h, w), np.float32)
    for b in range(n):
        for f in range(feats):
            for r in range(h):
                for col in range(w):
                    vals = [x[b, f * orientations + l, r, col] for l in range(orientations)]
                    if mode == "max":
                        out[b, f, r, col] = np.nan if any(np.isnan(v) for v in vals) else max(vals)
                        continue
                    best, main = -np.inf, 0
                    for l, v in enumerate(vals):
                        if v > best:
                            best, main = v, l
                    for l, v in enumerate(vals):
                        out[b, f * orientations + (l - main) % orientations, r, col] = v
    return out
