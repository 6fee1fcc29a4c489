"""Multi-scale pooling: max pools at several scales, each brought to one common size,
concatenated on channels.

For each ``k`` in ``kernels`` (default ``(2, 4, 8)``): ``max_pool2d`` with kernel and
stride ``k`` (floor mode, no padding; PyTorch semantics, NaN propagates), then
``adaptive_avg_pool2d`` (PyTorch bins) to the coarsest size, the output size of the
largest kernel ``K``: ``(H // K, W // K)``. The parts are concatenated on channels in
the order of ``kernels``: output ``[N, C * len(kernels), H // K, W // K]`` (channels
``i*C .. (i+1)*C - 1`` come from ``kernels[i]``). Inputs smaller than ``K`` on either
side are refused (the coarsest size would be 0). Max pools of different kernels alone
give maps of different sizes; brought to the coarsest size, the parts always have the
same size, so they can be concatenated.

Example: one 8x8 plane ``x[r, c] = 8r + c`` with kernels (2, 4, 8) gives ``[1, 3, 1, 1]``:
the 2x2 maxima ``16i + 2j + 9`` averaged to 36, the 4x4 maxima ``32i + 4j + 27``
averaged to 45, and the 8x8 maximum 63.
Backward (autograd): each output's gradient is spread evenly over its adaptive bin
of the part, and each part's gradient goes to the argmax of its window (first
maximum in row-major order), all accumulated into one gradient.

ONNX: the ``max`` op's builder for each part (``propagate_nan=False`` skips its NaN
pass, as for ``max``); the adaptive average to the dynamic coarsest size gathers each
bin's rows then columns and sums with the slots past a bin's end masked out, so a NaN
or an infinity stays in its own bin (as in PyTorch; a matrix product would spread it,
since ``0 * inf`` is NaN). The part of the largest kernel needs no averaging.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from poolops.onnx import blocks
from poolops.onnx.builder import const_f32, const_i64, const_scalar_i64, dim, scalar, unsqueeze
from poolops.ops.max import MaxParams, onnx_max, torch_max
from poolops.params import OpParams, ParamError, check_list_length, invalid
from poolops.registry import OpSpec, register


class MultiscaleParams(OpParams):
    kernels: tuple[int, ...] = Field(default=(2, 4, 8), min_length=1)
    """Max-pool kernels (stride = kernel); the largest sets the output size."""
    propagate_nan: bool = True
    """See ``max``: False skips the NaN pass of the max pools in ONNX."""

    @model_validator(mode="after")
    def _positive_kernels(self):
        check_list_length("kernels", self.kernels, "kernels (one max pool each)")
        if any(k < 1 for k in self.kernels):
            raise invalid("kernels", f"every kernel must be >= 1, got {self.kernels}")
        return self

    @property
    def largest(self) -> int:
        return max(self.kernels)

    def part(self, k: int) -> MaxParams:
        return MaxParams(kernel=k, propagate_nan=self.propagate_nan)


def _shape(p: MultiscaleParams, s):
    n, c, h, w = s
    return (n, c * len(p.kernels), h // p.largest, w // p.largest)


def check_input(p: MultiscaleParams, x) -> None:
    h, w = x.shape[2], x.shape[3]
    if h < p.largest or w < p.largest:
        raise ParamError(
            "multiscale",
            "kernels",
            f"the input ({h}x{w}) is smaller than the largest kernel {p.largest}: H and W must be at "
            f"least {p.largest}; use smaller kernels or a larger input",
        )


# ---------------------------------------------------------------- torch


def torch_multiscale(p: MultiscaleParams, x, outputs=("y",)):
    import torch
    import torch.nn.functional as F

    size = (x.shape[2] // p.largest, x.shape[3] // p.largest)
    parts = [F.adaptive_avg_pool2d(torch_max(p.part(k), x, outputs=("y",))[0], size) for k in p.kernels]
    return (torch.cat(parts, dim=1),)


# ---------------------------------------------------------------- ONNX


def _bounds(op, size, n):
    """PyTorch adaptive bins of a length ``size`` into ``n`` (both dims ``[1]``): ``[n]`` each."""
    i = op.Range(const_scalar_i64(op, 0), scalar(op, n), const_scalar_i64(op, 1))
    starts = op.Div(op.Mul(i, size), n)
    ends = op.Div(op.Add(op.Mul(op.Add(i, const_i64(op, [1])), size), op.Sub(n, const_i64(op, [1]))), n)
    return starts, ends


def _bin_mean(op, t, axis: int, starts, ends):
    """Mean over the adaptive bins along ``axis`` (2 or 3) of ``t`` ``[N, C, h, w]``.

    Each bin's cells are gathered (``[o, K]`` indices, ``K`` the longest bin; slots past
    a bin's end repeat its last cell and are zeroed by ``Where``, not multiplied, so
    inf and NaN stay in their bin), summed, and divided by the bin's length.
    """
    lengths = op.Sub(ends, starts)
    k = op.ReduceMax(lengths, keepdims=0)
    raw = op.Add(unsqueeze(op, starts, [1]), unsqueeze(op, op.Range(const_scalar_i64(op, 0), k, const_scalar_i64(op, 1)), [0]))
    inside = op.Less(raw, unsqueeze(op, ends, [1]))  # [o, K]
    idx = op.Min(raw, unsqueeze(op, op.Sub(ends, const_i64(op, [1])), [1]))
    g = op.Gather(t, idx, axis=axis)  # axis 2: [N, C, o, K, w]; axis 3: [N, C, h, o, K]
    mask = unsqueeze(op, inside, [2]) if axis == 2 else inside
    total = op.ReduceSum(op.Where(mask, g, const_f32(op, 0.0)), const_i64(op, [axis + 1]), keepdims=0)
    count = op.Cast(lengths, to=1)
    return op.Div(total, unsqueeze(op, count, [1]) if axis == 2 else count)


def _coarsest(op, p: MultiscaleParams, x):
    """``(H // K, W // K)`` as dims."""
    return tuple(op.Div(dim(op, x, a), const_i64(op, [p.largest])) for a in (2, 3))


def _part_size(op, x, k: int):
    return tuple(op.Div(dim(op, x, a), const_i64(op, [k])) for a in (2, 3))


def onnx_multiscale(op, p: MultiscaleParams, x, outputs=("y",)):
    oh, ow = _coarsest(op, p, x)
    parts = []
    for k in p.kernels:
        (m,) = onnx_max(op, p.part(k), x, outputs=("y",))
        if k != p.largest:
            hk, wk = _part_size(op, x, k)
            m = _bin_mean(op, m, 2, *_bounds(op, hk, oh))
            m = _bin_mean(op, m, 3, *_bounds(op, wk, ow))
        parts.append(m)
    y = parts[0] if len(parts) == 1 else op.Concat(*parts, axis=1)
    return blocks.take_outputs(outputs, y=y)


def onnx_multiscale_backward(op, p: MultiscaleParams, x, grad_y):
    """Per part: ``A_h^T g A_w`` (adaptive average backward), then to the window argmax;
    all parts' (index, value) pairs go into one scatter-add."""
    n = len(p.kernels)
    grads = [grad_y] if n == 1 else list(op.Split(grad_y, axis=1, num_outputs=n, _outputs=n))
    oh, ow = _coarsest(op, p, x)
    flat = const_i64(op, [0, 0, -1])
    indices, values = [], []
    for k, g in zip(p.kernels, grads):
        if k != p.largest:
            hk, wk = _part_size(op, x, k)
            a_h = blocks.membership(op, *_bounds(op, hk, oh), hk, normalise=True)
            a_w = blocks.membership(op, *_bounds(op, wk, ow), wk, normalise=True)
            g = blocks.separable_matmul_t(op, g, a_h, a_w)  # [N, C, H // k, W // k]
        _, idx = blocks.max_pool(op, x, (k, k), (k, k), (0, 0), (1, 1), False, True)
        indices.append(op.Reshape(idx, flat))
        values.append(op.Reshape(g, flat))
    if n > 1:
        indices, values = [op.Concat(*indices, axis=2)], [op.Concat(*values, axis=2)]
    return blocks.scatter_add(op, x, indices[0], values[0])


def multiscale_work(p: MultiscaleParams, shapes, outputs=("y",), backward=False) -> int:
    """Per kernel k: the max pool (and its NaN map of x) ``[N, C, H//k, W//k]``, the rows
    of each adaptive bin gathered ``[N, C, oh, Kb, W//k]`` (Kb the longest bin); the
    concatenation. Backward: per part ``A_h^T g A_w`` and the argmax (int64), one
    scatter into x's shape."""
    n, c, h, w = shapes["x"]
    oh, ow = h // p.largest, w // p.largest
    work = n * c * len(p.kernels) * oh * ow
    parts = 0
    for k in p.kernels:
        hk, wk = h // k, w // k
        window = ((k, k), (k, k), (0, 0), (1, 1), False)
        work = max(work, blocks.max_pool_work(n, c, h, w, *window, with_indices=backward))
        if p.propagate_nan:
            work = max(work, blocks.propagate_nan_work(n, c, h, w, *window))
        parts += hk * wk
        if k == p.largest:
            continue
        kh, kw = blocks.adaptive_len(hk, oh), blocks.adaptive_len(wk, ow)
        work = max(work, n * c * oh * kh * wk, n * c * oh * ow * kw, 2 * oh * kh, 2 * ow * kw)
        if backward:
            work = max(
                work,
                blocks.window_membership_work(hk, wk, oh, ow),
                blocks.separable_matmul_t_work(n, c, hk, wk, oh, ow),
            )
    if backward:
        work = max(work, blocks.scatter_add_work(n, c, h, w, parts))
    return work


register(
    OpSpec(
        name="multiscale",
        family="window",
        params=MultiscaleParams,
        torch_fn=torch_multiscale,
        onnx_fn=onnx_multiscale,
        onnx_backward=onnx_multiscale_backward,
        output_shape=_shape,
        check_input=check_input,
        module_name="MultiScalePool",
        work=multiscale_work,
        doc=__doc__,
    )
)
