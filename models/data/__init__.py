"""Datasets for the any-size classifiers, by name.

Each dataset module has ``NAME``, ``LABELS``, ``CHANNELS``, ``SEEN_SIZES``, ``UNSEEN_SIZES``,
``DESCRIPTION``, ``render``, ``batches`` and ``eval_set``; batches are numpy
``(x float32 [B, 1, H, W] in [0, 1], y int64 [B])`` with one (H, W) per batch.
``digits`` additionally has ``split`` (its ``batches``/``eval_set`` take the sample ids first).
"""

from __future__ import annotations

from types import ModuleType

from . import digits, layout

DATASETS: dict[str, ModuleType] = {"digits": digits, "layout": layout}


def get_dataset(name: str) -> ModuleType:
    """The dataset module registered as ``name``; ValueError naming the known ones otherwise."""
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None


__all__ = ["DATASETS", "get_dataset", "digits", "layout"]
