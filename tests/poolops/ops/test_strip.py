"""Worked examples and edge cases of ``strip``: torch reference, ONNX forward and ONNX
backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import poolops
import poolops.functional as PF
import poolops.nn as PN
from poolops.onnx import op_backward_model, op_model
from poolops.params import ParamError
from support.faces import (
    autograd,
    check_all_faces,
    check_head_export,
    check_worked_example_and_backward,
    onnx_forward,
)
from support.runtime import assert_close


STRIP_X = np.array([[[[1, 2, 3], [4, 5, 6]]]], np.float32)
STRIP_CASES = {
    "h": [[[[2], [5]]]],
    "v": [[[[2.5, 3.5, 4.5]]]],
    "diag": [[[[4, 3, 4, 3]]]],
    "antidiag": [[[[1, 3, 4, 6]]]],
}


@pytest.mark.parametrize("direction", STRIP_CASES)
def test_strip_worked_examples(direction):
    y = np.array(STRIP_CASES[direction], np.float32)
    g = np.arange(1, y.size + 1, dtype=np.float32).reshape(y.shape)
    # each cell gets its output's gradient divided by that output's cell count
    _, expected_grad = autograd("strip", STRIP_X, g, direction=direction)
    check_all_faces("strip", STRIP_X, y, g, expected_grad, direction=direction)


def test_strip_diag_gradient_example():
    g = np.array([[[[1, 2, 4, 8]]]], np.float32)  # diagonals -1, 0, 1, 2 of 2x3: 1, 2, 2, 1 cells
    expected = np.array([[[[1, 2, 8], [1, 1, 2]]]], np.float32)
    check_all_faces("strip", STRIP_X, STRIP_CASES["diag"], g, expected, direction="diag")


def _diagonal_reference(x: torch.Tensor, direction: str) -> torch.Tensor:
    """Independent reference: ``torch.diagonal`` one offset at a time."""
    h, w = x.shape[-2:]
    if direction == "antidiag":
        x = x.flip(-2)  # row r -> H-1-r: offset c - (H-1-r) = (r + c) - (H-1)
    return torch.stack([torch.diagonal(x, d, -2, -1).mean(-1) for d in range(-(h - 1), w)], -1).unsqueeze(2)


@pytest.mark.parametrize("direction", ["diag", "antidiag"])
@pytest.mark.parametrize("hw", [(1, 1), (1, 7), (6, 1), (5, 5), (4, 9), (13, 3)])
def test_strip_diagonals_against_torch_diagonal(direction, hw):
    x = torch.randn(2, 3, *hw)
    expected = _diagonal_reference(x, direction).numpy()
    assert_close(PF.strip(x, direction=direction).numpy(), expected)
    assert_close(onnx_forward("strip", x.numpy(), direction=direction), expected)


def test_strip_diagonal_graph_is_linear_in_the_input():
    """No H*W x (H+W-1) matrix and no scatter: masked Gather sums forward, a Gather backward."""
    fwd = {n.op_type for f in op_model("strip", direction="diag").functions for n in f.node}
    bwd = {n.op_type for f in op_backward_model("strip", direction="diag").functions for n in f.node}
    assert "Gather" in fwd and not {"MatMul", "ScatterND", "ScatterElements"} & fwd
    assert "Gather" in bwd and "MatMul" not in bwd and "ScatterND" not in bwd
    x = np.random.default_rng(0).standard_normal((1, 2, 300, 400)).astype(np.float32)
    assert_close(onnx_forward("strip", x, direction="antidiag"), _diagonal_reference(torch.from_numpy(x), "antidiag").numpy())


def test_strip_params():
    with pytest.raises(ParamError, match="'direction'"):
        poolops.get_op("strip").parse({"direction": "up"})


# ---------------------------------------------------------------- every face


@pytest.mark.parametrize("name", ("strip",))
def test_registered_with_a_worked_example(name):
    check_worked_example_and_backward(name, onnx_backward_graph=True)


EXPORT_HEADS = {
    "strip-diag": lambda: torch.nn.Sequential(PN.StripPool(direction="diag"), PN.AdaptiveAvgPool(output_size=(1, 4))),
    "strip-v": lambda: torch.nn.Sequential(PN.StripPool(direction="v"), PN.GlobalAvgPool()),
}


@pytest.mark.parametrize("head", EXPORT_HEADS)
def test_modules_export_with_dynamic_sizes(head, tmp_path):
    check_head_export(EXPORT_HEADS[head](), tmp_path, head)
