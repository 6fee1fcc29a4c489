"""A model card's size policy: how an image is brought to the model's scale (no torch).

A card may declare ``"size_policy": {"shorter_side": [lo, hi]}``: resize (bilinear,
aspect kept, no crop) so that the image's shorter side lies in ``[lo, hi]`` (smaller
images scaled up to ``lo``, larger ones down to ``hi``, those within left alone), the
longer side rounded. If keeping the aspect would put a side beyond the card's
``input.max_size``, the image is scaled so that it fits instead (the shorter side then
ends below ``lo``), and one below ``input.min_size`` is scaled up to it; an image that no size keeping its aspect brings within the card's
limits is refused (:class:`SizePolicyError`, naming the sizes). No policy: no resizing.

This is the one implementation: the server (``service/engine/models.py``), the UI and
``poolops experiments`` all call :func:`target_size` and :func:`apply`, so they feed the
model the same pixels. ``/v2`` takes ready tensors: its clients apply the policy
themselves (the model metadata's ``parameters.size_policy`` says which).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

NONE = "none"


class SizePolicyError(ValueError):
    """No size keeping the image's aspect satisfies the policy and the card's limits."""


def _half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def shorter_side(policy: Any) -> tuple[int, int] | None:
    """``(lo, hi)`` of a policy (a dict, an object with ``shorter_side``, or None)."""
    if policy is None:
        return None
    ss = policy.get("shorter_side") if isinstance(policy, Mapping) else getattr(policy, "shorter_side", None)
    if ss is None:
        return None
    lo, hi = (int(v) for v in ss)
    if not 1 <= lo <= hi:
        raise ValueError(f"size policy shorter_side must be [lo, hi] with 1 <= lo <= hi, got {list(ss)}")
    return lo, hi


def describe(policy: Any) -> str:
    """``"shorter side into [lo, hi]"`` or ``"none"``."""
    ss = shorter_side(policy)
    return NONE if ss is None else f"shorter side into [{ss[0]}, {ss[1]}]"


def _limits(card_limits: Any) -> tuple[tuple[int, int] | None, tuple[int, int] | None]:
    """(min (H, W), max (H, W)) from None, a pair of pairs, or an object with
    ``min_size``/``max_size`` (a card's ``input``) or ``input`` (a card)."""
    if card_limits is None:
        return None, None
    if hasattr(card_limits, "input"):
        card_limits = card_limits.input
    if hasattr(card_limits, "min_size"):
        return tuple(card_limits.min_size), tuple(card_limits.max_size)
    lo, hi = card_limits
    return (None if lo is None else tuple(lo)), (None if hi is None else tuple(hi))


def _scaled(h: int, w: int, scale: float, policy_scale: float, target: int) -> tuple[int, int]:
    if scale == 1.0:
        return h, w
    h2, w2 = max(1, _half_up(h * scale)), max(1, _half_up(w * scale))
    if scale == policy_scale:  # the shorter side exactly on its target
        if h <= w:
            h2 = target
        else:
            w2 = target
    return h2, w2


def target_size(h: int, w: int, policy: Any, card_limits: Any = None) -> tuple[int, int]:
    """The (H, W) an ``h`` x ``w`` image is resized to under ``policy`` within
    ``card_limits`` (``(min_size, max_size)``, each (H, W), or a card / its ``input``).

    No policy: ``(h, w)`` unchanged (the caller checks the card's limits as before).
    Raises :class:`SizePolicyError` when no size keeping the aspect fits the limits.
    """
    h, w = int(h), int(w)
    if h < 1 or w < 1:
        raise SizePolicyError(f"image is {h}x{w} (HxW): it has no pixels")
    ss = shorter_side(policy)
    if ss is None:
        return h, w
    lo, hi = ss
    mn, mx = _limits(card_limits)
    short = min(h, w)
    target = lo if short < lo else hi if short > hi else short
    scale = target / short
    if mx is not None:
        scale = min(scale, mx[0] / h, mx[1] / w)
    h2, w2 = _scaled(h, w, scale, target / short, target)
    if mn is not None and (h2 < mn[0] or w2 < mn[1]):  # a policy below the card's smallest size: up to it
        up = _scaled(h, w, max(scale, mn[0] / h, mn[1] / w), target / short, target)
        if mx is None or (up[0] <= mx[0] and up[1] <= mx[1]):
            h2, w2 = up
    if (mn is not None and (h2 < mn[0] or w2 < mn[1])) or (mx is not None and (h2 > mx[0] or w2 > mx[1])):
        lim = " up to ".join(f"{a[0]}x{a[1]}" for a in (mn or ("?", "?"), mx or ("?", "?")))
        raise SizePolicyError(
            f"image is {h}x{w} (HxW): no size keeping its aspect ratio fits the model's limits {lim} "
            f"(its size policy, {describe(policy)}, gives {h2}x{w2}): crop or pad the image to a less extreme aspect"
        )
    return h2, w2


def resize_band(band: Image.Image, h2: int, w2: int) -> Image.Image:
    """One channel (a Pillow "F" image) resized to ``h2`` x ``w2``: the policy's resampling
    (bilinear), which :func:`resize` applies to each channel."""
    return band.resize((w2, h2), Image.BILINEAR)


def resize(pixels: np.ndarray, h2: int, w2: int) -> np.ndarray:
    """``pixels`` [H, W, C] float32 -> [h2, w2, C], bilinear per channel (Pillow "F" mode,
    as ``service/ui/common.load_pixels`` resizes); the same array when the size is unchanged."""
    h, w = pixels.shape[:2]
    if (h, w) == (h2, w2):
        return pixels
    a = np.asarray(pixels, np.float32)
    out = np.empty((h2, w2, a.shape[2]), np.float32)
    for c in range(a.shape[2]):
        out[..., c] = np.asarray(resize_band(Image.fromarray(np.ascontiguousarray(a[..., c])), h2, w2))
    return out


def apply(pixels: np.ndarray, policy: Any, card_limits: Any = None) -> np.ndarray:
    """``pixels`` [H, W, C] float32 in [0, 1] resized as the policy says (see :func:`target_size`)."""
    h2, w2 = target_size(pixels.shape[0], pixels.shape[1], policy, card_limits)
    return resize(pixels, h2, w2)


def as_parameters(policy: Any) -> dict[str, Sequence[int]] | None:
    """The policy as plain JSON (``{"shorter_side": [lo, hi]}``) or None."""
    ss = shorter_side(policy)
    return None if ss is None else {"shorter_side": [ss[0], ss[1]]}
