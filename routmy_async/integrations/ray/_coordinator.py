"""The budget's coordinator: the body of the named Ray actor that every process asks for grants.

It is a plain class with ``async`` methods (Ray turns it into an async actor with
``ray.remote``), so it also runs in-process in tests. Every method runs on the actor's one
event loop and never awaits in the middle of a change, so the ledger needs no lock. Answers
never wait for capacity: a grant that cannot open now opens later (its ``delay``), which is
what lets a caller block on one quick call when it has nothing left.

Surviving its own death: the actor restarts (``max_restarts=-1``) with an empty book, while
the members still hold and use the grants of the lost one. What it must know then is kept
outside the actor, in a :class:`Store` (Ray's GCS key-value store): a :class:`Snapshot` saying
how far ahead the lost book had dated grants. A restarted coordinator assumes the whole
budget granted up to that point (``GrantLedger.assume_spent``): stricter for a span, never
over the limit. The snapshot is saved before the grant that moves it is answered, with some
slack so that it is written about once per ``_SAVE_SLACK`` grant windows, not per grant.

A spend limit's book (``_spend_book``) is saved in the same snapshot, whole, before each
answer that changed it: a restarted coordinator knows every block handed out and every
member's last call (Ray sends a call the lost actor did not answer again).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any, Protocol

import msgspec

from ._grants import Grant, GrantLedger, Settings
from ._spend_book import BookState, BookTotals, SpendBook

__all__ = ["CoordinatorCore", "Snapshot", "Store"]

Unused = list[tuple[int, int, float]]

# The snapshot runs this many grant windows ahead of the latest grant, so that it is
# written again only when grants have caught up with it.
_SAVE_SLACK = 5


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What a coordinator keeps outside itself, to start again from after a restart."""

    #: Wall-clock time (``time.time()``) by which every grant handed out has opened.
    horizon: float
    #: The first grant id not handed out yet: ids stay unique across restarts.
    next_id: int = 1
    #: The spend limit's book (micro units), when the budget has one.
    spend: BookState | None = None


class Store(Protocol):
    """Where a coordinator keeps its :class:`Snapshot` (Ray's GCS, or memory in tests)."""

    def load(self) -> Snapshot | None:
        """The last snapshot saved, if any."""
        ...

    def save(self, snapshot: Snapshot) -> None:
        """Keep ``snapshot`` (replacing the last one)."""
        ...

    def clear(self) -> None:
        """Forget the snapshot (a new budget starts)."""
        ...


class CoordinatorCore:
    """Grants, shared pauses and membership for one budget.

    :param settings: the budget's limits.
    :param clock: monotonic seconds (for tests).
    :param store: where the snapshot for a restart is kept (none: no restart survives).
    :param restarted: this is a restart: start from the stored snapshot.
    :param wall: wall-clock seconds, the snapshot's clock (for tests).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        store: Store | None = None,
        restarted: bool = False,
        wall: Callable[[], float] = time.time,
    ):
        self._settings = settings
        self._clock = clock
        self._wall = wall
        self._store = store
        self._restarted = restarted
        snapshot = store.load() if store is not None and restarted else None
        first_id = snapshot.next_id if snapshot is not None else 1
        self._ledger = GrantLedger(settings, clock=clock, first_id=first_id)
        if snapshot is not None:
            # Its horizon on our clock; a grant window of margin for clocks that differ
            # (the actor may come back on another node).
            until = clock() + snapshot.horizon - wall() + settings.grant_seconds
            self._ledger.assume_spent(until)
        elif store is not None and not restarted:
            store.clear()  # a snapshot left by an earlier budget of this name
        self._saved_until = -math.inf
        self._save_ids = first_id
        self._snapshot = snapshot or Snapshot(horizon=0.0, next_id=first_id)
        self._book = _book_of(settings, snapshot)
        self._changed: asyncio.Event | None = None
        self._joined = 0
        self._left = 0
        self._pauses = 0
        # The spend limit's round trips since this coordinator started, and the blocks
        # they handed out (how often an actor had to ask: a cost per row).
        self._spend_calls = 0
        self._blocks = 0

    async def settings(self) -> Settings:
        """The limits this coordinator enforces (a second budget of the same name must agree)."""
        return self._settings

    def grant_now(
        self, member: str, requests: int, tokens: float, need_tokens: float, settle: float
    ) -> Grant:
        """A grant (see ``GrantLedger.grant``), after settling ``settle`` tokens of
        corrections."""
        if settle:
            self._ledger.settle(settle)
        grant = self._ledger.grant(
            member, requests=requests, tokens=tokens, need_tokens=need_tokens
        )
        self._save(grant.id)
        return grant

    def _save(self, grant_id: int) -> None:
        # Before the grant is answered: a restart must never miss a grant a member holds.
        ledger = self._ledger
        if self._store is None or (
            ledger.horizon <= self._saved_until and grant_id < self._save_ids
        ):
            return
        slack = _SAVE_SLACK * self._settings.grant_seconds
        self._saved_until = ledger.horizon + slack
        # Ids are reserved in blocks, so that a restart starts above every id handed out.
        self._save_ids = grant_id + 1_000
        horizon = self._wall() + self._saved_until - self._clock()
        self._keep(horizon=horizon, next_id=self._save_ids)

    def _keep(self, **changes: Any) -> None:
        self._snapshot = msgspec.structs.replace(self._snapshot, **changes)
        if self._store is not None:
            self._store.save(self._snapshot)

    async def spend_call(
        self, member: str, seq: int, spent: int, returned: int, need: int, want: int
    ) -> tuple[int, BookTotals]:
        """One call of a member to the spend limit's book (``SpendBook.call``, in micro
        units): what it spent and gives back since its last call, and a block of ``need``
        (at least) to ``want`` (``0`` when not even ``need`` fits). Saved before the answer.

        :raises RuntimeError: this budget has no spend limit.
        """
        book = self._book_or_raise()
        given = book.call(member, seq, spent=spent, returned=returned, need=need, want=want)
        self._keep(spend=book.state())
        self._spend_calls += 1
        self._blocks += given > 0
        return given, book.totals()

    @property
    def spend_book(self) -> SpendBook | None:
        """The spend limit's book (``None``: the budget has none)."""
        return self._book

    def _book_or_raise(self) -> SpendBook:
        if self._book is None:
            raise RuntimeError("this budget has no spend limit")
        return self._book

    async def grant(
        self, member: str, requests: int, tokens: float, need_tokens: float, settle: float
    ) -> Grant:
        """:meth:`grant_now` as an actor method."""
        return self.grant_now(member, requests, tokens, need_tokens, settle)

    async def give_back(self, unused: Unused, settle: float = 0.0) -> None:
        """Take back capacity a member will not use, and settle token corrections."""
        for grant_id, requests, tokens in unused:
            self._ledger.give_back(grant_id, requests, tokens)
        if settle:
            self._ledger.settle(settle)

    async def pause(self, seconds: float) -> None:
        """Hold every member's new starts for ``seconds`` and wake the watchers at once."""
        before = self._ledger.epoch
        self._ledger.pause(seconds)
        if self._ledger.epoch != before:
            self._pauses += 1
            if self._changed is not None:
                self._changed.set()
                self._changed = None

    async def watch(self, epoch: int, timeout: float) -> tuple[int, float]:
        """Wait (at most ``timeout`` seconds) until the pause epoch differs from ``epoch``;
        return ``(epoch, seconds the pause still holds)``."""
        if self._ledger.epoch == epoch and timeout > 0:
            if self._changed is None:
                self._changed = asyncio.Event()
            changed = self._changed
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout)
        return self._ledger.pause_state()

    async def join(self, member: str) -> None:
        """Count a member in (a process that spends this budget)."""
        del member
        self._joined += 1

    async def leave(self, member: str, unused: Unused, settle: float = 0.0) -> None:
        """Count a member out, taking back what it held: its client has closed."""
        del member
        await self.give_back(unused, settle)
        self._left += 1

    async def stats(self) -> dict[str, Any]:
        """Counters: members that joined and left, grants, requests granted and returned,
        pauses, the pause still running, and the requests each member was granted and kept."""
        ledger = self._ledger
        return {
            "restarted": self._restarted,
            "joined": self._joined,
            "left": self._left,
            "grants": ledger.grants,
            "granted_requests": ledger.granted_requests,
            "returned_requests": ledger.returned_requests,
            "pauses": self._pauses,
            "paused_for": ledger.pause_state()[1],
            "spent_by_member": dict(ledger.spent),
            "spend": self._spend_stats(),
        }

    def _spend_stats(self) -> dict[str, Any] | None:
        if self._book is None:
            return None
        totals = self._book.totals()
        return {
            "limit": _units(totals.limit),
            "spent": _units(totals.spent),
            "held": _units(totals.held),
            "held_by_member": {name: _units(n) for name, n in self._book.held.items()},
            "calls": self._spend_calls,
            "blocks": self._blocks,
        }


def _units(micro: int) -> Decimal:
    return Decimal(micro) / 10**6


def _book_of(settings: Settings, snapshot: Snapshot | None) -> SpendBook | None:
    if settings.spend_units is None:
        return None
    state = snapshot.spend if snapshot is not None else None
    return SpendBook(settings.spend_units, state=state)
