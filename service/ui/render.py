"""Arrays -> images and tables for display (numpy + Pillow only; no matplotlib, no torch).

Every plane is normalised on its own finite values (min -> black, max -> white; a
constant plane is mid-grey); NaN shows magenta, +inf white, -inf black. Small planes
are enlarged with nearest-neighbour blocks so that each value stays one visible square.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

NAN_RGB = (255, 0, 255)
DISPLAY = 256  # target display size (px) of the longer side of an enlarged plane
MAX_FACTOR = 128


def _finite_range(a: np.ndarray) -> tuple[float, float] | None:
    f = a[np.isfinite(a)]
    if f.size == 0:
        return None
    return float(f.min()), float(f.max())


def normalise(a: np.ndarray) -> np.ndarray:
    """Finite values of ``a`` mapped to [0, 1] (its own min and max); +inf 1, -inf 0, NaN 0.5."""
    a = np.asarray(a, np.float64)
    out = np.full(a.shape, 0.5)
    rng = _finite_range(a)
    if rng is not None:
        lo, hi = rng
        fin = np.isfinite(a)
        out[fin] = 0.5 if hi == lo else (a[fin] - lo) / (hi - lo)
    out[np.isposinf(a)] = 1.0
    out[np.isneginf(a)] = 0.0
    return out


def enlarge(rgb: np.ndarray, target: int = DISPLAY) -> np.ndarray:
    """Nearest-neighbour enlargement of an [h, w, 3] uint8 image to about ``target`` px.

    A vector-like plane (one row or column) gets a visible thickness (16 px)."""
    h, w = rgb.shape[:2]
    fy = max(1, min(MAX_FACTOR, target // max(h, w)))
    fx = fy
    if h == 1 and w > 1:
        fx = max(1, min(MAX_FACTOR, (2 * target) // w))
        fy = 16
    elif w == 1 and h > 1:
        fy = max(1, min(MAX_FACTOR, (2 * target) // h))
        fx = 16
    return np.repeat(np.repeat(rgb, fy, axis=0), fx, axis=1)


def plane_image(plane: np.ndarray, target: int = DISPLAY) -> Image.Image:
    """One 2-D plane as a greyscale RGB image, normalised per plane, enlarged when small."""
    a = np.asarray(plane, np.float64)
    if a.ndim == 1:
        a = a[None, :]
    g = np.round(normalise(a) * 255).astype(np.uint8)
    rgb = np.repeat(g[..., None], 3, axis=2)
    rgb[np.isnan(a)] = NAN_RGB
    return Image.fromarray(enlarge(rgb, target))


# sequential map for non-negative values: black -> red -> yellow -> white
_HOT = np.array([[0, 0, 0], [180, 0, 0], [255, 140, 0], [255, 255, 80], [255, 255, 255]], np.float64)
# diverging map for signed values: blue -> white -> red (0 is white)
_DIV = np.array([[40, 70, 200], [255, 255, 255], [200, 30, 30]], np.float64)


def _colormap(t: np.ndarray, stops: np.ndarray) -> np.ndarray:
    pos = np.linspace(0.0, 1.0, len(stops))
    return np.stack([np.interp(t, pos, stops[:, k]) for k in range(3)], axis=-1)


def heatmap(plane: np.ndarray, target: int = DISPLAY) -> Image.Image:
    """A gradient plane as a heat map: black..white for non-negative values (0 black),
    blue-white-red centred on 0 when some values are negative. NaN magenta."""
    a = np.asarray(plane, np.float64)
    if a.ndim == 1:
        a = a[None, :]
    fin = np.isfinite(a)
    vals = a[fin]
    if vals.size and vals.min() < 0:
        m = float(np.abs(vals).max()) or 1.0
        t = np.clip(np.where(fin, a, 0.0) / m, -1, 1) * 0.5 + 0.5
        rgb = _colormap(t, _DIV)
    else:
        m = float(vals.max()) if vals.size else 0.0
        t = np.where(fin, a, 0.0) / m if m > 0 else np.zeros_like(a)
        rgb = _colormap(np.clip(t, 0, 1), _HOT)
    rgb = np.round(rgb).astype(np.uint8)
    rgb[np.isnan(a)] = NAN_RGB
    rgb[np.isposinf(a)] = (255, 255, 255)
    return Image.fromarray(enlarge(rgb, target))


def planes(a: np.ndarray, limit: int = 8) -> list[tuple[tuple[int, ...], np.ndarray]]:
    """The first ``limit`` displayable planes of an op output, each with its index.

    4-D [N, C, h, w]: planes (n, c) in order; 2-D [N, F] (a feature vector per sample,
    e.g. ``spp``): one row per sample; other ranks: flattened rows."""
    a = np.asarray(a)
    if a.ndim == 4:
        return [((n, c), a[n, c]) for n in range(a.shape[0]) for c in range(a.shape[1])][:limit]
    if a.ndim == 3:
        return [((c,), a[c]) for c in range(a.shape[0])][:limit]
    if a.ndim == 2:
        return [((n,), a[n][None, :]) for n in range(a.shape[0])][:limit]
    return [((), a.reshape(1, -1))]


def fmt(v: float) -> str:
    """A compact number for tables (integers without decimals, others to 4 significant digits)."""
    v = float(v)
    if np.isnan(v):
        return "nan"
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == int(v) and abs(v) < 1e9:
        return str(int(v))
    return f"{v:.4g}"


def table(plane: np.ndarray, max_cols: int = 64) -> list[list[str]]:
    """A 2-D plane (or a vector) as rows of formatted strings (at most ``max_cols`` columns)."""
    a = np.asarray(plane)
    if a.ndim == 1:
        a = a[None, :]
    return [[fmt(v) for v in row[:max_cols]] for row in a]


def markdown_table(rows: list[list[str]], headers: list[str] | None = None) -> str:
    """Rows as a Markdown table (``headers`` default: column numbers)."""
    if not rows:
        return ""
    headers = headers or [str(i) for i in range(len(rows[0]))]
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |" for r in rows]
    return "\n".join(out)


def labelled(plane: np.ndarray, rows: str = "i", cols: str = "j", corner: str = "", max_cols: int = 64):
    """A plane as table rows headed by their indices: ``(rows, headers)`` with each row
    starting ``i=0``, ``i=1``... and the headers ``corner, j=0, j=1, ...`` (a vector: one row)."""
    body = table(plane, max_cols)
    if not body:
        return [], []
    data = [[f"{rows}={r}", *row] for r, row in enumerate(body)]
    return data, [corner, *(f"{cols}={c}" for c in range(len(body[0])))]
