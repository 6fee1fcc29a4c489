"""Stochastic pooling (Zeiler & Fergus 2013), for non-negative input.

Each window's elements, read in row-major order, become probabilities
``p_i = x_i / S`` with ``S = sum(x)`` over the window.

* ``mode="eval"`` outputs the expectation ``sum(p_i * x_i) = sum(x^2) / sum(x)``.
  Backward: the exact derivative ``2 x_i / S - sum(x^2) / S^2``, accumulated over
  the windows that contain ``x_i``.
* ``mode="train"`` outputs one element ``x_k`` of each window, ``k`` drawn from ``p``.
  Backward: the gradient goes to the sampled position only (accumulated where
  windows overlap).

Example: the window ``(1, 2, 3, 4)`` (``[[1, 2], [3, 4]]`` with a 2x2 kernel) has
probabilities ``(0.1, 0.2, 0.3, 0.4)``; ``eval`` gives ``(1 + 4 + 9 + 16) / 10 = 3.0``;
``train`` gives 1, 2, 3 or 4 with those probabilities.

An all-zero window gives 0 and passes no gradient (in ``train`` its "sample" is
its first element, by convention). Negative input is an error (``ParamError``
naming ``x``) unless ``negative="clamp"``, which treats negatives as 0 (a ReLU
first). The ONNX graphs cannot raise: callers check the input first
(``OpSpec.check``, as the service does); given negative input under
``negative="error"`` the graph's result is unspecified.

Random numbers: no torch or ONNX random generator is used (they differ between
frameworks and devices, and ONNX Runtime's CUDA provider has no ``Multinomial``).
Each output element ``(n, c, i, j)`` gets ``u`` in ``[0, 1)`` from a counter-based
integer hash of its flat output index ``idx = ((n*C + c)*oh + i)*ow + j`` keyed by
``seed``: SplitMix64 turns ``seed`` into four 31-bit keys ``k0..k3``; the state
``x = idx mod 2^31`` goes through three rounds of ``x = (x + k_r)(2(x + k_r) + 1)
mod 2^31`` (a nonlinear bijection, as in RC6) followed by a 16-bit rotation
(``idx div 2^31`` is added before round 2), then one more keyed squaring, and
``u = (x div 2^7) / 2^24``. Only int64 Add, Mul, Div and Mod are used (ONNX
Runtime's CUDA provider has no bitwise kernels) and every intermediate stays
below 2^63, so torch and ONNX produce the same ``u`` on any device. The sample is
the first window element (row-major) whose running sum ``c_t`` exceeds ``u * S``,
the running sums being added in the same order in torch and ONNX, so ``train``
outputs are identical between the torch function and ONNX Runtime. The same
``seed`` gives the same samples on every call; use a new seed per step.

ONNX: ``eval`` is two window sums (AveragePool). The ``train`` graph gathers every
window ``[N, C, oh, ow, kh*kw]`` and takes its running sums with one CumSum: its size
does not depend on the kernel, its largest tensors are ``kh*kw`` times the output.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from poolops.onnx import blocks
from poolops.onnx.builder import const_f32, const_i64, const_scalar_i64, dim, scalar, unsqueeze
from poolops.ops._window import check_window_fits, output_shape
from poolops.params import OpParams, OptionalPositivePair, ParamError, PositivePair
from poolops.registry import OpSpec, register

NAME = "stochastic"


class StochasticParams(OpParams):
    kernel: PositivePair = (2, 2)
    stride: OptionalPositivePair = None
    mode: Literal["eval", "train"] = "eval"
    """``eval``: the expectation ``sum(p x)``; ``train``: a sample ``x_k``, ``k ~ p``."""
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    """Seed of the ``train`` sampling (same seed, same samples)."""
    negative: Literal["error", "clamp"] = "error"
    """Negative input: ``error`` rejects it; ``clamp`` treats negatives as 0."""

    @property
    def strides(self) -> tuple[int, int]:
        """The stride, which defaults to the kernel."""
        return self.stride or self.kernel

    @property
    def padding(self) -> tuple[int, int]:
        """No padding (for the shared window helpers)."""
        return (0, 0)

    @property
    def ceil_mode(self) -> bool:
        """Floor mode only (for the shared window helpers)."""
        return False


# ---------------------------------------------------------------- the hash RNG

_M31 = 2**31
_ROT = 16  # rotation (right) within 31 bits
_ROUNDS = 3
_U_SHIFT = 2**7  # keep the top 24 of 31 bits
_U_SCALE = 2.0**-24
_MASK64 = 2**64 - 1


def hash_keys(seed: int) -> list[int]:
    """The round keys of ``seed``: SplitMix64 outputs reduced to 31 bits
    (plain Python; they become constants of the graphs)."""
    keys, z = [], seed
    for _ in range(_ROUNDS + 1):
        z = (z + 0x9E3779B97F4A7C15) & _MASK64
        y = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        y = ((y ^ (y >> 27)) * 0x94D049BB133111EB) & _MASK64
        keys.append((y ^ (y >> 31)) % _M31)
    return keys


def _hash(ops, idx, keys):
    """The hash on non-negative int64 ``idx``, written once for torch and ONNX.

    ``ops`` supplies ``add``, ``mul``, ``div`` (floor; all operands are
    non-negative) and ``mod`` taking a tensor and a tensor or Python int.
    Every intermediate stays below 2^63: the state is below 2^31.
    """
    add, mul, div, mod = ops

    def square(x, key):  # x -> (x + key)(2(x + key) + 1) mod 2^31: a nonlinear bijection
        x = mod(add(x, key), _M31)
        return mod(mul(x, add(add(x, x), 1)), _M31)

    x = mod(idx, _M31)
    for r, key in enumerate(keys[:-1]):
        if r == 1:
            x = add(x, div(idx, _M31))
        x = square(x, key)
        x = add(mul(mod(x, 2**_ROT), 2 ** (31 - _ROT)), div(x, 2**_ROT))  # rotate
    return div(square(x, keys[-1]), _U_SHIFT)


def torch_uniform(seed: int, shape, device=None):
    """``u`` in ``[0, 1)`` (float32) for each element of ``shape`` (the hash RNG)."""
    import torch

    idx = torch.arange(math.prod(shape), dtype=torch.int64, device=device)
    return torch_hash_uniform(seed, idx.reshape(shape))


def torch_hash_uniform(seed: int, idx):
    """``u`` for the counters ``idx`` (non-negative int64 tensor)."""
    import torch

    ops = (lambda a, b: a + b, lambda a, b: a * b, lambda a, b: a // b, lambda a, b: a % b)
    return _hash(ops, idx, hash_keys(seed)).to(torch.float32) * _U_SCALE


def onnx_uniform(op, seed: int, dims):
    """:func:`torch_uniform` in ONNX, for a tensor of shape ``dims`` (a list of
    1-element int64 dims, dynamic)."""
    total = dims[0]
    for d in dims[1:]:
        total = op.Mul(total, d)
    idx = op.Range(const_scalar_i64(op, 0), scalar(op, total), const_scalar_i64(op, 1))
    return onnx_hash_uniform(op, seed, op.Reshape(idx, op.Concat(*dims, axis=0)))


def onnx_hash_uniform(op, seed: int, idx):
    """:func:`torch_hash_uniform` in ONNX (``idx`` a non-negative int64 tensor)."""
    consts: dict[int, object] = {}

    def c(v):
        if isinstance(v, int):
            if v not in consts:
                consts[v] = const_scalar_i64(op, v)
            return consts[v]
        return v

    ops = (
        lambda a, b: op.Add(a, c(b)),
        lambda a, b: op.Mul(a, c(b)),
        lambda a, b: op.Div(a, c(b)),
        lambda a, b: op.Mod(a, c(b)),
    )
    h = _hash(ops, idx, hash_keys(seed))
    return op.Mul(op.Cast(h, to=1), const_f32(op, _U_SCALE))


# ---------------------------------------------------------------- torch


def _check_negative(p: StochasticParams, x) -> None:
    if p.negative == "error" and bool((x < 0).any()):
        raise ParamError(
            NAME,
            "x",
            "negative values are not allowed (stochastic pooling takes probabilities "
            "proportional to the values, e.g. after a ReLU); pass negative='clamp' to "
            "treat them as 0",
        )


def check_input(p: StochasticParams, x) -> None:
    """Window fits the input; no negative values unless ``negative='clamp'``."""
    check_window_fits(NAME, p, x.shape)
    _check_negative(p, x)


def _torch_prepare(p: StochasticParams, x):
    import torch

    check_window_fits(NAME, p, x.shape)
    if p.negative == "clamp":
        return torch.relu(x)
    if not (torch.compiler.is_compiling() or torch.jit.is_tracing()):
        _check_negative(p, x)
    return x


def _torch_offsets(p: StochasticParams, x):
    """The ``kh*kw`` strided views ``x_t`` ``[N, C, oh, ow]``, window offsets in row-major order."""
    (kh, kw), (sh, sw) = p.kernel, p.strides
    _, _, oh, ow = output_shape(p, x.shape)
    return [
        x[:, :, a : a + sh * (oh - 1) + 1 : sh, b : b + sw * (ow - 1) + 1 : sw]
        for a in range(kh)
        for b in range(kw)
    ]


def torch_sample(p: StochasticParams, x):
    """``train`` sampling on a prepared (non-negative) ``x``.

    Returns ``(y, t, s)``: the sampled values (differentiable; 0 with no gradient
    for all-zero windows), the window offset ``t`` (row-major, int64) of each
    sample, and the window sums.
    """
    import torch

    xs = _torch_offsets(p, x)
    cums = [xs[0]]
    for xt in xs[1:]:
        cums.append(cums[-1] + xt)
    s = cums[-1]
    thr = torch_uniform(p.seed, s.shape, s.device).to(s.dtype) * s
    y, t = xs[0], torch.zeros(s.shape, dtype=torch.int64, device=s.device)
    for k in range(len(xs) - 1, -1, -1):
        take = cums[k] > thr
        y = torch.where(take, xs[k], y)
        t = torch.where(take, torch.full_like(t, k), t)
    return torch.where(s > 0, y, torch.zeros_like(y)), t, s


def torch_probabilities(p: StochasticParams, x):
    """The sampling probabilities ``[N, C, oh, ow, kh*kw]`` (row-major window order;
    all zero for an all-zero window)."""
    import torch

    xs = torch.stack(_torch_offsets(p, _torch_prepare(p, x)), dim=-1)
    s = xs.sum(-1, keepdim=True)
    return xs / torch.where(s > 0, s, torch.ones_like(s))


def torch_stochastic(p: StochasticParams, x, outputs=("y",)):
    import torch
    import torch.nn.functional as F

    x = _torch_prepare(p, x)
    if p.mode == "train":
        y = torch_sample(p, x)[0]
    else:
        k = p.kernel[0] * p.kernel[1]
        s = F.avg_pool2d(x, p.kernel, p.strides) * k
        q = F.avg_pool2d(x * x, p.kernel, p.strides) * k
        y = q / torch.where(s > 0, s, torch.ones_like(s))
    return blocks.take_outputs(outputs, y=y)


# ---------------------------------------------------------------- ONNX


def _onnx_prepare(op, p: StochasticParams, x):
    return op.Relu(x) if p.negative == "clamp" else x


def _onnx_window_index(op, p: StochasticParams, w, oh, ow):
    """Flat ``H*W`` plane index ``[oh, ow, kh*kw]`` of each window's elements, row-major:
    ``(i*sh + t // kw) * W + j*sw + t % kw`` for window offset ``t``."""
    (kh, kw), (sh, sw) = p.kernel, p.strides
    zero, one = const_scalar_i64(op, 0), const_scalar_i64(op, 1)
    t = op.Range(zero, const_scalar_i64(op, kh * kw), one)
    kw_c = const_scalar_i64(op, kw)
    rows = unsqueeze(op, op.Mul(op.Range(zero, scalar(op, oh), one), const_scalar_i64(op, sh)), [1, 2])
    cols = unsqueeze(op, op.Mul(op.Range(zero, scalar(op, ow), one), const_scalar_i64(op, sw)), [1])
    return op.Add(op.Mul(op.Add(rows, op.Div(t, kw_c)), w), op.Add(cols, op.Mod(t, kw_c)))


def onnx_sample(op, p: StochasticParams, x):
    """``train`` sampling in ONNX, bit for bit as :func:`torch_sample` (``x`` prepared).

    The windows are gathered as ``[N, C, oh, ow, kh*kw]`` (row-major window order) and
    summed by a CumSum along the last axis: sequential sums, the same float additions
    in the same order as :func:`torch_sample`'s running sums. The sample is the first
    offset whose running sum exceeds ``u * S`` (ArgMax of the comparison finds the first
    True; none: offset 0, as in torch). The graph's size does not depend on the kernel.

    Returns ``(y, indices, s)``: the sampled values, their flat ``H*W`` plane
    indices (the window's first element for all-zero windows) and the window sums.
    """
    (kh, kw), (sh, sw) = p.kernel, p.strides
    h, w = dim(op, x, 2), dim(op, x, 3)
    oh = blocks.pool_out_dim(op, h, kh, sh, 0, 1, False)
    ow = blocks.pool_out_dim(op, w, kw, sw, 0, 1, False)
    last = const_i64(op, [4])
    windows = op.Gather(op.Reshape(x, const_i64(op, [0, 0, -1])), _onnx_window_index(op, p, w, oh, ow), axis=2)
    cums = op.CumSum(windows, const_scalar_i64(op, 4))  # [N, C, oh, ow, kh*kw]
    s = op.Gather(cums, const_scalar_i64(op, kh * kw - 1), axis=4)  # [N, C, oh, ow]
    u = onnx_uniform(op, p.seed, [dim(op, x, 0), dim(op, x, 1), oh, ow])
    take = op.Cast(op.Greater(cums, unsqueeze(op, op.Mul(u, s), [4])), to=1)
    first = op.ArgMax(take, axis=4, keepdims=1, select_last_index=0)  # [N, C, oh, ow, 1]
    y = op.Squeeze(op.GatherElements(windows, first, axis=4), last)
    t = op.Squeeze(first, last)
    # plane index of window offset t of output (i, j): (i*sh + t//kw) * W + j*sw + t%kw
    rows = unsqueeze(op, op.Range(const_scalar_i64(op, 0), scalar(op, oh), const_scalar_i64(op, 1)), [1])
    cols = op.Range(const_scalar_i64(op, 0), scalar(op, ow), const_scalar_i64(op, 1))
    base = op.Add(op.Mul(op.Mul(rows, const_scalar_i64(op, sh)), w), op.Mul(cols, const_scalar_i64(op, sw)))
    kw_c = const_scalar_i64(op, kw)
    offset = op.Add(op.Mul(op.Div(t, kw_c), w), op.Mod(t, kw_c))
    return y, op.Add(base, offset), s


def onnx_stochastic(op, p: StochasticParams, x, outputs=("y",)):
    x = _onnx_prepare(op, p, x)
    if p.mode == "train":
        y = onnx_sample(op, p, x)[0]
    else:
        s = blocks.window_sum(op, x, p.kernel, p.strides, (0, 0), False)
        q = blocks.window_sum(op, op.Mul(x, x), p.kernel, p.strides, (0, 0), False)
        y = op.Div(q, op.Where(op.Greater(s, const_f32(op, 0.0)), s, const_f32(op, 1.0)))
    return blocks.take_outputs(outputs, y=y)


def onnx_stochastic_backward(op, p: StochasticParams, x, grad_y):
    """train: ``grad_y`` to the sampled positions; eval: ``2 x A^T(g/S) - A^T(g Q/S^2)``.

    All-zero windows pass no gradient; with ``clamp`` negatives get none either.
    """
    xc = _onnx_prepare(op, p, x)
    zero = const_f32(op, 0.0)
    if p.mode == "train":
        _, indices, s = onnx_sample(op, p, xc)
        values = op.Where(op.Greater(s, zero), grad_y, zero)
        return blocks.scatter_add(op, x, indices, values)
    s = blocks.window_sum(op, xc, p.kernel, p.strides, (0, 0), False)
    q = blocks.window_sum(op, op.Mul(xc, xc), p.kernel, p.strides, (0, 0), False)
    pos = op.Greater(s, zero)
    s_safe = op.Where(pos, s, const_f32(op, 1.0))
    a = op.Div(grad_y, s_safe)
    b = op.Where(pos, op.Div(op.Mul(grad_y, q), op.Mul(s_safe, s_safe)), zero)
    a_h, a_w = blocks.window_membership(op, x, p.kernel, p.strides, (0, 0), False)
    grad = op.Sub(
        op.Mul(op.Mul(xc, const_f32(op, 2.0)), blocks.separable_matmul_t(op, a, a_h, a_w)),
        blocks.separable_matmul_t(op, b, a_h, a_w),
    )
    if p.negative == "clamp":
        grad = op.Where(op.Greater(x, zero), grad, zero)  # relu's: 0 where x <= 0, also for an inf gradient
    return grad


def stochastic_work(p: StochasticParams, shapes, outputs=("y",), backward=False) -> int:
    """eval: ``x*x`` (x's size) and two window sums; backward: as avg's. train: the
    windows, their running sums and the comparison ``[N, C, oh, ow, kh*kw]``, the int64
    window index ``[oh, ow, kh*kw]`` and hash ``[N, C, oh, ow]``; backward: the scatter
    into x's shape."""
    n, c, h, w = shapes["x"]
    _, _, oh, ow = (max(d, 0) for d in output_shape(p, shapes["x"]))
    y, area = n * c * oh * ow, p.kernel[0] * p.kernel[1]
    work = n * c * h * w
    if p.mode == "train":
        work = max(work, y * area, 2 * oh * ow * area, 2 * y, 2 * area)
        if backward:
            work = max(work, blocks.scatter_add_work(n, c, h, w, oh * ow))
    elif backward:
        work = max(
            work, blocks.window_membership_work(h, w, oh, ow), blocks.separable_matmul_t_work(n, c, h, w, oh, ow)
        )
    return work


register(
    OpSpec(
        name=NAME,
        family="window",
        params=StochasticParams,
        torch_fn=torch_stochastic,
        onnx_fn=onnx_stochastic,
        onnx_backward=onnx_stochastic_backward,
        output_shape=lambda p, s: output_shape(p, s),
        check_input=check_input,
        module_name="StochasticPool",
        input_domain="nonnegative",
        work=stochastic_work,
        doc=__doc__,
    )
)
