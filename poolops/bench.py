"""Benchmarks: torch eager vs ONNX Runtime CPU for every registered op.

``poolops bench ops`` (:func:`run_ops`) times, for each op with default
parameters, the torch reference (``spec.torch_fn`` under ``inference_mode``) and
the op's ONNX graph in one ``onnxruntime.InferenceSession`` (CPU), side by side
in one run, and relates the ONNX Runtime time to a plain memory copy of the same
number of bytes measured in the same run. Inputs other than ``x`` (an op's required
ones, and each optional one in a row of its own) come from their input kinds'
example generators (:mod:`poolops.inputs`). Torch is imported inside
:func:`run_ops` only.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from typing import Any, Callable, Sequence

import numpy as np

from poolops.inputs import example_inputs, kind
from poolops.registry import OpSpec, get_op, list_ops

SIZES = ((1, 64, 256, 256), (1, 64, 512, 512))
SPP_EXTRA = (1, 256, 60, 80)
QUICK_SIZES = ((1, 8, 32, 32),)
QUICK_SPP_EXTRA = (1, 16, 15, 20)
DEFAULT_REPEAT = 10
QUICK_REPEAT = 2
SPP_TARGET = 0.8  # ORT time <= 0.8x torch's adaptive pooling

COLUMNS = ("op", "shape", "torch ms", "ORT ms", "ORT/torch", "GB/s", "% of memcpy", "note")


def _warm_up(fn: Callable[[], Any], warmup: int = 2, warmup_s: float = 0.05) -> None:
    """At least ``warmup`` runs and ``warmup_s`` seconds of runs (at most 100)."""
    t0 = time.perf_counter()
    for i in range(100):
        if i >= warmup and time.perf_counter() - t0 >= warmup_s:
            break
        fn()


def _median_times(fns: Sequence[Callable[[], Any] | None], repeat: int) -> list[float]:
    """Median seconds of each ``fn`` (None: NaN) over ``repeat`` rounds that run each once,
    after warm-up."""
    live = [(i, f) for i, f in enumerate(fns) if f is not None]
    for _, f in live:
        _warm_up(f)
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(max(1, repeat)):
        for i, f in live:
            t0 = time.perf_counter()
            f()
            times[i].append(time.perf_counter() - t0)
    return [statistics.median(t) if t else float("nan") for t in times]


def _median_time(fn: Callable[[], Any], repeat: int) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs after warm-up."""
    return _median_times([fn], repeat)[0]


def cpu_model() -> str:
    """The CPU's model name (``lscpu``, ``/proc/cpuinfo``, else ``platform.processor()``)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def memcpy_gbps(nbytes: int, repeat: int) -> float:
    """Bandwidth (GB/s, read + write) of ``np.copyto`` of a float32 buffer of ``nbytes``."""
    n = max(1, nbytes // 4)
    src = np.random.default_rng(1).standard_normal(n, dtype=np.float32)
    dst = np.empty_like(src)
    t = _median_time(lambda: np.copyto(dst, src), repeat)
    return 2 * src.nbytes / t / 1e9


def make_input(spec: OpSpec, shape: Sequence[int]) -> np.ndarray:
    """Realistic float32 input: standard normal, or its abs() for non-negative ops."""
    x = np.random.default_rng(0).standard_normal(tuple(shape), dtype=np.float32)
    if getattr(spec, "input_domain", "real") == "nonnegative" or spec.name == "stochastic":
        x = np.abs(x)
    return x


def _optional_with_examples(spec: OpSpec) -> tuple[str, ...]:
    return tuple(n for n in spec.optional_inputs if kind(n).example is not None)


def variants(spec: OpSpec) -> list[tuple[str, dict[str, Any], tuple[str, ...], tuple[str, ...]]]:
    """``(label, params, outputs, inputs)`` rows for an op: ``y`` only (required inputs),
    ``+indices``, ``propagate_nan=False``, and ``+<input>`` for each optional input."""
    req = spec.inputs
    out: list[tuple[str, dict[str, Any], tuple[str, ...], tuple[str, ...]]] = [(spec.name, {}, ("y",), req)]
    if "indices" in spec.outputs:
        out.append((f"{spec.name} (+indices)", {}, ("y", "indices"), req))
    if "propagate_nan" in spec.params.model_fields:
        out.append((f"{spec.name} (propagate_nan=False)", {"propagate_nan": False}, ("y",), req))
    for name in _optional_with_examples(spec):
        out.append((f"{spec.name} (+{name})", {}, ("y",), req + (name,)))
    return out


def make_extra_inputs(spec: OpSpec, shape: Sequence[int]) -> dict[str, np.ndarray]:
    """Every input but ``x`` that a row of the op feeds, from the kinds' example generators."""
    names = spec.inputs[1:] + _optional_with_examples(spec)
    return example_inputs(names, tuple(shape), np.random.default_rng(1), p=spec.parse({}))


def _session(name: str, params: dict[str, Any], outputs: tuple[str, ...], threads: int, inputs=None):
    import onnxruntime as ort

    from poolops.onnx import op_model

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    model = op_model(name, outputs=outputs, inputs=inputs, **params)
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def _short_error(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"error: {type(e).__name__}: {msg[:160]}"


def _fmt(v: float | None, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def _row_cells(r: dict[str, Any]) -> list[str]:
    shape = "x".join(map(str, r["shape"]))
    if r.get("error"):
        return [r["op"], shape, _fmt(r.get("torch_ms")), "", "", "", "", r["error"]]
    return [
        r["op"],
        shape,
        _fmt(r["torch_ms"]),
        _fmt(r["ort_ms"]),
        _fmt(r["ratio"], 2),
        _fmt(r["gbps"], 1),
        _fmt(r["pct_memcpy"], 0),
        r.get("note", ""),
    ]


def run_ops(
    ops: Sequence[str] | None = None,
    quick: bool = False,
    repeat: int | None = None,
    markdown: bool = False,
) -> list[dict[str, Any]]:
    """Benchmark ops (default: all registered) and print a table; returns the rows.

    Each row: ``op`` (label), ``name``, ``shape``, ``inputs`` (the names fed), ``torch_ms``, ``ort_ms``, ``ratio``
    (ORT/torch, <= 1 means ORT is faster), ``bytes`` (input read + outputs written),
    ``gbps``, ``memcpy_gbps``, ``pct_memcpy``, ``note`` and ``error`` (None or a message).
    """
    import onnxruntime as ort
    import torch

    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"
    names = list(ops) if ops else list_ops()
    specs = [get_op(n) for n in names]  # ValueError naming the known ops for a bad name
    sizes = QUICK_SIZES if quick else SIZES
    spp_extra = QUICK_SPP_EXTRA if quick else SPP_EXTRA
    threads = os.cpu_count() or 1

    n_rep = repeat if repeat is not None else (QUICK_REPEAT if quick else DEFAULT_REPEAT)

    notes: list[str] = []
    runnable = []
    for spec in specs:
        no_example = [n for n in spec.inputs[1:] if kind(n).example is None]
        if no_example:
            notes.append(f"skipped {spec.name}: input kinds {no_example} have no example generator")
        else:
            runnable.append(spec)

    # every (op, shape) pair, in the order of the table: sizes, then the spp extra size
    jobs: list[tuple[OpSpec, tuple[int, ...]]] = [(s, tuple(sz)) for sz in sizes for s in runnable]
    jobs += [(s, tuple(spp_extra)) for s in runnable if s.name == "spp"]

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    copy_bw: dict[tuple[int, ...], float] = {}
    sessions: dict[str, Any] = {}
    try:
        for spec, shape in jobs:
            if shape not in copy_bw:
                copy_bw[shape] = memcpy_gbps(int(np.prod(shape)) * 4, n_rep)
            rows.extend(_bench_op(spec, shape, n_rep, threads, copy_bw[shape], sessions, torch))
    finally:
        torch.set_num_threads(old_threads)

    header = [
        f"machine: {cpu_model()}, {threads} CPUs ({platform.system()} {platform.machine()}, "
        f"1-min load average {load} before the run); "
        f"torch {torch.__version__} ({threads} threads, eager, inference_mode); "
        f"onnxruntime {ort.__version__} (CPUExecutionProvider, intra_op_num_threads={threads}); "
        "both get the same cores",
        "memcpy (np.copyto, read + write): "
        + ", ".join(f"{'x'.join(map(str, s))}: {bw:.1f} GB/s" for s, bw in copy_bw.items()),
        f"median of {n_rep} timed runs, torch and the ORT variants of an op timed round-robin "
        "after >= 2 warm-up runs and 50 ms each; default parameters; "
        "input standard normal (abs() for non-negative ops); other inputs from the input kinds' examples",
        "ORT/torch <= 1 means ONNX Runtime is faster. GB/s = (bytes of all inputs + outputs) / ORT time. "
        "torch computes the same outputs as the ONNX graph of the row (indices only in '+indices' rows).",
    ]
    _print(rows, header, notes, markdown)
    return rows


def _bench_op(spec, shape, n_rep, threads, copy_gbps, sessions, torch) -> list[dict[str, Any]]:
    """Rows for one op at one shape: the torch reference and each ONNX variant, timed
    round-robin (one run of each per round), so that both see the same machine load."""
    base = {"name": spec.name, "shape": shape, "memcpy_gbps": copy_gbps}
    try:
        x = make_input(spec, shape)
        extra = make_extra_inputs(spec, shape)
        p = spec.parse({})
        tensors = {"x": torch.from_numpy(x), **{n: torch.from_numpy(v) for n, v in extra.items()}}

        def torch_runner(outputs, inputs):
            args = [tensors[n] if n in inputs else None for n in spec.all_inputs]

            def run():
                with torch.inference_mode():
                    return spec.torch_fn(p, *args, outputs=outputs)

            return run

        # torch computes exactly what the ONNX variant computes (indices or not, same inputs)
        torch_fns = {(outputs, inputs): torch_runner(outputs, inputs) for _, _, outputs, inputs in variants(spec)}
        refs = {key: fn()[0].numpy() for key, fn in torch_fns.items() if key[0] == ("y",)}
    except Exception as e:  # noqa: BLE001 - one op must not stop the benchmark
        return [{**base, "op": spec.name, "torch_ms": None, "ort_ms": None, "ratio": None,
                 "gbps": None, "pct_memcpy": None, "note": "", "error": _short_error(e)}]

    torch_keys = list(torch_fns)
    rows, fns, row_torch = [], [torch_fns[k] for k in torch_keys], []
    for label, params, outputs, inputs in variants(spec):
        row = {**base, "op": label, "inputs": inputs, "torch_ms": None, "ort_ms": None, "ratio": None,
               "gbps": None, "pct_memcpy": None, "note": "", "error": None}
        rows.append(row)
        row_torch.append(torch_keys.index((outputs, inputs)))
        feed = {"x": x, **{n: extra[n] for n in inputs[1:]}}
        ref = refs[(("y",), inputs)]
        try:
            if label not in sessions:
                sessions[label] = _session(spec.name, params, outputs, threads, inputs)
            sess = sessions[label]
            res = sess.run(None, feed)
            row["bytes"] = sum(v.nbytes for v in feed.values()) + sum(r.nbytes for r in res)
            notes = []
            if res[0].shape != ref.shape or not np.allclose(res[0], ref, rtol=1e-4, atol=1e-5, equal_nan=True):
                diff = np.abs(res[0] - ref).max() if res[0].shape == ref.shape else f"shape {res[0].shape}"
                notes.append(f"MISMATCH vs torch ({diff})")
            row["note"] = "; ".join(notes)
            fns.append(lambda sess=sess, feed=feed: sess.run(None, feed))
        except Exception as e:  # noqa: BLE001
            row["error"] = _short_error(e)
            fns.append(None)

    try:
        times = _median_times(fns, n_rep)
    except Exception as e:  # noqa: BLE001
        for row in rows:
            row["error"] = row["error"] or _short_error(e)
        return rows
    for row, t_index, ort_s in zip(rows, row_torch, times[len(torch_keys):]):
        torch_s = times[t_index]
        row["torch_ms"] = torch_s * 1e3
        if row["error"]:
            continue
        gbps = row["bytes"] / ort_s / 1e9
        row.update(ort_ms=ort_s * 1e3, ratio=ort_s / torch_s, gbps=gbps, pct_memcpy=gbps / copy_gbps * 100)
        if spec.name == "spp" and row["inputs"] == spec.inputs:  # not with valid: torch loops over samples
            ok = row["ratio"] <= SPP_TARGET
            target = f"SPP target ORT <= {SPP_TARGET}x torch: {'met' if ok else 'MISSED'}"
            row["note"] = "; ".join(n for n in (row["note"], target) if n)
    return rows


BANDWIDTH_TARGET = 60.0  # % of memcpy for max, avg and the global ops at the large size
BANDWIDTH_OPS = ("max", "avg", "global_avg", "global_max")


def target_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, judged on this run's rows (default variants)."""
    plain = [r for r in rows if r["op"] == r["name"] and not r.get("error")]
    slower = [f"{r['name']} {'x'.join(map(str, r['shape']))} ({r['ratio']:.2f})" for r in plain if r["ratio"] > 1]
    lines = [
        "ORT at or below torch eager for every op: "
        + ("met" if not slower else "missed for " + ", ".join(slower))
    ]
    large = max((r["shape"] for r in plain), key=lambda s: s[2] * s[3] * s[1], default=None)
    bw = [r for r in plain if r["name"] in BANDWIDTH_OPS and r["shape"] == large]
    if bw:
        lines.append(
            f">= {BANDWIDTH_TARGET:.0f}% of memcpy bandwidth at {'x'.join(map(str, large))}: "
            + ", ".join(
                f"{r['name']} {r['pct_memcpy']:.0f}% ({'met' if r['pct_memcpy'] >= BANDWIDTH_TARGET else 'missed'})"
                for r in bw
            )
        )
    spp = [r for r in plain if r["name"] == "spp"]
    if spp:
        lines.append(
            f"SPP at <= {SPP_TARGET}x torch's adaptive pooling: "
            + ", ".join(
                f"{'x'.join(map(str, r['shape']))} {r['ratio']:.2f} ({'met' if r['ratio'] <= SPP_TARGET else 'missed'})"
                for r in spp
            )
        )
    return lines


def _print(rows, header, notes, markdown: bool) -> None:
    targets = target_lines(rows)
    if markdown:
        print("# poolops bench ops\n")
        print("Made by `poolops bench ops --markdown > docs/benchmarks.md`.\n")
        for line in header:
            print(f"{line}  ")
        for n in notes:
            print(f"{n}  ")
        print()
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "|".join(["---"] * 2 + ["---:"] * 5 + ["---"]) + "|")
        for r in rows:
            print("| " + " | ".join(c.replace("|", "\\|") for c in _row_cells(r)) + " |")
        print("\nTargets, judged on this run:\n")
        for line in targets:
            print(f"- {line}")
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    for line in header + notes:
        console.print(line, markup=False, highlight=False)
    table = Table(title="poolops bench ops: torch eager vs ONNX Runtime (CPU)")
    for i, col in enumerate(COLUMNS):
        table.add_column(col, justify="right" if 2 <= i <= 6 else "left")
    for r in rows:
        table.add_row(*(escape(c) for c in _row_cells(r)), style="red" if r.get("error") else None)
    console.print(table)
    for line in targets:
        console.print(f"target: {line}", markup=False, highlight=False)
