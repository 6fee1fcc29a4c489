"""The benchmarks' PNG charts: drawn from real rows, matplotlib imported only to draw."""

from __future__ import annotations

import subprocess
import sys

from PIL import Image

from poolops import bench
from poolops.charts import bench_ops_chart, bench_serve_chart


def test_importing_charts_needs_no_matplotlib():
    code = "import sys, poolops.charts; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_bench_ops_chart_from_a_real_run(tmp_path, capsys):
    rows = bench.run_ops(ops=["max"], quick=True, repeat=2, self_check=False)
    capsys.readouterr()
    out = bench_ops_chart(rows, tmp_path / "ops.png", note="poolops bench ops --op max --quick")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width >= 600 and im.height >= 100


def test_bench_serve_chart(tmp_path):
    rows = [{"setup": s, "concurrency": c, "n": 10, "p50": 1.0 + c, "p99": 2.0 + c}
            for s in ("session.run", "server, batching on") for c in (1, 8)]
    rows.append({"setup": "failed", "concurrency": 1, "n": 0, "p50": None, "p99": None})
    with Image.open(bench_serve_chart(rows, tmp_path / "serve.png")) as im:
        assert im.format == "PNG"
