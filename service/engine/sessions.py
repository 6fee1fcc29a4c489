"""ONNX Runtime sessions: execution providers, thread counts that fit the CPU quota,
and the provider each session actually got.

ONNX Runtime falls back to CPU without a word when CUDA libraries are missing, so
every session reports ``session.get_providers()[0]`` and the engine checks it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import threading
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
                "install onnxruntime-gpu with the CUDA and cuDNN libraries its build names (1.31: CUDA 13, "
                "cuDNN 9), or set POOLOPS_DEVICE=auto or cpu"
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

    def run(
        self,
        feeds: dict[str, np.ndarray],
        outputs: list[str] | None = None,
        control: "RunControl | None" = None,
        shrink_arena: bool = False,
    ) -> list[np.ndarray]:
        """Run on ``feeds``; ``control`` lets another thread stop the run (:class:`Cancelled`);
        ``shrink_arena`` hands the memory this run added to the arena back afterwards."""
        control = control or (RunControl() if shrink_arena else None)
        opts = control.start(shrink_arena) if control is not None else None
        try:
            if self.provider == CUDA:
                return self._run_bound(feeds, outputs or self.output_names, opts)
            return self.session.run(outputs, feeds, opts)
        except Exception as e:
            if control is not None and control.cancelled:
                raise Cancelled("the run was stopped (timeout or client gone)") from e
            raise

    def _run_bound(self, feeds: dict[str, np.ndarray], outputs: list[str], opts=None) -> list[np.ndarray]:
        # IO binding: inputs copied to the GPU once, outputs allocated there and copied back
        # once, instead of ORT's per-run staging.
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
        for name in outputs:
            binding.bind_output(name, "cuda")
        self.session.run_with_iobinding(binding, opts)
        return [o.numpy() for o in binding.get_outputs()]


class Cancelled(Exception):
    """A run stopped by :meth:`RunControl.cancel` (its request timed out)."""


class RunControl:
    """Stops work from another thread: ``cancel()`` sets ONNX Runtime's terminate flag on
    the run in progress (it stops between nodes) and refuses any later run."""

    def __init__(self) -> None:
        self.cancelled = False
        self._opts = ort.RunOptions()
        self._shrink = ort.RunOptions()
        # the arena's chunks that this run grew are handed back afterwards (large inputs:
        # an arena otherwise keeps the largest run's memory for good)
        self._shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self._lock = threading.Lock()

    def start(self, shrink_arena: bool = False) -> ort.RunOptions:
        with self._lock:
            if self.cancelled:
                raise Cancelled("the request was cancelled before this run started")
            return self._shrink if shrink_arena else self._opts

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            self._opts.terminate = True
            self._shrink.terminate = True


WORKER_NICE = 10


def background_thread() -> None:
    """Lower the calling thread's CPU priority (Linux: per thread) so that the event loop,
    which only routes, wins every contended core. ONNX Runtime's intra-op threads inherit
    it from the thread that creates their session."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), WORKER_NICE))
    except (AttributeError, OSError):  # not Linux, or not permitted: keep the default
        pass


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6") if os.name == "posix" else None


def release_memory() -> None:
    """Give freed heap memory back to the OS (glibc keeps it otherwise); after large runs."""
    if _libc is not None and hasattr(_libc, "malloc_trim"):
        _libc.malloc_trim(0)


def tune_malloc() -> None:
    """Large blocks (>= 1 MiB) come from mmap and go back to the OS when freed: glibc's
    default threshold grows with every large free (up to 32 MiB), after which big
    request buffers stay in the heap for good."""
    if _libc is not None and hasattr(_libc, "mallopt"):
        M_MMAP_THRESHOLD = -3
        _libc.mallopt(M_MMAP_THRESHOLD, 1 << 20)


def make_session(model: bytes | str | Path, providers: list[str], threads: int = 0, arena: bool = True) -> Session:
    """A session for ``model`` (serialized bytes or a path) on ``providers``.

    ``threads`` = 0 uses the CPU quota for intra-op work; inter-op is 1 (the graphs are
    sequential; parallel requests come from the server's thread pool). ``arena=False``
    allocates each run's tensors afresh and frees them afterwards (op graphs: every
    request has other shapes, and an arena would keep the largest forever)."""
    so = ort.SessionOptions()
    if not arena:
        so.enable_cpu_mem_arena = False
        so.enable_mem_pattern = False
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
