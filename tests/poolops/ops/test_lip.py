"""``lip`` (poolops/ops/lip.py): worked example, a naive float64 reference, the reference
code's formula, the overflow it hits and this op does not, and bad inputs. (The property
tests of tests/poolops/test_torch_onnx_parity.py cover random parameters and shapes, and
check the autograd gradients to x and logit numerically.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import poolops.functional as PF
import poolops.nn as PN
from poolops.params import ParamError
from support.faces import check_worked_example_and_backward, onnx_forward
from support.naive import exp_weighted
from support.runtime import assert_close


def lip2d(x, logit, kernel=3, stride=2, padding=1):
    """The reference code (github.com/sebgao/LIP, ``lip2d``), verbatim."""
    weight = logit.exp()
    return F.avg_pool2d(x * weight, kernel, stride, padding) / F.avg_pool2d(weight, kernel, stride, padding)


def test_worked_example():
    x = np.array([[[[1.0, 3.0]]]], np.float32)
    logit = np.array([[[[0.0, math.log(3)]]]], np.float32)
    params = {"kernel": (1, 2), "stride": 1, "padding": 0}
    assert PF.lip(torch.from_numpy(x), torch.from_numpy(logit), **params).item() == pytest.approx(2.5)
    assert onnx_forward("lip", x, logit, **params).item() == pytest.approx(2.5)
    check_worked_example_and_backward("lip", onnx_backward_graph=False)


@pytest.mark.parametrize(
    "shape, params",
    [
        ((2, 3, 9, 11), {}),  # the reference defaults: kernel 3, stride 2, padding 1
        ((1, 2, 10, 7), {"kernel": 2, "stride": 1, "padding": 1}),
        ((2, 1, 8, 13), {"kernel": (3, 5), "stride": (1, 3), "padding": (0, 2)}),
        ((1, 1, 1, 1), {}),  # degenerate: one cell, the window mostly padding
        ((1, 2, 2, 1), {"kernel": (2, 1), "stride": 1, "padding": 0}),
    ],
)
def test_matches_naive_reference_and_the_reference_code(shape, params):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    logit = (rng.standard_normal(shape) * 2).astype(np.float32)
    p = {"kernel": 3, "stride": 2, "padding": 1, **params}
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    expected = exp_weighted(x, logit, pair(p["kernel"]), pair(p["stride"]), pair(p["padding"])).astype(np.float32)
    xt, lt = torch.from_numpy(x), torch.from_numpy(logit)
    assert_close(PF.lip(xt, lt, **params).numpy(), expected, what="torch")
    assert_close(onnx_forward("lip", x, logit, **params), expected, what="onnx")
    assert_close(lip2d(xt, lt, p["kernel"], p["stride"], p["padding"]).numpy(), expected, what="reference code")


def test_large_logits_do_not_overflow_where_the_reference_code_does():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 7, 7)).astype(np.float32)
    logit = (rng.standard_normal((1, 2, 7, 7)) + 120).astype(np.float32)
    xt, lt = torch.from_numpy(x), torch.from_numpy(logit)
    assert torch.isnan(lip2d(xt, lt)).all()
    expected = exp_weighted(x, logit.astype(np.float64) - 120, (3, 3), (2, 2), (1, 1)).astype(np.float32)
    for actual in (PF.lip(xt, lt).numpy(), onnx_forward("lip", x, logit)):
        assert np.isfinite(actual).all()
        assert_close(actual, expected)


def test_logit_equal_to_x_is_softpool():
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 9)).astype(np.float32)
    params = {"kernel": 3, "stride": 1}
    assert_close(onnx_forward("lip", x, x, padding=0, **params), onnx_forward("softpool", x, **params))


def test_module_and_gradients_reach_both_inputs():
    x = torch.randn(1, 2, 6, 6, requires_grad=True)
    logit = torch.randn(1, 2, 6, 6, requires_grad=True)
    PN.LIPPool()(x, logit).sum().backward()
    assert x.grad.abs().sum() > 0 and logit.grad.abs().sum() > 0


def test_bad_inputs_are_named():
    with pytest.raises(ParamError, match="'logit'.*expected shape"):
        PF.lip(torch.ones(1, 2, 6, 6), torch.ones(1, 1, 6, 6))
    with pytest.raises(ParamError, match="'logit'"):
        PF.lip(torch.ones(1, 2, 6, 6))
    with pytest.raises(ParamError, match="'padding'"):
        PF.lip(torch.ones(1, 1, 6, 6), torch.ones(1, 1, 6, 6), kernel=2, padding=2)
    with pytest.raises(ParamError, match="'kernel'.*larger"):
        PF.lip(torch.ones(1, 1, 2, 6), torch.ones(1, 1, 2, 6), kernel=5, padding=1)
