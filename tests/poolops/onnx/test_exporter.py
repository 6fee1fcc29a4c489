"""Modules with poolops layers export with dynamic N, H, W and match torch in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from torch import nn

import poolops.nn as PN
from support.runtime import check_export, session
from poolops.onnx import export

SIZES = [(1, 17, 23), (3, 64, 48), (2, 5, 3), (1, 2, 2), (2, 97, 31)]


class SmallSPPNet(nn.Module):
    """conv -> poolops max pool -> conv -> SPP head -> linear."""

    def __init__(self, head: nn.Module, features: int, classes: int = 5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.pool = PN.MaxPool(kernel=2, ceil_mode=True)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.head = head
        self.fc = nn.Linear(features, classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        return self.fc(self.head(x).flatten(1))


HEADS = {
    "spp": lambda: PN.SpatialPyramidPool(levels=(1, 2, 4)),
    "spp-avg-sppnet": lambda: PN.SpatialPyramidPool(levels=(1, 2, 3), mode="avg", bins="sppnet"),
    "global_avg": lambda: PN.GlobalAvgPool(),
    "global_max": lambda: PN.GlobalMaxPool(),
    "adaptive_max": lambda: PN.AdaptiveMaxPool(output_size=(3, 2)),
    "adaptive_avg": lambda: PN.AdaptiveAvgPool(output_size=2),
    "stochastic-eval": lambda: nn.Sequential(PN.StochasticPool(kernel=1), PN.AdaptiveAvgPool(output_size=2)),
}


@pytest.mark.parametrize("head", HEADS)
def test_export_runs_at_any_size(head, tmp_path):
    torch.manual_seed(0)
    h = HEADS[head]()
    model = SmallSPPNet(h, h.out_features(16) if hasattr(h, "out_features") else 16 * 4).eval()
    path = tmp_path / "model.onnx"
    check_export(model, SIZES, path, what=head)
    onnx.checker.check_model(onnx.load(path))


def test_exported_graph_has_no_unused_maxpool_indices():
    model = nn.Sequential(PN.MaxPool(kernel=2, propagate_nan=False), PN.GlobalAvgPool())
    proto = export(model, torch.randn(1, 3, 8, 8))
    pools = [n for n in proto.graph.node if n.op_type == "MaxPool"]
    assert pools and all(len(n.output) == 1 for n in pools)


def test_export_keeps_indices_when_used():
    class WithIndices(nn.Module):
        def forward(self, x):
            y, i = PN.MaxPool(kernel=2, return_indices=True)(x)
            return y, i

    proto = export(WithIndices(), torch.randn(1, 2, 8, 8), output_names=["y", "indices"])
    sess = session(proto)
    x = torch.randn(2, 2, 9, 13)
    y, i = sess.run(None, {"x": x.numpy()})
    ty, ti = torch.nn.functional.max_pool2d(x, 2, return_indices=True)
    np.testing.assert_array_equal(i, ti.numpy())
    np.testing.assert_array_equal(y, ty.numpy())


def test_export_stays_a_function_after_use():
    """``poolops.onnx.export`` is the function, also after the exporter module loaded."""
    import poolops.onnx

    export(nn.Sequential(PN.GlobalAvgPool()), torch.randn(1, 2, 4, 4))
    assert callable(poolops.onnx.export) and poolops.onnx.export.__module__ == "poolops.onnx"
