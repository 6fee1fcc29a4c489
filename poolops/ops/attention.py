"""Attention pooling: ``attention`` (attention-weighted global pooling) and ``se``
(squeeze-and-excitation channel reweighting with the weights as inputs).

``attention``: ``w = softmax over the H*W positions of a``, ``y[n, c] = sum_l w[n, l] *
x[n, c, l]``, output ``[N, C, 1, 1]`` like ``global_avg`` (flatten for a head). The
attention logits ``a`` are the optional input ``attn``: ``[N, 1, H, W]`` (one map
for every channel) or ``[N, C, H, W]`` (one map per channel); by default (no
``attn``) the channel mean of ``x``, CBAM-style: ``a = mean over C of x``.
``temperature`` (> 0, default 1) divides the logits first: large values approach
``global_avg``, small ones ``global_max`` (of the attention map's argmax).
Example, one plane ``[[0, ln 3]]`` (= its own channel mean): ``w = [1/4, 3/4]``,
``y = 1/4 * 0 + 3/4 * ln 3 = 0.824``; with ``attn = [[0, 0]]``: the plain mean,
``0.549``.

``se`` (Hu et al. 2018): ``s = mean over H*W of x`` ``[N, C]``, ``g = sigmoid(W2
relu(W1 s + b1) + b2)`` ``[N, C]``, output ``x * g`` ``[N, C, H, W]``. The weights are
required inputs ``se_w1`` ``[R, C]``, ``se_b1`` ``[R]``, ``se_w2`` ``[C, R]``, ``se_b2``
``[C]`` (any hidden size R), as in a trained SE block (``nn.Linear(C, R)`` then
``nn.Linear(R, C)``: their ``weight`` and ``bias``), so one graph serves every SE
block of a network, and a module passes its parameters. (A single per-channel gate
input would make the op a plain broadcast multiply; the SE block's work, the
squeeze and the excitation MLP, is what needs to be exact and exportable.)
Example, C = 1, R = 1, ``W1 = W2 = [[1]]``, ``b1 = b2 = 0``, plane ``[[1, 3]]``:
``s = 2``, ``g = sigmoid(relu(2)) = 0.881``, output ``[[0.881, 2.642]]``.

``se`` with ``pooled=True``: the sources' channel-attention pooling
(``ChannelAttentionPool``: ``(x * attention).mean(dim=(2, 3))``), the SE-weighted
global average ``y = mean over H*W of (x * g)`` ``[N, C]``, a fixed-length vector for
any H, W (a classifier head). As ``g`` is constant over each plane, ``y = g * s``: the
graph computes that (no ``[N, C, H, W]`` product). Example as above: ``y = [[0.881 *
2]] = [[1.762]]``.

Backward: autograd (torch), to ``x`` and to every given input (``attn``, the
weights). No ONNX backward graphs (served forward only).

ONNX: ``attention``: the default map as ``ones [1, C] @ x`` over C, Softmax over the
flattened H*W axis, the weighted sum as a MatMul (``x @ w^T``; with ``attn``, one dot
product per channel); ``se``: ReduceMean, Gemm, Relu, Gemm, Sigmoid, Mul (of x, or of
the squeeze ``s`` when ``pooled``). All have ONNX
Runtime CUDA kernels at opset 18.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from poolops.inputs import InputKind, register_kind
from poolops.onnx import blocks
from poolops.onnx.builder import const_f32, const_i64, dim, unsqueeze
from poolops.params import OpParams, ParamError
from poolops.registry import OpSpec, register

# ---------------------------------------------------------------- attention


class AttentionParams(OpParams):
    temperature: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    """The softmax is taken of ``a / temperature``."""


def _attention_shape(p, s):
    return (s[0], s[1], 1, 1)


def torch_attention(p: AttentionParams, x, attn=None, outputs=("y",)):
    a = x.mean(dim=1, keepdim=True) if attn is None else attn
    if p.temperature != 1.0:
        a = a / p.temperature
    w = a.flatten(2).softmax(dim=2)  # [N, A, HW], A = 1 or C
    return ((w * x.flatten(2)).sum(dim=2)[:, :, None, None],)


def onnx_attention(op, p: AttentionParams, x, attn=None, outputs=("y",)):
    # Products, not ReduceMean over C and Mul + ReduceSum: ONNX Runtime's reduction across
    # channels is many times slower than one MatMul reading x (poolops bench ops), and
    # the weighted sum then needs no [N, C, H*W] product. A sum of products is what torch
    # computes too (0 * inf is NaN in both).
    flat = const_i64(op, [0, 0, -1])
    xf = op.Reshape(x, flat)  # [N, C, HW]
    if attn is None:  # the channel mean: ones [1, C] @ x, divided by C (summed, then divided, as torch)
        c = dim(op, x, 1)
        ones = op.Expand(const_f32(op, 1.0), op.Concat(const_i64(op, [1]), c, axis=0))
        a = op.Div(op.MatMul(ones, xf), op.Cast(c, to=1))  # [N, 1, HW]
    else:
        a = op.Reshape(attn, flat)  # [N, A, HW]
    if p.temperature != 1.0:
        a = op.Div(a, const_f32(op, p.temperature))
    w = op.Softmax(a, axis=2)  # [N, A, HW]
    if attn is None:  # one map: x @ w^T
        # w [N, 1, HW] as [N, HW, 1] by a Reshape (the same layout), not a Transpose that
        # ONNX Runtime fuses into a slower FusedMatMul
        y = unsqueeze(op, op.MatMul(xf, op.Reshape(w, const_i64(op, [0, -1, 1]))), [3])  # [N, C, 1, 1]
    else:  # A = 1 or C: one dot product per channel, the map broadcast over channels
        y = op.MatMul(unsqueeze(op, xf, [2]), unsqueeze(op, w, [3]))  # [N, C, 1, HW] @ [N, A, HW, 1]
    return blocks.take_outputs(outputs, y=y)


def attention_work(p: AttentionParams, shapes, outputs=("y",), backward=False) -> int:
    """x viewed ``[N, C, H*W]``, the softmax weights ``[N, A, H*W]`` (the weighted sum is a
    MatMul: no product of x's size)."""
    n, c, h, w = shapes["x"]
    a = shapes["attn"][1] if "attn" in shapes else 1
    return max(n * max(a, c) * h * w, n * a * h * w)


def _example_attn(x_shape, rng):
    n, c, h, w = x_shape
    return rng.standard_normal((n, int(rng.choice([1, c])), h, w)).astype(np.float32)


def check_attn(op_name: str, x, attn) -> None:
    """``ParamError`` unless the attention map has 1 or C channels."""
    a, c = int(attn.shape[1]), int(x.shape[1])
    if a not in (1, c):
        raise ParamError(
            op_name, "attn", f"expected shape [N, 1, H, W] or [N, C, H, W] = [N, {c}, H, W], got {tuple(attn.shape)}"
        )


register_kind(
    InputKind(
        "attn",
        ("N", "A", "H", "W"),
        "float32",
        "attention logits, softmaxed over the H*W positions: A = 1 (one map for all channels) or A = C "
        "(one map per channel); same N, H, W as x",
        _example_attn,
        check=lambda op, p, inputs: check_attn(op, inputs["x"], inputs["attn"]),
    )
)
register(
    OpSpec(
        name="attention",
        family="global",
        params=AttentionParams,
        torch_fn=torch_attention,
        onnx_fn=onnx_attention,
        onnx_backward=None,
        output_shape=_attention_shape,
        module_name="AttentionPool",
        optional_inputs=("attn",),
        work=attention_work,
        doc=__doc__,
    )
)


# ---------------------------------------------------------------- se

SE_INPUTS = ("x", "se_w1", "se_b1", "se_w2", "se_b2")


class SEParams(OpParams):
    pooled: bool = False
    """False (default): the recalibrated map ``x * g`` ``[N, C, H, W]`` (Hu et al.); True: the
    SE-weighted global average ``mean over H*W of (x * g)`` ``[N, C]`` (the sources'
    channel-attention pooling)."""


def _se_shape(p: SEParams, s):
    return (s[0], s[1]) if p.pooled else tuple(s)


def torch_se(p: SEParams, x, se_w1, se_b1, se_w2, se_b2, outputs=("y",)):
    import torch.nn.functional as F

    s = x.mean(dim=(2, 3))
    g = F.linear(F.relu(F.linear(s, se_w1, se_b1)), se_w2, se_b2).sigmoid()
    if p.pooled:  # mean(x * g) = g * mean(x): g is constant over each plane
        return (s * g,)
    return (x * g[:, :, None, None],)


def onnx_se(op, p: SEParams, x, se_w1, se_b1, se_w2, se_b2, outputs=("y",)):
    s = op.ReduceMean(x, const_i64(op, [2, 3]), keepdims=0)  # [N, C]
    hidden = op.Relu(op.Gemm(s, se_w1, se_b1, transB=1))  # [N, R]
    g = op.Sigmoid(op.Gemm(hidden, se_w2, se_b2, transB=1))  # [N, C]
    y = op.Mul(s, g) if p.pooled else op.Mul(x, unsqueeze(op, g, [2, 3]))
    return blocks.take_outputs(outputs, y=y)


def se_work(p: SEParams, shapes, outputs=("y",), backward=False) -> int:
    """x times the gates (x's size; not made when ``pooled``); the squeeze ``[N, C]`` and
    hidden layer ``[N, R]``."""
    n, c, h, w = shapes["x"]
    return max(0 if p.pooled else n * c * h * w, n * c, n * shapes["se_w1"][0])


def se_hidden(channels: int) -> int:
    """The hidden size R of the example ``se`` weights: ``max(2, C // 4)``."""
    return max(2, channels // 4)


def _example_se(dims, scale_by):
    """Weights of shape ``dims`` (``C`` x's channels, ``R`` :func:`se_hidden`), standard
    normal over the square root of the ``scale_by`` size."""

    def make(x_shape, rng):
        c = x_shape[1]
        sizes = {"C": c, "R": se_hidden(c)}
        shape = tuple(sizes[d] for d in dims)
        return (rng.standard_normal(shape) / np.sqrt(sizes[scale_by])).astype(np.float32)

    return make


for _name, _dims, _what, _scale_by in (
    ("se_w1", ("R", "C"), "reduction weights [R, C]", "C"),
    ("se_b1", ("R",), "reduction bias [R]", "R"),
    ("se_w2", ("C", "R"), "expansion weights [C, R]", "R"),
    ("se_b2", ("C",), "expansion bias [C]", "C"),
):
    register_kind(InputKind(_name, _dims, "float32", f"squeeze-and-excitation {_what}", _example_se(_dims, _scale_by)))
register(
    OpSpec(
        name="se",
        family="attention",
        params=SEParams,
        torch_fn=torch_se,
        onnx_fn=onnx_se,
        onnx_backward=None,
        output_shape=_se_shape,
        module_name="SqueezeExcite",
        inputs=SE_INPUTS,
        work=se_work,
        bench_params=(("pooled", {"pooled": True}),),
        doc=__doc__,
    )
)
