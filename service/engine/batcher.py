"""Micro-batcher: concurrent requests for one model within a short wait run as one batch.

Callers ``await submit_many(items)``; a worker task collects up to ``max_size`` items
(waiting at most ``wait_s`` after the first), hands the list to ``run_batch(items,
control)`` in the model's own thread (one batch at a time per model, so sessions do not
fight over cores) and resolves each caller's future.

Fairness and bounds: a batch takes one item from each waiting request in turn, so a
request of many large images cannot hold a one-image request back by more than one
batch; a batch's items weigh at most ``max_weight`` together (pixels; one item always
fits). The queue is bounded: a full queue raises :class:`Overloaded`. When every caller of
a running batch has gone (timeout), the batch's :class:`RunControl` stops it.

Timing: a request may pass a :class:`Ticket`; each batch that runs some of its items adds
its run time to ``ticket.infer_s`` once, and ``ticket.batcher_s`` is the time from queueing
to the last result (so the time it waited is ``batcher_s - infer_s``: Triton's queue time).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

from poolops_service.engine.errors import Overloaded
from poolops_service.engine.sessions import RunControl, background_thread


class Ticket:
    """One request's time in the batcher: ``infer_s`` (the runs of the batches that held
    its items) and ``batcher_s`` (queued to done)."""

    __slots__ = ("infer_s", "batcher_s")

    def __init__(self) -> None:
        self.infer_s = 0.0
        self.batcher_s = 0.0


def _pixels(item: Any) -> int:
    shape = getattr(item, "shape", None)
    return int(shape[-2]) * int(shape[-1]) if shape is not None and len(shape) >= 2 else 1


class Batcher:
    def __init__(
        self,
        name: str,
        run_batch: Callable[[list[Any], RunControl], Sequence[Any]],
        max_size: int,
        wait_s: float,
        max_queue: int,
        on_batch: Callable[[int, float], None] | None = None,
        max_weight: int | None = None,
        weight: Callable[[Any], int] = _pixels,
        executor: ThreadPoolExecutor | None = None,
    ):
        self.name = name
        self.run_batch = run_batch
        self.max_size = max_size
        self.wait_s = wait_s
        self.max_queue = max_queue
        self.on_batch = on_batch  # (batch size, seconds) for metrics
        self.max_weight = max_weight
        self.weight = weight
        self._requests: deque[deque[tuple[Any, asyncio.Future, Ticket | None]]] = deque()  # one queue per request
        self._depth = 0
        self._last: deque | None = None  # the request the last batch took from
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        # batches run in ``executor`` (shared by the models: it bounds how many run at once
        # over all of them), else in a thread of this model's own
        self._own = executor is None
        self._executor = executor or ThreadPoolExecutor(
            max_workers=1, thread_name_prefix=f"batch-{name}", initializer=background_thread
        )
        self.batches = 0
        self._retired = False

    @property
    def depth(self) -> int:
        return self._depth

    async def submit_many(self, items: list[Any], ticket: Ticket | None = None) -> list[Any]:
        """Queue ``items`` (all or none) and wait for their results, in order; ``ticket``
        (optional) collects the request's queue and run times."""
        if self._depth + len(items) > self.max_queue:
            raise Overloaded(
                f"model {self.name!r} has {self._depth} images queued (limit {self.max_queue}, "
                "POOLOPS_QUEUE_MAX): retry shortly",
                retry_after=1.0,
            )
        self._start()
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in items]
        queue = deque((item, fut, ticket) for item, fut in zip(items, futures))
        if self._requests and self._requests[-1] is self._last:
            self._requests.insert(len(self._requests) - 1, queue)  # before the request served last
        else:
            self._requests.append(queue)
        self._depth += len(items)
        self._wake.set()
        t0 = time.perf_counter()
        try:
            if len(futures) == 1:  # the usual request: one image, no gathering future
                return [await futures[0]]
            return list(await asyncio.gather(*futures))
        except asyncio.CancelledError:  # timeout or client gone: drop what has not started
            for f in futures:
                f.cancel()
            raise
        finally:
            if ticket is not None:
                ticket.batcher_s += time.perf_counter() - t0

    def retire(self) -> None:
        """The model was replaced or unloaded: the worker ends once the queue is empty (what
        is queued still runs on this batcher's model; a later submit starts it again)."""
        self._retired = True
        if self._wake is not None:
            self._wake.set()

    def _start(self) -> None:
        self._retired = False
        if self._task is None or self._task.done():
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._worker(), name=f"batcher-{self.name}")

    def _take(self) -> list[tuple[Any, asyncio.Future, Ticket | None]]:
        """The next batch: round-robin over the waiting requests, within size and weight."""
        batch: list[tuple[Any, asyncio.Future, Ticket | None]] = []
        weight = 0
        while self._requests and len(batch) < self.max_size:
            queue = self._requests[0]
            while queue and queue[0][1].cancelled():
                queue.popleft()
                self._depth -= 1
            if not queue:
                self._requests.popleft()
                continue
            item = queue[0][0]
            w = self.weight(item)
            if batch and self.max_weight and weight + w > self.max_weight:
                break
            batch.append(queue.popleft())
            self._depth -= 1
            weight += w
            self._last = queue
            self._requests.rotate(-1)  # the next item from the next request
        return batch

    async def _worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if self._retired and not self._depth:
                return
            await self._wake.wait()
            self._wake.clear()
            while self._depth:
                if self._depth < self.max_size and self.wait_s > 0:
                    deadline = loop.time() + self.wait_s
                    while self._depth < self.max_size and (left := deadline - loop.time()) > 0:
                        self._wake.clear()
                        try:
                            await asyncio.wait_for(self._wake.wait(), left)
                        except asyncio.TimeoutError:
                            break
                batch = self._take()
                if not batch:
                    continue
                control = RunControl()
                self._stop_when_abandoned(batch, control)
                t0 = time.perf_counter()
                try:
                    results = await loop.run_in_executor(
                        self._executor, self.run_batch, [i for i, _, _ in batch], control
                    )
                except Exception as e:  # noqa: BLE001 - handed to every caller of this batch
                    for _, fut, _ in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                seconds = time.perf_counter() - t0
                self.batches += 1
                for ticket in {id(t): t for _, _, t in batch if t is not None}.values():
                    ticket.infer_s += seconds
                if self.on_batch:
                    self.on_batch(len(batch), seconds)
                for (_, fut, _), r in zip(batch, results):
                    if not fut.done():
                        fut.set_result(r)

    @staticmethod
    def _stop_when_abandoned(batch: list[tuple[Any, asyncio.Future, Ticket | None]], control: RunControl) -> None:
        futures = [f for _, f, _ in batch]

        def check(_: asyncio.Future) -> None:
            if all(f.cancelled() for f in futures):
                control.cancel()

        for f in futures:
            f.add_done_callback(check)

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._own:
            self._executor.shutdown(wait=True, cancel_futures=True)
