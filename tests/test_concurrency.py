"""The adaptive concurrency controller: its bounds for any sequence of outcomes, and the level
it settles at against a simulated server with a hidden cap on requests in flight."""

from __future__ import annotations

import heapq
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routmy_async._concurrency import AdaptiveConcurrency


def fill(controller: AdaptiveConcurrency) -> list[int]:
    """Start requests until the level is full, as a pool with endless work does."""
    tickets = []
    while (ticket := controller.try_start()) is not None:
        tickets.append(ticket)
    return tickets


def test_starts_low_and_refuses_beyond_the_level():
    """The first level is ``initial``; a start beyond it gets no ticket."""
    controller = AdaptiveConcurrency(max_concurrency=100, initial=3)
    assert len(fill(controller)) == 3
    assert controller.try_start() is None
    assert controller.in_flight == 3


def test_slow_start_doubles_per_round():
    """Before any loss, a full round of successes doubles the level."""
    controller = AdaptiveConcurrency(max_concurrency=1000, initial=4)
    for expected in (4, 8, 16, 32):
        tickets = fill(controller)
        assert len(tickets) == expected
        for ticket in tickets:
            controller.finish(ticket, "success")
    assert controller.level == 64


def test_a_loss_backs_off_gently_then_climbs_back_quickly_and_probes_slowly():
    """A loss multiplies the level by 0.85; the level then climbs back to what the server
    took (39 of the 40 sent) half the gap per round, and beyond it by one per round."""
    controller = AdaptiveConcurrency(max_concurrency=1000, initial=40)
    tickets = fill(controller)
    controller.finish(tickets[0], "loss")
    assert controller.level == 34  # floor(40 * 0.85)
    for ticket in tickets[1:]:
        controller.finish(ticket, "success")
    levels = [controller.level]
    for _ in range(5):
        for ticket in fill(controller):
            controller.finish(ticket, "success")
        levels.append(controller.level)
    assert levels == [36, 37, 38, 39, 40, 41]


def test_a_cap_that_stays_put_is_probed_less_often():
    """Against a hard cap of 8: a probe at 9 refused brings the level back to 8, not below;
    once two probes in a row were refused there, the next comes after four rounds, not
    one. Probes that get through end that: the level then grows by one per round again."""
    controller = AdaptiveConcurrency(max_concurrency=100, initial=9)
    probes: list[int] = []
    for _ in range(14):
        tickets = fill(controller)
        probes.append(len(tickets))
        for ticket in tickets[8:]:
            controller.finish(ticket, "loss")
        for ticket in tickets[:8]:
            controller.finish(ticket, "success")
        assert controller.level >= 8
    # A round of 9 is a probe (one refused): every other round, then every fifth.
    assert probes == [9, 8, 9, 8, 9, 8, 8, 8, 8, 9, 8, 8, 8, 8]
    for _ in range(12):  # the cap rose: every round gets through
        for ticket in fill(controller):
            controller.finish(ticket, "success")
    assert controller.level >= 16


def test_losses_of_one_round_cut_once_and_take_one_each_off_the_level():
    """Losses of requests started before the last cut do not cut again, but each says the
    server took one fewer than was sent: 100 refused bring the level to half, no lower."""
    controller = AdaptiveConcurrency(max_concurrency=1000, initial=100)
    tickets = fill(controller)
    for ticket in tickets[:10]:
        controller.finish(ticket, "loss")
    assert controller.level == 85  # floor(100 * 0.85): the server took 90
    for ticket in tickets[10:]:
        controller.finish(ticket, "loss")
    assert controller.level == 50
    assert (controller.losses, controller.cuts) == (100, 1)
    tickets = fill(controller)  # nothing in flight: one probe, though slots are held
    controller.finish(tickets[0], "loss")
    assert controller.cuts == 2


def test_slow_start_grows_by_half_above_a_quarter_of_the_ceiling():
    """Doubling per round up to a quarter of max_concurrency, then x1.5 per round: a rate
    window refuses only after the burst that overfills it was sent, so the burst is smaller."""
    controller = AdaptiveConcurrency(max_concurrency=64, initial=4)
    rounds = []
    for _ in range(5):
        tickets = fill(controller)
        rounds.append(len(tickets))
        for ticket in tickets:
            controller.finish(ticket, "success")
    assert rounds == [4, 8, 16, 24, 36]


def test_a_full_rate_window_is_not_a_smaller_cap():
    """The server took 39 in flight; later 16 of 36 are refused (a full rate window, not a cap
    of 20): the level is cut once by 0.85 from the 36, the further refusals of that round take
    nothing more off (the old rule took one off each, to 20), and the level climbs back to
    the 36 it had within five rounds."""
    controller = AdaptiveConcurrency(max_concurrency=1000, initial=40)
    tickets = fill(controller)
    controller.finish(tickets[0], "loss")
    for ticket in tickets[1:]:
        controller.finish(ticket, "success")
    tickets = fill(controller)
    assert len(tickets) == 36
    for ticket in tickets[:16]:
        controller.finish(ticket, "loss")
    assert controller.level == 30  # floor(36 * 0.85), and no lower
    assert controller.cuts == 2
    for ticket in tickets[16:]:
        controller.finish(ticket, "success")
    for _ in range(5):
        for ticket in fill(controller):
            controller.finish(ticket, "success")
    assert controller.level >= 36


def test_held_slots_are_no_more_than_the_requests_that_can_give_them_back():
    """19 of 20 refused: each holds a slot only while a request in flight may succeed and give
    it back, so the last one standing does not leave the pool waiting for 19 successes."""
    controller = AdaptiveConcurrency(max_concurrency=1000, initial=20)
    tickets = fill(controller)
    for ticket in tickets[:19]:
        controller.finish(ticket, "loss")
        assert controller.debt <= controller.in_flight
    assert controller.debt == 1
    controller.finish(tickets[19], "success")
    assert controller.debt == 0
    assert len(fill(controller)) == controller.level


def test_a_lost_slot_waits_for_a_success():
    """After losses, their slots stay taken until successes give them back; with nothing in
    flight one request may still start, so a pool that only fails keeps probing."""
    controller = AdaptiveConcurrency(max_concurrency=1000, initial=20)
    tickets = fill(controller)
    for ticket in tickets[:5]:
        controller.finish(ticket, "loss")
    assert controller.level == 15  # one cut, from the 20 in flight; the server took 15
    assert controller.debt == 5
    assert fill(controller) == []  # 15 in flight + 5 held = 20 >= 15
    for ticket in tickets[5:]:
        controller.finish(ticket, "success")
    assert controller.debt == 0
    assert len(fill(controller)) == controller.level
    stuck = AdaptiveConcurrency(max_concurrency=10, initial=10)
    for _ in range(50):
        probe = fill(stuck)
        assert len(probe) >= 1
        for ticket in probe:
            stuck.finish(ticket, "loss")
    assert stuck.level == 1


def test_never_above_max_nor_below_one():
    """Successes stop at max_concurrency; losses stop at 1."""
    controller = AdaptiveConcurrency(max_concurrency=6, initial=2)
    for _ in range(10):
        for ticket in fill(controller):
            controller.finish(ticket, "success")
    assert controller.level == 6 == controller.peak
    for _ in range(30):
        first, *others = fill(controller)
        controller.finish(first, "loss")
        for ticket in others:
            controller.finish(ticket, "neutral")
    assert controller.level == 1


def test_neutral_outcomes_change_nothing():
    """A failure that says nothing about load (a 400, a 502) frees its slot, nothing more."""
    controller = AdaptiveConcurrency(max_concurrency=50, initial=10)
    for ticket in fill(controller):
        controller.finish(ticket, "neutral")
    assert controller.level == 10
    assert controller.in_flight == 0


def test_an_idle_pool_does_not_inflate_the_level():
    """Successes do not grow a level more than twice the most requests ever in flight."""
    controller = AdaptiveConcurrency(max_concurrency=1000, initial=20)
    for _ in range(100):
        ticket = controller.try_start()
        assert ticket is not None
        controller.finish(ticket, "success")
    assert controller.level == 20
    for _ in range(11):
        fill(controller)  # the pool is busy once: the level may then grow, up to twice that
    for ticket in list(controller._open):
        controller.finish(ticket, "success")
    for _ in range(100):
        ticket = controller.try_start()
        assert ticket is not None
        controller.finish(ticket, "success")
    assert controller.level == 41


@pytest.mark.parametrize(
    "options",
    [
        {"max_concurrency": 0},
        {"max_concurrency": 2.5},
        {"max_concurrency": True},
        {"max_concurrency": 4, "initial": 0},
        {"max_concurrency": 4, "backoff": 1},
        {"max_concurrency": 4, "backoff": 0},
        {"max_concurrency": 4, "backoff": "0.5"},
    ],
)
def test_bad_settings_are_refused(options):
    """Bounds must be whole numbers >= 1 and the backoff a factor in (0, 1)."""
    with pytest.raises(ValueError):
        AdaptiveConcurrency(**options)


def test_bad_finish_is_refused():
    """An unknown outcome, or a ticket handed back twice, is an error."""
    controller = AdaptiveConcurrency(max_concurrency=4)
    ticket = controller.try_start()
    assert ticket is not None
    with pytest.raises(ValueError, match="outcome"):
        controller.finish(ticket, "maybe")  # type: ignore[arg-type]
    controller.finish(ticket, "success")
    with pytest.raises(ValueError, match="not in flight"):
        controller.finish(ticket, "success")
    assert repr(controller) == "<AdaptiveConcurrency level=4 in_flight=0 max=4>"


actions = st.lists(
    st.tuples(st.sampled_from(["start", "success", "loss", "neutral"]), st.integers(0, 10**6)),
    max_size=400,
)


@given(
    max_concurrency=st.integers(1, 300),
    initial=st.integers(1, 300),
    backoff=st.floats(0.5, 0.95),
    script=actions,
)
def test_bounds_hold_for_any_sequence(max_concurrency, initial, backoff, script):
    """For any order of starts and outcomes: 1 <= level <= max, a start is refused exactly
    when the level is full, a success never lowers the level, a loss or a neutral outcome
    never raises it, and one cut lowers it by at most the backoff factor."""
    controller = AdaptiveConcurrency(
        max_concurrency=max_concurrency, initial=initial, backoff=backoff
    )
    open_tickets: list[int] = []
    for action, pick in script:
        before = controller.level
        if action == "start":
            full = controller.in_flight > 0 and (
                controller.in_flight + controller.debt >= controller.level
            )
            ticket = controller.try_start()
            assert (ticket is None) == full
            if ticket is not None:
                open_tickets.append(ticket)
                assert controller.in_flight <= controller.level
        elif open_tickets:
            ticket = open_tickets.pop(pick % len(open_tickets))
            cuts, busy = controller.cuts, controller.in_flight
            controller.finish(ticket, action)
            after = controller.level
            if action == "loss":
                # A held slot waits for a success: no more than the requests left to give one.
                assert controller.debt <= controller.in_flight
            if action == "success":
                assert after >= before
            else:
                assert after <= before
            if controller.cuts > cuts:
                # Cut from the level, or from what was in flight when fewer were.
                assert after >= max(1, math.floor(min(before, busy) * backoff) - 1)
        assert 1 <= controller.level <= max_concurrency
        assert controller.in_flight == len(open_tickets)
        assert 0 <= controller.debt <= max(controller.level, before)
        assert controller.peak >= controller.level
        # Never inflated far beyond what the pool used.
        first_level = min(initial, max_concurrency)
        assert controller.level <= max(first_level, 2 * controller.peak_in_flight + 1)


def test_a_retried_loss_goes_into_a_freed_slot_before_any_new_start():
    """A request whose attempt was refused and is retried is parked: no new request starts
    while it waits, and its retry goes only into the slot a request leaving the server hands
    it (or when nothing else is in flight). Its next loss cuts again: it is a start at the
    lowered level."""
    controller = AdaptiveConcurrency(max_concurrency=100, initial=9)
    first, *others = fill(controller)
    controller.lost(first)
    assert (controller.level, controller.cuts, controller.parked) == (7, 1, 1)
    assert controller.in_flight == 9  # the parked request is still the pool's
    assert not controller.try_resume(first)  # eight on the server: no slot yet
    assert controller.try_start() is None  # nor for a new request
    controller.finish(others.pop(), "success")
    assert controller.credits == 1 and controller.try_start() is None
    assert controller.try_resume(first)  # into the slot the success freed
    assert (controller.parked, controller.credits) == (0, 0)
    assert controller.try_start() is None  # 8 in flight, level 7
    controller.lost(first)
    assert controller.cuts == 2
    for ticket in others:
        controller.finish(ticket, "neutral")  # a neutral failure left the server too
    assert controller.try_resume(first)
    controller.finish(first, "success")
    assert controller.in_flight == 0 and len(fill(controller)) == controller.level


def test_a_parked_request_given_up_frees_nothing_and_holds_nothing():
    """A parked request cancelled before its retry (its owner left) ends its ticket: the
    slot kept for it goes, and new starts are no longer held for it."""
    controller = AdaptiveConcurrency(max_concurrency=10, initial=4)
    first, second, *_ = fill(controller)
    controller.lost(first)
    controller.finish(second, "success")
    assert controller.credits == 1
    controller.finish(first, "neutral")
    assert (controller.parked, controller.credits, controller.in_flight) == (0, 0, 2)
    assert controller.try_start() is not None
    with pytest.raises(ValueError, match="not in flight"):
        controller.try_resume(first)
    with pytest.raises(ValueError, match="not in flight"):
        controller.lost(first)


parking = st.lists(
    st.tuples(
        st.sampled_from(["start", "success", "loss", "neutral", "lost", "resume"]),
        st.integers(0, 10**6),
    ),
    max_size=300,
)


def _play_parking(
    controller: AdaptiveConcurrency, action: str, pick: int, pool: dict[str, list[int]]
) -> None:
    """One step of a pool whose retried losses park; checks what each step promises."""
    active, parked = pool["active"], pool["parked"]
    if action == "start":
        ticket = controller.try_start()
        if len(parked) > controller.credits:
            assert ticket is None  # a parked retry waits for a slot: it goes first
        if ticket is not None:
            active.append(ticket)
    elif action == "lost" and active:
        ticket = active.pop(pick % len(active))
        controller.lost(ticket)
        parked.append(ticket)
    elif action == "resume" and parked:
        ticket = parked[pick % len(parked)]
        freed, alone = controller.credits, not active
        if controller.try_resume(ticket):
            assert freed or alone
            parked.remove(ticket)
            active.append(ticket)
        else:
            assert not freed and not alone
    elif action in ("success", "loss", "neutral") and (active or parked):
        everyone = active + parked
        ticket = everyone[pick % len(everyone)]
        (active if ticket in active else parked).remove(ticket)
        controller.finish(ticket, action)  # type: ignore[arg-type]


@given(
    max_concurrency=st.integers(1, 64),
    initial=st.integers(1, 64),
    backoff=st.floats(0.5, 0.95),
    script=parking,
)
def test_parked_retries_keep_the_bounds_and_their_hold_ends(
    max_concurrency, initial, backoff, script
):
    """For any order of starts, outcomes, retried losses and retries: 1 <= level <= max,
    never more requests in the pool than max_concurrency, slots kept for parked retries
    never more than the parked ones; and from any state the hold ends: as the requests in
    flight finish, every parked retry goes, and then a new request may start."""
    controller = AdaptiveConcurrency(
        max_concurrency=max_concurrency, initial=min(initial, max_concurrency), backoff=backoff
    )
    pool: dict[str, list[int]] = {"active": [], "parked": []}
    for action, pick in script:
        _play_parking(controller, action, pick, pool)
        assert 1 <= controller.level <= max_concurrency
        assert controller.in_flight == len(pool["active"]) + len(pool["parked"])
        assert controller.in_flight <= max_concurrency
        assert controller.parked == len(pool["parked"])
        assert 0 <= controller.credits <= controller.parked
    active, parked = pool["active"], pool["parked"]
    for _ in range(len(active) + len(parked) + 1):
        for ticket in list(parked):
            if controller.try_resume(ticket):
                parked.remove(ticket)
                active.append(ticket)
        if not parked:
            break
        assert active  # with nothing else in flight a parked retry always goes
        controller.finish(active.pop(0), "success")
    assert not parked and controller.parked == controller.credits == 0
    while active:
        controller.finish(active.pop(), "success")
    assert controller.try_start() is not None


def run_against_cap(cap: int, *, rounds: int, seed: int) -> tuple[float, float]:
    """A server that admits ``cap`` requests in flight and answers the rest with a loss; each
    admitted request takes 1 to 3 ticks. Returns the mean admitted in flight over the second
    half, and the losses per admitted request."""
    rng = random.Random(seed)
    controller = AdaptiveConcurrency(max_concurrency=4 * cap + 8)
    running: list[tuple[int, int]] = []  # (ends at tick, ticket)
    admitted_sum = admitted_total = losses = 0
    for tick in range(rounds):
        while running and running[0][0] == tick:
            controller.finish(heapq.heappop(running)[1], "success")
        for ticket in fill(controller):
            if len(running) < cap:
                heapq.heappush(running, (tick + rng.randint(1, 3), ticket))
                admitted_total += 1
            else:
                controller.finish(ticket, "loss")
                losses += 1
        if tick >= rounds // 2:
            admitted_sum += len(running)
    return admitted_sum / (rounds - rounds // 2), losses / max(1, admitted_total)


@settings(max_examples=40)
@given(cap=st.integers(1, 200), seed=st.integers(0, 2**16))
def test_settles_near_a_hidden_cap(cap, seed):
    """Against a hidden cap K on requests in flight, the level keeps at least 90% of K busy
    on average, and the probes above K cost at most 2/K losses per admitted request (a fixed
    level of 2K costs one per admitted request)."""
    busy, loss_rate = run_against_cap(cap, rounds=400, seed=seed)
    assert busy >= 0.9 * cap
    assert loss_rate <= 2 / cap
