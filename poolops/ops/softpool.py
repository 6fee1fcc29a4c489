"""SoftPool (Stergiou, Poppe & Kalliatakis 2021): the softmax-weighted mean of each window.

``y = sum_i w_i x_i`` with ``w = softmax over the window of x``, per channel (the paper's
definition: each activation's weight is ``e^{x_i} / sum_j e^{x_j}`` over its kernel
neighbourhood). ``kernel``, ``stride`` (default the kernel), floor mode, no padding.
Large values approach max pooling of the window; equal values give their mean.

Stable: computed as ``sum e^{x_i - m} x_i / sum e^{x_i - m}`` with ``m`` the window max,
so no ``exp`` overflows. The reference code (github.com/alexandrosstergiou/SoftPool,
``soft_pool2d``) computes ``exp(x)`` as is, which overflows float32 from ``x > 88.7``
(``inf / inf = NaN``); its CPU path also sums ``exp(x)`` over the channels (one weight map
for all channels), which the paper's definition does not: this op is per channel.
A weight that underflows to 0 contributes 0 (``-inf`` beside finite values is ignored);
a window holding ``+inf``, or only ``-inf``, gives NaN; NaN propagates.

Example: the window ``[[0, ln 3]]`` (kernel ``(1, 2)``) has weights ``(1/4, 3/4)``:
``y = 3/4 ln 3 = 0.824``. Backward: ``dy/dx_i = w_i (1 + x_i - y)``, accumulated over
the windows holding ``x_i``: here ``(0.25 * 0.176, 0.75 * 1.275) = (0.044, 0.956)``.

ONNX: windows gathered ``[N, C, oh, ow, kh*kw]``, ReduceMax, Exp, ReduceSum; backward a
scatter-add of the window gradients (see :mod:`poolops.ops._weighted`).
"""

from __future__ import annotations

from poolops.onnx import blocks
from poolops.ops._weighted import onnx_softpool_backward, onnx_weighted, out_hw, torch_weighted, weighted_work
from poolops.ops._window import check_window_fits
from poolops.params import OpParams, OptionalPositivePair, PositivePair
from poolops.registry import OpSpec, register

NAME = "softpool"


class SoftPoolParams(OpParams):
    kernel: PositivePair = (2, 2)
    stride: OptionalPositivePair = None

    @property
    def strides(self) -> tuple[int, int]:
        """The stride, which defaults to the kernel."""
        return self.stride or self.kernel

    @property
    def padding(self) -> tuple[int, int]:
        """No padding (for the shared window helpers)."""
        return (0, 0)


def torch_softpool(p: SoftPoolParams, x, outputs=("y",)):
    return blocks.take_outputs(outputs, y=torch_weighted(x, x, p.kernel, p.strides, p.padding))


def onnx_softpool(op, p: SoftPoolParams, x, outputs=("y",)):
    return blocks.take_outputs(outputs, y=onnx_weighted(op, x, None, p.kernel, p.strides, p.padding))


def onnx_backward(op, p: SoftPoolParams, x, grad_y):
    return onnx_softpool_backward(op, x, grad_y, p.kernel, p.strides)


def softpool_work(p: SoftPoolParams, shapes, outputs=("y",), backward=False) -> int:
    """The gathered windows and weights ``[N, C, oh, ow, kh*kw]`` and their int64 index;
    backward: the index expanded to every plane, the scatter into x's shape."""
    return weighted_work(shapes, p.kernel, p.strides, p.padding, False, backward)


register(
    OpSpec(
        name=NAME,
        family="window",
        params=SoftPoolParams,
        torch_fn=torch_softpool,
        onnx_fn=onnx_softpool,
        onnx_backward=onnx_backward,
        output_shape=lambda p, s: (s[0], s[1], *out_hw(s, p.kernel, p.strides, p.padding)),
        check_input=lambda p, x: check_window_fits(NAME, p, x.shape),
        module_name="SoftPool",
        work=softpool_work,
        doc=__doc__,
    )
)
