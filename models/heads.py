"""Classifier heads on a feature map ``Tensor[N, C, h, w]`` of any size.

* :class:`SPPHead`: spatial pyramid pooling (poolops ``spp``) then a linear layer:
  a fixed-length vector ``C * sum(n^2)`` whatever h and w, keeping coarse layout.
* :class:`GAPHead`: global average pooling then a linear layer (layout is lost).
* :class:`FixedHead`: flatten a fixed-size map then a linear layer; only valid for
  one input size, used by the ``fixed`` baseline that resizes every image first.

Every head has ``embed(f) -> Tensor[N, D]`` (the pooled vector) and ``forward(f) ->
logits``; :func:`make_head` builds one from a config dict (what model cards record).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import poolops.nn as PN
from poolops.ops.spp import DEFAULT_LEVELS


class SPPHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, levels=DEFAULT_LEVELS, mode: str = "max", dropout: float = 0.0):
        super().__init__()
        self.pool = PN.SpatialPyramidPool(levels=tuple(levels), mode=mode)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(self.pool.out_features(in_channels), num_classes)

    def embed(self, f: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.pool(f, valid)

    def forward(self, f: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(self.dropout(self.embed(f, valid)))


class GAPHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.0):
        super().__init__()
        self.pool = PN.GlobalAvgPool()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels, num_classes)

    def embed(self, f: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if valid is None:
            return self.pool(f).flatten(1)
        # the mean over each sample's own region (f is zero outside it: poolops_models.padding.mask)
        return f.sum(dim=(2, 3)) / (valid[:, 0:1] * valid[:, 1:2]).to(f.dtype)

    def forward(self, f: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(self.dropout(self.embed(f, valid)))


class FixedHead(nn.Module):
    """Flatten ``[N, C, h, w]`` of one fixed ``(h, w)`` and classify."""

    def __init__(self, in_channels: int, num_classes: int, feature_size=(4, 4), dropout: float = 0.0):
        super().__init__()
        self.feature_size = tuple(feature_size)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_channels * self.feature_size[0] * self.feature_size[1], num_classes)

    def embed(self, f: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        if valid is not None:
            raise ValueError("the fixed head resizes every image: it cannot be padding-invariant")
        return f.flatten(1)

    def forward(self, f: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(self.dropout(self.embed(f, valid)))


HEADS = {"spp": SPPHead, "gap": GAPHead, "fixed": FixedHead}


def make_head(config: dict[str, Any], in_channels: int, num_classes: int) -> nn.Module:
    """``make_head({"type": "spp", "levels": [1, 2, 4], "mode": "max"}, 64, 10)``."""
    config = dict(config)
    kind = config.pop("type")
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r}; known heads: {', '.join(HEADS)}")
    return HEADS[kind](in_channels, num_classes, **config)
