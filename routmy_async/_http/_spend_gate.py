"""A spend limit on the wire: each attempt reserves its worst case just before it is sent,
and the events of the call settle it.

The gate is the first of a client's hooks, so it sees every call through the same events the
hooks see, before any other hook does (they read the units it counted on the ``Call``):

- the transport asks :meth:`SpendGate.admit` before each attempt (in its ``on_request``
  step, which runs because the gate declares ``on_request``), after its turn in the rate
  budget and its pool slot and before anything is sent; a refusal raises
  ``SpendLimitError`` there (a hook could not: hooks never break a request);
- ``on_response`` with an error status settles the attempt: to nothing for a 4xx (the server
  refused it before doing any work), in full for a 5xx (it may have failed after generating);
- ``on_retry`` and ``on_error`` settle in full what is still held: a connection cut, a
  timeout, a cancellation, an answer that did not decode — nobody knows what was billed;
- ``on_success`` and ``on_stream_end`` settle to the answer's ``usage``, or in full without one.

Every settlement adds to the call's ``units`` and ``dollars``, attempts summed.

The models list (``token_multiplier``, and ``pricing`` where a server lists it) is read once,
the first time a request needs it: requests arriving together wait for the same read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from .._exceptions import SpendLimitError
from .._hooks import Call, Hooks, StreamSummary
from .._spend import Reservation, SpendLimit, prompt_token_bound

__all__ = ["SpendGate"]

ModelsLoader = Callable[[], Awaitable[Iterable[Mapping[str, Any]]]]

# The body fields that cap a request's output, by API: chat, then Responses.
_OUTPUT_CAPS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
# Operations that generate nothing: their reservation is the prompt alone.
_NO_OUTPUT = frozenset({"embeddings"})


class SpendGate(Hooks):
    """A client's spend limit, applied to every attempt of its calls.

    :param limit: the limit (shared: the same one given to several clients is one limit).
    :param load_models: reads ``/v1/models`` items (called once, when first needed).
    """

    def __init__(self, limit: SpendLimit, load_models: ModelsLoader):
        self.limit = limit
        self._load_models = load_models
        self._loaded = False
        self._loading: asyncio.Future[None] | None = None

    # -- before each attempt ----------------------------------------------------------------

    def needs_models(self, call: Call) -> bool:
        """Whether the call's model must wait for the models list to be priced."""
        model = _model_of(call)
        return model is not None and not self._loaded and not self.limit.knows(model)

    async def load_models(self, call: Call) -> None:
        """Read the models list, once: calls arriving meanwhile wait for the same read; a
        read that failed is tried again by the next call that needs it.

        :raises SpendLimitError: the list could not be read, so ``call`` cannot be priced.
        """
        loading = self._loading
        if loading is None:
            loading = self._loading = asyncio.ensure_future(self._read_models())
            loading.add_done_callback(self._after_read)
        try:
            await asyncio.shield(loading)
        except SpendLimitError:
            raise
        except Exception as error:
            model = _model_of(call) or ""
            spend = self.limit.spend
            totals = spend.units or spend.dollars
            assert totals is not None  # a limit has at least one of them
            raise SpendLimitError(
                f"spend limit: refused a request to {model!r}: the models list could not be "
                f"read to price it ({type(error).__name__}: {error}); nothing is sent unpriced",
                model=model,
                unit=totals.unit,
                spent=totals.spent,
                reserved=totals.reserved,
                limit=totals.limit,
                missing="token_multiplier",
            ) from error

    async def _read_models(self) -> None:
        self.limit.add_models(await self._load_models())
        self._loaded = True

    def _after_read(self, loading: asyncio.Future[None]) -> None:
        if loading.cancelled() or loading.exception() is not None:
            self._loading = None  # the next call that needs it reads it again

    def admit(self, call: Call, attempt: int) -> None:
        """Reserve the attempt's worst case, or refuse it before it is sent.

        :raises SpendLimitError: it does not fit what is left, or cannot be priced.
        """
        model = _model_of(call)
        if model is None:
            return  # no model, no tokens: a models list, a raw GET
        held = call.state.get(self)
        if held is not None:
            self._settle_in_full(call)  # a previous attempt nobody settled: the worst case
        body = call.body or {}
        reservation = self.limit.reserve(
            model,
            input_tokens=prompt_token_bound(body),
            max_output_tokens=0 if call.operation in _NO_OUTPUT else _output_cap(body),
            choices=_choices(body),
        )
        call.state[self] = reservation

    def on_request(
        self, call: Call, *, attempt: int, method: str, url: str, headers: Mapping[str, str]
    ) -> None:
        """Declared so that the transport's ``on_request`` step runs, where it calls
        :meth:`admit` first (a refusal must raise: hooks never break a request)."""

    # -- settlements (hook events) --------------------------------------------------------

    def on_response(
        self, call: Call, *, attempt: int, status: int, headers: Mapping[str, str], elapsed: float
    ) -> None:
        if status >= 400:
            reservation = call.state.pop(self, None)
            if reservation is not None:
                if status < 500:
                    reservation.release()
                else:
                    reservation.settle_in_full()
                _count_on(call, reservation)

    def on_retry(
        self, call: Call, *, attempt: int, reason: str, wait: float, error: BaseException
    ) -> None:
        self._settle_in_full(call)

    def on_error(self, call: Call, *, error: BaseException, elapsed: float) -> None:
        self._settle_in_full(call)

    def on_success(self, call: Call, *, result: Any, elapsed: float) -> None:
        self._settle_usage(call, _get(result, "usage"))

    def on_stream_end(self, call: Call, summary: StreamSummary) -> None:
        self._settle_usage(call, summary.usage)

    def _settle_in_full(self, call: Call) -> None:
        reservation: Reservation | None = call.state.pop(self, None)
        if reservation is not None:
            reservation.settle_in_full()
            _count_on(call, reservation)

    def _settle_usage(self, call: Call, usage: Any) -> None:
        reservation: Reservation | None = call.state.pop(self, None)
        if reservation is None:
            return
        tokens = _tokens_of(usage)
        if tokens is None:
            reservation.settle_in_full()  # no usage told: the worst case may have been billed
        else:
            reservation.settle(
                input_tokens=tokens[0], output_tokens=tokens[1], cost=_reported_cost(usage)
            )
        _count_on(call, reservation)


def _get(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def _model_of(call: Call) -> str | None:
    model = call.model
    if model is None and call.body is not None:
        model = call.body.get("model")
    return model if isinstance(model, str) else None


def _output_cap(body: Mapping[str, Any]) -> int | None:
    for name in _OUTPUT_CAPS:
        value = body.get(name)
        if value is not None:
            return value  # type: ignore[no-any-return] # checked by the ledger (a count)
    return None


def _choices(body: Mapping[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _tokens_of(usage: Any) -> tuple[int, int] | None:
    """``(input, output)`` tokens of a chat, Responses or embeddings usage (object or dict)."""
    if usage is None:
        return None
    prompt = _whole(_get(usage, "prompt_tokens"))
    if prompt is None:
        prompt = _whole(_get(usage, "input_tokens"))
    output = _whole(_get(usage, "completion_tokens"))
    if output is None:
        output = _whole(_get(usage, "output_tokens"))
    total = _whole(_get(usage, "total_tokens"))
    if prompt is None:
        return None
    if output is None:
        # Embeddings count the prompt alone; a total above it is counted as output, so no
        # token the server counted goes uncharged.
        if total is None:
            return None
        output = max(0, total - prompt)
    return prompt, output


def _reported_cost(usage: Any) -> Any:
    cost = _get(usage, "cost")
    return cost if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None


def _count_on(call: Call, reservation: Reservation) -> None:
    """Add a settled attempt's charge to the call's totals (what hooks and spans report)."""
    if reservation.charged_units is not None:
        call.units = (call.units or Decimal(0)) + reservation.charged_units
    if reservation.charged_dollars is not None:
        call.dollars = (call.dollars or Decimal(0)) + reservation.charged_dollars
