"""Micro-batcher: concurrent requests for one model within a short wait run as one batch.

Callers ``await submit(item)``; a worker task collects up to ``max_size`` items (waiting at
most ``wait_s`` after the first), hands the list to ``run_batch`` in the model's own
thread (one batch at a time per model, so sessions do not fight over cores) and resolves
each caller's future. The queue is bounded: a full queue raises :class:`Overloaded`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from service.engine.errors import Overloaded


class Batcher:
    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[Any]], Sequence[Any]],
        max_size: int,
        wait_s: float,
        max_queue: int,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        self.name = name
        self.run_batch = run_batch
        self.max_size = max_size
        self.wait_s = wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch  # (batch size, seconds) for metrics
        self._pending: deque[tuple[Any, asyncio.Future]] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{name}")
        self.batches = 0

    @property
    def depth(self) -> int:
        return len(self._pending)

    async def submit_many(self, items: list[Any]) -> list[Any]:
        """Queue ``items`` (all or none) and wait for their results, in order."""
        if len(self._pending) + len(items) > self.max_queue:
            raise Overloaded(
                f"model {self.name!r} has {len(self._pending)} images queued (limit {self.max_queue}, "
                "POOLOPS_QUEUE_MAX): retry shortly",
                retry_after=1.0,
            )
        self._start()
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        self._pending.extend(zip(items, futures))
        self._wake.set()
        try:
            return list(await asyncio.gather(*futures))
        except asyncio.CancelledError:  # timeout or client gone: drop what has not started
            for f in futures:
                f.cancel()
            raise

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._worker(), name=f"batcher-{self.name}")

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                if len(self._pending) < self.max_size and self.wait_s > 0:
                    deadline = loop.time() + self.wait_s
                    while len(self._pending) < self.max_size and (left := deadline - loop.time()) > 0:
                        self._wake.clear()
                        try:
                            await asyncio.wait_for(self._wake.wait(), left)
                        except asyncio.TimeoutError:
                            break
                batch = []
                while self._pending and len(batch) < self.max_size:
                    item, fut = self._pending.popleft()
                    if not fut.cancelled():
                        batch.append((item, fut))
                if not batch:
                    continue
                t0 = time.perf_counter()
                try:
                    results = await loop.run_in_executor(self._executor, self.run_batch, [i for i, _ in batch])
                except Exception as e:  # noqa: BLE001 - handed to every caller of this batch
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                self.batches += 1
                if self.on_batch:
                    self.on_batch(len(batch), time.perf_counter() - t0)
                for (_, fut), r in zip(batch, results):
                    if not fut.done():
                        fut.set_result(r)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=True, cancel_futures=True)
