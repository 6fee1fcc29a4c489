"""Worked examples and edge cases of ``bilinear``: torch function and ONNX forward
against the docs' examples, autograd against hand-derived gradients.
(tests/poolops/test_torch_onnx_parity.py covers random parameters, shapes and extra
inputs; tests/poolops/test_nn_heads.py the export.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import poolops
import poolops.functional as PF
import poolops.nn as PN
from support.faces import both_faces, check_worked_example_and_backward
from support.runtime import assert_close


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


# ---------------------------------------------------------------- every face


@pytest.mark.parametrize("name", ("bilinear",))
def test_registered_with_a_worked_example(name):
    check_worked_example_and_backward(name, onnx_backward_graph=False)  # autograd in torch; no ONNX backward graph
