"""Worked examples and edge cases of ``lp`` and ``gem`` (poolops/ops/lp.py): torch
reference, ONNX forward and ONNX backward. (The property tests of
tests/poolops/test_torch_onnx_parity.py cover random parameters and shapes; these pin
the semantics.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import poolops
import poolops.functional as PF
import poolops.nn as PN
from poolops.onnx import op_model
from poolops.params import ParamError
from support.faces import (
    autograd,
    check_all_faces,
    check_head_export,
    check_worked_example_and_backward,
    onnx_backward,
    onnx_forward,
)
from support.runtime import assert_close

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


def naive_gem(x, powers, eps, kernel=None, stride=None):
    """GeM by loops in float64: per window ``(mean max(x, eps)^p_c)^(1/p_c)`` and its
    derivative with respect to ``p_c``, ``y (mean(c^p ln c) / (p m) - ln(m) / p^2)``."""
    x = np.asarray(x, np.float64)
    n, ch, h, w = x.shape
    kh, kw = kernel or (h, w)
    sh, sw = stride or (kh, kw)
    oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
    y, dy_dp = np.empty((n, ch, oh, ow)), np.empty((n, ch, oh, ow))
    for b in range(n):
        for c in range(ch):
            pc = float(powers[c] if len(powers) > 1 else powers[0])
            for i in range(oh):
                for j in range(ow):
                    cells = [max(v, eps) for v in x[b, c, i * sh : i * sh + kh, j * sw : j * sw + kw].ravel()]
                    m = sum(v**pc for v in cells) / len(cells)
                    y[b, c, i, j] = m ** (1 / pc)
                    dm = sum(v**pc * np.log(v) for v in cells) / len(cells)
                    dy_dp[b, c, i, j] = y[b, c, i, j] * (dm / (pc * m) - np.log(m) / pc**2)
    return y, dy_dp


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("window", [{}, {"kernel": 3, "stride": 2}, {"kernel": (1, 4), "stride": (2, 1)}])
def test_gem_learnable_p_matches_naive_reference_and_its_gradient(per_channel, window):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 7, 6))  # negatives: clamped to eps
    powers = rng.uniform(0.5, 5.0, 3 if per_channel else 1)
    eps = 1e-3
    pair = lambda v: None if v is None else (v, v) if isinstance(v, int) else v  # noqa: E731
    expected, dy_dp = naive_gem(x, powers, eps, pair(window.get("kernel")), pair(window.get("stride")))
    xt = torch.tensor(x, requires_grad=True)
    pt = torch.tensor(powers, requires_grad=True)
    y = PF.gem(xt, pt, eps=eps, **window)
    np.testing.assert_allclose(y.detach().numpy(), expected, rtol=1e-12)
    y.backward(torch.ones_like(y))
    want = dy_dp.sum(axis=(0, 2, 3)) if per_channel else dy_dp.sum(keepdims=True).reshape(1)
    np.testing.assert_allclose(pt.grad.numpy(), want, rtol=1e-9)
    assert torch.autograd.gradcheck(lambda a, q: PF.gem(a, q, eps=eps, **window), (xt, pt))
    onnx_y = onnx_forward("gem", x, powers, eps=eps, **window)
    assert_close(onnx_y, expected.astype(np.float32), what=f"gem gem_p {window}")


def test_gem_learnable_p_equals_the_fixed_parameter_and_overrides_it():
    x = np.abs(np.random.default_rng(2).standard_normal((2, 4, 9, 5))).astype(np.float32)
    fixed = onnx_forward("gem", x, p=2.5)
    assert_close(onnx_forward("gem", x, [2.5]), fixed)  # p = 3 (default) is overridden
    assert_close(onnx_forward("gem", x, [2.5] * 4), fixed)
    t = PF.gem(torch.from_numpy(x), torch.tensor([2.5]), p=6.0).numpy()
    assert_close(t, fixed)
    mixed = onnx_forward("gem", x, [1.0, 2.0, 3.0, 60.0])
    assert_close(mixed[:, 0, 0, 0], x[:, 0].mean(axis=(1, 2)), what="p=1: the mean")
    assert_close(mixed[:, 1:], np.concatenate([onnx_forward("gem", x[:, i : i + 1], p=q) for i, q in ((1, 2.0), (2, 3.0), (3, 60.0))], 1))


@pytest.mark.parametrize("window", [{}, {"kernel": 2}])
def test_gem_learnable_p_special_values_as_torch(window):
    """With ``gem_p`` the graph takes ``exp(p ln c)`` for ``c^p`` (``c = max(x, eps) > 0``):
    NaN, +inf, -inf (clamped to eps), zeros, values whose power overflows, as torch."""
    x = np.abs(np.random.default_rng(4).standard_normal((1, 3, 6, 6))).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 4, 4] = np.inf
    x[0, 1, :2, :2] = -np.inf
    x[0, 1, 4:, 4:] = 0.0
    x[0, 2, 0, :2] = 3e30  # its 5th power overflows
    for powers in ([3.0], [1.0, 2.5, 5.0], [0.5, 60.0, 2.0]):
        t = PF.gem(torch.from_numpy(x), torch.tensor(powers), **window).numpy()
        o = onnx_forward("gem", x, powers, **window)
        assert np.array_equal(np.isnan(o), np.isnan(t)) and np.array_equal(np.isinf(o), np.isinf(t)), powers
        finite = np.isfinite(t)
        np.testing.assert_allclose(o[finite], t[finite], rtol=1e-5)


def test_gem_p_input_checks():
    x = torch.ones(1, 3, 4, 4)
    for bad, match in (([1.0, 2.0], r"\[1\] or \[C\] = \[3\]"), ([0.0], "finite and > 0"),
                       ([float("nan")], "finite"), ([2.0, -1.0, 3.0], "> 0")):
        with pytest.raises(ParamError, match=match) as err:
            PF.gem(x, torch.tensor(bad))
        assert err.value.param == "gem_p"
    with pytest.raises(ParamError, match="backward takes x alone"):
        poolops.get_op("gem").bind(("x", "gem_p"), backward=True)
    graph = op_model("gem", inputs=("x", "gem_p"))
    assert [i.name for i in graph.graph.input] == ["x", "gem_p"]


class LearnedGeM(torch.nn.Module):
    """GeM with p learned (cirtorch / timm: ``nn.Parameter(torch.ones(1) * 3)``)."""

    def __init__(self, channels: int = 1):
        super().__init__()
        self.p = torch.nn.Parameter(torch.full((channels,), 3.0))

    def forward(self, x):
        return PF.gem(x, self.p)


def test_learned_p_trains():
    head = LearnedGeM(4)
    x = torch.rand(2, 4, 6, 5) + 0.1
    head(x).sum().backward()
    assert head.p.grad is not None and torch.isfinite(head.p.grad).all() and (head.p.grad != 0).all()


# ---------------------------------------------------------------- every face


@pytest.mark.parametrize("name", ('lp', 'gem'))
def test_registered_with_a_worked_example(name):
    check_worked_example_and_backward(name, onnx_backward_graph=True)


EXPORT_HEADS = {
    "lp": lambda: torch.nn.Sequential(PN.LpPool(norm_type=3.0, kernel=2, ceil_mode=True), PN.GlobalAvgPool()),
    "gem": lambda: PN.GeMPool(),
    "gem-windowed": lambda: torch.nn.Sequential(PN.GeMPool(kernel=2), PN.GlobalMaxPool()),
    "gem-learned-p": lambda: LearnedGeM(1),
    "gem-learned-p-per-channel": lambda: LearnedGeM(4),
}


@pytest.mark.parametrize("head", EXPORT_HEADS)
def test_modules_export_with_dynamic_sizes(head, tmp_path):
    check_head_export(EXPORT_HEADS[head](), tmp_path, head)
