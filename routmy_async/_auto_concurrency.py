"""``concurrency="auto"``: the adaptive level of ``_concurrency`` as slots that tasks wait for.

The pure controller says whether one more request may start; this module lets a task wait
until one may, and tells the controller of the 429s that the transport retries (through the
``attempt_lost`` context variable, set while a slot is held): a request whose first attempt
was refused and whose retry succeeded still says the level was too high.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from ._concurrency import AdaptiveConcurrency, Outcome, Readmission, attempt_lost, outcome_of

__all__ = ["DEFAULT_MAX_CONCURRENCY", "AutoConcurrency", "auto_concurrency_for"]

#: The ceiling of ``concurrency="auto"`` when none is given.
DEFAULT_MAX_CONCURRENCY = 64
_INITIAL = 4


def _whole(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")


class AutoConcurrency(AdaptiveConcurrency):
    """Concurrency that finds its own level: as many requests in flight as the server takes.

    It starts at ``initial`` and grows while requests succeed (doubling per round trip until
    the first loss, x1.5 above a quarter of ``max_concurrency``; after a loss, half the way
    back per round trip to what the server took, then one per round trip); a loss signal (a
    429, a 503, a timeout, also when a retry then succeeds) multiplies the level by
    ``backoff``, once per round trip, and each further loss of that round takes one off it
    (down to half) unless fewer were in flight than the server took before: a full rate
    window, whose 429s say when, not how many.
    A request whose refused attempt the client retries is *parked* (``parked``) until an
    answer frees a slot for its retry, and no new request starts before it. Latency is not
    a loss signal: an answer's latency tracks its length. The level never goes above
    ``max_concurrency`` nor below 1.

    Pass one as ``concurrency=`` to ``create_many`` (or ``"auto"`` for a new one), or hold
    slots from your own worker pool with :meth:`slot`. ``level``, ``peak``, ``losses`` and
    ``cuts`` can be read at any time, during a run and after it.

    :param max_concurrency: the ceiling (default 64).
    :param initial: the level to start at (default 4, or ``max_concurrency`` when lower).
    :param backoff: what a loss multiplies the level by, between 0 and 1 (default 0.85).
    :raises ValueError: a bound that is not a whole number >= 1, ``initial`` above
        ``max_concurrency``, or ``backoff`` outside (0, 1).

    .. versionadded:: 0.3
    """

    __slots__ = ("_wake",)

    def __init__(
        self,
        *,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        initial: int | None = None,
        backoff: float = 0.85,
    ):
        _whole("max_concurrency", max_concurrency)
        if initial is None:
            initial = min(_INITIAL, max_concurrency)
        _whole("initial", initial)
        if initial > max_concurrency:
            raise ValueError(
                f"initial ({initial}) is above max_concurrency ({max_concurrency}): the level "
                "starts at initial and never passes max_concurrency"
            )
        super().__init__(max_concurrency=max_concurrency, initial=initial, backoff=backoff)
        # The event the tasks waiting to start wait on, with its loop: an object kept from one
        # run to the next (a Ray actor's) may meet another event loop.
        self._wake: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None

    async def start(self) -> int:
        """Wait until one more request may be in flight; return its ticket for
        :meth:`finish`."""
        while (ticket := self.try_start()) is None:
            await self._changed()
        return ticket

    async def resume(self, ticket: int) -> None:
        """Wait until a parked request's retry may go (see
        :meth:`AdaptiveConcurrency.try_resume`).

        :raises ValueError: a ticket not in flight.
        """
        while not self.try_resume(ticket):
            await self._changed()
        self._wake_all()  # with one fewer parked, new starts may be allowed again

    def finish(self, ticket: int, outcome: Outcome) -> None:
        """Hand a ticket back with what became of its request (see
        :meth:`AdaptiveConcurrency.finish`), and wake the tasks waiting to start.

        :raises ValueError: an unknown outcome, or a ticket not in flight.
        """
        super().finish(ticket, outcome)
        self._wake_all()

    def lost(self, ticket: int) -> None:
        """A retried loss (see :meth:`AdaptiveConcurrency.lost`); with nothing else in flight
        a parked retry may go, so the waiting tasks look again.

        :raises ValueError: a ticket not in flight.
        """
        super().lost(ticket)
        self._wake_all()

    async def _changed(self) -> None:
        loop = asyncio.get_running_loop()
        if self._wake is None or self._wake[0] is not loop:
            self._wake = (loop, asyncio.Event())
        await self._wake[1].wait()

    def _wake_all(self) -> None:
        wake = self._wake
        if wake is not None:
            self._wake = None
            wake[1].set()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot while the block runs: waits for the level to allow a start; the
        block's end says how it went (an exception: a loss for a 429, a 503 or a timeout,
        else neutral; no exception: a success), and so does each attempt the client retries
        inside it.

        ``async with auto.slot(): await client.chat.completions.create(...)``
        """
        ticket = await self.start()
        token = attempt_lost.set(loss_listener(self, ticket))
        outcome: Outcome = "neutral"
        try:
            yield
            outcome = "success"
        except BaseException as error:
            outcome = outcome_of(error)
            raise
        finally:
            attempt_lost.reset(token)
            self.finish(ticket, outcome)

    def __repr__(self) -> str:
        return (
            f"<AutoConcurrency level={self.level} in_flight={self.in_flight} "
            f"max={self.max_concurrency} peak={self.peak} cuts={self.cuts}>"
        )


def loss_listener(
    auto: AutoConcurrency, ticket: int
) -> Callable[[BaseException], Readmission | None]:
    """What the transport calls with each failed attempt it retries for ``ticket``: for a
    loss, the wait for a slot that its retry then awaits."""

    def listen(failure: BaseException) -> Readmission | None:
        if outcome_of(failure) != "loss":
            return None
        try:
            auto.lost(ticket)
        except ValueError:
            return None  # the slot was handed back: a task started inside it outlived it
        return readmit

    async def readmit() -> None:
        try:
            await auto.resume(ticket)
        except ValueError:
            pass  # handed back meanwhile (its owner left): the retry needs no slot

    return listen


def auto_concurrency_for(
    concurrency: Any, max_concurrency: Any, *, name: str = "concurrency"
) -> AutoConcurrency | None:
    """The adaptive level that ``concurrency=`` (or the option ``name``) asks for, or
    ``None`` for a fixed number (checked by the caller).

    :raises ValueError: ``"Auto"`` or any other string, or a ``max_concurrency`` that is
        not a whole number >= 1 or that is given with a fixed concurrency.
    """
    if isinstance(concurrency, AutoConcurrency):
        if max_concurrency is not None:
            raise ValueError(
                f"max_concurrency is the ceiling of {name}='auto'; an AutoConcurrency has its "
                "own (AutoConcurrency(max_concurrency=...))"
            )
        return concurrency
    if isinstance(concurrency, str):
        if concurrency != "auto":
            raise ValueError(f"{name} must be a whole number >= 1 or 'auto', not {concurrency!r}")
        if max_concurrency is None:
            return AutoConcurrency()
        return AutoConcurrency(max_concurrency=max_concurrency)
    if max_concurrency is not None:
        raise ValueError(
            f"max_concurrency is the ceiling of {name}='auto'; with a fixed "
            f"{name}={concurrency!r} it would mean nothing"
        )
    return None
