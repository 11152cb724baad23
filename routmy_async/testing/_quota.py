"""The mock's quota modes: a cap on requests in flight, a requests-per-window quota, and
latency that grows with load (pure: the clock is passed in, nothing here sleeps)."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Quota", "retry_after_headers"]

_MIN_WAIT = 0.01  # the shortest wait a max_in_flight refusal asks for


def _positive(name: str, value: float | None, *, whole: bool) -> None:
    if value is None:
        return
    kind = int if whole else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        what = "a whole number" if whole else "a number"
        raise ValueError(f"{name} must be {what} > 0 or None, not {value!r}")


class Quota:
    """Admits a request or says how long it should wait, as a rate-limited router does.

    :param max_in_flight: at most this many admitted requests at once.
    :param requests_per_minute: at most this many admissions in any ``window`` seconds.
    :param window: the quota window, in seconds.
    :param retry_after: the wait a refusal for ``max_in_flight`` asks for (default:
        ``latency / max_in_flight``, at least 10 ms: how often a slot frees when K answers
        take one latency each).
    :param latency: the server's base latency, for that default.
    :param latency_per_in_flight: extra seconds per other admitted request in flight.
    :param clock: monotonic seconds (for tests).
    :raises ValueError: a limit or a duration is not a positive number.
    """

    def __init__(
        self,
        *,
        max_in_flight: int | None = None,
        requests_per_minute: int | None = None,
        window: float = 60.0,
        retry_after: float | None = None,
        latency: float = 0.0,
        latency_per_in_flight: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        _positive("max_in_flight", max_in_flight, whole=True)
        _positive("requests_per_minute", requests_per_minute, whole=True)
        _positive("quota_window", window, whole=False)
        _positive("quota_retry_after", retry_after, whole=False)
        if latency_per_in_flight != 0.0:
            _positive("latency_per_in_flight", latency_per_in_flight, whole=False)
        self.max_in_flight = max_in_flight
        self.requests_per_minute = requests_per_minute
        self.window = window
        if retry_after is None:
            retry_after = max(latency / (max_in_flight or 1), _MIN_WAIT)
        self.retry_after = retry_after
        self.latency_per_in_flight = latency_per_in_flight
        self._clock = clock
        self._admitted_at: deque[float] = deque()
        #: Admitted requests being answered now, and the most at once.
        self.in_flight = 0
        self.peak_in_flight = 0
        #: Requests refused by a quota (each got a 429).
        self.rejections = 0
        #: Whether any mode is on (else requests skip this object entirely).
        self.active = bool(max_in_flight or requests_per_minute or latency_per_in_flight)

    def try_admit(self) -> float | None:
        """Admit one request (``None``), or refuse it with the seconds it should wait."""
        if self.max_in_flight is not None and self.in_flight >= self.max_in_flight:
            self.rejections += 1
            return self.retry_after
        if self.requests_per_minute is not None:
            now = self._clock()
            while self._admitted_at and self._admitted_at[0] <= now - self.window:
                self._admitted_at.popleft()
            if len(self._admitted_at) >= self.requests_per_minute:
                self.rejections += 1
                # The window has room again when its oldest admission leaves it.
                return self._admitted_at[0] + self.window - now
            self._admitted_at.append(now)
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        return None

    def load_delay(self) -> float:
        """The extra latency of the request just admitted, from the others in flight."""
        return self.latency_per_in_flight * (self.in_flight - 1)

    def leave(self) -> None:
        """An admitted request was answered (or its client left)."""
        self.in_flight -= 1


def retry_after_headers(wait: float) -> dict[str, str]:
    """``Retry-After`` in whole seconds (rounded up: a wait cut short fails again) and the
    exact ``retry-after-ms`` that OpenAI-style clients read first."""
    return {
        "Retry-After": str(max(1, math.ceil(wait))),
        "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
    }
