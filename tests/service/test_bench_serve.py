"""Smoke test of ``poolops bench serve --quick``: every row and the three verdict lines
with numbers (no timing is compared with the targets here: the verdicts are the output)."""

from __future__ import annotations

import math
import re

from poolops_service import bench_serve as bs

LEVELS = (1, 4)
NUMBER = r"\d+(?:\.\d+)?"


def test_quick_markdown_has_every_row_and_the_verdicts(capsys):
    res = bs.run_serve(quick=True, requests=6, concurrency=LEVELS, markdown=True)
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

    assert "digits-spp" in out and "CPUs" in out and "128x128" in out
    verdicts = [line for line in out.splitlines() if line.startswith("- ") and "target" in line]
    assert len(verdicts) == 3, verdicts
    heads = ("- HTTP overhead: server (batching off, concurrency 1) p50 ",
             "- Batching gain at concurrency 4 ", "- Server vs naive at concurrency 4 ")
    for line, head in zip(verdicts, heads):
        assert line.startswith(head), line
        assert re.search(r"(MET|NOT MET)$", line), line
        assert len(re.findall(NUMBER, line)) >= 4, line
    assert res["verdicts"] == [v[2:] for v in verdicts]


def test_verdicts_from_rows():
    def row(setup, c, thr, p50):
        return {"setup": setup, "concurrency": c, "n": 10, "throughput": thr, "p50": p50, "p99": p50}

    rows = [row(bs.RAW, 1, 500, 1.0), row(bs.OFF, 1, 200, 2.5), row(bs.OFF, 32, 100, 50),
            row(bs.ON, 32, 140, 40), row(bs.NAIVE, 32, 60, 90)]
    over, batch, naive = bs.verdicts(rows, (1, 8, 32))
    assert over.endswith("= 1.50 ms (target <= 2 ms): MET")
    assert "on 140.0 req/s / off 100.0 req/s = 1.40x" in batch and batch.endswith("MET") and "NOT" not in batch
    assert "(the highest level" not in batch
    assert naive.endswith("= 2.33x (target >= 2x): MET")
    rows[1]["p50"] = 3.5
    rows[3]["throughput"] = 110
    over, batch, naive = bs.verdicts(rows, (1, 8, 32))
    assert over.endswith("NOT MET") and batch.endswith("NOT MET") and naive.endswith("NOT MET")


def test_cli_parses_bench_serve():
    from poolops_service.cli import build_parser

    a = build_parser().parse_args(["bench", "serve", "--quick", "--concurrency", "1", "4", "--markdown"])
    assert (a.model, a.size, a.concurrency, a.quick, a.markdown) == ("digits-spp", 128, [1, 4], True, True)
