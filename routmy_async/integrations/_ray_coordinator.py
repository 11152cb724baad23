"""The budget's coordinator: the body of the named Ray actor that every process asks for grants.

It is a plain class with ``async`` methods (Ray turns it into an async actor with
``ray.remote``), so it also runs in-process in tests. Every method runs on the actor's one
event loop and never awaits in the middle of a change, so the ledger needs no lock. Answers
never wait for capacity: a grant that cannot open now opens later (its ``delay``), which is
what lets a caller block on one quick call when it has nothing left.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from ._ray_grants import Grant, GrantLedger, Settings

__all__ = ["CoordinatorCore"]

Unused = list[tuple[int, int, float]]


class CoordinatorCore:
    """Grants, shared pauses and membership for one budget.

    :param settings: the budget's limits.
    :param clock: monotonic seconds (for tests).
    """

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic):
        self._settings = settings
        self._ledger = GrantLedger(settings, clock=clock)
        self._changed: asyncio.Event | None = None
        self._joined = 0
        self._left = 0
        self._pauses = 0

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
        return self._ledger.grant(member, requests=requests, tokens=tokens, need_tokens=need_tokens)

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
            "joined": self._joined,
            "left": self._left,
            "grants": ledger.grants,
            "granted_requests": ledger.granted_requests,
            "returned_requests": ledger.returned_requests,
            "pauses": self._pauses,
            "paused_for": ledger.pause_state()[1],
            "spent_by_member": dict(ledger.spent),
        }
