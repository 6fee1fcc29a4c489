"""Global pooling (Network in Network): one value per channel, any H and W.

``global_avg``: mean over H*W; backward broadcasts ``g / (H*W)``. ONNX: ReduceMean.
``global_max``: max over H*W (NaN propagates); backward sends ``g`` to the first
maximum in row-major order. ONNX: ReduceMax, with a NaN check.
Both give ``[N, C, 1, 1]``.
"""

from __future__ import annotations

from poolops.onnx import blocks
from poolops.onnx.builder import const_f32, const_i64, const_scalar_i64, dim
from poolops.params import OpParams
from poolops.registry import OpSpec, register


class GlobalAvgParams(OpParams):
    pass


class GlobalMaxParams(OpParams):
    propagate_nan: bool = True
    """See ``max``: False skips the NaN pass in ONNX."""


def _shape(p, s):
    return (s[0], s[1], 1, 1)


def torch_global_avg(p, x, outputs=("y",)):
    return (x.mean(dim=(2, 3), keepdim=True),)


def torch_global_max(p, x, outputs=("y", "indices")):
    import torch.nn.functional as F

    # adaptive_max_pool2d (not amax): its gradient goes to one argmax, amax splits ties.
    if "indices" not in outputs:
        return (F.adaptive_max_pool2d(x, 1),)
    y, indices = F.adaptive_max_pool2d(x, 1, return_indices=True)
    return blocks.take_outputs(outputs, y=y, indices=indices)


def onnx_global_avg(op, p, x, outputs=("y",)):
    # ReduceMean, not GlobalAveragePool: same result, and measurably faster in ONNX
    # Runtime on CPU (poolops bench ops), where GlobalAveragePool trails torch's mean.
    return blocks.take_outputs(outputs, y=op.ReduceMean(x, const_i64(op, [2, 3]), keepdims=1))


def onnx_global_avg_backward(op, p, x, grad_y):
    hw = op.Cast(op.Mul(dim(op, x, 2), dim(op, x, 3)), to=1)
    return op.Expand(op.Div(grad_y, hw), op.Shape(x))


def _flat(op, x):
    return op.Reshape(x, const_i64(op, [0, 0, -1]))


def _first_argmax(op, x, rows):
    """Flat H*W index ``[N, C, 1, 1]`` of the first maximum, from the row maxima ``rows``
    ``[N, C, H]``: the first row that reaches the max, then the first column of that row
    (row-major order, PyTorch's rule). Only the ``[N, C, 1, W]`` row is read again, where
    an ArgMax over the whole of x costs several passes' time in ONNX Runtime."""
    r = op.ArgMax(rows, axis=2, keepdims=1, select_last_index=0)  # [N, C, 1]
    width = dim(op, x, 3)
    where = op.Expand(op.Unsqueeze(r, const_i64(op, [3])), op.Concat(op.Shape(x, start=0, end=2), const_i64(op, [1]), width, axis=0))
    row = op.GatherElements(x, where, axis=2)  # [N, C, 1, W]
    col = op.ArgMax(row, axis=3, keepdims=1, select_last_index=0)  # [N, C, 1, 1]
    return op.Add(op.Mul(op.Unsqueeze(r, const_i64(op, [3])), width), col)


def onnx_global_max(op, p, x, outputs=("y", "indices")):
    # ReduceMax, not GlobalMaxPool: ONNX Runtime's GlobalMaxPool gives -FLT_MAX for a
    # plane of only -inf, ReduceMax gives -inf (as PyTorch does). ReduceMax skips NaN.
    if "indices" in outputs:
        rows = op.ReduceMax(x, const_i64(op, [3]), keepdims=0)  # [N, C, H]: one read of x
        y = op.Unsqueeze(op.ReduceMax(rows, const_i64(op, [2]), keepdims=1), const_i64(op, [3]))
        indices = _first_argmax(op, x, rows)
    else:
        y, indices = op.ReduceMax(x, const_i64(op, [2, 3]), keepdims=1), None
    if p.propagate_nan:
        # a sum of squares is NaN exactly when it summed a NaN (no inf - inf can arise);
        # ONNX Runtime's is slow, so it runs only for inputs that hold a NaN or an infinity
        def exact(op):
            sumsq = op.ReduceSumSquare(x, const_i64(op, [2, 3]), keepdims=1)
            return op.Where(op.IsNaN(sumsq), const_f32(op, float("nan")), y)

        y = blocks.if_finite(op, x, lambda op: y, exact)
    return blocks.take_outputs(outputs, y=y, indices=indices)


def onnx_global_max_backward(op, p, x, grad_y):
    """One-hot of the first argmax times ``g`` (elementwise: no scatter needed)."""
    flat = _flat(op, x)
    arg = op.ArgMax(flat, axis=2, keepdims=1, select_last_index=0)  # [N, C, 1]
    size = op.Squeeze(op.Shape(flat, start=2, end=3), const_i64(op, [0]))
    positions = op.Range(const_scalar_i64(op, 0), size, const_scalar_i64(op, 1))
    hit = op.Equal(positions, arg)  # [N, C, HW]
    g = op.Reshape(grad_y, const_i64(op, [0, 0, 1]))
    return op.Reshape(op.Where(hit, g, const_f32(op, 0.0)), op.Shape(x))


def global_avg_work(p, shapes, outputs=("y",), backward=False) -> int:
    """ReduceMean ``[N, C, 1, 1]``; backward: the gradient expanded to x's shape."""
    n, c, h, w = shapes["x"]
    return n * c * h * w if backward else n * c


def global_max_work(p, shapes, outputs=("y",), backward=False) -> int:
    """ReduceMax (and ReduceSumSquare); indices: the row maxima ``[N, C, H]``, the int64
    gather of each plane's first max row ``[N, C, 1, W]``; backward: x flattened, a
    one-hot mask of x's size."""
    n, c, h, w = shapes["x"]
    work = 2 * n * c
    if "indices" in outputs:
        work = max(work, n * c * h, 2 * n * c * w)
    if backward:
        work = max(work, n * c * h * w, 2 * h * w)
    return work


register(
    OpSpec(
        name="global_avg",
        torch_stock="x.mean((2, 3))",
        family="global",
        params=GlobalAvgParams,
        torch_fn=torch_global_avg,
        onnx_fn=onnx_global_avg,
        onnx_backward=onnx_global_avg_backward,
        output_shape=_shape,
        module_name="GlobalAvgPool",
        work=global_avg_work,
        doc=__doc__,
    )
)

register(
    OpSpec(
        name="global_max",
        torch_stock="F.adaptive_max_pool2d(x, 1)",
        family="global",
        params=GlobalMaxParams,
        torch_fn=torch_global_max,
        onnx_fn=onnx_global_max,
        onnx_backward=onnx_global_max_backward,
        output_shape=_shape,
        module_name="GlobalMaxPool",
        outputs=("y", "indices"),
        work=global_max_work,
        doc=__doc__,
    )
)
