"""BlurPool (Zhang 2019, "Making Convolutional Networks Shift-Invariant Again"): a
binomial low-pass filter applied before subsampling, so that shifting the input moves
the output smoothly instead of aliasing.

Semantics of the reference code, antialiased-cnns ``BlurPool`` (github.com/adobe/
antialiased-cnns, ``blurpool.py``; timm and kornia offer the same filter with other
paddings): the filter is the outer product of row ``filt_size - 1`` of Pascal's triangle
with itself, normalised to sum 1 (``filt_size`` 1 to 7: ``[1]``, ``[1, 1]``,
``[1, 2, 1]``, ``[1, 3, 3, 1]``, ...); ``x`` is padded by ``(filt_size - 1) // 2``
before and ``ceil((filt_size - 1) / 2)`` after on each axis (``pad_type``: ``reflect``,
the default, mirrors about the edge cell; ``replicate`` repeats it; ``zero`` pads 0),
then each channel is convolved with the filter at ``stride`` (default 2). Output
``ceil(H / stride)`` by ``ceil(W / stride)``. ``filt_size=1`` is plain subsampling
``x[:, :, ::s, ::s]``. Defaults as the reference: ``filt_size=4``, ``stride=2``,
``reflect``. Reflect padding needs H and W above the padding
(``ceil((filt_size - 1) / 2)``); for smaller maps use ``replicate`` or ``zero``.

Example: ``[[1, 2, 3, 4]]`` with ``filt_size=3``, ``stride=(1, 2)``, ``replicate``:
the row padded ``[1, 1, 2, 3, 4]`` (top and bottom replicate the row, so rows average to
it), filter ``[1, 2, 1] / 4``: ``[(1 + 2 + 2) / 4, (2 + 6 + 4) / 4] = [1.25, 3.0]``.
Backward: each output's gradient spread by the filter over its window (the transposed
convolution), then the padding's gradient folded back onto the cells it copied:
``[[1, 1]] -> [[0.75, 0.5, 0.5, 0.25]]`` here (the left padding copies cell 0).

ONNX: Pad (``reflect`` / ``edge`` / ``constant``), then one single-channel Conv over
``[N*C, 1, H', W']`` (C is dynamic, so no grouped Conv); backward: ConvTranspose and
Slice/Pad/Add folds of the padding. Every node has an ONNX Runtime CUDA kernel.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from poolops.onnx import blocks
from poolops.onnx.builder import const_i64, dim
from poolops.params import OpParams, ParamError, PositivePair
from poolops.registry import OpSpec, register

NAME = "blur"
PadType = Literal["reflect", "replicate", "zero"]
_ONNX_MODE = {"reflect": "reflect", "replicate": "edge", "zero": "constant"}
_TORCH_MODE = {"reflect": "reflect", "replicate": "replicate", "zero": "constant"}
_INT64_MAX = 2**63 - 1


class BlurParams(OpParams):
    filt_size: int = Field(default=4, ge=1, le=7)
    """Binomial filter size (1 to 7): ``[1, 3, 3, 1]`` for 4."""
    stride: PositivePair = (2, 2)
    pad_type: PadType = "reflect"
    """``reflect`` (the reference), ``replicate`` (edge) or ``zero``."""


def binomial(size: int) -> list[int]:
    """Row ``size - 1`` of Pascal's triangle."""
    return [math.comb(size - 1, k) for k in range(size)]


def pads(filt_size: int) -> tuple[int, int]:
    """Padding (before, after) on each axis: ``(f - 1) // 2`` and ``ceil((f - 1) / 2)``."""
    return (filt_size - 1) // 2, filt_size // 2


def out_size(size, stride: int):
    """``ceil(size / stride)`` (ints or SymInts)."""
    return (size - 1) // stride + 1


def output_shape(p, s) -> tuple:
    return (s[0], s[1], out_size(s[2], p.stride[0]), out_size(s[3], p.stride[1]))


def check_size(op_name: str, p, h: int, w: int, what: str = "x") -> None:
    """Reflect padding must be smaller than the map (as PyTorch's and ONNX's reflect)."""
    after = pads(p.filt_size)[1]
    if p.pad_type == "reflect" and min(h, w) <= after:
        raise ParamError(
            op_name,
            "pad_type",
            f"reflect padding by {after} (filt_size {p.filt_size}) needs {what} of at least {after + 1}x{after + 1}, "
            f"got {h}x{w}; use pad_type='replicate' or 'zero', or a smaller filt_size",
        )


# ---------------------------------------------------------------- torch


def torch_blur_map(x, filt_size: int, stride, pad_type: str):
    """The reference ``BlurPool.forward`` on ``x`` ``[N, C, H, W]``."""
    import torch
    import torch.nn.functional as F

    if filt_size == 1:
        return x[:, :, :: stride[0], :: stride[1]]
    before, after = pads(filt_size)
    xp = F.pad(x, (before, after, before, after), mode=_TORCH_MODE[pad_type])
    a = torch.tensor(binomial(filt_size), dtype=x.dtype, device=x.device)
    filt = a[:, None] * a[None, :]
    filt = filt / torch.sum(filt)
    c = x.shape[1]
    return F.conv2d(xp, filt[None, None].expand(c, 1, filt_size, filt_size), stride=tuple(stride), groups=c)


def torch_blur(p: BlurParams, x, outputs=("y",)):
    return blocks.take_outputs(outputs, y=torch_blur_map(x, p.filt_size, p.stride, p.pad_type))


# ---------------------------------------------------------------- ONNX


def _filter(op, filt_size: int):
    a = binomial(filt_size)
    total = float(sum(a)) ** 2
    values = [u * v / total for u in a for v in a]
    return op.Reshape(op.Constant(value_floats=values), const_i64(op, [1, 1, filt_size, filt_size]))


def _planes(op, t):
    """``[N, C, H, W] -> [N*C, 1, H, W]``."""
    return op.Reshape(t, const_i64(op, [-1, 1, 0, 0]))


def _unplanes(op, t, like):
    """``[N*C, 1, h, w] -> [N, C, h, w]`` (N, C of ``like``)."""
    return op.Reshape(t, op.Concat(op.Shape(like, start=0, end=2), op.Shape(t, start=2, end=4), axis=0))


def onnx_blur_map(op, x, filt_size: int, stride, pad_type: str):
    before, after = pads(filt_size)
    xp = op.Pad(x, const_i64(op, [0, 0, before, before, 0, 0, after, after]), mode=_ONNX_MODE[pad_type])
    y = op.Conv(_planes(op, xp), _filter(op, filt_size), kernel_shape=[filt_size, filt_size], strides=list(stride))
    return _unplanes(op, y, x)


def onnx_blur(op, p: BlurParams, x, outputs=("y",)):
    return blocks.take_outputs(outputs, y=onnx_blur_map(op, x, p.filt_size, p.stride, p.pad_type))


def _pad_axis(op, t, axis: int, lo, hi):
    """Zero-pad ``t`` (4-D) by ``lo`` before and ``hi`` after on ``axis`` (dims or ints)."""
    zero = const_i64(op, [0])
    as_dim = lambda v: const_i64(op, [v]) if isinstance(v, int) else v  # noqa: E731
    begin = [zero] * 4
    end = [zero] * 4
    begin[axis], end[axis] = as_dim(lo), as_dim(hi)
    return op.Pad(t, op.Concat(*begin, *end, axis=0))


def _slice(op, t, axis: int, start, end, step: int = 1):
    as_dim = lambda v: const_i64(op, [v]) if isinstance(v, int) else v  # noqa: E731
    return op.Slice(t, as_dim(start), as_dim(end), const_i64(op, [axis]), const_i64(op, [step]))


def _fold_padding(op, g, axis: int, size, filt_size: int, pad_type: str):
    """The gradient of ``x`` from that of its padded copy along ``axis``: the centre, plus
    the padded cells' gradients added onto the cells they copied."""
    before, after = pads(filt_size)
    one = const_i64(op, [1])
    centre = _slice(op, g, axis, before, op.Add(size, const_i64(op, [before])))
    if pad_type == "zero":
        return centre
    last = op.Sub(size, one)
    out = centre
    if before:
        head = _slice(op, g, axis, 0, before)
        if pad_type == "reflect":  # padded cell j < before copies cell before - j: cells 1..before
            out = op.Add(out, _pad_axis(op, _slice(op, head, axis, -1, -_INT64_MAX, -1), axis, 1,
                                        op.Sub(last, const_i64(op, [before]))))
        else:
            out = op.Add(out, _pad_axis(op, op.ReduceSum(head, const_i64(op, [axis]), keepdims=1), axis, 0, last))
    if after:
        tail = _slice(op, g, axis, op.Add(size, const_i64(op, [before])), _INT64_MAX)
        if pad_type == "reflect":  # padded cell size - 1 + k copies cell size - 1 - k (k = 1..after)
            out = op.Add(out, _pad_axis(op, _slice(op, tail, axis, -1, -_INT64_MAX, -1), axis,
                                        op.Sub(last, const_i64(op, [after])), 1))
        else:
            out = op.Add(out, _pad_axis(op, op.ReduceSum(tail, const_i64(op, [axis]), keepdims=1), axis, last, 0))
    return out


def onnx_blur_map_backward(op, x, grad_y, filt_size: int, stride, pad_type: str):
    """``grad_x`` of :func:`onnx_blur_map` (``x``: its input, for the shapes)."""
    g = op.ConvTranspose(_planes(op, grad_y), _filter(op, filt_size), kernel_shape=[filt_size, filt_size],
                         strides=list(stride))
    # the transposed convolution covers (o - 1) * s + f cells; the padded map has H + f - 1
    h, w = dim(op, x, 2), dim(op, x, 3)
    one = const_i64(op, [1])
    extra = [op.Sub(op.Sub(size, one), op.Mul(op.Sub(dim(op, grad_y, 2 + a), one), const_i64(op, [stride[a]])))
             for a, size in enumerate((h, w))]
    zero = const_i64(op, [0])
    g = op.Pad(g, op.Concat(zero, zero, zero, zero, zero, zero, extra[0], extra[1], axis=0))
    g = _unplanes(op, g, x)
    g = _fold_padding(op, g, 2, h, filt_size, pad_type)
    return _fold_padding(op, g, 3, w, filt_size, pad_type)


def onnx_blur_backward(op, p: BlurParams, x, grad_y):
    return onnx_blur_map_backward(op, x, grad_y, p.filt_size, p.stride, p.pad_type)


# ---------------------------------------------------------------- cost


NCHWC_BLOCK = 16
"""ONNX Runtime (all optimisations) runs Conv in its NCHWc layout, padding the one output
channel to a block of up to 16 channels (the CPU's vector width)."""


def blur_map_work(n: int, c: int, h: int, w: int, filt_size: int, stride) -> int:
    """The padded map (the convolution's input; backward: the transposed convolution's
    output, as large), the convolution's output in ONNX Runtime's NCHWc layout
    (:data:`NCHWC_BLOCK` channels per plane) and its im2col buffer of one plane,
    ``f*f*oh*ow`` (which its profiler does not see)."""
    hp, wp = h + filt_size - 1, w + filt_size - 1
    oh, ow = out_size(h, stride[0]), out_size(w, stride[1])
    return max(n * c * hp * wp, NCHWC_BLOCK * n * c * oh * ow, filt_size * filt_size * oh * ow)


def blur_work(p: BlurParams, shapes, outputs=("y",), backward=False) -> int:
    """The padded map, the convolution's NCHWc output, the im2col buffer of one plane
    (forward and backward alike)."""
    n, c, h, w = shapes["x"]
    return blur_map_work(n, c, h, w, p.filt_size, p.stride)


def check_input(p: BlurParams, x) -> None:
    check_size(NAME, p, int(x.shape[2]), int(x.shape[3]))


register(
    OpSpec(
        name=NAME,
        family="window",
        params=BlurParams,
        torch_fn=torch_blur,
        onnx_fn=onnx_blur,
        onnx_backward=onnx_blur_backward,
        output_shape=output_shape,
        check_input=check_input,
        module_name="BlurPool",
        work=blur_work,
        doc=__doc__,
    )
)
