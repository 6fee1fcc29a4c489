"""Naive references of the anti-aliased, soft, unpooling and fractional pools: plain
Python loops over every output element, in float64, written from the papers' and
PyTorch's definitions (not from poolops' code), for the tests of poolops/ops/softpool.py,
lip.py, blur.py, max_unpool.py and fractional_max.py."""

from __future__ import annotations

import math

import numpy as np


def exp_weighted(x, logit, kernel, stride, padding=(0, 0)) -> np.ndarray:
    """``sum exp(l) x / sum exp(l)`` over each window (zero padding: cells outside the input
    are left out of both sums), float64 ``exp`` of the logits as they are."""
    x, logit = np.asarray(x, np.float64), np.asarray(logit, np.float64)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    num = den = 0.0
                    for a in range(kh):
                        for d in range(kw):
                            r, q = i * sh - ph + a, j * sw - pw + d
                            if 0 <= r < h and 0 <= q < w:
                                e = math.exp(logit[b, ch, r, q])
                                num += e * x[b, ch, r, q]
                                den += e
                    y[b, ch, i, j] = num / den
    return y


def binomial(size: int) -> list[int]:
    """Row ``size - 1`` of Pascal's triangle: ``[1, 3, 3, 1]`` for 4."""
    return [math.comb(size - 1, k) for k in range(size)]


def _source(i: int, size: int, mode: str) -> int | None:
    """Which input cell a padded coordinate ``i`` (may be < 0 or >= size) reads."""
    if 0 <= i < size:
        return i
    if mode == "zero":
        return None
    if mode == "replicate":
        return min(max(i, 0), size - 1)
    # reflect: mirror about the edge cells, the edges not repeated
    return -i if i < 0 else 2 * (size - 1) - i


def blur(x, filt_size: int, stride, pad_type: str = "reflect") -> np.ndarray:
    """BlurPool (Zhang 2019, antialiased-cnns ``BlurPool``): pad ``(f-1)//2`` before and
    ``ceil((f-1)/2)`` after (reflect, replicate or zero), binomial filter ``a a^T / sum``,
    sampled every ``stride``."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    a = binomial(filt_size)
    filt = np.outer(a, a) / float(sum(a)) ** 2
    before = (filt_size - 1) // 2
    sh, sw = stride
    oh, ow = (h + filt_size - 1 - filt_size) // sh + 1, (w + filt_size - 1 - filt_size) // sw + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            acc = np.zeros((n, c))
            for u in range(filt_size):
                for v in range(filt_size):
                    r = _source(i * sh - before + u, h, pad_type)
                    q = _source(j * sw - before + v, w, pad_type)
                    if r is not None and q is not None:
                        acc += filt[u, v] * x[:, :, r, q]
            y[:, :, i, j] = acc
    return y


def max_stride1(x, kernel) -> np.ndarray:
    """Max over every ``kernel`` window at stride 1, no padding (NaN propagates)."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    kh, kw = kernel
    y = np.empty((n, c, h - kh + 1, w - kw + 1))
    for i in range(h - kh + 1):
        for j in range(w - kw + 1):
            win = x[:, :, i : i + kh, j : j + kw].reshape(n, c, -1)
            y[:, :, i, j] = np.where(np.isnan(win).any(-1), np.nan, win.max(-1))
    return y


def max_unpool(x, indices, out_hw) -> np.ndarray:
    """``torch.nn.functional.max_unpool2d``: zeros of ``out_hw``, each input value written at
    its plane index, in row-major order (a later index overwrites an earlier one)."""
    x = np.asarray(x)
    n, c, h, w = x.shape
    oh, ow = out_hw
    y = np.zeros((n, c, oh * ow), x.dtype)
    for b in range(n):
        for ch in range(c):
            for i in range(h):
                for j in range(w):
                    y[b, ch, int(indices[b, ch, i, j])] = x[b, ch, i, j]
    return y.reshape(n, c, oh, ow)


def fractional_starts(sample: float, size: int, out: int, pool: int) -> list[int]:
    """PyTorch's ``generate_intervals`` (aten FractionalMaxPool2d.cpp), float32 arithmetic:
    ``alpha = (size - pool) / (out - 1)``, start ``i`` = ``int((i + u) alpha) - int(u alpha)``,
    the last start ``size - pool``."""
    f = np.float32
    u = f(sample)
    starts = []
    if out > 1:
        alpha = f(size - pool) / f(out - 1)
        starts = [int(f(f(i) + u) * alpha) - int(u * alpha) for i in range(out - 1)]
    return starts + [size - pool]


def fractional_max(x, samples, kernel, out_hw) -> tuple[np.ndarray, np.ndarray]:
    """Fractional max pooling (Graham 2014) as PyTorch: window ``kernel`` at the starts of
    :func:`fractional_starts` (``samples[n, c] = (u_w, u_h)``); the first maximum in
    row-major order, or the last NaN. Returns values and plane indices."""
    x = np.asarray(x, np.float32)
    n, c, h, w = x.shape
    (kh, kw), (oh, ow) = kernel, out_hw
    y = np.empty((n, c, oh, ow), np.float32)
    idx = np.empty((n, c, oh, ow), np.int64)
    for b in range(n):
        for ch in range(c):
            rows = fractional_starts(samples[b, ch, 1], h, oh, kh)
            cols = fractional_starts(samples[b, ch, 0], w, ow, kw)
            for i, r0 in enumerate(rows):
                for j, q0 in enumerate(cols):
                    best, at = -np.inf, r0 * w + q0
                    for r in range(r0, r0 + kh):
                        for q in range(q0, q0 + kw):
                            v = x[b, ch, r, q]
                            if v > best or np.isnan(v):
                                best, at = v, r * w + q
                    y[b, ch, i, j], idx[b, ch, i, j] = best, at
    return y, idx
