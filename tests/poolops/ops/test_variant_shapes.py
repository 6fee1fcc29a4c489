"""Degenerate shapes through one graph for the op variants of issue 16 item 7 (``se``
pooled, ``gem`` with ``gem_p``, ``max``/``avg`` with ``tf_same``, ``spp`` with (rows, cols)
levels): N = 0, 1x1 maps, one row or column (fewer cells than bins or kernel), against
torch, forward and (where the op has one) the backward graph."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import poolops
from poolops.inputs import example_inputs
from poolops.onnx import op_backward_model, op_model
from support.runtime import session

SHAPES = [(0, 3, 5, 4), (2, 3, 1, 1), (1, 2, 1, 60), (1, 2, 40, 1), (3, 1, 2, 3)]
CASES = [
    ("se", {"pooled": True}, ()),
    ("gem", {}, ("gem_p",)),
    ("gem", {"kernel": 1, "stride": (1, 3)}, ("gem_p",)),
    ("max", {"kernel": 3, "stride": 2, "tf_same": True}, ()),
    ("max", {"kernel": (2, 3), "stride": (1, 3), "dilation": (1, 2), "tf_same": True}, ()),
    ("avg", {"kernel": 3, "stride": 2, "tf_same": True}, ()),
    ("avg", {"kernel": (1, 5), "stride": 3, "divisor_override": 2, "tf_same": True}, ()),
    ("spp", {"levels": (1, (2, 3), (5, 1))}, ()),
    ("spp", {"levels": (1, (2, 3), (5, 1)), "mode": "avg"}, ()),
    ("spp", {"levels": ((3, 2),), "bins": "sppnet", "mode": "avg"}, ()),
]


@pytest.mark.parametrize("name, params, optional", CASES, ids=lambda v: str(v))
def test_degenerate_shapes_through_one_graph(name, params, optional):
    spec = poolops.get_op(name)
    p = spec.parse(params)
    ins = spec.inputs + tuple(n for n in spec.optional_inputs if n in optional)
    fwd = session(op_model(name, outputs=("y",), inputs=ins, **params))
    bwd = session(op_backward_model(name, **params)) if spec.onnx_backward and ins == ("x",) else None
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        x = rng.standard_normal(shape).astype(np.float32)
        if name == "gem":
            x = np.abs(x)
        extra = example_inputs(ins[1:], shape, rng, p)
        spec.check(p, x, *[extra.get(n) for n in spec.all_inputs[1:]])
        xt = torch.from_numpy(x).requires_grad_()
        want = spec.torch_fn(p, xt, *[torch.from_numpy(extra[n]) if n in extra else None for n in spec.all_inputs[1:]])[0]
        (got,) = fwd.run(None, {"x": x, **extra})
        assert got.shape == tuple(want.shape) == spec.shape(p, shape), (name, shape)
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=f"{name} {shape}")
        if bwd is None:
            continue
        g = rng.standard_normal(got.shape).astype(np.float32)
        if want.numel():
            want.backward(torch.from_numpy(g))
        (gx,) = bwd.run(None, {"x": x, "grad_y": g})
        expected = xt.grad.numpy() if xt.grad is not None else np.zeros_like(x)
        np.testing.assert_allclose(gx, expected, rtol=1e-5, atol=1e-6, err_msg=f"{name} backward {shape}")
