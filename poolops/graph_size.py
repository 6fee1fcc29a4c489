"""Graph size: every op's graphs at small and at its largest allowed parameters.

Issue 12's rule: no op's graph grows with a parameter's value (an unrolled graph took 4.8 s
to build at kernel 48), and every graph builds in under 100 ms. ``tests/poolops/test_cost.py``
asserts the bound that keeps builds fast, node counts (large values never add nodes; no graph
over :data:`MAX_NODES`, subgraphs included); ``poolops bench build`` (:func:`run_build`) times
the builds at the large parameters.
"""

from __future__ import annotations

import os
import time
from typing import Any, Sequence

import onnx

from poolops.onnx import op_backward_model, op_model
from poolops.registry import get_op

MAX_NODES = 800  # per graph, subgraphs included
MAX_CONSTANT = 256  # values in one Constant (the largest today: 64, pool_nd's blocks)
BUILD_TARGET_MS = 100.0

# (small, large) parameters of each op: large values must not add nodes
GROWTH = {
    "max": ({"kernel": 2}, {"kernel": 64, "stride": 63, "padding": 32, "dilation": 50, "ceil_mode": False}),
    "avg": ({"kernel": 2, "ceil_mode": True}, {"kernel": 64, "stride": 3, "padding": 32, "ceil_mode": True}),
    "lp": ({"kernel": 2}, {"kernel": 64, "stride": 1}),
    "gem": ({"kernel": 2}, {"kernel": 64, "stride": 1}),
    "mixed": ({"kernel": 2}, {"kernel": 64, "padding": 32}),
    "stochastic": ({"kernel": 2, "mode": "train"}, {"kernel": 64, "mode": "train"}),
    "adaptive_avg": ({"output_size": 2}, {"output_size": 4096}),
    "adaptive_max": ({"output_size": 2}, {"output_size": 4096}),
    "spp": ({"levels": (1, 2)}, {"levels": (1, 2000)}),
    "multiscale": ({"kernels": (2, 4)}, {"kernels": (64, 128)}),
    "roi_pool": ({"output_size": 2}, {"output_size": 4096}),
    "roi_align": ({"output_size": 2, "sampling_ratio": 1}, {"output_size": 4096, "sampling_ratio": 1000}),
    "deform_roi_pool": ({"output_size": 2, "sampling_ratio": 1}, {"output_size": 4096, "sampling_ratio": 1000}),
    "roi_align_rotated": ({"output_size": 2, "sampling_ratio": 1}, {"output_size": (4096, 3), "sampling_ratio": 1000}),
    "rotation_invariant": ({"orientations": 2, "mode": "align"}, {"orientations": 1024, "mode": "align"}),
    "global_avg": ({}, {}),
    "max1d": ({"kernel": 2}, {"kernel": 64, "stride": 63, "padding": 32, "dilation": 50}),
    "max3d": ({"kernel": 2, "ceil_mode": True}, {"kernel": 64, "stride": 3, "padding": 32, "dilation": 5, "ceil_mode": True}),
    "avg1d": ({"kernel": 2, "ceil_mode": True}, {"kernel": 64, "stride": 3, "padding": 32, "ceil_mode": True}),
    "avg3d": ({"kernel": 2, "ceil_mode": True}, {"kernel": 64, "stride": 3, "padding": 32, "ceil_mode": True}),
    "adaptive_avg1d": ({"output_size": 2}, {"output_size": 4096}),
    "adaptive_avg3d": ({"output_size": 2}, {"output_size": (4096, 1, 300)}),
    "adaptive_max1d": ({"output_size": 2}, {"output_size": 4096}),
    "adaptive_max3d": ({"output_size": 2}, {"output_size": (4096, 1, 300)}),
    "global_avg1d": ({}, {}),
    "global_avg3d": ({}, {}),
    "global_max1d": ({}, {}),
    "global_max3d": ({}, {}),
    "global_max": ({}, {}),
    "strip": ({"direction": "diag"}, {"direction": "diag"}),
    "bilinear": ({"eps": 1e-12}, {"eps": 1e3}),
    "attention": ({"temperature": 0.5}, {"temperature": 1e6}),
    "se": ({}, {}),
    "softpool": ({"kernel": 2}, {"kernel": 64, "stride": 1}),
    "lip": ({"kernel": 3, "padding": 1}, {"kernel": 65, "stride": 1, "padding": 32}),
    "blur": ({"filt_size": 3}, {"filt_size": 7, "stride": 50}),
    "max_blur": ({"filt_size": 3, "kernel": 2}, {"filt_size": 7, "kernel": 64, "stride": 50}),
    "fractional_max": ({"kernel": 2, "output_size": 2}, {"kernel": 64, "output_size": 4096, "seed": 2**62}),
    "max_unpool": ({"kernel": 2}, {"kernel": 64, "stride": 3, "padding": 30}),
}
SAME_VARIANTS = [
    ("max", {"kernel": 2, "dilation": 2, "tf_same": True}, {"kernel": 64, "stride": 63, "dilation": 50, "tf_same": True}),
    ("avg", {"kernel": 2, "tf_same": True}, {"kernel": 64, "stride": 3, "tf_same": True}),
    ("avg", {"kernel": 2, "tf_same": True, "divisor_override": 2}, {"kernel": 64, "tf_same": True, "divisor_override": 99}),
]
SPP_VARIANTS = [
    ({"levels": (2, 3)}, {"levels": (200, 300)}),
    ({"levels": (1, 2), "mode": "avg"}, {"levels": (1, 2000), "mode": "avg"}),
    ({"levels": (1, 2), "bins": "sppnet"}, {"levels": (1, 2000), "bins": "sppnet"}),
    ({"levels": (3, 4, 5)}, {"levels": (3000, 4000, 5000)}),
    ({"levels": ((1, 2), (2, 4))}, {"levels": ((100, 2000), (300, 4000))}),
    ({"levels": ((2, 3), 4), "mode": "avg"}, {"levels": ((2000, 3), 4000), "mode": "avg"}),
]
# every (op, small, large) case
CASES = [(n, *pair) for n, pair in GROWTH.items()] + [("spp", *pair) for pair in SPP_VARIANTS] + SAME_VARIANTS


def _nodes_in(nodes) -> int:
    """``nodes`` and the nodes of their subgraphs (If branches, Loop bodies), recursively."""
    n = 0
    for node in nodes:
        n += 1
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                n += _nodes_in(a.g.node)
            n += sum(_nodes_in(g.node) for g in a.graphs)
    return n


def count_nodes(model: onnx.ModelProto) -> int:
    """Nodes of the main graph and of every function body, subgraphs included."""
    return _nodes_in(model.graph.node) + sum(_nodes_in(f.node) for f in model.functions)


def _constant_sizes(nodes):
    for node in nodes:
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                yield from _constant_sizes(a.g.node)
            for g in a.graphs:
                yield from _constant_sizes(g.node)
            if node.op_type == "Constant":
                n = 1
                for d in a.t.dims:
                    n *= d
                yield len(a.ints) + len(a.floats) if a.type != onnx.AttributeProto.TENSOR else n


def largest_constant(model: onnx.ModelProto) -> int:
    """Values in the largest ``Constant`` of the model (functions and subgraphs included):
    index tables are built by a Range, so this does not grow with a parameter's value."""
    nodes = [*model.graph.node, *(n for f in model.functions for n in f.node)]
    return max(_constant_sizes(nodes), default=0)


def builders(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Each graph op ``name`` has, as a zero-argument builder: ``forward``, ``+optional``
    (every optional input) when the op takes some, ``backward`` when it has one."""
    spec = get_op(name)
    out = {"forward": lambda: op_model(name, **params)}
    if spec.optional_inputs:
        out["+optional"] = lambda: op_model(name, inputs=spec.all_inputs, **params)
    if spec.onnx_backward is not None:
        out["backward"] = lambda: op_backward_model(name, **params)
    return out


def node_counts(name: str, params: dict[str, Any]) -> list[int]:
    """:func:`count_nodes` of each of :func:`builders`' graphs, in order."""
    return [count_nodes(build()) for build in builders(name, params).values()]


def run_build(repeat: int = 5, markdown: bool = False, ops: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Time every case's graphs (of ``ops``, default all) at its large parameters (fastest of
    ``repeat`` builds, wall time) and print the table; returns the rows (``op``, ``params``,
    ``graph``, ``nodes``, ``kb``, ``ms``)."""
    from poolops.bench import cpu_model
    from poolops.report import command_line, print_report

    load = f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "n/a"
    rows = []
    for name, _, large in CASES:
        if ops and name not in ops:
            continue
        for graph, build in builders(name, large).items():
            build()  # first build: imports and caches
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                model = build()
                times.append(time.perf_counter() - t0)
            rows.append({"op": name, "params": large, "graph": graph, "nodes": count_nodes(model),
                         "kb": model.ByteSize() / 1024, "ms": min(times) * 1e3})
    worst = max(rows, key=lambda r: r["ms"])
    slow = [r for r in rows if r["ms"] >= BUILD_TARGET_MS]
    targets = [f"every graph builds in under {BUILD_TARGET_MS:.0f} ms: "
               + ("met" if not slow else f"missed by {len(slow)} of {len(rows)}")
               + f" (slowest: {worst['op']} {worst['graph']} {worst['ms']:.1f} ms, {worst['nodes']} nodes)",
               f"most nodes in one graph: {max(r['nodes'] for r in rows)} (bound {MAX_NODES})"]
    header = [f"machine: {cpu_model()}, {os.cpu_count()} CPUs, 1-min load average {load} before the run",
              f"each op's graphs built by poolops.onnx at the largest parameters of poolops.graph_size.CASES; "
              f"fastest of {repeat} builds after one warm-up; nodes include If/Loop subgraphs"]
    cells = [([r["op"], ", ".join(f"{k}={v}" for k, v in r["params"].items()), r["graph"], str(r["nodes"]),
               f"{r['kb']:.0f}", f"{r['ms']:.1f}"], r["ms"] >= BUILD_TARGET_MS) for r in rows]
    print_report(title="poolops bench build", made_by=command_line("poolops bench build --markdown"),
                 columns=("op", "parameters", "graph", "nodes", "KB", "build ms"), right={3, 4, 5}, rows=cells,
                 header=header, targets=targets, markdown=markdown)
    return rows
