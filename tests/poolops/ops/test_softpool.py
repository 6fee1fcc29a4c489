"""``softpool`` (poolops/ops/softpool.py): worked example, a naive float64 reference, the
overflow the reference formula hits and this op does not, edges and bad inputs. (The
property tests of tests/poolops/test_torch_onnx_parity.py cover random parameters and
shapes, forward and backward.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import poolops.functional as PF
from poolops.params import ParamError
from support.faces import autograd, check_all_faces, check_worked_example_and_backward, onnx_backward, onnx_forward
from support.naive import exp_weighted
from support.runtime import assert_close


def test_worked_example_and_gradient():
    x = np.array([[[[0.0, math.log(3)]]]], np.float32)
    y = 0.75 * math.log(3)
    grad = [[[[0.25 * (1 - y), 0.75 * (1 + math.log(3) - y)]]]]
    check_all_faces("softpool", x, [[[[y]]]], [[[[1.0]]]], grad, kernel=(1, 2))
    check_worked_example_and_backward("softpool", onnx_backward_graph=True)


@pytest.mark.parametrize(
    "shape, params",
    [
        ((2, 3, 9, 11), {"kernel": 2}),
        ((1, 2, 10, 7), {"kernel": 3, "stride": 1}),
        ((2, 1, 8, 13), {"kernel": (2, 4), "stride": (3, 2)}),
        ((1, 1, 1, 1), {"kernel": 1}),  # degenerate: one cell
        ((1, 2, 5, 4), {"kernel": (5, 4)}),  # one window, the whole map
        ((3, 1, 1, 9), {"kernel": (1, 3), "stride": (1, 4)}),  # windows at the right edge, a cell left out
    ],
)
def test_matches_naive_reference(shape, params):
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32) * 3
    k = params["kernel"] if isinstance(params["kernel"], tuple) else (params["kernel"],) * 2
    s = params.get("stride", k)
    s = s if isinstance(s, tuple) else (s, s)
    expected = exp_weighted(x, x, k, s)
    assert_close(PF.softpool(torch.from_numpy(x), **params).numpy(), expected.astype(np.float32), what="torch")
    assert_close(onnx_forward("softpool", x, **params), expected.astype(np.float32), what="onnx")


def test_large_values_do_not_overflow_where_the_reference_formula_does():
    """The reference formula ``sum(exp(x) x) / sum(exp(x))`` in float32 (SoftPool's
    ``soft_pool2d``) gives NaN once ``exp(x)`` overflows (x > 88.7); subtracting the window
    max first keeps the result finite and equal to the float64 definition."""
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((2, 3, 8, 8)) * 5 + 150).astype(np.float32)
    x[0, 0, :2, :2] = [[-300.0, 400.0], [399.0, 0.0]]
    xt = torch.from_numpy(x)
    e = torch.exp(xt)  # float32: inf
    naive32 = torch.nn.functional.avg_pool2d(xt * e, 2) / torch.nn.functional.avg_pool2d(e, 2)
    assert torch.isnan(naive32).all()
    x64 = x.astype(np.float64)
    expected = exp_weighted(x64 - 300, x64 - 300, (2, 2), (2, 2)) + 300  # float64 exp(x) overflows at 709
    ours = PF.softpool(xt, kernel=2).numpy()
    assert np.isfinite(ours).all()
    assert_close(ours, expected.astype(np.float32), what="torch")
    assert_close(onnx_forward("softpool", x, kernel=2), expected.astype(np.float32), what="onnx")
    w = 1 / (1 + math.exp(-1))  # the window [[-300, 400], [399, 0]]: 400 and 399 weigh e : 1
    assert ours[0, 0, 0, 0] == pytest.approx(400 * w + 399 * (1 - w), rel=1e-6)
    g = np.ones_like(ours)
    _, grad = autograd("softpool", x, g, kernel=2)
    assert np.isfinite(grad).all()
    # 1 + x - y cancels values near 150: float32 keeps ~1e-5 of it, in torch and ONNX alike
    assert_close(onnx_backward("softpool", x, g, kernel=2), grad, rel=1e-4, what="backward")


def test_equal_values_give_their_mean_and_large_spread_the_max():
    x = np.array([[[[2, 2], [2, 2]], [[0, 0], [0, 50]]]], np.float32)
    y = onnx_forward("softpool", x, kernel=2)
    assert y.ravel().tolist() == pytest.approx([2.0, 50.0])


def test_special_values():
    """-inf beside finite values weighs 0; NaN propagates; +inf gives NaN (documented)."""
    x = np.array([[[[-np.inf, 1, np.nan, 1, np.inf, 1]]]], np.float32)
    t = PF.softpool(torch.from_numpy(x), kernel=(1, 2)).numpy()
    o = onnx_forward("softpool", x, kernel=(1, 2))
    assert t[0, 0, 0, 0] == 1.0 and np.isnan(t[0, 0, 0, 1:]).all()
    np.testing.assert_array_equal(o, t)


def test_window_larger_than_input_is_named():
    with pytest.raises(ParamError, match="'kernel'.*larger than the padded input"):
        PF.softpool(torch.ones(1, 1, 2, 5), kernel=3)
    with pytest.raises(ParamError, match="'stride'"):
        PF.softpool(torch.ones(1, 1, 4, 4), stride=0)


def test_a_network_with_it_exports_with_dynamic_sizes(tmp_path):
    import poolops.nn as PN
    from support.faces import check_head_export

    check_head_export(PN.SoftPool(kernel=2, stride=1), tmp_path, "softpool")
