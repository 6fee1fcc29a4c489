"""Smoke test of ``poolops bench serve --quick``: every row and the five verdict lines
with numbers, with wrk (when installed) and with httpx as the client (no timing is
compared with the targets here: the verdicts are the output)."""

from __future__ import annotations

import math
import re

import pytest

from poolops_service import bench_serve as bs
from poolops_service.bench_wrk import wrk_path

LEVELS = (1, 4)
NUMBER = r"\d+(?:\.\d+)?"


@pytest.mark.parametrize("client", [
    pytest.param("wrk", marks=pytest.mark.skipif(wrk_path() is None, reason="wrk is not installed (.ci/run installs it)")),
    "httpx"])
def test_quick_markdown_has_every_row_and_the_verdicts(capsys, client):
    res = bs.run_serve(quick=True, requests=6, concurrency=LEVELS, markdown=True, client=client)
    out = capsys.readouterr().out

    rows = res["rows"]
    assert [(r["setup"], r["concurrency"]) for r in rows] == [(bs.RAW, 1)] + [
        (s, c) for s in bs.SETUPS for c in LEVELS
    ]
    for r in rows:
        assert r["errors"] == 0 and r["n"] > 0, r
        assert r["throughput"] > 0 and 0 < r["p50"] <= r["p99"] and math.isfinite(r["p99"]), r
    on4 = next(r for r in rows if r["setup"] == bs.ON and r["concurrency"] == 4)
    assert on4["batch"] is not None and on4["batch"] >= 1

    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| setup | concurrency | requests | throughput req/s | p50 ms | p99 ms")
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table[1:]]
    assert [(c[0], c[1]) for c in cells] == [(bs.RAW, "1")] + [(s, str(c)) for s in bs.SETUPS for c in LEVELS]
    for c in cells:
        assert all(re.fullmatch(NUMBER, v) for v in c[3:6]), c  # throughput, p50, p99

    assert "digits-spp" in out and "CPUs" in out and "128x128 PNG" in out
    # raw session.run gets what the card's size policy makes of the upload
    from poolops_models import size_policy
    from poolops_models.cards import load_registry
    from poolops_models.recipes import zoo_dir

    card = load_registry(zoo_dir())["digits-spp"].card
    h, w = size_policy.target_size(128, 128, card.size_policy, card.input)
    assert f"makes it {h}x{w}" in out and f"on the {h}x{w} tensor the server runs" in out
    assert ("client: wrk" in out) == (client == "wrk")
    served = [r for r in rows if r["setup"] != bs.RAW]
    assert all(r["client_cpu"] is not None and 0 <= r["client_share"] < 1 for r in served), served
    if client == "wrk":  # the point of wrk: a client that costs little next to the server
        assert all(r["client_cpu"] < r["server_cpu"] for r in served if r["setup"] != bs.NAIVE), served
    images_per_s, batch = res["raw_best"]
    assert images_per_s > 0 and batch in bs.RAW_BATCHES
    verdicts = [line for line in out.splitlines() if line.startswith("- ") and "target" in line]
    assert len(verdicts) == 5, verdicts
    heads = ("- HTTP overhead: server (batching off, concurrency 1) p50 ", "- Server CPU per request: ",
             "- Saturation: best server throughput ", "- Batching never slower: on / off throughput ",
             "- Server vs naive at concurrency 4: ")
    for line, head in zip(verdicts, heads):
        assert line.startswith(head), line
        assert re.search(r"(MET|NOT MET)$", line), line
        assert len(re.findall(NUMBER, line)) >= 3, line
    assert res["verdicts"] == [v[2:] for v in verdicts]


def test_verdicts_from_rows():
    def row(setup, c, thr, p50):
        return {"setup": setup, "concurrency": c, "n": 10, "throughput": thr, "p50": p50, "p99": p50}

    rows = [row(bs.RAW, 1, 500, 1.0), row(bs.OFF, 1, 200, 1.8), row(bs.ON, 1, 210, 1.8),
            row(bs.OFF, 32, 400, 50), row(bs.ON, 32, 440, 40), row(bs.NAIVE, 32, 60, 90)]
    rows[0]["server_cpu"], rows[1]["server_cpu"] = 1.0, 1.1
    over, cpu, sat, batch, naive = bs.verdicts(rows, (1, 32), "digits-spp", raw_best=(500.0, 4))
    assert over.endswith("= 0.80 ms (target <= 1 ms): MET")
    assert cpu.endswith("= 1.10x (target <= 1.15x): MET")
    assert "440.0 req/s (server, batching on, concurrency 32)" in sat and sat.endswith("= 0.88 (target >= 0.85): MET")
    assert "1.05x at 1, 1.10x at 32" in batch and batch.endswith(": MET")
    assert naive.endswith("= 7.33x (target >= 2x): MET")
    # effnet's overhead target is 2 ms (JPEG decoding included)
    assert bs.verdicts(rows, (1, 32), "effnet-lite0-imagenet", (500.0, 4))[0].endswith("(target <= 2 ms): MET")
    rows[1]["p50"], rows[1]["server_cpu"] = 2.5, 1.3
    rows[2]["throughput"], rows[4]["throughput"] = 150, 100
    over, cpu, sat, batch, naive = bs.verdicts(rows, (1, 32), "digits-spp", raw_best=(500.0, 4))
    assert all(v.endswith("NOT MET") for v in (over, cpu, sat, batch, naive)), (over, cpu, sat, batch, naive)


def test_cli_parses_bench_serve():
    from poolops_service.cli import build_parser

    a = build_parser().parse_args(["bench", "serve", "--quick", "--concurrency", "1", "4", "--markdown"])
    assert (a.model, a.size, a.concurrency, a.quick, a.markdown) == ("digits-spp", 128, [1, 4], True, True)
    assert (a.client, a.format) == ("auto", None)
    a = build_parser().parse_args(["bench", "serve", "--client", "httpx", "--format", "jpeg"])
    assert (a.client, a.format, a.batch_max) == ("httpx", "jpeg", None)
    assert build_parser().parse_args(["bench", "serve", "--batch-max", "2"]).batch_max == 2


def test_batch_max_limits_batching_on_only(capsys, monkeypatch):
    """--batch-max sets the model's own limit for batching on; a limit in the environment
    reaches neither setup (off stays one image per batch)."""
    monkeypatch.setenv("POOLOPS_MODEL_BATCH_MAX_SIZE", '{"digits-spp": 16}')
    res = bs.run_serve(quick=True, requests=12, concurrency=[8], client="httpx", batch_max=2, markdown=True)
    rows = {r["setup"]: r for r in res["rows"]}
    assert 1 <= rows[bs.ON]["batch"] <= 2 and rows[bs.OFF]["batch"] == 1, rows
    assert "POOLOPS_MODEL_BATCH_MAX_SIZE='{\"digits-spp\": 2}'" in capsys.readouterr().out
    with pytest.raises(ValueError, match="batch_max"):
        bs.run_serve(batch_max=0)
