"""Fractional max pooling (Graham 2014): max over ``kernel`` windows placed at
pseudo-random, overlapping starts, so that the output size can be any fraction of the
input's (``output_size``, or ``output_ratio`` in (0, 1): ``int(H * ratio)``, in float64
as PyTorch computes it). PyTorch ``F.fractional_max_pool2d`` semantics, with its
sampling rule (aten ``FractionalMaxPooling.h``, ``generate_intervals``): for each
``(n, c)`` plane and axis, a sample ``u`` in ``[0, 1)`` gives the window starts
``int((i + u) * alpha) - int(u * alpha)`` for ``i < out - 1``, ``alpha = (in - k) /
(out - 1)``, all in float32, and ``in - k`` for the last window. Each window gives its
first maximum in row-major order (the last NaN if it holds NaN) and its plane index
``h * W + w``. Needs ``out + k - 1 <= in`` on each axis (PyTorch's check).

Samples: PyTorch draws them from its generator on every call (``_random_samples``
``[N, C, 2]``: ``(u_w, u_h)`` per plane); here they come from ``seed`` through the
counter-based hash of ``stochastic`` (``u`` of counter ``(n*C + c)*2 + k``, 24-bit,
exact in float32), the same in torch and ONNX on any device: the same seed gives the
same windows, use a new seed per step. ``poolops.ops.fractional_max.samples(seed, N, C)``
gives them, and ``F.fractional_max_pool2d(x, kernel, output_size, _random_samples=
samples(...))`` is this op exactly (the torch function calls it so).

Example: ``[[1, 5, 2, 0, 3]]`` with kernel ``(1, 2)``, output ``(1, 3)`` and a width
sample ``u = 0.5``: ``alpha = 3/2``, starts ``[int(0.75) - int(0.75), int(2.25) - 0,
5 - 2] = [0, 2, 3]``, windows ``[1, 5], [2, 0], [0, 3]``: ``y = [5, 2, 3]``, indices
``[1, 2, 4]``. Backward: to the argmax of each window, accumulated (windows overlap).

ONNX: the starts computed per plane from the hash samples (float32 Add, Mul and a
truncating Cast, as the C++), every window gathered ``[N, C, oh, ow, kh*kw]``
(GatherElements; its size does not grow with the kernel), ReduceMax and the first index
that reaches it (or the last NaN); backward a scatter-add. The ratio's output size is a
float64 Mul and Cast on the shape (shape arithmetic).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator

from poolops.onnx import blocks
from poolops.onnx.builder import const_i64, const_scalar_i64, dim, scalar, unsqueeze
from poolops.ops.stochastic import onnx_uniform, torch_uniform
from poolops.params import OpParams, OptionalPositivePair, ParamError, PositivePair, invalid
from poolops.registry import OpSpec, register

NAME = "fractional_max"
DEFAULT_RATIO = (0.5, 0.5)


def _to_ratio_pair(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (value, value)
    return value


Ratio = Annotated[float, Field(gt=0.0, lt=1.0)]
RatioPair = Annotated[tuple[Ratio, Ratio] | None, BeforeValidator(_to_ratio_pair)]


class FractionalMaxParams(OpParams):
    kernel: PositivePair = (2, 2)
    output_size: OptionalPositivePair = None
    """The output ``(oh, ow)``; or give ``output_ratio``."""
    output_ratio: RatioPair = None
    """``(rh, rw)`` in (0, 1): output ``(int(H * rh), int(W * rw))``; (0.5, 0.5) when
    neither this nor ``output_size`` is given."""
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    """Seed of the window samples (same seed, same windows)."""

    @model_validator(mode="after")
    def _one_size(self):
        if self.output_size is not None and self.output_ratio is not None:
            raise invalid("output_ratio", "give output_size or output_ratio, not both")
        return self

    @property
    def ratio(self) -> tuple[float, float] | None:
        """The output ratio, None when ``output_size`` is given."""
        return None if self.output_size is not None else (self.output_ratio or DEFAULT_RATIO)


def _ratio_size(size, ratio: float):
    """``int(size * ratio)`` as PyTorch (float64); SymInt-safe."""
    if isinstance(size, int):
        return int(size * ratio)
    import torch

    return torch.sym_int(size * ratio)


def out_hw(p: FractionalMaxParams, s) -> tuple:
    if p.output_size is not None:
        return tuple(p.output_size)
    return _ratio_size(s[2], p.ratio[0]), _ratio_size(s[3], p.ratio[1])


def output_shape(p: FractionalMaxParams, s) -> tuple:
    return (s[0], s[1], *out_hw(p, s))


def check_input(p: FractionalMaxParams, x) -> None:
    param = "output_size" if p.output_size is not None else "output_ratio"
    for axis, (out, k) in enumerate(zip(out_hw(p, x.shape), p.kernel)):
        size, name = int(x.shape[2 + axis]), "HW"[axis]
        if out < 1:
            raise ParamError(NAME, param, f"gives an empty output on axis {name} (input {size}); use a larger ratio")
        if out + k - 1 > size:
            raise ParamError(
                NAME,
                param,
                f"output {out} with kernel {k} on axis {name} needs an input of at least {out + k - 1} "
                f"(output + kernel - 1), got {size}; use a smaller output or kernel",
            )


def samples(seed: int, n: int, c: int, device=None):
    """PyTorch's ``_random_samples`` ``[N, C, 2]`` (``(u_w, u_h)`` per plane) for ``seed``."""
    return torch_uniform(seed, (n, c, 2), device)


# ---------------------------------------------------------------- torch


def torch_fractional_max(p: FractionalMaxParams, x, outputs=("y", "indices")):
    import torch.nn.functional as F

    n, c = x.shape[0], x.shape[1]
    u = samples(p.seed, n, c, x.device).to(x.dtype)
    y, indices = F.fractional_max_pool2d(x, p.kernel, output_size=out_hw(p, x.shape), return_indices=True,
                                         _random_samples=u)
    return blocks.take_outputs(outputs, y=y, indices=indices)


# ---------------------------------------------------------------- ONNX


def _onnx_out(op, p: FractionalMaxParams, x, axis: int):
    if p.output_size is not None:
        return const_i64(op, [p.output_size[axis]])
    import numpy as np
    import onnx

    ratio = onnx.numpy_helper.from_array(np.array([p.ratio[axis]], np.float64))
    scaled = op.Mul(op.Cast(dim(op, x, 2 + axis), to=onnx.TensorProto.DOUBLE), op.Constant(value=ratio))
    return op.Cast(scaled, to=onnx.TensorProto.INT64)  # truncates, as int()


def _starts(op, u, size, out, k: int):
    """Window starts ``[N, C, out]`` for samples ``u`` ``[N, C]`` (``generate_intervals``)."""
    one = const_i64(op, [1])
    span = op.Cast(op.Sub(size, const_i64(op, [k])), to=1)
    alpha = op.Div(span, op.Cast(op.Max(op.Sub(out, one), one), to=1))  # out = 1: only the last start
    i = op.Range(const_scalar_i64(op, 0), scalar(op, out), const_scalar_i64(op, 1))
    u3 = unsqueeze(op, u, [2])
    scaled = op.Mul(op.Add(op.Cast(i, to=1), u3), alpha)
    starts = op.Sub(op.Cast(scaled, to=7), op.Cast(op.Mul(u3, alpha), to=7))
    last = op.Sub(size, const_i64(op, [k]))
    return op.Where(op.Equal(i, op.Sub(out, one)), last, starts)


def _windows(op, p: FractionalMaxParams, x):
    """``(windows, index)``: every window ``[N, C, oh, ow, K]`` and its cells' plane indices."""
    (kh, kw) = p.kernel
    h, w = dim(op, x, 2), dim(op, x, 3)
    oh, ow = _onnx_out(op, p, x, 0), _onnx_out(op, p, x, 1)
    u = onnx_uniform(op, p.seed, [dim(op, x, 0), dim(op, x, 1), const_i64(op, [2])])
    u_w = op.Gather(u, const_scalar_i64(op, 0), axis=2)
    u_h = op.Gather(u, const_scalar_i64(op, 1), axis=2)
    rows = unsqueeze(op, _starts(op, u_h, h, oh, kh), [3, 4])  # [N, C, oh, 1, 1]
    cols = unsqueeze(op, _starts(op, u_w, w, ow, kw), [2, 4])  # [N, C, 1, ow, 1]
    t = op.Range(const_scalar_i64(op, 0), const_scalar_i64(op, kh * kw), const_scalar_i64(op, 1))
    kw_c = const_scalar_i64(op, kw)
    index = op.Add(op.Mul(op.Add(rows, op.Div(t, kw_c)), w), op.Add(cols, op.Mod(t, kw_c)))  # [N, C, oh, ow, K]
    nc_flat = const_i64(op, [0, 0, -1])
    cells = op.GatherElements(op.Reshape(x, nc_flat), op.Reshape(index, nc_flat), axis=2)
    return op.Reshape(cells, op.Shape(index)), index


def _pick(op, p: FractionalMaxParams, x):
    """``(y, indices)``: each window's first maximum (row-major) or its last NaN."""
    windows, index = _windows(op, p, x)
    last = const_i64(op, [4])
    k = p.kernel[0] * p.kernel[1]
    t = op.Range(const_scalar_i64(op, 0), const_scalar_i64(op, k), const_scalar_i64(op, 1))
    top = op.ReduceMax(windows, last, keepdims=1)
    first = op.ReduceMin(op.Where(op.Equal(windows, top), t, const_scalar_i64(op, k)), last, keepdims=1)
    last_nan = op.ReduceMax(op.Where(op.IsNaN(windows), t, const_scalar_i64(op, -1)), last, keepdims=1)
    chosen = op.Where(op.GreaterOrEqual(last_nan, const_scalar_i64(op, 0)), last_nan, first)
    y = op.Squeeze(op.GatherElements(windows, chosen, axis=4), last)
    return y, op.Squeeze(op.GatherElements(index, chosen, axis=4), last)


def onnx_fractional_max(op, p: FractionalMaxParams, x, outputs=("y", "indices")):
    y, indices = _pick(op, p, x)
    return blocks.take_outputs(outputs, y=y, indices=indices)


def onnx_fractional_max_backward(op, p: FractionalMaxParams, x, grad_y):
    _, indices = _pick(op, p, x)
    return blocks.scatter_add(op, x, indices, grad_y)


def fractional_max_work(p: FractionalMaxParams, shapes, outputs=("y",), backward=False) -> int:
    """The windows ``[N, C, oh, ow, kh*kw]`` and their int64 plane indices and candidate
    positions; backward: the scatter into x's shape."""
    n, c, h, w = shapes["x"]
    oh, ow = (max(int(d), 0) for d in out_hw(p, shapes["x"]))
    work = 2 * n * c * oh * ow * p.kernel[0] * p.kernel[1]
    if backward:
        work = max(work, blocks.scatter_add_work(n, c, h, w, oh * ow))
    return work


register(
    OpSpec(
        name=NAME,
        torch_stock="F.fractional_max_pool2d",
        family="window",
        params=FractionalMaxParams,
        torch_fn=torch_fractional_max,
        onnx_fn=onnx_fractional_max,
        onnx_backward=onnx_fractional_max_backward,
        output_shape=output_shape,
        check_input=check_input,
        module_name="FractionalMaxPool",
        outputs=("y", "indices"),
        work=fractional_max_work,
        doc=__doc__,
    )
)
