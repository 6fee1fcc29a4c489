"""Multi-size training with scale augmentation (issue 11; SPP-net's multi-size training).

A model served with a size policy (``models/size_policy.py``: the shorter side resized into
``[lo, hi]``, aspect kept, no crop) sees canvases whose shorter side lies in ``[lo, hi]`` and
whose aspect is whatever the image's was. :func:`batches` draws training batches of exactly
that: per batch a shorter side ``S`` in ``shorter_side``, an aspect log-uniform in
``[1, max_aspect]`` (landscape or portrait) and the object at any scale the data's ``render``
is given (e.g. digits 0.2..1.0 of the shorter side). Images that were *smaller* than ``S``
before the policy scaled them up are blurrier than ones drawn at ``S``: with probability
``upscaled`` a batch is drawn on a canvas whose shorter side lies in ``[source_min, S)`` and
resized to ``S`` by ``size_policy.resize`` (the server's resampling); likewise, with probability
``downscaled``, on a canvas up to ``source_max_factor`` times larger, shrunk to ``S`` (hard edges
drawn large come out soft, as the policy makes them). The other batches are drawn at ``S``.

Every batch has one (H, W); numpy ``(x float32 [B, C, H, W], y int64 [B])``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import numpy as np

#: The training recipe's defaults (recorded on the cards).
DEFAULTS = {"shorter_side": [32, 64], "max_aspect": 4.0, "upscaled": 0.3, "source_min": 16,
            "downscaled": 0.0, "source_max_factor": 4.0}


def draw_size(rng: np.random.Generator, shorter_side, max_aspect: float, max_side: int | None = None) -> tuple[int, int]:
    """(H, W): shorter side uniform in ``shorter_side`` (inclusive), aspect log-uniform in
    ``[1, max_aspect]``, landscape or portrait with equal odds."""
    lo, hi = int(shorter_side[0]), int(shorter_side[1])
    s = int(rng.integers(lo, hi + 1))
    a = float(np.exp(rng.uniform(0.0, np.log(max(1.0, float(max_aspect))))))
    long = max(s, int(np.floor(s * a + 0.5)))
    if max_side is not None:
        long = min(long, int(max_side))
    return (s, long) if rng.integers(2) else (long, s)


def resize_batch(x: np.ndarray, h: int, w: int) -> np.ndarray:
    """Every image of ``x [B, C, h0, w0]`` resized to ``h x w`` by ``size_policy.resize``."""
    from poolops_models import size_policy

    out = [size_policy.resize(np.ascontiguousarray(im.transpose(1, 2, 0)), h, w) for im in x]
    return np.ascontiguousarray(np.stack(out).transpose(0, 3, 1, 2), dtype=np.float32)


def batches(
    draw: Callable[[np.random.Generator, int, tuple[int, int]], tuple[np.ndarray, np.ndarray]],
    n_batches: int,
    batch_size: int,
    seed: int = 0,
    shorter_side=DEFAULTS["shorter_side"],
    max_aspect: float = DEFAULTS["max_aspect"],
    upscaled: float = DEFAULTS["upscaled"],
    source_min: int = DEFAULTS["source_min"],
    downscaled: float = DEFAULTS["downscaled"],
    source_max_factor: float = DEFAULTS["source_max_factor"],
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``n_batches`` batches of ``draw(rng, batch_size, (H, W)) -> (x, y)`` (see the module doc)."""
    rng = np.random.default_rng([0x6D756C74, int(seed)])
    for _ in range(int(n_batches)):
        h, w = draw_size(rng, shorter_side, max_aspect)
        s = min(h, w)
        u = rng.uniform()
        s0 = None
        if u < upscaled and s > source_min:
            s0 = int(rng.integers(source_min, s))
        elif upscaled <= u < upscaled + downscaled and source_max_factor > 1:
            s0 = int(rng.integers(s + 1, int(s * source_max_factor) + 1))
        if s0 is None:
            yield draw(rng, batch_size, (h, w))
            continue
        h0, w0 = (s0, max(s0, int(np.floor(w * s0 / s + 0.5)))) if h <= w else (max(s0, int(np.floor(h * s0 / s + 0.5))), s0)
        x, y = draw(rng, batch_size, (h0, w0))
        yield resize_batch(x, h, w), y


def recipe_dict(**overrides: Any) -> dict[str, Any]:
    """The multi-size recipe's parameters (defaults with ``overrides``), as a card records them."""
    return {**DEFAULTS, **overrides}
