"""The engine: op runner + model runners + batchers, loaded once, with readiness.

Start-up (``load``, run in a background thread so ``/healthz`` answers meanwhile):
build missing built-in models in a child process (torch stays out of this one), load
and validate the registry, open one session per model, warm up every op graph and every
model at the configured sizes. ``ready`` turns true only after all of that.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from poolops_models.cards import RegisteredModel, load_registry
from poolops_service.config import Settings
from poolops_service.engine.batcher import Batcher
from poolops_service.engine.budget import MemoryBudget, Reservation
from poolops_service.engine.errors import EngineError, NotFound, TooLarge, Unavailable
from poolops_service.engine.models import ModelRunner, Output
from poolops_service.engine.ops import OpPlan, OpResult, OpRunner
from poolops_service.engine.pools import Deadline, TimedOut, WorkPool
from poolops_service.engine.repository import Repository
from poolops_service.engine.stats import ModelStats, Request
from poolops_service.engine.sessions import (
    CUDA, RunControl, available_providers, background_thread, choose_providers, cpu_quota, release_memory,
    tune_malloc,
)

log = logging.getLogger("poolops.engine")

__all__ = ["Engine", "EngineError"]

UNLOADED = "unloaded on request (POST /v2/repository/models/{name}/load serves it again)"
SMALL_OP_WORK = 1 << 20  # elements (4 MB): op requests at most this large run in their own lane
SMALL_OP_WORKERS = 2


class Observer(Protocol):
    """What the engine reports (the metrics layer implements it)."""

    def inference(self, kind: str, name: str, provider: str, seconds: float) -> None: ...
    def batch(self, model: str, size: int, seconds: float) -> None: ...


class _Null:
    def inference(self, *a: Any) -> None: ...
    def batch(self, *a: Any) -> None: ...


class Engine:
    def __init__(self, settings: Settings, observer: Observer | None = None):
        self.settings = settings
        self.observer = observer or _Null()
        # raises when settings require CUDA and it is missing: the server refuses to start
        self.providers = choose_providers(settings.device)
        self.threads = settings.threads or cpu_quota()
        self.ops = OpRunner(
            self.providers, self.threads, settings.op_cache_size, settings.max_tensor_elements,
            settings.max_output_elements, settings.max_work_elements,
        )
        tune_malloc()
        q = settings.op_queue_max
        self.op_pool = WorkPool("op", settings.op_workers, q, "POOLOPS_OP_WORKERS, POOLOPS_OP_QUEUE_MAX")
        # small requests (the usual ones: milliseconds) have a lane of their own, so a few
        # large ones cannot keep them waiting
        self.small_op_pool = WorkPool("small op", SMALL_OP_WORKERS, q, "POOLOPS_OP_QUEUE_MAX")
        self.model_executor = ThreadPoolExecutor(
            settings.model_workers, thread_name_prefix="model", initializer=background_thread
        )
        self.budget = MemoryBudget(settings.max_inflight_bytes)
        self.build_pool = WorkPool("graph build", settings.build_workers, q, "POOLOPS_BUILD_WORKERS")
        self.decode_pool = WorkPool("decode", settings.decode_workers, 4 * q, "POOLOPS_DECODE_WORKERS")
        self.registry: dict[str, RegisteredModel] = {}
        self.runners: dict[str, ModelRunner] = {}
        self.load_errors: dict[str, str] = {}
        self.unloaded: set[str] = set()  # unloaded on request (repository API): not served, not awaited
        self.stats: dict[str, ModelStats] = {}
        self.repository = Repository(self)
        self._phase = "starting"
        self.failure: str | None = None
        self.ops_ready = False
        self.warmup_s: dict[str, float] = {}
        self._lock = threading.Lock()

    # ---- start-up -----------------------------------------------------------------
    def load(self) -> None:
        """Everything ``/readyz`` waits for. Never raises: failures become reasons."""
        background_thread()  # the sessions made here get low-priority threads too
        try:
            if self.settings.build_missing:
                self.phase = "checking for missing built-in models"
                self._build_missing()
            self.phase = "loading models"
            self.registry = load_registry(self.settings.models_dir)
            for name, entry in self.registry.items():
                if not entry.available:
                    continue
                try:
                    self.runners[name] = ModelRunner(entry, self.providers, self.threads, self.settings.max_batch_pixels)
                except Exception as e:  # noqa: BLE001 - one bad model must not stop the others
                    self.load_errors[name] = f"ONNX Runtime cannot load it: {e}"
            self.phase = "warming up op graphs"
            t0 = time.perf_counter()
            self.ops.warm_up()
            self.warmup_s["ops"] = time.perf_counter() - t0
            self.ops_ready = True
            for name, runner in self.runners.items():
                self.phase = f"warming up {name}"
                self.warmup_s[name] = runner.warm_up(self.settings.warmup_sizes)
            self.phase = "ready"
        except Exception as e:  # noqa: BLE001 - reported by /readyz
            log.exception("start-up failed")
            self.failure = f"start-up failed: {e}"
            self.phase = "failed"

    def _build_missing(self) -> None:
        """Build the missing built-in models (``settings.build_models``, default all), one
        ``poolops export NAME`` child process each; on a terminal its progress shows."""
        from poolops_models.recipes import missing_builtins

        missing = missing_builtins(self.settings.models_dir, list(self.settings.build_models) or None)
        if not missing:
            return
        if importlib.util.find_spec("torch") is None:
            log.warning("built-in models %s are not built and torch is not installed here", missing)
            return
        env = {**os.environ, "POOLOPS_MODELS_DIR": str(self.settings.models_dir)}
        terminal = sys.stderr.isatty()
        for i, name in enumerate(missing, 1):
            self.phase = f"building {name} ({i} of {len(missing)}, poolops export in a child process)"
            t0 = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "poolops_service.cli", "export", name, *([] if terminal else ["--quiet"])],
                env=env, stdout=subprocess.PIPE, stderr=None if terminal else subprocess.PIPE, text=True, check=False,
            )
            if proc.returncode != 0:
                log.error("poolops export %s failed: %s", name, (proc.stderr or "")[-2000:])
            else:
                log.info("built %s in %.0f s", name, time.perf_counter() - t0)

    # ---- state ----------------------------------------------------------------------
    @property
    def phase(self) -> str:
        """What start-up is doing (``/readyz`` says it); each change is logged."""
        return self._phase

    @phase.setter
    def phase(self, value: str) -> None:
        self._phase = value
        log.info("%s", value)

    @property
    def ready(self) -> bool:
        """All models ready (``ready_when=all``, like Triton), or at least one (``any``)."""
        if self.phase != "ready" or self.failure:
            return False
        if self.settings.ready_when == "any":
            return any(self.model_status(n).get("ready") for n in self.registry) or not self.registry
        return not self.reasons()

    def reasons(self) -> list[str]:
        """What keeps the service from being ready with every model (empty when nothing does)."""
        if self.failure:
            return [self.failure]
        if self.phase != "ready":
            return [f"starting: {self.phase}"]
        out = []
        for name, entry in self.registry.items():
            if name in self.unloaded:
                continue
            if not entry.available:
                out.append(f"model {name}: {entry.reason}")
            elif name in self.load_errors:
                out.append(f"model {name}: {self.load_errors[name]}")
        return out

    def model_status(self, name: str) -> dict[str, Any]:
        entry = self.registry.get(name)
        if entry is None:
            return {"available": False, "reason": "not registered"}
        if name in self.unloaded:
            return {"available": False, "reason": UNLOADED.format(name=name)}
        if not entry.available:
            return {"available": False, "reason": entry.reason}
        if name in self.load_errors:
            return {"available": False, "reason": self.load_errors[name]}
        if name not in self.runners:
            return {"available": False, "reason": f"loading ({self.phase})"}
        r = self.runners[name]
        return {"available": True, "ready": name in self.warmup_s, "provider": r.provider}

    def info(self) -> dict[str, Any]:
        providers_in_use = sorted({r.provider for r in self.runners.values()} | {
            s.provider for s in self.ops.cache.sessions()
        })
        return {
            "providers_available": available_providers(),
            "providers_requested": self.providers,
            "providers_in_use": providers_in_use,
            "device": "cuda" if CUDA in providers_in_use else "cpu",
            "onnxruntime": ort.__version__,
            "threads_per_session": self.threads,
            "cpu_quota": cpu_quota(),
            "op_graphs_cached": len(self.ops.cache),
            "warmup_seconds": {k: round(v, 3) for k, v in self.warmup_s.items()},
            "phase": self.phase,
            "inflight_bytes": {"used": self.budget.used, "limit": self.budget.total},
            "pools": {p.name: {"busy_or_queued": p.pending, "limit": p.limit}
                      for p in (self.small_op_pool, self.op_pool, self.build_pool, self.decode_pool)},
        }

    # ---- inference ------------------------------------------------------------------
    def runner(self, name: str) -> ModelRunner:
        if name not in self.registry and self.phase == "ready":
            raise NotFound(f"unknown model {name!r}; registered: {', '.join(self.registry) or 'none'}", model=name)
        status = self.model_status(name)
        if not status["available"]:
            if name in self.unloaded:
                raise NotFound(f"model {name!r} is unloaded: load it again with POST /v2/repository/models/{name}/load "
                               "(gRPC RepositoryModelLoad)", model=name)
            if name in self.registry and not self.registry[name].available:
                raise Unavailable(f"model {name!r} is unavailable: {status['reason']}", retry_after=60, model=name)
            raise Unavailable(f"model {name!r} is not loaded yet ({self.phase}): retry shortly", retry_after=5, model=name)
        return self.runners[name]

    def batcher(self, name: str) -> Batcher:
        """The batcher of model ``name``'s current runner."""
        return self._batcher_of(self.runner(name))

    def _batcher_of(self, r: ModelRunner) -> Batcher:
        # one per runner: a model replaced by a load keeps running what its requests queued
        with self._lock:
            if r.batcher is None:
                s = self.settings
                r.batcher = Batcher(
                    r.name, self._timed_batch(r), s.batch_size_of(r.name), s.batch_wait_ms / 1e3, s.queue_max,
                    on_batch=lambda size, sec, n=r.name: self._on_batch(n, size, sec),
                    max_weight=s.max_batch_pixels, executor=self.model_executor,
                )
            return r.batcher

    def _on_batch(self, name: str, size: int, seconds: float) -> None:
        self.observer.batch(name, size, seconds)
        self.model_stats(name).batch(size, seconds)

    def model_stats(self, name: str) -> ModelStats:
        """``name``'s statistics (kept for registered models only: names come from requests)."""
        return self.stats.setdefault(name, ModelStats())

    @contextlib.contextmanager
    def track(self, name: str):
        """Count one request for model ``name`` in its statistics: success when the block
        ends normally, fail when it raises. Yields the :class:`Request` to fill in."""
        req = Request()
        try:
            yield req
        except BaseException:
            if name in self.registry:
                self.model_stats(name).request(req, ok=False)
            raise
        if name in self.registry:
            self.model_stats(name).request(req, ok=True)

    def _timed_batch(self, r: ModelRunner):
        def run(items: list[np.ndarray], control: RunControl) -> list[Output]:
            t0 = time.perf_counter()
            out = r.run_batch(items, control)
            self.observer.inference("model", r.name, r.provider, time.perf_counter() - t0)
            return out

        return run

    def queue_depths(self) -> dict[str, int]:
        return {n: r.batcher.depth for n, r in list(self.runners.items()) if r.batcher is not None}

    async def infer_images(
        self, name: str, tensors: list[np.ndarray], req: Request | None = None, runner: ModelRunner | None = None
    ) -> list[Output]:
        """Preprocessed images [C, H_i, W_i] of model ``name`` -> outputs, through the batcher
        of ``runner`` (the one that preprocessed them; default the current one). ``req``: the
        caller counts the request in the statistics (else this does)."""
        if req is None:
            with self.track(name) as req:
                return await self.infer_images(name, tensors, req, runner)
        b = self._batcher_of(runner or self.runner(name))
        req.images += len(tensors)
        try:
            return await asyncio.wait_for(b.submit_many(tensors, req.ticket), self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise Unavailable(
                f"inference took longer than {self.settings.request_timeout_s} s (POOLOPS_REQUEST_TIMEOUT_S): "
                "retry, or send fewer or smaller images",
                retry_after=2,
                model=name,
            ) from None

    async def run_op(
        self, name: str, max_answer_elements: int | None = None, reservation: Reservation | None = None, **kw: Any
    ) -> OpResult:
        """Plan on the event loop (shapes only: refused before any work), then check the
        values and build the graphs in the build pool (identical builds coalesced; cached
        graphs skip it) and run them in the op pool, all within the request timeout; a
        timed-out run is stopped. ``max_answer_elements``: refuse outputs larger than the
        caller can answer with (a JSON body)."""
        t0 = time.perf_counter()
        plan = self._plan(name, max_answer_elements, **kw)
        if reservation is not None:  # the outputs, held until the answer is sent
            reservation.add(4 * plan.cost.output_elements, "its answer")
        deadline = Deadline(self.settings.request_timeout_s)
        control = RunControl()
        try:
            if not self.ops.cached(plan):
                await self.build_pool.run(self._build, plan, timeout=deadline.left())
            pool = self.small_op_pool if plan.cost.work_elements <= SMALL_OP_WORK else self.op_pool
            res = await pool.run(self._execute, plan, control, timeout=deadline.left(), control=control)
        except TimedOut:
            raise Unavailable(
                f"op {name} took longer than {self.settings.request_timeout_s} s (POOLOPS_REQUEST_TIMEOUT_S): "
                "send a smaller input", retry_after=2, op=name,
            ) from None
        self.observer.inference("op", name, res.provider, time.perf_counter() - t0)
        return res

    def precheck_op(self, name: str, shape: tuple[int, ...], max_answer_elements: int | None = None, **kw: Any) -> None:
        """The checks of :meth:`run_op` from ``x``'s shape alone, before ``x`` exists (an
        image is refused from its header, before it is decoded)."""
        self._plan(name, max_answer_elements, x=np.broadcast_to(np.float32(0), shape), **kw)

    def _plan(self, name: str, max_answer_elements: int | None, **kw: Any) -> OpPlan:
        plan = self.ops.plan(name, **kw)
        if max_answer_elements is not None and plan.cost.output_elements > max_answer_elements:
            raise TooLarge(
                f"the answer would hold {plan.cost.output_elements} numbers, more than a JSON answer may "
                f"({max_answer_elements}, POOLOPS_MAX_JSON_ELEMENTS): send `Accept: application/x-npy` for a binary "
                "answer (one tensor per request, chosen with ?tensor=output|indices|grad_input)",
                op=name, output_elements=plan.cost.output_elements,
            )
        return plan

    def _build(self, plan: OpPlan) -> None:
        self.ops.check_values(plan)
        plan.checked = True
        self.ops.sessions(plan)

    def _execute(self, plan: OpPlan, control: RunControl) -> OpResult:
        if not plan.checked:
            self.ops.check_values(plan)
        try:
            return self.ops.execute(plan, control)
        finally:
            if plan.large:
                release_memory()

    async def offload(self, fn, *args: Any, large: bool = True) -> Any:
        """``fn(*args)``: in the decode pool when ``large`` (decoding, parsing, encoding of
        big payloads), else right here on the event loop (a thread hop costs more)."""
        if not large:
            return fn(*args)
        try:
            return await self.decode_pool.run(fn, *args, timeout=self.settings.request_timeout_s)
        except TimedOut:
            raise Unavailable(
                f"decoding or encoding took longer than {self.settings.request_timeout_s} s "
                "(POOLOPS_REQUEST_TIMEOUT_S): send a smaller payload", retry_after=2,
            ) from None

    async def infer_tensor(
        self, name: str, x: np.ndarray, valid: np.ndarray | None, req: Request
    ) -> dict[str, np.ndarray]:
        """A ready batch ``x`` [N, C, H, W] (and ``valid`` [N, 2]; Open Inference Protocol)
        through the model's batcher, image by image, so that it shares batches with other
        requests under the same mixed-size rule as ``/v1`` (each row gets exactly its
        one-by-one result). Queued in parts of at most ``max_batch_images`` images, one
        after another, so that a large N never fills the queue alone. Returns each of the
        card's outputs [N, ...]."""
        r = self.runner(name)
        r.check_tensor(x, valid)
        items = r.images(x, valid)
        step = max(1, min(self.settings.max_batch_images, self.settings.queue_max))
        b = self._batcher_of(r)
        req.images += len(items)

        async def run_all() -> list[Output]:
            outs: list[Output] = []
            for i in range(0, len(items), step):
                outs += await b.submit_many(items[i: i + step], req.ticket)
            return outs

        try:
            outs = await asyncio.wait_for(run_all(), self.settings.request_timeout_s)
        except asyncio.TimeoutError:
            raise Unavailable(
                f"inference took longer than {self.settings.request_timeout_s} s (POOLOPS_REQUEST_TIMEOUT_S): "
                "send fewer or smaller images", retry_after=2, model=name,
            ) from None
        result = {"logits": np.stack([o.logits for o in outs])}
        if "embedding" in r.card.outputs:
            result["embedding"] = np.stack([o.embedding for o in outs])
        return {k: result[k] for k in r.card.outputs}

    # ---- the model repository (poolops_service.engine.repository drives these) ---------------
    def install(self, entry: RegisteredModel, runner: ModelRunner, warmup_s: float) -> None:
        """Serve ``entry`` (a validated folder) with ``runner`` (opened and warmed up) from
        now on. Requests already queued finish on the runner they started with."""
        name = entry.name
        old = self.runners.get(name)
        self.registry[name] = entry
        self.load_errors.pop(name, None)
        self.unloaded.discard(name)
        self.runners[name] = runner
        self.warmup_s[name] = warmup_s
        if old is not None and old is not runner and old.batcher is not None:
            old.batcher.retire()

    def uninstall(self, name: str) -> None:
        """Stop serving ``name`` (its queued requests finish); it stays in the index as unloaded."""
        old = self.runners.pop(name, None)
        self.warmup_s.pop(name, None)
        self.unloaded.add(name)
        if old is not None and old.batcher is not None:
            old.batcher.retire()

    def close(self) -> None:
        for r in list(self.runners.values()):
            if r.batcher is not None:
                r.batcher.close()
        for pool in (self.op_pool, self.small_op_pool, self.build_pool, self.decode_pool):
            pool.close()
        self.model_executor.shutdown(wait=False, cancel_futures=True)
