"""Average pooling: PyTorch ``avg_pool2d`` semantics.

Example: ``[[1, 3], [2, 2]]`` with a 2x2 window gives ``2``; backward divides the
gradient evenly over the window: ``[2] -> [[0.5, 0.5], [0.5, 0.5]]``.

ONNX: native AveragePool when PyTorch and ONNX agree (floor mode, no divisor
override); otherwise window sums over explicit zero padding divided by PyTorch's
divisor (ONNX Runtime has had wrong results for ceil_mode with pads).

``tf_same=True``: TF "SAME" padding, computed from the input size (output ``ceil(H /
stride)``, the extra padding cell at the bottom/right, see ``max``), and TF's divisor:
the cells of the window inside the input, padding never counted (TF's SAME average;
timm's ``AvgPool2dSame`` counts the padding with its default ``count_include_pad=True``
and differs at the edges), or ``divisor_override``. ``count_include_pad`` concerns the
explicit ``padding`` only, which must be 0 with ``tf_same``. Example: ``[[1, 2, 3]]``,
kernel (1, 2), stride 1: windows ``[1, 2]``, ``[2, 3]``, ``[3]`` give ``[[1.5, 2.5, 3]]``.
See :mod:`poolops.ops._same`.
"""

from __future__ import annotations

from pydantic import Field

from poolops.onnx import blocks
from poolops.ops import _same
from poolops.ops._window import WindowParams, check_window_fits, output_shape
from poolops.registry import OpSpec, register


class AvgParams(WindowParams, _same.SamePadding):
    count_include_pad: bool = True
    divisor_override: int | None = Field(default=None, gt=0)


def torch_avg(p: AvgParams, x, outputs=("y",)):
    import torch.nn.functional as F

    if p.tf_same:
        return (_same.torch_avg(p.kernel, p.strides, p.divisor_override, x),)
    y = F.avg_pool2d(x, p.kernel, p.strides, p.padding, p.ceil_mode, p.count_include_pad, p.divisor_override)
    return (y,)


def onnx_avg(op, p: AvgParams, x, outputs=("y",)):
    if p.tf_same:
        return blocks.take_outputs(outputs, y=_same.onnx_avg(op, p.kernel, p.strides, p.divisor_override, x))
    pads = [p.padding[0], p.padding[1], p.padding[0], p.padding[1]]
    if not p.ceil_mode and p.divisor_override is None:
        y = op.AveragePool(
            x,
            kernel_shape=list(p.kernel),
            strides=list(p.strides),
            pads=pads,
            count_include_pad=int(p.count_include_pad),
        )
    else:
        total = blocks.window_sum(op, x, p.kernel, p.strides, p.padding, p.ceil_mode)
        y = op.Div(total, _divisor(op, p, x))
    return blocks.take_outputs(outputs, y=y)


def _divisor(op, p: AvgParams, x):
    return blocks.avg_divisor(
        op, x, p.kernel, p.strides, p.padding, p.ceil_mode, p.count_include_pad, p.divisor_override
    )


def onnx_avg_backward(op, p: AvgParams, x, grad_y):
    """``A_h^T (g / D) A_w``: every window hands ``g / D`` to each input it covers."""
    if p.tf_same:
        return _same.onnx_avg_backward(op, p.kernel, p.strides, p.divisor_override, x, grad_y)
    a_h, a_w = blocks.window_membership(op, x, p.kernel, p.strides, p.padding, p.ceil_mode)
    return blocks.separable_matmul_t(op, op.Div(grad_y, _divisor(op, p, x)), a_h, a_w)


def avg_work(p: AvgParams, shapes, outputs=("y",), backward=False) -> int:
    """AveragePool; else the window sums (ceil-mode padding) and the divisors; backward:
    the 0/1 window matrices and ``A_h^T (g / D) A_w``."""
    n, c, h, w = shapes["x"]
    if p.tf_same:
        return _same.avg_work(p.kernel, p.strides, shapes["x"], backward, p.divisor_override)
    _, _, oh, ow = (max(d, 0) for d in output_shape(p, shapes["x"]))
    work = n * c * oh * ow
    if p.ceil_mode or p.divisor_override is not None:
        work = max(work, blocks.window_sum_work(n, c, h, w, p.kernel, p.strides, p.padding, p.ceil_mode))
    if p.divisor_override is None:
        work = max(work, blocks.avg_divisor_work(oh, ow))
    if backward:
        work = max(
            work,
            blocks.window_membership_work(h, w, oh, ow),
            blocks.separable_matmul_t_work(n, c, h, w, oh, ow),
        )
    return work


register(
    OpSpec(
        name="avg",
        torch_stock="F.avg_pool2d",
        family="window",
        params=AvgParams,
        torch_fn=torch_avg,
        onnx_fn=onnx_avg,
        onnx_backward=onnx_avg_backward,
        output_shape=lambda p, s: _same.output_shape(p.strides, s) if p.tf_same else output_shape(p, s),
        check_input=lambda p, x: None if p.tf_same else check_window_fits("avg", p, x.shape),
        module_name="AvgPool",
        work=avg_work,
        bench_params=(("tf_same, kernel 3, stride 2", {"kernel": 3, "stride": 2, "tf_same": True}),),
        doc=__doc__,
    )
)
