"""The worked examples of the ops' docstrings, in torch and in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import poolops.functional as PF
from poolops.onnx import op_backward_model, op_model
from support.runtime import run

EXAMPLE_2X2 = np.array([[[[1, 3], [2, 2]]]], np.float32)
# A 4x4 matrix, 2x2 windows, stride 2: max and average pooling, windowed and global.
MATRIX_4X4 = np.array([[[[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]]]], np.float32)


def both(name, x, **params):
    """The op's ``y`` from torch and from ONNX Runtime."""
    t = PF.call(name, torch.from_numpy(x), **params).numpy()
    o = run(op_model(name, outputs=("y",), **params), x=x)[0]
    return t, o


def grads(name, x, g, **params):
    xt = torch.from_numpy(x).requires_grad_()
    PF.call(name, xt, **params).backward(torch.from_numpy(g))
    o = run(op_backward_model(name, **params), x=x, grad_y=g)[0]
    return xt.grad.numpy(), o


def test_max_worked_example():
    for y in both("max", EXAMPLE_2X2, kernel=2):
        assert y.item() == 3
    y, idx = PF.max(torch.from_numpy(EXAMPLE_2X2), kernel=2, return_indices=True)
    assert idx.item() == 1
    assert run(op_model("max", kernel=2), x=EXAMPLE_2X2)[1].item() == 1
    for gx in grads("max", EXAMPLE_2X2, np.array([[[[3]]]], np.float32), kernel=2):
        np.testing.assert_array_equal(gx, [[[[0, 3], [0, 0]]]])


def test_avg_worked_example():
    for y in both("avg", EXAMPLE_2X2, kernel=2):
        assert y.item() == 2
    for gx in grads("avg", EXAMPLE_2X2, np.array([[[[2]]]], np.float32), kernel=2):
        np.testing.assert_array_equal(gx, [[[[0.5, 0.5], [0.5, 0.5]]]])


def test_4x4_matrix_with_2x2_windows_stride_2():
    for y in both("max", MATRIX_4X4, kernel=2, stride=2):
        np.testing.assert_array_equal(y, [[[[6, 8], [3, 4]]]])
    for y in both("avg", MATRIX_4X4, kernel=2, stride=2):
        np.testing.assert_array_equal(y, [[[[3.25, 5.25], [2, 2]]]])
    for y in both("global_avg", MATRIX_4X4):
        np.testing.assert_allclose(y.ravel(), [50 / 16])
    for y in both("global_max", MATRIX_4X4):
        np.testing.assert_array_equal(y.ravel(), [8])


@pytest.mark.parametrize("hw", [(1, 1), (7, 5), (13, 13), (60, 80), (3, 200)])
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("bins", ["adaptive", "sppnet"])
def test_spp_gives_21c_features_for_any_size(hw, mode, bins):
    c = 3
    x = np.random.default_rng(0).standard_normal((2, c, *hw)).astype(np.float32)
    for y in both("spp", x, levels=(1, 2, 4), mode=mode, bins=bins):
        assert y.shape == (2, 21 * c)


def test_spp_level_layout_is_c_major_levels_in_order():
    x = np.random.default_rng(1).standard_normal((1, 2, 8, 8)).astype(np.float32)
    t, o = both("spp", x, levels=(1, 2))
    xt = torch.from_numpy(x)
    expected = torch.cat([xt.amax((2, 3)).flatten(1), torch.nn.functional.max_pool2d(xt, 4).flatten(1)], 1)
    np.testing.assert_array_equal(t, expected.numpy())
    np.testing.assert_array_equal(o, expected.numpy())


def test_adaptive_bins_when_input_smaller_than_output():
    x = np.array([[[[1, 2], [3, 4]]]], np.float32)
    for y in both("adaptive_max", x, output_size=(3, 3)):
        np.testing.assert_array_equal(y, [[[[1, 2, 2], [3, 4, 4], [3, 4, 4]]]])


def test_mixed_worked_example_blends_max_and_avg():
    for y in both("mixed", EXAMPLE_2X2, kernel=2, alpha=0.5):
        assert y.item() == 2.5
    for y in both("mixed", MATRIX_4X4, kernel=2, mode="concat"):
        np.testing.assert_array_equal(y, [[[[6, 8], [3, 4]], [[3.25, 5.25], [2, 2]]]])
