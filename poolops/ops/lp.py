"""Power-average pooling: ``lp`` (PyTorch ``lp_pool2d``) and ``gem`` (generalised mean).

``lp``: ``y = (sum over the window of x^p)^(1/p)`` with ``p = norm_type`` (finite,
> 0), ``kernel``, ``stride`` (default the kernel), ``ceil_mode``; no padding. Exactly
PyTorch's ``lp_pool2d``, which is *not* ONNX ``LpPool``: PyTorch takes no ``abs()``
(``x^p`` of a negative ``x`` with a non-integer ``p`` is NaN, and a negative window sum
with a non-integer ``1/p`` gives NaN), and computes ``sign(a) * relu(|a|) * kh*kw``
raised to ``1/p`` with ``a = avg_pool2d(x^p)``; in ceil mode a window clipped at the
edge is therefore scaled by ``kh*kw / (cells inside)``, as PyTorch does. A window
whose sum is 0 gets gradient 0. Example (p = 2, 2x2 window):
``[[1, 2], [3, 4]] -> sqrt(1 + 4 + 9 + 16) = sqrt(30) = 5.477``; backward
``dy/dx = x / y = [[0.183, 0.365], [0.548, 0.730]]``.
Input domain: non-negative inputs (e.g. after a ReLU), where the op is finite and
well conditioned; the property tests draw those. On negative inputs the forward
follows PyTorch (NaN where PyTorch gives NaN); the backward graph equals autograd
where autograd is finite, but where it is NaN, NaN may reach more inputs than in
PyTorch (the window-spreading step is a matrix product, and ``0 * NaN`` is NaN).

``gem`` (Radenović et al. 2018): ``y = (mean over the window of max(x, eps)^p)^(1/p)``,
``p > 0`` (default 3), ``eps > 0`` (default 1e-6). Global by default (one value per
channel, ``[N, C, 1, 1]``, any H, W); with ``kernel`` (and optionally ``stride``,
default the kernel) windowed like ``avg_pool2d`` (floor mode, no padding). ``p = 1``
is average pooling of the clamped input, large ``p`` approaches max pooling.
Example (p = 3): ``[[1, 2], [3, 4]] -> (25)^(1/3) = 2.924``; negative values count
as ``eps``. Gradient: autograd of the clamp (zero where ``x < eps``), pow and mean.
Keep ``eps^p`` above float32's smallest normal (~1e-38), e.g. ``p <= 6`` with the
default ``eps``: below it the mean of a window of clamped values underflows to 0.

Learnable ``p`` (GeM as trained, Radenović et al.: ``p`` a parameter of the layer): the
optional input ``gem_p``, ``[1]`` (one ``p`` for every channel, as
``nn.Parameter(torch.ones(1) * 3)``) or ``[C]`` (one per channel), each finite and > 0;
when given it replaces the parameter ``p``: ``y[n, c] = (mean max(x, eps)^p_c)^(1/p_c)``.
Gradient to ``p`` by torch autograd, ``dy/dp = y (mean(c^p ln c) / (p m) - ln(m) / p^2)``
with ``c = max(x, eps)``, ``m = mean c^p``; the ONNX forward graph takes ``gem_p`` as a
graph input (one graph for every value of p), the ONNX backward graph is for a fixed
``p`` only (``backward`` with ``gem_p`` is refused).

ONNX: ``Pow`` (with ``gem_p``: ``Exp(p * Log(c))``) then ``AveragePool`` (or
``ReduceMean``) then ``Pow``; no ``LpPool``
node (it takes ``abs()`` and has no CUDA kernel in ONNX Runtime). The backward graphs
apply the chain rule with PyTorch's derivative formulas step by step.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from poolops.inputs import InputKind, register_kind
from poolops.onnx import blocks
from poolops.onnx.builder import const_f32, const_i64, dim
from poolops.ops._window import check_window_fits
from poolops.ops._window import output_shape as window_output_shape
from poolops.ops.avg import AvgParams, avg_work, onnx_avg, onnx_avg_backward
from poolops.params import OpParams, OptionalPositivePair, ParamError, PositivePair, invalid
from poolops.registry import OpSpec, register

# ---------------------------------------------------------------- lp


class LpParams(OpParams):
    norm_type: float = Field(default=2.0, gt=0.0, allow_inf_nan=False)
    """The power ``p``: finite and > 0 (PyTorch's ``inf`` norm is max pooling of ``|x|``)."""
    kernel: PositivePair = (2, 2)
    stride: OptionalPositivePair = None
    ceil_mode: bool = False

    def window(self) -> AvgParams:
        """The ``avg_pool2d`` that PyTorch's ``lp_pool2d`` runs on ``x^p``."""
        return AvgParams(kernel=self.kernel, stride=self.stride, ceil_mode=self.ceil_mode)


def _lp_area(p: LpParams) -> float:
    return float(p.kernel[0] * p.kernel[1])


def torch_lp(p: LpParams, x, outputs=("y",)):
    import torch.nn.functional as F

    return (F.lp_pool2d(x, p.norm_type, p.kernel, p.window().strides, p.ceil_mode),)


def onnx_lp(op, p: LpParams, x, outputs=("y",)):
    (a,) = onnx_avg(op, p.window(), op.Pow(x, const_f32(op, p.norm_type)))
    # PyTorch: (sign(a) * relu(|a|) * k)^(1/p); sign(a) * relu(|a|) is a (NaN stays NaN)
    t = op.Mul(a, const_f32(op, _lp_area(p)))
    return blocks.take_outputs(outputs, y=op.Pow(t, const_f32(op, 1.0 / p.norm_type)))


def _torch_sign(op, a):
    """PyTorch's ``sign``: 0 for NaN (ONNX ``Sign`` gives NaN)."""
    return op.Where(op.IsNaN(a), const_f32(op, 0.0), op.Sign(a))


def _pow_grad(op, g, base, exponent: float):
    """PyTorch's ``pow_backward`` for a scalar exponent: ``g * (e * base^(e - 1))``."""
    return op.Mul(g, op.Mul(const_f32(op, exponent), op.Pow(base, const_f32(op, exponent - 1.0))))


def onnx_lp_backward(op, p: LpParams, x, grad_y):
    """Autograd of ``(sign(a) * relu(|a|) * k)^(1/p)``, ``a = avg_pool(x^p)``, step by step.

    Through ``sign(a) * relu(|a|)`` the gradient is multiplied by ``sign(a)^2`` and
    zeroed where ``|a| <= 0``: it passes unchanged where ``a != 0``, is 0 where
    ``a == 0`` (PyTorch's "zero sum, zero gradient"), and is ``g * 0 * 0`` where ``a`` is
    NaN (PyTorch's sign of NaN is 0).
    """
    w = p.window()
    xp = op.Pow(x, const_f32(op, p.norm_type))
    (a,) = onnx_avg(op, w, xp)
    k = _lp_area(p)
    t = op.Mul(a, const_f32(op, k))
    g_t = _pow_grad(op, grad_y, t, 1.0 / p.norm_type)
    g_sr = op.Mul(g_t, const_f32(op, k))
    s = _torch_sign(op, a)
    g_a = op.Where(op.Equal(a, const_f32(op, 0.0)), const_f32(op, 0.0), op.Mul(op.Mul(g_sr, s), s))
    g_xp = onnx_avg_backward(op, w, x, g_a)
    return _pow_grad(op, g_xp, x, p.norm_type)


def lp_work(p: LpParams, shapes, outputs=("y",), backward=False) -> int:
    """``x^p`` (x's size) and the average pooling of it; backward: that pooling's backward
    and the x-sized chain rule."""
    n, c, h, w = shapes["x"]
    return max(n * c * h * w, avg_work(p.window(), shapes, ("y",), backward))


register(
    OpSpec(
        name="lp",
        torch_stock="F.lp_pool2d",
        family="window",
        params=LpParams,
        torch_fn=torch_lp,
        onnx_fn=onnx_lp,
        onnx_backward=onnx_lp_backward,
        output_shape=lambda p, s: window_output_shape(p.window(), s),
        check_input=lambda p, x: check_window_fits("lp", p.window(), x.shape),
        module_name="LpPool",
        input_domain="nonnegative",
        work=lp_work,
        doc=__doc__,
    )
)


# ---------------------------------------------------------------- gem


class GemParams(OpParams):
    p: float = Field(default=3.0, gt=0.0, allow_inf_nan=False)
    eps: float = Field(default=1e-6, gt=0.0, allow_inf_nan=False)
    """Inputs below ``eps`` count as ``eps`` (keeps ``x^p`` defined and the gradient finite)."""
    kernel: OptionalPositivePair = None
    """None (default): global GeM, ``[N, C, 1, 1]``; a window: windowed GeM (floor mode)."""
    stride: OptionalPositivePair = None
    """Windowed GeM only; default the kernel."""

    @model_validator(mode="after")
    def _stride_needs_kernel(self):
        if self.stride is not None and self.kernel is None:
            raise invalid("stride", "is only for windowed GeM: give a kernel too, or no stride for global GeM")
        return self

    def window(self) -> AvgParams | None:
        return None if self.kernel is None else AvgParams(kernel=self.kernel, stride=self.stride)


def _gem_shape(p: GemParams, s):
    w = p.window()
    return (s[0], s[1], 1, 1) if w is None else window_output_shape(w, s)


def _gem_check(p: GemParams, x) -> None:
    w = p.window()
    if w is not None:
        check_window_fits("gem", w, x.shape)


def torch_gem(p: GemParams, x, gem_p=None, outputs=("y",)):
    import torch.nn.functional as F

    power = p.p if gem_p is None else gem_p.reshape(1, -1, 1, 1)  # [1, 1 or C, 1, 1]
    xp = x.clamp(min=p.eps).pow(power)
    w = p.window()
    m = xp.mean(dim=(2, 3), keepdim=True) if w is None else F.avg_pool2d(xp, w.kernel, w.strides)
    return (m.pow(1.0 / power),)


def _gem_mean(op, p: GemParams, xp):
    w = p.window()
    if w is None:
        return op.ReduceMean(xp, const_i64(op, [2, 3]), keepdims=1)
    return onnx_avg(op, w, xp)[0]


def onnx_gem(op, p: GemParams, x, gem_p=None, outputs=("y",)):
    if gem_p is None:
        power, inverse = const_f32(op, p.p), const_f32(op, 1.0 / p.p)
    else:
        power = op.Reshape(gem_p, const_i64(op, [1, -1, 1, 1]))
        inverse = op.Reciprocal(power)
    c = op.Max(x, const_f32(op, p.eps))
    # c > 0 (or NaN, +inf): c^p = exp(p ln c). With p a tensor ONNX Runtime's Pow calls
    # powf element by element; Log, Mul and Exp are vectorised (1.7x faster in all)
    cp = op.Pow(c, power) if gem_p is None else op.Exp(op.Mul(op.Log(c), power))
    m = _gem_mean(op, p, cp)
    return blocks.take_outputs(outputs, y=op.Pow(m, inverse))


def onnx_gem_backward(op, p: GemParams, x, grad_y):
    """``g_m = g * (1/p) m^(1/p - 1)``; spread over the window (``/ count``);
    ``* p c^(p-1)``; zero where ``x < eps`` (PyTorch's clamp passes ``x >= eps``)."""
    c = op.Max(x, const_f32(op, p.eps))
    m = _gem_mean(op, p, op.Pow(c, const_f32(op, p.p)))
    g_m = _pow_grad(op, grad_y, m, 1.0 / p.p)
    w = p.window()
    if w is None:
        hw = op.Cast(op.Mul(dim(op, x, 2), dim(op, x, 3)), to=1)
        g_cp = op.Expand(op.Div(g_m, hw), op.Shape(x))
    else:
        g_cp = onnx_avg_backward(op, w, x, g_m)
    g_c = _pow_grad(op, g_cp, c, p.p)
    return op.Where(op.GreaterOrEqual(x, const_f32(op, p.eps)), g_c, const_f32(op, 0.0))


def gem_work(p: GemParams, shapes, outputs=("y",), backward=False) -> int:
    """``max(x, eps)^p`` (x's size), then a mean (global) or the average pooling of it."""
    n, c, h, w = shapes["x"]
    win = p.window()
    return max(n * c * h * w, 0 if win is None else avg_work(win, shapes, ("y",), backward))


def _example_gem_p(x_shape, rng):
    """``[1]`` or ``[C]`` powers in [0.5, 5]."""
    size = int(rng.choice([1, x_shape[1]]))
    return rng.uniform(0.5, 5.0, size).astype(np.float32)


def check_gem_p(op_name: str, x, gem_p) -> None:
    """``ParamError`` unless ``gem_p`` is ``[1]`` or ``[C]`` of finite values > 0."""
    size, c = int(gem_p.shape[0]), int(x.shape[1])
    if size not in (1, c):
        raise ParamError(op_name, "gem_p", f"expected shape [1] or [C] = [{c}], got {tuple(gem_p.shape)}")
    v = np.asarray(gem_p.detach().cpu() if hasattr(gem_p, "detach") else gem_p, np.float64)
    if not (np.isfinite(v).all() and (v > 0).all()):
        raise ParamError(op_name, "gem_p", f"every p must be finite and > 0, got {v.tolist()[:8]}")


register_kind(
    InputKind(
        "gem_p",
        ("P",),
        "float32",
        "GeM's learnable power p: [1] (one for all channels) or [C] (one per channel), finite and > 0; "
        "replaces the parameter p",
        _example_gem_p,
        check=lambda op, p, inputs: check_gem_p(op, inputs["x"], inputs["gem_p"]),
    )
)
register(
    OpSpec(
        name="gem",
        family="global",
        params=GemParams,
        torch_fn=torch_gem,
        onnx_fn=onnx_gem,
        onnx_backward=onnx_gem_backward,
        output_shape=_gem_shape,
        check_input=_gem_check,
        module_name="GeMPool",
        optional_inputs=("gem_p",),
        work=gem_work,
        doc=__doc__,
    )
)
