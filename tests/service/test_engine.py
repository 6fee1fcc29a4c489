"""The engine without HTTP: the op-graph cache is bounded, thread counts fit the CPU
quota, provider choice, and the batcher's ordering and error hand-back."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from poolops_service.engine.batcher import Batcher
from poolops_service.engine.errors import BadInput, Overloaded
from poolops_service.engine.ops import OpRunner
from poolops_service.engine.sessions import CPU, choose_providers, cpu_quota


def test_op_graph_cache_is_bounded_lru():
    r = OpRunner([CPU], threads=1, cache_size=2, max_elements=10_000)
    x = np.random.default_rng(0).random((1, 1, 8, 8), dtype=np.float32)
    for k in (1, 2, 3, 2):
        r.run("max", {"kernel": k}, x)
    assert len(r.cache) == 2 and r.cache.misses == 3 and r.cache.hits == 1
    r.run("max", {"kernel": 1}, x)  # evicted, so built again
    assert r.cache.misses == 4


def test_op_runner_checks_before_building():
    r = OpRunner([CPU], threads=1, cache_size=4, max_elements=100)
    with pytest.raises(BadInput, match="kernel"):
        r.run("max", {"kernel": -1}, np.zeros((1, 1, 4, 4), np.float32))
    assert len(r.cache) == 0


def test_op_runner_checks_inputs_and_outputs_as_the_op_does():
    """The engine's request check is the op's own (``OpSpec.bind``), its error a BadInput."""
    from poolops.params import ParamError
    from poolops.registry import get_op

    r = OpRunner([CPU], threads=1, cache_size=4, max_elements=10_000)
    x = np.ones((1, 3, 8, 8), np.float32)
    for name, extra, indices, backward in [
        ("se", {}, False, False),
        ("max", {"boxes": np.ones((1, 5), np.float32)}, False, False),
        ("avg", {}, True, False),
        ("spp", {"valid": np.ones((1, 2), np.int64)}, False, True),
    ]:
        with pytest.raises(ParamError) as want:
            get_op(name).bind(("x", *extra), ("y", "indices") if indices else ("y",), backward)
        with pytest.raises(BadInput) as got:
            r.plan(name, {}, x, extra=extra, indices=indices, backward=backward)
        assert got.value.message == str(want.value)
        assert got.value.details["param"] == want.value.param


def test_threads_fit_the_quota_and_cpu_is_chosen_without_cuda():
    import os

    assert 1 <= cpu_quota() <= len(os.sched_getaffinity(0))
    assert choose_providers("cpu") == [CPU]
    assert choose_providers("auto")[-1] == CPU


def test_batcher_keeps_order_and_hands_errors_to_each_caller():
    seen = []

    def run(items):
        seen.append(len(items))
        if any(i < 0 for i in items):
            raise BadInput("negative")
        return [i * 10 for i in items]

    async def main():
        b = Batcher("t", lambda items, control: run(items), max_size=8, wait_s=0.05, max_queue=20)
        results = await asyncio.gather(*[b.submit_many([i]) for i in range(6)])
        assert [r[0] for r in results] == [0, 10, 20, 30, 40, 50]
        with pytest.raises(BadInput):
            await b.submit_many([-1])
        with pytest.raises(Overloaded):
            await b.submit_many(list(range(21)))
        b.close()

    asyncio.run(main())
    assert seen[0] == 6  # the six concurrent requests ran as one batch
