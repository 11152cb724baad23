"""The rate budget's pure policy, driven the way the transport drives it (reserve, sleep,
ask ``remaining`` again on waking, queue again behind a pause), on a simulated clock, for any
pattern of arrivals, token estimates, real usages and 429 pauses."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from routmy_async import RateLimit

_RECHECK = 1.0  # the transport's token re-check period
_EPS = 1e-6


@dataclass
class Request:
    arrives: float
    tokens: int
    used: int
    duration: float
    gives_up: float | None = None  # cancelled then, if it has not started (a wait_for)
    start: float = -1.0
    reserved: bool = False
    ticket: float | None = None
    slot: float = 0.0
    ended: float = field(default=-1.0)
    given_back_before: float = 0.0  # what finished requests had given back when it started


def simulate(
    limit: RateLimit,
    now: list[float],
    requests: list[Request],
    pauses: list[tuple[float, float]],
) -> None:
    """Run every request through ``limit`` on the clock ``now``, as the transport does."""
    events: list[tuple[float, int, str, int]] = []
    order = itertools.count()
    given_back = 0.0
    for index, request in enumerate(requests):
        heapq.heappush(events, (request.arrives, next(order), "arrive", index))
    for index, request in enumerate(requests):
        if request.gives_up is not None:
            heapq.heappush(events, (request.arrives + request.gives_up, next(order), "quit", index))
    for index, (at, _) in enumerate(pauses):
        heapq.heappush(events, (at, next(order), "pause", index))
    while events:
        at, _, kind, index = heapq.heappop(events)
        now[0] = at
        if kind == "pause":
            limit.pause(pauses[index][1])
            continue
        request = requests[index]
        if request.start < 0 and request.gives_up is not None and kind != "quit":
            if at >= request.arrives + request.gives_up:
                continue  # gave up already
        if kind == "quit":
            if request.start < 0 and request.reserved:
                limit.cancel(request.slot, request.tokens, request.ticket)
            continue
        if kind == "end":
            limit.correct(request.tokens, request.used)
            if limit.tokens_per_minute:
                given_back += min(request.tokens, limit.tokens_per_minute) - request.used
            continue
        if kind == "arrive":
            request.slot, request.ticket = limit.reserve_turn(request.tokens)
            request.reserved = True
        wait = limit.remaining(request.slot, request.ticket)
        if wait <= 0:
            limit.started(request.ticket)
            request.start = at
            request.given_back_before = given_back
            request.ended = at + request.duration
            heapq.heappush(events, (request.ended, next(order), "end", index))
            continue
        if limit.inside_pause(request.slot):
            limit.cancel(request.slot, request.tokens, request.ticket)
            request.slot, request.ticket = limit.reserve_turn(request.tokens)
            wait = limit.remaining(request.slot, request.ticket)
        if request.ticket is not None:
            wait = min(wait, _RECHECK)
        heapq.heappush(events, (at + max(wait, 1e-3), next(order), "wake", index))


requests_strategy = st.lists(
    st.builds(
        Request,
        arrives=st.floats(0, 20),
        tokens=st.integers(1, 900),
        used=st.integers(0, 900),
        duration=st.floats(0.01, 5),
        gives_up=st.none() | st.floats(0, 10),
    ),
    min_size=1,
    max_size=40,
)
pauses_strategy = st.lists(st.tuples(st.floats(0, 30), st.floats(0.1, 5)), max_size=4)


@settings(max_examples=500)
@given(
    rpm=st.sampled_from([None, 30.0, 120.0, 600.0]),
    tpm=st.sampled_from([None, 1_000.0, 6_000.0]),
    requests=requests_strategy,
    pauses=pauses_strategy,
)
def test_every_request_starts_within_the_budget_and_never_inside_a_pause(
    rpm: float | None,
    tpm: float | None,
    requests: list[Request],
    pauses: list[tuple[float, float]],
) -> None:
    now = [0.0]
    limit = RateLimit(requests_per_minute=rpm, tokens_per_minute=tpm, clock=lambda: now[0])
    simulate(limit, now, requests, pauses)
    ran = [r for r in requests if r.gives_up is None or r.start >= 0]
    assert all(request.start >= request.arrives for request in ran)  # all started
    starts = sorted(request.start for request in ran)
    if rpm:
        interval = 60 / rpm
        assert all(b - a >= interval - _EPS for a, b in itertools.pairwise(starts))
    # A pause holds every start from when it was asked for until it ends.
    for at, seconds in pauses:
        assert not any(at < start < at + seconds - _EPS for start in starts), (at, seconds)
    if tpm:
        # At every start, what had started took no more than the bucket, its refill and what
        # the usage of requests finished by then gave back (or took, above its estimate).
        rate = tpm / 60
        capacity = tpm
        for request in ran:
            t = request.start
            taken = sum(min(r.tokens, capacity) for r in ran if r.start <= t + _EPS)
            assert taken <= capacity + rate * t + request.given_back_before + 1e-3


def test_usage_given_back_lets_a_queued_request_start_at_its_next_look() -> None:
    now = [0.0]
    limit = RateLimit(tokens_per_minute=600, clock=lambda: now[0])
    first = limit.reserve_turn(500)
    assert limit.remaining(*first) == 0
    slot, ticket = limit.reserve_turn(500)
    assert limit.remaining(slot, ticket) > 30  # 400 missing at 10 a second
    limit.correct(500, 20)  # the first used 20 of its 500
    assert limit.remaining(slot, ticket) == 0


def test_a_pause_after_a_reservation_holds_it_and_puts_it_behind_the_pause() -> None:
    now = [0.0]
    limit = RateLimit(requests_per_minute=60, clock=lambda: now[0])
    limit.reserve_turn()
    slot, ticket = limit.reserve_turn()  # starts at 1.0
    now[0] = 0.5
    limit.pause(2.0)  # until 2.5
    assert limit.inside_pause(slot)
    assert limit.remaining(slot, ticket) == 2.0
    limit.cancel(slot)
    slot, ticket = limit.reserve_turn()
    assert slot >= 2.5 and not limit.inside_pause(slot)
