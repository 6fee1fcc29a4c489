"""RoI ops with NaN and infinities in x: each bin is what the C references compute from
the cells its bilinear samples touch (tests/support/roi_reference.py for torchvision's
``roi_align`` and mmcv's deformable RoI pooling, tests/support/rotated_reference.py for
``roi_align_rotated``): NaN where a touched cell is NaN, an infinity is touched with weight
0 (a sample exactly on a row or column, or at the last one) or both infinities are
touched; the infinity where one is touched; finite elsewhere. The torch functions and the
ONNX graphs pool through bin matrices, whose ``0 * inf`` would make every bin beside an
infinity NaN (and, for rotated boxes, the unused samples read a cell with weight 0):
both must keep each infinity in the bins whose samples touch it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import poolops
from poolops.onnx import op_model
from support import roi_reference, rotated_reference
from support.runtime import assert_close, largest_node_bytes, session

BOXES = np.array([[0, 1, 1, 8, 10], [0, 0, 0, 9.5, 11.5], [1, 3.3, 2.2, 6.1, 9.7], [1, -2, 4, 12, 14]], np.float32)
RBOXES = np.array([[0, 5, 6, 8, 10, 30], [0, 4.5, 5.5, 14, 16, 0], [1, 2, 9, 3, 4, -70], [1, 5, 5, 9, 9, 90]], np.float32)
CASES = [
    ("roi_align", {"output_size": (3, 3), "sampling_ratio": 2}),
    ("roi_align", {"output_size": (4, 3), "sampling_ratio": -1, "aligned": True}),
    ("roi_align", {"output_size": (2, 5), "sampling_ratio": 1, "spatial_scale": 0.5}),
    ("deform_roi_pool", {"output_size": (3, 3), "sampling_ratio": 2}),
    ("deform_roi_pool", {"output_size": (4, 3), "sampling_ratio": -1, "aligned": True}),
    ("roi_align_rotated", {"output_size": (3, 3), "sampling_ratio": 2}),
    ("roi_align_rotated", {"output_size": (4, 3), "sampling_ratio": -1, "aligned": True}),
]


def _x(kind: str) -> np.ndarray:
    x = np.random.default_rng(1).standard_normal((2, 3, 12, 10)).astype(np.float32)
    if kind == "nonfinite":
        x[0, 0, 5, 4] = np.inf
        x[0, 1, 2, 7] = -np.inf
        x[0, 1, 3, 7] = np.inf  # next to a -inf: NaN where both are touched
        x[0, 2, 8, 2] = np.nan
        x[0, 0, 11, 9] = np.inf  # the last row and column: touched with weight 0 at the border
        x[1, :, 6, 3] = -np.inf
        x[1, 1, 0, 0] = np.nan
    return x


def _reference(name, p, feeds):
    if name == "roi_align_rotated":
        return rotated_reference.roi_align_rotated(feeds["x"], feeds["rboxes"], p.output_size, p.spatial_scale,
                                                   p.sampling_ratio, p.aligned, p.clockwise)
    return roi_reference.roi_align(feeds["x"], feeds["boxes"], p.output_size, p.spatial_scale, p.sampling_ratio,
                                   p.aligned, offsets=feeds.get("offsets"), gamma=getattr(p, "gamma", 0.1))


@pytest.mark.parametrize(("name", "params"), CASES, ids=str)
@pytest.mark.parametrize("kind", ["finite", "nonfinite"])
def test_infinities_stay_in_the_bins_that_touch_them(name, params, kind):
    spec = poolops.get_op(name)
    p = spec.parse(params)
    feeds = {"x": _x(kind)}
    if name == "roi_align_rotated":
        feeds["rboxes"] = RBOXES
    else:
        feeds["boxes"] = BOXES
    if name == "deform_roi_pool":
        feeds["offsets"] = (0.3 * np.random.default_rng(2).standard_normal((len(BOXES), 2, *p.output_size))).astype(np.float32)
    with np.errstate(invalid="ignore"):
        expected = _reference(name, p, feeds)
    if kind == "nonfinite":
        assert not np.isfinite(expected).all() and np.isfinite(expected).sum() > expected.size // 2
    got = spec.torch_fn(p, *[torch.from_numpy(feeds[n]) for n in spec.inputs])[0].numpy()
    assert_close(got, expected, what=f"{name} {params} torch")
    model = op_model(name, **params)
    (actual,) = session(model).run(None, feeds)
    assert_close(actual, expected, what=f"{name} {params} ONNX")
    # the declared work bounds the exact path too (the cost tests feed finite inputs)
    work = spec.cost(p, {n: v.shape for n, v in feeds.items()}, ("y",), False).work_elements
    assert largest_node_bytes(model, feeds) <= 4 * work
