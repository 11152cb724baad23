"""The cluster budget's pure grant logic: the ledger, the local allowance, and a simulated
cluster (any number of processes, clocks, latencies and request patterns) that never exceeds
the limit in any window."""

from __future__ import annotations

import heapq
import math
from collections import deque
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routmy_async.integrations.ray._grants import Allowance, Grant, GrantLedger, Settings


class Clock:
    def __init__(self, now: float = 100.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def ledger(clock: Clock, **settings: float | None) -> GrantLedger:
    return GrantLedger(Settings(**settings), clock=clock)  # type: ignore[arg-type]


def test_settings_refuse_limits_that_cannot_be_granted() -> None:
    """A request limit under 1, a zero window or a NaN is refused with the option's name."""
    with pytest.raises(ValueError, match="requests_per_minute"):
        Settings(requests=0.5)
    with pytest.raises(ValueError, match="window"):
        Settings(requests=10, window=0)
    with pytest.raises(ValueError, match="tokens_per_minute"):
        Settings(tokens=math.nan)
    with pytest.raises(TypeError, match="grant_seconds"):
        Settings(grant_seconds="2")  # type: ignore[arg-type]
    assert not Settings().limited
    assert Settings(tokens=1000).limited


def test_a_grant_is_a_fair_share_of_one_window() -> None:
    """One process gets R * V / (W + V) starts; two active processes get half of that."""
    clock = Clock()
    book = ledger(clock, requests=620, window=60.0, grant_seconds=2.0)
    first = book.grant("a", requests=10_000)
    assert first.requests == 20  # 620 * 2 / 62
    assert first.delay == 0.0
    assert first.seconds == 2.0
    second = book.grant("b", requests=10_000)
    assert second.requests == 10
    assert book.grant("b", requests=3).requests == 3  # never more than asked


def test_grants_are_paced_at_the_budget_rate() -> None:
    """Each grant opens after the previous one's share of the rate (L / R seconds a start)."""
    clock = Clock()
    book = ledger(clock, requests=62, window=60.0, grant_seconds=2.0)
    first = book.grant("a", requests=2)
    second = book.grant("a", requests=2)
    assert first.delay == 0.0
    assert second.delay == pytest.approx(2.0)  # 2 starts * 62 s / 62


def test_the_window_invariant_holds_grants_back() -> None:
    """When the span already holds R starts, the next grant opens once the oldest leaves it."""
    clock = Clock()
    book = ledger(clock, requests=4, window=10.0, grant_seconds=1.0)
    delays = [book.grant("a", requests=1).delay for _ in range(5)]
    # Paced 11/4 s apart; the fifth must wait for the first to be a whole span (11 s) old.
    assert delays[:4] == pytest.approx([0.0, 2.75, 5.5, 8.25])
    assert delays[4] == pytest.approx(11.0)


def test_giving_back_lets_the_next_grant_open_sooner() -> None:
    """Starts given back count no more: pacing rewinds and the span has room again."""
    clock = Clock()
    book = ledger(clock, requests=10, window=10.0, grant_seconds=1.0)
    taken = book.grant("a", requests=1_000)
    assert taken.requests == 1  # floor(10 * 1 / 11 / 1) -> at least one
    book.give_back(taken.id, 1, 0.0)
    assert book.grant("a").delay == 0.0
    assert book.returned_requests == 1
    assert book.spent == {"a": 1}
    book.give_back(12345, 1, 0.0)  # unknown or forgotten: nothing to do


def test_old_grants_are_forgotten() -> None:
    """A grant older than a window plus a grant can hold nobody back and is dropped."""
    clock = Clock()
    book = ledger(clock, requests=1, window=5.0, grant_seconds=1.0)
    first = book.grant("a")
    clock.now += 6.0
    assert book.grant("a").delay == 0.0
    book.give_back(first.id, 1, 0.0)  # forgotten by now: ignored
    assert book.returned_requests == 0


def test_a_pause_delays_every_new_grant_and_bumps_the_epoch() -> None:
    """A pause holds grants until it ends, and grants carry what is left of it."""
    clock = Clock()
    book = ledger(clock, requests=600)
    book.pause(3.0)
    book.pause(1.0)  # shorter than the running pause: no change
    book.pause(0.0)
    book.pause(math.inf)  # never a pause without end
    assert book.pause_state() == (1, 3.0)
    grant = book.grant("a")
    assert grant.delay == pytest.approx(3.0)
    assert grant.pause == pytest.approx(3.0)
    assert grant.epoch == 1


def test_tokens_are_granted_and_settled() -> None:
    """A token grant covers at least the request's need; over-use delays later grants and
    savings bring them forward."""
    clock = Clock()
    book = ledger(clock, tokens=6_200, window=60.0, grant_seconds=2.0)
    grant = book.grant("a", requests=5, tokens=10_000, need_tokens=50)
    assert grant.requests is None  # no request limit
    assert grant.tokens == pytest.approx(200)  # the share: 6200 * 2 / 62
    assert book.grant("a", tokens=10, need_tokens=300).tokens == 300
    late = book.grant("a", tokens=100).delay
    book.settle(-300.0)  # fewer used than estimated
    assert book.grant("a", tokens=100).delay < late + 1.0
    before = book.grant("a", tokens=1).delay
    book.settle(620.0)  # more used: 620 tokens = 6.2 s of this budget's rate
    assert book.grant("a", tokens=1).delay >= before + 6.0
    book.settle(0.0)
    ledger(clock, requests=5).settle(100.0)  # no token limit: nothing to settle


def test_an_allowance_spreads_a_grant_at_the_holders_rate() -> None:
    """Starts of a grant are spaced at the holder's share of the rate, and squeezed into the
    part of the window the holder can be sure of when that share is slower."""
    allowance = Allowance(guard=0.5)
    grant = Grant(id=1, delay=1.0, seconds=5.0, requests=3, tokens=None, spacing=1.0)
    assert allowance.add(grant, sent=10.0, received=10.5)
    # Opens at 10.5 + 1 (after the answer came), closes at 10 + 1 + 5 - 0.5 (after it went).
    assert [allowance.take(0.0) for _ in range(4)] == [11.5, 12.5, 13.5, None]
    slow = Grant(id=2, delay=1.0, seconds=5.0, requests=3, tokens=None, spacing=9.0)
    assert allowance.add(slow, sent=10.0, received=10.5)
    taken = [allowance.take(0.0) for _ in range(3)]
    assert taken == pytest.approx([11.5, 11.5 + 4 / 3, 11.5 + 8 / 3])
    assert allowance.left(12.0) == (0, 0.0)
    assert len(allowance) == 2


def test_a_grant_carries_the_holders_share_of_the_rate() -> None:
    """The spacing of a grant is the budget's pace times the processes sharing it."""
    clock = Clock()
    book = ledger(clock, requests=62, window=60.0, grant_seconds=2.0)
    assert book.grant("a").spacing == pytest.approx(1.0)
    assert book.grant("b").spacing == pytest.approx(2.0)
    assert ledger(clock, tokens=100.0).grant("a").spacing == 0.0


def test_an_allowance_refuses_a_grant_that_came_too_late() -> None:
    """A grant whose window closed before its answer arrived is not held."""
    allowance = Allowance(guard=0.25)
    grant = Grant(id=1, delay=0.0, seconds=1.0, requests=3, tokens=None)
    assert not allowance.add(grant, sent=0.0, received=2.0)
    assert len(allowance) == 0


def test_an_allowance_returns_what_it_did_not_use() -> None:
    """Expired and released grants give back their unused starts and tokens."""
    allowance = Allowance(guard=0.0)
    allowance.add(Grant(id=1, delay=0.0, seconds=1.0, requests=2, tokens=100.0), sent=0, received=0)
    allowance.add(Grant(id=2, delay=5.0, seconds=1.0, requests=2, tokens=100.0), sent=0, received=0)
    assert allowance.take(0.0, 60.0) == 0.0
    assert allowance.take(0.0, 60.0) == 5.0  # not enough tokens left in the first
    assert allowance.left(0.5) == (2, 80.0)
    assert allowance.expire(2.0) == [(1, 1, 40.0)]
    assert allowance.release() == [(2, 1, 40.0)]
    assert allowance.release() == []


def test_an_allowance_without_a_request_limit_spends_tokens_only() -> None:
    """A token-only grant allows any number of starts while its tokens last."""
    allowance = Allowance(guard=0.0)
    allowance.add(
        Grant(id=1, delay=0.0, seconds=10.0, requests=None, tokens=10.0), sent=0, received=0
    )
    assert [allowance.take(1.0, 4.0) for _ in range(3)] == [1.0, 1.0, None]
    assert allowance.left(1.0) == (1, 2.0)
    assert allowance.take(20.0) is None  # closed


def simulate(
    processes: int,
    limit: int,
    tokens: float | None,
    window: float,
    grant_seconds: float,
    wants: list[tuple[float, int, float]],
    latencies: list[float],
    offsets: list[float],
    pauses: list[tuple[float, float]],
    restarts: list[float] = [],  # noqa: B006 - never changed
) -> list[tuple[float, float]]:
    """Run a cluster as discrete events: processes ask for grants when they have none left,
    answers travel with latency, every process has its own clock, and the coordinator may
    restart (losing its book). Return the real start time and tokens of every request."""
    clock = Clock(0.0)
    settings = Settings(requests=limit, tokens=tokens, window=window, grant_seconds=grant_seconds)
    book = GrantLedger(settings, clock=clock)
    allowances = [Allowance(guard=min(0.25, grant_seconds / 4)) for _ in range(processes)]
    waiting: list[deque[float]] = [deque() for _ in range(processes)]
    fetching = [False] * processes
    events: list[tuple[float, int, str, tuple[Any, ...]]] = []
    sequence = 0
    starts: list[tuple[float, float]] = []

    def push(at: float, kind: str, *data: Any) -> None:
        nonlocal sequence
        sequence += 1
        heapq.heappush(events, (at, sequence, kind, data))

    def latency() -> float:
        return latencies[sequence % len(latencies)]

    def serve(process: int, now: float) -> None:
        local = now + offsets[process]
        for unused in allowances[process].expire(local):
            push(now + latency(), "back", *unused)
        queue = waiting[process]
        while queue:
            start = allowances[process].take(local, queue[0])
            if start is None:
                break
            starts.append((start - offsets[process], queue.popleft()))
        if queue and not fetching[process]:
            fetching[process] = True
            push(now + latency(), "grant", process, local, len(queue), queue[0])

    for at, process, amount in wants:
        push(at, "want", process % processes, amount)
    for at, seconds in pauses:
        push(at, "pause", seconds)
    for at in restarts:
        push(at, "restart")
    while events:
        now, _, kind, data = heapq.heappop(events)
        clock.now = now  # the coordinator's clock is real time; the processes' are not
        if kind == "want":
            process, amount = data
            waiting[process].append(amount)
            serve(process, now)
        elif kind == "grant":
            process, sent, count, need = data
            grant = book.grant(f"p{process}", requests=count, tokens=need * count, need_tokens=need)
            push(now + latency(), "reply", process, sent, grant)
        elif kind == "reply":
            process, sent, grant = data
            fetching[process] = False
            received = now + offsets[process]
            if not allowances[process].add(grant, sent=sent, received=received):
                push(now + latency(), "back", grant.id, grant.requests or 0, grant.tokens or 0.0)
            serve(process, now)
        elif kind == "restart":
            # A new coordinator: a new book, ids above the old ones, the budget assumed
            # spent up to the old book's horizon (what the coordinator saves outside).
            horizon = book.horizon
            book = GrantLedger(settings, clock=clock, first_id=1_000_000 * (sequence + 1))
            book.assume_spent(horizon)
        elif kind == "back":
            grant_id, count, amount = data
            book.give_back(grant_id, count, amount)
        else:
            (seconds,) = data
            book.pause(seconds)
    return starts


def most_in_any_window(starts: list[tuple[float, float]], window: float) -> tuple[int, float]:
    """The most starts, and the most tokens, in any half-open window of ``window`` seconds."""
    ordered = sorted(starts)
    most, most_tokens = 0, 0.0
    for index, (opened, _) in enumerate(ordered):
        inside = [amount for at, amount in ordered[index:] if at < opened + window - 1e-9]
        most = max(most, len(inside))
        most_tokens = max(most_tokens, sum(inside))
    return most, most_tokens


@given(
    processes=st.integers(1, 6),
    limit=st.integers(1, 25),
    window=st.floats(0.5, 8.0),
    grant_seconds=st.floats(0.2, 3.0),
    wants=st.lists(
        st.tuples(st.floats(0.0, 20.0), st.integers(0, 5), st.just(0.0)), min_size=1, max_size=60
    ),
    latency_share=st.lists(st.floats(0.0, 0.45), min_size=1, max_size=8),
    offsets=st.lists(st.floats(-1e4, 1e4), min_size=6, max_size=6),
    pauses=st.lists(st.tuples(st.floats(0.0, 20.0), st.floats(0.0, 3.0)), max_size=3),
)
def test_no_window_ever_sees_more_than_the_limit(
    processes: int,
    limit: int,
    window: float,
    grant_seconds: float,
    wants: list[tuple[float, int, float]],
    latency_share: list[float],
    offsets: list[float],
    pauses: list[tuple[float, float]],
) -> None:
    """With any number of processes, clocks, latencies, pauses and request patterns, the
    starts in every window stay within the limit, and every request starts."""
    # Latencies up to nearly half of the part of a grant the holder can use, so that an
    # answer always arrives with some of its window left (else nobody could ever start).
    usable = grant_seconds - min(0.25, grant_seconds / 4)
    latencies = [share * usable for share in latency_share]
    starts = simulate(
        processes, limit, None, window, grant_seconds, wants, latencies, offsets, pauses
    )
    assert len(starts) == len(wants)
    assert most_in_any_window(starts, window)[0] <= limit


@given(
    processes=st.integers(1, 6),
    limit=st.integers(1, 25),
    window=st.floats(0.5, 8.0),
    grant_seconds=st.floats(0.2, 3.0),
    wants=st.lists(
        st.tuples(st.floats(0.0, 20.0), st.integers(0, 5), st.just(0.0)), min_size=1, max_size=60
    ),
    latency_share=st.lists(st.floats(0.0, 0.45), min_size=1, max_size=8),
    pauses=st.lists(st.tuples(st.floats(0.0, 20.0), st.floats(0.0, 30.0)), max_size=3),
    restarts=st.lists(st.floats(0.0, 20.0), min_size=1, max_size=3),
)
def test_a_restarted_coordinator_never_lets_a_window_exceed_the_limit(
    processes: int,
    limit: int,
    window: float,
    grant_seconds: float,
    wants: list[tuple[float, int, float]],
    latency_share: list[float],
    pauses: list[tuple[float, float]],
    restarts: list[float],
) -> None:
    """A coordinator that loses its book (any number of times, while members hold and use
    its grants, through long pauses) and assumes the budget spent keeps every window within
    the limit, and every request still starts."""
    usable = grant_seconds - min(0.25, grant_seconds / 4)
    latencies = [share * usable for share in latency_share]
    offsets = [0.0, 7.0, -3.0, 100.0, -50.0, 1.5]
    starts = simulate(
        processes, limit, None, window, grant_seconds, wants, latencies, offsets, pauses, restarts
    )
    assert len(starts) == len(wants)
    assert most_in_any_window(starts, window)[0] <= limit


@given(
    processes=st.integers(1, 4),
    tokens=st.floats(100.0, 5_000.0),
    window=st.floats(1.0, 6.0),
    wants=st.lists(
        st.tuples(st.floats(0.0, 10.0), st.integers(0, 3), st.floats(1.0, 100.0)),
        min_size=1,
        max_size=40,
    ),
    offsets=st.lists(st.floats(-100.0, 100.0), min_size=4, max_size=4),
)
def test_tokens_in_any_window_stay_within_the_token_limit(
    processes: int,
    tokens: float,
    window: float,
    wants: list[tuple[float, int, float]],
    offsets: list[float],
) -> None:
    """Without corrections, reserved tokens in every window stay within the token limit too."""
    starts = simulate(processes, 1_000, tokens, window, 1.0, wants, [0.0, 0.05, 0.2], offsets, [])
    assert len(starts) == len(wants)
    most, most_tokens = most_in_any_window(starts, window)
    assert most <= 1_000
    assert most_tokens <= tokens * (1 + 1e-6)
