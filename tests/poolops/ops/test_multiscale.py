"""Worked examples and edge cases of ``multiscale``: torch reference, ONNX forward and
ONNX backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import poolops
import poolops.functional as PF
import poolops.nn as PN
from poolops.params import ParamError
from support.faces import check_all_faces, check_head_export, check_worked_example_and_backward, onnx_forward
from support.runtime import assert_close



def test_multiscale_worked_example():
    x = np.arange(64, dtype=np.float32).reshape(1, 1, 8, 8)
    g = np.array([[[[1.0]], [[2.0]], [[4.0]]]], np.float32)
    grad = np.zeros((1, 1, 8, 8), np.float32)
    grad[0, 0, 1::2, 1::2] += 1 / 16  # 2x2 maxima (bottom-right of each block), averaged over 16
    grad[0, 0, 3::4, 3::4] += 2 / 4  # 4x4 maxima, averaged over 4
    grad[0, 0, 7, 7] += 4  # the 8x8 maximum
    check_all_faces("multiscale", x, [[[[36]], [[45]], [[63]]]], g, grad)


def test_multiscale_shape_and_order():
    x = torch.randn(2, 3, 37, 29)
    y = PF.multiscale(x, kernels=(4, 2))
    assert tuple(y.shape) == (2, 6, 9, 7)
    assert torch.equal(y[:, :3], F.max_pool2d(x, 4))  # largest kernel: no averaging
    assert_close(y[:, 3:].numpy(), F.adaptive_avg_pool2d(F.max_pool2d(x, 2), (9, 7)).numpy())
    assert_close(onnx_forward("multiscale", x.numpy(), kernels=(4, 2)), y.numpy())


def test_multiscale_rejects_inputs_smaller_than_the_largest_kernel():
    with pytest.raises(ParamError, match="'kernels'.*at least 8") as err:
        PF.multiscale(torch.ones(1, 1, 7, 20))
    assert err.value.param == "kernels"
    with pytest.raises(ParamError, match="'kernels'"):
        poolops.get_op("multiscale").check(poolops.get_op("multiscale").parse({}), np.zeros((1, 1, 20, 5), np.float32))
    PF.multiscale(torch.ones(1, 1, 8, 8))
    for bad in ({"kernels": ()}, {"kernels": (2, 0)}):
        with pytest.raises(ParamError) as err:
            poolops.get_op("multiscale").parse(bad)
        assert err.value.param == "kernels"


def test_multiscale_nan_and_inf_stay_in_their_bins():
    """The adaptive average is a masked gather-sum, not a matrix product: 0 * inf would
    turn a whole row of bins into NaN."""
    x = np.random.default_rng(2).standard_normal((1, 2, 40, 48)).astype(np.float32)
    x[0, 0, 3, 5] = np.nan
    x[0, 0, 30, 40] = np.inf
    x[0, 1, 12, 20] = np.inf
    x[0, 1, 13, 21] = -np.inf  # +inf and -inf in one window: the max is +inf
    expected = PF.multiscale(torch.from_numpy(x)).numpy()
    actual = onnx_forward("multiscale", x)
    assert np.isnan(expected).sum() == 3  # one bin per part
    assert (expected == np.inf).sum() == 6
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    np.testing.assert_array_equal(actual == np.inf, expected == np.inf)
    assert_close(actual, expected)


def test_multiscale_window_of_only_minus_inf():
    x = np.random.default_rng(2).standard_normal((1, 1, 16, 16)).astype(np.float32)
    x[0, 0, 4:8, 4:8] = -np.inf
    expected = PF.multiscale(torch.from_numpy(x), kernels=(2, 4)).numpy()
    assert (expected == -np.inf).any()
    np.testing.assert_array_equal(onnx_forward("multiscale", x, kernels=(2, 4)) == -np.inf, expected == -np.inf)


# ---------------------------------------------------------------- every face


@pytest.mark.parametrize("name", ("multiscale",))
def test_registered_with_a_worked_example(name):
    check_worked_example_and_backward(name, onnx_backward_graph=True)


EXPORT_HEADS = {
    "multiscale": lambda: torch.nn.Sequential(PN.MultiScalePool(kernels=(1, 2)), PN.GlobalAvgPool()),
}


@pytest.mark.parametrize("head", EXPORT_HEADS)
def test_modules_export_with_dynamic_sizes(head, tmp_path):
    check_head_export(EXPORT_HEADS[head](), tmp_path, head)
