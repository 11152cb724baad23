"""One rate budget for many processes, handed out in grants (pure: the clock is passed in,
nothing here sleeps or talks to Ray).

A ``GrantLedger`` (one per budget, inside the coordinator actor) hands out grants: ``k``
request starts and ``m`` tokens, usable in a window of ``grant_seconds`` that opens ``delay``
seconds after the answer. Each process keeps its grants in an ``Allowance`` and spends them
locally, asking again only when they run low, so coordination costs one call per grant
rather than one per request.

Why the server never sees more than ``R`` starts in any window of ``W`` seconds, whatever the
number of processes, their clocks and the latency between them:

- Every use of a grant falls inside its window ``[a, a + V)`` of the coordinator's time. The
  holder measures that window with its own clock, from durations only: it opens ``delay``
  after the answer *arrived* (never before ``a``) and closes ``V - guard`` after the question
  was *sent* (never after ``a + V``). No clock is shared.
- A server window ``[t, t + W)`` can only hold uses of grants whose ``a`` lies in
  ``(t - V, t + W)``, an open span of ``L = W + V``. Grants are issued with non-decreasing
  ``a``, so for a new grant at ``a`` it is enough that the grants starting in ``(a - L, a]``
  plus the new one hold at most ``R`` requests (and ``T`` tokens). That is the whole
  invariant; giving unused capacity back only lowers the sums.
- Pacing spreads grants at the budget's rate (``L / R`` seconds a request), and a grant is a
  fair share of one window among the processes seen lately, so busy processes get
  interleaved windows instead of taking turns. The cost of the proof is the rate: at most
  ``R`` per ``W + V`` seconds are handed out (97% of the limit with the defaults).

Tokens are estimates (prompt characters / 4 plus the completion budget) corrected by the real
usage afterwards (:meth:`GrantLedger.settle`), so a token budget holds on average; the request
limit is exact.
"""

from __future__ import annotations

import bisect
import math
import time
from collections import deque
from collections.abc import Callable
from itertools import islice

import msgspec

from ..._checks import is_number

__all__ = ["Allowance", "Grant", "GrantLedger", "Settings", "check_limit"]


def check_limit(name: str, value: object, *, minimum: float = 0.0) -> None:
    """Raise unless ``value`` is ``None`` or a finite number above ``minimum`` (at least 1
    for a request limit: a grant is a whole request)."""
    if value is None:
        return
    if not is_number(value):
        raise TypeError(f"{name} must be a number or None, not {value!r}")
    if math.isnan(value) or math.isinf(value) or value < minimum or value <= 0:
        bound = f">= {minimum:g}" if minimum else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, or None, not {value!r}")


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """A budget's limits: at most ``requests`` starts and ``tokens`` tokens in any
    ``window`` seconds, handed out in grants usable for ``grant_seconds``."""

    requests: float | None = None
    tokens: float | None = None
    window: float = 60.0
    grant_seconds: float = 2.0
    #: The cluster's spend limit in micro quota units (``None``: no spend limit).
    spend_units: int | None = None
    #: The output cap reserved for a request that sets none, under the spend limit.
    default_output_tokens: int | None = None

    def __post_init__(self) -> None:
        check_limit("requests_per_minute", self.requests, minimum=1.0)
        check_limit("tokens_per_minute", self.tokens)
        check_limit("window", self.window)
        check_limit("grant_seconds", self.grant_seconds, minimum=0.05)

    @property
    def limited(self) -> bool:
        """Whether there is any limit to hand out (else only pauses are shared)."""
        return self.requests is not None or self.tokens is not None


class Grant(msgspec.Struct, frozen=True, kw_only=True):
    """Capacity handed to one process: ``requests`` starts (``None``: no request limit) and
    ``tokens`` tokens (``None``: no token limit), usable from ``delay`` seconds after the
    answer for ``seconds``; ``pause`` and ``epoch`` carry the budget's shared pause."""

    id: int
    delay: float
    seconds: float
    requests: int | None
    tokens: float | None
    pause: float = 0.0
    epoch: int = 0
    #: Seconds between two starts at the holder's share of the rate (0: no request limit).
    spacing: float = 0.0


class _Entry:
    __slots__ = ("id", "member", "requests", "start", "tokens")

    def __init__(self, id: int, start: float, requests: int, tokens: float, member: str = ""):
        self.id = id
        self.member = member
        self.start = start
        self.requests = requests
        self.tokens = tokens


class GrantLedger:
    """The coordinator's book of grants: decides each grant's size and start so that the
    budget holds in every window (see the module docstring for why it does).

    :param settings: the limits.
    :param clock: monotonic seconds (for tests).
    :param first_id: the first grant's id: a coordinator that restarts begins above the ids
        its previous life handed out, so that giving back an old grant never takes from a
        new one.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        first_id: int = 1,
    ):
        self.settings = settings
        self._requests = settings.requests
        self._tokens = settings.tokens
        self._seconds = settings.grant_seconds
        self._span = settings.window + settings.grant_seconds
        # Seconds of the budget's rate that one request (one token) stands for.
        self._request_pace = self._span / settings.requests if settings.requests else 0.0
        self._token_pace = self._span / settings.tokens if settings.tokens else 0.0
        self._clock = clock
        self._entries: deque[_Entry] = deque()  # by non-decreasing start
        self._by_id: dict[int, _Entry] = {}
        self._next_id = first_id
        self._pace_until = 0.0
        self._paused_until = 0.0
        self._seen: dict[str, float] = {}
        # A busy process asks again about every grant; one that has not asked for two
        # grants' time no longer counts among those sharing the rate.
        self._active_for = 2 * settings.grant_seconds + 1.0
        #: Bumped by every pause that holds starts longer than before.
        self.epoch = 0
        #: Counters, for ``ClusterBudget.stats()``.
        self.grants = 0
        self.granted_requests = 0
        self.returned_requests = 0
        #: Requests granted and not given back, by member.
        self.spent: dict[str, int] = {}
        #: The latest opening of any grant handed out (what a restart must assume held).
        self.horizon = -math.inf

    def grant(
        self, member: str, *, requests: int = 1, tokens: float = 0.0, need_tokens: float = 0.0
    ) -> Grant:
        """A grant for ``member``, who would like ``requests`` starts and ``tokens`` tokens
        and needs at least ``need_tokens`` (its next request's estimate).

        It may hold less than asked (a fair share) and open later (pacing, the window
        invariant, a pause); it never holds nothing.
        """
        now = self._clock()
        self._forget(now)
        self._seen[member] = now
        active = len(self._seen)
        count: int | None = None
        if self._requests is not None:
            share = math.floor(self._requests * self._seconds / (self._span * active))
            count = max(1, min(int(requests), share))
        amount: float | None = None
        if self._tokens is not None:
            share_tokens = self._tokens * self._seconds / (self._span * active)
            amount = min(self._tokens, max(need_tokens, min(tokens, share_tokens)))
        start = max(now, self._paused_until, self._pace_until)
        if self._entries:
            start = max(start, self._entries[-1].start)  # starts never go back
        start = self._fit(start, count or 0, amount or 0.0)
        self._pace_until = start + max(
            (count or 0) * self._request_pace, (amount or 0.0) * self._token_pace
        )
        self.horizon = max(self.horizon, start)
        entry = _Entry(self._next_id, start, count or 0, amount or 0.0, member)
        self._next_id += 1
        self._entries.append(entry)
        self._by_id[entry.id] = entry
        self.grants += 1
        self.granted_requests += count or 0
        self.spent[member] = self.spent.get(member, 0) + (count or 0)
        return Grant(
            id=entry.id,
            delay=start - now,
            seconds=self._seconds,
            requests=count,
            tokens=amount,
            pause=max(0.0, self._paused_until - now),
            epoch=self.epoch,
            spacing=self._request_pace * active,
        )

    def _fit(self, start: float, count: int, amount: float) -> float:
        """The earliest start from ``start`` on at which the grants starting in
        ``(start - span, start]`` plus this one stay within the limits."""
        entries = self._entries
        span = self._span
        first = 0
        while first < len(entries) and entries[first].start <= start - span:
            first += 1
        in_span = list(islice(entries, first, None))
        used_requests = sum(entry.requests for entry in in_span)
        used_tokens = sum(entry.tokens for entry in in_span)
        for entry in in_span:
            if self._fits(used_requests + count, used_tokens + amount):
                break
            # Wait until this grant's window can no longer share a server window with ours.
            start = max(start, entry.start + span)
            used_requests -= entry.requests
            used_tokens -= entry.tokens
        return start

    def _fits(self, requests: int, tokens: float) -> bool:
        if self._requests is not None and requests > self._requests:
            return False
        # A relative tolerance: sums of floats must not refuse an exact fit.
        return self._tokens is None or tokens <= self._tokens * (1 + 1e-9)

    def _forget(self, now: float) -> None:
        # A grant that started a span ago can no longer share a window with a new one.
        entries = self._entries
        while entries and entries[0].start <= now - self._span:
            self._by_id.pop(entries.popleft().id, None)
        for member, seen in list(self._seen.items()):
            if now - seen > self._active_for:
                del self._seen[member]

    def assume_spent(self, until: float) -> None:
        """Start over after losing the book (the coordinator restarted): count the whole
        budget as granted in a grant opening at ``until``, the lost book's :attr:`horizon`
        (or later).

        The lost book's grants are still held and used by their members, and none of them
        opens after ``until``, so the next grant opens only when none of theirs can share a
        window with it: nothing is granted for a span after ``until``, and the limit holds.
        """
        start = max(self._clock(), until)
        self._entries.append(_Entry(0, start, int(self._requests or 0), float(self._tokens or 0.0)))
        self._pace_until = max(self._pace_until, start)
        self.horizon = max(self.horizon, start)

    def give_back(self, grant_id: int, requests: int, tokens: float) -> None:
        """Return capacity of a grant that its holder will never use (it expired, the batch
        ended, the process is closing)."""
        entry = self._by_id.get(grant_id)
        if entry is None:
            return  # already forgotten: it can no longer hold anyone back
        requests = max(0, min(int(requests), entry.requests))
        tokens = max(0.0, min(float(tokens), entry.tokens))
        entry.requests -= requests
        entry.tokens -= tokens
        self.returned_requests += requests
        self.spent[entry.member] -= requests
        # As if that part had never been granted: later grants may open that much sooner.
        self._pace_until -= max(requests * self._request_pace, tokens * self._token_pace)

    def settle(self, tokens: float) -> None:
        """Account for the difference between token estimates and real usage: ``tokens`` more
        were used than reserved (or fewer, when negative)."""
        if self._tokens is None or not tokens:
            return
        now = self._clock()
        if tokens > 0:
            start = max(now, self._entries[-1].start) if self._entries else now
            self._entries.append(_Entry(0, start, 0, float(tokens)))
            self._pace_until = max(self._pace_until, now) + tokens * self._token_pace
            return
        credit = -float(tokens)
        self._pace_until -= credit * self._token_pace
        for entry in reversed(self._entries):
            taken = min(entry.tokens, credit)
            entry.tokens -= taken
            credit -= taken
            if credit <= 0:
                break

    def pause(self, seconds: float) -> None:
        """Hold every new start of every member for ``seconds`` (a 429's ``Retry-After``)."""
        if not seconds > 0 or math.isinf(seconds):
            return
        until = self._clock() + seconds
        if until > self._paused_until:
            self._paused_until = until
            self.epoch += 1

    def pause_state(self) -> tuple[int, float]:
        """``(epoch, seconds the pause still holds)``."""
        return self.epoch, max(0.0, self._paused_until - self._clock())


class _Held:
    __slots__ = ("closes", "id", "opens", "requests", "spacing", "tokens", "used")

    def __init__(
        self,
        id: int,
        opens: float,
        closes: float,
        requests: int | None,
        tokens: float | None,
        spacing: float,
    ):
        self.id = id
        self.opens = opens
        self.closes = closes
        self.requests = requests
        self.tokens = tokens
        self.used = 0
        # The grant's starts are spread at the holder's share of the budget's rate rather
        # than sent in a burst, and all of them fit in the part of the window it can use.
        self.spacing = min(spacing, (closes - opens) / requests) if requests else 0.0


class Allowance:
    """The grants one process holds, spent one start at a time on its own clock.

    :param guard: seconds cut from the end of every window, for a start that runs late (a
        busy event loop wakes a sleeper a little after its time).
    """

    def __init__(self, *, guard: float):
        self._guard = guard
        self._held: list[_Held] = []  # by opening time

    def add(self, grant: Grant, *, sent: float, received: float) -> bool:
        """Hold ``grant``, asked for at ``sent`` and answered at ``received`` (this process's
        clock). Returns ``False`` when the answer took so long that nothing of the window is
        left: the caller gives the grant back."""
        opens = received + grant.delay
        closes = sent + grant.delay + grant.seconds - self._guard
        if closes <= opens:
            return False
        held = _Held(grant.id, opens, closes, grant.requests, grant.tokens, grant.spacing)
        keys = [item.opens for item in self._held]
        self._held.insert(bisect.bisect_right(keys, opens), held)
        return True

    def take(self, floor: float, tokens: float = 0.0) -> float | None:
        """Spend one start at ``floor`` or later (and ``tokens``); return when it may start,
        or ``None`` when no grant held has room."""
        for held in self._held:
            if held.closes <= floor:
                continue
            if held.tokens is not None and held.tokens < tokens:
                continue
            if held.requests is not None:
                if held.used >= held.requests:
                    continue
                start = max(floor, held.opens + held.used * held.spacing)
            else:
                start = max(floor, held.opens)
            if start >= held.closes:
                continue
            held.used += 1
            if held.tokens is not None:
                held.tokens -= tokens
            return start
        return None

    def left(self, now: float) -> tuple[int, float]:
        """Starts and tokens still to spend in the grants open at or after ``now``
        (a grant without a request limit counts as one start)."""
        starts = 0
        tokens = 0.0
        for held in self._held:
            if held.closes <= now:
                continue
            starts += held.requests - held.used if held.requests is not None else 1
            tokens += held.tokens or 0.0
        return starts, tokens

    def expire(self, now: float) -> list[tuple[int, int, float]]:
        """Drop the grants whose window has closed; return ``(id, requests, tokens)`` left
        unused in them, to give back."""
        kept: list[_Held] = []
        unused: list[tuple[int, int, float]] = []
        for held in self._held:
            if held.closes <= now:
                unused.append(_unused(held))
            else:
                kept.append(held)
        self._held = kept
        return [item for item in unused if item[1] or item[2]]

    def release(self) -> list[tuple[int, int, float]]:
        """Drop every grant; return what is left unused in them, to give back."""
        unused = [_unused(held) for held in self._held]
        self._held = []
        return [item for item in unused if item[1] or item[2]]

    def __len__(self) -> int:
        return len(self._held)


def _unused(held: _Held) -> tuple[int, int, float]:
    requests = held.requests - held.used if held.requests is not None else 0
    return held.id, requests, held.tokens or 0.0
