"""``fractional_max`` (poolops/ops/fractional_max.py): PyTorch's own
``F.fractional_max_pool2d`` given the same samples, a naive reference of its interval
rule, reproducible samples, NaN and ties, edges and bad inputs. (The property tests of
tests/poolops/test_torch_onnx_parity.py cover random parameters and shapes, forward
with indices and backward.)"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import poolops
import poolops.functional as PF
from poolops.onnx import op_model
from poolops.ops.fractional_max import samples
from poolops.params import ParamError
from support.faces import check_worked_example_and_backward
from support.naive import fractional_max, fractional_starts
from support.runtime import session


def _onnx(x, **params):
    return session(op_model("fractional_max", **params)).run(None, {"x": x})


def test_worked_example():
    x = np.array([[[[1, 5, 2, 0, 3]]]], np.float32)
    assert fractional_starts(0.5, 5, 3, 2) == [0, 2, 3]
    y, idx = fractional_max(x, np.array([[[0.5, 0.5]]]), (1, 2), (1, 3))
    assert y.tolist() == [[[[5, 2, 3]]]] and idx.tolist() == [[[[1, 2, 4]]]]
    check_worked_example_and_backward("fractional_max", onnx_backward_graph=True)


def test_naive_interval_rule_is_torchs_for_any_sample():
    """On ``x = arange`` each window's maximum is its last cell, so torch's indices give its
    window starts: they are the naive float32 rule's, for samples anywhere in [0, 1)."""
    rng = np.random.default_rng(0)
    for size, out, k in ((7, 5, 2), (50, 33, 3), (13, 2, 1), (100, 71, 2), (9, 8, 2), (31, 1, 4), (64, 45, 5)):
        x = torch.arange(size, dtype=torch.float32).reshape(1, 1, 1, size).expand(1, 64, 1, size).contiguous()
        u = torch.from_numpy(rng.random((1, 64, 2), dtype=np.float32))
        u[0, :8, 0] = torch.tensor([0.0, 0.5, 0.25, 1 - 2**-24, 2**-24, 0.1, 0.3, 0.7])
        _, idx = F.fractional_max_pool2d(x, (1, k), output_size=(1, out), return_indices=True, _random_samples=u)
        for c in range(64):
            starts = fractional_starts(float(u[0, c, 0]), size, out, k)
            assert idx[0, c, 0].tolist() == [s + k - 1 for s in starts], (size, out, k, float(u[0, c, 0]))


@pytest.mark.parametrize(
    "shape, params",
    [
        ((2, 3, 11, 9), {"kernel": 2, "output_size": (5, 4)}),
        ((1, 4, 32, 32), {"kernel": 2, "output_ratio": 2**-0.5, "seed": 7}),  # Graham's alpha = sqrt(2)
        ((2, 2, 7, 13), {"kernel": (3, 2), "output_ratio": (0.5, 0.75), "seed": 2**62}),
        ((1, 1, 1, 1), {"kernel": 1, "output_size": 1}),  # degenerate: one cell
        ((1, 2, 3, 5), {"kernel": (3, 5), "output_size": 1}),  # one window, the whole map
        ((3, 1, 9, 2), {"kernel": (2, 1), "output_size": (8, 2)}),  # every row but one starts a window
    ],
)
def test_torch_onnx_and_naive_agree_exactly(shape, params):
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    x[..., ::3, :] = np.round(x[..., ::3, :])  # ties
    spec = poolops.get_op("fractional_max")
    p = spec.parse(params)
    y, idx = PF.fractional_max(torch.from_numpy(x), return_indices=True, **params)
    u = samples(p.seed, shape[0], shape[1])
    stock = F.fractional_max_pool2d(torch.from_numpy(x), p.kernel, output_size=tuple(y.shape[2:]), return_indices=True,
                                    _random_samples=u)
    ny, nidx = fractional_max(x, u.numpy(), p.kernel, tuple(y.shape[2:]))
    oy, oidx = _onnx(x, **params)
    for vals, ind in ((stock[0].numpy(), stock[1].numpy()), (ny, nidx), (oy, oidx)):
        np.testing.assert_array_equal(vals, y.numpy())
        np.testing.assert_array_equal(ind, idx.numpy())


def test_output_ratio_is_torchs_float64_int():
    """``int(H * ratio)`` in float64: 10 * 0.7 is 7.000000000000001 -> 7, 0.29 * 100 = 28.999999999999996 -> 28."""
    for h, r in ((10, 0.7), (100, 0.29), (49, 0.1), (7, 0.99)):
        x = np.zeros((1, 1, h, 3), np.float32)
        want = int(h * r)
        assert PF.fractional_max(torch.from_numpy(x), kernel=1, output_ratio=(r, 0.5)).shape[2] == want
        assert _onnx(x, kernel=1, output_ratio=(r, 0.5))[0].shape[2] == want


def test_samples_are_reproducible_and_differ_by_seed():
    """(With ratio 0.5 and kernel 2 on an even size alpha is 2 and every sample gives the
    same windows: a ratio of 0.7 makes them fractional.)"""
    x = np.random.default_rng(1).standard_normal((2, 8, 20, 20)).astype(np.float32)
    params = {"output_ratio": 0.7}
    a = _onnx(x, seed=3, **params)[1]
    np.testing.assert_array_equal(a, _onnx(x, seed=3, **params)[1])
    torch_idx = PF.fractional_max(torch.from_numpy(x), seed=3, return_indices=True, **params)[1].numpy()
    np.testing.assert_array_equal(a, torch_idx)
    assert not np.array_equal(a, _onnx(x, seed=4, **params)[1])
    u = samples(3, 2, 8)
    assert u.dtype == torch.float32 and u.shape == (2, 8, 2) and 0 <= float(u.min()) and float(u.max()) < 1
    assert len(set(u.flatten().tolist())) == 32


def test_nan_and_infinities_as_torch():
    x = np.random.default_rng(2).standard_normal((1, 2, 9, 9)).astype(np.float32)
    x[0, 0, 2:5, 3] = np.nan
    x[0, 0, 7, 1] = np.nan
    x[0, 1] = -np.inf
    x[0, 1, 4, 4] = np.inf
    y, idx = PF.fractional_max(torch.from_numpy(x), return_indices=True, kernel=3, output_size=4, seed=5)
    assert torch.isnan(y).any() and torch.isneginf(y).any()
    oy, oidx = _onnx(x, kernel=3, output_size=4, seed=5)
    np.testing.assert_array_equal(oy, y.numpy())
    np.testing.assert_array_equal(oidx, idx.numpy())
    (only_y,) = session(op_model("fractional_max", outputs=("y",), kernel=3, output_size=4, seed=5)).run(None, {"x": x})
    np.testing.assert_array_equal(only_y, y.numpy())


@pytest.mark.parametrize("kernel", [(2, 2), (1, 3), (3, 1), (5, 4), (1, 1)])
def test_indices_without_nan_as_torch(kernel):
    """The indices path for x without NaN (separable: the first of a window's rows reaching
    its maximum, then the first cell of that row): windows and rows of only -inf (where
    ONNX Runtime's MaxPool gives the lowest float at kernels of 4 and more), +inf, ties
    across rows and within a row (the first in row-major order), -FLT_MAX itself."""
    x = np.round(np.random.default_rng(3).standard_normal((2, 3, 17, 15)) * 2).astype(np.float32)  # many ties
    x[0, 0] = -np.inf  # a plane of only -inf
    x[0, 1, :6] = -np.inf  # rows of only -inf above finite ones
    x[0, 1, 8, :] = 3.0  # a row of ties
    x[1, 0, 5:9, 4:9] = np.inf  # +inf, no NaN: still the fast path
    x[1, 2, 10:, :] = -np.finfo(np.float32).max
    x[1, 2, 12:, :7] = -np.inf
    for params in ({"output_size": (8, 7)}, {"output_ratio": 0.7, "seed": 11}):
        y, idx = PF.fractional_max(torch.from_numpy(x), return_indices=True, kernel=kernel, **params)
        oy, oidx = _onnx(x, kernel=kernel, **params)
        np.testing.assert_array_equal(oy, y.numpy())
        np.testing.assert_array_equal(oidx, idx.numpy())


@pytest.mark.parametrize("int32", [True, False])
@pytest.mark.parametrize("kernel", [(2, 2), (3, 2), (5, 4)])
def test_fast_indices_as_torch_with_either_position_type(kernel, int32, monkeypatch):
    """The separable pick itself (x without NaN whose sum is no NaN: infinities of one sign
    only), with int32 positions (planes under 2**31 elements: all real ones) and with the
    int64 branch, forced here: ties across rows and within a row, -FLT_MAX, windows and
    rows of only -inf, and +inf."""
    import poolops.ops.fractional_max as fm

    if not int32:
        monkeypatch.setattr(fm, "_pick_fast", lambda op, *args: fm._pick_separable(op, *args, i32=False))
    ran = []
    pick = fm._pick_separable
    monkeypatch.setattr(fm, "_pick_separable", lambda *a, **k: ran.append(k.get("i32", a[6:7] == (True,))) or pick(*a, **k))
    rng = np.random.default_rng(4)
    low = np.round(rng.standard_normal((2, 3, 17, 15)) * 2).astype(np.float32)  # many ties
    low[0, 0, :6] = -np.inf  # rows of only -inf above finite ones
    low[0, 1] = -np.inf  # a plane of only -inf
    low[1, 2, 10:, :] = -np.finfo(np.float32).max
    high = np.round(rng.standard_normal((2, 3, 17, 15)) * 2).astype(np.float32)
    high[1, 0, 5:9, 4:9] = np.inf
    high[0, 2, 8, :] = 3.0  # a row of ties
    for x in (low, high):
        y, idx = PF.fractional_max(torch.from_numpy(x), return_indices=True, kernel=kernel, output_size=(8, 7))
        oy, oidx = _onnx(x, kernel=kernel, output_size=(8, 7))
        np.testing.assert_array_equal(oy, y.numpy())
        np.testing.assert_array_equal(oidx, idx.numpy())
    # the graph holds the int32 pick (beside the int64 one, which the If skips) or only the int64 one
    assert (True in ran) == int32 and False in ran


def test_bad_parameters_and_inputs_are_named():
    with pytest.raises(ParamError, match="'output_ratio'.*not both"):
        PF.fractional_max(torch.ones(1, 1, 8, 8), output_size=3, output_ratio=0.5)
    for ratio in (0.0, 1.0, 1.5, -0.5):
        with pytest.raises(ParamError, match="'output_ratio'"):
            poolops.get_op("fractional_max").parse({"output_ratio": ratio})
    with pytest.raises(ParamError, match="'output_size'.*at least 6"):
        PF.fractional_max(torch.ones(1, 1, 5, 8), kernel=2, output_size=5)
    with pytest.raises(ParamError, match="'output_ratio'.*empty output"):
        PF.fractional_max(torch.ones(1, 1, 1, 8))
    with pytest.raises(ParamError, match="'seed'"):
        PF.fractional_max(torch.ones(1, 1, 8, 8), seed=-1)


def test_a_network_with_it_exports_with_dynamic_sizes(tmp_path):
    """The output ratio's size stays symbolic through torch.onnx.export (int(H * ratio))."""
    import poolops.nn as PN
    from support.faces import check_head_export

    check_head_export(PN.FractionalMaxPool(output_ratio=0.7, seed=3), tmp_path, "fractional_max ratio 0.7")
