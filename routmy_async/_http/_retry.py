"""When to retry and how long to wait (pure: no I/O, the clock and randomness are passed in).

Backoff is exponential with "equal jitter": half the delay is fixed, half is random, so a
storm of 429s from many clients spreads out instead of coming back in lock-step. A server's
``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date) is obeyed up to a cap; a server
asking for longer than the cap is answered with the error rather than a silent long sleep.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable, Mapping

__all__ = [
    "INITIAL_DELAY",
    "MAX_DELAY",
    "MAX_RETRY_AFTER",
    "RETRYABLE_STATUSES",
    "backoff_delay",
    "retry_after_seconds",
    "retry_after_too_long",
    "retry_delay",
    "should_retry_status",
]

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
INITIAL_DELAY = 0.5
MAX_DELAY = 8.0
MAX_RETRY_AFTER = 60.0


def should_retry_status(status: int, headers: Mapping[str, str]) -> bool:
    """Whether a status is worth another try; ``x-should-retry`` from the server wins."""
    override = headers.get("x-should-retry")
    if override == "true":
        return True
    if override == "false":
        return False
    return status in RETRYABLE_STATUSES


def retry_after_seconds(headers: Mapping[str, str], *, now: float) -> float | None:
    """The wait the server asked for, in seconds, or ``None`` if it asked for none.

    :param now: the current Unix time, for ``Retry-After`` given as an HTTP date.
    """
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            value = float(millis) / 1000.0
        except ValueError:
            value = -1.0
        if value >= 0:
            return value
    header = headers.get("retry-after")
    if header is None:
        return None
    header = header.strip()
    try:
        seconds = float(header)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(header)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - now
        return max(seconds, 0.0)
    return seconds if seconds >= 0 else None


def backoff_delay(
    attempt: int,
    *,
    initial: float = INITIAL_DELAY,
    maximum: float = MAX_DELAY,
    rand: Callable[[], float] = random.random,
) -> float:
    """The delay before retry number ``attempt`` (0 for the first retry), with jitter."""
    base = min(maximum, initial * (2.0**attempt))
    return base / 2.0 + rand() * base / 2.0


def retry_after_too_long(
    headers: Mapping[str, str], *, now: float, max_retry_after: float = MAX_RETRY_AFTER
) -> bool:
    """Whether the server asks for a longer wait than we are willing to sleep silently."""
    asked = retry_after_seconds(headers, now=now)
    return asked is not None and asked > max_retry_after


def retry_delay(
    attempt: int,
    headers: Mapping[str, str],
    *,
    now: float,
    max_retry_after: float = MAX_RETRY_AFTER,
    rand: Callable[[], float] = random.random,
) -> float:
    """How long to wait before retry ``attempt`` (0 for the first retry).

    A server's own wait is used (capped), plus a little jitter so clients do not return
    together; otherwise exponential backoff.
    """
    asked = retry_after_seconds(headers, now=now)
    if asked is None:
        return backoff_delay(attempt, rand=rand)
    asked = min(asked, max_retry_after)
    return asked + rand() * min(1.0, asked * 0.1)
