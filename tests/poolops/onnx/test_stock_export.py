"""Unmodified PyTorch models with stock pooling export with dynamic N, H, W
(``poolops.onnx.export`` with ``stock_pooling``), and size-pinned models are refused
with a message naming the module and the op."""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from poolops_models.stock_families import EXAMPLE, FAMILIES, SIZES, build
from poolops.onnx import export
from support.cuda_kernels import nodes_without_cuda_kernel
from poolops.onnx.dynamic import SizePinned, check_dynamic, probe_sizes
from poolops.onnx.stock import UnsupportedPooling, stock_pooling


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_exports_once_and_holds_at_six_other_sizes(family):
    """Exported at 64x64, matched within 1e-4 (relative to the output's scale) at 37x53,
    100x31, 48x48, 33x90, 129x40 and 40x36, with batch 2; every node has a CUDA kernel."""
    model = build(family)
    proto = export(model, torch.randn(*EXAMPLE))
    checks = check_dynamic(model, proto, SIZES, example=torch.randn(2, 3, 8, 8))
    assert all(c.ok for c in checks), [(c.size, c.worst_error, c.error) for c in checks]
    assert nodes_without_cuda_kernel(proto) == []


def test_stock_functions_are_restored_and_unchanged_outside_export():
    before = (F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.lp_pool2d)
    x = torch.randn(2, 3, 17, 23)
    expected = F.adaptive_max_pool2d(x, (3, 5))
    with stock_pooling():
        assert torch.equal(F.adaptive_max_pool2d(x, (3, 5)), expected)  # eager: torch's own function
    assert (F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.lp_pool2d) == before


class _Indices(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.MaxPool2d(3, 2, padding=1, ceil_mode=True, return_indices=True)

    def forward(self, x):
        y, i = self.pool(x)
        z, j = F.adaptive_max_pool2d(y, (2, 3), return_indices=True)
        return z, i, j


def test_indices_of_stock_max_pooling_export_exactly():
    model = _Indices().eval()
    proto = export(model, torch.randn(1, 4, 32, 32), output_names=["z", "i", "j"])
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for h, w in [(17, 29), (40, 11)]:
        x = torch.randn(2, 4, h, w)
        expected = model(x)
        actual = sess.run(None, {"x": x.numpy()})
        np.testing.assert_allclose(actual[0], expected[0].numpy(), rtol=1e-6)
        np.testing.assert_array_equal(actual[1], expected[1].numpy())
        np.testing.assert_array_equal(actual[2], expected[2].numpy())


def test_lp_and_avg_options_export():
    class M(nn.Module):
        def forward(self, x):
            a = F.avg_pool2d(x, 3, 2, 1, ceil_mode=True, count_include_pad=True, divisor_override=4)
            return F.lp_pool2d(a.abs(), 3.0, 2, ceil_mode=True)

    model = M().eval()
    proto = export(model, torch.randn(1, 2, 30, 30))
    assert all(c.ok for c in check_dynamic(model, proto, [(23, 41), (9, 13)]))


class _FlattenLinear(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 32 * 32, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(self.conv(x), 2), 1))


def test_linear_after_flatten_of_a_size_dependent_map_is_refused_naming_it():
    with pytest.raises(SizePinned, match=r"module 'fc' \(torch\.nn\.modules\.linear\.Linear\)"):
        export(_FlattenLinear(), torch.randn(1, 3, 64, 64))
    export(_FlattenLinear(), torch.randn(1, 3, 64, 64), dynamic=False)  # one size: fine


class _IntSize(nn.Module):
    def forward(self, x):
        y = F.avg_pool2d(x, 2)
        h, w = int(y.shape[2]), int(y.shape[3])  # the sizes become constants while tracing
        return F.interpolate(y, size=(h * 2, w * 2), mode="bilinear") + x


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = _IntSize()

    def forward(self, x):
        return self.up(x)


def test_size_fixed_while_tracing_is_refused_naming_the_module_and_line():
    with pytest.raises(SizePinned, match=r"module 'up' \(_IntSize\) at test_stock_export\.py:\d+: h, w = int"):
        export(_Net(), torch.randn(1, 3, 64, 64))


def test_pooling_poolops_cannot_express_is_refused_naming_the_argument():
    class M(nn.Module):
        def forward(self, x):
            return F.adaptive_avg_pool2d(x, (None, 3))

    with pytest.raises(UnsupportedPooling, match=r"output_size=\(None, 3\)"):
        export(M(), torch.randn(1, 3, 16, 16))


def test_without_stock_pooling_the_adaptive_7x7_graph_is_caught_by_the_size_check():
    """PyTorch's own translation of AdaptiveAvgPool2d((7, 7)) is fixed to the example's
    size: with stock_pooling=False the exporter's size check refuses it, naming it."""
    with pytest.raises(SizePinned, match=r"avgpool"):
        export(build("VGG"), torch.randn(*EXAMPLE), stock_pooling=False)


def test_probe_sizes_keep_divisibility_and_differ():
    assert probe_sizes(64, 64) == [(128, 192), (256, 128)]
    for h, w in probe_sizes(224, 160):
        assert h % 32 == 0 and w % 32 == 0 and (h, w) != (224, 160)
    assert all(s != (37, 53) for s in probe_sizes(37, 53))
