"""Output sizes and bin boundaries, in plain Python (ints or torch SymInts).

The ONNX builders compute the same quantities with ONNX ops in
:mod:`poolops.onnx.blocks`; tests check both against PyTorch.
"""

from __future__ import annotations

from typing import Any


def sym_min(a: Any, b: Any) -> Any:
    """``min`` that also works on torch SymInts without guarding on them."""
    if isinstance(a, int) and isinstance(b, int):
        return min(a, b)
    import torch

    return torch.sym_min(a, b)


def pool_out_size(size: Any, kernel: int, stride: int, pad: int, dilation: int, ceil: bool) -> Any:
    """PyTorch's pooling output size along one axis.

    ``floor((L + 2p - d(k-1) - 1) / s) + 1`` (``ceil`` in ceil mode), and in ceil
    mode a last window that would start in the right padding is dropped, which is
    ``min(o, floor((L + p - 1) / s) + 1)``.
    """
    eff = dilation * (kernel - 1) + 1
    out = (size + 2 * pad - eff + (stride - 1 if ceil else 0)) // stride + 1
    if ceil:
        out = sym_min(out, (size + pad - 1) // stride + 1)
    return out


def adaptive_bins(size: int, n: int) -> list[tuple[int, int]]:
    """PyTorch adaptive bins: bin i covers ``[floor(i*L/n), ceil((i+1)*L/n))``; any L >= 1."""
    return [((i * size) // n, -((-(i + 1) * size) // n)) for i in range(n)]


def sppnet_bins(size: int, n: int) -> list[tuple[int, int]]:
    """The SPP-net paper's bins: window ``ceil(L/n)``, stride ``floor(L/n)``, n bins.

    Bin i starts at ``i * stride``. Where the paper's rule would leave trailing rows
    uncovered (e.g. L=7, n=4: window 2, stride 1, bins cover rows 0..4) they stay
    uncovered, as in the paper. When L < n the stride would be 0: it is clamped to 1
    and bins past the end repeat the last row (start clamped to ``L - window``).
    """
    win = -(-size // n)
    stride = max(size // n, 1)
    return [(min(i * stride, size - win), min(i * stride, size - win) + win) for i in range(n)]
