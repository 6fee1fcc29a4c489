"""PNG charts of the benchmarks' rows, written next to their Markdown pages.

matplotlib (the ``models`` extra) is imported when a chart is drawn, never at import:
the serving process does not need it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path


def bar_chart(
    path: str | Path,
    title: str,
    labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    ylabel: str,
    log: bool = False,
    note: str = "",
) -> Path:
    """Grouped horizontal bars: one group per label, one bar per series (None: no bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    n, k = len(labels), max(1, len(series))
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.32 * n * k))
    y = np.arange(n)
    h = 0.8 / k
    for i, (name, vals) in enumerate(series.items()):
        v = np.array([np.nan if x is None else float(x) for x in vals])
        ax.barh(y + (i - (k - 1) / 2) * h, v, height=h, label=name)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(ylabel)
    if log:
        ax.set_xscale("log")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="0.35")
    fig.tight_layout(rect=(0, 0.02 if note else 0, 1, 1))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def bench_ops_chart(rows: Sequence[Mapping], path: str | Path, note: str = "") -> Path:
    """``poolops bench ops`` rows: median ms of stock torch and ONNX Runtime per op and size."""
    ok = [r for r in rows if not r.get("error")]
    labels = [f"{r['op']} {'x'.join(map(str, r['shape']))}" if r.get("shape") else str(r["op"]) for r in ok]
    return bar_chart(
        path, "poolops bench ops: median time per call (lower is faster)", labels,
        {"torch (CPU)": [r.get("torch_ms") for r in ok], "ONNX Runtime (CPU)": [r.get("ort_ms") for r in ok]},
        "ms (log scale)", log=True, note=note,
    )


def bench_serve_chart(rows: Sequence[Mapping], path: str | Path, note: str = "") -> Path:
    """``poolops bench serve`` rows: p50 and p99 latency per setup and concurrency."""
    ok = [r for r in rows if r.get("n")]
    labels = [f"{r['setup']} @ {r['concurrency']}" for r in ok]
    return bar_chart(
        path, "poolops bench serve: latency per request (lower is better)", labels,
        {"p50": [r.get("p50") for r in ok], "p99": [r.get("p99") for r in ok]}, "ms", note=note,
    )
