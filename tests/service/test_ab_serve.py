"""``poolops bench ab``: two trees' servers measured side by side (a short run)."""

from __future__ import annotations

from poolops_service import ab_serve


def test_compares_this_tree_with_a_commit():
    res = ab_serve.compare("HEAD", blocks=2, per_block=10)
    assert set(res) == {"base HEAD", "this tree"}
    for latency_ms, cpu_ms in res.values():
        assert 0 < latency_ms < 1000 and 0 <= cpu_ms < 1000
