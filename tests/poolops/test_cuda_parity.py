"""Parity on ONNX Runtime's CUDA execution provider (runs where a GPU and onnxruntime-gpu
are present; skipped elsewhere). ONNX Runtime places shape arithmetic on the CPU on
purpose (so ``session.disable_cpu_ep_fallback`` would refuse every graph with dynamic
shapes); each graph's first run is profiled instead, and no node that computes on tensor
data may run on the CPU (:mod:`poolops.onnx.placement`)."""

from __future__ import annotations

import os

import numpy as np
import onnxruntime as ort
import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from support.parity import check_backward
from support.parity import draw_case as _draw_case
from support.parity import draw_input as _drawn_input
from support.parity import draw_inputs as _draw_inputs
from support.parity import extra_inputs as _extra_inputs
from support.parity import scale_floor as _floor
from support.parity import torch_args as _torch_args
from support.runtime import assert_close

import poolops
from poolops.inputs import example_inputs
from poolops.onnx import op_backward_model, op_model
from poolops.onnx.placement import data_nodes_on_cpu, placements, summary

pytestmark = pytest.mark.skipif(
    "CUDAExecutionProvider" not in ort.get_available_providers(), reason="no CUDA execution provider"
)
PROVIDERS = ["CUDAExecutionProvider", "CPUExecutionProvider"]
OPS = poolops.list_ops()
SHAPES = [(2, 3, 17, 23), (1, 4, 64, 48), (3, 2, 5, 3)]
SHAPES_BY_RANK = {  # x of the 1-D and 3-D ops
    1: [(2, 3, 391), (1, 4, 3072), (3, 2, 15)],
    2: SHAPES,
    3: [(2, 3, 5, 7, 11), (1, 4, 16, 12, 16), (3, 2, 1, 5, 3)],
}
RANK_OF_8X8 = {1: (2, 3, 64), 2: (2, 3, 8, 8), 3: (2, 3, 4, 4, 4)}


class CudaGraph:
    """A CUDA session of ``model``; the first ``run`` is profiled and fails the test if a
    node that computes on data ran on the CPU."""

    def __init__(self, model, what: str):
        self.model, self.what, self.checked = model, what, False
        so = ort.SessionOptions()
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(model.SerializeToString(), so, providers=PROVIDERS)
        assert self.sess.get_providers()[0] == PROVIDERS[0]

    def run(self, _outputs, feeds):
        if not self.checked:
            self.checked = True
            _, found = placements(self.model, feeds, PROVIDERS)
            bad = data_nodes_on_cpu(found)
            assert not bad, f"{self.what}: data on the CPU ({summary(found)}): {bad}"
        return self.sess.run(None, feeds)


def cuda_session(model, what: str = "") -> CudaGraph:
    return CudaGraph(model, what)


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
    fwd = cuda_session(op_model(name, inputs=names), f"{name} forward")
    bwd = cuda_session(op_backward_model(name), f"{name} backward") if spec.onnx_backward and not with_optional else None
    for shape in SHAPES_BY_RANK[spec.spatial_dims]:
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
            held = {n: extra[n] for n in spec.backward_inputs}
            (grad_x,) = bwd.run(None, {"x": x, **held, "grad_y": g.numpy()})
            assert_close(grad_x, xt.grad.numpy(), what=f"{name} backward on CUDA at {shape}")


# Every session is compiled for the GPU: fewer drawn cases than on the CPU (test_parity).
CUDA_EXAMPLES = int(os.environ.get("POOLOPS_CUDA_EXAMPLES", "8"))
NO_SHRINK = (Phase.explicit, Phase.reuse, Phase.generate)  # a failing case as drawn: device time is short


@pytest.mark.parametrize("name", OPS)
@settings(max_examples=CUDA_EXAMPLES, phases=NO_SHRINK)
@given(data=st.data())
def test_cuda_drawn_parameters_match_torch(name, data):
    """Drawn parameters (every variant the strategies reach: outputs, padding, modes,
    ``propagate_nan``, optional inputs), several dynamic sizes per graph."""
    spec, p, shapes = _draw_case(data, name, max_shapes=2)
    names = _draw_inputs(data, spec)
    sess = cuda_session(op_model(name, inputs=names, **p.model_dump()), f"{name} {p}")
    for shp in shapes:
        x = _drawn_input(data, spec, shp)
        extra = _extra_inputs(data, spec, p, names, shp)
        expected = spec.torch_fn(p, torch.from_numpy(x), *_torch_args(spec, extra))
        for out_name, e, a in zip(spec.outputs, expected, sess.run(None, {"x": x, **extra})):
            if out_name == "indices":
                np.testing.assert_array_equal(a, e.numpy(), err_msg=f"{name} {p} indices on CUDA at {shp}")
            else:
                assert_close(a, e.numpy(), what=f"{name} {p} on CUDA at {shp}", floor=_floor(x))


@pytest.mark.parametrize("name", [n for n in OPS if poolops.get_op(n).onnx_backward is not None])
@settings(max_examples=CUDA_EXAMPLES, phases=NO_SHRINK)
@given(data=st.data())
def test_cuda_drawn_parameters_backward_match_autograd(name, data):
    spec, p, shapes = _draw_case(data, name, max_shapes=2)
    sess = cuda_session(op_backward_model(name, **p.model_dump()), f"{name} backward {p}")
    check_backward(data, spec, p, shapes, sess, " on CUDA")


@pytest.mark.parametrize("name", [n for n in OPS if "propagate_nan" in poolops.get_op(n).params.model_fields])
@pytest.mark.parametrize("propagate_nan", [True, False])
def test_cuda_nan_and_inf(name, propagate_nan):
    """NaN, +-inf and overflow on CUDA kernels (whose max/compare rules differ from the CPU's);
    ``propagate_nan=False`` leaves windows with NaN or only -inf unspecified (see ``max``),
    so it gets neither."""
    spec = poolops.get_op(name)
    x = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    x[0, 1, 3, 5] = np.nan if propagate_nan else -1.0
    x[0, 0, 0, :2] = [np.inf, -np.inf]
    x[1, 2, :, :] = -np.inf if propagate_nan else -3.0
    x[1, 1, 4:, 4:] = np.finfo(np.float32).max
    x = x.reshape(RANK_OF_8X8[spec.spatial_dims])
    p = spec.parse({"propagate_nan": propagate_nan})
    expected = spec.torch_fn(p, torch.from_numpy(x))[0].numpy()
    graph = cuda_session(op_model(name, outputs=("y",), propagate_nan=propagate_nan), f"{name} NaN")
    (actual,) = graph.run(None, {"x": x})
    assert_close(actual, expected, what=f"{name} propagate_nan={propagate_nan} on CUDA")
