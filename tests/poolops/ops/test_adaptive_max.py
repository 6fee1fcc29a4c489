"""``adaptive_max`` indices (``blocks.adaptive_bin_argmax``): each bin's first column at its
maximum, then that column's first row, checked by an ONNX ``If`` that falls back to
``blocks.bin_argmax`` where a bin's maximum is in two of its columns. Both paths against
``F.adaptive_max_pool2d``: uniform and overlapping bins, bins that repeat rows or columns
(``H < oh``), ties within a column, across columns, bins of only -inf, +inf, NaN
(indices compared where the bin holds none). And the row bins from runs of 8 rows
(``blocks._row_bins_from_runs``: ``H % 8 == 0``, bins of 32 rows or more) against the
row-bin Loop's shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from poolops.onnx import op_model
from support.runtime import session

SHAPES = [((2, 3, 16, 16), (4, 4)), ((2, 3, 16, 17), (7, 7)), ((1, 2, 5, 13), (3, 5)), ((1, 2, 3, 4), (5, 6)),
          ((1, 1, 37, 1), (7, 1)), ((1, 2, 9, 30), (1, 7))]


def _check(x, output_size):
    y, idx = F.adaptive_max_pool2d(torch.from_numpy(x), output_size, return_indices=True)
    oy, oidx = session(op_model("adaptive_max", output_size=output_size)).run(None, {"x": x})
    np.testing.assert_array_equal(oy, y.numpy())
    # PyTorch's index is defined where the bin holds no NaN
    nan_bins = np.isnan(y.numpy())
    np.testing.assert_array_equal(oidx[~nan_bins], idx.numpy()[~nan_bins])
    (only_y,) = session(op_model("adaptive_max", outputs=("y",), output_size=output_size)).run(None, {"x": x})
    np.testing.assert_array_equal(only_y, y.numpy())


@pytest.mark.parametrize("shape, output_size", SHAPES)
def test_fast_path_distinct_values(shape, output_size):
    """No ties: the fast path's answer (first column, then first row at the max)."""
    x = np.random.default_rng(sum(shape)).permutation(np.prod(shape)).reshape(shape).astype(np.float32)
    _check(x - x.size / 2, output_size)


@pytest.mark.parametrize("shape, output_size", SHAPES)
def test_ties_within_a_column_stay_on_the_fast_path(shape, output_size):
    """Every row equal: a bin's maximum is in one column, many rows (the first row wins)."""
    row = np.random.default_rng(1).permutation(shape[3]).astype(np.float32)
    x = np.broadcast_to(row, shape).copy()
    _check(x, output_size)


@pytest.mark.parametrize("shape, output_size", SHAPES)
def test_ties_across_columns_take_the_fallback(shape, output_size):
    """Rounded values tie across columns (an earlier row in a later column must win), bins
    of only -inf, +inf, -FLT_MAX: the If's other branch, PyTorch's first maximum."""
    rng = np.random.default_rng(2)
    x = np.round(rng.standard_normal(shape) * 1.5).astype(np.float32)
    _check(x, output_size)
    x[0, 0] = -np.inf
    x[-1, -1, 0, 0] = np.inf
    x[-1, 0, -1, :] = -np.finfo(np.float32).max
    _check(x, output_size)
    # the first maximum in row-major order in a later column: column 1 at row 0, column 0 at row 1
    t = np.zeros((1, 1, 2, 2), np.float32)
    t[0, 0, 0, 1] = t[0, 0, 1, 0] = 5.0
    _check(t, (1, 1))


def test_nan_and_infinities():
    x = np.random.default_rng(3).standard_normal((2, 3, 16, 17)).astype(np.float32)
    x[0, 0, 2, 3] = np.nan
    x[1, 2, :, 5] = np.nan  # a column of NaN
    x[0, 1, 4:9, :] = np.inf
    x[1, 1] = -np.inf
    for size in ((7, 7), (4, 1), (16, 17)):
        _check(x, size)


# (shape, output_size): non-uniform bins (W % ow != 0) whose rows come from runs of 8 (H % 8 == 0,
# bins >= 32 rows: heads and tails of 4 rows; overlapping bins; one bin of every row, no head
# or tail; bins of 43 rows), and shapes just outside it (H % 8 != 0; bins of 26 rows): the row-bin Loop
RUNS = [((1, 2, 136, 10), (2, 3)), ((2, 3, 200, 7), (3, 2)), ((1, 1, 128, 5), (1, 2)), ((1, 2, 128, 10), (3, 3))]
NOT_RUNS = [((1, 2, 130, 10), (2, 3)), ((1, 2, 128, 10), (5, 3))]


@pytest.mark.parametrize("shape, output_size", RUNS + NOT_RUNS)
def test_row_bins_from_runs_and_not(shape, output_size):
    rng = np.random.default_rng(5)
    x = rng.standard_normal(shape).astype(np.float32)
    _check(x, output_size)  # the fast indices
    _check(np.round(x), output_size)  # ties: bin_argmax's indices, the runs' y
    x[0, 0, 3, :] = np.nan  # a head row
    x[0, -1, -2, 1] = np.nan  # a tail row
    x[-1, 0, 60:70, :] = -np.inf
    x[-1, -1, :, :] = -np.inf  # a plane of only -inf
    x[0, 0, 40, 0] = np.inf  # a whole run
    _check(x, output_size)
    finite = np.nan_to_num(x, nan=0.0, neginf=-5.0, posinf=5.0)  # propagate_nan=False: no exact pass
    y = session(op_model("adaptive_max", outputs=("y",), output_size=output_size, propagate_nan=False)).run(None, {"x": finite})[0]
    np.testing.assert_array_equal(y, F.adaptive_max_pool2d(torch.from_numpy(finite), output_size).numpy())


@pytest.mark.parametrize("shape, output_size, rows", [
    ((1, 2, 136, 10), (2, 3), (66, 69)),  # bin 0's tail (rows 64-67), bin 1's head (68-71)
    ((2, 3, 200, 7), (3, 2), (65, 70, 131, 134)),  # tails 64-66, 128-133; heads 66-71, 133-135
])
def test_row_bins_from_runs_heads_and_tails(shape, output_size, rows):
    """The maxima in the rows before a bin's first whole run of 8 and after its last."""
    x = np.random.default_rng(6).standard_normal(shape).astype(np.float32)
    for i, r in enumerate(rows):
        x[..., r, (3 * i) % shape[3]] = 100.0 + r
    _check(x, output_size)
    x[..., rows[0], :] = 200.0  # a whole row at the max: ties across columns (the fallback's indices)
    _check(x, output_size)
