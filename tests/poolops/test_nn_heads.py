"""Global-style poolops ops as classifier heads: torch -> ONNX (dynamic N, H, W) -> ONNX Runtime.

Each model is two convolutions, a poolops head giving a fixed-length vector for any
H and W, and a Linear layer. ``strip`` is not fixed-length by itself (``h`` gives
``[N, C, H, 1]``), so its head is strip pooling followed by adaptive average pooling
of the strip to 4 bins (4 row bands); the others are fixed-length as they are
(``out_features``). Heads that feed extra inputs (``bilinear`` with a second branch
as ``x2``, ``attention`` with a learnt attention map, ``se`` with its weights) check
that those export too.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import poolops.functional as PF
import poolops.nn as PN
from support.runtime import check_export

C = 8
SIZES = [(1, 17, 23), (2, 32, 32), (3, 64, 48), (2, 100, 7)]


class TwoBranchBilinear(nn.Module):
    """Multimodal bilinear pooling of the features and a 1x1-conv branch of them."""

    def __init__(self):
        super().__init__()
        self.branch = nn.Conv2d(C, 3, 1)
        self.pool = PN.BilinearPool()

    def forward(self, x):
        return self.pool(x, torch.relu(self.branch(x)))


class LearntAttention(nn.Module):
    """Attention pooling with a map from a 1x1 conv (one map, or one per channel)."""

    def __init__(self, maps: int):
        super().__init__()
        self.score = nn.Conv2d(C, maps, 1)
        self.pool = PN.AttentionPool()

    def forward(self, x):
        return self.pool(x, self.score(x))


class SEThenGap(nn.Module):
    """An SE block (its Linear layers' parameters are the op's weight inputs), then GAP."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(C, 2), nn.Linear(2, C)

    def forward(self, x):
        x = PF.se(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)
        return PF.global_avg(x)


class SEPooled(nn.Module):
    """The sources' channel-attention pooling: the SE-weighted global average, ``[N, C]``."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(C, 2), nn.Linear(2, C)
        self.pool = PN.SqueezeExcite(pooled=True)

    def forward(self, x):
        return self.pool(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias)


HEADS = {
    "bilinear": (lambda: PN.BilinearPool(), C * C),
    "bilinear-raw": (lambda: PN.BilinearPool(signed_sqrt=False, l2_normalize=False), C * C),
    "bilinear-two-branch": (TwoBranchBilinear, C * 3),
    "gem": (lambda: PN.GeMPool(), C),
    "attention": (lambda: PN.AttentionPool(), C),
    "attention-learnt-map": (lambda: LearntAttention(1), C),
    "attention-per-channel-maps": (lambda: LearntAttention(C), C),
    "spp": (lambda: PN.SpatialPyramidPool(levels=(1, 2, 4)), 21 * C),
    "spp-rows-cols": (lambda: PN.SpatialPyramidPool(levels=(1, (2, 3), (4, 1))), 11 * C),
    "strip-h-4-bands": (lambda: nn.Sequential(PN.StripPool(direction="h"), PN.AdaptiveAvgPool(output_size=(4, 1))), 4 * C),
    "se-then-gap": (SEThenGap, C),
    "se-pooled": (SEPooled, C),
}


class Classifier(nn.Module):
    def __init__(self, head: nn.Module, features: int, classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, C, 3, padding=1)
        self.conv2 = nn.Conv2d(C, C, 3, padding=1)
        self.head = head
        self.fc = nn.Linear(features, classes)

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.fc(self.head(x).flatten(1))


def _model(name: str) -> Classifier:
    torch.manual_seed(0)
    make, features = HEADS[name]
    return Classifier(make(), features).eval()


def test_out_features_of_fixed_length_heads():
    assert PN.BilinearPool().out_features(C) == C * C
    assert PN.AttentionPool().out_features(C) == C
    assert PN.GeMPool().out_features(C) == C
    assert PN.SpatialPyramidPool().out_features(C) == 21 * C
    with pytest.raises(ValueError, match="depends on the input size"):
        PN.StripPool(direction="h").out_features(C)


@pytest.mark.parametrize("name", HEADS)
def test_head_exports_and_matches_torch_at_any_size(name, tmp_path):
    check_export(_model(name), SIZES, tmp_path / "m.onnx", rel=1e-4, what=name)


@pytest.mark.parametrize("name", HEADS)
def test_head_trains(name):
    """One backward pass gives finite gradients everywhere (bilinear: also where a ReLU
    channel is all zeros, where sqrt(|B|) has an infinite derivative)."""
    model = _model(name).train()
    with torch.no_grad():
        model.conv2.bias[0] = -100.0  # channel 0 is zero after the ReLU
    x = torch.randn(2, 3, 19, 13)
    loss = nn.functional.cross_entropy(model(x), torch.tensor([1, 3]))
    loss.backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None and np.isfinite(param.grad.numpy()).all(), pname
