"""Every worked example of the sources (poolops/examples.py, what the UI's example buttons
load) gives the numbers the sources give, in torch and in ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import poolops.functional as PF
from poolops.examples import COMPARE_EXAMPLES, OP_EXAMPLES, SPP_EXAMPLES, Random, matrix_text
from poolops.onnx import op_backward_model, op_model
from support.runtime import run


def tensor(x) -> np.ndarray:
    if isinstance(x, Random):
        return np.random.default_rng(x.seed).standard_normal(x.shape).astype(np.float32)
    a = np.asarray(x, np.float32)
    return a.reshape((1,) * (4 - a.ndim) + a.shape)


def forward(op, params, x):
    t = PF.call(op, torch.from_numpy(x), **params)
    t = t[0] if isinstance(t, tuple) else t
    o = run(op_model(op, outputs=("y",), **params), x=x)[0]
    return t.detach().numpy(), o


def first_plane(y):
    return y[0, 0] if y.ndim == 4 else y


@pytest.mark.parametrize("ex", OP_EXAMPLES, ids=lambda e: e.key)
def test_op_example(ex):
    x = tensor(ex.x)
    for y in forward(ex.op, ex.params, x):
        if ex.y is not None:
            np.testing.assert_allclose(first_plane(y), ex.y, rtol=1e-6)
        if ex.y_shape is not None:
            assert y.shape == tuple(ex.y_shape)
        if ex.samples_from is not None:
            assert set(np.unique(y)) <= set(ex.samples_from)
    if ex.grad_x is not None:
        g = tensor(ex.grad_y)
        xt = torch.from_numpy(x).requires_grad_()
        yt = PF.call(ex.op, xt, **ex.params)
        (yt[0] if isinstance(yt, tuple) else yt).backward(torch.from_numpy(g))
        o = run(op_backward_model(ex.op, **ex.params), x=x, grad_y=g)[0]
        for gx in (xt.grad.numpy(), o):
            np.testing.assert_allclose(gx[0, 0], ex.grad_x, rtol=1e-6)
    if ex.probabilities is not None:
        k = ex.params["kernel"]
        window = x[0, 0, :k, :k].ravel()
        np.testing.assert_allclose(window / window.sum(), ex.probabilities[0], rtol=1e-6)


def test_stochastic_train_samples_follow_the_sources_probabilities():
    """The train-mode example's window tiled 2000 times: each value drawn about as often as
    its probability (0.1, 0.2, 0.3, 0.4) says."""
    ex = next(e for e in OP_EXAMPLES if e.samples_from)
    x = np.tile(tensor(ex.x), (1, 1, 40, 50))
    for y in forward(ex.op, ex.params, x):
        freq = np.array([(y == v).mean() for v in ex.samples_from])
        np.testing.assert_allclose(freq, ex.probabilities[0], atol=0.03)


@pytest.mark.parametrize("ex", COMPARE_EXAMPLES, ids=lambda e: e.key)
def test_compare_example(ex):
    x = tensor(ex.x)
    for op, params in ex.ops.items():
        for y in forward(op, params, x):
            want = ex.expect.get(op, {})
            if "y" in want:
                np.testing.assert_allclose(first_plane(y), want["y"], rtol=1e-6)
            if "y_shape" in want:
                assert y.shape == tuple(want["y_shape"])


@pytest.mark.parametrize("ex", SPP_EXAMPLES, ids=lambda e: e.key)
def test_spp_example_same_length_at_every_size(ex):
    assert ex.length == ex.channels * sum(n * n for n in ex.levels)
    for h, w in ex.sizes:
        x = np.random.default_rng(0).random((1, ex.channels, h, w), dtype=np.float32)
        for y in forward("spp", {"levels": list(ex.levels), "mode": ex.mode}, x):
            assert y.shape == (1, ex.length)


def test_matrix_text():
    assert matrix_text([[1, 3], [2, 2]]) == "1 3\n2 2"
    assert matrix_text(Random((1, 64, 64, 64))) == "random 1x64x64x64 seed 0"
    assert matrix_text([[[0.5]]]) == "[[[0.5]]]"
