"""Benchmarks: stock PyTorch vs ONNX Runtime (CPU) for every registered op.

``poolops bench ops`` (:func:`run_ops`) times, for each op and benchmark variant, the
torch function a user would call (``spec.torch_fn``: the stock ``F.*`` call where
PyTorch has one, as ``spec.torch_stock`` names, else poolops' own torch function) and
the op's ONNX graph in ONNX Runtime (CPU, spinning off, as the service runs it).

Each side is timed in blocks of its own, the other's threads idle (a pause before every
block): a memory copy of the input's bytes is timed at the start of each block, so the
bandwidth it is compared with saw the same machine state. Rows report min and median
per side. The machine's load before the run and the CPU time other processes used
during it are recorded, and the table is flagged when the machine was busy; a
self-check re-times a sample of rows alone and flags the table if a ratio moved by
more than 20%. Torch is imported inside :func:`run_ops` only.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from poolops.inputs import example_inputs, kind
from poolops.registry import OpSpec, get_op, list_ops
from poolops.report import command_line, print_report

SIZES = ((1, 64, 256, 256), (1, 64, 512, 512))
SPP_EXTRA = (1, 256, 60, 80)
QUICK_SIZES = ((1, 8, 32, 32),)
QUICK_SPP_EXTRA = (1, 16, 15, 20)
DEFAULT_REPEAT = 20
QUICK_REPEAT = 4
ROUNDS = 4  # blocks per side, alternating torch and ONNX Runtime
IDLE_S = 0.05  # pause before a block: the other side's threads go idle
BUSY_OTHERS = 0.25  # other processes' CPU (cores, mean over the run) above which the table is flagged
SELF_CHECK_OPS = ("max", "avg", "spp", "adaptive_max")
SELF_CHECK_TOLERANCE = 0.2
SPP_TARGET = 1.25  # spp time <= 1.25x one ReduceMax over its input
ADAPTIVE_MAX_TARGET = 0.8  # adaptive_max time <= 0.8x torch's
BANDWIDTH_TARGET = 70.0  # % of memcpy at the largest shape
BANDWIDTH_OPS = ("max", "avg", "global_max", "global_avg", "strip", "se")

COLUMNS = ("op", "shape", "torch", "torch ms (min/med)", "ORT ms (min/med)", "ORT/torch", "GB/s", "% of memcpy", "note")


def _warm_up(fn: Callable[[], Any], warmup: int = 2, warmup_s: float = 0.05) -> None:
    """At least ``warmup`` runs and ``warmup_s`` seconds of runs (at most 100)."""
    t0 = time.perf_counter()
    for i in range(100):
        if i >= warmup and time.perf_counter() - t0 >= warmup_s:
            break
        fn()


class Copy:
    """``np.copyto`` of a float32 buffer: the memory bandwidth a block is compared with."""

    def __init__(self, nbytes: int):
        self.src = np.random.default_rng(1).standard_normal(max(1, nbytes // 4), dtype=np.float32)
        self.dst = np.empty_like(self.src)

    def gbps(self) -> float:
        """Read + write GB/s of the fastest of three copies."""
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            np.copyto(self.dst, self.src)
            best = min(best, time.perf_counter() - t0)
        return 2 * self.src.nbytes / best / 1e9


@dataclass
class Timing:
    times: list = field(default_factory=list)
    copy_gbps: list = field(default_factory=list)

    @property
    def min(self) -> float:
        return min(self.times) if self.times else float("nan")

    @property
    def median(self) -> float:
        return statistics.median(self.times) if self.times else float("nan")


def block_times(fns: Sequence[Callable[[], Any] | None], repeat: int, copy: Copy | None = None,
                rounds: int = ROUNDS, idle_s: float = IDLE_S) -> list[Timing | None]:
    """Each ``fn`` timed alone: ``rounds`` blocks per function, in turn, each after a
    pause of ``idle_s`` (so that the previous block's threads are idle) and starting
    with a memory copy; ``repeat`` timed runs in all per function, after warm-up."""
    live = [(i, f) for i, f in enumerate(fns) if f is not None]
    for _, f in live:
        _warm_up(f)
    out: list[Timing | None] = [Timing() if f is not None else None for f in fns]
    per_block = [max(1, repeat // rounds + (1 if r < repeat % rounds else 0)) for r in range(rounds)]
    for r in range(rounds):
        for i, f in live:
            time.sleep(idle_s)
            if copy is not None:
                out[i].copy_gbps.append(copy.gbps())
            for _ in range(per_block[r]):
                t0 = time.perf_counter()
                f()
                out[i].times.append(time.perf_counter() - t0)
    return out


def _cpu_snapshot() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its children)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    hz = os.sysconf("SC_CLK_TCK")
    busy = (sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)) / hz  # minus idle and iowait
    t = os.times()
    return busy, t.user + t.system + t.children_user + t.children_system


def others_cpu(before, after, wall_s: float) -> float | None:
    """Cores' worth of CPU that other processes used between two snapshots."""
    if before is None or after is None or wall_s <= 0:
        return None
    return max(0.0, (after[0] - before[0]) - (after[1] - before[1])) / wall_s


def _session(name: str, params: dict[str, Any], outputs: tuple[str, ...], threads: int, inputs=None):
    import onnxruntime as ort

    from poolops.onnx import op_model

    model = op_model(name, outputs=outputs, inputs=inputs, **params)
    return ort.InferenceSession(model.SerializeToString(), _session_options(threads), providers=["CPUExecutionProvider"])


def _session_options(threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.log_severity_level = 3
    # as the service runs it: idle threads sleep instead of spinning on the cores torch needs next
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def _reduce_max_session(threads: int):
    """One full read of x: ``ReduceMax`` over (H, W), what spp is measured against."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    axes = helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])
    graph = helper.make_graph([helper.make_node("ReduceMax", ["x", "axes"], ["y"], keepdims=1)], "reduce_max",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "C", "H", "W"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "C", 1, 1])], [axes])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), _session_options(threads), providers=["CPUExecutionProvider"])


def _fmt(v: float | None, digits: int = 3) -> str:
    return "" if v is None else f"{v:.{digits}f}"


def _row_cells(r: dict[str, Any]) -> list[str]:
    shape = "x".join(map(str, r["shape"]))
    torch_ms = f"{_fmt(r.get('torch_min_ms'))} / {_fmt(r.get('torch_ms'))}" if r.get("torch_ms") is not None else ""
    if r.get("error"):
        return [r["op"], shape, r.get("torch_call", ""), torch_ms, "", "", "", "", r["error"]]
    return [
        r["op"], shape, r.get("torch_call", ""), torch_ms,
        f"{_fmt(r['ort_min_ms'])} / {_fmt(r['ort_ms'])}",
        _fmt(r["ratio"], 2), _fmt(r["gbps"], 1), _fmt(r["pct_memcpy"], 0), r.get("note", ""),
    ]


def run_ops(
    ops: Sequence[str] | None = None,
    quick: bool = False,
    repeat: int | None = None,
    markdown: bool = False,
    self_check: bool = True,
) -> list[dict[str, Any]]:
    """Benchmark ops (default: all registered) and print a table; returns the rows.

    Each row: ``op`` (label), ``name``, ``shape``, ``inputs`` (the names fed),
    ``torch_call`` (what the torch side ran), ``torch_ms`` / ``torch_min_ms``,
    ``ort_ms`` / ``ort_min_ms`` (medians and minima), ``ratio`` (ORT/torch medians, <= 1
    means ORT is faster), ``bytes`` (inputs read + outputs written), ``gbps``,
    ``memcpy_gbps`` (median of the copies timed in ORT's blocks), ``pct_memcpy``,
    ``note`` and ``error`` (None or a message).
    """
    import onnxruntime as ort
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
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

    jobs: list[tuple[OpSpec, tuple[int, ...]]] = [(s, tuple(sz)) for sz in sizes for s in runnable]
    jobs += [(s, tuple(spp_extra)) for s in runnable if s.name == "spp"]

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows: list[dict[str, Any]] = []
    sessions: dict[str, Any] = {}
    t0, before = time.perf_counter(), _cpu_snapshot()
    try:
        for spec, shape in jobs:
            rows.extend(_bench_op(spec, shape, n_rep, threads, sessions, torch))
        checks = _self_check(rows, jobs, n_rep, threads, torch) if self_check else []
    finally:
        torch.set_num_threads(old_threads)
    others = others_cpu(before, _cpu_snapshot(), time.perf_counter() - t0)

    # judged on what other processes used during the run; the load average (which still
    # holds the minute before it) only when /proc is not there
    busy = others > BUSY_OTHERS if others is not None else (load is not None and load > BUSY_OTHERS + 1.0)
    moved = [c for c in checks if c["moved"] > SELF_CHECK_TOLERANCE]
    header = [
        f"machine: {cpu_model()}, {threads} CPUs ({platform.system()} {platform.machine()}); "
        f"1-min load average {'n/a' if load is None else f'{load:.2f}'} before the run, other processes used "
        f"{'n/a' if others is None else f'{others:.2f}'} cores on average during it"
        + (" - BUSY: do not judge targets from this run" if busy else ""),
        f"torch {torch.__version__} ({threads} threads, eager, inference_mode); onnxruntime {ort.__version__} "
        f"(CPUExecutionProvider, intra_op_num_threads={threads}, spinning off)",
        f"each side timed alone: {ROUNDS} blocks per side in turn, each after a {IDLE_S * 1e3:.0f} ms pause and "
        f"starting with a memcpy of the input's bytes (np.copyto, read + write, fastest of 3); {n_rep} timed runs "
        "per side after warm-up; min / median shown, ratios and bandwidth from medians",
        "torch: the stock call a user makes (column 'torch'), or poolops' torch function where PyTorch has none; "
        "it computes what the row's ONNX graph computes (indices only in '+indices' rows)",
        "GB/s = (bytes of all inputs + outputs) / ORT median; % of memcpy against the memcpy timed in ORT's blocks",
    ]
    if checks:
        header.append(
            "self-check (rows re-timed alone after the table): "
            + ", ".join(f"{c['op']} {'x'.join(map(str, c['shape']))} {c['before']:.2f} -> {c['after']:.2f}" for c in checks)
            + (f" - UNSTABLE: {len(moved)} ratio(s) moved by more than {SELF_CHECK_TOLERANCE:.0%}" if moved else " (stable)"))
    _print(rows, header, notes, markdown)
    return rows


def _self_check(rows, jobs, n_rep, threads, torch) -> list[dict[str, Any]]:
    """Re-time the default rows of :data:`SELF_CHECK_OPS` at the largest shape alone."""
    largest = max((shape for _, shape in jobs), key=lambda s: int(np.prod(s)), default=None)
    out = []
    for spec, shape in jobs:
        if spec.name not in SELF_CHECK_OPS or shape != largest:
            continue
        before = next((r for r in rows if r["op"] == spec.name and r["shape"] == shape and r.get("ratio")), None)
        if before is None:
            continue
        again = next((r for r in _bench_op(spec, shape, n_rep, threads, {}, torch, only_default=True)
                      if r.get("ratio")), None)
        if again is not None:
            out.append({"op": spec.name, "shape": shape, "before": before["ratio"], "after": again["ratio"],
                        "moved": abs(again["ratio"] / before["ratio"] - 1)})
    return out


def _bench_op(spec, shape, n_rep, threads, sessions, torch, only_default: bool = False) -> list[dict[str, Any]]:
    """Rows for one op at one shape: the torch side and each ONNX variant, each timed in
    blocks of its own (:func:`block_times`)."""
    shape = op_shape(spec, shape)
    base = {"name": spec.name, "shape": shape, "torch_call": spec.torch_stock or "poolops torch function"}
    try:
        x = make_input(spec, shape)
        extra = make_extra_inputs(spec, shape)
        tensors = {"x": torch.from_numpy(x), **{n: torch.from_numpy(v) for n, v in extra.items()}}

        def torch_runner(params, outputs, inputs):
            p = spec.parse(params)
            args = [tensors[n] if n in inputs else None for n in spec.all_inputs]

            def run():
                with torch.inference_mode():
                    return spec.torch_fn(p, *args, outputs=outputs)

            return run

        rows_spec = variants(spec)[:1] if only_default else variants(spec)
        # torch computes what each ONNX variant computes (parameters, outputs and inputs; NaN
        # handling is torch's own)
        torch_keys = list(dict.fromkeys((_torch_params(params), outputs, inputs)
                                        for _, params, outputs, inputs in rows_spec))
        torch_fns = {key: torch_runner(json.loads(key[0]), *key[1:]) for key in torch_keys}
        refs = {key: fn()[0].numpy() for key, fn in torch_fns.items()}
    except Exception as e:  # noqa: BLE001 - one op must not stop the benchmark
        return [{**base, "op": spec.name, "torch_ms": None, "ort_ms": None, "ratio": None,
                 "gbps": None, "pct_memcpy": None, "note": "", "error": _short_error(e)}]

    copy = Copy(x.nbytes)
    rows, ort_fns = [], []
    for label, params, outputs, inputs in rows_spec:
        torch_key = (_torch_params(params), outputs, inputs)
        row = {**base, "op": label, "inputs": inputs, "torch_ms": None, "ort_ms": None, "ratio": None,
               "gbps": None, "pct_memcpy": None, "note": "", "error": None, "torch_key": torch_key}
        if json.loads(torch_key[0]):  # a bench_params row: poolops' torch function with those parameters
            row["torch_call"] = "poolops torch function"
        rows.append(row)
        feed = {"x": x, **{n: extra[n] for n in inputs[1:]}}
        ref = refs[torch_key]
        try:
            key = f"{label}@{threads}"
            if key not in sessions:
                sessions[key] = _session(spec.name, params, outputs, threads, inputs)
            sess = sessions[key]
            res = sess.run(None, feed)
            row["bytes"] = sum(v.nbytes for v in feed.values()) + sum(r.nbytes for r in res)
            if res[0].shape != ref.shape or not np.allclose(res[0], ref, rtol=1e-4, atol=1e-5, equal_nan=True):
                diff = np.abs(res[0] - ref).max() if res[0].shape == ref.shape else f"shape {res[0].shape}"
                row["note"] = f"MISMATCH vs torch ({diff})"
            ort_fns.append(lambda sess=sess, feed=feed: sess.run(None, feed))
        except Exception as e:  # noqa: BLE001
            row["error"] = _short_error(e)
            ort_fns.append(None)
    extra_fns = []
    if spec.name == "spp" and not only_default:  # the spp target's yardstick: one ReduceMax over x
        rmax = _reduce_max_session(threads)
        extra_fns.append(lambda: rmax.run(None, {"x": x}))
    try:
        timings = block_times([torch_fns[k] for k in torch_keys] + ort_fns + extra_fns, n_rep, copy,
                              rounds=min(ROUNDS, n_rep), idle_s=IDLE_S if n_rep > QUICK_REPEAT else 0.002)
    except Exception as e:  # noqa: BLE001
        for row in rows:
            row["error"] = row["error"] or _short_error(e)
        return rows
    torch_t = dict(zip(torch_keys, timings[: len(torch_keys)]))
    ort_t = timings[len(torch_keys): len(torch_keys) + len(ort_fns)]
    reduce_max = timings[-1] if extra_fns else None
    for row, t in zip(rows, ort_t):
        tt = torch_t[row.pop("torch_key")]
        row.update(torch_ms=tt.median * 1e3, torch_min_ms=tt.min * 1e3)
        if row["error"] or t is None:
            continue
        copy_gbps = statistics.median(t.copy_gbps) if t.copy_gbps else float("nan")
        gbps = row["bytes"] / t.median / 1e9
        row.update(ort_ms=t.median * 1e3, ort_min_ms=t.min * 1e3, ratio=t.median / tt.median, gbps=gbps,
                   memcpy_gbps=copy_gbps, pct_memcpy=gbps / copy_gbps * 100)
        if reduce_max is not None and row["op"] == "spp":
            row["reduce_max_ms"] = reduce_max.median * 1e3
            row["note"] = "; ".join(n for n in (row["note"], f"{t.median / reduce_max.median:.2f}x a ReduceMax over x") if n)
    return rows


def target_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The op-speed targets, judged on this run's rows."""
    ok = [r for r in rows if not r.get("error") and r.get("ratio") is not None]
    slower = [f"{r['op']} {'x'.join(map(str, r['shape']))} ({r['ratio']:.2f})" for r in ok if r["ratio"] > 1]
    lines = ["ORT at or below torch for every row (+indices included): "
             + ("met" if not slower else f"missed for {len(slower)} of {len(ok)}: " + ", ".join(slower))]
    plain = [r for r in ok if r["op"] == r["name"]]
    large = max((r["shape"] for r in plain if len(r["shape"]) == 4), key=lambda s: s[1] * s[2] * s[3], default=None)
    bw = [r for r in plain if r["name"] in BANDWIDTH_OPS and r["shape"] == large]
    if bw:
        lines.append(
            f">= {BANDWIDTH_TARGET:.0f}% of memcpy bandwidth at {'x'.join(map(str, large))}: "
            + ", ".join(f"{r['name']} {r['pct_memcpy']:.0f}% ({'met' if r['pct_memcpy'] >= BANDWIDTH_TARGET else 'missed'})"
                        for r in bw))
    spp = [r for r in plain if r["name"] == "spp" and r.get("reduce_max_ms")]
    if spp:
        lines.append(
            f"spp at <= {SPP_TARGET}x one ReduceMax over its input: "
            + ", ".join(f"{'x'.join(map(str, r['shape']))} {r['ort_ms'] / r['reduce_max_ms']:.2f}x "
                        f"({'met' if r['ort_ms'] / r['reduce_max_ms'] <= SPP_TARGET else 'missed'})" for r in spp))
    am = [r for r in plain if r["name"] == "adaptive_max"]
    if am:
        lines.append(
            f"adaptive_max at <= {ADAPTIVE_MAX_TARGET}x torch: "
            + ", ".join(f"{'x'.join(map(str, r['shape']))} {r['ratio']:.2f} "
                        f"({'met' if r['ratio'] <= ADAPTIVE_MAX_TARGET else 'missed'})" for r in am))
    return lines


def _print(rows, header, notes, markdown: bool) -> None:
    print_report(title="poolops bench ops: stock torch vs ONNX Runtime (CPU)" if not markdown else "poolops bench ops",
                 made_by=command_line("poolops bench ops --markdown > docs/benchmarks.md"), columns=COLUMNS,
                 right=set(range(3, 8)), rows=[(_row_cells(r), bool(r.get("error"))) for r in rows],
                 header=[*header, *notes], targets=target_lines(rows), markdown=markdown, width=180)


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


def op_shape(spec: OpSpec, shape: Sequence[int]) -> tuple[int, ...]:
    """A benchmark size ``(N, C, H, W)`` as the op's x, with as many elements: ``(N, C, H*W)``
    for a 1-D op, ``(N, C, 16, H/4, W/4)`` for a 3-D one."""
    n, c, h, w = shape
    if spec.spatial_dims == 1:
        return (n, c, h * w)
    if spec.spatial_dims == 3:
        return (n, c, 16, max(h // 4, 1), max(w // 4, 1))
    return tuple(shape)


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
    ``+indices``, ``propagate_nan=False``, ``+<input>`` for each optional input, and one
    row per parameter set of ``spec.bench_params``."""
    req = spec.inputs
    out: list[tuple[str, dict[str, Any], tuple[str, ...], tuple[str, ...]]] = [(spec.name, {}, ("y",), req)]
    if "indices" in spec.outputs:
        out.append((f"{spec.name} (+indices)", {}, ("y", "indices"), req))
    if "propagate_nan" in spec.params.model_fields:
        out.append((f"{spec.name} (propagate_nan=False)", {"propagate_nan": False}, ("y",), req))
    for name in _optional_with_examples(spec):
        out.append((f"{spec.name} (+{name})", {}, ("y",), req + (name,)))
    for label, params in spec.bench_params:
        out.append((f"{spec.name} ({label})", dict(params), ("y",), req))
    return out


def _torch_params(params: dict[str, Any]) -> str:
    """The parameters the torch side of a row runs with, as a key: the row's, less
    ``propagate_nan`` (which only the ONNX graphs have; torch always propagates)."""
    return json.dumps({k: v for k, v in params.items() if k != "propagate_nan"}, sort_keys=True)


def make_extra_inputs(spec: OpSpec, shape: Sequence[int]) -> dict[str, np.ndarray]:
    """Every input but ``x`` that a row of the op feeds, from the kinds' example generators."""
    names = spec.inputs[1:] + _optional_with_examples(spec)
    return example_inputs(names, tuple(shape), np.random.default_rng(1), p=spec.parse({}))


def _short_error(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return f"error: {type(e).__name__}: {msg[:160]}"
