"""Adaptive pooling: a fixed output size ``(oh, ow)`` from any ``H, W >= 1``.

Bin ``i`` covers rows ``[floor(i*H/oh), ceil((i+1)*H/oh))`` (PyTorch semantics; also
for ``H < oh``, where bins repeat rows). Example: H=5, oh=3 gives bins
``[0,2) [1,4) [3,5)``.

ONNX (dynamic H, W, which PyTorch's exporters cannot do): ``adaptive_avg`` is
``A_h @ x @ A_w^T`` with 0/1 bin matrices built from the input's shape, divided by
the bin sizes (inputs with NaN or infinities take an exact pass that keeps each in its
own bins, where ``0 * inf`` would spread NaN);
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

    if "indices" not in outputs:  # what a user calls: torch skips the indices then
        return (F.adaptive_max_pool2d(x, p.output_size),)
    y, indices = F.adaptive_max_pool2d(x, p.output_size, return_indices=True)
    return blocks.take_outputs(outputs, y=y, indices=indices)


def onnx_adaptive_avg(op, p, x, outputs=("y",)):
    # each bin summed, then divided by its size (PyTorch's order: a sum that overflows is
    # inf); blocks.bin_sums keeps NaN and infinities in their own bins
    bounds = adaptive_bounds(op, x, p.output_size)
    sums = blocks.bin_sums(op, x, *_bin_matrices(op, x, bounds, False))
    return blocks.take_outputs(outputs, y=op.Div(sums, blocks.bin_sizes(op, *bounds)))


def onnx_adaptive_avg_backward(op, p, x, grad_y):
    return blocks.separable_matmul_t(op, grad_y, *adaptive_matrices(op, x, p.output_size))


def onnx_adaptive_max(op, p, x, outputs=("y", "indices")):
    # uniform bins (H % oh == 0, W % ow == 0) reduce x viewed in runs (blocks.adaptive_bin_max);
    # indices from each bin's first column and row at its max (blocks.adaptive_bin_argmax)
    bounds = adaptive_bounds(op, x, p.output_size)
    # the pooling is built once, outside the If below (both of its branches read it)
    if "indices" in outputs:
        y, indices = blocks.adaptive_bin_argmax(op, x, p.output_size, *bounds)
    else:
        y, indices = blocks.adaptive_bin_max(op, x, p.output_size, *bounds), None
    if not p.propagate_nan:
        return blocks.take_outputs(outputs, y=y, indices=indices)

    def exact(op):  # x holds a NaN or an infinity: NaN where a bin counts a NaN
        counts = blocks.separable_matmul(op, blocks.nan_indicator(op, x), *_bin_matrices(op, x, bounds, False))
        return blocks.nan_where(op, y, counts)

    return blocks.take_outputs(outputs, y=blocks.if_finite(op, x, lambda op: y, exact), indices=indices)


def onnx_adaptive_max_backward(op, p, x, grad_y):
    _, indices = blocks.bin_argmax(op, x, *adaptive_bounds(op, x, p.output_size))
    return blocks.scatter_add(op, x, indices, grad_y)


def adaptive_avg_work(p, shapes, outputs=("y",), backward=False) -> int:
    """The bin matrices ``[oh, H]``, ``[ow, W]`` and ``x @ A_w^T`` ``[N, C, H, ow]``; for
    inputs with NaN or infinities the exact pass's copies of x (finite values, indicators);
    backward: ``A_h^T g`` ``[N, C, H, ow]`` and the gradient."""
    n, c, h, w = shapes["x"]
    oh, ow = p.output_size
    work = max(
        blocks.window_membership_work(h, w, oh, ow), blocks.separable_matmul_work(n, c, h, w, oh, ow), n * c * h * w
    )
    if backward:
        work = max(work, blocks.separable_matmul_t_work(n, c, h, w, oh, ow))
    return work


def adaptive_max_work(p, shapes, outputs=("y",), backward=False) -> int:
    """Each bin's rows gathered ``[N, C, oh, Kh, W]`` (Kh the longest bin), then columns
    ``[N, C, oh, ow, Kw]`` (int64 positions with indices; and the fast indices' cells,
    :func:`blocks.adaptive_bin_argmax_work`); the NaN counts as
    adaptive_avg's matrix products; backward: the argmax and the scatter into x's shape."""
    n, c, h, w = shapes["x"]
    oh, ow = p.output_size
    kh, kw = blocks.adaptive_len(h, oh), blocks.adaptive_len(w, ow)
    bins = (n, c, h, w, oh, ow, kh, kw)
    work = blocks.bin_argmax_work(*bins) if "indices" in outputs else blocks.bin_max_work(*bins)
    if "indices" in outputs:
        work = max(work, blocks.adaptive_bin_argmax_work(*bins))
    if p.propagate_nan:
        work = max(work, n * c * h * w, adaptive_avg_work(p, shapes))
    if backward:
        work = max(work, blocks.bin_argmax_work(*bins), blocks.scatter_add_work(n, c, h, w, oh * ow))
    return work


register(
    OpSpec(
        name="adaptive_avg",
        torch_stock="F.adaptive_avg_pool2d",
        family="adaptive",
        params=AdaptiveAvgParams,
        torch_fn=torch_adaptive_avg,
        onnx_fn=onnx_adaptive_avg,
        onnx_backward=onnx_adaptive_avg_backward,
        output_shape=_shape,
        module_name="AdaptiveAvgPool",
        work=adaptive_avg_work,
        doc=__doc__,
    )
)

register(
    OpSpec(
        name="adaptive_max",
        torch_stock="F.adaptive_max_pool2d",
        family="adaptive",
        params=AdaptiveMaxParams,
        torch_fn=torch_adaptive_max,
        onnx_fn=onnx_adaptive_max,
        onnx_backward=onnx_adaptive_max_backward,
        output_shape=_shape,
        module_name="AdaptiveMaxPool",
        outputs=("y", "indices"),
        work=adaptive_max_work,
        doc=__doc__,
    )
)
