"""A cluster's spend limit, kept by the coordinator in blocks (pure: no I/O, nothing awaits).

Each actor reserves its attempts in a local ``SpendLimit`` whose capacity is what the
coordinator handed it: a *block*. The coordinator's book counts every block handed out and
not given back as committed, so the actors together can never reserve more than the limit:

    book.spent + sum(book.held.values()) <= limit        (checked before every hand-out)

and every actor's local ``spent + reserved`` stays within the blocks it holds. An actor
reports what it spent and gives back what it does not need; it can only lower ``held``.

**Fail closed.** A block is committed until its actor says otherwise: an actor killed with
reservations in flight (or with unused capacity) never reports, so its whole block counts as
spent. The book's whole state (:class:`BookState`) is saved before each answer, so a
restarted coordinator starts from it; and since Ray sends a call again to the restarted
actor when the first one died before answering, every call carries the member's sequence
number: a call seen already is answered as it was, never applied twice.
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

__all__ = ["BookState", "BookTotals", "SpendBook"]


class BookState(msgspec.Struct, frozen=True, kw_only=True):
    """A book as saved: spent, the blocks held and each member's last call (its sequence
    number and the block it was given)."""

    spent: int = 0
    held: dict[str, int] = msgspec.field(default_factory=dict)
    last: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BookTotals:
    """The cluster's figures in base units (micro quota units)."""

    limit: int
    spent: int
    held: int


class SpendBook:
    """Blocks of one cluster limit, per member.

    :param limit: the limit in base units.
    :param state: where a lost coordinator's book stood (a restart).
    """

    def __init__(self, limit: int, *, state: BookState | None = None):
        if limit < 0:
            raise ValueError("a limit is a whole number >= 0")
        state = state or BookState()
        self.limit = limit
        self.spent = state.spent
        self.held: dict[str, int] = dict(state.held)
        self._last: dict[str, tuple[int, int]] = dict(state.last)

    def state(self) -> BookState:
        """The book as it is saved."""
        return BookState(spent=self.spent, held=dict(self.held), last=dict(self._last))

    def seen(self, member: str, seq: int) -> int | None:
        """What ``member``'s call ``seq`` was given if it was applied already, else ``None``.

        A member makes one call at a time, so only its last call can come again (Ray sends
        it again to a restarted actor): it gets the answer it had. An older one is stale (its
        caller gave up waiting and moved on): it gets nothing and changes nothing, which
        leaves what it reported counted as held, never as free.
        """
        last = self._last.get(member)
        if last is None or seq > last[0]:
            return None
        return last[1] if seq == last[0] else 0

    def call(
        self, member: str, seq: int, *, spent: int, returned: int, need: int, want: int
    ) -> int:
        """One call of ``member`` (number ``seq``, increasing): its report, then a block of
        ``need``/``want`` (``0, 0`` asks none). Applied once: a call seen already gets the
        answer it had."""
        earlier = self.seen(member, seq)
        if earlier is not None:
            return earlier
        self.report(member, spent=spent, returned=returned)
        given = self.take(member, need, want) if need or want else 0
        self._last[member] = (seq, given)
        return given

    @property
    def committed(self) -> int:
        """Spent plus every block held: what may already be billed."""
        return self.spent + sum(self.held.values())

    def take(self, member: str, need: int, want: int) -> int:
        """Hand ``member`` a block of ``want`` base units, or what is left if that is less
        but at least ``need``; ``0`` when not even ``need`` fits."""
        if need < 0 or want < 0:
            raise ValueError("need and want are whole numbers >= 0")
        left = self.limit - self.committed
        if left < max(need, 1):
            return 0
        given = min(max(want, need), left)
        self.held[member] = self.held.get(member, 0) + given
        return given

    def report(self, member: str, *, spent: int, returned: int) -> None:
        """``member`` spent ``spent`` of its blocks (the truth, even beyond them) and gives
        ``returned`` back; a return is taken only out of what the member still holds."""
        if spent < 0 or returned < 0:
            raise ValueError("spent and returned are whole numbers >= 0")
        held = self.held.get(member, 0)
        self.spent += spent
        left = max(0, held - spent - returned)
        if member in self.held:
            self.held[member] = left

    def leave(self, member: str) -> None:
        """``member`` is gone: whatever it still holds counts as spent."""
        self.spent += self.held.pop(member, 0)

    def totals(self) -> BookTotals:
        return BookTotals(
            limit=self.limit,
            spent=self.spent,
            held=sum(self.held.values()),
        )
