"""A server-wide budget of request memory: what request bodies, decoded inputs and answers
in flight may hold together. A request reserves its share before the work that needs it
(its body from Content-Length, then what decoding and answering will hold, known from
headers and shapes) and gives it back when its answer is sent; beyond the budget it is
told to retry (503) instead of pushing the process towards its memory limit."""

from __future__ import annotations

from poolops_service.engine.errors import Overloaded


SMALL = 1 << 20  # bytes


class MemoryBudget:
    """``total`` bytes shared by the requests in flight (touched on the event loop only)."""

    def __init__(self, total: int):
        self.total = total
        self.used = 0

    def reservation(self) -> "Reservation":
        return Reservation(self)


class Reservation:
    """One request's share of a :class:`MemoryBudget`; :meth:`release` returns all of it."""

    def __init__(self, budget: MemoryBudget):
        self.budget = budget
        self.held = 0

    def add(self, nbytes: int, what: str = "this request") -> None:
        """Reserve ``nbytes`` more, or raise :class:`Overloaded` (503, retry shortly). Shares
        up to 1 MB may go a quarter beyond the budget; a request may exceed it while the
        others hold at most that quarter, so nothing valid is refused forever."""
        b = self.budget
        # small shares (a normal request) may also use a headroom of a quarter of the budget,
        # which large ones cannot take: a big request cannot starve the usual traffic; and
        # while the others hold no more than that headroom, a request may go beyond the
        # budget on its own, so normal traffic cannot starve a big request either
        headroom = b.total // 4
        limit = b.total + (headroom if nbytes <= SMALL else 0)
        if nbytes > 0 and b.used + nbytes > limit and b.used - self.held > headroom:
            raise Overloaded(
                f"the server is holding {b.used // 2**20} MB for requests in flight and {what} needs "
                f"{max(1, nbytes // 2**20)} MB more (POOLOPS_MAX_INFLIGHT_BYTES {b.total // 2**20} MB): retry shortly",
                retry_after=1.0,
            )
        b.used += nbytes
        self.held += nbytes

    def release(self) -> None:
        self.budget.used -= self.held
        self.held = 0
