"""1-D and 3-D pooling (``max1d`` ... ``global_max3d``): worked examples, the torch
functions (PyTorch's own F.*pool1d/3d) against naive loop references
(tests/support/pool_nd_reference.py), degenerate shapes through one ONNX graph, input
checks, and modules exported with dynamic sizes. The generic parity tests
(tests/poolops/test_torch_onnx_parity.py) run ONNX Runtime against torch, forward and
backward, on drawn parameters and shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import poolops
import poolops.functional as PF
import poolops.nn as PN
from poolops.onnx import export, op_backward_model, op_model
from poolops.params import ParamError
from support import pool_nd_reference as ref
from support.parity import accepts
from support.runtime import assert_close, session
from support.strategies import params_for

OPS = [f"{kind}{r}d" for r in (1, 3) for kind in ("max", "avg", "adaptive_avg", "adaptive_max", "global_avg", "global_max")]
SMALL = {1: st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 24)),
         3: st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 6), st.integers(1, 6), st.integers(1, 6))}


def _reference(name: str, p, x):
    """The loop reference of op ``name``: ``(y,)`` or ``(y, indices)``."""
    if name.startswith("max"):
        return ref.max_pool(x, p.kernel, p.strides, p.padding, p.dilation, p.ceil_mode)
    if name.startswith("avg"):
        return (ref.avg_pool(x, p.kernel, p.strides, p.padding, p.ceil_mode, p.count_include_pad,
                             getattr(p, "divisor_override", None)),)
    ones = (1,) * (x.ndim - 2)
    if name.startswith("adaptive_avg"):
        return (ref.adaptive_pool(x, p.output_size, "avg"),)
    if name.startswith("adaptive_max"):
        return ref.adaptive_pool(x, p.output_size, "max")
    if name.startswith("global_avg"):
        return (ref.adaptive_pool(x, ones, "avg"),)
    return ref.adaptive_pool(x, ones, "max")


def test_worked_examples():
    x = torch.tensor([[[1.0, 3, 2, 2, 5]]])
    y, i = PF.max1d(x, kernel=2, return_indices=True)
    assert y.flatten().tolist() == [3, 2] and i.flatten().tolist() == [1, 2]
    assert PF.max1d(x, kernel=2, ceil_mode=True).flatten().tolist() == [3, 2, 5]
    assert PF.adaptive_avg1d(torch.tensor([[[1.0, 2, 3, 4, 5]]]), output_size=3).flatten().tolist() == [1.5, 3, 4.5]
    for name, params, want in (("max1d", dict(kernel=2, ceil_mode=True), [3, 2, 5]),
                               ("adaptive_avg1d", dict(output_size=3), [1.6, 2.5, 3.5])):
        xs = x.numpy() if name == "max1d" else np.array([[[1.0, 2, 2.5, 4.5, 2.5]]], np.float32)
        got = session(op_model(name, outputs=("y",), **params)).run(None, {"x": xs})[0]
        want = _reference(name, poolops.get_op(name).parse(params), xs)[0]
        np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("name", OPS)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_torch_matches_loop_reference(name, data):
    """PyTorch's F.*pool1d/3d (what the torch functions call) against the loops: values,
    indices (first maximum) and NaN; ties drawn."""
    spec = poolops.get_op(name)
    p = spec.parse(data.draw(params_for(name), label="params"))
    shape = data.draw(SMALL[spec.spatial_dims], label="shape")
    if not accepts(spec, p, shape):
        return
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = (np.round(rng.standard_normal(shape) * 2) / 2).astype(np.float32)
    if data.draw(st.booleans(), label="nan") and x.size > 2:
        x.flat[int(rng.integers(x.size))] = np.nan
    got = spec.torch_fn(p, torch.from_numpy(x), outputs=spec.outputs)
    want = _reference(name, p, x)
    assert_close(got[0].numpy(), want[0], what=f"{name} {p} {shape}", floor=1e-3)
    if len(want) > 1:
        finite = ~np.isnan(want[0])  # indices of a window holding NaN are not specified
        np.testing.assert_array_equal(got[1].numpy()[finite], want[1][finite], err_msg=f"{name} {p} indices")


@pytest.mark.parametrize("name", OPS)
def test_degenerate_shapes_through_one_graph(name):
    """N = 0, length-1 axes and a long thin map, all through one forward and one backward
    graph, against torch (which takes no C = 0)."""
    spec = poolops.get_op(name)
    p = spec.parse({"kernel": 1} if name.startswith(("max", "avg")) else {})
    shapes = {1: [(2, 3, 1), (0, 3, 5), (1, 2, 1000)],
              3: [(2, 3, 1, 1, 1), (0, 2, 3, 4, 5), (1, 2, 1, 40, 2)]}[spec.spatial_dims]
    fwd = session(op_model(name, **p.model_dump()))
    bwd = session(op_backward_model(name, **p.model_dump()))
    rng = np.random.default_rng(0)
    for shape in shapes:
        x = rng.standard_normal(shape).astype(np.float32)
        xt = torch.from_numpy(x).requires_grad_()
        want = spec.torch_fn(p, xt)
        got = fwd.run(None, {"x": x})
        for g, w in zip(got, want):
            assert g.shape == tuple(w.shape), (name, shape)
            np.testing.assert_allclose(g, w.detach().numpy(), rtol=1e-5, atol=1e-6)
        grad = np.ones(tuple(want[0].shape), np.float32)
        if want[0].numel():
            want[0].backward(torch.from_numpy(grad))
        (gx,) = bwd.run(None, {"x": x, "grad_y": grad})
        np.testing.assert_allclose(gx, xt.grad.numpy() if xt.grad is not None else np.zeros_like(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", OPS)
def test_input_of_another_rank_is_a_clear_value_error(name):
    spec = poolops.get_op(name)
    want = {1: r"3-D tensor \[N, C, L\]", 3: r"5-D tensor \[N, C, D, H, W\]"}[spec.spatial_dims]
    for shape in ((1, 2, 8, 8), (2, 8), (1, 1, 4, 4, 4, 4)):
        if len(shape) == len(spec.x_dims):
            continue
        with pytest.raises(ValueError, match=f"'x'.*{want}") as err:
            PF.call(name, torch.ones(shape))
        assert isinstance(err.value, ParamError) and err.value.param == "x"


@pytest.mark.parametrize("name,params,shape,param", [
    ("max1d", {"kernel": 5}, (1, 1, 3), "kernel"),
    ("max3d", {"kernel": (1, 3, 1), "dilation": (1, 2, 1)}, (1, 1, 2, 4, 2), "kernel"),
    ("avg3d", {"kernel": 2, "padding": 1}, (1, 1, 1, 4, 4), "kernel"),  # torch's avg_pool3d rule
    ("max1d", {"kernel": 3, "padding": 2}, (1, 1, 8), "padding"),
    ("max3d", {"kernel": (2, 2)}, (1, 1, 4, 4, 4), "kernel"),
    ("adaptive_avg3d", {"output_size": (2, 0, 2)}, (1, 1, 4, 4, 4), "output_size"),
    ("avg1d", {"divisor_override": 2}, (1, 1, 4), "divisor_override"),  # torch's avg_pool1d has none
])
def test_bad_parameters_are_named(name, params, shape, param):
    with pytest.raises(ParamError) as err:
        PF.call(name, torch.ones(shape), **params)
    assert err.value.param == param


def test_parameters_take_an_int_for_every_axis():
    p = poolops.get_op("max3d").parse({"kernel": 3, "stride": 2, "padding": 1})
    assert p.kernel == (3, 3, 3) and p.strides == (2, 2, 2) and p.padding == (1, 1, 1)
    assert poolops.get_op("adaptive_max1d").parse({"output_size": [5]}).output_size == (5,)
    assert PN.AdaptiveAvgPool3d(output_size=(1, 2, 3)).out_features(4) == 24
    assert PN.GlobalMaxPool1d().out_features(7) == 7


class Net1d(torch.nn.Module):
    """A small 1-D model: conv, max1d (ceil mode), adaptive_avg1d, linear."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(3, 4, 3, padding=1)
        self.pool = PN.MaxPool1d(kernel=3, stride=2, ceil_mode=True)
        self.head = PN.AdaptiveAvgPool1d(output_size=5)
        self.fc = torch.nn.Linear(20, 2)

    def forward(self, x):
        return self.fc(self.head(self.pool(torch.relu(self.conv(x)))).flatten(1))


class Net3d(torch.nn.Module):
    """A small 3-D (volume) model: conv, max3d, adaptive_max3d, global_avg3d."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv3d(3, 4, 3, padding=1)
        self.pool = PN.MaxPool3d(kernel=2, padding=1, ceil_mode=True)
        self.adaptive = PN.AdaptiveMaxPool3d(output_size=(2, 3, 2))
        self.gap = PN.GlobalAvgPool3d()

    def forward(self, x):
        t = self.pool(torch.relu(self.conv(x)))
        return torch.cat([self.adaptive(t).flatten(1), self.gap(t).flatten(1)], dim=1)


@pytest.mark.parametrize("net,example,sizes", [
    (Net1d, (2, 3, 40), [(1, 3, 17), (3, 3, 101)]),
    (Net3d, (2, 3, 6, 8, 10), [(1, 3, 5, 7, 3), (2, 3, 9, 4, 12)]),
])
def test_modules_export_with_dynamic_sizes(net, example, sizes):
    model = net().eval()
    proto = export(model, torch.randn(*example))
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == (["N", 3, "L"] if len(example) == 3 else ["N", 3, "D", "H", "W"])
    sess = session(proto)
    for shape in sizes:
        x = torch.randn(*shape)
        with torch.no_grad():
            want = model(x).numpy()
        assert_close(sess.run(None, {"x": x.numpy()})[0], want, what=f"{net.__name__} at {shape}")


class Stock1d(torch.nn.Module):
    """PyTorch's own 1-D and 3-D pooling modules, unmodified."""

    def __init__(self, r: int):
        super().__init__()
        torch.manual_seed(0)
        nn = torch.nn
        conv, mx, avg, ada = ((nn.Conv1d, nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d) if r == 1
                              else (nn.Conv3d, nn.MaxPool3d, nn.AvgPool3d, nn.AdaptiveMaxPool3d))
        self.conv = conv(3, 4, 3, padding=1)
        self.pool = mx(3, stride=2, padding=1, ceil_mode=True)
        self.avg = avg(2, ceil_mode=True, count_include_pad=False)
        self.head = ada(3)

    def forward(self, x):
        return self.head(self.avg(self.pool(torch.relu(self.conv(x))))).flatten(1)


@pytest.mark.parametrize("r,example,sizes", [
    (1, (2, 3, 40), [(1, 3, 23), (3, 3, 77)]),
    (3, (2, 3, 8, 10, 12), [(1, 3, 9, 7, 13), (2, 3, 12, 8, 8)]),
])
def test_stock_1d_and_3d_pooling_exports_through_poolops(r, example, sizes):
    """F.max_pool1d/3d, avg_pool1d/3d and adaptive pooling route to poolops' ops in export
    (PyTorch's exporter would fix ceil-mode and adaptive windows to the example's size)."""
    model = Stock1d(r).eval()
    proto = export(model, torch.randn(*example))
    sess = session(proto)
    for shape in sizes:
        x = torch.randn(*shape)
        with torch.no_grad():
            want = model(x).numpy()
        assert_close(sess.run(None, {"x": x.numpy()})[0], want, what=f"stock {r}-D at {shape}")
