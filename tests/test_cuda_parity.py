"""Parity on ONNX Runtime's CUDA execution provider (runs where a GPU and onnxruntime-gpu
are present; skipped elsewhere). ``session.disable_cpu_ep_fallback`` makes session
creation fail if any node would silently fall back to the CPU."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from conftest import assert_close

import poolops
from poolops.inputs import example_inputs
from poolops.onnx import op_backward_model, op_model

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(), reason="no CUDA execution provider"
)
OPS = poolops.list_ops()
SHAPES = [(2, 3, 17, 23), (1, 4, 64, 48), (3, 2, 5, 3)]


def cuda_session(model) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.add_session_config_entry("session.disable_cpu_ep_fallback", "1")
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CUDAExecutionProvider"])
    assert sess.get_providers()[0] == "CUDAExecutionProvider"
    return sess


def _input(spec, shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    return np.abs(x) if spec.input_domain == "nonnegative" else x


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("with_optional", [False, True], ids=["required_inputs", "all_inputs"])
def test_cuda_forward_and_backward_match_torch(name, with_optional):
    """Default parameters; inputs other than x from their kinds' example generators."""
    spec = poolops.get_op(name)
    if with_optional and not spec.optional_inputs:
        pytest.skip("no optional inputs")
    p = spec.parse({})
    names = spec.all_inputs if with_optional else spec.inputs
    fwd = cuda_session(op_model(name, inputs=names))
    bwd = cuda_session(op_backward_model(name)) if spec.onnx_backward and not with_optional else None
    for shape in SHAPES:
        x = _input(spec, shape)
        try:
            spec.check(p, x)
        except ValueError:
            continue
        extra = example_inputs(names[1:], shape, np.random.default_rng(1), p=p)
        xt = torch.from_numpy(x).requires_grad_()
        args = [None if extra.get(n) is None else torch.from_numpy(extra[n]) for n in spec.all_inputs[1:]]
        expected = spec.torch_fn(p, xt, *args)
        for out_name, e, a in zip(spec.outputs, expected, fwd.run(None, {"x": x, **extra})):
            if out_name == "indices":
                np.testing.assert_array_equal(a, e.numpy(), err_msg=f"{name} indices on CUDA at {shape}")
            else:
                # floor: 1% of the input's scale, as in test_parity (outputs that are means can cancel to ~0)
                floor = max(0.01 * float(np.abs(x).max()), 1e-3)
                assert_close(a, e.detach().numpy(), what=f"{name} on CUDA at {shape}", floor=floor)
        if bwd is not None:
            g = torch.ones_like(expected[0])
            expected[0].backward(g)
            (grad_x,) = bwd.run(None, {"x": x, "grad_y": g.numpy()})
            assert_close(grad_x, xt.grad.numpy(), what=f"{name} backward on CUDA at {shape}")
