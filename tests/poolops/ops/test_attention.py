"""Worked examples and edge cases of ``attention`` and ``se`` (poolops/ops/attention.py):
torch function and ONNX forward against the docs' examples.
(tests/poolops/test_torch_onnx_parity.py covers random parameters, shapes and extra
inputs; tests/poolops/test_nn_heads.py the export.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import poolops
import poolops.nn as PN
from support.faces import both_faces, check_worked_example_and_backward, onnx_forward
from support.runtime import assert_close


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


def channel_attention_pool(x, w1, b1, w2, b2):
    """The sources' ``ChannelAttentionPool.forward`` (an SE block's fc layers, then the
    weighted global average), written out in float64 as the source has it."""
    x = torch.as_tensor(np.asarray(x, np.float64))
    w1, b1, w2, b2 = (torch.as_tensor(np.asarray(t, np.float64)) for t in (w1, b1, w2, b2))
    b, c = x.shape[:2]
    avg = x.mean(dim=(2, 3)).view(b, c)  # AdaptiveAvgPool2d(1)
    attention = torch.sigmoid(torch.relu(avg @ w1.T + b1) @ w2.T + b2).view(b, c, 1, 1)
    return (x * attention).mean(dim=(2, 3)).numpy()


def test_se_pooled_worked_example():
    one, zero = [[1.0]], [0.0]
    g = 1 / (1 + np.exp(-2.0))
    for y in both_faces("se", [[[[1.0, 3.0]]]], one, zero, one, zero, pooled=True):
        assert y.shape == (1, 1)
        np.testing.assert_allclose(y, [[2 * g]], rtol=1e-6)


@pytest.mark.parametrize("shape", [(2, 6, 5, 7), (1, 3, 1, 1), (3, 16, 1, 9), (2, 4, 40, 2)])
def test_se_pooled_is_the_sources_channel_attention_pool(shape):
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    c, r = shape[1], max(1, shape[1] // 16) + 1
    weights = [rng.standard_normal(s).astype(np.float32) for s in ((r, c), (r,), (c, r), (c,))]
    expected = channel_attention_pool(x, *weights)
    for y in both_faces("se", x, *weights, pooled=True):
        assert y.shape == (shape[0], c)
        assert_close(y, expected, floor=0.01)
    maps = both_faces("se", x, *weights)  # the map's global average is the pooled vector
    for m in maps:
        assert_close(m.astype(np.float64).mean(axis=(2, 3)), expected, floor=0.01)


def test_se_pooled_gradients_to_x_and_weights():
    rng = np.random.default_rng(4)
    args = [torch.tensor(rng.standard_normal(s), requires_grad=True) for s in ((2, 4, 3, 5), (2, 4), (2,), (4, 2), (4,))]
    spec = poolops.get_op("se")
    p = spec.parse({"pooled": True})
    assert torch.autograd.gradcheck(lambda *a: spec.torch_fn(p, *a)[0], tuple(args))
    y = spec.torch_fn(p, *args)[0]
    y.backward(torch.ones_like(y))
    ref = [a.detach().clone().requires_grad_() for a in args]
    b, c = ref[0].shape[:2]
    att = torch.sigmoid(torch.relu(ref[0].mean((2, 3)) @ ref[1].T + ref[2]) @ ref[3].T + ref[4]).view(b, c, 1, 1)
    (ref[0] * att).mean(dim=(2, 3)).sum().backward()
    for a, r in zip(args, ref):
        np.testing.assert_allclose(a.grad.numpy(), r.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_se_pooled_is_a_fixed_length_head():
    assert PN.SqueezeExcite(pooled=True).out_features(12) == 12
    with pytest.raises(ValueError, match="depends on the input size"):
        PN.SqueezeExcite().out_features(12)


# ---------------------------------------------------------------- every face


@pytest.mark.parametrize("name", ("attention", "se"))
def test_registered_with_a_worked_example(name):
    check_worked_example_and_backward(name, onnx_backward_graph=False)  # autograd in torch; no ONNX backward graph
