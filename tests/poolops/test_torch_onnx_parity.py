"""Torch reference vs ONNX Runtime (CPU), forward and backward, on random dynamic shapes.

One ONNX graph per drawn parameter set is run at several drawn input sizes: N, C,
H and W are all dynamic. Parametrised over the registry: every op is covered. Inputs
other than ``x`` (required ones, and a drawn subset of the optional ones) come from
their input kinds' example generators (:func:`poolops.inputs.example_inputs`). Ops
without an ONNX backward graph have their torch autograd checked numerically.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import poolops
from poolops.inputs import kind
from poolops.onnx import op_backward_model, op_model
from support.parity import (accepts, check_backward, draw_case, draw_input, draw_inputs, extra_inputs,
                            scale_floor, torch_args)
from support.runtime import assert_close, session
from support.strategies import params_for, shape

OPS = poolops.list_ops()


@pytest.mark.parametrize("name", OPS)
@given(data=st.data())
def test_forward_matches_torch(name, data):
    spec, p, shapes = draw_case(data, name, max_shapes=3)
    names = draw_inputs(data, spec)
    sess = session(op_model(name, inputs=names, **p.model_dump()))
    for shp in shapes:
        x = draw_input(data, spec, shp)
        extra = extra_inputs(data, spec, p, names, shp)
        expected = spec.torch_fn(p, torch.from_numpy(x), *torch_args(spec, extra))
        actual = sess.run(None, {"x": x, **extra})
        for out_name, e, a in zip(spec.outputs, expected, actual):
            if out_name == "indices":
                np.testing.assert_array_equal(a, e.numpy(), err_msg=f"{name} indices at {shp}")
            else:
                assert_close(a, e.numpy(), what=f"{name} {p} at {shp}", floor=scale_floor(x))


@pytest.mark.parametrize("name", [n for n in OPS if poolops.get_op(n).onnx_backward is not None])
@given(data=st.data())
def test_backward_matches_autograd(name, data):
    spec, p, shapes = draw_case(data, name, max_shapes=2)
    check_backward(data, spec, p, shapes, session(op_backward_model(name, **p.model_dump())))


@pytest.mark.parametrize("name", [n for n in OPS if poolops.get_op(n).onnx_backward is None])
@given(data=st.data())
def test_autograd_without_onnx_backward_is_right(name, data):
    """Ops whose backward is torch autograd only: autograd equals finite differences
    (float64 ``gradcheck``) for x and every float input, at small drawn shapes."""
    spec = poolops.get_op(name)
    p = spec.parse(data.draw(params_for(name), label="params"))
    shp = data.draw(st.tuples(st.integers(1, 2), st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)), label="shape")
    assume(accepts(spec, p, shp))
    names = draw_inputs(data, spec)
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = rng.standard_normal(shp)
    extra = {n: v.astype(np.float64) if v.dtype == np.float32 else v for n, v in extra_inputs(data, spec, p, names, shp).items()}
    args = [torch.from_numpy(x).requires_grad_()] + [
        t.requires_grad_() if t is not None and t.is_floating_point() and kind(n).differentiable else t
        for n, t in zip(spec.all_inputs[1:], torch_args(spec, extra))
    ]
    assert torch.autograd.gradcheck(lambda *a: spec.torch_fn(p, *a)[0], tuple(args), eps=1e-6, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", [n for n in OPS if "propagate_nan" in poolops.get_op(n).params.model_fields])
def test_nan_propagates(name):
    spec = poolops.get_op(name)
    x = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    x[0, 1, 3, 5] = np.nan
    x[0, 0, 0, :2] = [np.inf, -np.inf]  # +inf and -inf in one window: +inf, not NaN
    x[1, 2, :, :] = -np.inf
    x[1, 1, 4:, 4:] = np.finfo(np.float32).max  # squares overflow to inf, not NaN
    x = x.reshape({1: (2, 3, 64), 2: (2, 3, 8, 8), 3: (2, 3, 4, 4, 4)}[spec.spatial_dims])  # the op's rank
    p = spec.parse({})
    expected = spec.torch_fn(p, torch.from_numpy(x))[0].numpy()
    assert np.isnan(expected).any()
    (actual,) = session(op_model(name, outputs=("y",))).run(None, {"x": x})
    assert_close(actual, expected, what=f"{name} NaN")


VALID_OPS = [n for n in OPS if "valid" in poolops.get_op(n).optional_inputs]


@pytest.mark.parametrize("name", VALID_OPS)
@given(data=st.data())
def test_valid_regions_match_torch_and_ignore_padding(name, data):
    """With ``valid``, each sample is pooled over its own region; padding (here huge
    values, inf and NaN) changes nothing: a padded batch equals one-by-one pooling."""
    from poolops.inputs import kind

    spec = poolops.get_op(name)
    p = spec.parse(data.draw(params_for(name), label="params"))
    shp = data.draw(shape, label="shape")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    x = draw_input(data, spec, shp)
    valid = kind("valid").example(shp, rng)
    for n, (h, w) in enumerate(valid):
        x[n, :, h:, :] = data.draw(st.sampled_from([1e30, np.inf, np.nan, -5.0]), label="pad")
        x[n, :, :, w:] = np.nan
    sess = session(op_model(name, outputs=("y",), inputs=("x", "valid"), **p.model_dump()))
    (actual,) = sess.run(None, {"x": x, "valid": valid})
    expected = spec.torch_fn(p, torch.from_numpy(x), torch.from_numpy(valid), outputs=("y",))[0].numpy()
    inside = np.concatenate([x[n, :, :h, :w].ravel() for n, (h, w) in enumerate(valid)])
    assert_close(actual, expected, what=f"{name} {p} valid={valid.tolist()}", floor=scale_floor(inside))
    one_by_one = [
        spec.torch_fn(p, torch.from_numpy(x[n : n + 1, :, :h, :w]), outputs=("y",))[0].numpy() for n, (h, w) in enumerate(valid)
    ]
    assert_close(actual, np.concatenate(one_by_one), what=f"{name} one by one", floor=scale_floor(inside))
