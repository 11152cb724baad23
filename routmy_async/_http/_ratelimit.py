"""One rate budget: request spacing, a token bucket and a shared pause (pure: the clock is
passed in, nothing here sleeps).

A ``RateLimit`` hands out start times. Each request reserves its start with :meth:`reserve`
and sleeps for the wait it returns, so many tasks can share one budget without a queue or a
lock; the token estimate is corrected by the real ``usage`` afterwards, and a 429 pauses every
start through :meth:`pause`. A waiter asks :meth:`remaining` again when it wakes: a pause
that began (or grew) while it slept holds it too, and tokens given back meanwhile shorten its
wait. The object holds the budget's state, so the same instance given to several clients (or
shared by ``with_options``) is one budget for all of them.

Tokens are two running totals rather than a level: ``debit`` (every estimate reserved) and
``credit`` (the bucket's capacity, its refill, and what corrections and cancellations gave
back). A reservation's ticket is the debit including its own estimate, and it may start once
the credit reaches its ticket — so a correction that arrives while it waits moves its start
earlier, in the order the reservations were made. A reservation given back leaves a gap in
the line (``_gaps``): only the reservations behind it move up. A start further down the line
(one that came due first) raises the line's floor (``_high_ticket``) for everyone after it.

aiolimiter and friends were considered: they wait in a queue, cannot give tokens back after
the real usage is known, and have no server-driven pause; the policy is small and pure here.
"""

from __future__ import annotations

import heapq
import math
import re
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

import msgspec

from .._checks import is_integer, is_number

__all__ = [
    "RateLimit",
    "RateLimitHeaders",
    "batch_limit",
    "batch_limits_running",
    "estimate_tokens",
    "parse_rate_limit_headers",
]

_DEFAULT_COMPLETION_ESTIMATE = 256


class RateLimit:
    """A request and token budget shared by every request that goes through it.

    :param requests_per_minute: starts are spaced ``60 / requests_per_minute`` seconds apart.
    :param tokens_per_minute: a token bucket of this size, refilled continuously; a request
        takes its estimate (prompt characters / 4 plus its completion budget) and is corrected
        by its ``usage`` when it ends.
    :param clock: monotonic seconds (for tests).
    :raises ValueError: a limit is not a positive number.
    """

    __slots__ = (
        "_capacity",
        "_clock",
        "_credit",
        "_debit",
        "_gaps",
        "_high_ticket",
        "_holes",
        "_interval",
        "_last_start",
        "_next_start",
        "_paused_until",
        "_refilled_at",
        "_slot",
        "_ticket",
        "_tokens_per_second",
        "limits_tokens",
        "quiet",
        "requests_per_minute",
        "tokens_per_minute",
    )

    def __init__(
        self,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        for name, value in (
            ("requests_per_minute", requests_per_minute),
            ("tokens_per_minute", tokens_per_minute),
        ):
            if value is None:
                continue
            if not is_number(value):
                raise TypeError(f"{name} must be a number or None, not {value!r}")
            if not value > 0 or math.isinf(value):
                raise ValueError(f"{name} must be a positive number or None, not {value!r}")
        self.requests_per_minute = requests_per_minute
        self.tokens_per_minute = tokens_per_minute
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._tokens_per_second = tokens_per_minute / 60.0 if tokens_per_minute else 0.0
        self._capacity = float(tokens_per_minute or 0.0)
        self._credit = self._capacity  # the bucket starts full
        self._debit = 0.0
        # (ticket, tokens) of reservations given back while still waiting for their tokens.
        self._gaps: list[tuple[float, float]] = []
        # The highest ticket that started: one further down the line that starts later
        # must not count on tokens that one is already using.
        self._high_ticket = 0.0
        self._ticket: float | None = None
        self._slot = 0.0  # the last reservation's start before any wait for tokens
        self._clock = clock
        self._refilled_at = clock()
        self._next_start = 0.0
        # When the last request really started (see started()): no start comes sooner than
        # one interval after it, whatever the reservations planned.
        self._last_start = -math.inf
        self._paused_until = 0.0
        #: Whether requests need a token estimate (a ``tokens_per_minute`` is set).
        self.limits_tokens = self._tokens_per_second > 0.0
        #: No limit and no pause was ever in force, or the last pause is known to be over: a
        #: plain attribute, so a request of an unlimited client pays one read for its budget.
        #: False says only "ask :attr:`idle`".
        self.quiet = not (self._interval or self._tokens_per_second)
        # Start times given back by cancelled waiters, for the next requests to take.
        self._holes: list[float] = []

    @property
    def idle(self) -> bool:
        """Whether a start can never have to wait (no limits, no pause): the fast path."""
        if self._interval or self._tokens_per_second:
            return False
        if self._paused_until and self._paused_until <= self._clock():
            self._paused_until = 0.0  # the pause is over: back to the fast path
            self.quiet = True
        return not self._paused_until

    def _refill(self, now: float) -> None:
        if self._tokens_per_second:
            self._add_credit((now - self._refilled_at) * self._tokens_per_second)
        self._refilled_at = now

    def _add_credit(self, amount: float) -> None:
        # A bucket holds at most its capacity: a full bucket's refill is lost.
        self._credit = min(
            self._debit - sum(size for _, size in self._gaps) + self._capacity,
            self._credit + amount,
        )

    def _ahead(self, ticket: float) -> float:
        """Tokens still to come before ``ticket`` may start (gaps before it skipped)."""
        return ticket - self._credit - sum(size for at, size in self._gaps if at < ticket)

    @property
    def available_tokens(self) -> float:
        """Tokens in the bucket now (negative while reservations wait for the refill)."""
        self._refill(self._clock())
        return self._credit + sum(size for _, size in self._gaps) - self._debit

    def reserve(self, tokens: int = 0) -> float:
        """Reserve a start for a request of ``tokens`` estimated tokens; return how long to
        wait before starting it (0.0 when it may start now)."""
        return self.reserve_start(tokens)[0]

    def reserve_start(self, tokens: int = 0, not_before: float = 0.0) -> tuple[float, float]:
        """Like :meth:`reserve`, returning ``(wait, start)``: ``start`` identifies the
        reservation for :meth:`cancel` if the request gives up before it starts.

        :param not_before: the earliest start (clock seconds) another budget already gave
            the request, so that this one spaces its starts from when they really happen.
        """
        now = self._clock()
        start = max(now, self._paused_until, not_before)
        holes = self._holes
        while holes and holes[0] < start:
            heapq.heappop(holes)  # a hole in the past (or inside a pause) is gone
        if holes:
            # A cancelled reservation's start: taking it keeps the spacing intact.
            start = heapq.heappop(holes)
        else:
            start = max(start, self._next_start)
        self._ticket = None
        self._slot = start
        if self._tokens_per_second and tokens:
            self._refill(now)
            self._debit += min(float(tokens), self._capacity)
            self._ticket = self._debit
            missing = self._ahead(self._debit)
            if missing > 0:
                start = max(start, now + missing / self._tokens_per_second)
        if self._interval:
            # Spaced from the start as it will happen (a wait for tokens included).
            self._next_start = max(self._next_start, start + self._interval)
        return max(0.0, start - now), start

    def reserve_turn(self, tokens: int = 0, not_before: float = 0.0) -> tuple[float, float | None]:
        """Reserve a start like :meth:`reserve_start`; return ``(start, ticket)``: its place
        in the request spacing and its token ticket (both for :meth:`remaining`, which adds
        the wait for tokens), or the start and ``None`` when it waits for no tokens."""
        self._ticket = None
        _, start = self.reserve_start(tokens, not_before)
        if self._ticket is not None:
            # Its place in the spacing; the wait for tokens is the ticket's, asked again.
            start = self._slot
        return start, self._ticket

    def remaining(self, start: float, ticket: float | None = None) -> float:
        """How much longer a reservation must wait, asked again when its waiter wakes: a
        pause that began meanwhile holds it, tokens given back meanwhile let it go sooner."""
        now = self._clock()
        wait = max(start, self._paused_until, self._last_start + self._interval) - now
        if ticket is not None and self._tokens_per_second:
            self._refill(now)
            wait = max(wait, self._ahead(max(ticket, self._high_ticket)) / self._tokens_per_second)
        return max(0.0, wait)

    def started(self, ticket: float | None = None) -> None:
        """A request whose :meth:`remaining` was 0 starts now. Its start gates the next one,
        so the spacing holds even when a wait for tokens grew past what was planned (a
        usage above its estimate) and reservations come due out of order."""
        if ticket is not None and ticket > self._high_ticket:
            self._high_ticket = ticket
            # Every start from now on waits for at least this ticket: a gap before it is
            # before all of them, the same as tokens back in the bucket.
            gaps = self._gaps
            while gaps and gaps[0][0] < ticket:
                self._credit += heapq.heappop(gaps)[1]
        if self._interval:
            now = self._clock()
            self._last_start = now
            self._next_start = max(self._next_start, now + self._interval)

    def cancel(self, start: float, tokens: int = 0, ticket: float | None = None) -> None:
        """Give back a reservation whose request was cancelled before it started, so that
        waiters that gave up leave no phantom starts for the next requests to wait behind.

        :param ticket: its token ticket (from :meth:`reserve_turn`): its tokens leave a gap
            in the line that only the reservations behind it skip; without a ticket they go
            back to the bucket."""
        if self._interval:
            heapq.heappush(self._holes, start)
        if self._tokens_per_second and tokens:
            self._refill(self._clock())
            amount = min(float(tokens), self._capacity)
            if ticket is not None and ticket > self._high_ticket:
                # Only the reservations behind it move up (whether or not the credit has
                # reached it: a usage above its estimate can take the credit back).
                heapq.heappush(self._gaps, (ticket, amount))
            else:
                self._add_credit(amount)

    def correct(self, estimate: int, actual: int) -> None:
        """Give back (or take) the difference between a reservation and the real usage."""
        if self._tokens_per_second and estimate:
            self._refill(self._clock())
            self._add_credit(min(estimate, self._capacity) - actual)

    def pause(self, seconds: float) -> None:
        """Hold every start for ``seconds`` (a 429 slows everyone, not one request): new
        reservations start after it, and waiters already queued see it in :meth:`remaining`."""
        if seconds > 0:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self.quiet = False

    def inside_pause(self, start: float) -> bool:
        """Whether a reserved start falls inside a pause that began after it was reserved."""
        return start < self._paused_until and self._paused_until > self._clock()

    def pause_remaining(self) -> float:
        """How long new starts are still held by a pause."""
        if not self._paused_until:
            return 0.0
        return max(0.0, self._paused_until - self._clock())

    def __repr__(self) -> str:
        return (
            f"RateLimit(requests_per_minute={self.requests_per_minute!r}, "
            f"tokens_per_minute={self.tokens_per_minute!r})"
        )


def estimate_tokens(request: Mapping[str, Any]) -> int:
    """A rough token count for a request: prompt characters / 4 plus the completion budget.

    Chat ``messages`` (text and text parts, response messages too) and embeddings ``input``
    are counted.
    """
    characters = 0
    for message in request.get("messages") or ():
        content = (
            message.get("content")
            if isinstance(message, Mapping)
            else getattr(message, "content", None)
        )
        if isinstance(content, str):
            characters += len(content)
        elif isinstance(content, list):
            characters += sum(
                len(part.get("text", "")) for part in content if isinstance(part, Mapping)
            )
    text_input = request.get("input")
    if isinstance(text_input, str):
        characters += len(text_input)
        return characters // 4 + 1
    if isinstance(text_input, list):
        # Strings are text; a list of ints is one token each; a list of lists, token arrays.
        return sum(_input_tokens(item) for item in text_input)
    budget = request.get("max_tokens") or request.get("max_completion_tokens")
    if not is_integer(budget):
        budget = _DEFAULT_COMPLETION_ESTIMATE
    return characters // 4 + 1 + budget


def _input_tokens(item: Any) -> int:
    if isinstance(item, str):
        return len(item) // 4 + 1
    return len(item) if isinstance(item, list) else 1


#: The per-batch budget of the ``create_many`` run the current task belongs to: the transport
#: paces every attempt of the batch's requests (retries too) by it as well as by the client's.
batch_limit: ContextVar[RateLimit | None] = ContextVar("routmy_batch_limit", default=None)


class _BatchLimitsRunning:
    """How many batches with a budget of their own are running, in any task: while none is,
    a request skips the context variable look-up altogether."""

    count = 0


batch_limits_running = _BatchLimitsRunning()


class RateLimitHeaders(msgspec.Struct, frozen=True, kw_only=True):
    """The server's ``x-ratelimit-*`` headers, parsed: what is left of the quota, and when it
    resets (seconds from the answer). Every field is ``None`` when the header is absent."""

    limit_requests: float | None = None
    limit_tokens: float | None = None
    remaining_requests: float | None = None
    remaining_tokens: float | None = None
    reset_requests: float | None = None
    reset_tokens: float | None = None

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{name}={value!r}"
            for name in self.__struct_fields__
            if (value := getattr(self, name)) is not None
        )
        return f"RateLimitHeaders({shown})"


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(text: str | None) -> float | None:
    """``"20ms"``, ``"1m30.5s"``, ``"6"`` (seconds), or an epoch time in seconds."""
    if text is None:
        return None
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        parts = _DURATION_PART.findall(text)
        if not parts or "".join(number + unit for number, unit in parts) != text:
            return None
        return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if value > 1e9:  # an epoch time rather than a duration
        return max(0.0, value - time.time())
    return value if value >= 0 else None


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None


def parse_rate_limit_headers(headers: Mapping[str, str]) -> RateLimitHeaders:
    """Parse the ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` headers (pure)."""
    get = headers.get
    return RateLimitHeaders(
        limit_requests=_number(get("x-ratelimit-limit-requests")),
        limit_tokens=_number(get("x-ratelimit-limit-tokens")),
        remaining_requests=_number(get("x-ratelimit-remaining-requests")),
        remaining_tokens=_number(get("x-ratelimit-remaining-tokens")),
        reset_requests=_seconds(get("x-ratelimit-reset-requests")),
        reset_tokens=_seconds(get("x-ratelimit-reset-tokens")),
    )
