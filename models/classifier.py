"""A classifier = backbone + head (+ an optional fixed resize for the ``fixed`` baseline).

``build_model(config)`` makes one from the plain config dict that model cards
record; ``forward(x) -> logits [N, K]`` and ``embed(x) -> Tensor[N, D]`` (the pooled
feature vector the service's ``/embed`` returns).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from poolops_models.heads import make_head


class Classifier(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module, resize: tuple[int, int] | None = None):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.resize = tuple(resize) if resize else None

    def _features(self, x: torch.Tensor, valid: torch.Tensor | None = None):
        """``(f, valid sizes of f or None)``; with ``valid`` the padding-invariant path."""
        if valid is not None:
            if self.resize is not None or not hasattr(self.backbone, "features_valid"):
                raise ValueError("this model is not padding-invariant: call it without valid")
            return self.backbone.features_valid(x, valid)
        if self.resize is not None:
            x = F.interpolate(x, size=self.resize, mode="bilinear", align_corners=False, antialias=False)
        return self.backbone.features(x), None

    def embed(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.head.embed(*self._features(x, valid))

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(*self._features(x, valid))

    @property
    def padding_invariant(self) -> bool:
        return self.resize is None and hasattr(self.backbone, "features_valid")


class WithEmbedding(nn.Module):
    """``x -> (logits, embedding)``: what is exported, so one graph serves both."""

    def __init__(self, model: Classifier):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor, valid: torch.Tensor | None = None):
        f, fv = self.model._features(x, valid)
        return self.model.head(f, fv), self.model.head.embed(f, fv)


def make_backbone(config: dict[str, Any]) -> nn.Module:
    config = dict(config)
    kind = config.pop("type")
    if kind == "small_cnn":
        from poolops_models.backbones.small_cnn import SmallCNN

        return SmallCNN(**config)
    if kind == "effnet_lite0":
        from poolops_models.backbones.effnet_lite0 import EfficientNetLite0

        return EfficientNetLite0(**config)
    raise ValueError(f"unknown backbone {kind!r}; known: small_cnn, effnet_lite0")


def build_model(config: dict[str, Any]) -> Classifier:
    """``{"backbone": {"type": "small_cnn", "width": 16}, "head": {"type": "spp", ...},
    "num_classes": 10, "resize": null}`` -> :class:`Classifier`."""
    backbone = make_backbone(config["backbone"])
    head = make_head(config["head"], backbone.out_channels, config["num_classes"])
    return Classifier(backbone, head, config.get("resize"))
