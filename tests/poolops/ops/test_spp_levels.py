"""SPP with rectangular levels (``levels`` entries ``[rows, cols]`` besides square ints,
as TF-Addons' ``SpatialPyramidPooling2D(bins=[[r, c], ...])``): torch function, ONNX
forward and backward against a loop reference of PyTorch's adaptive bins per axis (and
the SPP-net rule per axis), with ``valid`` regions, one graph at many sizes including
maps smaller than the bins, and TF-Addons' own rule where it agrees (H, W divisible by
the bins). (tests/poolops/test_torch_onnx_parity.py draws rectangular levels too.)"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import poolops
import poolops.functional as PF
import poolops.nn as PN
from poolops.onnx import op_backward_model, op_model
from poolops.params import ParamError
from support.runtime import assert_close, session


def _adaptive(size: int, n: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive bins: ``[floor(i L / n), ceil((i + 1) L / n))``."""
    return [(i * size // n, -(-(i + 1) * size // n)) for i in range(n)]


def _sppnet(size: int, n: int) -> list[tuple[int, int]]:
    """SPP-net: window ``ceil(L / n)``, stride ``max(floor(L / n), 1)``, kept inside."""
    win, stride = -(-size // n), max(size // n, 1)
    return [(min(i * stride, size - win), min(i * stride, size - win) + win) for i in range(n)]


def naive_spp(x, levels, mode="max", bins="adaptive"):
    """``[N, C * sum(r c)]``: per level ``r x c`` bins (rows split by r, columns by c),
    each level's ``[N, C, r, c]`` flattened C-major, levels in order; float64 loops."""
    x = np.asarray(x, np.float64)
    n, ch, h, w = x.shape
    rule = _adaptive if bins == "adaptive" else _sppnet
    out = []
    for level in levels:
        r, c = (level, level) if isinstance(level, int) else level
        y = np.empty((n, ch, r, c))
        for i, (r0, r1) in enumerate(rule(h, r)):
            for j, (c0, c1) in enumerate(rule(w, c)):
                cell = x[:, :, r0:r1, c0:c1].reshape(n, ch, -1)
                y[:, :, i, j] = cell.max(-1) if mode == "max" else cell.mean(-1)
        out.append(y.reshape(n, -1))
    return np.concatenate(out, axis=1)


LEVELS = [((2, 3),), (1, (1, 2), (3, 1)), ((4, 2), 2, (1, 5)), ((2, 6), (3, 4))]
SIZES = [(1, 1), (1, 9), (2, 3), (7, 5), (12, 12), (13, 30)]


@pytest.mark.parametrize("levels", LEVELS, ids=str)
@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("bins", ["adaptive", "sppnet"])
def test_rectangular_levels_match_loop_reference(levels, mode, bins):
    params = dict(levels=levels, mode=mode, bins=bins)
    sess = session(op_model("spp", **params))
    rng = np.random.default_rng(0)
    for h, w in SIZES:
        x = rng.standard_normal((2, 3, h, w)).astype(np.float32)
        expected = naive_spp(x, levels, mode, bins)
        assert expected.shape == (2, 3 * sum(r * c for r, c in ((lv, lv) if isinstance(lv, int) else lv for lv in levels)))
        t = PF.spp(torch.from_numpy(x), **params).numpy()
        assert_close(t, expected, what=f"torch {params} {h}x{w}", floor=0.01)
        assert_close(sess.run(None, {"x": x})[0], expected, what=f"ONNX {params} {h}x{w}", floor=0.01)


@pytest.mark.parametrize("levels", LEVELS, ids=str)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_rectangular_levels_backward_and_valid(levels, mode):
    params = dict(levels=levels, mode=mode)
    bwd = session(op_backward_model("spp", **params))
    with_valid = session(op_model("spp", inputs=("x", "valid"), **params))
    rng = np.random.default_rng(1)
    for h, w in SIZES[2:]:
        x = rng.standard_normal((2, 2, h, w)).astype(np.float32)
        xt = torch.tensor(x, requires_grad=True)
        y = PF.spp(xt, **params)
        g = torch.from_numpy(rng.standard_normal(tuple(y.shape)).astype(np.float32))
        y.backward(g)
        assert_close(bwd.run(None, {"x": x, "grad_y": g.numpy()})[0], xt.grad.numpy(), what=f"backward {h}x{w}")
        valid = np.array([[h, w], [max(1, h - 2), max(1, w // 2)]], np.int64)
        x[1, :, valid[1, 0]:, :] = np.nan  # padding: ignored
        x[1, :, :, valid[1, 1]:] = np.inf
        expected = np.concatenate([naive_spp(x[i : i + 1, :, :a, :b], levels, mode) for i, (a, b) in enumerate(valid)])
        assert_close(with_valid.run(None, {"x": x, "valid": valid})[0], expected, what=f"valid {h}x{w}", floor=0.01)


def test_tf_addons_bins_where_they_agree():
    """TF-Addons' ``SpatialPyramidPooling2D`` (copied: crop ``H mod r`` rows and ``W mod c``
    columns, split equally, max per part, ``[N, r*c, C]`` per level, channels last): the same
    values as PyTorch's adaptive bins when H and W are divisible by the bins (the layout
    differs: ours is C-major per level); it drops the remainder where they are not."""

    def tfa_spp(x_nhwc, bins):
        out = []
        n, h, w, ch = x_nhwc.shape
        for r, c in bins:
            crop = x_nhwc[:, : h - h % r, : w - w % c, :]
            rows = np.split(crop, r, axis=1)
            cells = [np.split(part, c, axis=2) for part in rows]
            pooled = np.stack([cell.max(axis=(1, 2)) for row in cells for cell in row], axis=1)  # [N, r*c, C]
            out.append(pooled)
        return np.concatenate(out, axis=1)

    bins = [(1, 1), (2, 3), (4, 2)]
    x = np.random.default_rng(2).standard_normal((2, 5, 8, 12)).astype(np.float32)
    ours = PF.spp(torch.from_numpy(x), levels=bins).numpy()
    tfa = tfa_spp(x.transpose(0, 2, 3, 1), bins)
    offset, parts = 0, []
    for r, c in bins:  # ours: [N, C * r * c] C-major; theirs: [N, r * c, C]
        parts.append(ours[:, offset : offset + 5 * r * c].reshape(2, 5, r * c).transpose(0, 2, 1))
        offset += 5 * r * c
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), tfa)
    odd = np.random.default_rng(3).standard_normal((1, 2, 9, 13)).astype(np.float32)
    odd[0, :, 8, :] = 100.0  # the last row, which TF-Addons crops for r = 2
    y = PF.spp(torch.from_numpy(odd), levels=[(2, 3)]).numpy()
    assert (y.reshape(1, 2, 2, 3)[:, :, 1, :] == 100.0).all()
    assert (tfa_spp(odd.transpose(0, 2, 3, 1), [(2, 3)]) < 100.0).all()


def test_params_and_features():
    spec = poolops.get_op("spp")
    p = spec.parse({"levels": [1, [2, 3], (4, 1)]})
    assert p.levels == (1, (2, 3), (4, 1)) and p.grid == ((1, 1), (2, 3), (4, 1))
    assert spec.parse(p.model_dump()) == p  # JSON round trip
    assert spec.shape(p, (2, 7, 5, 5)) == (2, 7 * (1 + 6 + 4))
    assert PN.SpatialPyramidPool(levels=[(2, 3), 2]).out_features(8) == 8 * 10
    for bad in ([[0, 2]], [[2, 3, 4]], [[2]], [0], []):
        with pytest.raises(ParamError) as err:
            spec.parse({"levels": bad})
        assert err.value.param == "levels"
    assert spec.cost({"levels": [(1, 100000)]}, {"x": (1, 1, 1, 1)}).output_elements == 100000
    assert math.prod(PF.spp(torch.ones(1, 1, 1, 1), levels=[(3, 5)]).shape) == 15
