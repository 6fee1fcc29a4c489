"""The accuracy-by-size evaluation of ``poolops experiments`` (issue 11): its bucket generator
keeps to its ranges, and the same seed gives the same data and the same accuracy."""

import numpy as np
import pytest

from poolops_models import experiments as ex
from poolops_models.data import digits, layout


@pytest.mark.parametrize("bucket", ex.BUCKETS)
def test_bucket_sizes_respect_their_ranges(bucket):
    sizes = digits.bucket_sizes(bucket, 200, seed=3, max_aspect=4.0, max_side=512)
    assert len(sizes) == 200
    for h, w in sizes:
        assert bucket[0] <= min(h, w) <= bucket[1]
        assert 16 <= min(h, w) and max(h, w) <= 512
        assert max(h, w) / min(h, w) <= 4.0
    assert any(h > w for h, w in sizes) and any(w > h for h, w in sizes)  # both orientations
    assert sizes == digits.bucket_sizes(bucket, 200, seed=3, max_aspect=4.0, max_side=512)
    assert sizes != digits.bucket_sizes(bucket, 200, seed=4, max_aspect=4.0, max_side=512)


def test_bucket_sizes_reach_wide_aspects():
    aspects = [max(h, w) / min(h, w) for h, w in digits.bucket_sizes((32, 63), 400, seed=0)]
    assert max(aspects) > 3.5 and min(aspects) < 1.2


def test_digit_bucket_objects_and_samples():
    sizes = digits.bucket_sizes((16, 31), 12, seed=5)
    test_ids = digits.splits()["test"]
    sets = digits.eval_set(test_ids, sizes=sizes, n_per_size=4, seed=5, scale_range=ex.DIGIT_SCALE,
                           return_info=True)
    assert [x.shape[2:] for x, _, _ in sets] == [tuple(s) for s in sizes]
    for x, y, info in sets:
        m = min(x.shape[2:])
        h = info["boxes"][:, 2]
        assert np.all(h >= max(4, round(0.2 * m))) and np.all(h <= m)  # 0.2..1.0 of the shorter side
        assert 0.0 <= x.min() and x.max() <= 1.0
    # the held-out samples only: the experiments' digit buckets are eval_set over the test ids
    got = list(ex.bucket_set("digits", (32, 63), seed=7, n_sizes=3, n_per_size=4))
    want = digits.eval_set(test_ids, sizes=digits.bucket_sizes((32, 63), 3, seed=7), n_per_size=4, seed=7,
                           scale_range=ex.DIGIT_SCALE)
    for (xa, ya), (xb, yb) in zip(got, want, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_bucket_set_is_deterministic_and_held_out_differs_from_validation():
    for task in ("digits", "layout"):
        s = ex.bucket_set(task, (16, 31), seed=11, n_sizes=3, n_per_size=2)
        a, b = list(s), list(s)  # rendered again on each pass, the same
        c = list(ex.bucket_set(task, (16, 31), seed=11, n_sizes=3, n_per_size=2))
        assert len(a) == 3
        for (xa, _), (xc, _) in zip(a, c):
            np.testing.assert_array_equal(xa, xc)
        for (xa, ya), (xb, yb) in zip(a, b):
            np.testing.assert_array_equal(xa, xb)
            np.testing.assert_array_equal(ya, yb)
            assert 16 <= min(xa.shape[2:]) <= 31 and max(xa.shape[2:]) <= 4 * min(xa.shape[2:])
    held = list(ex.bucket_set("digits", (32, 63), seed=11, n_sizes=2, n_per_size=3))
    val = list(ex.bucket_set("digits", (32, 63), seed=11, n_sizes=2, n_per_size=3, part="validation"))
    assert [x.shape for x, _ in held] == [x.shape for x, _ in val]
    assert any(not np.array_equal(h[0], v[0]) for h, v in zip(held, val))
    with pytest.raises(ValueError, match="part"):
        ex.bucket_set("digits", (32, 63), part="train")


def test_validation_and_test_buckets_draw_on_disjoint_digit_samples(monkeypatch):
    """Issue 11: choices are made on validation samples only, the test buckets use the test samples."""
    parts = digits.splits()
    drawn = {}

    def spy(ids, *args, **kwargs):
        drawn.setdefault(kwargs.get("seed"), set()).update(np.asarray(ids).tolist())
        return iter(())

    monkeypatch.setattr(digits, "eval_batches", spy)
    list(ex.bucket_set("digits", (16, 31), seed=1, part="test"))
    list(ex.bucket_set("digits", (16, 31), seed=2, part="validation"))
    assert drawn[1] == set(parts["test"].tolist()) and drawn[2] == set(parts["validation"].tolist())


def test_wilson_interval():
    lo, hi = ex.wilson(0.97, 1000)
    assert 0.957 < lo < 0.96 and 0.978 < hi < 0.98
    assert ex.wilson(1.0, 1000)[1] == 1.0 and ex.wilson(1.0, 1000)[0] > 0.99


def test_layout_bucket_sets_use_the_generator():
    sizes = digits.bucket_sizes((16, 31), 4, seed=2)
    sets = layout.eval_set(sizes=sizes, n_per_size=4, seed=2, side_range=ex.LAYOUT_SIDE)
    assert [x.shape[2:] for x, _ in sets] == [tuple(s) for s in sizes]
    assert all(set(y.tolist()) == {0, 1, 2, 3} for _, y in sets)  # labels balanced per batch


def test_bucket_evaluation_same_seed_same_accuracy(tmp_path):
    buckets = ((16, 31), (64, 80))
    r1, s1, c1 = ex.bucket_results(buckets=buckets, seed=5, n_sizes=2, n_per_size=3)
    r2, s2, c2 = ex.bucket_results(buckets=buckets, seed=5, n_sizes=2, n_per_size=3)
    assert r1 == r2 and s1 == s2
    assert c1.keys() == c2.keys() and all((a == b).all() for k in c1 for a, b in zip(c1[k], c2[k]))
    # the per-image record is what each accuracy averages: 2 sizes x 3 images per bucket
    assert all([len(m) for m in c1[(t, n, lab)]] == [6, 6] and [float(m.mean()) for m in c1[(t, n, lab)]] == a
               for t, n, lab, a in r1)
    names = [(t, m) for t, m, _, _ in r1]
    assert ("digits", "digits-spp") in names and ("layout", "layout-gap") in names
    assert all(len(a) == 2 and all(0.0 <= v <= 1.0 for v in a) for _, _, _, a in r1)
    labels = {lab for _, m, lab, _ in r1 if m == "digits-spp"}
    assert "none" in labels and any("candidate" in lab for lab in labels)
    md = ex.buckets_markdown(r1, s1, buckets=buckets, n_sizes=2, n_per_size=3, plot=tmp_path / "p.png", correct=c1)
    assert md.startswith(ex.BUCKETS_HEADING) and "| 16-31 | 64-80 |" in md
    assert "McNemar" in md and "significantly below a baseline" in md
    png = ex.plot_buckets(r1, tmp_path / "p.png", buckets=buckets)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_splice_replaces_only_the_bucket_section(tmp_path):
    f = tmp_path / "e.md"
    f.write_text("# t\n\n## Heads\n\n| a |\n")
    ex.splice(f, ex.BUCKETS_HEADING + "\n\nold\n")
    ex.splice(f, ex.BUCKETS_HEADING + "\n\nnew\n")
    assert f.read_text() == "# t\n\n## Heads\n\n| a |\n\n" + ex.BUCKETS_HEADING + "\n\nnew\n"


def test_mcnemar_p_is_the_exact_binomial_test_on_disagreements():
    import numpy as np

    same = np.array([True, False, True])
    assert ex.mcnemar_p(same, same) == 1.0  # no disagreement: no evidence
    # 10 images where only A is right, 0 where only B is: p = 2 * 0.5**10
    a = np.array([True] * 10 + [True] * 5)
    b = np.array([False] * 10 + [True] * 5)
    assert abs(ex.mcnemar_p(a, b) - 2 * 0.5 ** 10) < 1e-12 and ex.mcnemar_p(a, b) == ex.mcnemar_p(b, a)
    # 6 against 4 disagreements: far from significant (scipy.stats.binomtest(4, 10).pvalue = 0.754)
    a = np.array([True] * 6 + [False] * 4)
    assert abs(ex.mcnemar_p(a, ~a) - 0.75390625) < 1e-9
