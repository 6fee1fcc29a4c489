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
from poolops.onnx import op_backward_model, op_model

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(), reason="no CUDA execution provider"
)
OPS = [n for n in poolops.list_ops() if poolops.get_op(n).inputs == ("x",)]
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
def test_cuda_forward_and_backward_match_torch(name):
    spec = poolops.get_op(name)
    p = spec.parse({})
    fwd = cuda_session(op_model(name))
    bwd = cuda_session(op_backward_model(name)) if spec.onnx_backward else None
    for shape in SHAPES:
        x = _input(spec, shape)
        try:
            spec.check(p, x)
        except ValueError:
            continue
        xt = torch.from_numpy(x).requires_grad_()
        expected = spec.torch_fn(p, xt)
        for out_name, e, a in zip(spec.outputs, expected, fwd.run(None, {"x": x})):
            if out_name == "indices":
                np.testing.assert_array_equal(a, e.numpy(), err_msg=f"{name} indices on CUDA at {shape}")
            else:
                assert_close(a, e.detach().numpy(), what=f"{name} on CUDA at {shape}")
        if bwd is not None:
            g = torch.ones_like(expected[0])
            expected[0].backward(g)
            (grad_x,) = bwd.run(None, {"x": x, "grad_y": g.numpy()})
            assert_close(grad_x, xt.grad.numpy(), what=f"{name} backward on CUDA at {shape}")
