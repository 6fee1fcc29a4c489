"""Where ONNX Runtime ran each node, read from its profiler.

ONNX Runtime's CUDA provider places shape arithmetic (``Shape``, ``Gather`` of a dim,
``Div`` of int64 scalars, ... feeding a ``Reshape`` or ``Slice``) on the CPU on purpose,
so ``session.disable_cpu_ep_fallback`` refuses every graph with dynamic shape
arithmetic. What matters is that no tensor *data* runs on the CPU: :func:`placements`
runs a model once with the profiler on and returns each node's provider and output
bytes, and :func:`data_nodes_on_cpu` lists the CPU nodes whose outputs are larger than
shape arithmetic produces.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from typing import Sequence

import numpy as np

CPU = "CPUExecutionProvider"
SHAPE_BYTES = 1024  # a CPU node with larger outputs computes on data, not on shapes


@dataclass(frozen=True)
class Placement:
    node: str
    op_type: str
    provider: str
    output_bytes: int


def placements(model, feeds: dict[str, np.ndarray], providers: Sequence[str]) -> tuple[list, list[Placement]]:
    """``(outputs, placements)`` of one run of ``model`` (a ``ModelProto`` or bytes) on
    ``providers``, in the order the profiler saw the nodes."""
    import onnxruntime as ort

    data = model if isinstance(model, bytes) else model.SerializeToString()
    so = ort.SessionOptions()
    so.enable_profiling = True
    so.log_severity_level = 3
    with tempfile.TemporaryDirectory(prefix="poolops-profile-") as tmp:
        so.profile_file_prefix = os.path.join(tmp, "profile")
        sess = ort.InferenceSession(data, so, providers=list(providers))
        outputs = sess.run(None, feeds)
        with open(sess.end_profiling()) as f:
            events = json.load(f)
    found = []
    for e in events:
        if e.get("cat") != "Node" or not e.get("name", "").endswith("_kernel_time"):
            continue
        args = e.get("args", {})
        found.append(Placement(e["name"][: -len("_kernel_time")], args.get("op_name", "?"),
                               args.get("provider", "?"), int(args.get("output_size", 0))))
    return outputs, found


def data_nodes_on_cpu(found: Sequence[Placement], limit: int = SHAPE_BYTES) -> list[Placement]:
    """CPU nodes whose outputs exceed ``limit`` bytes (more than shape arithmetic)."""
    return [p for p in found if p.provider == CPU and p.output_bytes > limit]


def summary(found: Sequence[Placement]) -> str:
    """``"n nodes: a on CUDAExecutionProvider, b on CPUExecutionProvider (largest output k B)"``."""
    by: dict[str, list[Placement]] = {}
    for p in found:
        by.setdefault(p.provider, []).append(p)
    parts = [f"{len(v)} on {k}" + (f" (largest output {max(q.output_bytes for q in v)} B)" if k == CPU else "")
             for k, v in sorted(by.items())]
    return f"{len(found)} nodes: " + ", ".join(parts)
