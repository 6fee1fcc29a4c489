"""Padding-invariant batching: a padded batch plus each image's valid (height, width).

A model is padding-invariant when running images of different sizes as one padded
batch, with ``valid: Tensor[N, 2]`` telling each image's size, gives exactly what
running them one by one gives. That needs: padding zeroed before every convolution
(so it acts as the conv's own zero padding, never leaking into valid positions), the
valid size updated by every downsampling layer, and a head that pools each image over
its own region (poolops ``spp`` with ``valid``; a masked mean for GAP).
"""

from __future__ import annotations

import torch


def mask(x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """``x [N, C, H, W]`` with everything outside each sample's valid region set to 0."""
    rows = torch.arange(x.shape[2], device=x.device)[None, :] < valid[:, 0:1]  # [N, H]
    cols = torch.arange(x.shape[3], device=x.device)[None, :] < valid[:, 1:2]  # [N, W]
    inside = rows[:, None, :, None] & cols[:, None, None, :]
    return torch.where(inside, x, torch.zeros((), dtype=x.dtype, device=x.device))


def pooled(valid: torch.Tensor, kernel, stride, padding=(0, 0), dilation=(1, 1)) -> torch.Tensor:
    """Valid sizes after a floor-mode pooling (PyTorch's output size, per sample)."""
    k, s, p, d = (torch.tensor(v, dtype=valid.dtype, device=valid.device) for v in (kernel, stride, padding, dilation))
    return (valid + 2 * p - d * (k - 1) - 1) // s + 1


def make_padded_batch(images: list) -> tuple:
    """numpy ``[C, h, w]`` images -> ``(x [N, C, H, W] float32 zero-padded, valid [N, 2] int64)``."""
    import numpy as np

    h = max(im.shape[1] for im in images)
    w = max(im.shape[2] for im in images)
    x = np.zeros((len(images), images[0].shape[0], h, w), np.float32)
    for i, im in enumerate(images):
        x[i, :, : im.shape[1], : im.shape[2]] = im
    valid = np.array([im.shape[1:] for im in images], np.int64)
    return x, valid
