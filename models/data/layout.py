"""A generated task whose label is the spatial relation of two shapes.

Each canvas ``H x W`` (zero background) holds shape A (a filled square) and shape B (a filled
plus-shaped cross), each of side ``~U(0.15, 0.3) * min(H, W)`` (at least 5 px) and flat intensity
``U(0.6, 1)``. The label is the relation of A to B along the dominant axis of their displacement:
``left`` (A left of B), ``right``, ``above`` (A nearer the top row), ``below``.

The label is drawn first (exactly balanced per render call, independent of canvas size, shape
sizes and intensities) and positions are then sampled until they show it unambiguously: the
shapes are separated along the dominant axis by a gap (``max(1, 0.05 min(H, W))`` px), and the
centre displacement along it is at least ``1.2x`` the one across it plus ``0.1 min(H, W)``.
Global statistics (mean intensity, ink area, canvas size) carry no information about the
label; only *where* A is relative to B does, which global average pooling discards and spatial
pyramid pooling keeps.

Tensors: ``x`` float32 ``[B, 1, H, W]`` in [0, 1], ``y`` int64 ``[B]`` indexing :data:`LABELS`.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from .digits import SizeRange, _check_range, _draw_size, _eval_sizes, _stream

NAME = "layout"
LABELS = ["left", "right", "above", "below"]
CHANNELS = 1
SEEN_SIZES = ((24, 64), (24, 64))
UNSEEN_SIZES = ((80, 128), (80, 128))
SHAPES = ("square", "cross")  # (A, B)
MIN_SIDE = 5
DESCRIPTION = (
    "two shapes (A: filled square, B: filled cross; side U(0.15, 0.3) * min(H, W), >= 5 px; "
    "intensity U(0.6, 1)) at random non-overlapping positions on a zero canvas H x W; label = "
    "relation of A to B (left/right/above/below) along the dominant axis with a clear margin; "
    "labels balanced; 1 channel in [0, 1]"
)

_TRAIN_TAG = 0x6C74726E
_EVAL_TAG = 0x6C65766C


def shape_mask(kind: str, s: int) -> np.ndarray:
    """Boolean ``[s, s]`` mask of a shape: ``square``, ``cross`` (plus, arms ~s/3 thick) or ``disc``."""
    if kind == "square":
        return np.ones((s, s), dtype=bool)
    if kind == "cross":
        t = max(1, int(round(s / 3)))
        if (s - t) % 2:  # keep the arms centred
            t += 1
        o = (s - t) // 2
        m = np.zeros((s, s), dtype=bool)
        m[o:o + t, :] = True
        m[:, o:o + t] = True
        return m
    if kind == "disc":
        c = (s - 1) / 2
        r, q = np.mgrid[:s, :s]
        return (r - c) ** 2 + (q - c) ** 2 <= (s / 2) ** 2
    raise ValueError(f"unknown shape {kind!r}; known: square, cross, disc")


def _place(label: int, H: int, W: int, sa: int, sb: int, gap: int, margin: float,
           rng: np.random.Generator, tries: int = 200):
    """Top-left corners ((ta, la), (tb, lb)) showing ``label``, or None after ``tries`` draws."""
    for _ in range(tries):
        ta, la = int(rng.integers(0, H - sa + 1)), int(rng.integers(0, W - sa + 1))
        tb, lb = int(rng.integers(0, H - sb + 1)), int(rng.integers(0, W - sb + 1))
        dy = (ta + (sa - 1) / 2) - (tb + (sb - 1) / 2)  # A minus B, rows (down is +)
        dx = (la + (sa - 1) / 2) - (lb + (sb - 1) / 2)  # A minus B, columns
        if label == 0:    # left: A's right edge + gap <= B's left edge
            ok = la + sa + gap <= lb and abs(dx) >= 1.2 * abs(dy) + margin
        elif label == 1:  # right
            ok = lb + sb + gap <= la and abs(dx) >= 1.2 * abs(dy) + margin
        elif label == 2:  # above
            ok = ta + sa + gap <= tb and abs(dy) >= 1.2 * abs(dx) + margin
        else:             # below
            ok = tb + sb + gap <= ta and abs(dy) >= 1.2 * abs(dx) + margin
        if ok:
            return (ta, la), (tb, lb)
    return None


def render(
    n: int,
    size: tuple[int, int],
    rng: np.random.Generator,
    side_range: tuple[float, float] = (0.15, 0.3),
    intensity_range: tuple[float, float] = (0.6, 1.0),
    shapes: tuple[str, str] = SHAPES,
    return_info: bool = False,
):
    """Render ``n`` layout samples on canvases of exactly ``size = (H, W)`` (``min(H, W) >= 16``).

    Returns ``(x, y)``: float32 ``[n, 1, H, W]`` in [0, 1], int64 ``[n]``; with ``return_info``
    also a dict with ``boxes`` int64 ``[n, 2, 4]`` (top, left, height, width of A and of B),
    ``centers`` float64 ``[n, 2, 2]`` ((row, col) of A and of B) and ``intensity`` float32 ``[n, 2]``.
    Deterministic given the state of ``rng``.
    """
    H, W = int(size[0]), int(size[1])
    m = min(H, W)
    if m < 16:
        raise ValueError(f"canvas {H}x{W} too small for layout (min(H, W) >= 16)")
    masks = {}
    gap = max(1, int(round(0.05 * m)))
    margin = max(1.0, 0.1 * m)
    smax = max(MIN_SIDE, (m - gap) // 2)  # two shapes must fit side by side
    y = rng.permutation(np.arange(n) % len(LABELS)).astype(np.int64)
    x = np.zeros((n, 1, H, W), dtype=np.float32)
    boxes = np.zeros((n, 2, 4), dtype=np.int64)
    inten = np.zeros((n, 2), dtype=np.float32)
    for i in range(n):
        while True:
            sa, sb = (int(np.clip(round(rng.uniform(*side_range) * m), MIN_SIDE, smax)) for _ in range(2))
            placed = _place(int(y[i]), H, W, sa, sb, gap, margin, rng)
            if placed is not None:
                break
        va, vb = (np.float32(rng.uniform(*intensity_range)) for _ in range(2))
        for j, ((t, l), s, v, kind) in enumerate(zip(placed, (sa, sb), (va, vb), shapes)):
            key = (kind, s)
            if key not in masks:
                masks[key] = shape_mask(kind, s)
            x[i, 0, t:t + s, l:l + s][masks[key]] = v
            boxes[i, j] = (t, l, s, s)
            inten[i, j] = v
    if return_info:
        centers = boxes[:, :, :2] + (boxes[:, :, 2:] - 1) / 2.0
        return x, y, {"boxes": boxes, "centers": centers, "intensity": inten}
    return x, y


def batches(
    n_batches: int,
    batch_size: int,
    size_range: SizeRange = SEEN_SIZES,
    seed: int = 0,
    fixed_size: tuple[int, int] | None = None,
    **render_kwargs,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield ``n_batches`` training batches ``(x [B, 1, H, W], y [B])``.

    Each batch has one size: ``fixed_size`` if given, else (H, W) uniform and independent in
    ``size_range`` (inclusive). Deterministic given ``seed``; the training stream is disjoint from
    :func:`eval_set`'s for every pair of seeds.
    """
    size_range = _check_range(size_range)
    rng = _stream(_TRAIN_TAG, seed)
    for _ in range(int(n_batches)):
        size = tuple(fixed_size) if fixed_size is not None else _draw_size(rng, size_range)
        yield render(batch_size, size, rng, **render_kwargs)


def eval_set(
    size_range: SizeRange = SEEN_SIZES,
    n_sizes: int = 4,
    n_per_size: int = 512,
    batch_size: int = 128,
    seed: int = 0,
    sizes: Sequence[tuple[int, int]] | None = None,
    **render_kwargs,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A deterministic evaluation set: a list of ``(x [B, 1, H, W], y [B])`` batches.

    ``n_sizes`` sizes spread over ``size_range`` (one per stratum of H and of W), or the canvas
    ``sizes`` given (e.g. ``digits.bucket_sizes``; then ``size_range`` and ``n_sizes`` are unused),
    ``n_per_size`` samples at each (labels balanced per batch), cut into batches of at most ``batch_size``.
    """
    return list(eval_batches(size_range, n_sizes, n_per_size, batch_size, seed, sizes, **render_kwargs))


def eval_batches(
    size_range: SizeRange = SEEN_SIZES,
    n_sizes: int = 4,
    n_per_size: int = 512,
    batch_size: int = 128,
    seed: int = 0,
    sizes: Sequence[tuple[int, int]] | None = None,
    **render_kwargs,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """:func:`eval_set`'s batches one at a time (the same ones), for sets too large to hold."""
    rng = _stream(_EVAL_TAG, seed)
    for size in (_eval_sizes(rng, size_range, n_sizes) if sizes is None else [tuple(z) for z in sizes]):
        for s in range(0, n_per_size, batch_size):
            yield render(min(batch_size, n_per_size - s), size, rng, **render_kwargs)
