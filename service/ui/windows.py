"""Seeing an op at work: the input plane drawn as a grid (numbers in the cells when small)
with the pooling windows over it, the window of a chosen output cell and where that
cell's gradient goes (for max: its argmax), the backward pass over the input, and, for
stochastic pooling, each window's probabilities (numpy and Pillow only)."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from poolops.shapes import adaptive_bins
from poolops_service.ui.render import fmt

CELL = 56  # px per input cell when the numbers are drawn
MAX_SIDE = 512  # px of the longer side of a drawing
MAX_OUTLINED = 64  # windows drawn faintly all at once when the output has at most this many cells
SELECTED = (230, 25, 75)
FAINT = (0, 130, 200)
GRAD = (255, 170, 0)


def window_of(params, x_shape: tuple[int, ...], y_shape: tuple[int, ...], i: int, j: int):
    """The input rows and columns ``(r0, r1, c0, c1)`` (end exclusive, clipped to the input)
    that output cell ``(i, j)`` reads, from the op's parameters: a fixed window (``kernel``,
    stride, padding, dilation) or adaptive bins (``output_size``, global ops); None when
    the parameters do not say (then the gradient shows the cells it reads)."""
    h, w = x_shape[-2:]
    kernel = getattr(params, "kernel", None)
    if isinstance(kernel, tuple) and len(kernel) == 2 and all(isinstance(k, int) for k in kernel):
        sh, sw = getattr(params, "strides", None) or getattr(params, "stride", None) or kernel
        ph, pw = getattr(params, "padding", (0, 0)) if isinstance(getattr(params, "padding", None), tuple) else (0, 0)
        dh, dw = getattr(params, "dilation", (1, 1)) if isinstance(getattr(params, "dilation", None), tuple) else (1, 1)
        r0, c0 = i * sh - ph, j * sw - pw
        r1, c1 = r0 + (kernel[0] - 1) * dh + 1, c0 + (kernel[1] - 1) * dw + 1
        return max(r0, 0), min(r1, h), max(c0, 0), min(c1, w)
    if len(y_shape) == 4 and (hasattr(params, "output_size") or y_shape[-2:] == (1, 1)):
        oh, ow = y_shape[-2:]
        (r0, r1), (c0, c1) = adaptive_bins(h, oh)[i], adaptive_bins(w, ow)[j]
        return r0, r1, c0, c1
    return None


def probabilities(x_plane: np.ndarray, box) -> np.ndarray | None:
    """Stochastic pooling's probabilities ``x_i / sum(x)`` over one window (row-major), or
    None for an all-zero window."""
    r0, r1, c0, c1 = box
    v = np.asarray(x_plane[r0:r1, c0:c1], np.float64)
    s = v.sum()
    return None if s <= 0 else v / s


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType sizes
        return ImageFont.load_default()


def _grey(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float64)
    fin = np.isfinite(a)
    out = np.full(a.shape, 0.5)
    if fin.any():
        lo, hi = a[fin].min(), a[fin].max()
        out[fin] = 0.5 if hi == lo else (a[fin] - lo) / (hi - lo)
    return out


def draw(
    x_plane: np.ndarray,
    boxes: list[tuple[int, int, int, int]] = (),
    selected=None,
    marks: np.ndarray | None = None,
    labels: dict[tuple[int, int], str] | None = None,
    numbers: bool = True,
) -> Image.Image:
    """The input plane as a grid: each cell grey by its value (light = high) with its number
    when ``numbers``; ``boxes`` outlined faintly, ``selected`` (a box) in red, ``marks``
    (a plane of the input's shape: the gradient) as an orange fill, strength by magnitude,
    and ``labels`` (extra text per cell: a gradient or a probability) under the number."""
    h, w = x_plane.shape
    fit = MAX_SIDE // max(h, w)
    cell = max(CELL, min(2 * CELL, fit)) if numbers else max(1, fit)
    g = _grey(x_plane)
    rgb = np.round(60 + 150 * g).astype(np.uint8)
    im = Image.fromarray(np.repeat(np.repeat(np.stack([rgb] * 3, -1), cell, 0), cell, 1)).convert("RGBA")
    over = Image.new("RGBA", im.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(over)
    if marks is not None:
        m = np.abs(np.nan_to_num(np.asarray(marks, np.float64)))
        top = m.max()
        for r, c in zip(*np.nonzero(m)):
            a = int(60 + 150 * m[r, c] / top) if top > 0 else 0
            d.rectangle((c * cell, r * cell, (c + 1) * cell - 1, (r + 1) * cell - 1), fill=GRAD + (a,))
    for r0, r1, c0, c1 in boxes:
        d.rectangle((c0 * cell + 2, r0 * cell + 2, c1 * cell - 3, r1 * cell - 3), outline=FAINT + (200,), width=2)
    if selected is not None:
        r0, r1, c0, c1 = selected
        d.rectangle((c0 * cell, r0 * cell, c1 * cell - 1, r1 * cell - 1), outline=SELECTED + (255,), width=4)
    im = Image.alpha_composite(im, over)
    if numbers:
        t = ImageDraw.Draw(im)
        big, small = _font(max(10, cell // 3)), _font(max(8, cell // 5))
        for r in range(h):
            for c in range(w):
                cx, cy = c * cell + cell // 2, r * cell + cell // 2
                light = g[r, c] > 0.55
                ink = (0, 0, 0) if light else (255, 255, 255)
                label = (labels or {}).get((r, c))
                t.text((cx, cy - (cell // 8 if label else 0)), fmt(x_plane[r, c]), fill=ink, font=big, anchor="mm")
                if label:
                    t.text((cx, cy + cell // 4), label, fill=ink, font=small, anchor="mm")
        for k in range(1, h):
            t.line((0, k * cell, w * cell, k * cell), fill=(40, 40, 40), width=1)
        for k in range(1, w):
            t.line((k * cell, 0, k * cell, h * cell), fill=(40, 40, 40), width=1)
    return im.convert("RGB")


def all_windows(params, x_shape, y_shape) -> list[tuple[int, int, int, int]]:
    """Every output cell's window when there are at most :data:`MAX_OUTLINED` (else none)."""
    oh, ow = y_shape[-2:] if len(y_shape) == 4 else (0, 0)
    if oh * ow == 0 or oh * ow > MAX_OUTLINED:
        return []
    out = []
    for i in range(oh):
        for j in range(ow):
            b = window_of(params, x_shape, y_shape, i, j)
            if b is not None:
                out.append(b)
    return out
