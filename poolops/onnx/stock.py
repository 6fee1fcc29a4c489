"""PyTorch's own 2-D pooling, exported through poolops' graphs.

Neither of PyTorch's exporters writes ``adaptive_avg_pool2d`` / ``adaptive_max_pool2d``
with dynamic H and W, and ceil-mode windows are fixed to the example's size. Inside
:func:`stock_pooling` the ``torch.nn.functional`` pooling functions (which ``nn.MaxPool2d``,
``nn.AvgPool2d``, ``nn.AdaptiveAvgPool2d``, ``nn.AdaptiveMaxPool2d`` and ``nn.LPPool2d``
call, as does user code written with ``F.``) run the poolops op with the same semantics
instead, so the traced graph holds ``poolops::<op>`` calls that export with dynamic
shapes. Each translation maps torch's arguments to the op's parameters; an argument
poolops cannot express raises :class:`UnsupportedPooling` naming the function and the
argument, never a graph that is wrong at another size. The 1-D and 3-D functions
(``F.max_pool1d/3d``, ``F.avg_pool1d/3d``, ``F.adaptive_avg_pool1d/3d``,
``F.adaptive_max_pool1d/3d``) run poolops' ``max1d`` ... ``adaptive_max3d`` the same way.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, Iterator

import torch
import torch.nn.functional as F

from poolops import functional as P


class UnsupportedPooling(ValueError):
    """A stock pooling call whose arguments no poolops op reproduces exactly."""


def _pair(v, what: str, fn: str) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    t = tuple(v)
    if len(t) == 1:
        return (int(t[0]), int(t[0]))
    if len(t) != 2 or any(not isinstance(i, int) for i in t):
        raise UnsupportedPooling(f"F.{fn}: {what}={v!r} is not an int or a pair of ints")
    return t


def _batched(fn: Callable) -> Callable:
    """Unbatched ``[C, H, W]`` inputs (which torch accepts) run as ``[1, C, H, W]``."""

    @functools.wraps(fn)
    def run(x, *args, **kwargs):
        if x.dim() == 4:
            return fn(x, *args, **kwargs)
        if x.dim() != 3:
            raise UnsupportedPooling(f"{fn.__name__}: input of {x.dim()} dims; 2-D pooling takes [N, C, H, W] or [C, H, W]")
        out = fn(x.unsqueeze(0), *args, **kwargs)
        return tuple(o.squeeze(0) for o in out) if isinstance(out, tuple) else out.squeeze(0)

    return run


def _stride(stride, fn: str):
    return None if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else _pair(stride, "stride", fn)


@_batched
def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    k = _pair(kernel_size, "kernel_size", "max_pool2d")
    return P.max(x, kernel=k, stride=_stride(stride, "max_pool2d"), padding=_pair(padding, "padding", "max_pool2d"),
                 dilation=_pair(dilation, "dilation", "max_pool2d"), ceil_mode=bool(ceil_mode),
                 return_indices=bool(return_indices))


@_batched
def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    k = _pair(kernel_size, "kernel_size", "avg_pool2d")
    return P.avg(x, kernel=k, stride=_stride(stride, "avg_pool2d"), padding=_pair(padding, "padding", "avg_pool2d"),
                 ceil_mode=bool(ceil_mode), count_include_pad=bool(count_include_pad), divisor_override=divisor_override)


def _output_size(output_size, fn: str) -> tuple[int, int]:
    t = (output_size, output_size) if isinstance(output_size, int) or output_size is None else tuple(output_size)
    if any(v is None for v in t):
        raise UnsupportedPooling(
            f"F.{fn}: output_size={output_size!r} keeps an input dimension (None): its output then has the "
            "input's size; give both sizes as ints")
    return _pair(t, "output_size", fn)


@_batched
def adaptive_avg_pool2d(x, output_size):
    return P.adaptive_avg(x, output_size=_output_size(output_size, "adaptive_avg_pool2d"))


@_batched
def adaptive_max_pool2d(x, output_size, return_indices=False):
    return P.adaptive_max(x, output_size=_output_size(output_size, "adaptive_max_pool2d"),
                          return_indices=bool(return_indices))


@_batched
def lp_pool2d(x, norm_type, kernel_size, stride=None, ceil_mode=False):
    k = _pair(kernel_size, "kernel_size", "lp_pool2d")
    return P.lp(x, norm_type=float(norm_type), kernel=k, stride=_stride(stride, "lp_pool2d"), ceil_mode=bool(ceil_mode))


def _batched_nd(r: int):
    """An unbatched input (``[C, L]`` / ``[C, D, H, W]``, which torch accepts) runs as a
    batch of one."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def run(x, *args, **kwargs):
            if x.dim() == r + 2:
                return fn(x, *args, **kwargs)
            if x.dim() != r + 1:
                raise UnsupportedPooling(f"{fn.__name__}: input of {x.dim()} dims; {r}-D pooling takes {r + 2} or {r + 1}")
            out = fn(x.unsqueeze(0), *args, **kwargs)
            return tuple(o.squeeze(0) for o in out) if isinstance(out, tuple) else out.squeeze(0)

        return run

    return wrap


def _ints(v, r: int, what: str, fn: str) -> tuple[int, ...]:
    t = (v,) * r if isinstance(v, int) else tuple(v)
    if len(t) == 1:
        t = t * r
    if len(t) != r or any(not isinstance(i, int) for i in t):
        raise UnsupportedPooling(f"F.{fn}: {what}={v!r} is not an int or {r} ints")
    return t


def _nd(r: int):
    """The translations of ``F.max_pool{r}d``, ``avg_pool{r}d``, ``adaptive_*_pool{r}d``."""
    sfx = f"{r}d"

    def stride(v, fn):
        return None if v is None or (isinstance(v, (list, tuple)) and len(v) == 0) else _ints(v, r, "stride", fn)

    @_batched_nd(r)
    def max_pool(x, kernel_size, stride_=None, padding=0, dilation=1, ceil_mode=False, return_indices=False, **kw):
        fn = f"max_pool{sfx}"
        stride_ = kw.pop("stride", stride_)
        return P.call(f"max{sfx}", x, kernel=_ints(kernel_size, r, "kernel_size", fn), stride=stride(stride_, fn),
                      padding=_ints(padding, r, "padding", fn), dilation=_ints(dilation, r, "dilation", fn),
                      ceil_mode=bool(ceil_mode), return_indices=bool(return_indices))

    @_batched_nd(r)
    def avg_pool(x, kernel_size, stride_=None, padding=0, ceil_mode=False, count_include_pad=True, *rest, **kw):
        fn = f"avg_pool{sfx}"
        stride_ = kw.pop("stride", stride_)
        divisor = kw.pop("divisor_override", rest[0] if rest else None)
        extra = {"divisor_override": divisor} if r == 3 else {}
        return P.call(f"avg{sfx}", x, kernel=_ints(kernel_size, r, "kernel_size", fn), stride=stride(stride_, fn),
                      padding=_ints(padding, r, "padding", fn), ceil_mode=bool(ceil_mode),
                      count_include_pad=bool(count_include_pad), **extra)

    def size(v, fn):
        if v is None or (not isinstance(v, int) and any(i is None for i in v)):
            raise UnsupportedPooling(f"F.{fn}: output_size={v!r} keeps an input dimension (None); give every size as an int")
        return _ints(v, r, "output_size", fn)

    @_batched_nd(r)
    def adaptive_avg(x, output_size):
        return P.call(f"adaptive_avg{sfx}", x, output_size=size(output_size, f"adaptive_avg_pool{sfx}"))

    @_batched_nd(r)
    def adaptive_max(x, output_size, return_indices=False):
        return P.call(f"adaptive_max{sfx}", x, output_size=size(output_size, f"adaptive_max_pool{sfx}"),
                      return_indices=bool(return_indices))

    return {
        f"max_pool{sfx}": max_pool,
        f"max_pool{sfx}_with_indices": _with_indices(max_pool),
        f"avg_pool{sfx}": avg_pool,
        f"adaptive_avg_pool{sfx}": adaptive_avg,
        f"adaptive_max_pool{sfx}": adaptive_max,
        f"adaptive_max_pool{sfx}_with_indices": _with_indices(adaptive_max),
    }


def _with_indices(fn):
    def run(*args, **kwargs):
        kwargs["return_indices"] = True
        return fn(*args, **kwargs)

    return run


# torch.nn.functional name -> its poolops translation (the *_with_indices variants are
# what F.max_pool2d's boolean dispatch calls when return_indices=True)
TRANSLATIONS: dict[str, Callable] = {
    "max_pool2d": max_pool2d,
    "max_pool2d_with_indices": _with_indices(max_pool2d),
    "avg_pool2d": avg_pool2d,
    "adaptive_avg_pool2d": adaptive_avg_pool2d,
    "adaptive_max_pool2d": adaptive_max_pool2d,
    "adaptive_max_pool2d_with_indices": _with_indices(adaptive_max_pool2d),
    "lp_pool2d": lp_pool2d,
    **_nd(1),  # the 1-D and 3-D pools: poolops' max1d ... adaptive_max3d
    **_nd(3),
}


@contextlib.contextmanager
def stock_pooling() -> Iterator[None]:
    """Within the block, ``torch.nn.functional``'s 2-D pooling runs poolops ops (the same
    results; ``poolops::<op>`` calls when traced for export)."""
    saved = {name: getattr(F, name) for name in TRANSLATIONS}

    def patched(name, fn):
        # only while tracing: run eagerly, poolops' own torch functions call these very F functions
        def run(*args, **kwargs):
            return (fn if torch.compiler.is_exporting() else saved[name])(*args, **kwargs)

        return functools.wraps(saved[name])(run)

    try:
        for name, fn in TRANSLATIONS.items():
            setattr(F, name, patched(name, fn))
        yield
    finally:
        for name, fn in saved.items():
            setattr(F, name, fn)


__all__ = ["UnsupportedPooling", "stock_pooling", "TRANSLATIONS"]
