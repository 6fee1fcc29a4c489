"""The SPP experiment datasets: digits at random placement/size and the two-shape layout task."""

from __future__ import annotations

import numpy as np
import pytest

from poolops_models.data import DATASETS, digits, get_dataset, layout

ndimage = pytest.importorskip("scipy.ndimage")


def _same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.shape == xb.shape
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def _check_batch(x, y, n, n_classes, size_range=None, size=None):
    assert x.dtype == np.float32 and y.dtype == np.int64
    assert x.ndim == 4 and x.shape[:2] == (n, 1) and y.shape == (n,)
    assert x.min() >= 0.0 and x.max() <= 1.0
    assert y.min() >= 0 and y.max() < n_classes
    H, W = x.shape[2:]
    if size is not None:
        assert (H, W) == tuple(size)
    if size_range is not None:
        (h0, h1), (w0, w1) = size_range
        assert h0 <= H <= h1 and w0 <= W <= w1
    # every sample has some ink
    assert (x.reshape(n, -1).max(axis=1) > 0.3).all()


# ----------------------------------------------------------------------------- registry
def test_registry():
    assert set(DATASETS) == {"digits", "layout"}
    assert get_dataset("digits") is digits and get_dataset("layout") is layout
    with pytest.raises(ValueError, match="digits, layout"):
        get_dataset("mnist")
    assert digits.LABELS == [str(d) for d in range(10)]
    assert layout.LABELS == ["left", "right", "above", "below"]


# ----------------------------------------------------------------------------- digits
def test_resize_properties():
    img = np.random.default_rng(0).random((8, 8)).astype(np.float32)
    np.testing.assert_allclose(digits.resize(img, 8, 8), img, atol=1e-6)
    for h, w in [(4, 5), (13, 29), (50, 7)]:
        r = digits.resize(np.full((8, 8), 0.7, np.float32), h, w)
        assert r.shape == (h, w)
        np.testing.assert_allclose(r, 0.7, atol=1e-6)
        r = digits.resize(img, h, w)
        assert r.min() >= img.min() - 1e-6 and r.max() <= img.max() + 1e-6


def test_split_disjoint_stratified_deterministic():
    tr, te = digits.split(seed=0)
    assert tr.dtype == np.int64 and te.dtype == np.int64
    assert len(np.intersect1d(tr, te)) == 0
    np.testing.assert_array_equal(np.union1d(tr, te), np.arange(1797))
    y = digits.labels()
    for c in range(10):
        n_c = (y == c).sum()
        assert (y[te] == c).sum() == round(n_c * 0.25)
    tr2, te2 = digits.split(seed=0)
    np.testing.assert_array_equal(te, te2)
    np.testing.assert_array_equal(tr, tr2)
    _, te3 = digits.split(seed=1)
    assert not np.array_equal(te, te3)
    _, te4 = digits.split(seed=0, test_fraction=0.5)
    assert abs(len(te4) - 1797 / 2) <= 10


def test_three_way_split_keeps_the_test_samples_apart():
    parts = digits.splits(seed=0)
    tr, va, te = parts["train"], parts["validation"], parts["test"]
    np.testing.assert_array_equal(te, digits.split(seed=0)[1])  # the same test samples as before
    assert not set(tr) & set(va) and not set(tr) & set(te) and not set(va) & set(te)
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, va, te])), np.arange(1797))
    y = digits.labels()
    for c in range(10):
        assert (y[va] == c).sum() == round((y == c).sum() * digits.VALIDATION_FRACTION)
    np.testing.assert_array_equal(va, digits.splits(seed=0)["validation"])


def test_eval_batches_are_eval_set():
    ids = digits.splits()["validation"][:30]
    a = digits.eval_set(ids, sizes=[(20, 33), (40, 17)], n_per_size=7, seed=4)
    b = list(digits.eval_batches(ids, sizes=[(20, 33), (40, 17)], n_per_size=7, seed=4))
    assert len(a) == len(b) == 2
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("size", [(24, 64), (64, 24), (37, 37), (8, 5)])
def test_digits_render(size):
    ids = np.arange(40)
    x, y, info = digits.render(ids, size, np.random.default_rng(3), return_info=True)
    _check_batch(x, y, 40, 10, size=size)
    np.testing.assert_array_equal(y, digits.labels()[ids])
    H, W = size
    for i, (t, l, h, w) in enumerate(info["boxes"]):
        assert 4 <= h <= H and 4 <= w <= W and 0 <= t <= H - h and 0 <= l <= W - w
        outside = x[i, 0].copy()
        outside[t:t + h, l:l + w] = 0
        assert not outside.any()
    if min(size) >= 24:
        m = min(size)
        assert (info["boxes"][:, 2] >= int(0.4 * m) - 1).all()
        assert (info["boxes"][:, 2] <= round(0.9 * m) + 1).all()
    x2, y2 = digits.render(ids, size, np.random.default_rng(3))
    np.testing.assert_array_equal(x, x2)
    x3, _ = digits.render(ids, size, np.random.default_rng(4))
    assert not np.array_equal(x, x3)
    xn, _ = digits.render(ids, size, np.random.default_rng(3), noise=0.05)
    assert xn.min() >= 0 and xn.max() <= 1
    np.testing.assert_array_equal(xn, digits.render(ids, size, np.random.default_rng(3), noise=0.05)[0])


def test_digits_batches():
    tr, _ = digits.split()
    sr = ((24, 40), (30, 64))
    bs = list(digits.batches(tr, 12, 16, size_range=sr, seed=5))
    assert len(bs) == 12
    for x, y in bs:
        _check_batch(x, y, 16, 10, size_range=sr)
    assert len({x.shape for x, _ in bs}) > 3  # sizes vary between batches
    _same(bs, list(digits.batches(tr, 12, 16, size_range=sr, seed=5)))
    assert not np.array_equal(bs[0][1], next(digits.batches(tr, 1, 16, size_range=sr, seed=6))[1])
    for x, y in digits.batches(tr, 3, 8, fixed_size=(32, 48)):
        _check_batch(x, y, 8, 10, size=(32, 48))
    # samples come only from the given ids (all of class 3 here), epoch-wise
    threes = tr[digits.labels()[tr] == 3][:10]
    for x, y in digits.batches(threes, 4, 7, seed=1):
        assert (y == 3).all()


def test_digits_eval_set():
    _, te = digits.split()
    ev = digits.eval_set(te, digits.UNSEEN_SIZES, n_sizes=3, batch_size=200, seed=0)
    sizes = [x.shape[2:] for x, _ in ev]
    assert len(set(sizes)) == 3
    for x, y in ev:
        _check_batch(x, y, len(y), 10, size_range=digits.UNSEEN_SIZES)
    # every test id exactly once per size
    ys = np.concatenate([y for _, y in ev])
    np.testing.assert_array_equal(np.bincount(ys), 3 * np.bincount(digits.labels()[te]))
    _same(ev, digits.eval_set(te, digits.UNSEEN_SIZES, n_sizes=3, batch_size=200, seed=0))
    small = digits.eval_set(te, digits.SEEN_SIZES, n_sizes=2, n_per_size=50, seed=0)
    assert sum(len(y) for _, y in small) == 100


# ----------------------------------------------------------------------------- layout
def _relation_from_pixels(img: np.ndarray) -> int:
    """Find the two shapes as connected components, tell the square (A) from the cross (B) by how
    full its bounding box is, and read the relation of their centroids."""
    lab, n = ndimage.label(img > 0)
    assert n == 2, "expected exactly two separate shapes"
    comps = []
    for k in (1, 2):
        rr, cc = np.nonzero(lab == k)
        fill = len(rr) / ((np.ptp(rr) + 1) * (np.ptp(cc) + 1))
        comps.append((fill, rr.mean(), cc.mean(), img[rr, cc]))
    comps.sort(key=lambda c: -c[0])
    (fa, ra, ca, va), (fb, rb, cb, vb) = comps
    assert fa == 1.0 and fb < 1.0  # a full square and a cross
    for v in (va, vb):  # flat intensity in [0.6, 1]
        assert np.ptp(v) == 0 and 0.6 <= v[0] <= 1.0
    dy, dx = ra - rb, ca - cb
    if abs(dx) > abs(dy):
        return 0 if dx < 0 else 1
    return 2 if dy < 0 else 3


@pytest.mark.parametrize("size", [(24, 24), (24, 64), (64, 24), (47, 31), (128, 100)])
def test_layout_labels_match_positions(size):
    x, y, info = layout.render(120, size, np.random.default_rng(7), return_info=True)
    _check_batch(x, y, 120, 4, size=size)
    m = min(size)
    for i in range(120):
        assert _relation_from_pixels(x[i, 0]) == y[i]
        (ta, la, sa, _), (tb, lb, sb, _) = info["boxes"][i]
        assert max(5, round(0.15 * m)) <= sa <= max(5, round(0.3 * m))
        (ra, ca), (rb, cb) = info["centers"][i]
        dy, dx = ra - rb, ca - cb
        dom, other = (abs(dx), abs(dy)) if y[i] < 2 else (abs(dy), abs(dx))
        assert dom >= 1.2 * other + 0.1 * m  # unambiguous
        # nothing drawn outside the two boxes; the boxes do not overlap
        rest = x[i, 0].copy()
        rest[ta:ta + sa, la:la + sa] = 0
        rest[tb:tb + sb, lb:lb + sb] = 0
        assert not rest.any()
        assert ta + sa <= tb or tb + sb <= ta or la + sa <= lb or lb + sb <= la


def test_layout_determinism_and_streams():
    a = list(layout.batches(5, 16, seed=3))
    _same(a, list(layout.batches(5, 16, seed=3)))
    b = list(layout.batches(5, 16, seed=4))
    assert any(xa.shape != xb.shape or not np.array_equal(xa, xb) for (xa, _), (xb, _) in zip(a, b))
    for x, y in a:
        _check_batch(x, y, 16, 4, size_range=layout.SEEN_SIZES)
    for x, y in layout.batches(2, 8, fixed_size=(30, 50)):
        _check_batch(x, y, 8, 4, size=(30, 50))
    ev = layout.eval_set(layout.SEEN_SIZES, n_sizes=2, n_per_size=20, batch_size=16, seed=3)
    _same(ev, layout.eval_set(layout.SEEN_SIZES, n_sizes=2, n_per_size=20, batch_size=16, seed=3))
    assert [len(y) for _, y in ev] == [16, 4, 16, 4]
    # training and evaluation streams differ for the same seed
    tr_x = next(layout.batches(1, 16, fixed_size=(32, 32), seed=0))[0]
    ev_x = layout.eval_set(((32, 32), (32, 32)), n_sizes=1, n_per_size=16, seed=0)[0][0]
    assert not np.array_equal(tr_x, ev_x)
    with pytest.raises(ValueError):
        layout.render(2, (12, 40), np.random.default_rng(0))


def _features(batches):
    """Per-sample global statistics a GAP-like model could use, and a spatial one (left-right
    ink balance, what a 1x2 pyramid bin sees) as a positive control."""
    f, ys = [], []
    for x, y in batches:
        n, _, H, W = x.shape
        flat = x.reshape(n, -1)
        half = W // 2
        lr = x[:, 0, :, :half].sum(axis=(1, 2)) - x[:, 0, :, W - half:].sum(axis=(1, 2))
        f.append(np.stack([flat.mean(1), (flat > 0).mean(1), flat.sum(1), flat.max(1),
                           np.full(n, H), np.full(n, W), np.full(n, H / W), lr], axis=1))
        ys.append(y)
    return np.concatenate(f), np.concatenate(ys)


def _best_threshold(f, t):
    """Best in-sample rule ``t == (f > thr)`` or ``t == (f <= thr)``: (accuracy, thr, sign)."""
    order = np.argsort(f, kind="stable")
    fs, ts = f[order], t[order].astype(np.int64)
    # predict 1 above the cut: correct = (#0 at or below) + (#1 above)
    zeros_le = np.concatenate([[0], np.cumsum(1 - ts)])
    ones_gt = ts.sum() - np.concatenate([[0], np.cumsum(ts)])
    acc = (zeros_le + ones_gt) / len(ts)
    k = int(np.argmax(np.maximum(acc, 1 - acc)))
    thr = fs[k - 1] if k > 0 else -np.inf
    return max(acc[k], 1 - acc[k]), thr, 1 if acc[k] >= 0.5 else -1


def _heldout(ftr, ttr, fte, tte):
    _, thr, sign = _best_threshold(ftr, ttr)
    pred = (fte > thr) if sign == 1 else (fte <= thr)
    return float((pred == tte).mean())


def test_layout_balanced_and_global_statistics_are_blind():
    ftr, ytr = _features(layout.batches(40, 64, seed=0))
    fte, yte = _features(layout.eval_set(layout.SEEN_SIZES, n_sizes=4, n_per_size=512, seed=0))
    counts = np.bincount(ytr, minlength=4)
    assert (counts == 640).all()  # exactly balanced per batch
    assert (np.bincount(yte, minlength=4) == 512).all()
    # binary questions with balanced classes: left vs right, above vs below, horizontal vs vertical
    tasks = [(lambda y: y < 2, lambda y: y == 0), (lambda y: y >= 2, lambda y: y == 2),
             (lambda y: np.ones_like(y, bool), lambda y: y < 2)]
    for sel, target in tasks:
        str_, ste = sel(ytr), sel(yte)
        for j in range(7):  # the global statistics
            in_sample, _, _ = _best_threshold(ftr[str_, j], target(ytr[str_]))
            held = _heldout(ftr[str_, j], target(ytr[str_]), fte[ste, j], target(yte[ste]))
            assert in_sample < 0.57, (j, in_sample)
            assert held < 0.56, (j, held)
    # positive control: left-right ink balance does tell left from right
    s_tr, s_te = ytr < 2, yte < 2
    held = _heldout(ftr[s_tr, 7], ytr[s_tr] == 0, fte[s_te, 7], yte[s_te] == 0)
    assert held > 0.65
