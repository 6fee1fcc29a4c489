"""Handwritten digits at random scale, aspect and position on canvases of random size.

The source is scikit-learn's bundled digits (1797 images of 8x8, values 0..16; no download).
Each digit is scaled to [0, 1], resized (bilinear, antialiased when shrinking) and pasted on a
zero canvas. Train and test are disjoint sets of digit *samples* (:func:`split`); placements
are random on top of that.

Tensors are numpy arrays: ``x`` float32 ``[B, 1, H, W]`` in ``[0, 1]`` (background 0, ink up
to 1), ``y`` int64 ``[B]`` with values in ``range(10)``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterator, Sequence

import numpy as np

NAME = "digits"
LABELS = [str(d) for d in range(10)]
CHANNELS = 1
#: (H range, W range), inclusive, used for training and for the "seen sizes" evaluation.
SEEN_SIZES = ((24, 64), (24, 64))
#: Larger sizes never seen in training.
UNSEEN_SIZES = ((80, 128), (80, 128))
DESCRIPTION = (
    "scikit-learn handwritten digits (8x8, /16) resized to a random scale in [0.4, 0.9] of "
    "min(H, W), aspect in [0.75, 1.33], pasted at a random position on a zero canvas H x W; "
    "1 channel in [0, 1]; held-out digit samples for test"
)

# Tags that keep the random streams of training batches and evaluation sets apart.
_TRAIN_TAG = 0x7261696E
_EVAL_TAG = 0x6576616C
_SIZES_TAG = 0x73697A65

SizeRange = tuple[tuple[int, int], tuple[int, int]]


# ----------------------------------------------------------------------------- shared helpers
def _stream(tag: int, seed: int) -> np.random.Generator:
    """An rng for (purpose tag, seed); distinct tags never share a stream."""
    return np.random.default_rng([int(tag), int(seed)])


def _check_range(size_range: SizeRange) -> SizeRange:
    (h0, h1), (w0, w1) = size_range
    if not (1 <= h0 <= h1 and 1 <= w0 <= w1):
        raise ValueError(f"bad size_range {size_range!r}: want ((h_min, h_max), (w_min, w_max))")
    return (int(h0), int(h1)), (int(w0), int(w1))


def _draw_size(rng: np.random.Generator, size_range: SizeRange) -> tuple[int, int]:
    """One (H, W) with H and W uniform and independent in their inclusive ranges."""
    (h0, h1), (w0, w1) = size_range
    return int(rng.integers(h0, h1 + 1)), int(rng.integers(w0, w1 + 1))


def _eval_sizes(rng: np.random.Generator, size_range: SizeRange, n_sizes: int) -> list[tuple[int, int]]:
    """``n_sizes`` (H, W) covering the range (Latin hypercube: one H per H-stratum, likewise W)."""
    (h0, h1), (w0, w1) = _check_range(size_range)

    def strata(lo: int, hi: int) -> np.ndarray:
        edges = np.linspace(lo, hi + 1, n_sizes + 1)
        return np.array([int(rng.integers(int(edges[i]), max(int(edges[i]) + 1, int(edges[i + 1]))))
                         for i in range(n_sizes)])

    hs = strata(h0, h1)
    ws = rng.permutation(strata(w0, w1))
    return [(int(min(h, h1)), int(min(w, w1))) for h, w in zip(hs, ws)]


def bucket_sizes(
    shorter_side: tuple[int, int],
    n: int,
    seed: int = 0,
    max_aspect: float = 4.0,
    max_side: int = 512,
) -> list[tuple[int, int]]:
    """``n`` canvas sizes (H, W) for a size bucket: the shorter side uniform in ``shorter_side``
    (inclusive), the aspect (longer / shorter) log-uniform in ``[1, max_aspect]`` but with the longer
    side at most ``max_side``, landscape or portrait with equal odds. Deterministic given ``seed``
    (its own stream, apart from training and evaluation placements). For ``eval_set(sizes=...)``.
    """
    lo, hi = int(shorter_side[0]), int(shorter_side[1])
    if not 1 <= lo <= hi <= max_side or max_aspect < 1:
        raise ValueError(f"bad bucket {shorter_side!r} (max_side {max_side}, max_aspect {max_aspect})")
    rng = _stream(_SIZES_TAG, seed)
    out = []
    for _ in range(int(n)):
        s = int(rng.integers(lo, hi + 1))
        a_max = min(float(max_aspect), max_side / s)
        long = int(min(max_side, max(s, np.floor(s * np.exp(rng.uniform(0.0, np.log(a_max))) + 0.5))))
        out.append((s, long) if rng.integers(2) else (long, s))
    return out


def _resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """``[n_out, n_in]`` bilinear (triangle) resampling weights, half-pixel centres, antialiased
    when shrinking (like PIL's BILINEAR); rows sum to 1."""
    ratio = n_in / n_out
    support = max(1.0, ratio)
    centres = (np.arange(n_out) + 0.5) * ratio
    dist = np.abs((np.arange(n_in) + 0.5)[None, :] - centres[:, None])
    w = np.clip(1.0 - dist / support, 0.0, None)
    return (w / w.sum(axis=1, keepdims=True)).astype(np.float32)


def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of a 2-D array ``[h0, w0] -> [h, w]`` (float32, values stay in the input range)."""
    img = np.asarray(img, dtype=np.float32)
    return _resize_matrix(img.shape[0], h) @ img @ _resize_matrix(img.shape[1], w).T


# ----------------------------------------------------------------------------- the data
@lru_cache(maxsize=1)
def _load() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images.astype(np.float32) / 16.0)  # [1797, 8, 8] in [0, 1]
    images.setflags(write=False)
    labels = d.target.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def images() -> np.ndarray:
    """All digit images, float32 ``[1797, 8, 8]`` in [0, 1] (read-only)."""
    return _load()[0]


def labels() -> np.ndarray:
    """All digit labels, int64 ``[1797]`` (read-only)."""
    return _load()[1]


def split(seed: int = 0, test_fraction: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, deterministic split of the digit sample indices.

    Returns ``(train_ids, test_ids)``, sorted int64 arrays, disjoint, together all 1797 indices;
    each class contributes ``round(n_class * test_fraction)`` samples to test.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    y = labels()
    rng = np.random.default_rng([0x73706C74, int(seed)])
    test = []
    for c in range(len(LABELS)):
        idx = np.flatnonzero(y == c)
        k = int(round(len(idx) * test_fraction))
        test.append(rng.permutation(idx)[:k])
    test_ids = np.sort(np.concatenate(test)).astype(np.int64)
    train_ids = np.setdiff1d(np.arange(len(y), dtype=np.int64), test_ids)
    return train_ids, test_ids


#: The three-way split of the digit samples (issue 11): the test samples are :func:`split`'s
#: (25% of each class); the validation samples, 15% of each class, come out of the rest. Models
#: train on ``train`` only; every choice (size policy, epochs, recipe) is made on buckets drawn
#: from ``validation``; the test buckets of ``poolops experiments`` use ``test`` only.
VALIDATION_FRACTION = 0.15


def splits(seed: int = 0, validation_fraction: float = VALIDATION_FRACTION,
           test_fraction: float = 0.25) -> dict[str, np.ndarray]:
    """Stratified, deterministic ``{"train", "validation", "test"}`` split of the sample indices
    (sorted int64 arrays, pairwise disjoint, together all 1797).

    ``test`` is exactly :func:`split`'s test ids; each class then gives
    ``round(n_class * validation_fraction)`` of its remaining samples to ``validation``.
    """
    if not (0.0 < validation_fraction and validation_fraction + test_fraction < 1.0):
        raise ValueError(f"validation_fraction must be > 0 and leave training samples, got {validation_fraction}")
    rest, test = split(seed, test_fraction)
    y = labels()
    rng = np.random.default_rng([0x76616C69, int(seed)])
    val = []
    for c in range(len(LABELS)):
        idx = rest[y[rest] == c]
        k = int(round(int((y == c).sum()) * validation_fraction))
        val.append(rng.permutation(idx)[:k])
    val_ids = np.sort(np.concatenate(val)).astype(np.int64)
    return {"train": np.setdiff1d(rest, val_ids), "validation": val_ids, "test": test}


def render(
    ids: Sequence[int] | np.ndarray,
    size: tuple[int, int],
    rng: np.random.Generator,
    scale_range: tuple[float, float] = (0.4, 0.9),
    aspect_range: tuple[float, float] = (0.75, 1.33),
    noise: float = 0.0,
    return_info: bool = False,
):
    """Render digit samples ``ids`` on canvases of exactly ``size = (H, W)``.

    Each digit's height is ``scale * min(H, W)`` (scale uniform in ``scale_range``), its width
    ``height * aspect`` (aspect log-uniform in ``aspect_range``), both clipped to the canvas and at
    least 4 px; it is pasted at a uniformly random position. ``noise > 0`` adds Gaussian noise of
    that std (then clips to [0, 1]). Deterministic given the state of ``rng``.

    Returns ``(x, y)``: float32 ``[B, 1, H, W]`` in [0, 1], int64 ``[B]``; with ``return_info``
    also a dict with ``boxes`` int64 ``[B, 4]`` = (top, left, height, width) of each digit.
    """
    H, W = int(size[0]), int(size[1])
    if H < 4 or W < 4:
        raise ValueError(f"canvas {H}x{W} too small (min 4x4)")
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    imgs, labs = _load()
    B = len(ids)
    x = np.zeros((B, 1, H, W), dtype=np.float32)
    boxes = np.zeros((B, 4), dtype=np.int64)
    m = min(H, W)
    la, lb = np.log(aspect_range[0]), np.log(aspect_range[1])
    for i, k in enumerate(ids):
        scale = rng.uniform(*scale_range)
        aspect = float(np.exp(rng.uniform(la, lb)))
        h = int(np.clip(round(scale * m), 4, H))
        w = int(np.clip(round(h * aspect), 4, W))
        top = int(rng.integers(0, H - h + 1))
        left = int(rng.integers(0, W - w + 1))
        x[i, 0, top:top + h, left:left + w] = resize(imgs[k], h, w)
        boxes[i] = (top, left, h, w)
    if noise > 0:
        x += rng.normal(0.0, noise, size=x.shape).astype(np.float32)
        np.clip(x, 0.0, 1.0, out=x)
    y = labs[ids].copy()
    if return_info:
        return x, y, {"boxes": boxes}
    return x, y


def batches(
    ids: Sequence[int] | np.ndarray,
    n_batches: int,
    batch_size: int,
    size_range: SizeRange = SEEN_SIZES,
    seed: int = 0,
    fixed_size: tuple[int, int] | None = None,
    **render_kwargs,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``n_batches`` training batches ``(x [B, 1, H, W], y [B])`` of samples from ``ids``.

    Each batch has one size: ``fixed_size`` if given, else (H, W) drawn uniformly and independently
    from ``size_range`` (inclusive). Samples are drawn epoch-wise (a fresh permutation of ``ids``
    each pass). Deterministic given ``seed``; the stream is disjoint from :func:`eval_set`'s.
    """
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) == 0:
        raise ValueError("no ids")
    size_range = _check_range(size_range)
    rng = _stream(_TRAIN_TAG, seed)
    order = rng.permutation(ids)
    pos = 0
    for _ in range(int(n_batches)):
        take = []
        need = int(batch_size)
        while need > 0:
            if pos == len(order):
                order, pos = rng.permutation(ids), 0
            chunk = order[pos:pos + need]
            take.append(chunk)
            pos += len(chunk)
            need -= len(chunk)
        size = tuple(fixed_size) if fixed_size is not None else _draw_size(rng, size_range)
        yield render(np.concatenate(take), size, rng, **render_kwargs)


def eval_set(
    ids: Sequence[int] | np.ndarray,
    size_range: SizeRange = SEEN_SIZES,
    n_sizes: int = 4,
    n_per_size: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    sizes: Sequence[tuple[int, int]] | None = None,
    **render_kwargs,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A deterministic evaluation set: a list of ``(x [B, 1, H, W], y [B])`` batches.

    ``n_sizes`` sizes spread over ``size_range`` (one per stratum of H and of W), or the canvas
    ``sizes`` given (e.g. :func:`bucket_sizes`; then ``size_range`` and ``n_sizes`` are unused); at each size
    ``n_per_size`` samples of ``ids`` (``None``: every id once), cut into batches of at most
    ``batch_size``. E.g. ``eval_set(test_ids, SEEN_SIZES)`` and ``eval_set(test_ids, UNSEEN_SIZES)``.
    """
    return list(eval_batches(ids, size_range, n_sizes, n_per_size, batch_size, seed, sizes, **render_kwargs))


def eval_batches(
    ids: Sequence[int] | np.ndarray,
    size_range: SizeRange = SEEN_SIZES,
    n_sizes: int = 4,
    n_per_size: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    sizes: Sequence[tuple[int, int]] | None = None,
    **render_kwargs,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`eval_set`'s batches one at a time (the same ones), for sets too large to hold."""
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    rng = _stream(_EVAL_TAG, seed)
    for size in (_eval_sizes(rng, size_range, n_sizes) if sizes is None else [tuple(z) for z in sizes]):
        if n_per_size is None:
            chosen = ids
        elif n_per_size <= len(ids):
            chosen = np.sort(rng.choice(ids, size=n_per_size, replace=False))
        else:
            chosen = rng.choice(ids, size=n_per_size, replace=True)
        for s in range(0, len(chosen), batch_size):
            yield render(chosen[s:s + batch_size], size, rng, **render_kwargs)
