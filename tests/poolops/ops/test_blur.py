"""``blur`` (poolops/ops/blur.py): worked example, a naive reference of antialiased-cnns'
``BlurPool`` (every filter size and padding), edges and bad inputs. (The property tests
of tests/poolops/test_torch_onnx_parity.py cover random parameters and shapes, forward
and backward; the shift test is in test_max_blur.py.)"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

import poolops
import poolops.functional as PF
from poolops.params import ParamError
from support.faces import autograd, check_all_faces, check_worked_example_and_backward, onnx_backward, onnx_forward
from support.naive import binomial, blur
from support.runtime import assert_close

PARAMS = {"filt_size": 3, "stride": (1, 2), "pad_type": "replicate"}


def test_worked_example():
    x = [[[[1, 2, 3, 4]]]]
    check_all_faces("blur", x, [[[[1.25, 3.0]]]], [[[[1.0, 1.0]]]], [[[[0.75, 0.5, 0.5, 0.25]]]], **PARAMS)
    check_worked_example_and_backward("blur", onnx_backward_graph=True)


def test_filters_are_the_reference_binomials():
    """antialiased-cnns ``get_filter``: [1], [1, 1], [1, 2, 1], ..., [1, 6, 15, 20, 15, 6, 1]."""
    assert [binomial(f) for f in (1, 2, 3, 7)] == [[1], [1, 1], [1, 2, 1], [1, 6, 15, 20, 15, 6, 1]]
    x = np.zeros((1, 1, 9, 9), np.float32)
    x[0, 0, 4, 4] = 1.0  # an impulse: the output is the filter itself
    y = onnx_forward("blur", x, filt_size=5, stride=1, pad_type="zero")
    a = np.array(binomial(5), np.float64)
    np.testing.assert_allclose(y[0, 0, 2:7, 2:7], np.outer(a, a) / a.sum() ** 2, atol=1e-7)


CASES = [
    (f, pad, stride, shape)
    for f, pad in itertools.product(range(1, 8), ("reflect", "replicate", "zero"))
    for stride, shape in (((2, 2), (2, 3, 11, 9)), ((1, 3), (1, 2, 8, 7)), ((3, 1), (1, 1, 4, 13)))
] + [(f, pad, (2, 2), (1, 2, 1, 1)) for f in (1, 4, 7) for pad in ("replicate", "zero")]  # 1x1: all padding


@pytest.mark.parametrize("filt_size, pad_type, stride, shape", CASES)
def test_matches_naive_reference(filt_size, pad_type, stride, shape):
    rng = np.random.default_rng(filt_size * 100 + sum(shape))
    x = rng.standard_normal(shape).astype(np.float32)
    params = {"filt_size": filt_size, "pad_type": pad_type, "stride": stride}
    expected = blur(x, filt_size, stride, pad_type).astype(np.float32)
    g = rng.standard_normal(expected.shape).astype(np.float32)
    y, grad = autograd("blur", x, g, **params)
    assert_close(y, expected, what="torch")
    assert_close(onnx_forward("blur", x, **params), expected, what="onnx")
    assert_close(onnx_backward("blur", x, g, **params), grad, what="backward")


def test_smallest_maps_reflect_takes():
    """Reflect padding by p needs p + 1 cells: 4x4 for filt_size 7, 1x1 for filt_size 1."""
    for f, side in ((7, 4), (4, 3), (2, 2), (1, 1)):
        x = np.random.default_rng(f).standard_normal((1, 1, side, side + 1)).astype(np.float32)
        assert_close(onnx_forward("blur", x, filt_size=f), blur(x, f, (2, 2), "reflect").astype(np.float32))
        if side > 1:
            with pytest.raises(ParamError, match="'pad_type'.*replicate"):
                PF.blur(torch.ones(1, 1, 8, side - 1), filt_size=f)


@pytest.mark.parametrize("params, name", [({"filt_size": 0}, "filt_size"), ({"filt_size": 8}, "filt_size"),
                                          ({"stride": 0}, "stride"), ({"pad_type": "circular"}, "pad_type")])
def test_bad_parameters_are_named(params, name):
    with pytest.raises(ParamError) as err:
        poolops.get_op("blur").parse(params)
    assert err.value.param == name
