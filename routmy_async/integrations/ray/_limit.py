"""``ClusterRateLimit``: a ``RateLimit`` whose capacity comes from a cluster-wide coordinator.

The transport asks a client's ``rate_limit`` for every attempt, synchronously:
``reserve_turn(tokens) -> (start, ticket)``, then asks ``remaining(start, ticket)`` until it
is 0 (sleeping in between) and starts (``Transport._wait_turn``). Grants are fetched in the
background before they run out (one call per grant, not per request). When none is held at
all (the first request, a burst beyond the prefetch, a coordinator that is restarting), the
reservation is *pending*: its ticket names it, a grant is fetched in the background, and
``remaining`` says "a moment more" until a grant has arrived and the reservation has taken
its start from it. So the event loop never blocks on the coordinator, however long it takes
to answer (a restart takes seconds); a reservation still pending after
``_PENDING_TIMEOUT`` fails its request. ``reserve_start`` (the blocking form, for callers
outside an event loop) asks with one blocking call instead.

A 429 reaches ``pause()`` (the transport's shared backoff): it holds this process at once and
is forwarded to the coordinator, whose watchers wake every other member within a round trip.

"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from ..._http._ratelimit import RateLimit
from ._grants import Allowance, Grant, Settings

__all__ = ["ClusterRateLimit", "Coordinator"]

logger = logging.getLogger("routmy_async")

Unused = list[tuple[int, int, float]]

# Ask for the whole fair share when the caller gave no hint of how much it needs.
_WHOLE_SHARE = 1 << 30
# How long one pause watch waits at the coordinator before asking again: short, because a
# call in flight holds an actor's exit until it ends, should cancelling it not be supported.
_WATCH_SECONDS = 3.0
# Blocking grant calls in a row that leave nothing usable before we give up.
_MAX_BLOCKING_TRIES = 3
# How often a pending reservation looks for its grant.
_PENDING_POLL = 0.02
# How long a reservation may wait for a grant before its request fails: a coordinator being
# restarted answers within seconds; one that does not come back must not hang the job.
_PENDING_TIMEOUT = 120.0
# Grants in a row that arrive with nothing of their window left before pending
# reservations fail (the coordinator answers too slowly for the grant_seconds).
_MAX_LATE_GRANTS = 3


class _Pending:
    """A reservation made while no grant was held: it takes its start when one arrives."""

    __slots__ = ("deadline", "need", "not_before", "start")

    def __init__(self, need: float, not_before: float, deadline: float):
        self.need = need
        self.not_before = not_before
        self.deadline = deadline
        self.start: float | None = None


class Coordinator(Protocol):
    """What a ``ClusterRateLimit`` needs from the coordinator (a Ray actor, or in-process)."""

    def grant_now(
        self, member: str, requests: int, tokens: float, need_tokens: float, settle: float
    ) -> Grant:
        """A grant, blocking the caller for one round trip."""
        ...

    async def grant(
        self, member: str, requests: int, tokens: float, need_tokens: float, settle: float
    ) -> Grant:
        """A grant, awaited."""
        ...

    async def give_back(self, unused: Unused, settle: float) -> None:
        """Return unused capacity and settle token corrections."""
        ...

    async def pause(self, seconds: float) -> None:
        """Pause every member."""
        ...

    async def watch(self, epoch: int, timeout: float) -> tuple[int, float]:
        """Wait for a pause epoch other than ``epoch``: ``(epoch, seconds left)``."""
        ...

    async def join(self, member: str) -> None:
        """Count a member in."""
        ...

    async def leave(self, member: str, unused: Unused, settle: float) -> None:
        """Count a member out, returning what it held."""
        ...


class ClusterRateLimit(RateLimit):
    """A client's rate budget when the budget is shared by a whole cluster.

    Pass it as ``AsyncRoutmy(rate_limit=...)`` inside one process (a Ray actor or task),
    one per process; ``ClusterBudget.rate_limit()`` builds it. Start it with
    ``await limit.start()`` (or let the first request do it) and close it with
    ``await limit.aclose()`` after the client, to give back what it still holds.

    A request cancelled while it waits gives nothing back: its start is simply not used,
    which can only leave the cluster under its limit.
    """

    def __init__(
        self,
        coordinator: Coordinator,
        settings: Settings,
        *,
        member: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        super().__init__(clock=clock)
        self.requests_per_minute = settings.requests
        self.tokens_per_minute = settings.tokens
        self.limits_tokens = settings.tokens is not None
        # Never quiet: the transport must read `idle` on every attempt (it starts the pause
        # watcher, and grants hold the limits).
        self.quiet = False
        self._coordinator = coordinator
        self._settings = settings
        self._member = member or f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._allowance = Allowance(guard=min(0.25, settings.grant_seconds / 4))
        self._demand = 0  # starts expected soon (a batch's rows): sizes the next grant
        # A batch said how many starts it needs (``expect``) and has not ended: its grants
        # are sized to what is left of it, never to a whole share.
        self._in_batch = False
        self._estimate = 0.0  # a request's token estimate, averaged
        self._last_size = 1  # starts in the last grant
        self._debt = 0.0  # token corrections not yet reported
        self._epoch = 0
        self._joined = False
        self._closed = False
        self._fetching: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._pending: dict[int, _Pending] = {}
        self._next_ticket = 1
        self._late_grants = 0  # grants in a row that came with no usable window
        self._fetch_after = 0.0  # no background fetch before (a backoff after a failure)
        self._fetch_backoff = 0.0
        #: Grants fetched in the background, and with a blocking call (for the benchmark).
        self.fetches = 0
        self.blocking_fetches = 0

    # -- what the transport calls -------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Never idle while the budget has limits; without limits only a pause can hold a
        start. (The transport reads this first on every attempt, inside the event loop: the
        place to start the pause watcher for a limit nobody started explicitly.)"""
        self._ensure_started()
        if self._settings.limited:
            return False
        return super().idle

    def reserve_start(self, tokens: int = 0, not_before: float = 0.0) -> tuple[float, float]:
        """Spend one start of a grant held (fetching one with a blocking call when none is
        held); return ``(wait, start)``.

        :raises RuntimeError: the coordinator's answers arrive too late to be usable.
        """
        self._ensure_started()
        if not self._settings.limited:
            return super().reserve_start(0, not_before)  # only the shared pause applies
        limit = self._settings.tokens
        need = float(min(tokens, limit)) if limit is not None and tokens else 0.0
        if need:
            self._estimate = need if not self._estimate else 0.8 * self._estimate + 0.2 * need
        now = self._clock()
        self._give_back(self._allowance.expire(now))
        start = self._allowance.take(max(now, self._paused_until, not_before), need)
        tries = 0
        while start is None:
            if tries == _MAX_BLOCKING_TRIES:
                raise RuntimeError(
                    "the rate budget's coordinator answers too slowly: its grants close "
                    "before they arrive (raise grant_seconds)"
                )
            tries += 1
            self._fetch_blocking(need)
            now = self._clock()
            start = self._allowance.take(max(now, self._paused_until, not_before), need)
        if self._demand > 0:
            self._demand -= 1
        self._prefetch(now)
        return max(0.0, start - now), start

    def reserve_turn(self, tokens: int = 0, not_before: float = 0.0) -> tuple[float, float | None]:
        """Spend one start of a grant held; without one, make a pending reservation (its
        ticket) and fetch a grant in the background. Never blocks."""
        self._ensure_started()
        if not self._settings.limited:
            return super().reserve_turn(0, not_before)  # only the shared pause applies
        need = self._need(tokens)
        now = self._clock()
        self._give_back(self._allowance.expire(now))
        start = self._allowance.take(max(now, self._paused_until, not_before), need)
        if start is not None:
            self._took(now)
            return start, None
        ticket = self._next_ticket
        self._next_ticket += 1
        self._pending[ticket] = _Pending(need, not_before, now + _PENDING_TIMEOUT)
        self._fetch_for_pending(now)
        # After a pause running now: the transport would otherwise take it for a pause
        # that began while it waited, and reserve again at once.
        return max(now, self._paused_until, not_before), float(ticket)

    def remaining(self, start: float, ticket: float | None = None) -> float:
        """How much longer a reservation waits; a pending one takes its start from a grant
        that arrived since, or waits a moment more.

        :raises RuntimeError: no usable grant came in time (the coordinator is gone, or
            answers too slowly for ``grant_seconds``).
        """
        pending = self._pending.get(int(ticket)) if ticket is not None else None
        if pending is None:
            return super().remaining(start, None)
        now = self._clock()
        if pending.start is None:
            taken = self._allowance.take(
                max(now, self._paused_until, pending.not_before), pending.need
            )
            if taken is None:
                problem = self._pending_problem(now, pending)
                if problem is not None:
                    del self._pending[int(ticket or 0)]
                    raise RuntimeError(problem)
                self._fetch_for_pending(now)
                return _PENDING_POLL
            pending.start = taken
            self._took(now)
        return super().remaining(pending.start, None)

    def started(self, ticket: float | None = None) -> None:
        """A reservation started: a pending one is done with."""
        if ticket is not None:
            self._pending.pop(int(ticket), None)
        super().started(None)

    def cancel(self, start: float, tokens: int = 0, ticket: float | None = None) -> None:
        """Nothing to give back: a start that is not used only leaves the budget unspent."""
        del start, tokens
        if ticket is not None:
            self._pending.pop(int(ticket), None)

    def _need(self, tokens: int) -> float:
        limit = self._settings.tokens
        need = float(min(tokens, limit)) if limit is not None and tokens else 0.0
        if need:
            self._estimate = need if not self._estimate else 0.8 * self._estimate + 0.2 * need
        return need

    def _took(self, now: float) -> None:
        if self._demand > 0:
            self._demand -= 1
        self._prefetch(now)

    def _pending_problem(self, now: float, pending: _Pending) -> str | None:
        if self._late_grants >= _MAX_LATE_GRANTS:
            return (
                "the rate budget's coordinator answers too slowly: its grants close before "
                "they arrive (raise grant_seconds)"
            )
        if now >= pending.deadline:
            return (
                f"the rate budget's coordinator gave no grant in {_PENDING_TIMEOUT:.0f} s "
                "(is its actor gone?)"
            )
        return None

    def _fetch_for_pending(self, now: float) -> None:
        if self._fetching is None and not self._closed and now >= self._fetch_after:
            need = max((pending.need for pending in self._pending.values()), default=0.0)
            self._fetching = self._spawn(self._fetch(need))

    def correct(self, estimate: int, actual: int) -> None:
        """Remember the difference between a token estimate and the real usage; it is
        reported to the coordinator with the next grant."""
        limit = self._settings.tokens
        if limit is not None and estimate:
            self._debt += actual - min(float(estimate), limit)

    def pause(self, seconds: float) -> None:
        """Hold this process's new starts for ``seconds`` at once, and every other member's
        through the coordinator (a 429 slows the whole cluster)."""
        super().pause(seconds)
        if seconds > 0:
            self._spawn(self._coordinator.pause(seconds))

    # -- the rest of its life -----------------------------------------------------------

    def expect(self, count: int) -> None:
        """Say that about ``count`` starts follow (a batch's rows), to size the next grant;
        until :meth:`release`, no grant is asked for beyond them (a retry asks for one)."""
        self._demand = max(0, int(count))
        self._in_batch = True

    async def join(self) -> None:
        """Count this process in the budget's members (once)."""
        if not self._joined and not self._closed:
            self._joined = True
            await self._coordinator.join(self._member)

    async def start(self) -> None:
        """Join the budget and watch for its pauses until :meth:`release` or :meth:`aclose`
        (the first request starts the watch too)."""
        if self._closed:
            return
        await self.join()
        if self._watcher is None and not self._settings.limited:
            # No grant will bring a pause already running: ask for it before any start.
            self._apply_pause(*await self._coordinator.watch(self._epoch, 0.0))
        self._ensure_started()

    async def release(self) -> None:
        """A batch has ended: stop watching pauses until the next :meth:`start`.

        Nothing of this process is then left waiting at the coordinator, which matters: Ray
        lets an idle actor go only once the calls it made have ended. Grants still held stay
        for the next batch; what expires unused is given back.
        """
        self._demand = 0
        self._in_batch = False
        await self._quiesce()

    async def aclose(self) -> None:
        """Stop the background work, give back what is held, and leave the budget."""
        if self._closed:
            return
        self._closed = True
        await self._quiesce()
        unused = self._allowance.release()
        settle, self._debt = self._debt, 0.0
        if self._joined:
            await self._coordinator.leave(self._member, unused, settle)
        elif unused or settle:
            await self._coordinator.give_back(unused, settle)

    async def _quiesce(self) -> None:
        # The watch and a prefetch are cancelled; calls already sent (a give-back, a pause)
        # are left to finish.
        for task in (self._watcher, self._fetching):
            if task is not None:
                task.cancel()
        tasks = [task for task in (self._watcher, self._fetching) if task is not None]
        tasks.extend(self._background)
        self._watcher = None
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> ClusterRateLimit:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- grants ---------------------------------------------------------------------

    def _want(self) -> int:
        # Within a batch whose starts are all spent, only a retry still asks: one start.
        # A whole share there would be granted and mostly given back, but its pace at the
        # coordinator would hold every other member's next grant back for a whole share's
        # time (a second with two members) first.
        if self._demand > 0:
            return self._demand
        return 1 if self._in_batch else _WHOLE_SHARE

    def _ask(self, need: float) -> tuple[str, int, float, float, float]:
        want = self._want()
        settle, self._debt = self._debt, 0.0
        want_tokens = max(need, self._estimate * min(want, _WHOLE_SHARE))
        return self._member, want, want_tokens, need, settle

    def _fetch_blocking(self, need: float) -> None:
        sent = self._clock()
        grant = self._coordinator.grant_now(*self._ask(need))
        self.blocking_fetches += 1
        self._accept(grant, sent)

    async def _fetch(self, need: float | None = None) -> None:
        try:
            sent = self._clock()
            grant = await self._coordinator.grant(
                *self._ask(self._estimate if need is None else need)
            )
            self.fetches += 1
            self._fetch_backoff = 0.0
            self._accept(grant, sent)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # asked again, after a backoff, while a start needs it
            logger.warning("rate budget: fetching a grant failed: %s", type(exc).__name__)
            self._fetch_backoff = min(max(0.1, 2 * self._fetch_backoff), 5.0)
            self._fetch_after = self._clock() + self._fetch_backoff
        finally:
            self._fetching = None

    def _accept(self, grant: Grant, sent: float) -> None:
        received = self._clock()
        if grant.pause > 0:
            RateLimit.pause(self, grant.pause)  # here only: it came from the coordinator
        self._epoch = max(self._epoch, grant.epoch)
        if grant.requests:
            self._last_size = grant.requests
        if not self._allowance.add(grant, sent=sent, received=received):
            self._late_grants += 1
            self._give_back([(grant.id, grant.requests or 0, grant.tokens or 0.0)])
        else:
            self._late_grants = 0

    def _prefetch(self, now: float) -> None:
        if self._fetching is not None or self._closed:
            return
        starts, tokens = self._allowance.left(now)
        target = min(self._demand, self._last_size) if self._demand else self._last_size
        low = starts * 2 < max(1, target)
        if self._settings.tokens is not None and self._estimate:
            low = low or tokens * 2 < self._estimate * max(1, target)
        # A batch's last start needs no grant after it: the next batch says what it needs.
        if low and (self._demand > 0 or (starts == 0 and not self._in_batch)):
            self._fetching = self._spawn(self._fetch())

    def _give_back(self, unused: Unused) -> None:
        if unused:
            self._spawn(self._coordinator.give_back(unused, 0.0))

    # -- background work ------------------------------------------------------------

    def _ensure_started(self) -> None:
        if self._watcher is not None or self._closed:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return  # not inside the loop yet: the first request starts it
        self._watcher = asyncio.ensure_future(self._watch())

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any] | None:
        try:
            task = asyncio.ensure_future(work)
        except RuntimeError:  # no running loop: the work is dropped, never left pending
            work.close()
            return None
        self._background.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.warning(
                "rate budget: a call to the coordinator failed: %s",
                type(task.exception()).__name__,
            )

    async def _watch(self) -> None:
        await self.join()
        backoff = 0.5
        while True:
            try:
                epoch, remaining = await self._coordinator.watch(self._epoch, _WATCH_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("rate budget: watching pauses failed: %s", type(exc).__name__)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.5
            self._apply_pause(epoch, remaining)

    def _apply_pause(self, epoch: int, remaining: float) -> None:
        if epoch != self._epoch:
            self._epoch = epoch
            if remaining > 0:
                RateLimit.pause(self, remaining)  # here only: it came from the coordinator

    def __repr__(self) -> str:
        return (
            f"ClusterRateLimit(requests_per_minute={self._settings.requests!r}, "
            f"tokens_per_minute={self._settings.tokens!r}, window={self._settings.window!r})"
        )
