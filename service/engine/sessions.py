"""ONNX Runtime sessions: execution providers, thread counts that fit the CPU quota,
and the provider each session actually got.

ONNX Runtime falls back to CPU without a word when CUDA libraries are missing, so
every session reports ``session.get_providers()[0]`` and the engine checks it.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

log = logging.getLogger("poolops.engine")

# onnxruntime-gpu on a machine without CUDA logs a CUDA error for every session before it
# falls back to CPU; warnings and worse only, and the engine reports the provider each
# session actually got instead (GET /v1/info, /metrics, and a warning at start).
ort.set_default_logger_severity(3)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


def cpu_quota() -> int:
    """CPUs this process may use: the cgroup quota (containers), else the affinity mask."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:  # cgroup v2: "max 100000" or "200000 100000"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            n = min(n, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def choose_providers(device: str) -> list[str]:
    """Providers to ask for: ``cuda`` requires CUDA (``RuntimeError`` without it),
    ``auto`` takes CUDA when this ONNX Runtime build has it, ``cpu`` never does."""
    have = available_providers()
    if device == "cuda":
        if CUDA not in have:
            raise RuntimeError(
                f"POOLOPS_DEVICE=cuda but this ONNX Runtime has no CUDA provider (available: {have}); "
                "install onnxruntime-gpu with CUDA 12 and cuDNN 9, or set POOLOPS_DEVICE=auto or cpu"
            )
        return [CUDA, CPU]
    if device == "auto" and CUDA in have:
        return [CUDA, CPU]
    return [CPU]


def provider_options(providers: list[str]) -> list:
    # Heuristic cuDNN algorithm search: every new input shape would otherwise start an
    # exhaustive search (up to a second); arbitrary image sizes are this service's norm.
    return [(p, {"cudnn_conv_algo_search": "HEURISTIC"}) if p == CUDA else p for p in providers]


@dataclass
class Session:
    """One ONNX Runtime session and what it actually runs on."""

    session: ort.InferenceSession
    provider: str  # the first provider the session got
    requested: list[str]
    input_names: list[str]
    output_names: list[str]

    def run(self, feeds: dict[str, np.ndarray], outputs: list[str] | None = None) -> list[np.ndarray]:
        if self.provider == CUDA:
            return self._run_bound(feeds, outputs or self.output_names)
        return self.session.run(outputs, feeds)

    def _run_bound(self, feeds: dict[str, np.ndarray], outputs: list[str]) -> list[np.ndarray]:
        # IO binding: inputs copied to the GPU once, outputs allocated there and copied back
        # once, instead of ORT's per-run staging.
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        for name in outputs:
            binding.bind_output(name, "cuda")
        self.session.run_with_iobinding(binding)
        return [o.numpy() for o in binding.get_outputs()]


def make_session(model: bytes | str | Path, providers: list[str], threads: int = 0) -> Session:
    """A session for ``model`` (serialized bytes or a path) on ``providers``.

    ``threads`` = 0 uses the CPU quota for intra-op work; inter-op is 1 (the graphs are
    sequential; parallel requests come from the server's thread pool)."""
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads or cpu_quota()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only: onnxruntime-gpu on a CPU machine warns per session
    # ORT's worker threads spin between runs by default: in a server that burns the cores
    # the event loop needs to parse the next requests
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    src = str(model) if isinstance(model, Path) else model
    sess = ort.InferenceSession(src, sess_options=so, providers=provider_options(providers))
    got = sess.get_providers()
    if providers[0] == CUDA and got[0] != CUDA:
        log.warning("asked for CUDA, session got %s (CUDA libraries missing?)", got)
    return Session(
        sess, got[0], providers, [i.name for i in sess.get_inputs()], [o.name for o in sess.get_outputs()]
    )
