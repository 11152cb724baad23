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

from .._exceptions import AuthenticationError, SpendLimitError
from .._hooks import Call, Hooks, StreamSummary
from .._spend import Reservation, SpendLimit, prompt_token_bound, refusal

__all__ = ["SpendGate"]

ModelsLoader = Callable[[], Awaitable[Iterable[Mapping[str, Any]]]]

# The body fields that cap a request's output, by API: chat, then Responses.
_OUTPUT_CAPS = ("max_completion_tokens", "max_tokens", "max_output_tokens")
# Operations that generate nothing: their reservation is the prompt alone.
_NO_OUTPUT = frozenset({"embeddings"})
# A raw request (``client.post(path, ...)``, operation "request") to an endpoint the SDK
# models is priced as its typed call is; the gate sees the operation, not the URL, so the
# path names it here.
_RAW_PATHS = {
    "/chat/completions": "chat",
    "/responses": "responses",
    "/embeddings": "embeddings",
    "/images/generations": "images",
    "/models": "models",
}
# Methods that read: a raw one to any path generates nothing (``client.get("/credits")``).
_READS = frozenset({"GET", "HEAD", "OPTIONS"})
_READ = "read"


class _CallSpend:
    """One call's limits, what it is priced as (an operation, ``"read"``, or ``None`` for a
    raw request to a path no price is known for), and what its attempt in flight holds."""

    __slots__ = ("_prompt", "held", "limits", "priced_as", "target")

    def __init__(self, limits: tuple[SpendLimit, ...], priced_as: str | None, target: str):
        self.limits = limits
        self.priced_as = priced_as
        self.target = target  # "POST /path", for the refusal of an unpriced one
        self.held: list[Reservation] = []
        self._prompt: int | None = None

    def prompt_bound(self, body: Mapping[str, Any]) -> int:
        """The call's prompt bound, walked once: every attempt sends the same body, and a
        limit that fetches capacity needs it before each reservation too."""
        if self._prompt is None:
            self._prompt = prompt_token_bound(body)
        return self._prompt


class SpendGate(Hooks):
    """The spend limits of a pool's clients, applied to every attempt of their calls.

    One gate serves every client of a pool (``with_options`` clients share it); each call
    brings the limits of the client that made it (:meth:`begin`), so a derived client with
    a limit of its own reserves in it and in its parent's.

    :param load_models: reads ``/v1/models`` items (called once, when first needed).
    """

    def __init__(self, load_models: ModelsLoader):
        self._load_models = load_models
        self._models: list[Mapping[str, Any]] | None = None
        self._loading: asyncio.Future[None] | None = None

    def begin(self, call: Call, limits: tuple[SpendLimit, ...], method: str, path: str) -> None:
        """``call`` (``method`` to ``path`` under the base URL) reserves in ``limits`` (its
        client's, innermost last)."""
        call.state[self] = _CallSpend(
            limits, _priced_as(call.operation, method, path), f"{method} {path}"
        )

    # -- before each attempt ----------------------------------------------------------------

    def needs_models(self, call: Call) -> bool:
        """Whether the call's model must wait for the models list to be priced."""
        spend: _CallSpend | None = call.state.get(self)
        model = _model_of(call)
        if spend is None or model is None or self._models is not None:
            return False
        if spend.priced_as in (None, _READ):
            return False  # nothing to price, or refused by admit() whatever the list says
        return not all(limit.knows(model) for limit in spend.limits)

    async def load_models(self, call: Call) -> None:
        """Read the models list, once: calls arriving meanwhile wait for the same read; a
        read that failed is tried again by the next call that needs it.

        :raises SpendLimitError: the list could not be read, so ``call`` cannot be priced.
        :raises AuthenticationError: the list was refused for the key (a 401).
        """
        loading = self._loading
        if loading is None:
            loading = self._loading = asyncio.ensure_future(self._read_models())
            loading.add_done_callback(self._after_read)
        try:
            await asyncio.shield(loading)
        except AuthenticationError:
            raise  # a wrong key: the call would fail with it anyway, and it is not a price
        except Exception as error:
            spend: _CallSpend = call.state[self]
            raise _unreadable_list(spend.limits[-1], _model_of(call) or "", error) from error

    async def _read_models(self) -> None:
        self._models = list(await self._load_models())

    def _after_read(self, loading: asyncio.Future[None]) -> None:
        if loading.cancelled() or loading.exception() is not None:
            self._loading = None  # the next call that needs it reads it again

    def needs_room(self, call: Call) -> bool:
        """Whether one of the call's limits must fetch capacity before it reserves (a
        cluster's share)."""
        spend: _CallSpend | None = call.state.get(self)
        return spend is not None and any(limit.fetches_capacity for limit in spend.limits)

    async def make_room(self, call: Call) -> None:
        """Let the call's limits that fetch capacity hold enough for its worst case; the
        caller reserves (:meth:`admit`) right after, with no await between.

        :raises SpendLimitError: the capacity was refused.
        """
        spend: _CallSpend = call.state[self]
        model = _model_of(call)
        if model is None or spend.priced_as in (None, _READ):
            return  # nothing to price, or refused by admit()
        body = call.body or {}
        cap = 0 if spend.priced_as in _NO_OUTPUT else _output_cap(body)
        for limit in spend.limits:
            if limit.fetches_capacity:
                if self._models is not None and not limit.knows(model):
                    limit.add_models(self._models)
                await limit.make_room(
                    model,
                    input_tokens=spend.prompt_bound(body),
                    max_output_tokens=cap,
                    choices=_choices(body),
                )

    def admit(self, call: Call, attempt: int) -> None:
        """Reserve the attempt's worst case in each of the call's limits, or refuse it
        before it is sent (holding nothing).

        :raises SpendLimitError: it does not fit what is left, or cannot be priced.
        """
        spend: _CallSpend | None = call.state.get(self)
        if spend is None or spend.priced_as == _READ:
            return  # no limit, or a raw read: it generates nothing
        if spend.priced_as is None:
            raise _unpriced_endpoint(spend.limits[-1], _model_of(call) or "", spend.target)
        model = _model_of(call)
        if model is None:
            if spend.priced_as == "models":
                return  # a models list: no model and no tokens
            # A router answers a body without a model with one it picks (an account's
            # default, a ``models`` fallback list) and bills it: unpriced, so not sent.
            raise _no_model(spend.limits[-1], spend.target)
        if spend.held:
            self._settle_in_full(call)  # a previous attempt nobody settled: the worst case
        body = call.body or {}
        cap = 0 if spend.priced_as in _NO_OUTPUT else _output_cap(body)
        prompt = spend.prompt_bound(body)
        held: list[Reservation] = []
        try:
            for limit in spend.limits:
                if self._models is not None and not limit.knows(model):
                    limit.add_models(self._models)  # a limit this pool's list never taught
                held.append(
                    limit.reserve(
                        model, input_tokens=prompt, max_output_tokens=cap, choices=_choices(body)
                    )
                )
        except BaseException:
            for reservation in held:
                reservation.release()  # refused by another limit: nothing was sent
            raise
        spend.held = held

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
            if status < 500:
                self._settle(call, Reservation.release)
            else:
                self._settle(call, Reservation.settle_in_full)

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
        self._settle(call, Reservation.settle_in_full)

    def _settle_usage(self, call: Call, usage: Any) -> None:
        tokens = _tokens_of(usage)
        if tokens is None:
            # No usage told: the worst case may have been billed.
            self._settle(call, Reservation.settle_in_full)
            return
        cost = _reported_cost(usage)

        def to_usage(reservation: Reservation) -> None:
            reservation.settle(input_tokens=tokens[0], output_tokens=tokens[1], cost=cost)

        self._settle(call, to_usage)

    def _settle(self, call: Call, how: Callable[[Reservation], None]) -> None:
        spend: _CallSpend | None = call.state.get(self)
        if spend is None or not spend.held:
            return
        held, spend.held = spend.held, []
        for reservation in held:
            how(reservation)
        _count_on(call, held)


def _priced_as(operation: str, method: str, path: str) -> str | None:
    """What a call is priced as: its operation; for a raw request, the operation of the
    endpoint its path names, ``"read"`` for a reading method, else ``None`` (unpriced)."""
    if operation != "request":
        return operation
    route = path.partition("?")[0].rstrip("/")
    known = _RAW_PATHS.get(route)
    if known is not None:
        return known
    return _READ if method.upper() in _READS else None


def _refusal(limit: SpendLimit, model: str, why: str, missing: str) -> SpendLimitError:
    spend = limit.spend
    totals = spend.units or spend.dollars
    assert totals is not None  # a limit has at least one of them
    return refusal(totals, model, why, missing=missing)


def _unreadable_list(limit: SpendLimit, model: str, error: BaseException) -> SpendLimitError:
    """The refusal of a call whose model could not be priced: the models list failed."""
    why = (
        f"the models list could not be read to price it ({type(error).__name__}: {error}); "
        "nothing is sent unpriced"
    )
    return _refusal(limit, model, why, "token_multiplier")


def _no_model(limit: SpendLimit, target: str) -> SpendLimitError:
    """The refusal of a call whose body names no model (or not as a string)."""
    why = (
        f"{target} names no model in its body (a string 'model'), so the router would "
        "pick one the limit cannot price; it is not sent rather than counted as free"
    )
    return _refusal(limit, "", why, "model")


def _unpriced_endpoint(limit: SpendLimit, model: str, target: str) -> SpendLimitError:
    """The refusal of a raw request to a path whose cost the limit cannot compute."""
    known = ", ".join(sorted(_RAW_PATHS))
    why = (
        f"{target} is not an endpoint the spend limit can price (it prices {known}; a GET "
        "is sent unpriced), so it is not sent rather than counted as free; send it with a "
        "client that has no spend_limit (it is then not counted against this limit)"
    )
    return _refusal(limit, model, why, "endpoint")


def _get(value: Any, name: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(name)
    return getattr(value, name, None)


def _model_of(call: Call) -> str | None:
    """The model the request is sent to: its body's (an ``extra_body={"model": ...}``
    overrides the typed ``model=`` there, and the server bills the one it receives), else
    the call's; ``None`` when the body names none, or not as a string."""
    body = call.body
    if body is not None and "model" in body:
        model = body["model"]
    else:
        model = call.model
    return model if isinstance(model, str) else None


def _output_cap(body: Mapping[str, Any]) -> Any:
    """The largest output cap the body sets: a request may carry two (``max_tokens`` and
    ``max_completion_tokens``), and which one a provider behind the router obeys is not
    ours to know, so the reservation covers the larger. ``None`` when it sets none; a cap
    that is not a count is returned as it is, for the ledger to refuse by name."""
    caps = [body[name] for name in _OUTPUT_CAPS if body.get(name) is not None]
    counts = [count for count in map(_whole, caps) if count is not None]
    if len(counts) == len(caps):
        return max(counts, default=None)
    return next(cap for cap in caps if _whole(cap) is None)


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


def _count_on(call: Call, held: list[Reservation]) -> None:
    """Add a settled attempt's charge to the call's totals (what hooks and spans report):
    the innermost limit's that counts each unit (they agree unless prices differ)."""
    units = next((r.charged_units for r in reversed(held) if r.charged_units is not None), None)
    if units is not None:
        call.units = (call.units or Decimal(0)) + units
    dollars = next(
        (r.charged_dollars for r in reversed(held) if r.charged_dollars is not None), None
    )
    if dollars is not None:
        call.dollars = (call.dollars or Decimal(0)) + dollars
