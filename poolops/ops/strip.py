"""Strip (oriented) pooling: the mean along rows, columns or diagonals of each plane.

``direction``:

* ``h``: mean over W of each row, ``[N, C, H, 1]``;
* ``v``: mean over H of each column, ``[N, C, 1, W]``;
* ``diag``: mean along each diagonal (cells with ``c - r`` constant), ``[N, C, 1, H+W-1]``,
  ordered by the offset ``c - r`` from ``-(H-1)`` to ``W-1`` (output ``j`` holds
  offset ``j - (H-1)``: first the bottom-left corner, last the top-right one);
* ``antidiag``: mean along each anti-diagonal (``r + c`` constant), ``[N, C, 1, H+W-1]``,
  ordered by ``r + c`` from 0 (top-left corner) to ``H+W-2`` (bottom-right).

Diagonal ``j`` has ``min(j + 1, H + W - 1 - j, H, W)`` cells. Example, one plane
``[[1, 2, 3], [4, 5, 6]]``: ``h -> [[2], [5]]``; ``v -> [[2.5, 3.5, 4.5]]``;
``diag -> [[4, 3, 4, 3]]`` (offsets -1: {4}; 0: {1, 5}; 1: {2, 6}; 2: {3});
``antidiag -> [[1, 3, 4, 6]]`` (r+c = 0: {1}; 1: {2, 4}; 2: {3, 5}; 3: {6}).
Backward (autograd): each output's gradient divided evenly over its cells.

ONNX (dynamic H, W): ``h``/``v`` are ReduceMean. ``diag``/``antidiag``: a Gather of
each diagonal's cells from the flattened plane with indices ``[H+W-1, min(H, W)]``
built by Range arithmetic (slots past a diagonal's end masked by ``Where``, so NaN and
inf stay on their own diagonal), a ReduceSum and a division by the cell counts. That
touches at most ``2*H*W`` values per plane: memory linear in the input (no
``H*W x (H+W-1)`` matrix) and deterministic. (Not a scatter-add: ONNX Runtime's CPU
ScatterND with ``reduction='add'`` races on repeated indices, up to 1.32 at least, and
gives wrong sums on large inputs.) The backward is a Gather of the scaled output
gradient at each cell's diagonal.
"""

from __future__ import annotations

from typing import Literal

from poolops.onnx import blocks
from poolops.onnx.builder import const_f32, const_i64, const_scalar_i64, dim, scalar, unsqueeze
from poolops.params import OpParams
from poolops.registry import OpSpec, register

Direction = Literal["h", "v", "diag", "antidiag"]


class StripParams(OpParams):
    direction: Direction = "h"
    """``h`` (mean over W), ``v`` (over H), ``diag`` (``c - r`` constant), ``antidiag`` (``r + c``)."""


def _shape(p: StripParams, s):
    n, c, h, w = s
    if p.direction == "h":
        return (n, c, h, 1)
    if p.direction == "v":
        return (n, c, 1, w)
    return (n, c, 1, h + w - 1)


# ---------------------------------------------------------------- torch


def _torch_diagonal_index(h: int, w: int, direction: str, device):
    """Diagonal number ``[H*W]`` of each cell (row-major)."""
    import torch

    r = torch.arange(h, device=device).unsqueeze(1)
    c = torch.arange(w, device=device).unsqueeze(0)
    idx = c - r + (h - 1) if direction == "diag" else r + c
    return idx.reshape(-1)


def torch_strip(p: StripParams, x, outputs=("y",)):
    import torch

    if p.direction == "h":
        return (x.mean(dim=3, keepdim=True),)
    if p.direction == "v":
        return (x.mean(dim=2, keepdim=True),)
    n, c, h, w = x.shape
    idx = _torch_diagonal_index(h, w, p.direction, x.device)
    sums = x.new_zeros((n, c, h + w - 1)).index_add(2, idx, x.flatten(2))
    counts = torch.bincount(idx, minlength=h + w - 1).to(x.dtype)
    return ((sums / counts).unsqueeze(2),)


# ---------------------------------------------------------------- ONNX


def _arange(op, size):
    return op.Range(const_scalar_i64(op, 0), scalar(op, size), const_scalar_i64(op, 1))


def _diagonal_index(op, p: StripParams, x):
    """Diagonal number ``[H, W]`` (int64) of each cell."""
    h = dim(op, x, 2)
    r = unsqueeze(op, _arange(op, h), [1])
    if p.direction == "diag":
        r = op.Sub(op.Sub(h, const_i64(op, [1])), r)  # c - r + H - 1 = c + (H - 1 - r)
    return op.Add(r, unsqueeze(op, _arange(op, dim(op, x, 3)), [0]))


def _diagonal_cells(op, p: StripParams, x):
    """``(flat, inside, counts)``: the flat ``H*W`` index ``[L, K]`` of cell ``k`` of
    diagonal ``j`` (``L = H+W-1``, ``K = min(H, W)``), whether that slot is a cell, and
    the cells per diagonal ``[L]`` (float): ``min(j + 1, L - j, H, W)``.

    ``diag`` ``j`` starts at ``(max(H-1-j, 0), max(j-H+1, 0))`` and steps ``(+1, +1)``;
    ``antidiag`` ``j`` starts at ``(max(j-W+1, 0), j - row)`` and steps ``(+1, -1)``.
    """
    h, w = dim(op, x, 2), dim(op, x, 3)
    one, zero = const_i64(op, [1]), const_i64(op, [0])
    length = op.Sub(op.Add(h, w), one)
    shortest = op.Min(h, w)
    j = unsqueeze(op, _arange(op, length), [1])  # [L, 1]
    k = unsqueeze(op, _arange(op, shortest), [0])  # [1, K]
    counts = op.Min(op.Min(op.Add(j, one), op.Sub(length, j)), shortest)  # [L, 1]
    inside = op.Less(k, counts)
    if p.direction == "diag":
        h1 = op.Sub(h, one)
        r = op.Add(op.Max(op.Sub(h1, j), zero), k)
        c = op.Add(op.Max(op.Sub(j, h1), zero), k)
    else:
        r0 = op.Max(op.Sub(j, op.Sub(w, one)), zero)
        r = op.Add(r0, k)
        c = op.Sub(op.Sub(j, r0), k)
    flat = op.Where(inside, op.Add(op.Mul(r, w), c), const_i64(op, [0]))
    return flat, inside, op.Cast(op.Squeeze(counts, const_i64(op, [1])), to=1)


def _diagonal_lengths(op, x):
    """Cells per diagonal ``[H+W-1]`` (float): ``min(j + 1, L - j, H, W)``."""
    h, w = dim(op, x, 2), dim(op, x, 3)
    length = op.Sub(op.Add(h, w), const_i64(op, [1]))
    j = _arange(op, length)
    counts = op.Min(op.Min(op.Add(j, const_i64(op, [1])), op.Sub(length, j)), op.Min(h, w))
    return op.Cast(counts, to=1)


def onnx_strip(op, p: StripParams, x, outputs=("y",)):
    if p.direction in ("h", "v"):
        axis = 3 if p.direction == "h" else 2
        return blocks.take_outputs(outputs, y=op.ReduceMean(x, const_i64(op, [axis]), keepdims=1))
    flat, inside, counts = _diagonal_cells(op, p, x)
    cells = op.Gather(op.Reshape(x, const_i64(op, [0, 0, -1])), flat, axis=2)  # [N, C, L, K]
    sums = op.ReduceSum(op.Where(inside, cells, const_f32(op, 0.0)), const_i64(op, [3]), keepdims=0)
    return blocks.take_outputs(outputs, y=unsqueeze(op, op.Div(sums, counts), [2]))


def onnx_strip_backward(op, p: StripParams, x, grad_y):
    if p.direction in ("h", "v"):
        size = op.Cast(dim(op, x, 3 if p.direction == "h" else 2), to=1)
        return op.Expand(op.Div(grad_y, size), op.Shape(x))
    g = op.Div(op.Squeeze(grad_y, const_i64(op, [2])), _diagonal_lengths(op, x))  # [N, C, H+W-1]
    return op.Gather(g, _diagonal_index(op, p, x), axis=2)  # [N, C, H, W]


def strip_work(p: StripParams, shapes, outputs=("y",), backward=False) -> int:
    """``h``/``v``: a ReduceMean; ``diag``/``antidiag``: each diagonal's cells gathered
    ``[N, C, H+W-1, min(H, W)]`` with int64 indices ``[H+W-1, min(H, W)]``. Backward:
    the gradient of x's size (and the int64 diagonal of each cell)."""
    n, c, h, w = shapes["x"]
    if p.direction in ("h", "v"):
        work = n * c * (h if p.direction == "h" else w)
    else:
        length, shortest = max(h + w - 1, 0), min(h, w)
        work = max(n * c * h * w, n * c * length * shortest, 2 * length * shortest, 2 * length)
    if backward:
        work = max(work, n * c * h * w, 2 * h * w if p.direction not in ("h", "v") else 0)
    return work


register(
    OpSpec(
        name="strip",
        family="global",
        params=StripParams,
        torch_fn=torch_strip,
        onnx_fn=onnx_strip,
        onnx_backward=onnx_strip_backward,
        output_shape=_shape,
        module_name="StripPool",
        work=strip_work,
        doc=__doc__,
    )
)
