"""Max unpooling: the partial inverse of ``max``, PyTorch ``F.max_unpool2d`` semantics.

Each value of ``x`` ``[N, C, H, W]`` is written at its plane index (input ``indices``,
int64, same shape: ``h * W_out + w``, as ``max`` returns them) of an all-zero output
``[N, C, H_out, W_out]``. The output size is by default ``(H - 1) * stride - 2 *
padding + kernel`` (the size a ``max`` with these ``kernel``, ``stride`` and ``padding``
was applied to, up to its floor rounding); ``output_size`` gives it exactly, and must
lie strictly within ``stride`` of the default, as PyTorch requires. Every index must be
in ``[0, H_out * W_out)``. An index repeated within a plane (overlapping windows of
``max`` sharing a maximum, whose values are then equal) receives one of its values:
PyTorch's CPU kernel writes them in parallel (any one), ONNX Runtime's CPU
ScatterElements the last in row-major order, CUDA any one.

Example: ``x = [[3]]``, ``indices = [[1]]``, kernel 2: ``[[0, 3], [0, 0]]``. Backward:
``grad_x`` reads ``grad_y`` at each index (``[[g00, g01], [g10, g11]] -> [[g01]]``),
also for a value another one overwrote, as PyTorch.

ONNX: ScatterElements of ``x`` into a ConstantOfShape of zeros ``[N*C, H_out*W_out]``;
backward: GatherElements of ``grad_y``. Not ONNX ``MaxUnpool``: ONNX Runtime has no CUDA
kernel for it. The gradient graph takes ``indices`` too (``OpSpec.backward_inputs``).
"""

from __future__ import annotations

import numpy as np

from poolops.inputs import InputKind, register_kind
from poolops.onnx import blocks
from poolops.onnx.builder import const_i64, dim
from poolops.params import NonNegativePair, OpParams, OptionalPositivePair, ParamError, PositivePair
from poolops.registry import OpSpec, register

NAME = "max_unpool"


class MaxUnpoolParams(OpParams):
    kernel: PositivePair = (2, 2)
    stride: OptionalPositivePair = None
    padding: NonNegativePair = (0, 0)
    output_size: OptionalPositivePair = None
    """``(H_out, W_out)``; default ``(H - 1) * stride - 2 * padding + kernel``."""

    @property
    def strides(self) -> tuple[int, int]:
        """The stride, which defaults to the kernel."""
        return self.stride or self.kernel


def default_size(p: MaxUnpoolParams, size, axis: int):
    """``(size - 1) * stride - 2 * padding + kernel`` (ints or SymInts)."""
    return (size - 1) * p.strides[axis] - 2 * p.padding[axis] + p.kernel[axis]


def out_hw(p: MaxUnpoolParams, s) -> tuple:
    if p.output_size is not None:
        return tuple(p.output_size)
    return default_size(p, s[2], 0), default_size(p, s[3], 1)


def output_shape(p: MaxUnpoolParams, s) -> tuple:
    return (s[0], s[1], *out_hw(p, s))


def _distinct_cells(rng, count: int, kernel: int, stride: int, pad: int, out: int) -> np.ndarray:
    """A cell of ``[0, out)`` in each window ``[i*stride - pad, i*stride - pad + kernel)``,
    all different where the windows leave room (random among the choices that keep room for
    the windows after), else a random cell of each window, clipped."""
    starts = np.arange(count) * stride - pad
    lo, hi = np.maximum(starts, 0), np.minimum(starts + kernel, out) - 1
    right = hi.copy()  # the rightmost distinct choice of each window, from the end
    for i in range(count - 2, -1, -1):
        right[i] = min(hi[i], right[i + 1] - 1)
    cells, prev = np.empty(count, np.int64), -1
    for i in range(count):
        first = max(lo[i], prev + 1)
        if first > right[i]:
            return np.clip(starts + rng.integers(0, kernel, count), 0, out - 1)
        cells[i] = prev = rng.integers(first, right[i] + 1)
    return cells


def _example_indices(x_shape, rng, p=None):
    """Where ``max`` with the op's window would have found each value: a cell of each
    window, different cells where the windows leave room (repeated indices with different
    values make PyTorch's result depend on its threads)."""
    p = p if p is not None else MaxUnpoolParams()
    n, c, h, w = x_shape
    oh, ow = (max(int(d), 1) for d in out_hw(p, x_shape))
    out = np.empty((n, c, h, w), np.int64)
    for b in range(n):
        for ch in range(c):
            rows = _distinct_cells(rng, h, p.kernel[0], p.strides[0], p.padding[0], oh)
            cols = _distinct_cells(rng, w, p.kernel[1], p.strides[1], p.padding[1], ow)
            out[b, ch] = rows[:, None] * ow + cols[None, :]
    return out


register_kind(
    InputKind(
        "indices",
        ("N", "C", "H", "W"),
        "int64",
        "where each value of x goes: its flat index h * W_out + w in its (n, c) plane of the output, "
        "as max returns them (return_indices)",
        _example_indices,
        differentiable=False,
    )
)


def check_input(p: MaxUnpoolParams, x, indices=None) -> None:
    """The output size (torch's range for ``output_size``) and every index within it."""
    for axis in range(2):
        size, name = int(x.shape[2 + axis]), "HW"[axis]
        default = default_size(p, size, axis)
        if p.output_size is not None:
            lo, hi = default - p.strides[axis], default + p.strides[axis]
            if not lo < p.output_size[axis] < hi:
                raise ParamError(
                    NAME,
                    "output_size",
                    f"must be strictly between {lo} and {hi} on axis {name} for an input of {size} (default "
                    f"(H - 1) * stride - 2 * padding + kernel = {default}, give or take the stride), "
                    f"got {p.output_size[axis]}",
                )
        elif default < 1:
            raise ParamError(
                NAME, "padding", f"the output would be empty on axis {name} ({default} for an input of {size})"
            )
    if indices is None:
        return
    oh, ow = out_hw(p, x.shape)
    idx = np.asarray(indices.detach().cpu() if hasattr(indices, "detach") else indices)
    if idx.size and (idx.min() < 0 or idx.max() >= oh * ow):
        bad = int(idx.min()) if idx.min() < 0 else int(idx.max())
        raise ParamError(NAME, "indices", f"must be within [0, {oh * ow}) (the output plane {oh}x{ow}), got {bad}")


def torch_max_unpool(p: MaxUnpoolParams, x, indices, outputs=("y",)):
    import torch.nn.functional as F

    y = F.max_unpool2d(x, indices, p.kernel, p.strides, p.padding, output_size=out_hw(p, x.shape))
    return blocks.take_outputs(outputs, y=y)


def _onnx_out(op, p: MaxUnpoolParams, x, axis: int):
    if p.output_size is not None:
        return const_i64(op, [p.output_size[axis]])
    s, k, pad = p.strides[axis], p.kernel[axis], p.padding[axis]
    return op.Add(op.Mul(dim(op, x, 2 + axis), const_i64(op, [s])), const_i64(op, [k - s - 2 * pad]))


def onnx_max_unpool(op, p: MaxUnpoolParams, x, indices, outputs=("y",)):
    oh, ow = _onnx_out(op, p, x, 0), _onnx_out(op, p, x, 1)
    nc = op.Mul(dim(op, x, 0), dim(op, x, 1))
    zeros = op.ConstantOfShape(op.Concat(nc, op.Mul(oh, ow), axis=0))
    flat = op.Concat(nc, const_i64(op, [-1]), axis=0)
    y = op.ScatterElements(zeros, op.Reshape(indices, flat), op.Reshape(x, flat), axis=1)
    y = op.Reshape(y, op.Concat(op.Shape(x, start=0, end=2), oh, ow, axis=0))
    return blocks.take_outputs(outputs, y=y)


def onnx_max_unpool_backward(op, p: MaxUnpoolParams, x, grad_y, indices):
    nc = op.Mul(dim(op, x, 0), dim(op, x, 1))
    flat = op.Concat(nc, const_i64(op, [-1]), axis=0)
    g = op.GatherElements(op.Reshape(grad_y, flat), op.Reshape(indices, flat), axis=1)
    return op.Reshape(g, op.Shape(x))


def max_unpool_work(p: MaxUnpoolParams, shapes, outputs=("y",), backward=False) -> int:
    """The zeros and the scattered output (the output's size), the int64 indices viewed per
    plane; backward: the gathered gradient (x's size)."""
    n, c, h, w = shapes["x"]
    return 2 * n * c * h * w


register(
    OpSpec(
        name=NAME,
        torch_stock="F.max_unpool2d",
        family="unpool",
        params=MaxUnpoolParams,
        torch_fn=torch_max_unpool,
        onnx_fn=onnx_max_unpool,
        onnx_backward=onnx_max_unpool_backward,
        backward_inputs=("indices",),
        output_shape=output_shape,
        check_input=check_input,
        module_name="MaxUnpool",
        inputs=("x", "indices"),
        work=max_unpool_work,
        doc=__doc__,
    )
)
