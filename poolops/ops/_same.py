"""TF "SAME" padding for ``max`` and ``avg`` (``tf_same=True``): padding that depends on
the input size, as TensorFlow's ``padding="SAME"`` and timm's ``pool2d_same``.

Per axis of size ``L`` (kernel ``k``, stride ``s``, dilation ``d``): output
``ceil(L / s)``; padding in total ``max((ceil(L / s) - 1) * s + (k - 1) * d + 1 - L, 0)``,
``total // 2`` before (top, left) and the rest, the extra one, after (bottom, right).
``max`` pads with -inf (padding never wins; indices index the unpadded plane);
``avg`` pads with zeros and divides by the cells inside the input, as TF's SAME does
(padding not counted; timm's ``AvgPool2dSame`` with its default ``count_include_pad=True``
counts it, and differs from TF at the edges), or by ``divisor_override``.

ONNX: without dilation and with the kernel at least the stride on both axes (the usual
case, e.g. kernel 3, stride 2) one MaxPool / AveragePool with ``auto_pad="SAME_UPPER"``
(``count_include_pad=0``), which is TF's SAME there (checked against the reference);
otherwise the graphs pad explicitly (Pad with the pads computed from x's shape at run
time) and pool without padding, as ONNX Runtime ignores the dilation in ``auto_pad`` and
fails when the kernel is smaller than the stride (negative pads).

Torch (``torch_*``) and ONNX (``onnx_*``) forms of each step; sizes are ints (or torch
SymInts) on the torch side, dims (1-element int64 tensors) in ONNX.
"""

from __future__ import annotations

from typing import Any

from pydantic import model_validator

from poolops.onnx import blocks
from poolops.onnx.builder import FLOAT_INF, const_f32, const_i64, const_scalar_i64, dim, scalar, unsqueeze
from poolops.ops._window import padding_only_window
from poolops.params import OpParams, ParamError, invalid


class SamePadding(OpParams):
    """The ``tf_same`` switch of ``max`` and ``avg`` (mixed into their parameters)."""

    tf_same: bool = False
    """TF "SAME" padding: output ``ceil(H / stride)``, padding computed from the input size,
    the extra cell at the bottom/right; needs ``padding=0`` and ``ceil_mode=False``."""

    @model_validator(mode="after")
    def _same_excludes_explicit_padding(self):
        if self.tf_same and tuple(getattr(self, "padding", (0, 0))) != (0, 0):
            raise invalid("padding", f"must be 0 with tf_same (the padding is computed), got {self.padding}")
        if self.tf_same and getattr(self, "ceil_mode", False):
            raise invalid("ceil_mode", "must be False with tf_same (its output is already ceil(H / stride))")
        return self


# ---------------------------------------------------------------- sizes (ints or SymInts)


def same_out(size: Any, stride: int) -> Any:
    """``ceil(size / stride)``."""
    return (size + stride - 1) // stride


def same_pads(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) padding of one axis (plain ints)."""
    total = max((same_out(size, stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def output_shape(stride, shape) -> tuple:
    n, c, h, w = shape
    return (n, c, same_out(h, stride[0]), same_out(w, stride[1]))


def check(op_name: str, kernel, stride, dilation, shape) -> None:
    """``ParamError`` naming ``dilation`` when a window holds only padding (a dilated
    window around a small input: no cell of it inside)."""
    for axis in range(2):
        size, k, s, d = shape[2 + axis], kernel[axis], stride[axis], dilation[axis]
        before, _ = same_pads(size, k, s, d)
        w = padding_only_window(size, k, s, before, d)
        if w is not None:
            raise ParamError(
                op_name,
                "dilation",
                f"with tf_same, window {w} on axis {'HW'[axis]} covers only padding (input {size}, padding "
                f"{before} before, dilation {d}); use less dilation or a larger input",
            )


def native(kernel, stride, dilation=(1, 1)) -> bool:
    """Whether ONNX's ``auto_pad="SAME_UPPER"`` is TF's SAME in ONNX Runtime: no dilation,
    kernel >= stride on both axes (then the padding is never negative)."""
    return all(d == 1 for d in dilation) and all(k >= s for k, s in zip(kernel, stride))


def padded_elements(n, c, h, w, kernel, stride, dilation) -> int:
    """Elements of the padded x (plain ints, any size, for the work rules)."""
    ph, pw = (sum(same_pads(max(a, 0), k, s, d)) for a, k, s, d in zip((h, w), kernel, stride, dilation))
    return n * c * (h + ph) * (w + pw)


# ---------------------------------------------------------------- torch


def torch_pad(x, kernel, stride, dilation, value: float):
    """``x`` padded (``F.pad``) and the (top, left) padding."""
    import torch.nn.functional as F

    (t, b), (l, r) = (same_pads(int(x.shape[2 + a]), kernel[a], stride[a], dilation[a]) for a in range(2))
    return F.pad(x, (l, r, t, b), value=value), (t, l)


def _torch_into_input(r, d: int):
    """A window row (or column) ``r`` in the padding before the input moved to the window's
    first one inside: ``r + ceil(-r / d) * d`` for ``r < 0``."""
    return r + (-r).clamp(min=0).add(d - 1).div(d, rounding_mode="floor") * d


def torch_max(kernel, stride, dilation, x, outputs):
    """``y`` and plane ``indices`` into the unpadded x.

    ``max_pool2d`` of x padded with -inf gives the first maximum in row-major window
    order; its index is moved from the padded plane into x's, and where it lies in the
    padding (a window whose cells inside are all -inf) to the window's first cell
    inside (as PyTorch's own padding does). ``y`` is x at those indices (a gather), so
    autograd sends the gradient where the ONNX backward graph does."""
    import torch.nn.functional as F

    xp, (t, l) = torch_pad(x, kernel, stride, dilation, -FLOAT_INF)
    if "indices" not in outputs and not x.requires_grad:
        return (F.max_pool2d(xp, kernel, stride, 0, dilation),)
    _, idx = F.max_pool2d(xp, kernel, stride, 0, dilation, return_indices=True)
    wp = xp.shape[3]
    rows = _torch_into_input(idx.div(wp, rounding_mode="floor") - t, dilation[0])
    cols = _torch_into_input(idx.remainder(wp) - l, dilation[1])
    indices = rows * x.shape[3] + cols
    y = x.flatten(2).gather(2, indices.flatten(2)).view(indices.shape)
    return blocks.take_outputs(outputs, y=y, indices=indices)


def _torch_counts(size: int, kernel: int, stride: int, before: int, device):
    import torch

    starts = torch.arange(same_out(size, stride), device=device) * stride - before
    return (starts + kernel).clamp(max=size) - starts.clamp(min=0)


def torch_avg(kernel, stride, divisor_override, x):
    """Window sums of x padded with zeros, over the cells inside x (TF) or the override."""
    import torch.nn.functional as F

    xp, (t, l) = torch_pad(x, kernel, stride, (1, 1), 0.0)
    if divisor_override is not None:
        return F.avg_pool2d(xp, kernel, stride, 0, divisor_override=divisor_override)
    sums = F.avg_pool2d(xp, kernel, stride, 0, divisor_override=1)
    ch = _torch_counts(int(x.shape[2]), kernel[0], stride[0], t, x.device)
    cw = _torch_counts(int(x.shape[3]), kernel[1], stride[1], l, x.device)
    return sums / (ch[:, None] * cw[None, :]).to(x.dtype)


# ---------------------------------------------------------------- ONNX


def _pad_dims(op, x, kernel, stride, dilation):
    """Per axis: (size, out, before) dims and the pads vector of ``Pad``."""
    axes, after = [], []
    for a in range(2):
        k, s, d = kernel[a], stride[a], dilation[a]
        size = dim(op, x, 2 + a)
        out = op.Div(op.Add(size, const_i64(op, [s - 1])), const_i64(op, [s]))
        need = op.Sub(op.Add(op.Mul(out, const_i64(op, [s])), const_i64(op, [(k - 1) * d + 1 - s])), size)
        total = op.Max(need, const_i64(op, [0]))
        before = op.Div(total, const_i64(op, [2]))
        axes.append((size, out, before))
        after.append(op.Sub(total, before))
    pads = op.Concat(const_i64(op, [0, 0]), axes[0][2], axes[1][2], const_i64(op, [0, 0]), *after, axis=0)
    return axes, pads


def onnx_pad(op, x, kernel, stride, dilation, value: float):
    """``x`` padded (``Pad``, constant ``value``) and the per-axis (size, out, before) dims."""
    axes, pads = _pad_dims(op, x, kernel, stride, dilation)
    return op.Pad(x, pads, const_f32(op, value)), axes


def _into_input(op, r, d: int):
    """:func:`_torch_into_input` in ONNX."""
    if d == 1:
        return op.Max(r, const_i64(op, [0]))
    before = op.Max(op.Neg(r), const_i64(op, [0]))
    steps = op.Div(op.Add(before, const_i64(op, [d - 1])), const_i64(op, [d]))
    return op.Add(r, op.Mul(steps, const_i64(op, [d])))


def onnx_max(op, kernel, stride, dilation, propagate_nan: bool, x, outputs):
    """MaxPool of x padded with -inf (no pads attribute); indices into x's planes; NaN
    and -inf made PyTorch's on inputs that are not all finite (as ``max``)."""
    with_indices = "indices" in outputs
    if native(kernel, stride, dilation):  # MaxPool pads itself; its indices index x
        xp, axes = x, None
        attrs = dict(kernel_shape=list(kernel), strides=list(stride), auto_pad="SAME_UPPER")
    else:
        xp, axes = onnx_pad(op, x, kernel, stride, dilation, -FLOAT_INF)
        attrs = dict(kernel_shape=list(kernel), strides=list(stride), dilations=list(dilation), pads=[0, 0, 0, 0])

    def pool(op, t, with_idx):
        if not with_idx:
            return op.MaxPool(t, **attrs, _outputs=1), None
        return op.MaxPool(t, **attrs, _outputs=2)

    def run(op, exact: bool):
        y, idx = pool(op, xp, with_indices)
        if exact:
            y = blocks.exact_max(op, xp, y, lambda op, m: pool(op, m, False)[0])
        return [y, idx] if with_indices else y

    if propagate_nan:
        out = blocks.if_finite(op, x, lambda op: run(op, False), lambda op: run(op, True), 2 if with_indices else 1)
    else:
        out = run(op, False)
    y, idx = out if with_indices else (out, None)
    if idx is None:
        indices = None
    elif axes is None:
        indices = op.Sub(idx, blocks._plane_offsets(op, x))
    else:
        indices = _plane_indices(op, x, xp, idx, axes, dilation)
    return blocks.take_outputs(outputs, y=y, indices=indices)


def _plane_indices(op, x, xp, idx, axes, dilation):
    """MaxPool's flat indices into xp (``N*C*Hp*Wp``) as plane indices into x."""
    wp = dim(op, xp, 3)
    flat = op.Sub(idx, blocks._plane_offsets(op, xp))
    r = _into_input(op, op.Sub(op.Div(flat, wp), axes[0][2]), dilation[0])
    c = _into_input(op, op.Sub(op.Mod(flat, wp), axes[1][2]), dilation[1])
    return op.Add(op.Mul(r, dim(op, x, 3)), c)


def onnx_max_backward(op, kernel, stride, dilation, x, grad_y):
    """``grad_y`` scattered to the argmax (the plane indices of :func:`onnx_max`)."""
    from poolops.ops.pool_nd import scatter_add_nd  # no -1 in its shapes: N may be 0

    (_, indices) = onnx_max(op, kernel, stride, dilation, False, x, ("y", "indices"))
    return scatter_add_nd(op, x, indices, grad_y, 2)


def _bounds(op, size, out, before, kernel: int, stride: int):
    """Window starts and ends ``[o]`` in x's coordinates (may pass the edges)."""
    i = op.Range(const_scalar_i64(op, 0), scalar(op, out), const_scalar_i64(op, 1))
    starts = op.Sub(op.Mul(i, const_i64(op, [stride])), before)
    return starts, op.Add(starts, const_i64(op, [kernel]))


def _divisor(op, axes, kernel, stride, divisor_override):
    """``[oh, ow]`` float32: the cells of each window inside x (TF), or the override."""
    if divisor_override is not None:
        return const_f32(op, divisor_override)
    counts = []
    for (size, out, before), k, s in zip(axes, kernel, stride):
        starts, ends = _bounds(op, size, out, before, k, s)
        counts.append(op.Cast(op.Sub(op.Min(ends, size), op.Max(starts, const_i64(op, [0]))), to=1))
    return op.Mul(unsqueeze(op, counts[0], [1]), unsqueeze(op, counts[1], [0]))


def onnx_avg(op, kernel, stride, divisor_override, x):
    """AveragePool of x padded with zeros (every window whole: its sum / k), times the
    window area, over :func:`_divisor`; or one AveragePool padding itself (:func:`native`,
    no divisor override), not counting the padding."""
    if native(kernel, stride) and divisor_override is None:
        return op.AveragePool(x, kernel_shape=list(kernel), strides=list(stride), auto_pad="SAME_UPPER",
                              count_include_pad=0)
    xp, axes = onnx_pad(op, x, kernel, stride, (1, 1), 0.0)
    mean = op.AveragePool(xp, kernel_shape=list(kernel), strides=list(stride), pads=[0, 0, 0, 0], count_include_pad=1)
    total = op.Mul(mean, const_f32(op, kernel[0] * kernel[1]))
    return op.Div(total, _divisor(op, axes, kernel, stride, divisor_override))


def onnx_avg_backward(op, kernel, stride, divisor_override, x, grad_y):
    """``A_h^T (g / D) A_w`` with the windows' 0/1 matrices over x's rows and columns."""
    axes, _ = _pad_dims(op, x, kernel, stride, (1, 1))
    mats = [
        blocks.membership(op, *_bounds(op, size, out, before, k, s), size, normalise=False)
        for (size, out, before), k, s in zip(axes, kernel, stride)
    ]
    g = op.Div(grad_y, _divisor(op, axes, kernel, stride, divisor_override))
    return blocks.separable_matmul_t(op, g, *mats)


# ---------------------------------------------------------------- work


def max_work(kernel, stride, dilation, shape, with_indices: bool, propagate_nan: bool, backward: bool) -> int:
    """The padded x (and its NaN map; x's size when MaxPool pads itself), MaxPool's values
    and int64 indices, the index conversion ``[N, C, oh, ow]`` (int64); backward: the
    scatter into x's shape."""
    n, c, h, w = shape
    _, _, oh, ow = output_shape(stride, (n, c, max(h, 0), max(w, 0)))
    out = n * c * oh * ow
    if native(kernel, stride, dilation):
        padded = n * c * h * w if (propagate_nan or backward) else 0
    else:
        padded = padded_elements(n, c, h, w, kernel, stride, dilation)
    work = max(padded, 3 * out if (with_indices or backward) else out)
    if backward:
        work = max(work, blocks.scatter_add_work(n, c, h, w, oh * ow))
    return work


def avg_work(kernel, stride, shape, backward: bool, divisor_override=None) -> int:
    """The zero-padded x (none when AveragePool pads itself), the window means and
    divisors; backward: the 0/1 window matrices and ``A_h^T (g / D) A_w``."""
    n, c, h, w = shape
    _, _, oh, ow = output_shape(stride, (n, c, max(h, 0), max(w, 0)))
    padded = 0 if native(kernel, stride) and divisor_override is None else padded_elements(n, c, h, w, kernel, stride, (1, 1))
    work = max(padded, n * c * oh * ow, blocks.avg_divisor_work(oh, ow))
    if backward:
        work = max(work, blocks.window_membership_work(h, w, oh, ow), blocks.separable_matmul_t_work(n, c, h, w, oh, ow))
    return work
