"""``max_unpool`` (poolops/ops/max_unpool.py): worked example, the round trip with ``max``,
a naive reference, the backward graph with its ``indices`` input, repeated indices, and
bad inputs. (The property tests of tests/poolops/test_torch_onnx_parity.py cover random
parameters and shapes, forward and backward.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import poolops
import poolops.functional as PF
from poolops.onnx import op_backward_model, op_model
from poolops.params import ParamError
from support.faces import check_worked_example_and_backward
from support.naive import max_unpool
from support.runtime import assert_close, session


def _onnx(x, indices, **params):
    return session(op_model("max_unpool", **params)).run(None, {"x": x, "indices": indices})[0]


def _onnx_backward(x, indices, g, **params):
    feeds = {"x": x, "indices": indices, "grad_y": g}
    return session(op_backward_model("max_unpool", **params)).run(None, feeds)[0]


def _autograd(x, indices, g, **params):
    xt = torch.from_numpy(x).requires_grad_()
    y = PF.max_unpool(xt, torch.from_numpy(indices), **params)
    y.backward(torch.from_numpy(g))
    return y.detach().numpy(), xt.grad.numpy()


def test_worked_example():
    x, idx = np.array([[[[3.0]]]], np.float32), np.array([[[[1]]]])
    assert _onnx(x, idx).tolist() == [[[[0, 3], [0, 0]]]]
    g = np.array([[[[1, 2], [3, 4]]]], np.float32)
    y, grad = _autograd(x, idx, g)
    assert y.tolist() == [[[[0, 3], [0, 0]]]] and grad.tolist() == [[[[2]]]]
    assert _onnx_backward(x, idx, g).tolist() == [[[[2]]]]
    check_worked_example_and_backward("max_unpool", onnx_backward_graph=True)
    model = op_model("max_unpool")
    assert {n.op_type for f in model.functions for n in f.node}.isdisjoint({"MaxUnpool"})
    assert [i.name for i in op_backward_model("max_unpool").graph.input] == ["x", "indices", "grad_y"]


@pytest.mark.parametrize(
    "shape, params",
    [
        ((2, 3, 12, 9), {"kernel": 2}),
        ((1, 2, 11, 7), {"kernel": 3, "stride": 2, "padding": 1}),
        ((2, 1, 9, 13), {"kernel": (2, 3), "stride": (2, 1), "ceil_mode": True}),
        ((1, 1, 1, 1), {"kernel": 1}),
        ((1, 2, 3, 5), {"kernel": 3, "padding": 1, "ceil_mode": True}),  # windows past the edges
    ],
)
def test_round_trip_with_max(shape, params):
    """``max_unpool(max(x), indices, output_size=x's size)`` keeps each window's maximum in its
    place and zeros elsewhere, in torch and ONNX, equal to the naive reference."""
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    y, idx = PF.max(torch.from_numpy(x), return_indices=True, **params)
    unpool = {k: v for k, v in params.items() if k != "ceil_mode"}
    unpool["output_size"] = shape[2:]
    expected = max_unpool(y.numpy(), idx.numpy(), shape[2:])
    torch_y = PF.max_unpool(y, idx, **unpool).numpy()
    np.testing.assert_array_equal(torch_y, expected)
    np.testing.assert_array_equal(_onnx(y.numpy(), idx.numpy(), **unpool), expected)
    kept = expected != 0
    np.testing.assert_array_equal(expected[kept], x[kept])


def test_default_size_and_output_size_as_torch():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    for params, size in (({"kernel": 2}, (8, 10)), ({"kernel": 3, "stride": 2, "padding": 1}, (7, 9)),
                         ({"kernel": 3, "stride": 2, "padding": 1, "output_size": (8, 10)}, (8, 10))):
        p = poolops.get_op("max_unpool").parse(params)
        idx = poolops.inputs.example_inputs(("indices",), x.shape, rng, p)["indices"]
        stock = F.max_unpool2d(torch.from_numpy(x), torch.from_numpy(idx), p.kernel, p.strides, p.padding,
                               output_size=params.get("output_size"))
        assert tuple(stock.shape[2:]) == size
        np.testing.assert_array_equal(_onnx(x, idx, **params), stock.numpy())
        g = rng.standard_normal(stock.shape).astype(np.float32)
        _, grad = _autograd(x, idx, g, **params)
        assert_close(_onnx_backward(x, idx, g, **params), grad)


def test_repeated_indices_from_overlapping_windows():
    """Overlapping max windows share maxima: the repeated indices carry equal values."""
    x = np.random.default_rng(1).standard_normal((2, 3, 10, 10)).astype(np.float32)
    y, idx = PF.max(torch.from_numpy(x), kernel=3, stride=1, return_indices=True)
    assert len(np.unique(idx[0, 0].numpy())) < idx[0, 0].numel()
    params = {"kernel": 3, "stride": 1, "output_size": (10, 10)}
    np.testing.assert_array_equal(_onnx(y.numpy(), idx.numpy(), **params), PF.max_unpool(y, idx, **params).numpy())
    g = np.random.default_rng(2).standard_normal((2, 3, 10, 10)).astype(np.float32)
    _, grad = _autograd(y.numpy(), idx.numpy(), g, **params)
    assert_close(_onnx_backward(y.numpy(), idx.numpy(), g, **params), grad)


def test_bad_inputs_are_named():
    x, idx = torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.int64)
    with pytest.raises(ParamError, match="'output_size'.*strictly between 6 and 10"):
        PF.max_unpool(x, idx, output_size=(10, 8))
    PF.max_unpool(x, idx, output_size=(9, 7))
    with pytest.raises(ParamError, match=r"'indices'.*\[0, 64\).*64"):
        PF.max_unpool(x, torch.full((1, 1, 4, 4), 64))
    with pytest.raises(ParamError, match="'indices'.*-1"):
        PF.max_unpool(x, torch.full((1, 1, 4, 4), -1))
    with pytest.raises(ParamError, match="'indices'.*expected shape"):
        PF.max_unpool(x, torch.zeros(1, 1, 4, 3, dtype=torch.int64))
    with pytest.raises(ParamError, match="'indices'.*integers"):
        PF.max_unpool(x, torch.zeros(1, 1, 4, 4))
    with pytest.raises(ParamError, match="'padding'.*empty"):
        PF.max_unpool(torch.ones(1, 1, 1, 1), torch.zeros(1, 1, 1, 1, dtype=torch.int64), kernel=2, padding=1)
    with pytest.raises(ParamError, match="'indices'.*required"):
        poolops.get_op("max_unpool").bind(("x",), backward=True)
    poolops.get_op("max_unpool").bind(("x", "indices"), backward=True)
