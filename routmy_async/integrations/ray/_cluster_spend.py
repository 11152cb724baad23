"""One process's share of a cluster's spend limit: a ``SpendLimit`` whose capacity is the
blocks the coordinator handed it (see ``_spend_book``).

Every attempt still reserves its worst case locally, before it is sent, and settles to its
real usage after, exactly as with a plain ``SpendLimit``; only the local limit is not fixed:
it is the sum of the blocks held. When an attempt does not fit, :meth:`make_room` asks the
coordinator for a block (one call, that also reports what was spent since the last one), so
most attempts cost no round trip: settlements free most of each worst case (the prompt bound
is far above the real count), and the next attempts reserve from what they freed.

Blocks grow while the limit is far from reached: each is twice the one before (at least the
room for every attempt in flight again), up to :data:`_MAX_BLOCK_CASES` worst cases, so a
steady stream of attempts asks every few hundred rows rather than every few. Near the end
they shrink: no block is more than a :data:`_FAIR_SHARE` of what the cluster had left at the
last answer, so the last units are still shared between the actors. What the process holds
unused beyond two blocks goes back to the coordinator, and all of it when the limit is closed.

Once the coordinator refuses a worst case, an attempt whose worst case is no smaller is
refused here, with the figures of that answer, without asking again, for
:data:`_REFUSAL_HOLD` seconds: only another actor giving room back can change the answer in
that time, and a refused row would otherwise ask again each time another one settles.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from decimal import Decimal
from typing import NoReturn, Protocol

from ..._exceptions import SpendLimitError
from ..._spend import SpendLimit
from ._spend_book import BookTotals

__all__ = ["ClusterSpendLimit", "SpendCoordinator"]

_MICRO = 10**6
# The first block is this many of the largest worst cases seen, and a process keeps at least
# twice that unused: little enough that the capacity idle in one process seldom refuses
# another's request near the end of the limit.
_BLOCK_CASES = 2
# Blocks double up to this many worst cases: with real usage a fraction of each worst case,
# a block then lasts hundreds of attempts, while one process holds at most two idle.
_MAX_BLOCK_CASES = 64
# No block is more than this share of what the cluster had left at the last answer (other
# processes may be asking for it too).
_FAIR_SHARE = 8
# Seconds a refusal of the cluster's stands for the attempts no smaller than it.
_REFUSAL_HOLD = 0.25
# The clock that times the hold (a test may step it).
_clock = time.monotonic


class SpendCoordinator(Protocol):
    """The coordinator's spend method, as a member calls it."""

    async def spend_call(
        self, member: str, seq: int, spent: int, returned: int, need: int, want: int
    ) -> tuple[int, BookTotals]:
        """Report ``spent``, give ``returned`` back, take a block of ``need`` to ``want``:
        ``(given, the cluster's totals)``; call ``seq`` is applied once."""
        ...


class ClusterSpendLimit(SpendLimit):
    """A client's spend limit when the limit is shared by a whole cluster (quota units).

    ``ClusterBudget.client_spend_limit()`` builds it; give it to one client
    (``AsyncRoutmy(spend_limit=...)``) and close it after the client with
    ``await limit.aclose()``, which gives back what it holds unused.
    """

    fetches_capacity = True

    __slots__ = (
        "_block",
        "_coordinator",
        "_flushing",
        "_largest",
        "_left",
        "_lock",
        "_member",
        "_refusal",
        "_reported",
        "_seq",
    )

    def __init__(
        self,
        coordinator: SpendCoordinator,
        *,
        default_output_tokens: int | None,
        member: str | None = None,
    ):
        super().__init__(max_units=0, default_output_tokens=default_output_tokens)
        self._coordinator = coordinator
        self._member = member or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._lock = asyncio.Lock()
        self._largest = 0  # the largest worst case seen: sizes blocks
        self._block = 0  # the last block asked for: the next one doubles it
        self._left: int | None = None  # the cluster's room at the last answer
        # The last refusal: when, and the cluster's figures then.
        self._refusal: tuple[float, BookTotals] | None = None
        self._reported = 0  # the local spend already reported
        self._flushing: asyncio.Task[object] | None = None
        self._seq = 0

    @property
    def member(self) -> str:
        """This process's name at the coordinator."""
        return self._member

    async def _fetch_room(self, model: str, worst_cases: list[int]) -> None:
        """Hold blocks enough for this request's worst case, asking the coordinator when the
        ones held are short (:meth:`make_room` calls it).

        :raises SpendLimitError: the cluster has not even this request's worst case left.
        """
        (worst,) = worst_cases  # one ledger: the cluster's limit counts quota units
        ledger = self._ledgers[0]
        self._largest = max(self._largest, worst)
        if worst <= self._unused():
            self._maybe_give_back(worst)
            return
        async with self._lock:
            # Re-checked after every await: other attempts may have reserved meanwhile.
            while (unused := self._unused()) < worst:
                need = worst - unused
                self._refuse_as_before(model, worst, need)
                want = self._block_size(need)
                try:
                    given, totals = await self._call(need=need, want=want)
                except Exception as error:
                    self._refuse_unreachable(model, worst, error)
                ledger.limit += given
                if not given:
                    self._refusal = (_clock(), totals)
                    self._refuse_cluster(model, worst, totals)
                self._block = want

    def _block_size(self, need: int) -> int:
        """The block to ask for when ``need`` is short: twice the last one, and at least
        room for every attempt in flight again; within a fair share of the cluster's room."""
        grow = max(
            _BLOCK_CASES * self._largest,
            2 * self._block,
            self._ledgers[0].reserved + _BLOCK_CASES * self._largest,
        )
        want = min(grow, _MAX_BLOCK_CASES * self._largest)
        if self._left is not None:
            want = min(want, self._left // _FAIR_SHARE)
        return max(need, want)

    def _refuse_as_before(self, model: str, worst: int, need: int) -> None:
        """Refuse, without asking, an attempt the cluster's last refusal covers: one whose
        shortfall does not fit what the cluster had left then, within the hold."""
        if self._refusal is None:
            return
        when, totals = self._refusal
        if _clock() - when >= _REFUSAL_HOLD:
            self._refusal = None
        elif need > totals.limit - totals.spent - totals.held:
            self._refuse_cluster(model, worst, totals, ago=_clock() - when)

    async def _call(
        self, *, returned: int = 0, need: int = 0, want: int = 0
    ) -> tuple[int, BookTotals]:
        self._seq += 1
        given, totals = await self._coordinator.spend_call(
            self._member, self._seq, self._unreported(), returned, need, want
        )
        self._left = totals.limit - totals.spent - totals.held
        return given, totals

    def _unused(self) -> int:
        ledger = self._ledgers[0]
        return ledger.limit - ledger.spent - ledger.reserved

    def _unreported(self) -> int:
        spent = self._ledgers[0].spent
        delta, self._reported = spent - self._reported, spent
        return delta

    def _maybe_give_back(self, worst: int) -> None:
        """Give back, in the background, what is held unused beyond a few blocks."""
        keep = 2 * _BLOCK_CASES * self._largest
        if self._left is not None:  # two blocks, while the cluster is far from its limit
            keep = max(keep, min(2 * self._block, self._left // _FAIR_SHARE))
        excess = self._unused() - worst - keep
        if excess > 0 and (self._flushing is None or self._flushing.done()):
            self._ledgers[0].limit -= excess  # no longer ours from now on
            self._flushing = asyncio.ensure_future(self._give_back(excess))
            # A give-back that failed leaves it counted as held at the coordinator: safe.
            self._flushing.add_done_callback(_retrieve)

    async def _give_back(self, amount: int) -> None:
        async with self._lock:  # one call at a time: the book answers calls in order
            await self._call(returned=amount)

    def _refuse_unreachable(self, model: str, worst: int, error: Exception) -> NoReturn:
        self._refused += 1
        totals = self._ledgers[0].totals()
        raise SpendLimitError(
            f"spend limit: refused a request to {model!r}: the cluster's coordinator did not "
            f"hand out room for it ({type(error).__name__}: {error}); nothing was sent",
            model=model,
            unit="units",
            spent=totals.spent,
            reserved=totals.reserved,
            limit=totals.limit,
            estimate=Decimal(worst) / _MICRO,
        ) from error

    def _refuse_cluster(
        self, model: str, worst: int, totals: BookTotals, *, ago: float | None = None
    ) -> NoReturn:
        self._refused += 1
        scale = Decimal(_MICRO)
        spent, held, limit = (Decimal(n) / scale for n in (totals.spent, totals.held, totals.limit))
        when = "" if ago is None else f", as the coordinator answered {ago:.2f}s ago"
        raise SpendLimitError(
            f"spend limit: refused a request to {model!r}: it does not fit the cluster's limit "
            f"(units: spent {spent}, held by the actors {held}, limit {limit}, this request's "
            f"worst case {Decimal(worst) / scale}{when})",
            model=model,
            unit="units",
            spent=spent,
            reserved=held,
            limit=limit,
            estimate=Decimal(worst) / scale,
        )

    async def aclose(self) -> None:
        """Report what was spent and give back everything held unused (reservations still
        in flight stay held: they count as spent)."""
        unused = max(0, self._unused())
        self._ledgers[0].limit -= unused
        await self._give_back(unused)

    def __repr__(self) -> str:
        return f"<ClusterSpendLimit {self._member}>"


def _retrieve(task: asyncio.Task[object]) -> None:
    if not task.cancelled():
        task.exception()
