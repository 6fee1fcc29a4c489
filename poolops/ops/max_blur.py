"""MaxBlurPool (Zhang 2019): max pooling densely evaluated (stride 1), then ``blur``
subsampling: the anti-aliased replacement of ``max`` with stride.

``y = blur(max_pool2d(x, kernel, stride=1), filt_size, stride, pad_type)``, as the
antialiased-cnns networks build it (``nn.MaxPool2d(kernel_size=2, stride=1)`` then
``BlurPool(C, filt_size=4, stride=2)``; kornia's ``MaxBlurPool2D`` is the same with zero
padding, ``pad_type='zero'``). The max is ``max``'s (no padding, floor mode: ``H - k + 1``
rows; NaN propagates); the blur is ``blur``'s (see its doc). Output
``ceil((H - k + 1) / stride)``.

Example: ``[[1, 5, 2, 0]]`` with ``kernel=(1, 2)``, ``filt_size=3``, ``stride=(1, 2)``,
``replicate``: the dense max ``[5, 5, 2]``, padded ``[5, 5, 5, 2, 2]``, filtered by
``[1, 2, 1] / 4`` at stride 2: ``[5, 2.75]``. Backward: the blur's backward, then each
dense max's gradient to its first argmax (accumulated): ``[[1, 1]] -> [[0, 1.25, 0.75, 0]]``.

ONNX: MaxPool (stride 1; the NaN pass of ``max`` unless ``propagate_nan=False``), then
the blur's Pad and Conv; backward: the blur's backward and a scatter-add to the argmax.
"""

from __future__ import annotations

from pydantic import Field

from poolops.onnx import blocks
from poolops.ops.blur import (
    PadType,
    blur_map_work,
    check_size,
    onnx_blur_map,
    onnx_blur_map_backward,
    out_size,
    torch_blur_map,
)
from poolops.params import OpParams, ParamError, PositivePair
from poolops.registry import OpSpec, register

NAME = "max_blur"
_DENSE = ((1, 1), (0, 0), (1, 1), False)  # stride, padding, dilation, ceil_mode of the dense max


class MaxBlurParams(OpParams):
    kernel: PositivePair = (2, 2)
    """The max pooling window (evaluated at stride 1)."""
    filt_size: int = Field(default=4, ge=1, le=7)
    """Binomial filter size of the blur (1 to 7)."""
    stride: PositivePair = (2, 2)
    """The blur's subsampling stride."""
    pad_type: PadType = "reflect"
    propagate_nan: bool = True
    """NaN in a max window gives NaN (PyTorch). False skips that pass in ONNX, as ``max``."""


def _dense_hw(p: MaxBlurParams, s) -> tuple:
    return s[2] - p.kernel[0] + 1, s[3] - p.kernel[1] + 1


def output_shape(p: MaxBlurParams, s) -> tuple:
    h, w = _dense_hw(p, s)
    return (s[0], s[1], out_size(h, p.stride[0]), out_size(w, p.stride[1]))


def check_input(p: MaxBlurParams, x) -> None:
    h, w = int(x.shape[2]), int(x.shape[3])
    if h < p.kernel[0] or w < p.kernel[1]:
        raise ParamError(NAME, "kernel", f"max window {p.kernel} is larger than the input ({h}x{w}); use a smaller kernel")
    check_size(NAME, p, *_dense_hw(p, (0, 0, h, w)), what="the max-pooled map (H - kh + 1, W - kw + 1)")


def torch_max_blur(p: MaxBlurParams, x, outputs=("y",)):
    import torch.nn.functional as F

    m = F.max_pool2d(x, p.kernel, 1)
    return blocks.take_outputs(outputs, y=torch_blur_map(m, p.filt_size, p.stride, p.pad_type))


def _dense_max(op, p: MaxBlurParams, x, with_indices: bool):
    return blocks.max_pool(op, x, p.kernel, *_DENSE, with_indices)


def onnx_max_blur(op, p: MaxBlurParams, x, outputs=("y",)):
    dense = lambda op, t: _dense_max(op, p, t, False)[0]  # noqa: E731
    m = blocks.propagate_nan(op, x, dense) if p.propagate_nan else dense(op, x)
    return blocks.take_outputs(outputs, y=onnx_blur_map(op, m, p.filt_size, p.stride, p.pad_type))


def onnx_max_blur_backward(op, p: MaxBlurParams, x, grad_y):
    m, indices = _dense_max(op, p, x, True)
    g_m = onnx_blur_map_backward(op, m, grad_y, p.filt_size, p.stride, p.pad_type)
    return blocks.scatter_add(op, x, indices, g_m)


def max_blur_work(p: MaxBlurParams, shapes, outputs=("y",), backward=False) -> int:
    """The dense max (int64 indices too for backward), its NaN pass, the blur of it;
    backward: the blur's backward and the scatter into x's shape."""
    n, c, h, w = shapes["x"]
    mh, mw = (max(d, 0) for d in _dense_hw(p, shapes["x"]))
    window = (p.kernel, *_DENSE)
    work = max(blocks.max_pool_work(n, c, h, w, *window, backward), blur_map_work(n, c, mh, mw, p.filt_size, p.stride))
    if p.propagate_nan:
        work = max(work, blocks.propagate_nan_work(n, c, h, w, *window))
    if backward:
        work = max(work, blocks.scatter_add_work(n, c, h, w, mh * mw))
    return work


register(
    OpSpec(
        name=NAME,
        family="window",
        params=MaxBlurParams,
        torch_fn=torch_max_blur,
        onnx_fn=onnx_max_blur,
        onnx_backward=onnx_max_blur_backward,
        output_shape=output_shape,
        check_input=check_input,
        module_name="MaxBlurPool",
        work=max_blur_work,
        doc=__doc__,
    )
)
