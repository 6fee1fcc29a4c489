"""Smoke test of ``poolops bench ops``: every op (extra inputs from the input kinds'
examples) gets rows with sane numbers."""

from __future__ import annotations

import math

from poolops import get_op, list_ops
from poolops.inputs import kind


def test_run_ops_quick_has_a_row_per_op():
    from poolops.bench import run_ops

    rows = run_ops(quick=True)
    by_name = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    for name in list_ops():
        assert name in by_name, f"no row for {name}"
        for r in by_name[name]:
            assert r["error"] is None, f"{r['op']}: {r['error']}"
            assert "MISMATCH" not in r["note"], r
            assert 0 < r["torch_min_ms"] <= r["torch_ms"] and 0 < r["ort_min_ms"] <= r["ort_ms"], r
            assert math.isfinite(r["ratio"]) and r["ratio"] > 0, r
            assert r["gbps"] > 0 and math.isfinite(r["pct_memcpy"]), r
        # the plain forward (y only) row is there, labelled with the op's name
        assert any(r["op"] == name for r in by_name[name])
    assert any(r["op"] == "max (+indices)" for r in rows)
    assert any(r["op"] == "max (propagate_nan=False)" for r in rows)
    # a row with each optional input that has an example generator, fed from it
    for name in list_ops():
        for opt in (o for o in get_op(name).optional_inputs if kind(o).example is not None):
            assert any(r["op"] == f"{name} (+{opt})" and opt in r["inputs"] for r in by_name[name]), (name, opt)
    # a row for each parameter set the op asks to be timed (checked against torch with them)
    for name in list_ops():
        for label, _ in get_op(name).bench_params:
            assert any(r["op"] == f"{name} ({label})" for r in by_name[name]), (name, label)
    assert any(r["op"] == "se (pooled)" for r in rows) and any(r["op"] == "gem (+gem_p)" for r in rows)


def test_cli_bench_ops_quick(capsys):
    from poolops_service.cli import main

    assert main(["bench", "ops", "--quick", "--op", "max"]) == 0
    out = capsys.readouterr().out
    assert "max" in out and "memcpy" in out


def test_cli_bench_ops_markdown(capsys):
    from poolops_service.cli import main

    assert main(["bench", "ops", "--quick", "--op", "avg", "--markdown", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert "| op | shape |" in out and "| avg |" in out


def test_spp_extra_size_and_error_rows():
    import dataclasses

    import torch

    from poolops import bench

    rows = bench.run_ops(ops=["spp"], quick=True, repeat=1, markdown=True)
    assert any(r["shape"] == bench.QUICK_SPP_EXTRA for r in rows)

    def broken(p, x, outputs=("y",)):
        raise RuntimeError("boom")

    spec = dataclasses.replace(get_op("avg"), torch_fn=broken)
    out = bench._bench_op(spec, (1, 2, 8, 8), 1, 1, {}, torch)
    assert len(out) == 1 and out[0]["error"].startswith("error: RuntimeError: boom")


def test_stock_calls_are_named_and_each_side_is_timed_in_its_own_blocks(capsys):
    from poolops import bench

    rows = bench.run_ops(ops=["max", "adaptive_max", "gem"], quick=True, markdown=True)
    calls = {r["name"]: r["torch_call"] for r in rows if r["op"] == r["name"]}  # the plain rows
    assert calls["max"] == "F.max_pool2d" and calls["adaptive_max"] == "F.adaptive_max_pool2d"
    same = next(r for r in rows if r["op"].startswith("max (tf_same"))
    assert same["torch_call"] == "poolops torch function"  # with the row's parameters
    assert calls["gem"] == "poolops torch function"  # PyTorch has no GeM
    out = capsys.readouterr().out
    assert "other processes used" in out and "self-check" in out and "each side timed alone" in out


def test_block_times_alternate_functions_and_time_a_copy_per_block():
    from poolops import bench

    order = []
    timings = bench.block_times([lambda: order.append("a"), None, lambda: order.append("b")], repeat=4,
                                copy=bench.Copy(1 << 16), rounds=2)
    assert timings[1] is None
    assert len(timings[0].times) == 4 and len(timings[2].times) == 4
    assert len(timings[0].copy_gbps) == 2 and all(g > 0 for g in timings[0].copy_gbps)
    timed = order[-8:]  # after warm-up: a block of a, then a block of b, twice
    assert timed == ["a", "a", "b", "b", "a", "a", "b", "b"]


def test_others_cpu_counts_only_other_processes():
    from poolops import bench

    assert bench.others_cpu((10.0, 1.0), (13.0, 2.0), 2.0) == 1.0  # 3 busy s, 1 of them ours, over 2 s
    assert bench.others_cpu(None, (1.0, 1.0), 1.0) is None
