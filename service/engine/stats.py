"""Per-model inference statistics in Triton's format (its statistics extension): what
``GET /v2/models/{name}/stats`` and gRPC ``ModelStatistics`` answer, so that
``tritonclient``'s ``get_inference_statistics`` reads them.

Counted per request that reached a model (``success`` or ``fail``, with the request's
whole time) and, for successes, split as Triton splits it: ``compute_input`` (reading the
request's tensors), ``queue`` (waiting in the model's batcher), ``compute_infer`` (the runs
of the batches that held its images) and ``compute_output`` (making the answer).
``inference_count`` counts images, ``execution_count`` batches (model runs), and
``batch_stats`` each batch size's runs. Touched on the event loop only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from poolops_service.engine.batcher import Ticket

PHASES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")


@dataclass
class Duration:
    count: int = 0
    ns: int = 0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.ns += max(0, int(seconds * 1e9))

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


@dataclass
class Request:
    """One request's times, filled in as it goes (``ticket`` by the batcher)."""

    t0: float = field(default_factory=time.perf_counter)
    input_s: float = 0.0
    output_s: float = 0.0
    images: int = 0
    ticket: Ticket = field(default_factory=Ticket)

    def mark_input(self) -> None:
        """The request's tensors are read: the time so far is its ``compute_input``."""
        self.input_s = time.perf_counter() - self.t0


@dataclass
class ModelStats:
    durations: dict[str, Duration] = field(default_factory=lambda: {p: Duration() for p in PHASES})
    inference_count: int = 0
    execution_count: int = 0
    last_inference_ms: int = 0
    batches: dict[int, Duration] = field(default_factory=dict)

    def request(self, req: Request, ok: bool) -> None:
        total = time.perf_counter() - req.t0
        if not ok:
            self.durations["fail"].add(total)
            return
        t = req.ticket
        self.durations["success"].add(total)
        self.durations["compute_input"].add(req.input_s)
        self.durations["queue"].add(max(0.0, t.batcher_s - t.infer_s))
        self.durations["compute_infer"].add(t.infer_s)
        self.durations["compute_output"].add(req.output_s)
        self.inference_count += req.images
        self.last_inference_ms = int(time.time() * 1e3)

    def batch(self, size: int, seconds: float) -> None:
        self.execution_count += 1
        self.batches.setdefault(size, Duration()).add(seconds)

    def triton(self, name: str) -> dict:
        """This model's entry of Triton's ``model_stats`` list."""
        zero = Duration().as_dict()
        return {
            "name": name,
            "version": "1",
            "last_inference": self.last_inference_ms,
            "inference_count": self.inference_count,
            "execution_count": self.execution_count,
            "inference_stats": {p: d.as_dict() for p, d in self.durations.items()},
            "batch_stats": [
                {"batch_size": size, "compute_input": zero, "compute_infer": d.as_dict(), "compute_output": zero}
                for size, d in sorted(self.batches.items())
            ],
        }
