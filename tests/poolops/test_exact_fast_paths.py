"""The two paths of the max ops and of the pools that sum bins with MatMuls, against torch:
finite inputs take the fast path (no NaN or -inf passes, uniform adaptive bins as
reductions over runs; plain MatMuls), inputs with NaN, infinities or a sum that overflows
take the exact one (``blocks.if_finite``; ``blocks.bin_matmul``, where a plain MatMul
makes every bin beside an infinity NaN, ``0 * inf``); both must give PyTorch's values, and
its indices wherever PyTorch's index is defined (no NaN in the window). Gradients that
hold infinities stay in their own bins too."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import poolops
from poolops.onnx import op_backward_model, op_model
from support.runtime import assert_close, largest_node_bytes, session

FLT_MAX = np.finfo(np.float32).max


def _inputs(shape):
    rng = np.random.default_rng(7)
    finite = rng.standard_normal(shape).astype(np.float32)
    ties = np.round(finite * 2) / 2
    nan = finite.copy()
    nan[0, 0, 1, 2] = np.nan
    nan[-1, -1, -1, -1] = np.nan
    inf = finite.copy()
    inf[0, 0, :, :] = -np.inf  # a plane of only -inf
    inf[0, -1, 2, :3] = [np.inf, -np.inf, np.inf]
    inf[-1, 0, :2, :2] = -np.inf
    overflow = finite.copy()
    overflow[:, :, :3, :3] = FLT_MAX  # finite, but the guard's sum overflows: the exact path
    return {"finite": finite, "ties": ties, "nan": nan, "inf": inf, "overflow": overflow}


CASES = [
    ("max", {}, (2, 3, 16, 16)),
    ("max", {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (2, 3, 9, 14)),
    ("max", {"kernel": 3, "stride": 1, "padding": 1, "dilation": 2, "ceil_mode": True}, (1, 2, 11, 8)),
    ("adaptive_max", {"output_size": (4, 4)}, (2, 3, 16, 16)),  # uniform bins
    ("adaptive_max", {"output_size": (4, 2)}, (1, 2, 8, 6)),  # uniform bins
    ("adaptive_max", {"output_size": (7, 7)}, (2, 3, 16, 17)),  # bins of two lengths, overlapping
    ("global_max", {}, (2, 3, 9, 13)),
    ("spp", {"levels": (1, 2, 4)}, (2, 3, 16, 16)),  # uniform finest level
    ("spp", {"levels": (1, 2, 4)}, (2, 3, 13, 17)),
    ("spp", {"levels": (3, 5)}, (1, 2, 15, 10)),
    ("adaptive_avg", {"output_size": (4, 4)}, (2, 3, 16, 16)),  # uniform bins
    ("adaptive_avg", {"output_size": (7, 7)}, (2, 3, 16, 17)),  # bins of two lengths, overlapping
    ("adaptive_avg", {"output_size": (3, 5)}, (1, 2, 5, 13)),
    ("spp", {"levels": (1, 2, 4), "mode": "avg"}, (2, 3, 16, 16)),
    ("spp", {"levels": (1, 2, 4), "mode": "avg"}, (2, 3, 13, 17)),
    ("spp", {"levels": (3, 5), "mode": "avg", "bins": "sppnet"}, (1, 2, 15, 10)),  # uncovered rows
    ("adaptive_avg1d", {"output_size": (7,)}, (2, 3, 4, 5)),  # x as [N, C, H*W]
    ("adaptive_avg1d", {"output_size": (3,)}, (2, 3, 12, 64)),  # L = 4 blocks per bin: block sums
    ("adaptive_avg1d", {"output_size": (7,)}, (2, 3, 33, 64)),  # bins of two lengths, partial blocks
    ("adaptive_avg3d", {"output_size": (2, 3, 4)}, (2, 3, 10, 6)),  # x as [N, C, 2, H/2, W]
]


def _rank(x, spec):
    """x ``[N, C, H, W]`` in the op's rank: 1-D ``[N, C, H*W]``, 3-D ``[N, C, 2, H/2, W]``."""
    n, c, h, w = x.shape
    return {1: (lambda: x.reshape(n, c, h * w)), 2: (lambda: x), 3: (lambda: x.reshape(n, c, 2, h // 2, w))}[spec.spatial_dims]()


@pytest.mark.parametrize(("name", "params", "shape"), CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("kind", ["finite", "ties", "nan", "inf", "overflow"])
def test_both_paths_match_torch(name, params, shape, kind):
    spec = poolops.get_op(name)
    p = spec.parse(params)
    x = _rank(_inputs(shape)[kind], spec)
    outputs = ("y", "indices") if "indices" in spec.outputs else ("y",)
    for outs in {outputs, ("y",)}:
        expected = spec.torch_fn(p, torch.from_numpy(x), outputs=outs)
        actual = session(op_model(name, outputs=outs, **params)).run(None, {"x": x})
        for out_name, e, a in zip(outs, expected, actual):
            e = e.numpy()
            if out_name == "indices":
                windows_nan = np.isnan(expected[0].numpy())  # PyTorch points at its last NaN there
                np.testing.assert_array_equal(a[~windows_nan], e[~windows_nan], err_msg=f"{name} {kind} indices")
            else:
                assert_close(a, e, what=f"{name} {params} {kind} {outs}")


GRADIENT_CASES = [
    ("adaptive_avg", {"output_size": (4, 4)}, (2, 3, 16, 16)),
    ("adaptive_avg", {"output_size": (7, 5)}, (1, 2, 16, 17)),
    ("avg", {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True}, (2, 3, 9, 14)),
    ("spp", {"levels": (1, 2, 4), "mode": "avg"}, (2, 3, 13, 17)),
    ("multiscale", {"kernels": (2, 4)}, (1, 2, 16, 12)),
    ("stochastic", {"kernel": 2, "negative": "clamp"}, (1, 2, 8, 12)),  # relu's gradient: 0 where x <= 0
    ("adaptive_avg1d", {"output_size": (7,)}, (2, 3, 4, 5)),
    ("avg3d", {"kernel": 2, "ceil_mode": True, "divisor_override": 3}, (1, 2, 10, 5)),
    ("adaptive_avg3d", {"output_size": (2, 3, 4)}, (2, 3, 10, 6)),
]


@pytest.mark.parametrize(("name", "params", "shape"), GRADIENT_CASES, ids=lambda v: str(v))
def test_gradients_with_infinities_stay_in_their_bins(name, params, shape):
    """A gradient ``grad_y`` holding +inf, -inf and NaN reaches only the inputs of those
    outputs' bins (a plain ``A^T @ g`` makes every input beside them NaN)."""
    spec = poolops.get_op(name)
    p = spec.parse(params)
    x = torch.from_numpy(_rank(_inputs(shape)["finite"], spec)).requires_grad_()
    y = spec.torch_fn(p, x)[0]
    g = np.random.default_rng(3).standard_normal(tuple(y.shape)).astype(np.float32)
    flat = g.reshape(-1)
    flat[[1, flat.size // 2, flat.size - 2]] = [np.inf, -np.inf, np.nan]
    y.backward(torch.from_numpy(g))
    (grad_x,) = session(op_backward_model(name, **params)).run(None, {"x": x.detach().numpy(), "grad_y": g})
    assert np.isfinite(x.grad.numpy()).any()
    assert_close(grad_x, x.grad.numpy(), what=f"{name} {params} backward")


@pytest.mark.parametrize(("name", "params", "shape"), [c for c in CASES if "avg" in c[0] or "avg" in str(c[1])] + GRADIENT_CASES,
                         ids=lambda v: str(v))
def test_cost_bounds_the_exact_paths(name, params, shape):
    """The declared work bounds what the exact passes allocate (the cost tests feed finite
    inputs: only the fast paths run there)."""
    spec = poolops.get_op(name)
    p = spec.parse(params)
    x = _rank(_inputs(shape)["inf"], spec)
    largest = largest_node_bytes(op_model(name, outputs=("y",), **params), {"x": x})
    assert largest <= 4 * spec.cost(p, {"x": x.shape}, ("y",), False).work_elements
    if spec.onnx_backward is not None:
        y = spec.torch_fn(p, torch.from_numpy(x))[0]
        g = np.full(tuple(y.shape), np.inf, np.float32)
        largest = largest_node_bytes(op_backward_model(name, **params), {"x": x, "grad_y": g})
        assert largest <= 4 * spec.cost(p, {"x": x.shape}, ("y",), True).work_elements
