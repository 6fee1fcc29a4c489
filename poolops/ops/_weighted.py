"""Exp-weighted window averages, shared by ``softpool`` (weights ``exp(x)``) and ``lip``
(weights ``exp(logit)``).

For each window ``R``: ``y = sum_i e_i x_i / sum_i e_i`` with ``e_i = exp(l_i - m)``,
``m = max over R of l``. Subtracting the window max changes nothing mathematically
(it cancels) but keeps every ``e_i`` in ``(0, 1]`` and the denominator ``>= 1``: no
``exp`` overflows, whatever the scale of ``l``. A weight that underflows to 0 (``l_i``
more than ~103 below the window max, or ``-inf``) contributes 0, also where ``x_i`` is
infinite. Zero padding (``lip``) is padding of ``x`` with 0 and of ``l`` with ``-inf``:
padded cells get weight 0 (what the reference's ``avg_pool2d(x*w) / avg_pool2d(w)``
does, as both averages count the padding alike).

ONNX: every window is gathered as ``[N, C, oh, ow, kh*kw]`` (flat plane indices from
Range, so the graph does not grow with the kernel); ReduceMax, Exp, ReduceSum over the
last axis. The backward graphs scatter-add the window gradients back to the input.
"""

from __future__ import annotations

from poolops.onnx import blocks
from poolops.onnx.builder import FLOAT_INF, const_f32, const_i64, const_scalar_i64, dim, scalar, unsqueeze
from poolops.shapes import pool_out_size


def out_hw(shape, kernel, stride, padding) -> tuple:
    """``(oh, ow)`` of floor-mode windows (works on ints and SymInts)."""
    return tuple(pool_out_size(shape[2 + a], kernel[a], stride[a], padding[a], 1, False) for a in range(2))


# ---------------------------------------------------------------- torch


def torch_weighted(x, logit, kernel, stride, padding):
    """``y`` ``[N, C, oh, ow]``; ``logit`` may be ``x`` itself (softpool). Autograd gives
    the exact derivatives (the window max is held constant: it cancels)."""
    import torch
    import torch.nn.functional as F

    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph or pw:
        x = F.pad(x, (pw, pw, ph, ph))
        logit = F.pad(logit, (pw, pw, ph, ph), value=-FLOAT_INF)
    xw = x.unfold(2, kh, sh).unfold(3, kw, sw)  # [N, C, oh, ow, kh, kw], a view
    lw = logit.unfold(2, kh, sh).unfold(3, kw, sw)
    m = lw.detach().amax(dim=(-2, -1), keepdim=True)
    e = torch.exp(lw - m)
    t = torch.where(e == 0, torch.zeros_like(e), e * xw)
    return t.sum(dim=(-2, -1)) / e.sum(dim=(-2, -1))


# ---------------------------------------------------------------- ONNX


def _pad(op, t, padding, value: float):
    ph, pw = padding
    if not (ph or pw):
        return t
    return op.Pad(t, const_i64(op, [0, 0, ph, pw, 0, 0, ph, pw]), const_f32(op, value))


def window_index(op, kernel, stride, oh, ow, width):
    """Flat plane index ``[oh, ow, kh*kw]`` of each window's cells (row-major) in a plane
    of ``width`` columns: ``(i*sh + t // kw) * width + j*sw + t % kw``."""
    (kh, kw), (sh, sw) = kernel, stride
    zero, one = const_scalar_i64(op, 0), const_scalar_i64(op, 1)
    t = op.Range(zero, const_scalar_i64(op, kh * kw), one)
    kw_c = const_scalar_i64(op, kw)
    rows = unsqueeze(op, op.Mul(op.Range(zero, scalar(op, oh), one), const_scalar_i64(op, sh)), [1, 2])
    cols = unsqueeze(op, op.Mul(op.Range(zero, scalar(op, ow), one), const_scalar_i64(op, sw)), [1])
    return op.Add(op.Mul(op.Add(rows, op.Div(t, kw_c)), width), op.Add(cols, op.Mod(t, kw_c)))


def _windows(op, x, logit, kernel, stride, padding):
    """``(xw, e, s, idx, xp)``: the windows of x, the weights ``exp(l - max)``, their sums
    (keepdims), the plane indices (in the padded plane ``xp``)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh = blocks.pool_out_dim(op, dim(op, x, 2), kh, sh, ph, 1, False)
    ow = blocks.pool_out_dim(op, dim(op, x, 3), kw, sw, pw, 1, False)
    xp = _pad(op, x, padding, 0.0)
    lp = xp if logit is None else _pad(op, logit, padding, -FLOAT_INF)
    idx = window_index(op, kernel, stride, oh, ow, dim(op, xp, 3))
    flat = const_i64(op, [0, 0, -1])
    xw = op.Gather(op.Reshape(xp, flat), idx, axis=2)  # [N, C, oh, ow, K]
    lw = xw if logit is None else op.Gather(op.Reshape(lp, flat), idx, axis=2)
    last = const_i64(op, [4])
    e = op.Exp(op.Sub(lw, op.ReduceMax(lw, last, keepdims=1)))
    s = op.ReduceSum(e, last, keepdims=1)
    return xw, e, s, idx, xp


def _is_zero(op, e):
    return op.Equal(e, const_f32(op, 0.0))


def onnx_weighted(op, x, logit, kernel, stride, padding):
    """``y`` ``[N, C, oh, ow]``; ``logit`` None: the weights are ``exp(x)`` (softpool)."""
    xw, e, s, _, _ = _windows(op, x, logit, kernel, stride, padding)
    t = op.Where(_is_zero(op, e), const_f32(op, 0.0), op.Mul(e, xw))
    last = const_i64(op, [4])
    return op.Squeeze(op.Div(op.ReduceSum(t, last, keepdims=1), s), last)


def onnx_softpool_backward(op, x, grad_y, kernel, stride):
    """``dy/dx_i = w_i (1 + x_i - y)`` per window (``w = e / sum e``; 0 where ``e`` is 0),
    accumulated over the windows holding ``x_i`` (a scatter-add)."""
    xw, e, s, idx, _ = _windows(op, x, None, kernel, stride, (0, 0))
    zero = const_f32(op, 0.0)
    last = const_i64(op, [4])
    w = op.Div(e, s)
    y = op.ReduceSum(op.Where(_is_zero(op, e), zero, op.Mul(w, xw)), last, keepdims=1)
    term = op.Mul(op.Mul(unsqueeze(op, grad_y, [4]), w), op.Add(op.Sub(xw, y), const_f32(op, 1.0)))
    term = op.Where(_is_zero(op, e), zero, term)
    return blocks.scatter_add(op, x, op.Expand(idx, op.Shape(term)), term)


# ---------------------------------------------------------------- cost


def weighted_work(shapes, kernel, stride, padding, logit: bool, backward: bool) -> int:
    """The padded inputs, the gathered windows and weights ``[N, C, oh, ow, kh*kw]``, the
    int64 window index; backward: the expanded int64 index and the scatter into x."""
    n, c, h, w = shapes["x"]
    oh, ow = (max(d, 0) for d in out_hw(shapes["x"], kernel, stride, padding))
    k = kernel[0] * kernel[1]
    hp, wp = h + 2 * padding[0], w + 2 * padding[1]
    work = max(n * c * hp * wp, n * c * oh * ow * k, 2 * oh * ow * k)
    if backward:
        work = max(work, 2 * n * c * oh * ow * k, n * c * h * w)
    return work
