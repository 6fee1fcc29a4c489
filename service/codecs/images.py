"""Image bytes -> float pixels [H, W, C] in [0, 1], safely.

The pixel count is checked from the header before any decoding (decompression bombs
are refused without allocating them). Every mode Pillow reads is handled: EXIF
orientation applied; palette and alpha flattened onto black (the models' background);
16- and 32-bit grayscale scaled by their range rather than clipped; CMYK, YCbCr, LAB
and HSV converted to RGB. Multi-frame files (GIF, TIFF) use their first frame.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from poolops_service.engine.errors import BadInput, TooLarge, Unsupported

# Pillow's own decompression-bomb guard (Image.MAX_IMAGE_PIXELS) stays on for every path
# in the process (the UI's too); ours (POOLOPS_MAX_IMAGE_PIXELS) is checked first, from
# the header, and a bomb warning is an error here.

WIDE_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
"""Grey modes of 16- and 32-bit values: scaled by their range, not converted by Pillow."""
ALPHA_MODES = ("RGBA", "LA", "PA", "La", "RGBa")
"""Modes with an alpha channel (flattened onto black); "P" with a transparency too."""
GRAY_MODES = frozenset({"1", "L", "LA", "La", *WIDE_GRAY_MODES})
"""Modes of one channel of values (with or without alpha)."""

COLORS = ("auto", "gray", "rgb")
"""How a request asks for an image's channels: ``auto`` (1 for grey images, else 3)."""


def is_gray(im: Image.Image) -> bool:
    """The image has one channel of values (with or without alpha)."""
    return im.mode in GRAY_MODES


def channels_for(im: Image.Image, color: str = "auto") -> int:
    """1 (grey) or 3 (RGB) for ``color`` (one of :data:`COLORS`): ``auto`` is 1 for a
    grey mode, else 3."""
    return 1 if color == "gray" or (color == "auto" and is_gray(im)) else 3


def open_image(data: bytes, max_pixels: int, what: str = "image") -> Image.Image:
    """A lazily opened image whose size is within ``max_pixels`` (not yet decoded)."""
    if not data:
        raise BadInput(f"{what} is empty: send the image file's bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise Unsupported(
            f"{what} is not an image format Pillow can read (PNG, JPEG, GIF, BMP, TIFF, WebP, ...)"
        ) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise TooLarge(f"{what} is too large to decode: {e}") from None
    w, h = im.size
    if w * h > max_pixels:
        raise TooLarge(
            f"{what} is {w}x{h} = {w * h} pixels, more than the limit {max_pixels} (POOLOPS_MAX_IMAGE_PIXELS): "
            "send a smaller image"
        )
    if w < 1 or h < 1:
        raise BadInput(f"{what} has no pixels ({w}x{h})")
    return im


def oriented_size(im: Image.Image) -> tuple[int, int]:
    """(height, width) after the EXIF orientation is applied, read from the header."""
    w, h = im.size
    if "exif" not in im.info:  # no EXIF block in the header (parsing an absent one costs 40 us)
        return h, w
    try:
        orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block is ignored, as exif_transpose does
        orientation = 1
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _flatten_alpha(im: Image.Image) -> Image.Image:
    # transparent pixels become black: the built-in models' background is 0
    rgba = im.convert("RGBA")
    bg = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(bg, rgba).convert("RGB")


def to_image(im: Image.Image, channels: int, what: str = "image") -> "Image.Image | np.ndarray":
    """Decode ``im`` as :func:`to_pixels` reads it, one step short of floats: an 8-bit
    image of mode "L" (``channels`` 1) or "RGB" (3), whose pixels / 255 are
    :func:`to_pixels`'s; or, for 16- and 32-bit grey, the float32 [H, W, channels] in
    [0, 1] itself (scaled by its range)."""
    try:
        im.seek(0)
        # in place: no copy of the decoded image when it has no orientation to apply
        ImageOps.exif_transpose(im, in_place=True)
        mode = im.mode
        if mode in WIDE_GRAY_MODES:
            a = np.asarray(im, dtype=np.float32)
            top = 65535.0 if mode.startswith("I;16") or (mode == "I" and a.max(initial=0) > 255) else 255.0
            if mode == "F":
                top = 1.0 if a.max(initial=0) <= 1.0 else 255.0
            gray = np.clip(a / top, 0.0, 1.0)[..., None]
            return gray if channels == 1 else np.repeat(gray, 3, axis=2)
        if mode in ALPHA_MODES or (mode == "P" and "transparency" in im.info):
            im = _flatten_alpha(im)
        target = "L" if channels == 1 else "RGB"
        if im.mode != target:
            im = im.convert(target)
        im.load()  # decoded here, where a truncated file is reported as such
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt data
        raise BadInput(f"{what} could not be decoded ({e}): send a complete, valid image file") from None
    return im


def to_pixels(im: Image.Image, channels: int, what: str = "image") -> np.ndarray:
    """Decode to float32 [H, W, channels] in [0, 1]; ``channels`` is 1 (gray) or 3 (RGB)."""
    d = to_image(im, channels, what)
    if isinstance(d, np.ndarray):
        return d
    a = np.divide(np.asarray(d), np.float32(255.0), dtype=np.float32)  # one pass, as float32 / 255
    return a[..., None] if a.ndim == 2 else a


def to_nchw(im: Image.Image, channels: int, what: str = "image") -> np.ndarray:
    """Decode to float32 ``[1, channels, H, W]`` in [0, 1] (see :func:`to_pixels`)."""
    return to_pixels(im, channels, what).transpose(2, 0, 1)[None]


def decode(data: bytes, channels: int, max_pixels: int, what: str = "image") -> np.ndarray:
    """Bytes -> float32 [H, W, channels] in [0, 1] (see :func:`to_pixels`)."""
    return to_pixels(open_image(data, max_pixels, what), channels, what)
