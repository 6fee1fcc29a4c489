"""TF "SAME" padding of ``max`` and ``avg`` (``tf_same=True``, poolops/ops/_same.py):
torch function, ONNX forward and backward against the naive TF reference
(tests/support/same_reference.py) on a grid of sizes, degenerate ones included, one graph
at many sizes (the padding depends on H and W at run time), timm's ``pool2d_same``, and
the parameter checks. (tests/poolops/test_torch_onnx_parity.py draws tf_same too.)"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import poolops
import poolops.functional as PF
from poolops.onnx import op_backward_model, op_model
from poolops.params import ParamError
from support import same_reference as ref
from support.faces import both_faces
from support.runtime import assert_close, session

SIZES = [(1, 1), (1, 7), (2, 2), (5, 6), (8, 3), (9, 13)]
WINDOWS = [  # kernel, stride, dilation
    ((1, 1), (1, 1), (1, 1)),
    ((2, 2), (2, 2), (1, 1)),
    ((3, 3), (2, 2), (1, 1)),
    ((3, 2), (1, 3), (1, 1)),
    ((1, 3), (3, 2), (1, 1)),  # kernel smaller than the stride: no padding
    ((5, 4), (2, 1), (1, 1)),
    ((3, 3), (1, 2), (2, 3)),
    ((2, 3), (3, 1), (3, 2)),
]


def _accepted(kernel, stride, dilation, shape) -> bool:
    try:
        poolops.get_op("max").check(poolops.get_op("max").parse(dict(kernel=kernel, stride=stride, dilation=dilation,
                                                                      tf_same=True)), np.zeros(shape, np.float32))
        return True
    except ParamError:
        return False


def test_worked_examples():
    x = [[[[1.0, 2.0, 3.0]]]]
    y = PF.max(torch.tensor(x), kernel=(1, 2), stride=1, tf_same=True, return_indices=True)
    assert y[0].tolist() == [[[[2.0, 3.0, 3.0]]]] and y[1].tolist() == [[[[1, 2, 2]]]]
    for out in both_faces("avg", x, kernel=(1, 2), stride=1, tf_same=True):
        np.testing.assert_allclose(out, [[[[1.5, 2.5, 3.0]]]])


@pytest.mark.parametrize("kernel, stride, dilation", WINDOWS)
def test_max_matches_tf_reference(kernel, stride, dilation):
    params = dict(kernel=kernel, stride=stride, dilation=dilation, tf_same=True)
    sess = session(op_model("max", **params))
    rng = np.random.default_rng(0)
    checked = 0
    for h, w in SIZES:
        shape = (2, 3, h, w)
        if not _accepted(kernel, stride, dilation, shape):
            continue
        x = rng.standard_normal(shape).astype(np.float32)
        x[0, 0] = np.round(x[0, 0])  # ties: the first maximum
        y, idx = ref.max_pool(x, kernel, stride, dilation)
        ty, ti = PF.max(torch.from_numpy(x), return_indices=True, **params)
        oy, oi = sess.run(None, {"x": x})
        assert ty.shape == (2, 3, math.ceil(h / stride[0]), math.ceil(w / stride[1]))
        np.testing.assert_array_equal(ty.numpy(), y.astype(np.float32))
        np.testing.assert_array_equal(ti.numpy(), idx)
        np.testing.assert_array_equal(oy, y.astype(np.float32))
        np.testing.assert_array_equal(oi, idx)
        checked += 1
    assert checked >= 3


@pytest.mark.parametrize("kernel, stride", [(k, s) for k, s, d in WINDOWS if d == (1, 1)])
@pytest.mark.parametrize("divisor", [None, 3])
def test_avg_matches_tf_reference_forward_and_backward(kernel, stride, divisor):
    params = dict(kernel=kernel, stride=stride, tf_same=True, divisor_override=divisor)
    fwd, bwd = session(op_model("avg", **params)), session(op_backward_model("avg", **params))
    rng = np.random.default_rng(1)
    for h, w in SIZES:
        x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
        expected = ref.avg_pool(x, kernel, stride, divisor)
        xt = torch.tensor(x, requires_grad=True)
        ty = PF.avg(xt, **params)
        assert_close(ty.detach().numpy(), expected, what=f"torch {params} {h}x{w}", floor=0.01)
        assert_close(fwd.run(None, {"x": x})[0], expected, what=f"ONNX {params} {h}x{w}", floor=0.01)
        g = rng.standard_normal(expected.shape).astype(np.float32)
        ty.backward(torch.from_numpy(g))
        grad = ref.avg_pool_grad(x.shape, g, kernel, stride, divisor)
        assert_close(xt.grad.numpy(), grad, what=f"autograd {params} {h}x{w}", floor=0.01)
        assert_close(bwd.run(None, {"x": x, "grad_y": g})[0], grad, what=f"ONNX backward {params} {h}x{w}", floor=0.01)


@pytest.mark.parametrize("kernel, stride, dilation", WINDOWS)
def test_max_backward_matches_autograd(kernel, stride, dilation):
    params = dict(kernel=kernel, stride=stride, dilation=dilation, tf_same=True)
    bwd = session(op_backward_model("max", **params))
    rng = np.random.default_rng(2)
    for h, w in SIZES:
        if not _accepted(kernel, stride, dilation, (1, 2, h, w)):
            continue
        x = rng.standard_normal((1, 2, h, w))
        xt = torch.tensor(x, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: PF.max(t, **params), (xt,))
        xt32 = torch.tensor(x, dtype=torch.float32, requires_grad=True)
        y = PF.max(xt32, **params)
        g = torch.from_numpy(rng.standard_normal(tuple(y.shape)).astype(np.float32))
        y.backward(g)
        assert_close(bwd.run(None, {"x": x.astype(np.float32), "grad_y": g.numpy()})[0], xt32.grad.numpy())


@pytest.mark.parametrize("kernel, stride", [((3, 4), (2, 3)), ((2, 4), (3, 3))])  # auto_pad; explicit Pad
def test_one_graph_at_every_size(kernel, stride):
    """The padding (and whether it falls on one side or both) changes with H and W: one
    graph, sizes 1..12 of both parities, against the reference."""
    params = dict(kernel=kernel, stride=stride, tf_same=True)
    mx, av = session(op_model("max", **params)), session(op_model("avg", outputs=("y",), **params))
    rng = np.random.default_rng(3)
    for h, w in itertools.product(range(1, 13), (1, 2, 5, 6, 11)):
        x = rng.standard_normal((1, 2, h, w)).astype(np.float32)
        y, idx = ref.max_pool(x, params["kernel"], params["stride"])
        oy, oi = mx.run(None, {"x": x})
        np.testing.assert_array_equal(oy, y.astype(np.float32))
        np.testing.assert_array_equal(oi, idx)
        assert_close(av.run(None, {"x": x})[0], ref.avg_pool(x, params["kernel"], params["stride"]), floor=0.01)


@pytest.mark.parametrize("dilation", [(1, 1), (1, 2)])  # auto_pad; explicit Pad
def test_max_nan_and_infinities(dilation):
    x = np.random.default_rng(4).standard_normal((2, 2, 7, 6)).astype(np.float32)
    x[0, 0, 2, 3] = np.nan
    x[0, 1] = -np.inf  # every window all -inf: -inf, index at its first cell inside
    x[1, 0, :2, :2] = np.inf
    params = dict(kernel=3, stride=2, dilation=dilation, tf_same=True)
    y, idx = ref.max_pool(x, (3, 3), (2, 2), dilation)
    ty, ti = PF.max(torch.from_numpy(x), return_indices=True, **params)
    oy, oi = session(op_model("max", **params)).run(None, {"x": x})
    for out, ind in ((ty.numpy(), ti.numpy()), (oy, oi)):
        assert_close(out, y.astype(np.float32))
        known = idx >= 0  # indices of a window holding a NaN are not specified
        np.testing.assert_array_equal(ind[known], idx[known])
    (fast,) = session(op_model("max", outputs=("y",), propagate_nan=False, **params)).run(None, {"x": x[1:]})
    np.testing.assert_array_equal(fast, y[1:].astype(np.float32))


def test_graphs_pool_with_auto_pad_where_onnx_runtime_gets_it_right():
    """No dilation and kernel >= stride: one MaxPool / AveragePool with auto_pad SAME_UPPER;
    otherwise an explicit Pad (ONNX Runtime ignores the dilation in auto_pad and fails for
    a kernel smaller than the stride)."""

    def walk(nodes):
        for n in nodes:
            yield n.op_type, {a.name: a.s for a in n.attribute if a.name == "auto_pad"}
            for a in n.attribute:
                if a.g.node:  # an If branch
                    yield from walk(a.g.node)

    def ops(name, **params):
        return list(walk(n for f in op_model(name, tf_same=True, **params).functions for n in f.node))

    for name in ("max", "avg"):
        native = ops(name, kernel=3, stride=2)
        assert ("Pad", {}) not in native and any(a == {"auto_pad": b"SAME_UPPER"} for _, a in native)
        assert ("Pad", {}) in ops(name, kernel=(1, 3), stride=2)
    assert ("Pad", {}) in ops("max", kernel=3, stride=1, dilation=2)
    assert ("Pad", {}) in ops("avg", kernel=3, stride=2, divisor_override=4)


def test_max_is_timms_max_pool2d_same_without_dilation():
    """timm's ``max_pool2d_same`` (copied: pad with -inf by ``get_same_padding``, then
    ``F.max_pool2d``); timm pads ignoring the dilation, so only dilation 1 is compared."""

    def get_same_padding(x, k, s, d):
        return max((math.ceil(x / s) - 1) * s + (k - 1) * d + 1 - x, 0)

    def max_pool2d_same(x, kernel_size, stride):
        ih, iw = x.size()[-2:]
        pad_h, pad_w = get_same_padding(ih, kernel_size[0], stride[0], 1), get_same_padding(iw, kernel_size[1], stride[1], 1)
        x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2], value=-float("inf"))
        return F.max_pool2d(x, kernel_size, stride, (0, 0), (1, 1), False)

    x = torch.randn(2, 3, 17, 10)
    for k, s in (((3, 3), (2, 2)), ((2, 5), (1, 3))):
        expected = max_pool2d_same(x, k, s).numpy()
        for y in both_faces("max", x.numpy(), kernel=k, stride=s, tf_same=True):
            np.testing.assert_array_equal(y, expected)


def test_avg_counts_no_padding_unlike_timms_default():
    """TF's SAME average divides by the cells inside; timm's ``AvgPool2dSame`` (zero padding
    then ``F.avg_pool2d`` with ``count_include_pad=True``) by the whole window: equal inside,
    lower at the edges for positive x."""
    x = torch.rand(1, 2, 6, 6) + 1
    ours = PF.avg(x, kernel=3, stride=2, tf_same=True)
    timm = F.avg_pool2d(F.pad(x, [0, 1, 0, 1]), 3, 2, count_include_pad=True)
    np.testing.assert_allclose(ours[..., :2, :2].numpy(), timm[..., :2, :2].numpy(), rtol=1e-6)
    assert (ours[..., 2, :] > timm[..., 2, :]).all() and (ours[..., :, 2] > timm[..., :, 2]).all()
    np.testing.assert_allclose(ours.numpy(), ref.avg_pool(x.numpy(), (3, 3), (2, 2)), rtol=1e-6)


def test_params_and_checks():
    for op in ("max", "avg"):
        spec = poolops.get_op(op)
        with pytest.raises(ParamError) as err:
            spec.parse({"kernel": 3, "padding": 1, "tf_same": True})
        assert err.value.param == "padding"
        with pytest.raises(ParamError) as err:
            spec.parse({"kernel": 3, "ceil_mode": True, "tf_same": True})
        assert err.value.param == "ceil_mode"
        # a kernel larger than the input is fine: SAME pads it
        assert tuple(PF.call(op, torch.ones(1, 1, 2, 3), kernel=7, stride=5, tf_same=True).shape) == (1, 1, 1, 1)
    with pytest.raises(ParamError, match="covers only padding") as err:  # window 0: rows -1 and 2 of 2
        PF.max(torch.ones(1, 1, 2, 2), kernel=(2, 1), stride=1, dilation=(3, 1), tf_same=True)
    assert err.value.param == "dilation"


def test_cost_is_immediate_and_bounds_hostile_sizes():
    spec = poolops.get_op("max")
    c = spec.cost({"kernel": 4096, "stride": 1, "dilation": 50, "tf_same": True}, {"x": (1, 1, 10, 10)}, backward=True)
    assert c.work_elements >= (10 + 4095 * 50) ** 2  # the padded x
    assert spec.cost({"tf_same": True}, {"x": (1, 1, 0, 0)}).output_elements == 0
