"""LIP, local importance-based pooling (Gao, Wang & Wu 2019): each window's mean of ``x``
weighted by ``exp(logit)``.

``y = sum_i e^{l_i} x_i / sum_i e^{l_i}`` over each window, per channel; the logit map
``logit`` (``[N, C, H, W]``, same shape as ``x``) is a second input: in a network it
is computed from ``x`` by a small learned module (the paper's importance logit
``G(I)``), so that the pooling learns where to look. The reference code
(github.com/sebgao/LIP, ``lip2d``) is ``avg_pool2d(x * exp(l)) / avg_pool2d(exp(l))``
with ``kernel=3, stride=2, padding=1``, this op's defaults; zero padding adds nothing
to either sum (padded cells get weight 0), so ``count_include_pad`` cancels.
``logit = x`` makes it ``softpool`` (with padding).

Stable: computed as ``sum e^{l_i - m} x_i / sum e^{l_i - m}``, ``m`` the window max of
``l``, so no ``exp`` overflows (the reference formula is ``inf / inf = NaN`` in float32
for logits above 88.7). A weight that underflows to 0 contributes 0; NaN propagates.

Example: ``x = [[1, 3]]``, ``logit = [[0, ln 3]]``, kernel ``(1, 2)``, stride 1, no
padding: weights ``(1/4, 3/4)``, ``y = 1/4 + 9/4 = 2.5``. Backward: autograd (torch)
to ``x`` (``w_i``) and to ``logit`` (``w_i (x_i - y)``); no ONNX backward graph (it
would need the logit map).

ONNX: both maps padded (``x`` with 0, ``logit`` with ``-inf``), windows gathered
``[N, C, oh, ow, kh*kw]``, ReduceMax, Exp, ReduceSum (see :mod:`poolops.ops._weighted`).
"""

from __future__ import annotations

import numpy as np
from pydantic import model_validator

from poolops.inputs import InputKind, register_kind
from poolops.onnx import blocks
from poolops.ops._weighted import onnx_weighted, out_hw, torch_weighted, weighted_work
from poolops.ops._window import check_window_fits
from poolops.params import NonNegativePair, OpParams, PositivePair, invalid
from poolops.registry import OpSpec, register

NAME = "lip"


class LipParams(OpParams):
    kernel: PositivePair = (3, 3)
    stride: PositivePair = (2, 2)
    padding: NonNegativePair = (1, 1)
    """Zero padding on each side (at most half the kernel); padded cells get weight 0."""

    @property
    def strides(self) -> tuple[int, int]:
        return self.stride

    @model_validator(mode="after")
    def _padding_at_most_half_kernel(self):
        for k, p in zip(self.kernel, self.padding):
            if p > k // 2:
                raise invalid("padding", f"must be at most half the kernel ({self.kernel}), got {self.padding}")
        return self


def _example_logit(x_shape, rng):
    return rng.standard_normal(tuple(x_shape)).astype(np.float32)


register_kind(
    InputKind(
        "logit",
        ("N", "C", "H", "W"),
        "float32",
        "importance logits, one per element of x (same shape): each window averages x weighted by exp(logit)",
        _example_logit,
    )
)


def torch_lip(p: LipParams, x, logit, outputs=("y",)):
    return blocks.take_outputs(outputs, y=torch_weighted(x, logit, p.kernel, p.strides, p.padding))


def onnx_lip(op, p: LipParams, x, logit, outputs=("y",)):
    return blocks.take_outputs(outputs, y=onnx_weighted(op, x, logit, p.kernel, p.strides, p.padding))


def lip_work(p: LipParams, shapes, outputs=("y",), backward=False) -> int:
    """Both maps padded, the gathered windows and weights ``[N, C, oh, ow, kh*kw]``, the
    int64 window index."""
    return weighted_work(shapes, p.kernel, p.strides, p.padding, True, False)


register(
    OpSpec(
        name=NAME,
        family="window",
        params=LipParams,
        torch_fn=torch_lip,
        onnx_fn=onnx_lip,
        onnx_backward=None,
        output_shape=lambda p, s: (s[0], s[1], *out_hw(s, p.kernel, p.strides, p.padding)),
        check_input=lambda p, x: check_window_fits(NAME, p, x.shape),
        module_name="LIPPool",
        inputs=("x", "logit"),
        work=lip_work,
        doc=__doc__,
    )
)
