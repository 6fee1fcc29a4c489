"""Adaptive pooling: a fixed output size ``(oh, ow)`` from any ``H, W >= 1``.

Bin ``i`` covers rows ``[floor(i*H/oh), ceil((i+1)*H/oh))`` (PyTorch semantics; also
for ``H < oh``, where bins repeat rows). Example: H=5, oh=3 gives bins
``[0,2) [1,4) [3,5)``.

ONNX (dynamic H, W, which PyTorch's exporters cannot do): ``adaptive_avg`` is
``A_h @ x @ A_w^T`` with bin-averaging matrices built from the input's shape;
``adaptive_max`` gathers each bin's rows, reduces, then each bin's columns.
Backward: per bin, as avg (evenly) and as max (to the first argmax, row-major).
"""

from __future__ import annotations

from poolops.onnx import blocks
from poolops.onnx.builder import dim
from poolops.params import OpParams, PositivePair
from poolops.registry import OpSpec, register


class AdaptiveAvgParams(OpParams):
    output_size: PositivePair = (7, 7)


class AdaptiveMaxParams(AdaptiveAvgParams):
    propagate_nan: bool = True
    """See ``max``: False skips the NaN pass in ONNX."""


def _shape(p, s):
    return (s[0], s[1], p.output_size[0], p.output_size[1])


def adaptive_bounds(op, x, output_size):
    """``(bounds_h, bounds_w)`` of PyTorch's adaptive bins for ``x``."""
    return tuple(blocks.adaptive_bounds(op, dim(op, x, 2 + a), output_size[a]) for a in range(2))


def adaptive_matrices(op, x, output_size):
    """Bin-averaging matrices ``A_h [oh, H]`` and ``A_w [ow, W]``."""
    return _bin_matrices(op, x, adaptive_bounds(op, x, output_size), True)


def _bin_matrices(op, x, bounds, normalise: bool):
    return [blocks.membership(op, *b, dim(op, x, 2 + a), normalise=normalise) for a, b in enumerate(bounds)]


def torch_adaptive_avg(p, x, outputs=("y",)):
    import torch.nn.functional as F

    return (F.adaptive_avg_pool2d(x, p.output_size),)


def torch_adaptive_max(p, x, outputs=("y", "indices")):
    import torch.nn.functional as F

    y, indices = F.adaptive_max_pool2d(x, p.output_size, return_indices=True)
    return blocks.take_outputs(outputs, y=y, indices=indices)


def onnx_adaptive_avg(op, p, x, outputs=("y",)):
    return blocks.take_outputs(outputs, y=blocks.separable_matmul(op, x, *adaptive_matrices(op, x, p.output_size)))


def onnx_adaptive_avg_backward(op, p, x, grad_y):
    return blocks.separable_matmul_t(op, grad_y, *adaptive_matrices(op, x, p.output_size))


def onnx_adaptive_max(op, p, x, outputs=("y", "indices")):
    bounds = adaptive_bounds(op, x, p.output_size)
    if "indices" in outputs:
        y, indices = blocks.bin_argmax(op, x, *bounds)
    else:
        y, indices = blocks.bin_max(op, x, *bounds), None
    if p.propagate_nan:
        counts = blocks.separable_matmul(op, blocks.nan_indicator(op, x), *_bin_matrices(op, x, bounds, False))
        y = blocks.nan_where(op, y, counts)
    return blocks.take_outputs(outputs, y=y, indices=indices)


def onnx_adaptive_max_backward(op, p, x, grad_y):
    _, indices = blocks.bin_argmax(op, x, *adaptive_bounds(op, x, p.output_size))
    return blocks.scatter_add(op, x, indices, grad_y)


register(
    OpSpec(
        name="adaptive_avg",
        family="adaptive",
        params=AdaptiveAvgParams,
        torch_fn=torch_adaptive_avg,
        onnx_fn=onnx_adaptive_avg,
        onnx_backward=onnx_adaptive_avg_backward,
        output_shape=_shape,
        module_name="AdaptiveAvgPool",
        doc=__doc__,
    )
)

register(
    OpSpec(
        name="adaptive_max",
        family="adaptive",
        params=AdaptiveMaxParams,
        torch_fn=torch_adaptive_max,
        onnx_fn=onnx_adaptive_max,
        onnx_backward=onnx_adaptive_max_backward,
        output_shape=_shape,
        module_name="AdaptiveMaxPool",
        outputs=("y", "indices"),
        doc=__doc__,
    )
)
