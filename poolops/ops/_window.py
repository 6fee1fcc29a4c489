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
    """``ParamError`` naming ``kernel`` when a window is larger than the padded input."""
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
        stride = p.strides[axis]
        w = 0
        while w * stride - pad < 0:
            start = w * stride - pad
            if not any(0 <= start + j * d < size for j in range(k)):
                raise ParamError(
                    op_name,
                    "dilation",
                    f"window {w} on axis {'HW'[axis]} covers only padding (input {size}, padding {pad}, "
                    f"dilation {d}); use less padding or dilation, or a larger input",
                )
            w += 1


def output_shape(p: WindowParams, shape, dilation=(1, 1)) -> tuple:
    n, c, h, w = shape
    return (
        n,
        c,
        pool_out_size(h, p.kernel[0], p.strides[0], p.padding[0], dilation[0], p.ceil_mode),
        pool_out_size(w, p.kernel[1], p.strides[1], p.padding[1], dilation[1], p.ceil_mode),
    )
