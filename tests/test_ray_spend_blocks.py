"""How often a process's share of a cluster spend limit asks the coordinator (no Ray: the
coordinator's core runs in this process, each call counted): blocks grow while the limit is
far, shrink near its end, and a refusal stands for a while instead of being asked again."""

from __future__ import annotations

import asyncio
from collections import deque
from decimal import Decimal
from unittest import mock

import pytest

from routmy_async import SpendLimitError
from routmy_async._spend import Reservation
from routmy_async.integrations.ray import _cluster_spend
from routmy_async.integrations.ray._cluster_spend import ClusterSpendLimit
from routmy_async.integrations.ray._coordinator import CoordinatorCore
from routmy_async.integrations.ray._grants import Settings
from routmy_async.integrations.ray._spend_book import BookTotals

MODELS = [{"id": "m", "token_multiplier": 1}]
MICRO = 10**6


class CountingCoordinator:
    """The coordinator's core, each spend call noted as ``(need, want, given, left before)``."""

    def __init__(self, limit_units: int) -> None:
        self.core = CoordinatorCore(Settings(spend_units=limit_units * MICRO))
        self.calls: list[tuple[int, int, int, int]] = []

    async def spend_call(
        self, member: str, seq: int, spent: int, returned: int, need: int, want: int
    ) -> tuple[int, BookTotals]:
        book = self.core.spend_book
        assert book is not None
        left = book.limit - book.committed
        given, totals = await self.core.spend_call(member, seq, spent, returned, need, want)
        self.calls.append((need, want, given, left))
        return given, totals


def share(coordinator: CountingCoordinator, name: str) -> ClusterSpendLimit:
    limit = ClusterSpendLimit(coordinator, default_output_tokens=None, member=name)
    limit.add_models(MODELS)
    return limit


async def attempt(limit: ClusterSpendLimit, output_cap: int) -> Reservation:
    await limit.make_room("m", input_tokens=40, max_output_tokens=output_cap)
    return limit.reserve("m", input_tokens=40, max_output_tokens=output_cap)


async def steady_stream(limit: ClusterSpendLimit, attempts: int, in_flight: int) -> None:
    """``in_flight`` attempts at a time, each using a fifth of its worst case."""
    flight: deque[Reservation] = deque()
    for _ in range(attempts):
        if len(flight) == in_flight:
            flight.popleft().settle(input_tokens=8, output_tokens=4)
        flight.append(await attempt(limit, 20))
    while flight:
        flight.popleft().settle(input_tokens=8, output_tokens=4)


async def test_a_steady_stream_asks_the_coordinator_rarely() -> None:
    """16 attempts in flight, far from the limit: blocks grow, so 2,000 attempts cost well
    under one call in twenty; closing gives everything unused back and the coordinator's
    spent is exactly what the attempts used."""
    coordinator = CountingCoordinator(10**9)
    limit = share(coordinator, "a")
    await steady_stream(limit, 2_000, 16)
    assert len(coordinator.calls) < 0.02 * 2_000
    givens = [given for _, _, given, _ in coordinator.calls if given]
    assert givens[1] > givens[0]  # the second block is larger than the first
    await limit.aclose()
    totals = coordinator.core.spend_book
    assert totals is not None and totals.held == {"a": 0}
    assert Decimal(totals.spent) / MICRO == 2_000 * 12


async def test_blocks_shrink_near_the_end_of_the_limit() -> None:
    """No block is more than an eighth of what the cluster had left at the last answer
    (or the attempt's own need), so two actors driving the limit to its end both get some
    of its last units; what they hold never exceeds the limit."""
    coordinator = CountingCoordinator(3_000)
    limits = [share(coordinator, "a"), share(coordinator, "b")]

    async def drive(limit: ClusterSpendLimit) -> int:
        done = 0
        for _ in range(400):
            try:
                held = await attempt(limit, 20)
            except SpendLimitError:
                await asyncio.sleep(0)
                continue
            held.settle(input_tokens=40, output_tokens=20)  # the whole worst case
            done += 1
            await asyncio.sleep(0)
        return done

    done = await asyncio.gather(*(drive(limit) for limit in limits))
    assert sum(done) == 3_000 // 60 and min(done) >= 5
    late = [
        (need, given, left) for need, _, given, left in coordinator.calls if left < 1_000 * MICRO
    ]
    assert late and all(given <= max(need, left // 4) for need, given, left in late)


async def test_a_refusal_stands_without_asking_again() -> None:
    """After the coordinator refuses a worst case, attempts no smaller are refused from its
    answer for a while (same figures, nothing asked); a smaller one that may fit asks; once
    the hold is over the next attempt asks again, and gets the room another actor gave back."""
    now = [0.0]
    with mock.patch.object(_cluster_spend, "_clock", lambda: now[0]):
        coordinator = CountingCoordinator(1_000)
        other, limit = share(coordinator, "other"), share(coordinator, "a")
        kept = await attempt(other, 360)  # worst case 400: the other actor holds a block of 800
        with pytest.raises(SpendLimitError, match="the cluster's limit") as first:
            await attempt(limit, 960)
        calls = len(coordinator.calls)
        for _ in range(50):
            with pytest.raises(SpendLimitError, match="as the coordinator answered") as held:
                await attempt(limit, 960)
            assert (held.value.spent, held.value.reserved, held.value.limit) == (
                first.value.spent,
                first.value.reserved,
                first.value.limit,
            )
            assert held.value.estimate == 1_000
        assert len(coordinator.calls) == calls  # the held refusals asked nothing
        assert limit.spend.refused == 51
        small = await attempt(limit, 100)  # fits what was left: it asks
        assert len(coordinator.calls) == calls + 1
        small.release()
        kept.release()
        await other.aclose()  # gives its room back: the big attempt would fit now
        with pytest.raises(SpendLimitError, match="as the coordinator answered"):
            await attempt(limit, 960)  # still within the hold: the old answer stands
        now[0] += 0.25
        await attempt(limit, 960)  # the hold is over: it asks, and fits
    assert coordinator.calls[-1][2] > 0
