"""Worked examples and edge cases of ``lp``, ``gem``, ``strip`` and ``multiscale``: torch
reference, ONNX forward and ONNX backward. (The property tests of tests/test_parity.py
cover random parameters and shapes; these pin the semantics.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, session

import poolops
import poolops.functional as PF
import poolops.nn as PN
from poolops.onnx import export, op_backward_model, op_model
from poolops.params import ParamError

NEW_OPS = ("lp", "gem", "strip", "multiscale")


def onnx_forward(name, x, **params):
    return session(op_model(name, outputs=("y",), **params)).run(None, {"x": np.asarray(x, np.float32)})[0]


def onnx_backward(name, x, g, **params):
    feeds = {"x": np.asarray(x, np.float32), "grad_y": np.asarray(g, np.float32)}
    return session(op_backward_model(name, **params)).run(None, feeds)[0]


def autograd(name, x, g, **params):
    spec = poolops.get_op(name)
    xt = torch.tensor(np.asarray(x, np.float32), requires_grad=True)
    y = spec.torch_fn(spec.parse(params), xt)[0]
    y.backward(torch.tensor(np.asarray(g, np.float32)))
    return y.detach().numpy(), xt.grad.numpy()


def check_all_faces(name, x, expected_y, g=None, expected_grad=None, atol=1e-4, **params):
    """torch function, ONNX forward, autograd and ONNX backward against the worked example."""
    x = np.asarray(x, np.float32)
    y = PF.call(name, torch.from_numpy(x), **params).numpy()
    np.testing.assert_allclose(y, expected_y, atol=atol)
    np.testing.assert_allclose(onnx_forward(name, x, **params), expected_y, atol=atol)
    if g is not None:
        _, grad = autograd(name, x, g, **params)
        np.testing.assert_allclose(grad, expected_grad, atol=atol)
        np.testing.assert_allclose(onnx_backward(name, x, g, **params), expected_grad, atol=atol)


PLANE = np.array([[[[1, 2], [3, 4]]]], np.float32)


# ---------------------------------------------------------------- lp


def test_lp_worked_example():
    y = np.sqrt(30.0)
    check_all_faces("lp", PLANE, [[[[y]]]], [[[[1.0]]]], PLANE / y, norm_type=2.0, kernel=2)


def test_lp_is_torch_lp_pool2d_not_onnx_lppool():
    """ONNX LpPool takes |x|; PyTorch does not: odd p on negative values keeps the sign
    of x^p, a negative window sum with non-integer 1/p is NaN, p = 1 is the plain sum."""
    x = np.array([[[[-1, -2], [3, 4], [-3, -4]]]], np.float32)  # kernel (1, 2): one window per row
    for p in (1.0, 2.0, 3.0, 1.5):
        expected = F.lp_pool2d(torch.from_numpy(x), p, (1, 2)).numpy()
        actual = onnx_forward("lp", x, norm_type=p, kernel=(1, 2))
        np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
        assert_close(actual, expected, what=f"lp p={p}")
    np.testing.assert_allclose(onnx_forward("lp", x, norm_type=1.0, kernel=(1, 2)).ravel(), [-3, 7, -7])
    assert np.isnan(onnx_forward("lp", x, norm_type=3.0, kernel=(1, 2))).ravel().tolist() == [True, False, True]
    assert not any(n.op_type == "LpPool" for f in op_model("lp").functions for n in f.node)


def test_lp_zero_window_has_zero_gradient():
    """PyTorch: "if the sum of all inputs to the power of p is zero, the gradient is set to zero"."""
    x = np.zeros((1, 1, 2, 4), np.float32)
    x[0, 0, :, 2:] = [[1, 2], [0, 3]]
    g = np.ones((1, 1, 1, 2), np.float32)
    for p in (1.0, 2.0, 3.0):
        _, expected = autograd("lp", x, g, norm_type=p, kernel=2)
        actual = onnx_backward("lp", x, g, norm_type=p, kernel=2)
        np.testing.assert_array_equal(expected[..., :2], 0)
        assert_close(actual, expected, what=f"lp zero window p={p}")


def test_lp_real_inputs_with_even_power_match_autograd():
    """p = 2: x^2 >= 0, so the op is finite on any real input; forward and backward match."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 11, 9)).astype(np.float32)
    spec = poolops.get_op("lp")
    for params in ({"kernel": 3, "stride": 2, "ceil_mode": True}, {"kernel": (2, 3)}):
        g = rng.standard_normal(spec.output_shape(spec.parse(params), x.shape)).astype(np.float32)
        y, grad = autograd("lp", x, g, **params)
        assert_close(onnx_forward("lp", x, **params), y, what=f"lp {params}")
        assert_close(onnx_backward("lp", x, g, **params), grad, what=f"lp backward {params}")


def test_lp_ceil_mode_scales_clipped_windows_like_torch():
    """PyTorch's lp_pool2d is avg_pool2d(x^p) * kh*kw: a window clipped at the edge (ceil
    mode) is scaled by kh*kw / cells, not summed."""
    x = np.ones((1, 1, 3, 3), np.float32)
    y = onnx_forward("lp", x, norm_type=1.0, kernel=2, ceil_mode=True)
    np.testing.assert_allclose(y, F.lp_pool2d(torch.from_numpy(x), 1.0, 2, ceil_mode=True).numpy())
    np.testing.assert_allclose(y.ravel(), [4, 4, 4, 4])  # not [4, 2, 2, 1]


def test_lp_params():
    for bad in ({"norm_type": 0}, {"norm_type": -1}, {"norm_type": float("inf")}, {"norm_type": float("nan")}):
        with pytest.raises(ParamError) as err:
            poolops.get_op("lp").parse(bad)
        assert err.value.param == "norm_type"
    with pytest.raises(ParamError, match="'kernel'"):
        PF.lp(torch.ones(1, 1, 2, 5), kernel=3)


# ---------------------------------------------------------------- gem


def test_gem_worked_example():
    y = 25.0 ** (1 / 3)  # mean of cubes (1 + 8 + 27 + 64) / 4 = 25
    grad = PLANE**2 / (4 * y**2)  # d/dx (mean x^3)^(1/3) = x^2 / (4 y^2)
    check_all_faces("gem", PLANE, [[[[y]]]], [[[[1.0]]]], grad)


def test_gem_clamps_at_eps():
    x = np.array([[[[-5, 0], [2, 2]]]], np.float32)
    eps = 0.5
    y = ((eps**3 + eps**3 + 8 + 8) / 4) ** (1 / 3)
    grad = np.array([[[[0, 0], [4 / (4 * y**2), 4 / (4 * y**2)]]]], np.float32)  # no gradient below eps
    check_all_faces("gem", x, [[[[y]]]], [[[[1.0]]]], grad, eps=eps)


def test_gem_p1_is_average_and_large_p_approaches_max():
    x = np.abs(np.random.default_rng(0).standard_normal((2, 3, 7, 5))).astype(np.float32) + 0.1
    np.testing.assert_allclose(onnx_forward("gem", x, p=1.0), x.mean(axis=(2, 3), keepdims=True), rtol=1e-5)
    big = onnx_forward("gem", x, p=60.0)
    top = x.max(axis=(2, 3), keepdims=True)
    assert np.all(big <= top * (1 + 1e-6)) and np.all(big >= top * 35 ** (-1 / 60) * (1 - 1e-6))


def test_gem_windowed():
    x = np.abs(np.random.default_rng(1).standard_normal((1, 2, 9, 8))).astype(np.float32)
    params = {"p": 2.0, "kernel": 3, "stride": 2}
    y, grad = autograd("gem", x, np.ones((1, 2, 4, 3), np.float32), **params)
    assert y.shape == (1, 2, 4, 3)
    expected = np.sqrt(F.avg_pool2d(torch.from_numpy(np.maximum(x, 1e-6) ** 2), 3, 2).numpy())
    assert_close(y, expected)
    assert_close(onnx_forward("gem", x, **params), y)
    assert_close(onnx_backward("gem", x, np.ones_like(y), **params), grad)


def test_gem_params():
    with pytest.raises(ParamError, match="'stride'"):
        poolops.get_op("gem").parse({"stride": 2})
    for name in ("p", "eps"):
        with pytest.raises(ParamError) as err:
            poolops.get_op("gem").parse({name: 0})
        assert err.value.param == name
    with pytest.raises(ParamError, match="'kernel'"):
        PF.gem(torch.ones(1, 1, 2, 5), kernel=3)
    assert PN.GeMPool().out_features(16) == 16  # global: a fixed-length head


# ---------------------------------------------------------------- strip

STRIP_X = np.array([[[[1, 2, 3], [4, 5, 6]]]], np.float32)
STRIP_CASES = {
    "h": [[[[2], [5]]]],
    "v": [[[[2.5, 3.5, 4.5]]]],
    "diag": [[[[4, 3, 4, 3]]]],
    "antidiag": [[[[1, 3, 4, 6]]]],
}


@pytest.mark.parametrize("direction", STRIP_CASES)
def test_strip_worked_examples(direction):
    y = np.array(STRIP_CASES[direction], np.float32)
    g = np.arange(1, y.size + 1, dtype=np.float32).reshape(y.shape)
    # each cell gets its output's gradient divided by that output's cell count
    _, expected_grad = autograd("strip", STRIP_X, g, direction=direction)
    check_all_faces("strip", STRIP_X, y, g, expected_grad, direction=direction)


def test_strip_diag_gradient_example():
    g = np.array([[[[1, 2, 4, 8]]]], np.float32)  # diagonals -1, 0, 1, 2 of 2x3: 1, 2, 2, 1 cells
    expected = np.array([[[[1, 2, 8], [1, 1, 2]]]], np.float32)
    check_all_faces("strip", STRIP_X, STRIP_CASES["diag"], g, expected, direction="diag")


def _diagonal_reference(x: torch.Tensor, direction: str) -> torch.Tensor:
    """Independent reference: ``torch.diagonal`` one offset at a time."""
    h, w = x.shape[-2:]
    if direction == "antidiag":
        x = x.flip(-2)  # row r -> H-1-r: offset c - (H-1-r) = (r + c) - (H-1)
    return torch.stack([torch.diagonal(x, d, -2, -1).mean(-1) for d in range(-(h - 1), w)], -1).unsqueeze(2)


@pytest.mark.parametrize("direction", ["diag", "antidiag"])
@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (6, 1), (5, 5), (4, 9), (13, 3)])
def test_strip_diagonals_against_torch_diagonal(direction, hw):
    x = torch.randn(2, 3, *hw)
    expected = _diagonal_reference(x, direction).numpy()
    assert_close(PF.strip(x, direction=direction).numpy(), expected)
    assert_close(onnx_forward("strip", x.numpy(), direction=direction), expected)


def test_strip_diagonal_graph_is_linear_in_the_input():
    """No H*W x (H+W-1) matrix and no scatter: masked Gather sums forward, a Gather backward."""
    fwd = {n.op_type for f in op_model("strip", direction="diag").functions for n in f.node}
    bwd = {n.op_type for f in op_backward_model("strip", direction="diag").functions for n in f.node}
    assert "Gather" in fwd and not {"MatMul", "ScatterND", "ScatterElements"} & fwd
    assert "Gather" in bwd and "MatMul" not in bwd and "ScatterND" not in bwd
    x = np.random.default_rng(0).standard_normal((1, 2, 300, 400)).astype(np.float32)
    assert_close(onnx_forward("strip", x, direction="antidiag"), _diagonal_reference(torch.from_numpy(x), "antidiag").numpy())


def test_strip_params():
    with pytest.raises(ParamError, match="'direction'"):
        poolops.get_op("strip").parse({"direction": "up"})


# ---------------------------------------------------------------- multiscale


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


@pytest.mark.parametrize("name", NEW_OPS)
def test_registered_with_a_worked_example(name):
    spec = poolops.get_op(name)
    assert "Example" in spec.doc or "example" in spec.doc
    assert spec.onnx_backward is not None


EXPORT_HEADS = {
    "lp": lambda: torch.nn.Sequential(PN.LpPool(norm_type=3.0, kernel=2, ceil_mode=True), PN.GlobalAvgPool()),
    "gem": lambda: PN.GeMPool(),
    "gem-windowed": lambda: torch.nn.Sequential(PN.GeMPool(kernel=2), PN.GlobalMaxPool()),
    "strip-diag": lambda: torch.nn.Sequential(PN.StripPool(direction="diag"), PN.AdaptiveAvgPool(output_size=(1, 4))),
    "strip-v": lambda: torch.nn.Sequential(PN.StripPool(direction="v"), PN.GlobalAvgPool()),
    "multiscale": lambda: torch.nn.Sequential(PN.MultiScalePool(kernels=(1, 2)), PN.GlobalAvgPool()),
}


@pytest.mark.parametrize("head", EXPORT_HEADS)
def test_modules_export_with_dynamic_sizes(head, tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(), EXPORT_HEADS[head]()).eval()
    proto = export(model, torch.randn(2, 3, 16, 20), tmp_path / "m.onnx")
    sess = session(proto)
    for shape in [(1, 3, 9, 13), (3, 3, 32, 24), (2, 3, 4, 2)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = model(x).numpy()
        assert_close(sess.run(None, {"x": x.numpy()})[0], expected, what=f"{head} at {shape}")
