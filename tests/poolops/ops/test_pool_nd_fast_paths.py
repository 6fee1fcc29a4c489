"""The fast paths of the 1-D and 3-D max ops (poolops/ops/pool_nd.py) and their fallbacks,
against torch: each input kind (finite, ties, NaN, infinities, a plane of only -inf, a sum
that overflows) on shapes that take each path, which path ran read from ONNX Runtime's
profile, indices wherever PyTorch's are defined (no NaN in the bin), and the declared
work against what the path allocates."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import poolops
from poolops.onnx import op_model
from poolops.ops.pool_nd import BLOCK
from support.runtime import assert_close, largest_node_bytes, node_events, session

FLT_MAX = np.finfo(np.float32).max
KINDS = ["finite", "ties", "nan", "inf", "neg_inf_plane", "overflow"]


def _input(shape, kind: str) -> np.ndarray:
    rng = np.random.default_rng(11)
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(x.shape[0], x.shape[1], -1)  # a view: edits reach x
    if kind == "ties":
        x[...] = np.round(x * 2) / 2
    elif kind == "nan":
        flat[0, 0, 1] = np.nan
        flat[-1, -1, -1] = np.nan
    elif kind == "inf":
        flat[0, -1, :3] = [np.inf, -np.inf, np.inf]
        flat[-1, 0, -2:] = -np.inf
    elif kind == "neg_inf_plane":
        flat[0, 0, :] = -np.inf
        flat[-1, -1, : flat.shape[2] // 2] = -np.inf
    elif kind == "overflow":  # finite, but the guard's sum overflows: the exact path
        flat[:, :, :3] = FLT_MAX
    return x


def executed(model, feeds) -> list[tuple[str, list]]:
    """``(op type, output shapes)`` of every node ONNX Runtime ran (If branches included)."""
    return [(e["args"]["op_name"], [list(s.values())[0] for s in e["args"].get("output_type_shape", [])])
            for e in node_events(model, feeds)]


def _check(name, params, x, outputs):
    spec = poolops.get_op(name)
    p = spec.parse(params)
    expected = spec.torch_fn(p, torch.from_numpy(x), outputs=outputs)
    actual = session(op_model(name, outputs=outputs, **params)).run(None, {"x": x})
    for out_name, e, a in zip(outputs, expected, actual):
        e = e.numpy()
        if out_name == "indices":
            defined = ~np.isnan(expected[0].numpy())  # PyTorch points at its last NaN there
            np.testing.assert_array_equal(a[defined], e[defined], err_msg=f"{name} {params} indices")
        else:
            assert_close(a, e, what=f"{name} {params} {outputs}")


L_DIVISIBLE = 8 * BLOCK * 7  # block maxima by a ReduceMax over runs
L_ODD = 8 * BLOCK * 7 + 37  # block maxima by a MaxPool (last block shorter)

CASES = [
    ("max1d", {"kernel": 2}, (2, 3, 64)),  # windows tile x: an ArgMax over [N, C, L/2, 2]
    ("max1d", {"kernel": 3}, (2, 3, 33)),
    ("max1d", {"kernel": 3}, (2, 3, 34)),  # L not a multiple: MaxPool's indices
    ("max1d", {"kernel": 2, "ceil_mode": True}, (2, 3, 9)),
    ("max1d", {"kernel": 2, "stride": 1}, (2, 3, 16)),  # overlapping windows
    ("adaptive_max1d", {"output_size": 7}, (2, 3, L_DIVISIBLE)),  # long bins: block maxima
    ("adaptive_max1d", {"output_size": 7}, (2, 3, L_ODD)),
    ("adaptive_max1d", {"output_size": 1}, (1, 2, 4 * BLOCK)),  # the shortest long bin
    ("adaptive_max1d", {"output_size": 5}, (2, 3, 4 * BLOCK * 5 - 1)),  # bins just short: gathered
    ("adaptive_max1d", {"output_size": 3}, (2, 2, 17)),
    ("global_max1d", {}, (2, 3, L_ODD)),
    ("global_max1d", {}, (2, 3, L_DIVISIBLE)),
    ("global_max1d", {}, (2, 3, 5)),  # shorter than a block
    ("adaptive_max3d", {"output_size": (2, 3, 4)}, (2, 3, 4, 6, 8)),  # uniform bins: runs
    ("adaptive_max3d", {"output_size": (1, 2, 2)}, (1, 2, 3, 4, 2)),  # bins of one column
    ("adaptive_max3d", {"output_size": (2, 3, 4)}, (2, 3, 4, 6, 9)),  # W not a multiple: gathered
    ("adaptive_max3d", {"output_size": (3, 2, 2)}, (1, 2, 2, 5, 4)),  # overlapping bins
    ("global_max3d", {}, (2, 3, 3, 5, 7)),
    ("global_max3d", {}, (1, 2, 4, 4, 2 * BLOCK)),
]


@pytest.mark.parametrize(("name", "params", "shape"), CASES, ids=str)
@pytest.mark.parametrize("kind", KINDS)
def test_both_paths_match_torch(name, params, shape, kind):
    x = _input(shape, kind)
    for outputs in (("y",), ("y", "indices")):
        _check(name, params, x, outputs)
        # propagate_nan=False: still exact without NaN (and, but for the MaxPool of max1d,
        # which gives -FLT_MAX there as documented, without -inf windows)
        if kind in ("finite", "ties") or (kind == "neg_inf_plane" and not name.startswith("max")):
            _check(name, {**params, "propagate_nan": False}, x, outputs)


def _ops(name, params, x, outputs=("y", "indices")):
    return executed(op_model(name, outputs=outputs, **params), {"x": x})


def test_long_bins_take_block_maxima_and_short_ones_the_gathers():
    long_ = _ops("adaptive_max1d", {"output_size": 7}, _input((1, 2, L_ODD), "finite"))
    assert any(op == "MaxPool" for op, _ in long_)
    assert not any(op == "Gather" and len(s[0]) == 4 and s[0][-1] > 2 * BLOCK for op, s in long_)
    divisible = _ops("adaptive_max1d", {"output_size": 7}, _input((1, 2, L_DIVISIBLE), "finite"))
    assert not any(op == "MaxPool" for op, _ in divisible)
    short = _ops("adaptive_max1d", {"output_size": 5}, _input((1, 2, 4 * BLOCK * 5 - 1), "finite"))
    assert not any(op in ("MaxPool", "GatherElements") for op, _ in short)
    # an input with NaN or an infinity takes the gathered bins and their NaN map
    nan = _ops("adaptive_max1d", {"output_size": 7}, _input((1, 2, L_ODD), "nan"))
    assert not any(op == "MaxPool" for op, _ in nan)


@pytest.mark.parametrize(("output_size", "length"), [(1, 4 * BLOCK), (3, 4 * BLOCK * 3), (7, L_DIVISIBLE + 5 * BLOCK),
                                                     (5, 4 * BLOCK * 5 + 3), (5, 4 * BLOCK * 5 - BLOCK), (7, 20)])
@pytest.mark.parametrize("kind", KINDS)
def test_adaptive_avg1d_block_sums_match_torch(output_size, length, kind):
    """Bins of at least 4 blocks with L a multiple of the block: block sums and the bins'
    partial edges (NaN and infinities in their own bins); other lengths: the bin matrix."""
    x = _input((2, 3, length), kind)
    spec = poolops.get_op("adaptive_avg1d")
    p = spec.parse({"output_size": output_size})
    expected = spec.torch_fn(p, torch.from_numpy(x))[0].numpy()
    (actual,) = session(op_model("adaptive_avg1d", output_size=output_size)).run(None, {"x": x})
    assert_close(actual, expected, what=f"adaptive_avg1d {output_size} L={length} {kind}", floor=1e-2)
    block_sums = [s for op, s in _ops("adaptive_avg1d", {"output_size": output_size}, x, ("y",))
                  if op == "ReduceSum" and s[0] == [2, 3, length // BLOCK]]
    assert bool(block_sums) == (length % BLOCK == 0 and length >= 4 * BLOCK * output_size)


def test_tiled_1d_windows_take_indices_from_an_argmax():
    def maxpool_indices(params, x):  # MaxPool's own (slow) indices output
        return [s for op, s in _ops("max1d", params, x) if op == "MaxPool" and len(s) == 2]

    assert not maxpool_indices({"kernel": 3}, _input((2, 3, 33), "finite"))
    assert maxpool_indices({"kernel": 3}, _input((2, 3, 34), "finite"))
    assert maxpool_indices({"kernel": 3}, _input((2, 3, 33), "nan"))  # NaN: the exact path
    assert maxpool_indices({"kernel": 2, "stride": 1}, _input((2, 3, 16), "finite"))


@pytest.mark.parametrize("name", ["max1d", "adaptive_max1d", "global_max1d"])
def test_guard_sums_columns_of_blocks_where_the_block_divides_l(name):
    def column_sums(length, kind="finite"):
        return [s for op, s in _ops(name, {}, _input((2, 3, length), kind), ("y",)) if op == "ReduceSum" and s[0] == [2, 3, BLOCK]]

    assert column_sums(L_DIVISIBLE)
    assert column_sums(L_DIVISIBLE, "inf")  # the same guard, then the exact path
    assert not column_sums(L_ODD)


def test_uniform_3d_bins_reduce_runs_and_others_gather():
    def gathers(x):  # the gathered path copies every bin whole: [N, C, o, K, ...]
        return [s for op, s in _ops("adaptive_max3d", {"output_size": (2, 3, 4)}, x) if op == "Gather"]

    assert not gathers(_input((2, 3, 4, 6, 8), "finite"))
    assert gathers(_input((2, 3, 4, 6, 9), "finite"))
    assert gathers(_input((2, 3, 4, 6, 8), "nan"))  # NaN: the exact path


def test_global_max_indices_read_one_block_again():
    x = _input((2, 3, L_ODD), "finite")
    ops = _ops("global_max1d", {}, x)
    assert any(op == "GatherElements" and s[0] == [2, 3, BLOCK] for op, s in ops)
    assert not any(op == "ReduceSumSquare" for op, _ in ops)  # finite x: no NaN pass
    exact = _ops("global_max1d", {}, _input((2, 3, L_ODD), "inf"))
    assert any(op == "ReduceSumSquare" for op, _ in exact)


@pytest.mark.parametrize(("name", "params", "shape"), CASES, ids=str)
@pytest.mark.parametrize("kind", ["finite", "nan"])
def test_cost_bounds_both_paths(name, params, shape, kind):
    spec = poolops.get_op(name)
    p = spec.parse(params)
    x = _input(shape, kind)
    for outputs in (("y",), ("y", "indices")):
        largest = largest_node_bytes(op_model(name, outputs=outputs, **params), {"x": x})
        assert largest <= 4 * spec.cost(p, {"x": x.shape}, outputs, False).work_elements, (name, outputs)
