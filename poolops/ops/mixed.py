"""Mixed pooling (Yu et al. 2014): max and average pooling over the same windows.

``mode="blend"``: ``alpha * max + (1 - alpha) * avg`` with ``alpha`` in [0, 1];
``mode="concat"``: max and avg concatenated on channels (``[N, 2C, oh, ow]``, max
first). Windows follow PyTorch (``max_pool2d`` / ``avg_pool2d`` with the same kernel,
stride, padding and ceil_mode; the average counts padding, PyTorch's default).
Both parts use one window, so their sizes always agree (max and average pools with
different windows would give maps that cannot be blended).
Example: ``[[1, 3], [2, 2]]`` with a 2x2 window and alpha 0.5 gives ``0.5*3 + 0.5*2 = 2.5``.
Backward: as its parts (``alpha`` of the gradient to the argmax, ``1 - alpha`` spread
over the window; in concat mode each half of the gradient to its part).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from poolops.onnx import blocks
from poolops.onnx.builder import const_f32
from poolops.ops._window import WindowParams, check_window_fits, output_shape
from poolops.ops.avg import AvgParams, avg_work, onnx_avg, onnx_avg_backward, torch_avg
from poolops.ops.max import MaxParams, max_work, onnx_max, onnx_max_backward, torch_max
from poolops.registry import OpSpec, register


class MixedParams(WindowParams):
    mode: Literal["blend", "concat"] = "blend"
    alpha: float = Field(default=0.5, ge=0.0, le=1.0)
    """Weight of max pooling in ``blend`` mode."""
    propagate_nan: bool = True

    def parts(self) -> tuple[MaxParams, AvgParams]:
        window = dict(kernel=self.kernel, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode)
        return MaxParams(**window, propagate_nan=self.propagate_nan), AvgParams(**window)


def _shape(p: MixedParams, s):
    n, c, h, w = output_shape(p, s)
    return (n, c * 2 if p.mode == "concat" else c, h, w)


def torch_mixed(p: MixedParams, x, outputs=("y",)):
    import torch

    pm, pa = p.parts()
    (m,), (a,) = torch_max(pm, x, outputs=("y",)), torch_avg(pa, x)
    y = torch.cat([m, a], dim=1) if p.mode == "concat" else p.alpha * m + (1 - p.alpha) * a
    return blocks.take_outputs(outputs, y=y)


def onnx_mixed(op, p: MixedParams, x, outputs=("y",)):
    pm, pa = p.parts()
    (m,), (a,) = onnx_max(op, pm, x, outputs=("y",)), onnx_avg(op, pa, x)
    if p.mode == "concat":
        y = op.Concat(m, a, axis=1)
    else:
        y = op.Add(op.Mul(m, const_f32(op, p.alpha)), op.Mul(a, const_f32(op, 1.0 - p.alpha)))
    return blocks.take_outputs(outputs, y=y)


def onnx_mixed_backward(op, p: MixedParams, x, grad_y):
    pm, pa = p.parts()
    if p.mode == "concat":
        g_max, g_avg = op.Split(grad_y, axis=1, num_outputs=2, _outputs=2)
    else:
        g_max = op.Mul(grad_y, const_f32(op, p.alpha))
        g_avg = op.Mul(grad_y, const_f32(op, 1.0 - p.alpha))
    return op.Add(onnx_max_backward(op, pm, x, g_max), onnx_avg_backward(op, pa, x, g_avg))


def mixed_work(p: MixedParams, shapes, outputs=("y",), backward=False) -> int:
    """Its max and avg parts (each ``[N, C, oh, ow]``), the blend or the concatenation;
    backward: the parts' backward graphs."""
    pm, pa = p.parts()
    n, c, oh, ow = (max(d, 0) for d in _shape(p, shapes["x"]))
    return max(max_work(pm, shapes, ("y",), backward), avg_work(pa, shapes, ("y",), backward), n * c * oh * ow)


register(
    OpSpec(
        name="mixed",
        family="window",
        params=MixedParams,
        torch_fn=torch_mixed,
        onnx_fn=onnx_mixed,
        onnx_backward=onnx_mixed_backward,
        output_shape=_shape,
        check_input=lambda p, x: check_window_fits("mixed", p, x.shape),
        module_name="MixedPool",
        work=mixed_work,
        doc=__doc__,
    )
)
