"""``poolops bench batch``: which batch limit serves one model best on this machine.

Larger batches do not always pay on a CPU: on a 2-core machine effnet-lite0's activations
outgrow the cache at batch 8-16 and its two ONNX Runtime threads stall whenever the event
loop takes a core, so a batch costs more per image than one at a time. Triton leaves this
to a per-model ``max_batch_size`` measured with its perf_analyzer; here
``POOLOPS_MODEL_BATCH_MAX_SIZE`` holds it, and :func:`run_batch` measures it:

one server per candidate limit (``create_app`` under uvicorn in its own process, the model
alone, ``POOLOPS_BATCH_MAX_SIZE=<limit>``), all started before timing; then ``rounds``
interleaved rounds in which each server in turn is saturated by ``concurrency`` connections
(wrk when installed, else httpx) with one ``size`` x ``size`` image per request, the others
idle. Per limit: throughput (median of the rounds), server CPU per request, latency, and the
mean batch the server formed. The recommendation is the smallest limit whose throughput is
within ``tolerance`` of the best (a larger batch must earn its latency).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from poolops.report import command_line, print_report
from poolops_service import bench_serve as bs

DEFAULT_LIMITS = (1, 2, 4, 8, 16)
DEFAULT_CONCURRENCY = 32
DEFAULT_SECONDS = 3
DEFAULT_ROUNDS = 3
TOLERANCE = 0.03  # a larger limit is recommended only when it serves this much more
COLUMNS = ("batch limit", "throughput req/s (median of rounds)", "rounds req/s", "p50 ms", "p99 ms",
           "server CPU ms/req", "mean batch", "vs limit 1")


def recommend(rows: Sequence[dict[str, Any]], tolerance: float = TOLERANCE) -> int:
    """The smallest limit whose throughput is within ``tolerance`` of the best one's."""
    if not rows:
        raise ValueError("no rows to recommend from")
    best = max(r["throughput"] for r in rows)
    return min(r["limit"] for r in rows if r["throughput"] >= (1 - tolerance) * best)


def run_batch(model: str = bs.DEFAULT_MODEL, size: int = bs.DEFAULT_SIZE, limits: Sequence[int] = DEFAULT_LIMITS,
              concurrency: int = DEFAULT_CONCURRENCY, seconds: int = DEFAULT_SECONDS, rounds: int = DEFAULT_ROUNDS,
              markdown: bool = False, models_dir: Path | None = None, client: str = "auto",
              fmt: str | None = None) -> dict[str, Any]:
    """Measure and print the table; returns ``{"rows", "recommended", "header"}``. Each row:
    ``limit``, ``throughput`` (req/s, median of rounds), ``rounds`` (req/s each), ``p50``,
    ``p99`` (ms), ``server_cpu`` (ms per request), ``batch`` (mean images per batch),
    ``errors``."""
    from poolops.bench import cpu_model

    limits = sorted({int(k) for k in limits})
    if not limits or limits[0] < 1:
        raise ValueError(f"batch limits must be >= 1, got {list(limits)}")
    if concurrency < 1 or seconds < 1 or rounds < 1:
        raise ValueError("concurrency, seconds and rounds must be >= 1")
    use_wrk = bs.uses_wrk(client)
    entry = bs.servable_entry(model, models_dir)
    channels = entry.card.input.channels
    fmt = bs.upload_format(channels, fmt)
    image = bs.make_png((size, size), channels, fmt)
    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"
    # without wrk, a round is a bounded number of requests instead of a time
    n_httpx = max(4 * concurrency, 50)

    drop = ("POOLOPS_BATCH_MAX_SIZE", "POOLOPS_MODEL_BATCH_MAX_SIZE")
    base = {k: v for k, v in os.environ.items() if k not in drop}
    per_round: dict[int, list[float]] = {k: [] for k in limits}
    with tempfile.TemporaryDirectory(prefix="poolops-bench-batch-") as tmp:
        reg = Path(tmp) / "zoo"
        shutil.copytree(entry.path, reg / model)
        env = {**base, "POOLOPS_MODELS_DIR": str(reg), "POOLOPS_UI": "false", "POOLOPS_BUILD_MISSING": "false"}
        servers: dict[int, bs.Server] = {}
        try:
            for k in limits:
                servers[k] = bs._start(f"limit {k}", "poolops_service.app:create_app",
                                       {**env, "POOLOPS_BATCH_MAX_SIZE": str(k)}, "/readyz")
            bs._wait_ready(list(servers.values()), bs.START_TIMEOUT_S)
            http = {k: bs.Http(servers[k], f"/v1/models/{model}/predict", image, concurrency, model, fmt,
                               seconds if use_wrk else None) for k in limits}
            for h in http.values():
                h.warm_up()
            for r in range(rounds):
                order = limits[r % len(limits):] + limits[:r % len(limits)]  # a different first each round
                for k in order:
                    a = http[k].acc
                    done0 = sum(n for n, _, _ in a.wrk) if a.wrk else len(a.lat)
                    wall0 = a.wall
                    http[k].chunk(n_httpx, bs.LEVEL_TIMEOUT_S)
                    done = (sum(n for n, _, _ in a.wrk) if a.wrk else len(a.lat)) - done0
                    per_round[k].append(done / max(a.wall - wall0, 1e-9))
        finally:
            for s in servers.values():
                s.stop()

    rows = []
    for k in limits:
        row = http[k].acc.row(bs.LEVEL_TIMEOUT_S)
        rows.append({"limit": k, "throughput": statistics.median(per_round[k]), "rounds": per_round[k],
                     "p50": row["p50"], "p99": row["p99"], "server_cpu": row["server_cpu"], "batch": row["batch"],
                     "errors": row["errors"], "note": row["note"]})
    best = recommend(rows)
    header = [
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs ({load} 1-min load average before the run); client and "
        "servers share these cores",
        f"model: {model}; image {size}x{size} {fmt} of {len(image)} bytes per request, "
        f"POST /v1/models/{model}/predict",
        f"one server per limit (POOLOPS_BATCH_MAX_SIZE), all started first; {rounds} interleaved rounds, each "
        f"server saturated in turn by {concurrency} connections "
        + (f"(wrk, {seconds} s)" if use_wrk else f"(httpx, {n_httpx} requests)") + ", the others idle",
    ]
    notes = [
        "throughput: the median of the rounds' req/s; p50/p99: over all rounds; server CPU: the server "
        "process's CPU time per request; mean batch: images per model batch from /metrics",
        f"recommended: the smallest limit within {TOLERANCE:.0%} of the best throughput -> "
        f"POOLOPS_MODEL_BATCH_MAX_SIZE='{{\"{model}\": {best}}}'",
    ]
    first = rows[0]["throughput"] or float("nan")
    table = [[str(r["limit"]), f"{r['throughput']:.1f}", " / ".join(f"{v:.1f}" for v in r["rounds"]), f"{r['p50']:.2f}",
              f"{r['p99']:.2f}", "-" if r["server_cpu"] is None else f"{r['server_cpu']:.2f}",
              "-" if r["batch"] is None else f"{r['batch']:.2f}", f"{r['throughput'] / first:.2f}"]
             for r in rows]
    print_report(title="poolops bench batch", made_by=command_line("poolops bench batch --markdown"), columns=COLUMNS,
                 right=set(range(len(COLUMNS))), rows=[(cells, bool(r["errors"])) for cells, r in zip(table, rows)],
                 header=header, targets=[f"recommended batch limit for {model}: {best}"], notes=notes,
                 markdown=markdown)
    return {"rows": rows, "recommended": best, "header": header}
