"""What a stream is handed when its call opens it: one value instead of eight keywords."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    import aiohttp

    from .._hooks import Call
    from .._http._transport import Transport

__all__ = ["StreamContext"]


class StreamContext(msgspec.Struct, frozen=True, kw_only=True):
    """An open stream's answer and what its end must settle.

    :ivar response: the open answer, its headers read and its body not.
    :ivar transport: the pool it came from (redaction, token settlement, the body's end).
    :ivar idle_timeout: the most seconds between two events (``Timeout.stream_idle``).
    :ivar method: the request's method and ``url``, named in errors.
    :ivar tokens: the token estimate the budget holds for the request, settled at the end.
    :ivar call: the operation the hooks follow (``None`` without hooks).
    :ivar finalize: turns the final object into the one the reader gets (structured output).
    """

    # Not decoded from JSON, so the annotations only document: aiohttp stays a lazy import.
    response: aiohttp.ClientResponse
    transport: Transport
    idle_timeout: float | None = None
    method: str = "POST"
    url: str = ""
    tokens: int = 0
    call: Call | None = None
    finalize: Callable[[Any], Any] | None = None
