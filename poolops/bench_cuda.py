"""``poolops bench ops --device cuda``: ONNX Runtime's CUDA provider vs torch on CUDA.

For each op and each of its benchmark variants (:func:`poolops.bench.variants`) at each
shape, the torch reference (``spec.torch_fn`` on CUDA tensors under ``inference_mode``)
and the op's ONNX graph in a CUDA ``InferenceSession`` with IO binding (inputs already on
the GPU, outputs left there) are timed side by side, round-robin, and related to a
device-to-device copy of the op's input measured in the same run. Timing covers whole
calls: a call's kernels plus its launch and (ORT) binding overhead, each side
synchronised with the device after a burst of calls. Needs torch with CUDA and
onnxruntime-gpu; torch is imported inside :func:`run_cuda_ops` only.
"""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable, Sequence

import numpy as np

from poolops.bench import _short_error, make_extra_inputs, make_input, variants
from poolops.inputs import kind
from poolops.onnx.placement import data_nodes_on_cpu, placements
from poolops.registry import OpSpec, get_op, list_ops

SIZES = ((1, 64, 512, 512), (8, 256, 64, 64))
QUICK_SIZES = ((1, 8, 32, 32),)
DEFAULT_REPEAT = 15
BURST_S = 0.02  # each timed sample: calls in a burst of at least this long, then one sync
BANDWIDTH_TARGET = 70.0  # % of the device-to-device copy, memory-bound ops at 1x64x512x512
BANDWIDTH_OPS = ("max", "avg", "global_avg", "global_max", "lp", "adaptive_avg", "adaptive_max")
COLUMNS = ("op", "shape", "torch ms", "ORT ms", "ORT/torch", "GB/s", "% of copy", "note")


def _burst(fn: Callable[[], Any], sync: Callable[[], None], n: int) -> float:
    """Seconds per call of ``n`` back-to-back calls, synchronised once at the end."""
    sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    sync()
    return (time.perf_counter() - t0) / n


def median_times(fns: Sequence[Callable[[], Any] | None], sync: Callable[[], None], repeat: int) -> list[float]:
    """Median seconds per call of each ``fn`` (None: NaN): each gets a burst size that
    lasts about :data:`BURST_S`, then ``repeat`` rounds time one burst of each in turn."""
    sizes: list[int] = []
    for f in fns:
        if f is None:
            sizes.append(0)
            continue
        for _ in range(3):  # warm-up: first calls allocate and pick kernels
            f()
        one = _burst(f, sync, 3)
        sizes.append(max(1, min(1000, int(BURST_S / max(one, 1e-7)))))
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(max(1, repeat)):
        for i, (f, n) in enumerate(zip(fns, sizes)):
            if f is not None:
                times[i].append(_burst(f, sync, n))
    return [statistics.median(t) if t else float("nan") for t in times]


def copy_gbps(torch, nbytes: int, repeat: int, device: str = "cuda") -> float:
    """Device-to-device copy bandwidth (GB/s, bytes read + written) of ``nbytes``."""
    src = torch.randn(max(1, nbytes // 4), device=device)
    dst = torch.empty_like(src)
    (t,) = median_times([lambda: dst.copy_(src)], _sync(torch, device), repeat)
    return 2 * src.numel() * 4 / t / 1e9


def _sync(torch, device: str) -> Callable[[], None]:
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def _session(name: str, params: dict[str, Any], outputs, inputs, device: str):
    import onnxruntime as ort

    from poolops.onnx import op_model

    so = ort.SessionOptions()
    so.log_severity_level = 3
    model = op_model(name, outputs=outputs, inputs=inputs, **params)
    return model, ort.InferenceSession(model.SerializeToString(), so, providers=_providers(device))


def _providers(device: str) -> list[str]:
    # ORT puts shape arithmetic on the CPU by design: the CPU provider must be there
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if device == "cuda" else ["CPUExecutionProvider"]


def _bound_runner(sess, feed: dict[str, np.ndarray], outputs: Sequence[str], device: str):
    """``(run, outputs_as_numpy)``: inputs copied to the GPU once, outputs left there."""
    import onnxruntime as ort

    values = {n: ort.OrtValue.ortvalue_from_numpy(v, device, 0) for n, v in feed.items()}
    binding = sess.io_binding()
    for n, v in values.items():
        binding.bind_ortvalue_input(n, v)
    for n in outputs:
        binding.bind_output(n, device)

    def run():
        sess.run_with_iobinding(binding)

    def fetch() -> list[np.ndarray]:
        return [o.numpy() for o in binding.get_outputs()]

    return run, fetch, values


def _bench_op(spec: OpSpec, shape, repeat: int, copy_bw: float, torch, device: str) -> list[dict[str, Any]]:
    base = {"name": spec.name, "shape": shape, "copy_gbps": copy_bw}
    rows: list[dict[str, Any]] = []
    try:
        x = make_input(spec, shape)
        extra = make_extra_inputs(spec, shape)
        dev = {"x": torch.from_numpy(x).to(device), **{n: torch.from_numpy(v).to(device) for n, v in extra.items()}}
    except Exception as e:  # noqa: BLE001 - one op must not stop the benchmark
        return [{**base, "op": spec.name, "error": _short_error(e)}]

    fns: list[Callable[[], Any] | None] = []
    for label, params, outputs, inputs in variants(spec):
        row = {**base, "op": label, "inputs": inputs, "torch_ms": None, "ort_ms": None, "ratio": None,
               "gbps": None, "pct_copy": None, "note": "", "error": None}
        rows.append(row)
        q = spec.parse(params)
        args = [dev[n] if n in inputs else None for n in spec.all_inputs]

        def torch_run(q=q, args=args, outputs=outputs):
            with torch.inference_mode():
                return spec.torch_fn(q, *args, outputs=outputs)

        feed = {"x": x, **{n: extra[n] for n in inputs[1:]}}
        try:
            ref = torch_run()[0].float().cpu().numpy()
            model, sess = _session(spec.name, params, outputs, inputs, device)
            run, fetch, _ = _bound_runner(sess, feed, [o.name for o in sess.get_outputs()], device)
            run()
            res = fetch()
            row["bytes"] = sum(v.nbytes for v in feed.values()) + sum(r.nbytes for r in res)
            notes = []
            if res[0].shape != ref.shape or not np.allclose(res[0], ref, rtol=1e-4, atol=1e-5, equal_nan=True):
                diff = np.abs(res[0] - ref).max() if res[0].shape == ref.shape else f"shape {res[0].shape}"
                notes.append(f"MISMATCH vs torch ({diff})")
            if device == "cuda":
                _, found = placements(model, feed, _providers(device))
                bad = data_nodes_on_cpu(found)
                on_cpu = [f for f in found if f.provider == "CPUExecutionProvider"]
                if bad:
                    notes.append(f"DATA ON CPU: {', '.join(sorted({b.op_type for b in bad}))}")
                elif on_cpu:
                    notes.append(f"{len(on_cpu)} shape nodes on CPU")
            row["note"] = "; ".join(notes)
            fns += [torch_run, run]
        except Exception as e:  # noqa: BLE001
            row["error"] = _short_error(e)
            fns += [torch_run, None]
    try:
        times = median_times(fns, _sync(torch, device), repeat)
    except Exception as e:  # noqa: BLE001
        for row in rows:
            row["error"] = row["error"] or _short_error(e)
        return rows
    for i, row in enumerate(rows):
        torch_s, ort_s = times[2 * i], times[2 * i + 1]
        row["torch_ms"] = torch_s * 1e3
        if row["error"]:
            continue
        gbps = row["bytes"] / ort_s / 1e9
        row.update(ort_ms=ort_s * 1e3, ratio=ort_s / torch_s, gbps=gbps, pct_copy=gbps / copy_bw * 100)
    return rows


def target_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The GPU issue's bandwidth target, judged on this run's default variants."""
    plain = [r for r in rows if r["op"] == r["name"] and not r.get("error") and r.get("pct_copy") is not None]
    if not plain:
        return []
    large = max((r["shape"] for r in plain), key=lambda s: int(np.prod(s)))
    bw = [r for r in plain if r["name"] in BANDWIDTH_OPS and r["shape"] == large]
    slower = [r for r in plain if r["ratio"] > 1]
    lines = [f"ORT CUDA at or below torch CUDA: {len(plain) - len(slower)} of {len(plain)} default rows"]
    if bw:
        lines.append(
            f">= {BANDWIDTH_TARGET:.0f}% of the device-to-device copy at {'x'.join(map(str, large))}: "
            + ", ".join(f"{r['name']} {r['pct_copy']:.0f}% ({'met' if r['pct_copy'] >= BANDWIDTH_TARGET else 'missed'})"
                        for r in bw))
    return lines


def _cells(r: dict[str, Any]) -> list[str]:
    f = (lambda v, d=3: "" if v is None else f"{v:.{d}f}")
    shape = "x".join(map(str, r["shape"]))
    if r.get("error"):
        return [r["op"], shape, f(r.get("torch_ms")), "", "", "", "", r["error"]]
    return [r["op"], shape, f(r["torch_ms"]), f(r["ort_ms"]), f(r["ratio"], 2), f(r["gbps"], 0),
            f(r["pct_copy"], 0), r.get("note", "")]


def run_cuda_ops(ops: Sequence[str] | None = None, quick: bool = False, repeat: int | None = None,
                 markdown: bool = False, device: str = "cuda") -> list[dict[str, Any]]:
    """Benchmark ops (default: all) on CUDA and print a table; returns the rows (``op``,
    ``name``, ``shape``, ``torch_ms``, ``ort_ms``, ``ratio`` ORT/torch, ``bytes``, ``gbps``,
    ``copy_gbps``, ``pct_copy``, ``note``, ``error``). ``device="cpu"`` runs the same code
    on the CPU (tests exercise it on machines without a GPU)."""
    import onnxruntime as ort
    import torch

    if device == "cpu":
        return _run(ops, quick, repeat, markdown, device, torch, ort)
    if not torch.cuda.is_available():
        raise RuntimeError("poolops bench ops --device cuda needs torch with a CUDA device")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise RuntimeError(f"onnxruntime {ort.__version__} has no CUDA provider: install onnxruntime-gpu")
    return _run(ops, quick, repeat, markdown, device, torch, ort)


def _run(ops, quick, repeat, markdown, device, torch, ort) -> list[dict[str, Any]]:
    specs = [get_op(n) for n in (ops or list_ops())]
    runnable = [s for s in specs if all(kind(n).example is not None for n in s.inputs[1:])]
    sizes = QUICK_SIZES if quick else SIZES
    n_rep = repeat or (3 if quick else DEFAULT_REPEAT)
    rows: list[dict[str, Any]] = []
    bw: dict[tuple[int, ...], float] = {}
    for shape in sizes:
        bw[shape] = copy_gbps(torch, int(np.prod(shape)) * 4, n_rep, device)
        for spec in runnable:
            rows.extend(_bench_op(spec, tuple(shape), n_rep, bw[shape], torch, device))
            if device == "cuda":
                torch.cuda.empty_cache()
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        name = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs"
    else:
        name = "CPU (a smoke run of the CUDA benchmark's code)"
    header = [
        f"device: {name}; "
        f"torch {torch.__version__} (CUDA {torch.version.cuda}, eager, inference_mode); "
        f"onnxruntime {ort.__version__} ({', '.join(_providers(device))}, IO binding: inputs on the GPU, "
        "outputs left there; ORT runs shape arithmetic on the CPU by design, and a row's note says how "
        "many such nodes there were, or DATA ON CPU if a node with outputs over 1 KiB ran there)",
        "device-to-device copy (torch copy_, read + write): "
        + ", ".join(f"{'x'.join(map(str, s))}: {v:.0f} GB/s" for s, v in bw.items()),
        f"per call: median over {n_rep} rounds of bursts of back-to-back calls (about {BURST_S * 1e3:.0f} ms "
        "each, one device sync per burst), torch and ORT in turn; default parameters; input standard normal "
        "(abs() for non-negative ops); other inputs from the input kinds' examples",
        "ORT/torch <= 1 means ONNX Runtime is faster. GB/s = (bytes of all inputs + outputs) / ORT time; "
        "% of copy = that against the copy's GB/s at the same shape.",
    ]
    targets = target_lines(rows)
    if markdown:
        print("# poolops bench ops --device cuda\n")
        print("Made by `poolops bench ops --device cuda --markdown` on the machine named below.\n")
        print("  \n".join(header) + "\n")
        print("| " + " | ".join(COLUMNS) + " |")
        print("|" + "|".join(["---"] * 2 + ["---:"] * 5 + ["---"]) + "|")
        for r in rows:
            print("| " + " | ".join(c.replace("|", "\\|") for c in _cells(r)) + " |")
        print("\nTargets, judged on this run:\n")
        print("\n".join(f"- {t}" for t in targets))
    else:
        print("\n".join(header))
        for r in rows:
            print("  ".join(_cells(r)))
        print("\n".join(f"target: {t}" for t in targets))
    return rows
