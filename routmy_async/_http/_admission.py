"""Admission: what a request waits for before it is sent. First its turn in the rate budgets
that apply (the client's, and a batch's inside ``create_many``), then a connection slot.

A request queued in a budget holds no connection; a full pool queues its waiters and hands a
freed slot straight to the first of them. :class:`Admission` is the part of the transport that
keeps this state; the transport's retry loop asks it once per attempt.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import anyio
from yarl import URL

from .._config import Timeout
from .._exceptions import APIConnectionError, APITimeoutError
from ._ratelimit import RateLimit, batch_limit, batch_limits_running

__all__ = ["Admission"]

_NEGLIGIBLE_WAIT = 0.002
# How often a request waiting for tokens looks again: usage settled meanwhile gives tokens
# back, and its start may have come sooner.
_TOKEN_RECHECK = 1.0
# A request's reservations in the budgets that apply to it: (budget, start, token ticket).
_Turn = list[tuple[RateLimit, float, "float | None"]]


class Admission:
    """The rate budgets' turns and the pool's connection slots of one transport."""

    def __init__(self, *, max_connections: int, rate_limit: RateLimit | None) -> None:
        self._max_connections = max_connections
        #: The client's shared budget (also holds the pause a 429 puts on every new start).
        self.rate_limit = rate_limit if rate_limit is not None else RateLimit()
        # Connections in use, bounded by our own count rather than aiohttp's, so that a
        # wait for a free one can be bounded (Timeout.pool) and reported with numbers. While
        # the pool is not full, taking and giving back a slot is an integer's step; only a
        # full pool queues waiters, and a freed slot passes straight to the first of them.
        self._counts_slots = False  # set once we make the pool (a borrowed one: its limits)
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        # Set by close(): wakes the requests waiting for their turn in the budget.
        self._closing: asyncio.Event | None = None
        self.connections_in_use = 0
        #: Whether close() has run (a plain attribute: every request reads it).
        self.closed = False

    def wants_tokens(self) -> bool:
        """Whether requests should carry a token estimate (a tokens-per-minute budget applies)."""
        if self.rate_limit.limits_tokens:
            return True
        if not batch_limits_running.count:
            return False
        batch = batch_limit.get()
        return batch is not None and batch.limits_tokens

    def settle_tokens(self, estimate: int, actual: int | None) -> None:
        """Correct the budgets once a request's real usage is known."""
        if estimate and actual is not None:
            self.rate_limit.correct(estimate, actual)
            batch = batch_limit.get() if batch_limits_running.count else None
            if batch is not None:
                batch.correct(estimate, actual)

    async def _wait_turn(self, tokens: int, method: str, url: URL) -> _Turn | None:
        """Wait for the client's budget (and a batch's, inside create_many) to allow a start;
        return the reservations made (``None``: no budget applies)."""
        limit = self.rate_limit
        batch = batch_limit.get() if batch_limits_running.count else None
        if batch is None and limit.idle:
            return None
        turn = self._reserve(limit, batch, tokens)
        if not turn:
            return None
        try:
            while True:
                wait = 0.0
                for budget, start, ticket in turn:
                    wait = max(wait, budget.remaining(start, ticket))
                # A start a hair early is harmless to a per-minute budget; a sleep for it
                # would cost an event-loop round per request under a generous limit.
                if wait <= _NEGLIGIBLE_WAIT:
                    return turn
                if any(budget.inside_pause(start) for budget, start, _ in turn):
                    # A 429 arrived while this request waited: its start fell inside the
                    # pause. Queue again behind it, spaced, rather than all at its end.
                    self._give_back(turn, tokens)
                    turn = self._reserve(limit, batch, tokens)
                    continue
                if any(ticket is not None for _, _, ticket in turn):
                    wait = min(wait, _TOKEN_RECHECK)  # tokens given back may end it sooner
                await self._sleep_unless_closed(wait)
                if self.closed:
                    raise self._closed_error(method, url)
        except BaseException:
            # Cancelled while waiting (a wait_for, a client going away): give the starts
            # and tokens back, or every later request would wait behind phantoms.
            self._give_back(turn, tokens)
            raise

    @staticmethod
    def _reserve(limit: RateLimit, batch: RateLimit | None, tokens: int) -> _Turn:
        """A start in each budget that applies; the batch's spaced from the client's."""
        turn: _Turn = []
        not_before = 0.0
        if not limit.idle:
            start, ticket = limit.reserve_turn(tokens)
            turn.append((limit, start, ticket))
            not_before = start
        if batch is not None and not batch.idle:
            start, ticket = batch.reserve_turn(tokens, not_before)
            turn.append((batch, start, ticket))
        return turn

    @staticmethod
    def _give_back(turn: _Turn | None, tokens: int) -> None:
        for budget, start, ticket in turn or ():
            budget.cancel(start, tokens, ticket)

    async def _sleep_unless_closed(self, seconds: float) -> None:
        """Sleep, woken early by close() (a deep budget queue must not hold a shutdown)."""
        closing = self._closing
        if closing is None:
            closing = self._closing = asyncio.Event()
        with anyio.move_on_after(seconds):
            await closing.wait()

    async def _begin(
        self,
        timeout: Timeout,  # noqa: ASYNC109 - its pool part bounds the wait, with anyio
        method: str,
        url: URL,
        tokens: int,
    ) -> Callable[[], None] | None:
        """Wait for the budget's turn, then a connection slot; return the function that
        frees the slot (once). A request queued in the budget holds no connection."""
        turn = await self._wait_turn(tokens, method, url)
        if turn is None or not self._pool_full():
            release = await self._take_slot(timeout, method, url)
        else:
            # A full pool. A slot freed within a moment (a connection on its way back) keeps
            # the turn; after a real wait the turn is stale: give it back and take a fresh
            # one, holding the slot (at once unless the budget is busy too).
            clock = asyncio.get_running_loop().time
            began = clock()
            try:
                release = await self._take_slot(timeout, method, url)
            except BaseException:
                self._give_back(turn, tokens)
                raise
            if clock() - began > _NEGLIGIBLE_WAIT:
                self._give_back(turn, tokens)
                try:
                    turn = await self._wait_turn(tokens, method, url)
                except BaseException:
                    if release is not None:
                        release()
                    raise
        for budget, _, ticket in turn or ():
            budget.started(ticket)
        return release

    def _pool_full(self) -> bool:
        return self._counts_slots and self.connections_in_use >= self._max_connections

    async def _take_slot(
        self,
        timeout: Timeout,  # noqa: ASYNC109 - its pool part bounds the wait, with anyio
        method: str,
        url: URL,
    ) -> Callable[[], None] | None:
        """Take a connection slot, waiting while the pool is full; return the function that
        frees it (once)."""
        if not self._counts_slots:
            return None  # a borrowed session: its connector sets the limits
        if self.connections_in_use < self._max_connections:
            self.connections_in_use += 1
        elif timeout.pool is not None:
            try:
                with anyio.fail_after(timeout.pool):
                    await self._wait_for_slot()
            except TimeoutError:
                raise APITimeoutError(
                    f"{method} {url}: no connection became free within {timeout.pool:g} s: the "
                    f"pool was full ({self.connections_in_use} of {self._max_connections} "
                    "connections in use); raise max_connections, or Timeout(pool=...)",
                    method=method,
                    url=str(url),
                ) from None
        else:
            await self._wait_for_slot()  # no bound on the wait: no cancel scope to pay for
        return self.free_slot

    async def _wait_for_slot(self) -> None:
        """Queue for a slot of a full pool; it is handed over by :meth:`free_slot`."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.free_slot()  # handed a slot as it gave up: pass it on
            else:
                waiter.cancel()  # free_slot skips it
            raise

    def free_slot(self) -> None:
        """Give a slot back: to the first request still waiting for one, else to the pool."""
        waiters = self._slot_waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot changes hands: the count stays
                return
        self.connections_in_use -= 1

    def _closed_error(self, method: str, url: URL | str) -> APIConnectionError:
        return APIConnectionError(
            f"{method} {url}: the client was closed while this request was in flight",
            method=method,
            url=str(url),
        )
