"""``poolops bench batch``: real servers at two batch limits, a table and a recommendation."""

from __future__ import annotations

import pytest

from poolops_service import bench_batch as bb
from poolops_service.bench_wrk import wrk_path


def test_recommend_takes_the_smallest_limit_near_the_best():
    rows = [{"limit": 1, "throughput": 100.0}, {"limit": 4, "throughput": 150.0},
            {"limit": 8, "throughput": 152.0}, {"limit": 16, "throughput": 140.0}]
    assert bb.recommend(rows) == 4  # 150 is within 3% of 152
    assert bb.recommend(rows, tolerance=0.0) == 8
    assert bb.recommend([{"limit": 1, "throughput": 90.0}, {"limit": 2, "throughput": 60.0}]) == 1
    with pytest.raises(ValueError):
        bb.recommend([])


@pytest.mark.parametrize("client", ["httpx"] + (["wrk"] if wrk_path() else []))
def test_two_limits_measured_on_real_servers(capsys, client):
    res = bb.run_batch(model="digits-gap", size=48, limits=[2, 1], concurrency=8, seconds=1, rounds=1,
                       markdown=True, client=client)
    out = capsys.readouterr().out
    assert [r["limit"] for r in res["rows"]] == [1, 2]
    for r in res["rows"]:
        assert r["errors"] == 0 and r["throughput"] > 0 and r["server_cpu"] > 0, r
        assert 1 <= r["batch"] <= r["limit"], r  # the limit held
    assert res["rows"][0]["batch"] == 1
    assert res["recommended"] in (1, 2)
    assert "# poolops bench batch" in out and f"recommended batch limit for digits-gap: {res['recommended']}" in out
    assert "POOLOPS_MODEL_BATCH_MAX_SIZE='{\"digits-gap\": " in out


def test_bad_arguments_are_refused_before_any_server_starts():
    with pytest.raises(ValueError, match="batch limits"):
        bb.run_batch(limits=[0, 2])
    with pytest.raises(ValueError, match="unknown model"):
        bb.run_batch(model="nope")
