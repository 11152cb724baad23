"""Client configuration values: ``Timeout``, the not-given sentinel and header checks (pure)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final, Literal

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_TIMEOUT",
    "NOT_GIVEN",
    "NotGiven",
    "Timeout",
    "check_headers",
    "coerce_timeout",
]

DEFAULT_BASE_URL: Final = "https://api.rout.my/v1"


class NotGiven(enum.Enum):
    """The type of ``NOT_GIVEN``: "use the client's setting", as opposed to ``None``."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> Literal[False]:
        return False


NOT_GIVEN: Final = NotGiven.NOT_GIVEN


class Timeout:
    """How long a request may take, in seconds; ``None`` means no limit for that part.

    :param connect: to open a connection (TCP and TLS).
    :param read: between two reads from the socket, while waiting for and reading the answer.
    :param total: for the whole request, streams included, per attempt.
    :param stream_idle: between two events of a stream (keep-alive comments do not count);
        defaults to ``read``.
    :raises ValueError: a value is negative or not a number.
    """

    __slots__ = ("connect", "read", "stream_idle", "total")

    def __init__(
        self,
        *,
        connect: float | None = 10.0,
        read: float | None = 600.0,
        total: float | None = None,
        stream_idle: float | None = None,
    ):
        for name, value in (
            ("connect", connect),
            ("read", read),
            ("total", total),
            ("stream_idle", stream_idle),
        ):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(
                    f"Timeout {name} must be a number of seconds or None, not {value!r}"
                )
            if value <= 0:
                raise ValueError(f"Timeout {name} must be positive, not {value!r}")
        self.connect = connect
        self.read = read
        self.total = total
        self.stream_idle = stream_idle

    @property
    def idle(self) -> float | None:
        """The effective gap allowed between two stream events."""
        return self.stream_idle if self.stream_idle is not None else self.read

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timeout):
            return NotImplemented
        return (self.connect, self.read, self.total, self.stream_idle) == (
            other.connect,
            other.read,
            other.total,
            other.stream_idle,
        )

    def __hash__(self) -> int:
        return hash((self.connect, self.read, self.total, self.stream_idle))

    def __repr__(self) -> str:
        return (
            f"Timeout(connect={self.connect!r}, read={self.read!r}, total={self.total!r}, "
            f"stream_idle={self.stream_idle!r})"
        )


DEFAULT_TIMEOUT: Final = Timeout()


def coerce_timeout(value: float | Timeout | None, *, name: str = "timeout") -> Timeout:
    """Turn a number (total seconds), a ``Timeout`` or ``None`` (no limits) into a ``Timeout``."""
    if isinstance(value, Timeout):
        return value
    if value is None:
        return Timeout(connect=None, read=None, total=None)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, a Timeout or None, not {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, not {value!r}")
    # A single number bounds the whole request; connect keeps its own shorter bound.
    return Timeout(connect=min(10.0, float(value)), read=float(value), total=float(value))


def check_headers(headers: Mapping[str, str] | None, *, name: str) -> dict[str, str]:
    """Copy headers, refusing names or values that would split the header block.

    :raises TypeError: a name or value is not a string.
    :raises ValueError: a name or value holds CR, LF or NUL.
    """
    if headers is None:
        return {}
    if not isinstance(headers, Mapping):
        raise TypeError(f"{name} must be a mapping of header names to strings, not {headers!r}")
    checked: dict[str, str] = {}
    for key, value in headers.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"{name}: header names and values must be strings (got {key!r})")
        if not key or any(ch in key for ch in "\r\n\0: "):
            raise ValueError(f"{name}: invalid header name {key!r}")
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError(f"{name}: the value of header {key!r} contains CR, LF or NUL")
        checked[key] = value
    return checked
