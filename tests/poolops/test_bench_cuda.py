"""``poolops bench ops --device cuda``'s code, run on the CPU (the GPU numbers come from
a device machine: docs/gpu.md)."""

from __future__ import annotations

import onnxruntime as ort
import pytest
import torch

from poolops import bench_cuda


def test_cpu_smoke_run_times_every_variant_and_checks_answers(capsys):
    rows = bench_cuda.run_cuda_ops(ops=["max", "spp", "roi_align"], quick=True, device="cpu", markdown=True)
    assert {r["name"] for r in rows} == {"max", "spp", "roi_align"}
    assert any(r["op"] == "max (+indices)" for r in rows)
    for r in rows:
        assert r["error"] is None, r
        assert "MISMATCH" not in r["note"], r
        assert r["ort_ms"] > 0 and r["torch_ms"] > 0 and r["pct_copy"] > 0
    out = capsys.readouterr().out
    assert "| max (+indices) | 1x8x32x32 |" in out and "device-to-device copy" in out


@pytest.mark.skipif(torch.cuda.is_available() and "CUDAExecutionProvider" in ort.get_available_providers(),
                    reason="CUDA present")
def test_cuda_run_without_cuda_says_what_is_missing():
    with pytest.raises(RuntimeError, match="CUDA"):
        bench_cuda.run_cuda_ops(ops=["max"], quick=True)


def test_median_times_bursts_each_function():
    calls = {"a": 0}

    def a():
        calls["a"] += 1

    t_a, t_none = bench_cuda.median_times([a, None], lambda: None, repeat=3)
    assert t_a > 0 and t_none != t_none  # NaN for a missing function
    assert calls["a"] > 6  # warm-up, sizing burst and three timed bursts
