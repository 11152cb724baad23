"""The spend limit on a simulated clock, driven as a call path drives it: any arrivals,
estimates, real usages, cancellations, timeouts and retries; every amount checked exactly
against a reference computed independently in integers."""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routmy_async._exceptions import SpendLimitError
from routmy_async._spend import Price, Reservation, SpendLimit

# token_multiplier values as a models list writes them, and prices per million tokens.
MULTIPLIERS = {"m/a": "1", "m/b": "0.1", "m/c": "2.5", "m/d": "0.333333"}
PRICES = {"m/a": ("0.15", "0.6"), "m/b": ("3", "15"), "m/c": ("0", "1"), "m/d": ("1.25", "10")}
OUTCOMES = ("ok", "ok", "ok", "error", "timeout", "cancel", "no_usage")


@dataclass
class Attempt:
    duration: int
    outcome: str
    input_share: float  # of the estimate, the real prompt tokens (above 1: an overshoot)
    output_share: float  # of the cap, the real completion tokens
    reports_cost: bool


@dataclass
class Request:
    arrives: int
    model: str
    input_tokens: int
    max_output_tokens: int
    attempts: list[Attempt]
    refused: bool = False
    done: bool = False


@dataclass
class Reference:
    """What the ledger must hold, computed without it: exact decimals of tokens x rates."""

    spent_units: Decimal = Decimal(0)
    spent_dollars: Decimal = Decimal(0)


def units_of(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    return (input_tokens + output_tokens) * Decimal(MULTIPLIERS[model])


def dollars_of(model: str, input_tokens: int, output_tokens: int) -> Decimal:
    price_in, price_out = (Decimal(p) / 10**6 for p in PRICES[model])
    return input_tokens * price_in + output_tokens * price_out


def attempts(overshoot: bool) -> st.SearchStrategy[list[Attempt]]:
    share = st.floats(0, 1.5 if overshoot else 1)
    attempt = st.builds(
        Attempt,
        duration=st.integers(1, 50),
        outcome=st.sampled_from(OUTCOMES),
        input_share=share,
        output_share=share,
        reports_cost=st.booleans(),
    )
    return st.lists(attempt, min_size=1, max_size=4)


def requests(overshoot: bool) -> st.SearchStrategy[list[Request]]:
    request = st.builds(
        Request,
        arrives=st.integers(0, 200),
        model=st.sampled_from(sorted(MULTIPLIERS)),
        input_tokens=st.integers(0, 2000),
        max_output_tokens=st.integers(0, 2000),
        attempts=attempts(overshoot),
    )
    return st.lists(request, min_size=1, max_size=60)


def make_limit(max_units: int, max_dollars: str) -> SpendLimit:
    prices = {model: Price(*pair) for model, pair in PRICES.items()}
    limit = SpendLimit(max_units=max_units, max_dollars=max_dollars, prices=prices)
    limit.add_models(
        [{"id": model, "token_multiplier": value} for model, value in MULTIPLIERS.items()]
    )
    return limit


def simulate(limit: SpendLimit, plan: list[Request], check) -> Reference:
    """Run every request's attempts through ``limit`` in time order; ``check`` after each event."""
    reference = Reference()
    events: list[tuple[int, int, str, int, int]] = []
    order = itertools.count()
    held: dict[tuple[int, int], Reservation] = {}
    for index, request in enumerate(plan):
        heapq.heappush(events, (request.arrives, next(order), "start", index, 0))
    while events:
        now, _, kind, index, number = heapq.heappop(events)
        request = plan[index]
        attempt = request.attempts[number]
        if kind == "start":
            spend = limit.spend
            assert spend.units is not None and spend.dollars is not None
            worst_units = units_of(request.model, request.input_tokens, request.max_output_tokens)
            worst_dollars = dollars_of(
                request.model, request.input_tokens, request.max_output_tokens
            )
            fits = (
                spend.units.spent + spend.units.reserved + worst_units <= spend.units.limit
                and spend.dollars.spent + spend.dollars.reserved + worst_dollars
                <= spend.dollars.limit
            )
            try:
                reservation = limit.reserve(
                    request.model,
                    input_tokens=request.input_tokens,
                    max_output_tokens=request.max_output_tokens,
                )
            except SpendLimitError as error:
                # A refusal is justified: the worst case really did not fit, by the figures.
                assert not fits
                assert error.spent + error.reserved + error.estimate > error.limit
                request.refused = True
            else:
                assert fits
                held[index, number] = reservation
                heapq.heappush(events, (now + attempt.duration, next(order), "end", index, number))
        else:
            reservation = held.pop((index, number))
            real_in = int(request.input_tokens * attempt.input_share)
            real_out = int(request.max_output_tokens * attempt.output_share)
            if attempt.outcome == "ok":
                units = units_of(request.model, real_in, real_out)
                dollars = dollars_of(request.model, real_in, real_out)
                cost = None
                if attempt.reports_cost:
                    cost = str(dollars)  # the server's own figure, here the same number
                reservation.settle(input_tokens=real_in, output_tokens=real_out, cost=cost)
            elif attempt.outcome == "error":
                units = dollars = Decimal(0)
                reservation.release()
            else:  # timeout, cancel, no_usage: nobody knows what was billed
                units = units_of(request.model, request.input_tokens, request.max_output_tokens)
                dollars = dollars_of(request.model, request.input_tokens, request.max_output_tokens)
                reservation.settle_in_full()
            reference.spent_units += units
            reference.spent_dollars += dollars
            retry = attempt.outcome in ("error", "timeout") and number + 1 < len(request.attempts)
            if retry:
                heapq.heappush(events, (now + 1, next(order), "start", index, number + 1))
        check(limit, reference)
    return reference


def finish(limit: SpendLimit, reference: Reference) -> None:
    spend = limit.spend
    assert spend.units is not None and spend.dollars is not None
    assert spend.units.reserved == 0 and spend.dollars.reserved == 0
    # Exact: the integer ledger and the decimal reference agree to the last micro-unit (the
    # multipliers and prices have at most six decimals, so nothing rounds).
    assert spend.units.spent == reference.spent_units
    assert spend.dollars.spent == reference.spent_dollars


@pytest.mark.filterwarnings("error")
@given(
    plan=requests(overshoot=False),
    max_units=st.integers(0, 20_000),
    max_dollars=st.sampled_from(["0", "0.001", "0.01", "0.05", "1"]),
)
def test_spent_never_exceeds_the_limit(plan, max_units, max_dollars):
    """While real usages stay within their reservations, spent + reserved <= limit at every
    event, for units and dollars, and a refusal happens only when the worst case did not fit."""

    def check(limit: SpendLimit, reference: Reference) -> None:
        spend = limit.spend
        for totals in (spend.units, spend.dollars):
            assert totals is not None
            assert totals.spent + totals.reserved <= totals.limit
            assert totals.spent <= totals.limit
            assert totals.overshoot == 0

    limit = make_limit(max_units, max_dollars)
    finish(limit, simulate(limit, plan, check))


@given(
    plan=requests(overshoot=True),
    max_units=st.integers(0, 20_000),
    max_dollars=st.sampled_from(["0.001", "0.05", "1"]),
)
def test_an_overshoot_is_counted_and_bounded(plan, max_units, max_dollars):
    """A real usage above its reservation is counted in spent and in overshoot: spent never
    exceeds the limit by more than the recorded overshoot."""

    def check(limit: SpendLimit, reference: Reference) -> None:
        spend = limit.spend
        for totals in (spend.units, spend.dollars):
            assert totals is not None
            assert totals.spent + totals.reserved <= totals.limit + totals.overshoot
            if totals.overshoot == 0:
                assert totals.spent <= totals.limit

    limit = make_limit(max_units, max_dollars)
    reference = simulate(limit, plan, check)
    finish(limit, reference)
