"""Window settings shared by the fixed-window ops (max, avg, stochastic)."""

from __future__ import annotations

from pydantic import model_validator

from poolops.params import NonNegativePair, OpParams, OptionalPositivePair, ParamError, PositivePair, invalid
from poolops.shapes import pool_out_size


class WindowParams(OpParams):
    """Window settings shared by the fixed-window ops."""

    kernel: PositivePair = (2, 2)
    stride: OptionalPositivePair = None
    padding: NonNegativePair = (0, 0)
    ceil_mode: bool = False

    @property
    def strides(self) -> tuple[int, int]:
        """The stride, which defaults to the kernel."""
        return self.stride or self.kernel

    @model_validator(mode="after")
    def _padding_at_most_half_kernel(self):
        for k, p in zip(self.kernel, self.padding):
            if p > k // 2:
                raise invalid("padding", f"must be at most half the kernel ({self.kernel}), got {self.padding}")
        return self


def check_window_fits(op_name: str, p: WindowParams, shape, dilation=(1, 1)) -> None:
    """``ParamError`` naming ``kernel`` when a window is larger than the padded input, or
    ``dilation`` when a window holds only padding. O(log) in the parameter values."""
    for axis, (k, pad, d) in enumerate(zip(p.kernel, p.padding, dilation)):
        size = shape[2 + axis]
        if size + 2 * pad < d * (k - 1) + 1:
            raise ParamError(
                op_name,
                "kernel",
                f"window {d * (k - 1) + 1} is larger than the padded input "
                f"({size} + 2*{pad}) on axis {'HW'[axis]}; use a smaller kernel or more padding",
            )
        # With dilation a window near the start can hold only padding (PyTorch then
        # returns -inf and an out-of-range index whose backward aborts): refuse it.
        w = padding_only_window(size, k, p.strides[axis], pad, d)
        if w is not None:
            raise ParamError(
                op_name,
                "dilation",
                f"window {w} on axis {'HW'[axis]} covers only padding (input {size}, padding {pad}, "
                f"dilation {d}); use less padding or dilation, or a larger input",
            )


def padding_only_window(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int | None:
    """The first window starting in the padding (``w * stride < pad``) none of whose
    elements ``w * stride - pad + j * dilation`` (``0 <= j < kernel``) is in ``[0, size)``,
    or None.

    Window ``w`` starts at ``-a`` (``a = pad - w * stride > 0``); its first element at or
    after 0 is ``j0 = ceil(a / d)``, at ``e = (w * stride - pad) mod d``. It holds only
    padding iff ``j0 >= kernel`` (true for w = 0 first, as ``a`` falls with w) or
    ``e >= size``: the first w whose residue lands in ``[size, d)``, found in
    O(log d) steps (:func:`first_residue_in`).
    """
    windows = -(-pad // stride)  # those starting in the padding
    if windows == 0:
        return None
    if pad > (kernel - 1) * dilation:
        return 0
    if size >= dilation:
        return None
    w = first_residue_in(stride, -pad, dilation, max(size, 0), dilation - 1)
    return w if w is not None and w < windows else None


def first_residue_in(a: int, b: int, m: int, lo: int, hi: int) -> int | None:
    """The smallest ``x >= 0`` with ``lo <= (a*x + b) mod m <= hi`` (``0 <= lo <= hi < m``),
    or None if there is none. O(log m)."""
    a, b = a % m, b % m
    l, r = (lo - b) % m, (hi - b) % m
    if l <= r:
        return _first_multiple_in(a, m, l, r)
    found = [x for x in (_first_multiple_in(a, m, 0, r), _first_multiple_in(a, m, l, m - 1)) if x is not None]
    return min(found) if found else None


def _first_multiple_in(a: int, m: int, l: int, r: int) -> int | None:
    """The smallest ``x >= 0`` with ``l <= a*x mod m <= r`` (``0 <= a < m``, ``0 <= l <= r < m``).

    Euclid-like: either some ``a*x`` lands in ``[l, r]`` before the first wrap, or the
    number of wraps ``y`` is the smallest with ``(-m*y) mod a`` in the matching range,
    a problem of the same form with ``(m mod a, a)`` in place of ``(a, m)``.
    """
    if l == 0:
        return 0
    if a == 0:
        return None
    x = -(-l // a)
    if a * x <= r:
        return x
    y = _first_multiple_in(m % a, a, (-r) % a, (-l) % a) if (-r) % a <= (-l) % a else None
    if y is None:
        return None
    x = -(-(l + m * y) // a)
    return x if a * x - m * y <= r else None


def output_shape(p: WindowParams, shape, dilation=(1, 1)) -> tuple:
    n, c, h, w = shape
    return (
        n,
        c,
        pool_out_size(h, p.kernel[0], p.strides[0], p.padding[0], dilation[0], p.ceil_mode),
        pool_out_size(w, p.kernel[1], p.strides[1], p.padding[1], dilation[1], p.ceil_mode),
    )
