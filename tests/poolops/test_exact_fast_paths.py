"""The max ops' two paths against torch: finite inputs take the fast path (no NaN or -inf
passes, uniform adaptive bins as reductions over runs), inputs with NaN, infinities or a
sum that overflows take the exact one (``blocks.if_finite``); both must give PyTorch's
values, and its indices wherever PyTorch's index is defined (no NaN in the window)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import poolops
from poolops.onnx import op_model
from support.runtime import assert_close, session

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
]


@pytest.mark.parametrize(("name", "params", "shape"), CASES, ids=lambda v: str(v))
@pytest.mark.parametrize("kind", ["finite", "ties", "nan", "inf", "overflow"])
def test_both_paths_match_torch(name, params, shape, kind):
    spec = poolops.get_op(name)
    p = spec.parse(params)
    x = _inputs(shape)[kind]
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
