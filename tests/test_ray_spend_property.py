"""A cluster's spend limit, driven as actors drive it (no Ray: the coordinator runs in this
process): any arrivals, worst cases, real usages, cancellations, give-backs, actors killed
with reservations in flight and coordinator restarts; what the actors together may have been
billed never exceeds the limit."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routmy_async._exceptions import SpendLimitError
from routmy_async._spend import Reservation
from routmy_async.integrations.ray import _cluster_spend
from routmy_async.integrations.ray._cluster_spend import ClusterSpendLimit
from routmy_async.integrations.ray._coordinator import CoordinatorCore, Snapshot
from routmy_async.integrations.ray._grants import Settings
from routmy_async.integrations.ray._spend_book import BookTotals, SpendBook

MODELS = [
    {"id": "m/a", "token_multiplier": 1},
    {"id": "m/b", "token_multiplier": 0.1},
    {"id": "m/c", "token_multiplier": 2.5},
]
MEMBERS = 4


class MemoryStore:
    """Ray's GCS, in memory."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def load(self) -> Snapshot | None:
        return self.snapshot

    def save(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def clear(self) -> None:
        self.snapshot = None


class Restartable:
    """The coordinator as the members see it: the actor handle, whose actor may be lost and
    brought back from its store between any two calls."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = MemoryStore()
        self.core = CoordinatorCore(settings, store=self.store)
        self.last: tuple[str, int, int, int, int, int] | None = None

    def restart(self) -> None:
        self.core = CoordinatorCore(self.settings, store=self.store, restarted=True)

    async def spend_call(
        self, member: str, seq: int, spent: int, returned: int, need: int, want: int
    ) -> tuple[int, BookTotals]:
        self.last = (member, seq, spent, returned, need, want)
        return await self.core.spend_call(*self.last)

    async def replay(self) -> None:
        """Ray sends the last call again to a restarted actor: it must not count twice."""
        if self.last is not None:
            await self.core.spend_call(*self.last)


start = st.tuples(
    st.just("start"),
    st.integers(0, MEMBERS - 1),
    st.sampled_from(["m/a", "m/b", "m/c"]),
    st.integers(0, 400),  # the prompt's tokens
    st.integers(1, 300),  # its output cap
)
end = st.tuples(
    st.just("end"),
    st.integers(0, MEMBERS - 1),
    st.integers(0, 50),  # which of the member's attempts in flight
    st.sampled_from(["usage", "usage", "in_full", "release"]),
    st.floats(0, 1),
    st.floats(0, 1),
)
event = st.one_of(
    start,
    start,
    end,
    end,
    st.tuples(st.just("kill"), st.integers(0, MEMBERS - 1)),
    st.tuples(st.just("close"), st.integers(0, MEMBERS - 1)),
    st.tuples(st.just("restart")),
    st.tuples(st.just("yield")),
)


class SteppedClock:
    """The members' clock: it moves only when the events say time passed."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Cluster:
    def __init__(self, limit_units: int, clock: SteppedClock) -> None:
        self.clock = clock
        self.limit = Decimal(limit_units)
        self.coordinator = Restartable(Settings(spend_units=limit_units * 10**6))
        self.gone: list[ClusterSpendLimit] = []  # killed or closed: their figures stay
        self.members = [self.member(index) for index in range(MEMBERS)]
        self.in_flight: list[list[Reservation]] = [[] for _ in range(MEMBERS)]

    def member(self, index: int) -> ClusterSpendLimit:
        limit = ClusterSpendLimit(
            self.coordinator, default_output_tokens=None, member=f"m{index}-{len(self.gone)}"
        )
        limit.add_models(MODELS)
        return limit

    def billed(self) -> Decimal:
        """What the server may have billed: every settled charge and every reservation
        still held (a killed actor's never settle)."""
        total = Decimal(0)
        for limit in [*self.members, *self.gone]:
            units = limit.spend.units
            assert units is not None
            total += units.spent + units.reserved
        return total

    async def run(self, step: tuple[Any, ...]) -> None:
        kind = step[0]
        if kind == "start":
            await self.start(*step[1:])
        elif kind == "end":
            self.end(*step[1:])
        elif kind == "kill":
            self.replace(step[1])
        elif kind == "close":
            member = self.members[step[1]]
            await member.aclose()  # what is still in flight stays held
            self.replace(step[1])
        elif kind == "restart":
            self.coordinator.restart()
            await self.coordinator.replay()
        else:
            self.clock.now += 1.0  # a while: a refusal's hold runs out
            await asyncio.sleep(0)  # background give-backs run

    async def start(self, index: int, model: str, prompt: int, cap: int) -> None:
        member = self.members[index]
        try:
            await member.make_room(model, input_tokens=prompt, max_output_tokens=cap)
            reservation = member.reserve(model, input_tokens=prompt, max_output_tokens=cap)
        except SpendLimitError as refusal:
            # Refused only when the cluster's book really had no room for it, now or (a
            # refusal held without asking again) at the coordinator's last answer.
            assert refusal.estimate is not None
            if "as the coordinator answered" in str(refusal):
                assert refusal.limit is not None and refusal.reserved is not None
                room = refusal.limit - refusal.spent - refusal.reserved
                assert room < refusal.estimate
                return
            book = self.coordinator.core.spend_book
            assert book is not None
            assert book.limit - book.committed < refusal.estimate * 10**6
            return
        self.in_flight[index].append(reservation)

    def end(self, index: int, which: int, how: str, inputs: float, outputs: float) -> None:
        flight = self.in_flight[index]
        if not flight:
            return
        reservation = flight.pop(which % len(flight))
        if how == "usage":
            reservation.settle(
                input_tokens=int(reservation.input_tokens * inputs),
                output_tokens=int(reservation.output_tokens * outputs),
            )
        elif how == "in_full":
            reservation.settle_in_full()
        else:
            reservation.release()

    def replace(self, index: int) -> None:
        """The actor is gone (its reservations with it, unsettled); Ray starts another."""
        self.gone.append(self.members[index])
        self.members[index] = self.member(index)
        self.in_flight[index] = []


@settings(max_examples=300, deadline=None)
@given(limit=st.integers(1, 3_000), events=st.lists(event, max_size=80))
def test_what_the_actors_may_have_been_billed_never_exceeds_the_cluster_limit(
    limit: int, events: list[tuple[Any, ...]]
) -> None:
    """After every event (an attempt, its end, an actor killed or closed, the coordinator
    restarted), every settled charge plus every reservation held, summed over all actors
    (gone ones included), is within the limit, and the coordinator's book never counts less
    than that."""

    async def main(clock: SteppedClock) -> None:
        cluster = Cluster(limit, clock)
        for step in events:
            await cluster.run(step)
            billed = cluster.billed()
            assert billed <= cluster.limit
            book = cluster.coordinator.core.spend_book
            assert book is not None
            assert book.committed <= book.limit
            assert Decimal(book.committed) / 10**6 >= billed

    with mock.patch.object(_cluster_spend, "_clock", SteppedClock()) as clock:
        asyncio.run(main(clock))


@given(
    need=st.integers(0, 100),
    want=st.integers(0, 100),
    spent=st.integers(0, 100),
    n=st.integers(0, 3),
)
def test_a_book_hands_out_nothing_beyond_its_limit(
    need: int, want: int, spent: int, n: int
) -> None:
    """A block is all or at least ``need``, or nothing; reports never raise what is left
    above what was given back."""
    book = SpendBook(250)
    for index in range(n):
        given_ = book.take(f"m{index}", need, want)
        assert given_ == 0 or need <= given_ <= max(need, want)
        assert book.committed <= book.limit
        book.report(f"m{index}", spent=min(spent, given_), returned=0)
    assert book.committed <= book.limit


def test_a_book_counts_a_member_that_left_holding_a_block_as_spent() -> None:
    """What a member still held when it left is spent: never handed out again."""
    book = SpendBook(100)
    assert book.take("a", 10, 60) == 60
    book.report("a", spent=20, returned=10)
    book.leave("a")
    assert (book.spent, book.held) == (50, {})
    assert book.take("b", 60, 60) == 0
    assert book.take("b", 10, 60) == 50


def test_a_call_sent_again_is_answered_as_it_was_and_applied_once() -> None:
    """A call Ray sends again (its actor died before answering) gets the same block and
    gives nothing back twice, also from a book restored from its saved state; an older call
    arriving late changes nothing."""
    book = SpendBook(100)
    assert book.call("a", 1, spent=0, returned=0, need=10, want=40) == 40
    assert book.call("a", 2, spent=5, returned=20, need=0, want=0) == 0
    again = SpendBook(100, state=book.state())
    assert again.call("a", 2, spent=5, returned=20, need=0, want=0) == 0
    assert again.call("a", 1, spent=0, returned=0, need=10, want=40) == 0  # stale
    assert (again.spent, again.held) == (5, {"a": 15})
    assert book.call("b", 1, spent=0, returned=0, need=10, want=40) == 40
    assert book.call("b", 1, spent=0, returned=0, need=10, want=40) == 40  # sent again
    assert book.held["b"] == 40
    with pytest.raises(ValueError, match="whole numbers"):
        book.take("b", -1, 0)
