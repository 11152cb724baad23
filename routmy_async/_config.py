"""Client configuration values: ``Timeout``, the not-given sentinel and header checks (pure)."""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from ._checks import is_number

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_TIMEOUT",
    "NOT_GIVEN",
    "NotGiven",
    "Timeout",
    "check_headers",
    "coerce_timeout",
    "is_routmy_url",
]

DEFAULT_BASE_URL: Final = "https://api.rout.my/v1"
# Sized for long-lived streams: a FastAPI app proxying hundreds of generations must not queue
# the 101st user behind someone else's whole answer (openai-python's default is 1,000 too).
DEFAULT_MAX_CONNECTIONS: Final = 1000


def is_routmy_url(base_url: str) -> bool:
    """Whether ``base_url`` is rout.my itself (``rout.my`` or one of its subdomains).

    What the SDK knows of the service's behaviour (a stateless ``/v1/responses``, no reported
    cost) holds only there; another OpenAI-compatible server may differ.
    """
    host = (urlsplit(base_url).hostname or "").rstrip(".").lower()
    return host == "rout.my" or host.endswith(".rout.my")


class NotGiven(enum.Enum):
    """The type of ``NOT_GIVEN``: "use the client's setting", as opposed to ``None``."""

    NOT_GIVEN = "NOT_GIVEN"

    def __repr__(self) -> str:
        return "NOT_GIVEN"

    def __bool__(self) -> Literal[False]:
        return False


NOT_GIVEN: Final = NotGiven.NOT_GIVEN
"""A keyword argument left at "the client's setting", as opposed to ``None`` (explicitly null)."""


class Timeout:
    """How long a request may take, in seconds; ``None`` means no limit for that part.

    A ``Timeout`` is a value: it cannot be changed once made (``client.timeout.read = 1``
    raises), so one shared default can never be altered for every client at once. Use
    :meth:`replace` or ``client.with_options(timeout=...)`` for another.

    :param connect: to open a connection (TCP and TLS).
    :param read: between two reads from the socket, while waiting for and reading the answer.
    :param total: for the whole request, streams included, per attempt.
    :param stream_idle: between two events of a stream (keep-alive comments do not count);
        defaults to ``read``.
    :param pool: to wait for a free connection when all ``max_connections`` are in use
        (``None``: wait as long as it takes).
    :raises TypeError: a value is not a number.
    :raises ValueError: a value is zero, negative or NaN.
    """

    __slots__ = ("connect", "pool", "read", "stream_idle", "total")

    connect: float | None
    read: float | None
    total: float | None
    stream_idle: float | None
    pool: float | None

    def __init__(
        self,
        *,
        connect: float | None = 10.0,
        read: float | None = 600.0,
        total: float | None = None,
        stream_idle: float | None = None,
        pool: float | None = None,
    ):
        for name, value in (
            ("connect", connect),
            ("read", read),
            ("total", total),
            ("stream_idle", stream_idle),
            ("pool", pool),
        ):
            object.__setattr__(self, name, _seconds(value, f"Timeout {name}"))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"Timeout is immutable (cannot set {name!r}): make another with "
            "timeout.replace(...) or pass timeout= to with_options() or to the call"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Timeout is immutable (cannot delete {name!r})")

    def replace(
        self,
        *,
        connect: float | NotGiven | None = NOT_GIVEN,
        read: float | NotGiven | None = NOT_GIVEN,
        total: float | NotGiven | None = NOT_GIVEN,
        stream_idle: float | NotGiven | None = NOT_GIVEN,
        pool: float | NotGiven | None = NOT_GIVEN,
    ) -> Timeout:
        """Return a copy with the given parts changed."""
        return Timeout(
            connect=self.connect if isinstance(connect, NotGiven) else connect,
            read=self.read if isinstance(read, NotGiven) else read,
            total=self.total if isinstance(total, NotGiven) else total,
            stream_idle=self.stream_idle if isinstance(stream_idle, NotGiven) else stream_idle,
            pool=self.pool if isinstance(pool, NotGiven) else pool,
        )

    @property
    def idle(self) -> float | None:
        """The effective gap allowed between two stream events."""
        return self.stream_idle if self.stream_idle is not None else self.read

    def _key(self) -> tuple[float | None, ...]:
        return (self.connect, self.read, self.total, self.stream_idle, self.pool)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Timeout):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make_timeout, self._key())

    def __repr__(self) -> str:
        return (
            f"Timeout(connect={self.connect!r}, read={self.read!r}, total={self.total!r}, "
            f"stream_idle={self.stream_idle!r}, pool={self.pool!r})"
        )


def _make_timeout(*values: float | None) -> Timeout:
    connect, read, total, stream_idle, pool = values
    return Timeout(connect=connect, read=read, total=total, stream_idle=stream_idle, pool=pool)


def _seconds(value: object, name: str) -> float | None:
    """Check one timeout value: ``None``, or a positive number of seconds (infinity is None)."""
    if value is None:
        return None
    if not is_number(value):
        raise TypeError(f"{name} must be a number of seconds or None, not {value!r}")
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
    return None if math.isinf(value) else float(value)


DEFAULT_TIMEOUT: Final = Timeout()


def coerce_timeout(value: float | Timeout | None, *, name: str = "timeout") -> Timeout:
    """Turn a number (seconds for each wait), a ``Timeout`` or ``None`` (no limits) into a
    ``Timeout``."""
    if isinstance(value, Timeout):
        return value
    if value is None:
        return _NO_LIMITS
    if not is_number(value):
        raise TypeError(f"{name} must be a number of seconds, a Timeout or None, not {value!r}")
    seconds = _seconds(value, name)
    if seconds is None:
        return _NO_LIMITS
    # As in openai-python, a number bounds every single wait (connect, each read, a free
    # connection), not the whole request: a stream that keeps sending runs as long as it
    # needs. Connect keeps its own shorter bound.
    return Timeout(connect=min(10.0, seconds), read=seconds, pool=seconds)


_NO_LIMITS: Final = Timeout(connect=None, read=None, total=None)


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
    what = "query parameter" if "query" in name else "header"
    for key, value in headers.items():
        if not isinstance(key, str):
            raise TypeError(f"{name}: {what} names must be strings, not {key!r}")
        if not isinstance(value, str):
            raise TypeError(
                f"{name}: the value of {what} {key!r} must be a string, not "
                f"{type(value).__name__} (convert it with str())"
            )
        if not key or any(ch in key for ch in "\r\n\0: "):
            raise ValueError(f"{name}: invalid header name {key!r}")
        if any(ch in value for ch in "\r\n\0"):
            raise ValueError(f"{name}: the value of header {key!r} contains CR, LF or NUL")
        checked[key] = value
    return checked
