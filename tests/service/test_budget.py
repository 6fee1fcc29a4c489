"""The server-wide memory budget's rules: no side starves the other."""

from __future__ import annotations

import pytest

from poolops_service.engine.budget import MemoryBudget
from poolops_service.engine.errors import Overloaded

MB = 1 << 20


def test_within_the_budget_everything_fits_and_release_gives_all_back():
    b = MemoryBudget(100 * MB)
    r1, r2 = b.reservation(), b.reservation()
    r1.add(60 * MB)
    r2.add(40 * MB)
    assert b.used == 100 * MB
    r1.release()
    r2.release()
    assert b.used == 0


def test_a_big_request_cannot_starve_small_ones():
    b = MemoryBudget(100 * MB)
    big = b.reservation()
    big.add(100 * MB)
    small = [b.reservation() for _ in range(20)]
    for r in small:  # a quarter more, in shares of up to 1 MB
        r.add(MB)
    with pytest.raises(Overloaded, match="POOLOPS_MAX_INFLIGHT_BYTES"):
        for _ in range(10):
            b.reservation().add(MB)


def test_small_traffic_cannot_starve_a_big_request_but_two_big_ones_take_turns():
    b = MemoryBudget(100 * MB)
    for _ in range(5):
        b.reservation().add(MB // 2)  # normal requests in flight
    first = b.reservation()
    first.add(150 * MB)  # more than the budget, admitted: the others hold little
    second = b.reservation()
    with pytest.raises(Overloaded):
        second.add(30 * MB)
    first.release()
    second.add(30 * MB)
