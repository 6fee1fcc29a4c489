"""Max pooling: PyTorch ``max_pool2d`` semantics, with plane indices.

Example: ``[[1, 3], [2, 2]]`` with a 2x2 window gives ``3`` (index 1); backward sends
the gradient to the argmax: ``[3] -> [[0, 3], [0, 0]]``.

``tf_same=True``: TF "SAME" padding (timm's ``max_pool2d_same``), computed from the input
size: output ``ceil(H / stride)``, padding in total ``max((ceil(H / s) - 1) * s + (k - 1) * d
+ 1 - H, 0)`` per axis, the extra cell at the bottom/right, padded with -inf; indices index
the unpadded plane. Example: ``[[1, 2, 3]]``, kernel (1, 2), stride 1: pads (0, 1) on W,
windows ``[1, 2]``, ``[2, 3]``, ``[3, -inf]`` give ``[[2, 3, 3]]`` (indices 1, 2, 2).
See :mod:`poolops.ops._same`.
"""

from __future__ import annotations

from poolops.onnx import blocks
from poolops.ops import _same
from poolops.ops._window import WindowParams, check_window_fits, output_shape
from poolops.params import PositivePair
from poolops.registry import OpSpec, register


class MaxParams(WindowParams, _same.SamePadding):
    dilation: PositivePair = (1, 1)
    propagate_nan: bool = True
    """NaN in a window gives NaN (PyTorch). False skips that pass in ONNX (faster;
    ONNX Runtime then ignores NaN, and its CPU MaxPool gives the lowest float, not -inf,
    for a window of only -inf at kernels >= 4); the torch function always propagates."""


def torch_max(p: MaxParams, x, outputs=("y", "indices")):
    import torch.nn.functional as F

    if p.tf_same:
        return _same.torch_max(p.kernel, p.strides, p.dilation, x, outputs)
    if "indices" not in outputs:
        return (F.max_pool2d(x, p.kernel, p.strides, p.padding, p.dilation, p.ceil_mode),)
    y, indices = F.max_pool2d(x, p.kernel, p.strides, p.padding, p.dilation, p.ceil_mode, return_indices=True)
    return blocks.take_outputs(outputs, y=y, indices=indices)


def onnx_max(op, p: MaxParams, x, outputs=("y", "indices")):
    if p.tf_same:
        return _same.onnx_max(op, p.kernel, p.strides, p.dilation, p.propagate_nan, x, outputs)
    with_indices = "indices" in outputs

    def pool(op, t=x, with_indices=with_indices):
        return blocks.max_pool(op, t, p.kernel, p.strides, p.padding, p.dilation, p.ceil_mode, with_indices)

    if not p.propagate_nan:
        y, indices = pool(op)
        return blocks.take_outputs(outputs, y=y, indices=indices)

    def exact(op):  # x holds a NaN or an infinity
        y, indices = pool(op)
        y = blocks.exact_max(op, x, y, lambda op, m: pool(op, m, False)[0])
        return [y, indices] if with_indices else y

    def fast(op):  # x finite: the MaxPool is PyTorch's max already
        y, indices = pool(op)
        return [y, indices] if with_indices else y

    out = blocks.if_finite(op, x, fast, exact, 2 if with_indices else 1)
    y, indices = out if with_indices else (out, None)
    return blocks.take_outputs(outputs, y=y, indices=indices)


def onnx_max_backward(op, p: MaxParams, x, grad_y):
    if p.tf_same:
        return _same.onnx_max_backward(op, p.kernel, p.strides, p.dilation, x, grad_y)
    _, indices = blocks.max_pool(op, x, p.kernel, p.strides, p.padding, p.dilation, p.ceil_mode, True)
    return blocks.scatter_add(op, x, indices, grad_y)


def max_work(p: MaxParams, shapes, outputs=("y",), backward=False) -> int:
    """MaxPool (with int64 indices if asked), the NaN map of x (inputs that hold a NaN or
    an infinity), the ceil-mode padding; backward: MaxPool with indices and the scatter into x's shape."""
    n, c, h, w = shapes["x"]
    if p.tf_same:
        return _same.max_work(p.kernel, p.strides, p.dilation, shapes["x"], "indices" in outputs, p.propagate_nan, backward)
    window = (p.kernel, p.strides, p.padding, p.dilation, p.ceil_mode)
    work = blocks.max_pool_work(n, c, h, w, *window, with_indices="indices" in outputs)
    if p.propagate_nan:
        work = max(work, blocks.propagate_nan_work(n, c, h, w, *window))
    if backward:
        _, _, oh, ow = (max(d, 0) for d in output_shape(p, shapes["x"], p.dilation))
        work = max(work, blocks.max_pool_work(n, c, h, w, *window, True), blocks.scatter_add_work(n, c, h, w, oh * ow))
    return work


def _max_shape(p: MaxParams, s):
    return _same.output_shape(p.strides, s) if p.tf_same else output_shape(p, s, p.dilation)


def _max_check(p: MaxParams, x) -> None:
    if p.tf_same:
        _same.check("max", p.kernel, p.strides, p.dilation, x.shape)
    else:
        check_window_fits("max", p, x.shape, p.dilation)


register(
    OpSpec(
        name="max",
        torch_stock="F.max_pool2d",
        family="window",
        params=MaxParams,
        torch_fn=torch_max,
        onnx_fn=onnx_max,
        onnx_backward=onnx_max_backward,
        output_shape=_max_shape,
        check_input=_max_check,
        module_name="MaxPool",
        outputs=("y", "indices"),
        work=max_work,
        bench_params=(("tf_same, kernel 3, stride 2", {"kernel": 3, "stride": 2, "tf_same": True}),),
        doc=__doc__,
    )
)
