"""Naive TF "SAME" pooling: plain loops over every output cell, in float64, written from
TensorFlow's definition of ``padding="SAME"`` (not from poolops' code), for
tests/poolops/ops/test_same.py.

TF: output ``ceil(L / s)`` per axis; padding in total ``max((out - 1) * s + (k - 1) * d + 1
- L, 0)``, ``total // 2`` before and the rest after. Max pooling takes the maximum over the
window's cells inside the input; average pooling sums them and divides by how many there
are (padding not counted)."""

from __future__ import annotations

import math

import numpy as np


def pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def windows(x_shape, kernel, stride, dilation=(1, 1)):
    """``{(i, j): [(r, c), ...]}``: each output cell's window cells inside the input, in
    row-major window order."""
    _, _, h, w = x_shape
    (top, _), (left, _) = pads(h, kernel[0], stride[0], dilation[0]), pads(w, kernel[1], stride[1], dilation[1])
    out = {}
    for i in range(math.ceil(h / stride[0])):
        for j in range(math.ceil(w / stride[1])):
            cells = [(i * stride[0] - top + a * dilation[0], j * stride[1] - left + b * dilation[1])
                     for a in range(kernel[0]) for b in range(kernel[1])]
            out[i, j] = [(r, c) for r, c in cells if 0 <= r < h and 0 <= c < w]
    return out


def max_pool(x, kernel, stride, dilation=(1, 1)):
    """(values, plane indices): the first maximum in row-major window order among the
    cells inside the input (NaN if any is NaN; its index then -1: not specified)."""
    x = np.asarray(x, np.float64)
    n, ch, h, w = x.shape
    win = windows(x.shape, kernel, stride, dilation)
    oh, ow = math.ceil(h / stride[0]), math.ceil(w / stride[1])
    y, idx = np.empty((n, ch, oh, ow)), np.empty((n, ch, oh, ow), np.int64)
    for b in range(n):
        for c in range(ch):
            for (i, j), cells in win.items():
                vals = [x[b, c, r, q] for r, q in cells]
                if any(np.isnan(vals)):
                    y[b, c, i, j], idx[b, c, i, j] = np.nan, -1
                    continue
                k = int(np.argmax(vals))  # first maximum
                y[b, c, i, j] = vals[k]
                idx[b, c, i, j] = cells[k][0] * w + cells[k][1]
    return y, idx


def avg_pool(x, kernel, stride, divisor: int | None = None):
    """Sum of the cells inside the input over their count (TF), or over ``divisor``."""
    x = np.asarray(x, np.float64)
    n, ch, h, w = x.shape
    y = np.empty((n, ch, math.ceil(h / stride[0]), math.ceil(w / stride[1])))
    for (i, j), cells in windows(x.shape, kernel, stride).items():
        total = sum(x[:, :, r, q] for r, q in cells)
        y[:, :, i, j] = total / (divisor or len(cells))
    return y


def avg_pool_grad(x_shape, g, kernel, stride, divisor: int | None = None):
    """The gradient of ``sum(avg_pool(x) * g)`` with respect to x."""
    out = np.zeros(x_shape)
    for (i, j), cells in windows(x_shape, kernel, stride).items():
        for r, q in cells:
            out[:, :, r, q] += g[:, :, i, j] / (divisor or len(cells))
    return out
