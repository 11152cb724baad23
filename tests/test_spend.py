"""The spend limit's pure ledger: reservations, settlements, refusals, exact integer amounts."""

from __future__ import annotations

import warnings
from decimal import Decimal

import pytest

from routmy_async._exceptions import RoutmyError, SpendLimitError
from routmy_async._spend import Price, SpendLimit, prompt_token_bound

MODELS = [
    {"id": "m/one", "token_multiplier": 1},
    {"id": "m/tenth", "token_multiplier": 0.1},
    {"id": "m/three", "token_multiplier": 3},
]


def amounts(*values: int) -> tuple[Decimal, ...]:
    return tuple(Decimal(value) for value in values)


def units_limit(max_units: float = 1000, **options) -> SpendLimit:
    limit = SpendLimit(max_units=max_units, **options)
    limit.add_models(MODELS)
    return limit


def test_reserve_holds_prompt_plus_output_cap_times_multiplier():
    """A reservation holds (prompt estimate + output cap) x the model's multiplier."""
    limit = units_limit()
    limit.reserve("m/three", input_tokens=10, max_output_tokens=20)
    totals = limit.spend.units
    assert totals is not None
    assert (totals.spent, totals.reserved, totals.left) == amounts(0, 90, 910)


def test_settle_counts_real_usage_and_frees_the_reservation():
    """Settling replaces the held worst case by the tokens the answer reported."""
    limit = units_limit()
    reservation = limit.reserve("m/three", input_tokens=10, max_output_tokens=20)
    reservation.settle(input_tokens=8, output_tokens=4)
    totals = limit.spend.units
    assert totals is not None
    assert (totals.spent, totals.reserved, totals.left) == amounts(36, 0, 964)
    assert reservation.charged_units == 36
    assert reservation.charged_dollars is None


def test_fractional_multiplier_is_exact():
    """A multiplier of 0.1 over ten million tokens adds up to exactly a million units."""
    limit = units_limit(max_units=10**7)
    for _ in range(1000):
        limit.reserve("m/tenth", input_tokens=3, max_output_tokens=7).settle(
            input_tokens=3333, output_tokens=6667
        )
    totals = limit.spend.units
    assert totals is not None
    assert totals.spent == Decimal(1_000_000)
    assert isinstance(totals.spent, Decimal)


def test_settle_in_full_counts_the_whole_reservation():
    """A cancelled or timed-out attempt is counted at its full worst case."""
    limit = units_limit()
    reservation = limit.reserve("m/one", input_tokens=5, max_output_tokens=45)
    reservation.settle_in_full()
    totals = limit.spend.units
    assert totals is not None
    assert (totals.spent, totals.reserved) == amounts(50, 0)


def test_release_counts_nothing():
    """An attempt the server refused before working is given back whole."""
    limit = units_limit()
    reservation = limit.reserve("m/one", input_tokens=5, max_output_tokens=45)
    reservation.release()
    totals = limit.spend.units
    assert totals is not None
    assert (totals.spent, totals.reserved, totals.left) == amounts(0, 0, 1000)


def test_only_the_first_settlement_counts():
    """A settle_in_full() after settle() (a finally on every way out) changes nothing."""
    limit = units_limit()
    reservation = limit.reserve("m/one", input_tokens=5, max_output_tokens=45)
    reservation.settle(input_tokens=5, output_tokens=1)
    reservation.settle_in_full()
    reservation.release()
    totals = limit.spend.units
    assert totals is not None
    assert (totals.spent, totals.reserved) == amounts(6, 0)
    assert reservation.settled


def test_refuses_what_does_not_fit_with_the_figures():
    """A reservation over what is left raises SpendLimitError with spent, reserved, limit and
    the request's estimate, and holds nothing."""
    limit = units_limit(max_units=100)
    limit.reserve("m/one", input_tokens=10, max_output_tokens=20).settle(
        input_tokens=10, output_tokens=10
    )
    limit.reserve("m/one", input_tokens=10, max_output_tokens=40)
    with pytest.raises(SpendLimitError) as caught:
        limit.reserve("m/three", input_tokens=6, max_output_tokens=5)
    error = caught.value
    assert isinstance(error, RoutmyError)
    assert (error.spent, error.reserved, error.limit, error.estimate) == (20, 50, 100, 33)
    assert (error.unit, error.model, error.missing) == ("units", "m/three", None)
    assert "'m/three'" in str(error) and "worst case 33" in str(error)
    totals = limit.spend.units
    assert totals is not None
    assert totals.reserved == 50
    assert limit.spend.refused == 1


def test_a_reservation_that_exactly_fills_the_limit_fits():
    """The limit is inclusive: reserving exactly what is left succeeds."""
    limit = units_limit(max_units=100)
    limit.reserve("m/one", input_tokens=50, max_output_tokens=50)
    totals = limit.spend.units
    assert totals is not None
    assert totals.left == 0


def test_unknown_model_is_refused_naming_the_multiplier():
    """Fail closed: a model the list does not know is refused, never counted as zero."""
    limit = units_limit()
    with pytest.raises(SpendLimitError) as caught:
        limit.reserve("m/unlisted", input_tokens=1, max_output_tokens=1)
    assert caught.value.missing == "token_multiplier"
    assert caught.value.estimate is None
    assert "'m/unlisted'" in str(caught.value) and "token_multiplier" in str(caught.value)
    assert not limit.knows("m/unlisted")
    assert limit.knows("m/one")


def test_bad_multiplier_in_the_list_teaches_nothing():
    """An item whose multiplier is missing or not a number leaves its model unpriced."""
    limit = SpendLimit(max_units=10)
    limit.add_models(
        [
            {"id": "m/none"},
            {"id": "m/text", "token_multiplier": "lots"},
            {"id": "m/negative", "token_multiplier": -1},
            {"id": "m/bool", "token_multiplier": True},
            {"token_multiplier": 1},
        ]
    )
    for model in ("m/none", "m/text", "m/negative", "m/bool"):
        assert not limit.knows(model), model


def test_no_output_cap_uses_default_and_warns_once():
    """Without max_tokens the limit reserves default_output_tokens, warns the first time, and
    counts every such request for the summary."""
    limit = units_limit(default_output_tokens=100)
    with pytest.warns(UserWarning, match="default_output_tokens=100"):
        first = limit.reserve("m/one", input_tokens=10, max_output_tokens=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        limit.reserve("m/one", input_tokens=10, max_output_tokens=None)
    assert first.output_tokens == 100
    assert limit.spend.defaulted_outputs == 2
    totals = limit.spend.units
    assert totals is not None
    assert totals.reserved == 220


def test_no_output_cap_and_no_default_is_refused():
    """A request without max_tokens, on a limit without default_output_tokens, is refused."""
    limit = units_limit()
    with pytest.raises(SpendLimitError) as caught:
        limit.reserve("m/one", input_tokens=10, max_output_tokens=None)
    assert caught.value.missing == "max_tokens"
    assert "default_output_tokens" in str(caught.value)


def test_dollar_limit_from_prices_per_million():
    """Dollars are priced from the user's prices per million input and output tokens."""
    limit = SpendLimit(max_dollars=1, prices={"m/a": Price(0.15, 0.60)})
    reservation = limit.reserve("m/a", input_tokens=1000, max_output_tokens=1000)
    dollars = limit.spend.dollars
    assert dollars is not None
    assert dollars.reserved == Decimal("0.00075")
    reservation.settle(input_tokens=1000, output_tokens=10)
    assert reservation.charged_dollars == Decimal("0.000156")
    assert limit.spend.units is None


def test_dollar_limit_uses_server_reported_cost():
    """A cost the server reports replaces the price computed from tokens."""
    limit = SpendLimit(max_dollars=1, prices={"m/a": Price(0.15, 0.60)})
    reservation = limit.reserve("m/a", input_tokens=1000, max_output_tokens=1000)
    reservation.settle(input_tokens=1000, output_tokens=10, cost=0.0123)
    dollars = limit.spend.dollars
    assert dollars is not None
    assert dollars.spent == Decimal("0.0123")


def test_dollar_limit_without_price_is_refused():
    """Fail closed: no price for the model means no request, and the error says how to fix it."""
    limit = SpendLimit(max_dollars=1)
    limit.add_models(MODELS)  # multipliers, but no pricing
    with pytest.raises(SpendLimitError) as caught:
        limit.reserve("m/one", input_tokens=1, max_output_tokens=1)
    assert (caught.value.missing, caught.value.unit) == ("price", "dollars")
    assert "Price(" in str(caught.value)


def test_models_list_pricing_prices_dollars_but_user_prices_win():
    """``pricing`` (dollars per token) from a models list prices a model; a user's price for
    the same model is kept."""
    limit = SpendLimit(max_dollars=1, prices={"m/mine": Price(1, 2)})
    limit.add_models(
        [
            {"id": "m/listed", "pricing": {"prompt": "0.000003", "completion": "0.000015"}},
            {"id": "m/mine", "pricing": {"prompt": "1", "completion": "1"}},
            {"id": "m/broken", "pricing": {"prompt": "free"}},
        ]
    )
    limit.reserve("m/listed", input_tokens=1000, max_output_tokens=100)
    limit.reserve("m/mine", input_tokens=1000, max_output_tokens=100)
    dollars = limit.spend.dollars
    assert dollars is not None
    assert dollars.reserved == Decimal("0.0045") + Decimal("0.0012")
    assert not limit.knows("m/broken")


def test_both_limits_must_fit_and_a_refusal_holds_neither():
    """With units and dollars, the tighter one refuses, and the other keeps nothing held."""
    limit = SpendLimit(max_units=10**6, max_dollars=0.001, prices={"m/one": Price(1, 1)})
    limit.add_models(MODELS)
    with pytest.raises(SpendLimitError) as caught:
        limit.reserve("m/one", input_tokens=500, max_output_tokens=501)
    assert caught.value.unit == "dollars"
    spend = limit.spend
    assert spend.units is not None and spend.dollars is not None
    assert (spend.units.reserved, spend.dollars.reserved) == amounts(0, 0)


def test_overshoot_is_counted_and_blocks_the_next_reservations():
    """A real usage above its reservation is counted as it was, recorded as overshoot, and
    reservations that no longer fit are refused."""
    limit = units_limit(max_units=100)
    reservation = limit.reserve("m/one", input_tokens=10, max_output_tokens=80)
    reservation.settle(input_tokens=30, output_tokens=80)
    totals = limit.spend.units
    assert totals is not None
    assert (totals.spent, totals.overshoot, totals.left) == amounts(110, 20, 0)
    with pytest.raises(SpendLimitError):
        limit.reserve("m/one", input_tokens=0, max_output_tokens=1)


def test_limits_round_down_and_rates_round_up():
    """A multiplier with more than six decimals rounds up, a limit rounds down."""
    limit = SpendLimit(max_units="0.0000019")
    limit.add_models([{"id": "m/tiny", "token_multiplier": "0.0000001"}])
    totals = limit.spend.units
    assert totals is not None
    assert totals.limit == Decimal("0.000001")
    limit.reserve("m/tiny", input_tokens=1, max_output_tokens=0)
    with pytest.raises(SpendLimitError):
        limit.reserve("m/tiny", input_tokens=1, max_output_tokens=0)


def test_shared_by_two_users_is_one_limit():
    """One instance used from two places (two clients) counts against one limit."""
    limit = units_limit(max_units=100)
    first_client, second_client = limit, limit
    first_client.reserve("m/one", input_tokens=30, max_output_tokens=30)
    with pytest.raises(SpendLimitError):
        second_client.reserve("m/one", input_tokens=30, max_output_tokens=30)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({}, ValueError),
        ({"max_units": -1}, ValueError),
        ({"max_units": float("inf")}, ValueError),
        ({"max_units": float("nan")}, ValueError),
        ({"max_units": "x"}, ValueError),
        ({"max_units": True}, TypeError),
        ({"max_units": 1, "default_output_tokens": -5}, ValueError),
        ({"max_units": 1, "default_output_tokens": 1.5}, ValueError),
        ({"max_dollars": 1, "prices": {"m": (1, 2)}}, TypeError),
        ({"max_dollars": 1, "prices": {"m": Price(-1, 2)}}, ValueError),
    ],
)
def test_bad_settings_are_refused(options, error):
    """Limits, prices and the default cap are checked when the limit is made."""
    with pytest.raises(error):
        SpendLimit(**options)


def test_bad_counts_are_refused():
    """Token counts must be whole numbers >= 0, and a cost a number."""
    limit = units_limit()
    with pytest.raises(ValueError, match="input_tokens"):
        limit.reserve("m/one", input_tokens=-1, max_output_tokens=1)
    with pytest.raises(ValueError, match="max_output_tokens"):
        limit.reserve("m/one", input_tokens=1, max_output_tokens=2.5)  # type: ignore[arg-type]
    reservation = limit.reserve("m/one", input_tokens=1, max_output_tokens=1)
    with pytest.raises(ValueError, match="output_tokens"):
        reservation.settle(input_tokens=1, output_tokens=-2)
    with pytest.raises(TypeError, match="cost"):
        reservation.settle(input_tokens=1, output_tokens=1, cost=[1])
    assert not reservation.settled
    assert repr(reservation) == "<Reservation m/one held>"


def test_prompt_bound_counts_utf8_bytes_and_message_overhead():
    """Text counts its UTF-8 bytes (a byte-level tokenizer makes no more tokens than bytes),
    and each message adds its template's overhead."""
    one = {"model": "m", "messages": [{"role": "user", "content": "héllo"}]}
    two = {"model": "m", "messages": [{"role": "user", "content": "héllo"}] * 2}
    assert prompt_token_bound(one) >= len("héllo".encode()) + len("user")
    assert prompt_token_bound(two) - prompt_token_bound(one) > len("useréllo".encode())


def test_prompt_bound_counts_tools_token_arrays_and_image_urls():
    """Tool schemas count their text and their property names, a token array its length,
    an image URL an allowance."""
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    with_tool = prompt_token_bound({**base, "tools": [tool]})
    names = "type" + "function" + "name" + "parameters" + "type"
    assert with_tool - prompt_token_bound(base) == len(names + "functionlookupobject")
    assert prompt_token_bound({"model": "", "input": [1, 2, 3, 4]}) == 4
    image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    with_image = {"model": "m", "messages": [{"role": "user", "content": [image]}]}
    assert prompt_token_bound(with_image) > 1000
