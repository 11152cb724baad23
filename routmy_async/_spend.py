"""A spend limit with reservations (pure: no I/O, no clock; nothing here awaits).

Before each attempt a request reserves its worst case: its prompt tokens (an estimate from
the caller) plus its output cap, priced by the model's rate. A reservation that does not fit
what is left is refused with ``SpendLimitError`` before anything is sent, so the limit holds
with any number of attempts in flight. When the attempt ends, its reservation is settled:

- to the real usage, when the answer reported one (:meth:`Reservation.settle`);
- in full, when nobody knows what the server billed: a cancelled or timed-out attempt, a
  stream cut off, an answer without usage (:meth:`Reservation.settle_in_full`);
- to nothing, when the server refused the attempt before doing any work
  (:meth:`Reservation.release`).

Only the first settlement counts, so a call path can settle what it knows and still call
``settle_in_full()`` from a ``finally`` for every way out it did not foresee.

**Integers, not floats.** Amounts are whole numbers of a fine base unit: micro quota units
(10**-6) and picodollars (10**-12). ``token_multiplier`` arrives as a JSON decimal (1, 0.1,
2.5) and prices as decimals of dollars per token or per million tokens; each is read through
its decimal text and scaled, so every value the service or the user writes with up to six
decimals is exact, and a rate with more decimals is rounded up (a charge never rounds in the
user's disfavour: rates and charges round up, limits round down). With integer amounts the
invariant is checked exactly: floats would drift over millions of settlements.

**A real usage above its reservation.** The output cap bounds what the server generates, but
the prompt count is an estimate, and a server may overshoot its cap. Such a settlement is
counted as it really was (``spent`` tells the truth), recorded in ``overshoot``, and the
reservations that no longer fit are refused from then on. So ``spent <= limit`` holds
whenever the real usages stay within their reservations, and otherwise ``spent`` exceeds the
limit by at most the recorded ``overshoot``.

One event loop at a time needs no lock: :meth:`SpendLimit.reserve` and the settlements run
without awaiting, so the same instance given to several clients on one loop is one limit for
all of them.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any, ClassVar, Literal, NoReturn

from ._exceptions import SpendLimitError

__all__ = [
    "Price",
    "Reservation",
    "SpendLimit",
    "SpendSnapshot",
    "SpendTotals",
    "prompt_token_bound",
    "refusal",
]

Unit = Literal["units", "dollars"]

# Base units per unit: a token_multiplier with six decimals is a whole number of micro-units
# per token, and a price in dollars per million tokens with six decimals a whole number of
# picodollars per token.
_SCALE: dict[Unit, int] = {"units": 10**6, "dollars": 10**12}
_PER_MILLION = 10**6

# What a chat template adds around each message (role, separators): a few tokens in every
# template we know of; 16 leaves room.
_MESSAGE_OVERHEAD = 16
# An image given by URL has no bytes in the request to bound its tokens; the providers' own
# figures for one image stay under this (OpenAI high detail, Anthropic, Gemini).
_IMAGE_URL_TOKENS = 6_000


def _decimal(value: Any, name: str) -> Decimal:
    """A finite, non-negative number (or its decimal text) as the decimal it was written as."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise TypeError(f"{name} must be a number, not {value!r}")
    try:
        # str() of a float is its shortest repr: the 0.1 the user or the JSON wrote.
        exact = Decimal(value) if isinstance(value, (int, Decimal)) else Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{name} must be a number, not {value!r}") from None
    if not exact.is_finite() or exact < 0:
        raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
    return exact


def _scaled(value: Decimal, scale: int, *, up: bool) -> int:
    rounding = ROUND_CEILING if up else ROUND_FLOOR
    return int((value * scale).to_integral_value(rounding=rounding))


def _count(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0, not {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Price:
    """What a model costs in dollars per million tokens, read and written.

    Decimal text (``Price("0.15", "0.60")``) is read exactly; so is a float, through its
    shortest repr.

    :param input_per_million: dollars per million prompt tokens.
    :param output_per_million: dollars per million completion tokens (reasoning included).
    """

    input_per_million: float | Decimal | str
    output_per_million: float | Decimal | str


@dataclass(frozen=True, slots=True)
class _Rate:
    """Base units per input token and per output token, for one ledger."""

    per_input: int
    per_output: int

    def charge(self, input_tokens: int, output_tokens: int) -> int:
        return input_tokens * self.per_input + output_tokens * self.per_output


@dataclass(frozen=True, slots=True)
class SpendTotals:
    """Where one limit stands, in its unit (exact decimals).

    ``left`` is what a new reservation may still take: ``limit - spent - reserved``, never
    below zero. ``overshoot`` sums what settlements used beyond their reservations.
    """

    unit: Unit
    limit: Decimal
    spent: Decimal
    reserved: Decimal
    left: Decimal
    overshoot: Decimal


@dataclass(frozen=True, slots=True)
class SpendSnapshot:
    """A spend limit's state: its totals, and what a summary reports about it.

    :param units: the quota-unit totals, when ``max_units`` is set.
    :param dollars: the dollar totals, when ``max_dollars`` is set.
    :param defaulted_outputs: reservations that used ``default_output_tokens`` because the
        request set no output cap.
    :param refused: requests refused (over the limit, or not priceable).
    """

    units: SpendTotals | None
    dollars: SpendTotals | None
    defaulted_outputs: int
    refused: int


class _Ledger:
    """One limit in base units: settled spend, reservations held, overshoot."""

    __slots__ = ("limit", "overshoot", "reserved", "spent", "unit")

    def __init__(self, unit: Unit, limit: int):
        self.unit: Unit = unit
        self.limit = limit
        self.spent = 0
        self.reserved = 0
        self.overshoot = 0

    def fits(self, amount: int) -> bool:
        return self.spent + self.reserved + amount <= self.limit

    def settle(self, held: int, charged: int) -> None:
        self.reserved -= held
        self.spent += charged
        self.overshoot += max(0, charged - held)

    def totals(self) -> SpendTotals:
        scale = _SCALE[self.unit]
        left = max(0, self.limit - self.spent - self.reserved)
        return SpendTotals(
            unit=self.unit,
            limit=Decimal(self.limit) / scale,
            spent=Decimal(self.spent) / scale,
            reserved=Decimal(self.reserved) / scale,
            left=Decimal(left) / scale,
            overshoot=Decimal(self.overshoot) / scale,
        )


class Reservation:
    """One attempt's hold on a spend limit; settle it once when the attempt ends.

    ``charged_units`` and ``charged_dollars`` are what the settlement counted (``None``
    before it, or for a limit that is not set).
    """

    __slots__ = (
        "_held",
        "_holds",
        "_rates",
        "charged_dollars",
        "charged_units",
        "input_tokens",
        "model",
        "output_tokens",
        "settled",
    )

    def __init__(
        self,
        model: str,
        input_tokens: int,
        output_tokens: int,
        holds: list[tuple[_Ledger, _Rate, int]],
    ):
        self.model = model
        #: The prompt estimate and the output cap the reservation was made for.
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self._holds = holds
        self.settled = False
        self.charged_units: Decimal | None = None
        self.charged_dollars: Decimal | None = None

    def settle(self, *, input_tokens: int, output_tokens: int, cost: Any = None) -> None:
        """Count the attempt's real usage instead of its reservation.

        :param input_tokens: the prompt tokens the answer reported.
        :param output_tokens: the completion tokens it reported (reasoning included).
        :param cost: the dollars the server reported, if it did: it replaces the price
            computed from tokens on a dollar limit.
        :raises ValueError: a count is not a whole number >= 0, or ``cost`` not a number.
        """
        input_tokens = _count(input_tokens, "input_tokens")
        output_tokens = _count(output_tokens, "output_tokens")
        reported = None if cost is None else _decimal(cost, "cost")
        charges = []
        for ledger, rate, _held in self._holds:
            if ledger.unit == "dollars" and reported is not None:
                charges.append(_scaled(reported, _SCALE["dollars"], up=True))
            else:
                charges.append(rate.charge(input_tokens, output_tokens))
        self._close(charges)

    def settle_in_full(self) -> None:
        """Count the whole reservation: the server may have generated and billed it all."""
        self._close([held for _, _, held in self._holds])

    def release(self) -> None:
        """Count nothing: the server refused the attempt before doing any work."""
        self._close([0] * len(self._holds))

    def _close(self, charges: list[int]) -> None:
        if self.settled:
            return  # the first settlement counts (see the module docstring)
        self.settled = True
        for (ledger, _, held), charged in zip(self._holds, charges, strict=True):
            ledger.settle(held, charged)
            amount = Decimal(charged) / _SCALE[ledger.unit]
            if ledger.unit == "units":
                self.charged_units = amount
            else:
                self.charged_dollars = amount

    def __repr__(self) -> str:
        state = "settled" if self.settled else "held"
        return f"<Reservation {self.model} {state}>"


class SpendLimit:
    """A spend limit shared by every request that goes through it.

    Quota units are what rout.my counts: a request's tokens times its model's
    ``token_multiplier`` from ``/v1/models``, which :meth:`add_models` reads. Dollars need
    prices: given here, or read from a models list that has ``pricing``; a server-reported
    ``usage.cost`` replaces the computed price when an answer carries one.

    :param max_units: the most quota units the requests may use.
    :param max_dollars: the most dollars the requests may cost.
    :param prices: ``{model: Price(...)}``; they win over a models list's ``pricing``.
    :param default_output_tokens: the output cap reserved for a request that sets none (no
        ``max_tokens``); without it such a request is refused. A warning says so the first
        time it is used.
    :raises ValueError: neither limit is given, or a value is negative or not finite.
    """

    #: Whether :meth:`make_room` must be awaited before :meth:`reserve`: the capacity of a
    #: limit shared by a cluster comes from its coordinator (a plain limit has it all here).
    fetches_capacity: ClassVar[bool] = False

    __slots__ = (
        "_defaulted",
        "_ledgers",
        "_multipliers",
        "_prices",
        "_refused",
        "_user_priced",
        "_warned",
        "default_output_tokens",
    )

    def __init__(
        self,
        *,
        max_units: float | Decimal | str | None = None,
        max_dollars: float | Decimal | str | None = None,
        prices: Mapping[str, Price] | None = None,
        default_output_tokens: int | None = None,
    ):
        if max_units is None and max_dollars is None:
            raise ValueError("give max_units (quota units), max_dollars, or both")
        self._ledgers: list[_Ledger] = []
        if max_units is not None:
            limit = _scaled(_decimal(max_units, "max_units"), _SCALE["units"], up=False)
            self._ledgers.append(_Ledger("units", limit))
        if max_dollars is not None:
            limit = _scaled(_decimal(max_dollars, "max_dollars"), _SCALE["dollars"], up=False)
            self._ledgers.append(_Ledger("dollars", limit))
        self._multipliers: dict[str, _Rate] = {}
        self._prices: dict[str, _Rate] = {}
        for model, price in (prices or {}).items():
            if not isinstance(price, Price):
                raise TypeError(f"prices[{model!r}] must be a Price, not {price!r}")
            self._prices[model] = _Rate(
                _per_million(price.input_per_million, f"prices[{model!r}].input_per_million"),
                _per_million(price.output_per_million, f"prices[{model!r}].output_per_million"),
            )
        self._user_priced = frozenset(self._prices)
        if default_output_tokens is not None:
            _count(default_output_tokens, "default_output_tokens")
        self.default_output_tokens = default_output_tokens
        self._defaulted = 0
        self._refused = 0
        self._warned = False

    def add_models(self, models: Iterable[Mapping[str, Any]]) -> None:
        """Learn rates from ``/v1/models`` items: ``token_multiplier``, and ``pricing``
        (dollars per token, as strings) where a server lists it.

        An item without an ``id``, or with a rate that is not a number >= 0, teaches nothing
        (its model stays unpriced, so its requests are refused, never counted as free).
        """
        for item in models:
            model = item.get("id")
            if not isinstance(model, str):
                continue
            try:
                multiplier = _decimal(item.get("token_multiplier"), "token_multiplier")
            except (TypeError, ValueError):
                pass
            else:
                per_token = _scaled(multiplier, _SCALE["units"], up=True)
                self._multipliers[model] = _Rate(per_token, per_token)
            pricing = item.get("pricing")
            if model in self._user_priced or not isinstance(pricing, Mapping):
                continue
            try:
                prompt = _decimal(pricing.get("prompt"), "pricing.prompt")
                completion = _decimal(pricing.get("completion"), "pricing.completion")
            except (TypeError, ValueError):
                continue
            self._prices[model] = _Rate(
                _scaled(prompt, _SCALE["dollars"], up=True),
                _scaled(completion, _SCALE["dollars"], up=True),
            )

    def knows(self, model: str) -> bool:
        """Whether every limit set here can price ``model`` (else its requests are refused)."""
        return all(self._rate(ledger, model) is not None for ledger in self._ledgers)

    def reserve(
        self,
        model: str,
        *,
        input_tokens: int,
        max_output_tokens: int | None,
        choices: int = 1,
    ) -> Reservation:
        """Hold one attempt's worst case, or refuse it.

        :param model: the request's model.
        :param input_tokens: the prompt tokens, estimated (an upper bound keeps the limit).
        :param max_output_tokens: the request's output cap, or ``None`` when it sets none
            (``default_output_tokens`` is used then).
        :param choices: how many answers the request asks for (chat's ``n``): each may use
            the whole output cap.
        :raises SpendLimitError: it does not fit what is left, or it cannot be priced.
        """
        input_tokens = _count(input_tokens, "input_tokens")
        rates: list[tuple[_Ledger, _Rate]] = []
        for ledger in self._ledgers:  # an unknown model first: no cap makes it priceable
            rate = self._rate(ledger, model)
            if rate is None:
                missing = "token_multiplier" if ledger.unit == "units" else "price"
                self._refuse(
                    ledger,
                    model,
                    missing=missing,
                    why=f"{model!r} has no {_MISSING_HELP[missing]}",
                )
            rates.append((ledger, rate))
        output_tokens = self._output_cap(model, max_output_tokens) * max(
            1, _count(choices, "choices")
        )
        holds = [(ledger, rate, rate.charge(input_tokens, output_tokens)) for ledger, rate in rates]
        # Every limit must fit before any of them holds: a refusal leaves no trace.
        for ledger, _, amount in holds:
            if not ledger.fits(amount):
                self._refuse(ledger, model, estimate=amount, why="it does not fit the limit")
        for ledger, _, amount in holds:
            ledger.reserved += amount
        held = Reservation(model, input_tokens, output_tokens, holds)
        self._reserved(held)
        return held

    def _reserved(self, held: Reservation) -> None:
        """The step after each reservation, before its attempt is sent: none here; a limit
        that records where it stands (a batch run's journal) writes it down."""

    async def make_room(
        self,
        model: str,
        *,
        input_tokens: int,
        max_output_tokens: int | None,
        choices: int = 1,
    ) -> None:
        """Wait until :meth:`reserve` could hold this request, for a limit whose capacity
        comes from elsewhere (``fetches_capacity``); a plain limit returns at once. The
        arguments are :meth:`reserve`'s.

        :raises SpendLimitError: the capacity it asked for was refused.
        """
        if not self.fetches_capacity:
            return
        worst_cases = self._worst_case(model, input_tokens, max_output_tokens, choices)
        if worst_cases is not None:  # else reserve() refuses it, naming why
            await self._fetch_room(model, worst_cases)

    async def _fetch_room(self, model: str, worst_cases: list[int]) -> None:
        """The step that makes room for a request's worst case in each ledger (in the order
        of ``_ledgers``), for a limit that ``fetches_capacity``: a cluster's share asks its
        coordinator. A plain limit has all its capacity here.

        :raises SpendLimitError: the capacity it asked for was refused.
        """

    def _worst_case(
        self, model: str, input_tokens: int, max_output_tokens: int | None, choices: int
    ) -> list[int] | None:
        """What :meth:`reserve` would hold in each ledger, with no side effect; ``None`` when
        it would refuse for another reason than room (unpriced, no cap, a bad count)."""
        cap = self.default_output_tokens if max_output_tokens is None else max_output_tokens
        counts = (input_tokens, cap, choices)
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
            return None
        assert cap is not None  # checked just above
        cases = []
        for ledger in self._ledgers:
            rate = self._rate(ledger, model)
            if rate is None:
                return None
            cases.append(rate.charge(input_tokens, cap * max(1, choices)))
        return cases

    @property
    def spend(self) -> SpendSnapshot:
        """Spent, reserved and left for each limit, and the counts a summary reports."""
        totals = {ledger.unit: ledger.totals() for ledger in self._ledgers}
        return SpendSnapshot(
            units=totals.get("units"),
            dollars=totals.get("dollars"),
            defaulted_outputs=self._defaulted,
            refused=self._refused,
        )

    def _rate(self, ledger: _Ledger, model: str) -> _Rate | None:
        table = self._multipliers if ledger.unit == "units" else self._prices
        return table.get(model)

    def _output_cap(self, model: str, max_output_tokens: int | None) -> int:
        if max_output_tokens is not None:
            return _count(max_output_tokens, "max_output_tokens")
        if self.default_output_tokens is None:
            self._refuse(
                self._ledgers[0],
                model,
                missing="max_tokens",
                why="it sets no max_tokens and the limit has no default_output_tokens",
            )
        self._defaulted += 1
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"a request to {model!r} sets no max_tokens: the spend limit reserves "
                f"default_output_tokens={self.default_output_tokens} for it (and for any "
                "other such request; the summary counts them)",
                UserWarning,
                stacklevel=3,
            )
        return self.default_output_tokens

    def _refuse(
        self,
        ledger: _Ledger,
        model: str,
        *,
        why: str,
        estimate: int | None = None,
        missing: str | None = None,
    ) -> NoReturn:
        self._refused += 1
        worst = None if estimate is None else Decimal(estimate) / _SCALE[ledger.unit]
        raise refusal(ledger.totals(), model, why, estimate=worst, missing=missing)


def refusal(
    totals: SpendTotals,
    model: str,
    why: str,
    *,
    estimate: Decimal | None = None,
    missing: str | None = None,
) -> SpendLimitError:
    """The ``SpendLimitError`` of a request to ``model`` refused for ``why``, with where the
    limit stands (``totals``) in its message and fields."""
    detail = f"spent {totals.spent}, reserved {totals.reserved}, limit {totals.limit}" + (
        "" if estimate is None else f", this request's worst case {estimate}"
    )
    return SpendLimitError(
        f"spend limit: refused a request to {model!r}: {why} ({totals.unit}: {detail})",
        model=model,
        unit=totals.unit,
        spent=totals.spent,
        reserved=totals.reserved,
        limit=totals.limit,
        estimate=estimate,
        missing=missing,
    )


_MISSING_HELP = {
    "token_multiplier": "token_multiplier: it is not in the models list",
    "price": "price: give SpendLimit(prices={model: Price(...)})",
}


def _per_million(value: Any, name: str) -> int:
    """Picodollars per token for a price in dollars per million tokens, rounded up."""
    exact = _decimal(value, name)
    return _scaled(exact, _SCALE["dollars"] // _PER_MILLION, up=True)


# The request fields whose keys the model reads: tools (chat's and Responses'), the old
# functions, and the JSON schemas of structured output (chat's response_format, Responses'
# text.format).
_SCHEMA_FIELDS = frozenset({"tools", "functions", "response_format", "text"})


def prompt_token_bound(request: Mapping[str, Any]) -> int:
    """An upper bound of a request's prompt tokens, for a reservation that must not be short.

    Every string in the request (messages, tools, schemas, ``input``) counts its UTF-8 bytes:
    a byte-level tokenizer never makes more tokens than bytes. The property names of tools
    and schemas count too (the model reads a schema's names as much as its values, and a
    schema is mostly names); the keys of the request and its messages do not (the template
    replaces them). Each message adds what a chat template wraps it in, a token array counts
    its tokens, and an image given by URL counts a fixed allowance (one given inline already
    counts its base64 bytes, far more than its tokens). A bound, not an estimate: for English
    text it is about four times the real count, and the settlement gives the difference back.
    """
    messages = request.get("messages")
    overhead = _MESSAGE_OVERHEAD * (len(messages) if isinstance(messages, list) else 0)
    return overhead + sum(
        _bytes_of(value, keys=name in _SCHEMA_FIELDS) for name, value in request.items()
    )


def _bytes_of(value: Any, *, keys: bool = False) -> int:
    if isinstance(value, str):
        if value.startswith(("http://", "https://")):
            return len(value.encode()) + _IMAGE_URL_TOKENS
        return len(value.encode())
    if isinstance(value, Mapping):
        if keys:
            return sum(_bytes_of(key) + _bytes_of(item, keys=True) for key, item in value.items())
        return sum(_bytes_of(item) for item in value.values())
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(item, int) for item in value):
            return len(value)  # a token array: one token each
        return sum(_bytes_of(item, keys=keys) for item in value)
    return 0 if value is None or isinstance(value, (bool, int, float)) else len(str(value))
