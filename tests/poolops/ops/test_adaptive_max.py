"""``adaptive_max`` indices (``blocks.adaptive_bin_argmax``): each bin's first column at its
maximum, then that column's first row, checked by an ONNX ``If`` that falls back to
``blocks.bin_argmax`` where a bin's maximum is in two of its columns. Both paths against
``F.adaptive_max_pool2d``: uniform and overlapping bins, bins that repeat rows or columns
(``H < oh``), ties within a column, across columns, bins of only -inf, +inf, NaN
(indices compared where the bin holds none)."""

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
