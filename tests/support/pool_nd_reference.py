"""Naive references of the 1-D and 3-D pools, written from PyTorch's definitions with
plain loops over every (n, c), output position and window element (any number of
spatial axes). Slow: for small tests only. Independent of ``poolops.ops.pool_nd``."""

from __future__ import annotations

import itertools
import math

import numpy as np


def out_size(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    eff = d * (k - 1) + 1
    num = size + 2 * p - eff
    out = (math.ceil(num / s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= size + p:  # the last window may not start in the right padding
        out -= 1
    return out


def max_pool(x, kernel, stride, padding, dilation, ceil_mode):
    """``(y, indices)``: the max of each window (NaN propagates; ties: the first in
    row-major order) and its flat index in the (n, c) signal / volume."""
    n, c, *spatial = x.shape
    outs = [out_size(*a, ceil_mode) for a in zip(spatial, kernel, stride, padding, dilation)]
    y = np.zeros((n, c, *outs), np.float32)
    idx = np.zeros((n, c, *outs), np.int64)
    for b, ch in itertools.product(range(n), range(c)):
        for o in itertools.product(*map(range, outs)):
            best, arg = -np.inf, -1
            for j in itertools.product(*map(range, kernel)):
                pos = [oi * s - p + ji * d for oi, s, p, ji, d in zip(o, stride, padding, j, dilation)]
                if any(q < 0 or q >= L for q, L in zip(pos, spatial)):
                    continue
                v = x[(b, ch, *pos)]
                if np.isnan(best):
                    continue
                if v > best or np.isnan(v) or arg < 0:
                    best, arg = v, int(np.ravel_multi_index(pos, spatial))
            y[(b, ch, *o)], idx[(b, ch, *o)] = best, arg
    return y, idx


def avg_pool(x, kernel, stride, padding, ceil_mode, count_include_pad, divisor_override=None):
    n, c, *spatial = x.shape
    outs = [out_size(L, k, s, p, 1, ceil_mode) for L, k, s, p in zip(spatial, kernel, stride, padding)]
    y = np.zeros((n, c, *outs), np.float32)
    for o in itertools.product(*map(range, outs)):
        starts = [oi * s - p for oi, s, p in zip(o, stride, padding)]
        ends = [min(st + k, L + p) for st, k, L, p in zip(starts, kernel, spatial, padding)]
        padded = math.prod(e - st for st, e in zip(starts, ends))
        starts = [max(st, 0) for st in starts]
        ends = [min(e, L) for e, L in zip(ends, spatial)]
        region = tuple(slice(st, e) for st, e in zip(starts, ends))
        divisor = divisor_override or (padded if count_include_pad else math.prod(e - st for st, e in zip(starts, ends)))
        for b, ch in itertools.product(range(n), range(c)):
            y[(b, ch, *o)] = np.float32(x[(b, ch, *region)].astype(np.float64).sum() / divisor)
    return y


def _bins(size: int, n: int):
    return [((i * size) // n, -((-(i + 1) * size) // n)) for i in range(n)]


def adaptive_pool(x, output_size, mode: str):
    """``avg``: ``y``; ``max``: ``(y, indices)`` (first maximum, NaN propagates)."""
    n, c, *spatial = x.shape
    bins = [_bins(L, o) for L, o in zip(spatial, output_size)]
    y = np.zeros((n, c, *output_size), np.float32)
    idx = np.zeros((n, c, *output_size), np.int64)
    for b, ch in itertools.product(range(n), range(c)):
        for o in itertools.product(*map(range, output_size)):
            ranges = [range(*bins[a][oi]) for a, oi in enumerate(o)]
            if mode == "avg":
                y[(b, ch, *o)] = np.float32(np.mean([float(x[(b, ch, *pos)]) for pos in itertools.product(*ranges)]))
                continue
            best, arg = None, -1
            for pos in itertools.product(*ranges):
                v = x[(b, ch, *pos)]
                if best is None or (not np.isnan(best) and (v > best or np.isnan(v))):
                    best, arg = v, int(np.ravel_multi_index(pos, spatial))
            y[(b, ch, *o)], idx[(b, ch, *o)] = best, arg
    return y if mode == "avg" else (y, idx)
