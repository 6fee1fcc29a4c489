"""The model repository at run time (Triton's repository extension): index, load, unload,
and an optional poller that loads new or changed model folders.

A load validates the folder as start-up does (``poolops_models.cards.validate``: card schema,
``model.onnx`` against the card's sha256, the ONNX checker, input and output names,
labels), opens its session and warms it up, all in a worker thread, and only then swaps
it in: requests never see a half-loaded model, and a folder that fails any check never
replaces the model being served (the load answers why, the old model keeps serving).
Loads and unloads run one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from poolops_models.cards import CARD, LABELS, MODEL, RegisteredModel, validate
from poolops_service.engine.errors import BadInput, NotFound, Unavailable
from poolops_service.engine.models import ModelRunner
from poolops_service.engine.sessions import background_thread

if TYPE_CHECKING:
    from poolops_service.engine.engine import Engine

log = logging.getLogger("poolops.repository")

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class LoadFailed(BadInput):
    """The folder did not pass its checks (or ONNX Runtime refused it): nothing changed."""

    status = 400
    code = "load_failed"


def fingerprint(folder: Path) -> tuple:
    """What the poller compares: each file's size and modification time (no reading)."""
    out = []
    for f in (CARD, MODEL, LABELS):
        try:
            st = (folder / f).stat()
            out.append((f, st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((f, None, None))
    return tuple(out)


class Repository:
    def __init__(self, engine: "Engine"):
        self.engine = engine
        self.root = Path(engine.settings.models_dir)
        self.loading: set[str] = set()
        self._lock: asyncio.Lock | None = None
        self._seen: dict[str, tuple] = {}  # folder -> fingerprint the poller last acted on

    # ---- index ----------------------------------------------------------------------
    def folders(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(f.name for f in self.root.iterdir() if f.is_dir() and not f.name.startswith("."))

    def index(self, ready_only: bool = False) -> list[dict[str, str]]:
        """Triton's index: every model folder and every model known to the server, with
        its state (READY, LOADING, UNAVAILABLE) and, when not ready, the reason."""
        e = self.engine
        out = []
        for name in sorted(set(self.folders()) | set(e.registry)):
            status = e.model_status(name) if name in e.registry else {"available": False,
                                                                    "reason": "not loaded (a new folder)"}
            if name in self.loading:
                state, reason = "LOADING", "loading"
            elif status.get("available") and status.get("ready"):
                state, reason = "READY", ""
            else:
                state, reason = "UNAVAILABLE", status.get("reason") or "loading"
            if ready_only and state != "READY":
                continue
            out.append({"name": name, "version": "1", "state": state, "reason": reason})
        return out

    # ---- load and unload ------------------------------------------------------------
    def _check_name(self, name: str) -> Path:
        if not NAME.fullmatch(name) or name in (".", ".."):
            raise BadInput(f"model name {name!r} is not a folder name: letters, digits, '.', '_' and '-', "
                           "starting with a letter or digit, at most 128 characters")
        return self.root / name

    def _started(self) -> None:
        if self.engine.phase != "ready":
            raise Unavailable(f"the server is starting ({self.engine.phase}): retry shortly", retry_after=5)

    def _prepare(self, folder: Path) -> tuple[RegisteredModel, ModelRunner | None, float | None, str | None]:
        """In a worker thread: validate, open and warm up. (entry, runner, warm-up s, failure)."""
        background_thread()
        entry = validate(folder)
        if not entry.available:
            return entry, None, None, entry.reason
        e = self.engine
        try:
            runner = ModelRunner(entry, e.providers, e.threads, e.settings.max_batch_pixels)
            t0 = time.perf_counter()
            runner.warm_up(e.settings.warmup_sizes)
        except Exception as ex:  # noqa: BLE001 - a model ONNX Runtime refuses is a failed load
            return entry, None, None, f"ONNX Runtime cannot load or run it: {ex}"
        return entry, runner, time.perf_counter() - t0, None

    async def load(self, name: str) -> None:
        """Load (or reload) the folder ``name``; :class:`LoadFailed` says why it was refused."""
        folder = self._check_name(name)
        self._started()
        if not folder.is_dir():
            raise NotFound(f"no model folder {name!r} in the repository ({self.root}); folders: "
                           f"{', '.join(self.folders()) or 'none'}", model=name)
        async with self._guard():
            self.loading.add(name)
            try:
                fp = fingerprint(folder)
                entry, runner, warm, failure = await asyncio.to_thread(self._prepare, folder)
            finally:
                self.loading.discard(name)
            self._seen[name] = fp
            e = self.engine
            if failure is not None:
                served = name in e.runners
                if name not in e.registry:  # a new folder: listed as broken, nothing else changes
                    e.registry[name] = RegisteredModel(entry.name, folder, entry.card, False, failure)
                log.warning("model %s not loaded: %s", name, failure)
                raise LoadFailed(f"model {name!r} was not loaded: {failure}"
                                 + ("; the version loaded before keeps serving" if served else ""), model=name)
            e.install(entry, runner, warm or 0.0)
            log.info("model %s loaded (warm-up %.2f s)", name, warm or 0.0)

    async def unload(self, name: str) -> None:
        self._check_name(name)
        self._started()
        e = self.engine
        if name not in e.registry:
            raise NotFound(f"unknown model {name!r}; registered: {', '.join(e.registry) or 'none'}", model=name)
        async with self._guard():
            e.uninstall(name)
            log.info("model %s unloaded", name)

    def _guard(self) -> asyncio.Lock:
        if self._lock is None:  # made on the event loop that uses it
            self._lock = asyncio.Lock()
        return self._lock

    # ---- polling --------------------------------------------------------------------
    async def poll_forever(self, interval: float) -> None:
        """Every ``interval`` seconds, load the folders that are new or whose files changed
        since the last look (start-up's registry counts as looked at)."""
        e = self.engine
        while e.phase not in ("ready", "failed"):
            await asyncio.sleep(min(interval, 0.5))
        # start-up's registry counts as looked at; a folder written since start-up's scan (even
        # while this loop waited for "ready") is new, and the first poll loads it
        for name in self.folders():
            if name in e.registry:
                self._seen.setdefault(name, fingerprint(self.root / name))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll_once()
            except Exception:  # noqa: BLE001 - the poller must outlive any one folder
                log.exception("repository poll failed")

    async def poll_once(self) -> list[str]:
        """One look at the folders; returns the names loaded."""
        loaded = []
        current = await asyncio.to_thread(lambda: {n: fingerprint(self.root / n) for n in self.folders()})
        for name, fp in current.items():
            if self._seen.get(name) == fp or not NAME.fullmatch(name):
                continue
            try:
                await self.load(name)
                loaded.append(name)
            except LoadFailed:
                pass  # logged; retried when its files change again
            except (NotFound, Unavailable):
                continue
        return loaded
