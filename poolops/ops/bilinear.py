"""Bilinear pooling (Lin et al. 2015): second-order statistics of one or two feature maps.

``B = (1/HW) * sum over the H*W positions l of x_l y_l^T``, ``x_l`` the C1 channels of
``x`` at position l and ``y_l`` the C2 channels of the second map there:
``B = X Y^T / HW`` with ``X = x.reshape(N, C1, HW)``. Homogeneous (default): the second
map is ``x``. Multimodal: the optional input ``x2`` (``[N, C2, H, W]``, same N, H, W
as ``x``; its input kind is defined below; not called ``y``, the name of the output).
Then, each switchable:

* ``signed_sqrt`` (default on): ``sign(B) * sqrt(|B|)``;
* ``l2_normalize`` (default on): ``z / max(||z||_2, eps)`` per sample over all
  C1*C2 values (``torch.nn.functional.normalize``), ``eps`` default 1e-12.

Output ``[N, C1 * C2]``: ``B[n]`` flattened C1-major (feature ``i * C2 + j`` is
``B[n, i, j]``, channel i of x with channel j of x2), whatever H and W.

Example, one sample, C = 2, H*W = 2 positions ``x_1 = (1, 2)``, ``x_2 = (3, 0)``
(``x = [[[[1, 3]], [[2, 0]]]]``): ``B = ((1,2)(1,2)^T + (3,0)(3,0)^T) / 2 =
[[5, 1], [1, 2]]``; raw (``signed_sqrt=False, l2_normalize=False``):
``[5, 1, 1, 2]``; signed sqrt: ``[2.236, 1, 1, 1.414]``; normalised (default):
that divided by ``sqrt(5 + 1 + 1 + 2) = 3``: ``[0.745, 0.333, 0.333, 0.471]``.

Backward: autograd (torch), to ``x2`` too. The derivative of ``sqrt(|B|)`` is
infinite at ``B = 0``; there the torch function takes the gradient as 0 (a plain
``sign(B) * sqrt(|B|)`` would give ``0 * inf = NaN``, e.g. for a channel that a ReLU
zeroed everywhere). No ONNX backward graph (the op is served forward only).

ONNX: Reshape, MatMul (``X Y^T``), Div, Sign/Abs/Sqrt/Mul, ReduceL2/Max/Div: standard
opset-18 nodes that ONNX Runtime's CUDA provider has kernels for.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from poolops.inputs import InputKind, register_kind
from poolops.onnx import blocks
from poolops.onnx.builder import const_f32, const_i64, dim
from poolops.params import OpParams
from poolops.registry import OpSpec, register


class BilinearParams(OpParams):
    signed_sqrt: bool = True
    """``sign(B) * sqrt(|B|)`` of each entry."""
    l2_normalize: bool = True
    """Divide each sample's vector by ``max(||z||_2, eps)``."""
    eps: float = Field(default=1e-12, gt=0.0, allow_inf_nan=False)
    """Floor of the L2 norm (a sample of zeros stays zeros)."""


def _shape(p: BilinearParams, s, x2_shape=None):
    c2 = s[1] if x2_shape is None else x2_shape[1]
    return (s[0], s[1] * c2)


# ---------------------------------------------------------------- torch


def torch_bilinear(p: BilinearParams, x, x2=None, outputs=("y",)):
    import torch
    import torch.nn.functional as F

    other = x if x2 is None else x2
    n, c1, h, w = x.shape
    b = torch.matmul(x.reshape(n, c1, h * w), other.reshape(n, other.shape[1], h * w).transpose(1, 2)) / (h * w)
    z = b.reshape(n, -1)
    if p.signed_sqrt:
        # sqrt of 1 (not of 0) where z == 0: the product is still 0 (sign(0) = 0), and the
        # gradient there is 0 instead of 0 * inf = NaN
        zero = z == 0
        z = torch.sign(z) * torch.sqrt(torch.where(zero, torch.ones_like(z), z.abs()))
    if p.l2_normalize:
        z = F.normalize(z, p=2.0, dim=1, eps=p.eps)
    return (z,)


# ---------------------------------------------------------------- ONNX


def onnx_bilinear(op, p: BilinearParams, x, x2=None, outputs=("y",)):
    flat = const_i64(op, [0, 0, -1])
    xs = op.Reshape(x, flat)  # [N, C1, HW]
    ys = xs if x2 is None else op.Reshape(x2, flat)  # [N, C2, HW]
    hw = op.Cast(op.Mul(dim(op, x, 2), dim(op, x, 3)), to=1)
    b = op.Div(op.MatMul(xs, op.Transpose(ys, perm=[0, 2, 1])), hw)  # [N, C1, C2]
    z = op.Reshape(b, const_i64(op, [0, -1]))
    if p.signed_sqrt:
        z = op.Mul(op.Sign(z), op.Sqrt(op.Abs(z)))
    if p.l2_normalize:
        norm = op.ReduceL2(z, const_i64(op, [1]), keepdims=1)
        z = op.Div(z, op.Max(norm, const_f32(op, p.eps)))
    return blocks.take_outputs(outputs, y=z)


def bilinear_work(p: BilinearParams, shapes, outputs=("y",), backward=False) -> int:
    """The maps flattened (and ``x2`` transposed) and ``B`` ``[N, C1, C2]``."""
    n, c1, h, w = shapes["x"]
    x2 = shapes.get("x2")
    c2 = c1 if x2 is None else x2[1]
    second = 0 if x2 is None else x2[0] * x2[1] * x2[2] * x2[3]
    return max(n * c1 * h * w, second, n * c1 * c2)


def _example_x2(x_shape, rng):
    n, c, h, w = x_shape
    return rng.standard_normal((n, int(rng.integers(1, c + 1)), h, w)).astype(np.float32)


register_kind(
    InputKind(
        "x2",
        ("N", "C2", "H", "W"),
        "float32",
        "a second feature map for multimodal bilinear pooling: same N, H, W as x, any C2 channels",
        _example_x2,
    )
)
register(
    OpSpec(
        name="bilinear",
        family="global",
        params=BilinearParams,
        torch_fn=torch_bilinear,
        onnx_fn=onnx_bilinear,
        onnx_backward=None,
        output_shape=_shape,
        module_name="BilinearPool",
        optional_inputs=("x2",),
        work=bilinear_work,
        doc=__doc__,
    )
)
