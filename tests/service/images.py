"""Image files of every kind Pillow writes, made in memory for the service tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def digit_canvas(h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    """A uint8 grayscale canvas with a bright stroke (a vertical bar, like a '1')."""
    rng = np.random.default_rng(seed)
    a = np.zeros((h, w), np.uint8)
    c = int(rng.integers(w // 4, 3 * w // 4))
    a[h // 5: 4 * h // 5, c - 2: c + 2] = 255
    return a


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png(a: np.ndarray) -> bytes:
    return encode(Image.fromarray(a))
