"""A small CNN for single-channel images of any size (the digits and layout tasks).

Three conv blocks (conv3x3, BatchNorm, ReLU; ``stages`` > 3 adds more at 4x width);
every block but the last ends in a downsampling pooling layer taken from the poolops registry (``max`` by default; ``avg``,
``stochastic``, ... for the downsampling experiment). ``features(x)``:
``Tensor[N, 1, H, W] -> Tensor[N, width*4, ~H/2^(stages-1), ~W/2^(stages-1)]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import poolops.nn as PN


class StochasticDownsample(nn.Module):
    """Stochastic pooling as a training layer: ``train`` mode with a fresh seed each
    step while training, the expectation (``eval`` mode) at inference."""

    def __init__(self, seed: int = 0, **params: Any):
        super().__init__()
        self.params = {k: v for k, v in params.items() if k not in ("mode", "seed")}
        self.register_buffer("step", torch.tensor(seed, dtype=torch.int64), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import poolops.functional as PF

        if self.training:
            self.step += 1
            return PF.stochastic(x, mode="train", seed=int(self.step), **self.params)
        return PF.stochastic(x, mode="eval", **self.params)


def _window(layer: nn.Module) -> tuple:
    """(kernel, stride, padding, dilation) of a downsampling layer (floor mode only)."""
    p = layer.params
    get = p.get if isinstance(p, dict) else lambda k, default=None: getattr(p, k, default)
    if get("ceil_mode", False):
        raise ValueError("padding-invariant features need floor-mode pooling (ceil_mode=False)")

    def pair(v, default):
        v = default if v is None else v
        return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

    kernel = pair(get("kernel", 2), 2)
    return kernel, pair(get("stride", None), kernel), pair(get("padding", 0), 0), pair(get("dilation", 1), 1)


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """``SmallCNN(in_channels=1, width=16, pool={"op": "max", "kernel": 2}, stages=3)``: ``stages``
    conv blocks (3 or more) of width, 2 width, then 4 width, a downsampling layer between each two."""

    def __init__(self, in_channels: int = 1, width: int = 16, pool: dict[str, Any] | None = None, stages: int = 3):
        super().__init__()
        pool = dict(pool or {"op": "max", "kernel": 2})
        op = pool.pop("op")

        def downsample() -> nn.Module:
            if op == "stochastic":
                return StochasticDownsample(**pool)
            return PN.module_class(op)(**pool)

        if stages < 3:
            raise ValueError(f"stages must be at least 3, got {stages}")
        self.out_channels = width * 4
        layers = [*_block(in_channels, width), downsample(), *_block(width, width * 2), downsample(),
                  *_block(width * 2, width * 4)]
        for _ in range(stages - 3):  # more stages: a wider receptive field for large objects
            layers += [downsample(), *_block(width * 4, width * 4)]
        self.body = nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def features_valid(self, x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padding-invariant features of a padded batch (see :mod:`poolops_models.padding`):
        ``(f [N, C', h, w], valid sizes of f [N, 2])``."""
        from poolops_models.padding import mask, pooled

        for layer in self.body:
            if isinstance(layer, nn.Conv2d):
                x = mask(x, valid)  # padding acts as the conv's own zero padding
            x = layer(x)
            if isinstance(layer, (PN.PoolOp, StochasticDownsample)):
                valid = pooled(valid, *_window(layer))
        return mask(x, valid), valid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)
