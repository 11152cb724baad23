"""Concurrency that finds its own level (pure: no clock, no I/O; nothing here awaits).

An ``AdaptiveConcurrency`` says how many requests may be in flight. A worker asks
:meth:`~AdaptiveConcurrency.try_start` for a ticket before sending and hands it back to
:meth:`~AdaptiveConcurrency.finish` with the outcome. The level moves the way TCP's window
does:

- **Slow start.** From a low level, every success adds one: the level doubles per round
  trip until the first loss, so a large quota is found in a few rounds. Above a quarter of
  ``max_concurrency`` a success adds a half (x1.5 per round trip; TCP's limited slow start):
  a requests-per-minute window refuses only once the burst that overfills it was sent.
- **Back quickly, then probe.** A loss tells what the server took: what was in flight but
  the refused. Below that level the level climbs back half the gap per round trip (at least
  one); at or above it, a round trip's worth of successes adds one.
- **Gentle multiplicative decrease.** A loss (429, 503, a timeout) sets the level to
  ``backoff`` (0.85 by default) times the level, or times the requests in flight when fewer
  were. Halving, as TCP does, idles a quarter of a hard cap on average; 0.85 keeps the
  level between 85% and 100% of it.
- **One cut per round, one off per loss.** The requests in flight when the level was cut
  were sent at the old level: only a loss of a request started after the last cut cuts
  again. Each further loss of the round says the server took one fewer than was sent, and
  takes one off the level, down to half of what was in flight: a probe's lone 429 leaves
  the gentle cut as it is, while a burst of them (a rate window that the slow start
  overshot) brings the level to what the server did take, in one round.
- **A cap that stays put is probed less often.** A probe one above the level the server
  took, refused, brings the level back to that level, not below; after two such refusals in
  a row the next probe waits four round trips. A probe that gets through ends that.
- **A full rate window is not a smaller cap.** A refusal with fewer in flight than the
  server took before says that a rate window is full, not that fewer in flight would do
  better: the level is cut as usual, but what the server took is lowered only by
  ``backoff`` (the level climbs back to it half the gap per round trip) and the round's
  further refusals (the echo of an earlier burst) take nothing more off.
- **A lost slot waits for a success.** A request refused by a 429 frees its slot only when
  a later request succeeds (TCP's packet conservation): a refusal comes back at once, and
  refilling its slot at once would hit the same full quota again. The pool then starts
  requests as fast as the quota answers them, not as fast as it refuses them. No more
  slots are held than requests in flight that can give them back (a burst of refusals
  would otherwise starve the pool for many round trips). With nothing
  in flight one request may always start, so a pool whose every request fails still probes.
- **A refused attempt that is retried waits for a freed slot.** Its request is *parked*: it
  is not on the server, and its retry goes only into a slot that a request leaving the server
  (a success or a neutral failure) hands it, or when nothing else is in flight. While a parked
  request waits for its slot no new request starts: the retry would otherwise race the pool
  for the slot that frees, and lose each time a level above the quota refills it first.
  Nor does the level grow while a request is parked (TCP's window does not grow during loss
  recovery): the level that refused it is not known to be right yet.
- **Grow only when used.** A success grows the level only while it is at most twice the
  most requests ever in flight: a pool that does not fill the level must not inflate it
  without evidence. Requests that hold a slot while they wait for something other than the
  server (room under a spend limit: :meth:`AdaptiveConcurrency.off_server`) do not count
  there, and while any waits so the level does not grow.

Latency is not a loss signal: an LLM answer's latency tracks its length, not the server's
load. Other failures (400, 500, 502, a broken connection) are neutral: they free the slot
and change nothing, as they say nothing about the quota.

**With the client-wide 429 pause.** A 429 with ``Retry-After`` pauses every start of the
client (``RateLimit.pause``) and cuts the level here: through the worker's ``finish(ticket,
"loss")`` when the request fails for good, or through :meth:`lost` when the transport
retries it (the ``attempt_lost`` context variable; the request is parked while it waits
out the pause, and its retry then waits for a freed slot). The two answer different
questions: the pause says *when* starts may resume, the level says *how many* may run at
once. While paused nothing starts and nothing succeeds, so the level does not grow; when
the pause ends the workers that waited start at the lowered level instead of all at once
(the parked retries first, each into a slot a finished request freed), and the requests
that were in flight during the pause, started before the cut, do not cut again when their
own 429s arrive.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Literal

from ._exceptions import APITimeoutError

__all__ = ["AdaptiveConcurrency", "Outcome", "Readmission", "attempt_lost", "outcome_of"]

Outcome = Literal["success", "loss", "neutral"]
_OUTCOMES = frozenset(("success", "loss", "neutral"))
# 429: the quota is full; 503: the server (or its upstream) has no room now.
_LOSS_STATUSES = frozenset((429, 503))

#: What the transport awaits before retrying a lost attempt: until the level admits it again.
Readmission = Callable[[], Awaitable[None]]

#: Told of each failed attempt that the transport retries, inside a request that an adaptive
#: level admitted (set per request by its worker; ``None`` elsewhere): a 429 answered to a
#: first attempt is a loss signal even when the retry then succeeds. For a loss it returns
#: what to await (after the retry's delay) before the retry is sent.
attempt_lost: ContextVar[Callable[[BaseException], Readmission | None] | None] = ContextVar(
    "routmy_attempt_lost", default=None
)


def outcome_of(result: object) -> Outcome:
    """What a request's result says about the server's room: ``"loss"`` for a 429, a 503 or
    a timeout (ours, or the wire's before it is mapped), ``"neutral"`` for any other failure,
    ``"success"`` for anything else."""
    if not isinstance(result, BaseException):
        return "success"
    if getattr(result, "status_code", None) in _LOSS_STATUSES:
        return "loss"
    if isinstance(result, (APITimeoutError, TimeoutError, asyncio.TimeoutError)):
        return "loss"
    return "neutral"


class AdaptiveConcurrency:
    """A concurrency level that grows while requests succeed and backs off on loss signals.

    :param max_concurrency: the level never goes above this.
    :param initial: the level to start at (at most ``max_concurrency``).
    :param backoff: the factor a loss multiplies the level by, in (0, 1).
    :raises ValueError: a bound is below 1, or ``backoff`` outside (0, 1).
    """

    __slots__ = (
        "_confirmed",
        "_cut_busy",
        "_cut_ticket",
        "_good",
        "_next_ticket",
        "_off_server",
        "_open",
        "_parked",
        "_round_losses",
        "_slow_start",
        "_window",
        "backoff",
        "credits",
        "cuts",
        "debt",
        "in_flight",
        "losses",
        "max_concurrency",
        "peak",
        "peak_in_flight",
    )

    def __init__(self, *, max_concurrency: int, initial: int = 4, backoff: float = 0.85):
        for name, value in (("max_concurrency", max_concurrency), ("initial", initial)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
        if not isinstance(backoff, (int, float)) or not 0 < backoff < 1:
            raise ValueError(f"backoff must be a number between 0 and 1, not {backoff!r}")
        self.max_concurrency = max_concurrency
        self.backoff = float(backoff)
        self._window = float(min(initial, max_concurrency))
        self._slow_start = True
        self._next_ticket = 0
        # Starts numbered below this were made before the last cut: their losses are old news.
        self._cut_ticket = 0
        # What was in flight at the last cut, and the losses of its round since.
        self._cut_busy = 0
        self._round_losses = 0
        # The level the server last took (known at the first cut): the level grows back to
        # it quickly, and beyond it by one per round trip.
        self._good = 0.0
        # Probes just above it refused in a row: the level is the cap.
        self._confirmed = 0
        # Each open ticket, with the number of its (last) start: a retry let in after a cut
        # is a start at the new level, and its loss is news.
        self._open: dict[int, int] = {}
        self._parked: set[int] = set()
        # Requests holding a slot while they wait for something other than the server (room
        # under a spend limit): the server is not what bounds them.
        self._off_server: set[int] = set()
        #: Requests started and not finished (the parked ones included).
        self.in_flight = 0
        #: Slots held by losses until successes give them back.
        self.debt = 0
        #: Slots freed by requests that left the server, kept for parked requests' retries.
        self.credits = 0
        #: Loss signals seen, and the cuts they made (fewer: one per round).
        self.losses = 0
        self.cuts = 0
        #: The highest level reached, and the most requests in flight at once.
        self.peak = self.level
        self.peak_in_flight = 0

    @property
    def level(self) -> int:
        """How many requests may be in flight now: between 1 and ``max_concurrency``."""
        return max(1, min(self.max_concurrency, math.floor(self._window)))

    @property
    def parked(self) -> int:
        """Requests whose attempt was lost and whose retry waits for a slot."""
        return len(self._parked)

    def try_start(self) -> int | None:
        """A ticket for one more request in flight, or ``None`` when the level is full (or a
        parked request waits for a slot: its retry goes first)."""
        if len(self._parked) > self.credits:
            return None
        active = self.in_flight - len(self._parked)
        if (active or self.credits) and active + self.debt + self.credits >= self.level:
            return None
        self.in_flight += 1
        ticket = self._next_ticket
        self._next_ticket += 1
        self._open[ticket] = ticket
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight - len(self._off_server))
        return ticket

    def finish(self, ticket: int, outcome: Outcome) -> None:
        """Hand a ticket back with what became of its request.

        :param ticket: what :meth:`try_start` returned.
        :param outcome: ``"success"``, ``"loss"`` (429, 503, a timeout) or ``"neutral"``.
        :raises ValueError: an unknown outcome, or a ticket not in flight (handed back twice).
        """
        if outcome not in _OUTCOMES:
            raise ValueError(f"outcome must be 'success', 'loss' or 'neutral', not {outcome!r}")
        started = self._open.pop(ticket, None)
        if started is None:
            raise ValueError(f"ticket {ticket!r} is not in flight")
        self._off_server.discard(ticket)
        busy = self.in_flight - len(self._parked)
        self.in_flight -= 1
        if ticket in self._parked:
            # Given up while waiting for its retry's slot (cancelled, or its owner stopped):
            # it was not on the server, so it frees nothing there.
            self._parked.discard(ticket)
            self.credits = min(self.credits, len(self._parked))
            self.losses += outcome == "loss"
            return
        if outcome == "loss":
            self.losses += 1
            # No more held slots than requests still in flight that can give them back: a
            # burst of refusals would otherwise starve the pool for many round trips.
            self.debt = min(self.debt + 1, self.level, busy - 1)
            if started >= self._cut_ticket:
                self._cut(busy)
            else:
                self._old_loss()
            return
        # The request left the server: its slot goes first to a parked retry.
        handed_on = len(self._parked) > self.credits
        if handed_on:
            self.credits += 1
        if outcome == "success":
            if not handed_on:
                self.debt = max(0, self.debt - 1)
            # Not while a refused request waits to retry: the level that refused it is not
            # known to be right yet (TCP does not grow its window during loss recovery).
            # Nor while requests wait off the server (for spend room): then something else
            # bounds the run, and a level grown now would say nothing about the server.
            if not self._parked and not self._off_server and self.peak_in_flight * 2 >= self.level:
                self._grow()

    def off_server(self, ticket: int) -> None:
        """The request of ``ticket`` keeps its slot but waits for something other than the
        server (room under a spend limit) until :meth:`on_server`: while any request waits so,
        successes do not grow the level, and it does not count as in flight on the server.

        :raises ValueError: a ticket not in flight.
        """
        if ticket not in self._open:
            raise ValueError(f"ticket {ticket!r} is not in flight")
        self._off_server.add(ticket)

    def on_server(self, ticket: int) -> None:
        """The request of ``ticket`` goes to the server again (see :meth:`off_server`)."""
        self._off_server.discard(ticket)

    def lost(self, ticket: int) -> None:
        """A loss signal from a request that stays in flight (its attempt failed and is
        retried): the level is cut as for a loss, and the request is parked until
        :meth:`try_resume` lets its retry go; :meth:`finish` still ends the ticket.

        :raises ValueError: a ticket not in flight.
        """
        started = self._open.get(ticket)
        if started is None:
            raise ValueError(f"ticket {ticket!r} is not in flight")
        self.losses += 1
        if ticket in self._parked:
            return
        if started >= self._cut_ticket:
            self._cut(self.in_flight - len(self._parked))
        else:
            self._old_loss()
        self._parked.add(ticket)

    def try_resume(self, ticket: int) -> bool:
        """Whether a parked request's retry may go now: into a slot a request leaving the
        server freed for it, or as the only request in flight. A ticket not parked may go.

        :raises ValueError: a ticket not in flight.
        """
        if ticket not in self._open:
            raise ValueError(f"ticket {ticket!r} is not in flight")
        if ticket not in self._parked:
            return True
        if self.credits:
            self.credits -= 1
        elif self.in_flight > len(self._parked):
            return False
        self._parked.remove(ticket)
        self._open[ticket] = self._next_ticket
        self._next_ticket += 1
        return True

    def _grow(self) -> None:
        window = self._window
        if self._slow_start:
            # Doubling per round trip up to a quarter of the ceiling, then half again per
            # round trip (TCP's limited slow start): a rate window answers the overshoot
            # only after the burst was sent, so the burst must be smaller.
            window += 1.0 if window < self.max_concurrency / 4 else 0.5
        elif window < self._good:
            # Below the level the server last took: half the way back to it per round trip
            # (at least one), and no further.
            window = min(self._good, window + max(1.0, (self._good - window) / 2) / window)
        else:
            # At or above it: probe by one per round trip, or by one per four once probes
            # refused twice in a row have confirmed that level (a cap that stays put is
            # probed less often); a probe that gets through ends that.
            if window >= self._good + 2:
                self._confirmed = 0
            window += 1.0 / (window * (4 if self._confirmed >= 2 else 1))
        self._window = min(float(self.max_concurrency), window)
        self.peak = max(self.peak, self.level)

    def _cut(self, busy: int) -> None:
        self._cut_ticket = self._next_ticket
        self._cut_busy = busy
        self._round_losses = 1
        self.cuts += 1
        if not self._slow_start and self._good < busy <= self._good + 1:
            # A probe one above the level the server last took was refused: that level is
            # the cap, confirmed. Back to it, not below.
            self._window = min(self._window, self._good)
            self._confirmed += 1
            return
        if not self._slow_start and busy < self._good:
            self._full_window_cut(busy)
            return
        # From what was really in flight: a level the pool did not fill (its slots held by
        # earlier losses) says nothing about what the server takes.
        self._slow_start = False
        self._confirmed = 0
        self._window = max(1.0, min(self._window, float(busy)) * self.backoff)
        # The server took what was in flight but the one refused.
        self._good = max(1.0, float(busy - 1))

    def _full_window_cut(self, busy: int) -> None:
        """A refusal with fewer in flight than the server took before: a full rate window
        (time, not the number in flight, refused it; the client's pause holds the starts until
        it has room). The level is cut as for any loss, but the level the server took is
        lowered only gently (by ``backoff``), so the level climbs back to it half the gap per
        round trip, and the round's further losses take nothing more off: they are the echo of
        an earlier burst, not a sign that fewer in flight would do better."""
        self._window = max(1.0, min(self._window, float(busy)) * self.backoff)
        self._good = max(float(busy), self._good * self.backoff)
        self._confirmed = 0
        self._cut_busy = 0  # no one-off-per-loss for this round (see _old_loss)

    def _old_loss(self) -> None:
        """A loss of a request sent before the last cut: not a new cut, but the round it
        came from had one request fewer room than was sent. Many of them (a first window
        of a rate quota overshot by the slow start) bring the level down to what the server
        did take; one or two leave the gentle cut as it was."""
        if not self._cut_busy:
            return  # the round of a full rate window's cut
        self._round_losses += 1
        # At most half of what was in flight: the losses of one round halve it at most.
        took = max(self._cut_busy / 2, float(self._cut_busy - self._round_losses))
        self._good = max(1.0, min(self._good, took))
        self._window = max(1.0, min(self._window, took))

    def __repr__(self) -> str:
        return (
            f"<AdaptiveConcurrency level={self.level} in_flight={self.in_flight} "
            f"max={self.max_concurrency}>"
        )
