"""Worked examples, edge cases and input checks of ``bilinear``, ``attention`` and ``se``:
torch function and ONNX forward against the docs' examples, autograd against
hand-derived gradients. (tests/test_parity.py covers random parameters, shapes and
extra inputs; tests/test_heads.py the export.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import assert_close, session

import poolops
import poolops.functional as PF
import poolops.nn as PN
from poolops.onnx import op_model
from poolops.params import ParamError

OPS = ("bilinear", "attention", "se")


def onnx_forward(name, x, *extra, **params):
    spec = poolops.get_op(name)
    names = spec.all_inputs[: 1 + len(extra)]
    feeds = {n: np.asarray(v, np.float32) for n, v in zip(names, (x, *extra))}
    return session(op_model(name, inputs=names, **params)).run(None, feeds)[0]


def both_faces(name, x, *extra, **params):
    """(torch, ONNX Runtime) outputs of the op."""
    t = [torch.tensor(np.asarray(v, np.float32)) for v in (x, *extra)]
    return PF.call(name, *t, **params).numpy(), onnx_forward(name, x, *extra, **params)


# ---------------------------------------------------------------- bilinear

TWO_CHANNELS = [[[[1, 3]], [[2, 0]]]]  # positions (1, 2) and (3, 0): B = [[5, 1], [1, 2]]


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"signed_sqrt": False, "l2_normalize": False}, [5, 1, 1, 2]),
        ({"l2_normalize": False}, [np.sqrt(5), 1, 1, np.sqrt(2)]),
        ({}, np.array([np.sqrt(5), 1, 1, np.sqrt(2)]) / 3),
        ({"signed_sqrt": False}, np.array([5, 1, 1, 2]) / np.sqrt(31)),
    ],
)
def test_bilinear_worked_example(params, expected):
    for y in both_faces("bilinear", TWO_CHANNELS, **params):
        np.testing.assert_allclose(y, [expected], rtol=1e-6)


def test_bilinear_multimodal_is_c1_major_and_signed():
    """x2 given: B[i, j] = mean over positions of x_i * x2_j, flattened C1-major;
    a negative entry keeps its sign through the square root."""
    rng = np.random.default_rng(0)
    x, x2 = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 2, 4, 5))
    b = np.einsum("nihw,njhw->nij", x, x2) / 20
    raw, onnx_raw = both_faces("bilinear", x, x2, signed_sqrt=False, l2_normalize=False)
    assert raw.shape == (2, 6)
    assert_close(raw, b.reshape(2, 6).astype(np.float32))
    assert_close(onnx_raw, raw)
    z = np.sign(b) * np.sqrt(np.abs(b))
    z = z.reshape(2, 6) / np.linalg.norm(z.reshape(2, 6), axis=1, keepdims=True)
    for y in both_faces("bilinear", x, x2):
        assert_close(y, z.astype(np.float32))


def test_bilinear_zero_sample_and_zero_gradient_at_zero():
    """A sample of zeros stays zeros (eps floor); where B = 0 the gradient is 0, not NaN."""
    x = np.zeros((2, 2, 3, 3), np.float32)
    x[1, 0] = 1.0  # sample 1: channel 0 ones, channel 1 zeros -> B = [[1, 0], [0, 0]]
    for y in both_faces("bilinear", x):
        np.testing.assert_allclose(y, [[0, 0, 0, 0], [1, 0, 0, 0]], atol=1e-7)
    xt = torch.tensor(x, requires_grad=True)
    PF.bilinear(xt).sum().backward()
    assert torch.isfinite(xt.grad).all()
    plain = torch.tensor(x, requires_grad=True)  # what the naive formula would give
    b = torch.einsum("nihw,njhw->nij", plain, plain).flatten(1) / 9
    (torch.sign(b) * b.abs().sqrt()).sum().backward()
    assert torch.isnan(plain.grad).any()


def test_bilinear_shape_and_module():
    assert PF.bilinear(torch.randn(2, 5, 7, 3)).shape == (2, 25)
    assert PF.bilinear(torch.randn(2, 5, 7, 3), torch.randn(2, 4, 7, 3)).shape == (2, 20)
    spec = poolops.get_op("bilinear")
    assert spec.shape(spec.parse({}), (2, 5, 7, 3), (2, 4, 7, 3)) == (2, 20)
    assert spec.shape(spec.parse({}), (2, 5, 7, 3), None) == (2, 25)
    assert PN.BilinearPool(signed_sqrt=False)(torch.ones(1, 2, 2, 2)).shape == (1, 4)


# ---------------------------------------------------------------- attention


def test_attention_worked_example():
    x = [[[[0.0, np.log(3.0)]]]]
    for y in both_faces("attention", x):
        np.testing.assert_allclose(y, [[[[0.75 * np.log(3.0)]]]], rtol=1e-6)
    for y in both_faces("attention", x, [[[[0.0, 0.0]]]]):  # flat map: the mean
        np.testing.assert_allclose(y, [[[[0.5 * np.log(3.0)]]]], rtol=1e-6)


def test_attention_default_map_is_channel_mean_and_per_channel_maps():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)
    xt = torch.from_numpy(x)
    w = F.softmax(xt.mean(1).flatten(1), dim=1)  # [N, HW]
    expected = (xt.flatten(2) * w[:, None]).sum(2)[:, :, None, None].numpy()
    for y in both_faces("attention", x):
        assert_close(y, expected, floor=0.01)
    maps = rng.standard_normal((2, 3, 5, 4)).astype(np.float32)  # one map per channel
    w = F.softmax(torch.from_numpy(maps).flatten(2) / 2.0, dim=2)
    expected = (xt.flatten(2) * w).sum(2)[:, :, None, None].numpy()
    for y in both_faces("attention", x, maps, temperature=2.0):
        assert_close(y, expected, floor=0.01)


def test_attention_temperature_limits():
    x = np.random.default_rng(2).standard_normal((1, 2, 6, 6)).astype(np.float32)
    hot = onnx_forward("attention", x, temperature=1e4)
    np.testing.assert_allclose(hot, x.mean(axis=(2, 3), keepdims=True), atol=1e-3)
    a = x.mean(axis=1).ravel()
    cold = onnx_forward("attention", x, temperature=1e-3)
    np.testing.assert_allclose(cold.ravel(), x.reshape(1, 2, -1)[0, :, a.argmax()], atol=1e-4)


# ---------------------------------------------------------------- se


def test_se_worked_example():
    one, zero = [[1.0]], [0.0]
    g = 1 / (1 + np.exp(-2.0))
    for y in both_faces("se", [[[[1.0, 3.0]]]], one, zero, one, zero):
        np.testing.assert_allclose(y, [[[[g, 3 * g]]]], rtol=1e-6)


def test_se_matches_an_se_block_of_linear_layers():
    torch.manual_seed(0)
    fc1, fc2 = torch.nn.Linear(6, 3), torch.nn.Linear(3, 6)
    x = torch.randn(2, 6, 5, 7)
    with torch.no_grad():
        expected = x * torch.sigmoid(fc2(torch.relu(fc1(x.mean((2, 3))))))[:, :, None, None]
        weights = [t.detach().numpy() for t in (fc1.weight, fc1.bias, fc2.weight, fc2.bias)]
    for y in both_faces("se", x.numpy(), *weights):
        assert_close(y, expected.numpy())


# ---------------------------------------------------------------- inputs and parameters


@pytest.mark.parametrize(
    "name, extra, bad, expected",
    [
        ("bilinear", [(2, 4, 5, 6)], "x2", r"'x2': expected shape \[N, C2, H, W\] = \[2, C2, 5, 7\], got \(2, 4, 5, 6\)"),
        ("bilinear", [(1, 4, 5, 7)], "x2", r"= \[2, C2, 5, 7\], got \(1, 4, 5, 7\)"),
        ("attention", [(2, 2, 5, 7)], "attn", r"'attn': expected shape \[N, 1, H, W\] or \[N, C, H, W\]"),
        ("attention", [(2, 1, 5)], "attn", r"'attn': expected shape \[N, A, H, W\]"),
        ("se", [(2, 3), (2,), (3, 3), (3,)], "se_w2", r"'se_w2': expected shape \[C, R\] = \[3, 2\], got \(3, 3\)"),
        ("se", [(2, 4), (2,), (3, 2), (3,)], "se_w1", r"'se_w1': expected shape \[R, C\] = \[R, 3\]"),
        ("se", [(2, 3), (3,), (3, 2), (3,)], "se_b1", r"'se_b1': expected shape \[R\] = \[2\]"),
        ("se", [(2, 3), (2,), (3, 2)], "se_b2", r"'se_b2': is a required input"),
    ],
)
def test_wrong_extra_inputs_are_named(name, extra, bad, expected):
    x = torch.ones(2, 3, 5, 7)
    with pytest.raises(ParamError, match=expected) as err:
        PF.call(name, x, *[torch.ones(s) for s in extra])
    assert err.value.param == bad
    if "required" not in expected:  # the same check on numpy inputs (what the service has)
        spec = poolops.get_op(name)
        with pytest.raises(ParamError, match=expected):
            spec.check(spec.parse({}), x.numpy(), *[np.ones(s, np.float32) for s in extra])


def test_integer_extra_input_is_refused():
    with pytest.raises(ParamError, match="'x2': expected float32 \\(floating point\\)"):
        PF.bilinear(torch.ones(1, 2, 3, 3), torch.ones(1, 2, 3, 3, dtype=torch.int64))


@pytest.mark.parametrize(
    "name, params, param",
    [
        ("bilinear", {"eps": 0}, "eps"),
        ("bilinear", {"eps": float("nan")}, "eps"),
        ("bilinear", {"signed_sqrt": "maybe"}, "signed_sqrt"),
        ("attention", {"temperature": 0}, "temperature"),
        ("attention", {"temperature": float("inf")}, "temperature"),
        ("se", {"reduction": 4}, "reduction"),
    ],
)
def test_bad_parameters_are_named(name, params, param):
    with pytest.raises(ParamError) as err:
        poolops.get_op(name).parse(params)
    assert err.value.param == param


@pytest.mark.parametrize("name", OPS)
def test_registered_with_a_worked_example(name):
    spec = poolops.get_op(name)
    assert "Example" in spec.doc
    assert spec.onnx_backward is None  # autograd in torch; no ONNX backward graph
