"""Bounded worker pools: op runs, graph builds and decoding each get their own threads, so
one kind of work cannot starve another, and each refuses work beyond its queue (503).

A task holds its slot until its thread is really done, not merely until its caller stopped
waiting: a request that timed out still counts while its work winds down, so timed-out
work cannot pile up behind the pool's back.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, TypeVar

from poolops_service.engine.errors import Overloaded, Unavailable
from poolops_service.engine.sessions import RunControl, background_thread

T = TypeVar("T")


class WorkPool:
    """``workers`` threads and at most ``queue_max`` tasks waiting for one.

    Args:
        name: the pool's name, for thread names and messages.
        workers: threads.
        queue_max: tasks waiting beyond the running ones before :class:`Overloaded`.
        setting: the setting that sizes the pool, named in the 503 message.
    """

    def __init__(self, name: str, workers: int, queue_max: int, setting: str):
        self.name = name
        self.limit = workers + queue_max
        self.setting = setting
        self.pending = 0  # touched on the event loop only
        self._executor = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix=f"pool-{name}", initializer=background_thread
        )

    async def run(self, fn: Callable[..., T], *args: Any, timeout: float, control: RunControl | None = None) -> T:
        """``fn(*args)`` in a pool thread, waited for at most ``timeout`` seconds; on timeout
        ``control`` (if any) stops the run and :class:`Unavailable` is raised."""
        if self.pending >= self.limit:
            raise Overloaded(
                f"{self.pending} {self.name} tasks are running or queued (limit {self.limit}, {self.setting}): "
                "retry shortly",
                retry_after=1.0,
            )
        loop = asyncio.get_running_loop()
        self.pending += 1
        cf = self._executor.submit(fn, *args)
        cf.add_done_callback(lambda _: loop.call_soon_threadsafe(self._release))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(cf), max(timeout, 0.0))
        except (asyncio.TimeoutError, asyncio.CancelledError) as e:
            cf.cancel()  # not started yet: never runs
            if control is not None:
                control.cancel()  # running: ONNX Runtime stops at its next node
            if isinstance(e, asyncio.CancelledError):
                raise
            raise TimedOut() from None

    def _release(self) -> None:
        self.pending -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class TimedOut(Unavailable):
    """Raised by :meth:`WorkPool.run` when its ``timeout`` passed; callers re-word it."""

    code = "timeout"

    def __init__(self, message: str = "timed out"):
        super().__init__(message, retry_after=2)


class Deadline:
    """One request's time budget across several pool hops."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        return self._end - time.monotonic()
