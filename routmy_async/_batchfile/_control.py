"""Steering a batch run from outside (:class:`BatchStop`); what ends one early is
``BatchFileError``, defined with every other exception in ``_exceptions``."""

from __future__ import annotations

from collections.abc import Callable

from .._exceptions import BatchFileError

__all__ = ["BatchFileError", "BatchStop"]


class BatchStop:
    """Stops a batch run from outside: a signal handler, another task, a progress callback.

    The first :meth:`request` stops new starts and gives the requests in flight the run's
    ``grace_period`` to finish (their lines are written); the second one, or
    ``request(immediate=True)``, cancels them at once. Either way no line is torn, and the
    lines not done are sent by the next run over the same output. Call it from the event
    loop's thread (from another thread: ``loop.call_soon_threadsafe(stop.request)``).
    """

    def __init__(self) -> None:
        self._level = 0
        self._listeners: list[Callable[[bool], None]] = []

    @property
    def requested(self) -> bool:
        """Whether a stop was asked for."""
        return self._level > 0

    @property
    def immediate(self) -> bool:
        """Whether requests in flight are to be cancelled at once."""
        return self._level > 1

    def request(self, *, immediate: bool = False) -> None:
        """Ask the run to stop; a second call (or ``immediate=True``) cancels what is in flight."""
        self._level = 2 if immediate or self._level else 1
        for listener in list(self._listeners):
            listener(self.immediate)

    def add_listener(self, listener: Callable[[bool], None]) -> Callable[[], None]:
        """Call ``listener(immediate)`` on every :meth:`request` (the run listens so; so can a
        UI that shows "stopping..."); returns the function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def __repr__(self) -> str:
        state = ("not requested", "requested", "immediate")[self._level]
        return f"BatchStop({state})"
