"""What an app built on this SDK tells *its* caller when a call to rout.my failed.

An endpoint that asks the router on a browser's behalf must not turn every failure into the
same ``502``: a rate limit is a ``429`` the browser can wait out (with the wait), a request
the router refused is a ``4xx`` that says why, a timeout is a ``504``. The router's answer to
the *app's* credentials (``401``, ``402``) is the app's problem, never the browser's: it
becomes a ``502``, so no browser ever prompts for a password. One pure function holds that
table; it knows no web framework.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APIStreamError,
    APITimeoutError,
    ContentParseError,
    RateLimitError,
)
from ._http._retry import retry_after_seconds

__all__ = ["HTTPReply", "http_reply_for"]

# Statuses of the router that concern the app's own account, not the request it relayed.
_APP_ACCOUNT_STATUSES = frozenset({401, 402, 407})


class HTTPReply(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP answer for an app's own caller, made by :func:`http_reply_for`.

    :param status_code: the status to answer with.
    :param headers: headers to send with it (``Retry-After`` when the router asked for a wait).
    :param content: the JSON body: ``{"error": {"message", "type", "upstream_status",
        "request_id"}}``.
    """

    status_code: int
    headers: dict[str, str]
    content: dict[str, Any]

    def body(self) -> bytes:
        """``content`` as JSON bytes."""
        return msgspec.json.encode(self.content)


def http_reply_for(error: BaseException) -> HTTPReply:
    """The status, headers and JSON body an app should answer its own caller with when a call
    to the router failed with ``error``.

    ============================================  ============================================
    the call failed with                          the app answers
    ============================================  ============================================
    ``RateLimitError`` (429)                      ``429``, ``Retry-After`` when the router
                                                  gave a wait (seconds, rounded up)
    another 4xx (400, 403, 404, 409, 413, 422)    the same status and the router's message
    401, 402 (the app's key or credit)            ``502``: the browser's request was not at
                                                  fault
    503 with a ``Retry-After``                    ``503`` and the wait
    other 5xx, a broken or undecodable answer,    ``502``
    an error inside a stream, content that does
    not fit its type
    ``APITimeoutError``                           ``504``
    ``APIConnectionError`` (refused, reset,       ``502`` (the client was closed: ``503``)
    TLS, proxy)
    anything else                                 ``500``
    ============================================  ============================================

    Messages of status errors are the router's own (the SDK has already removed the API key
    from them); connection errors get a fixed message, since theirs name hosts and proxies an
    app's caller has no business seeing.
    """
    upstream_status: int | None = None
    request_id: str | None = None
    headers: dict[str, str] = {}
    if isinstance(error, APIStatusError):
        upstream_status = error.status_code
        request_id = error.request_id
        message = error.message
        wait = _retry_after(error.headers)
        if isinstance(error, RateLimitError) or upstream_status == 429:
            status, kind = 429, "rate_limited"
            if wait is not None:
                headers["Retry-After"] = wait
        elif upstream_status in _APP_ACCOUNT_STATUSES:
            status, kind = 502, "upstream_refused_the_service"
            message = (
                f"the upstream service refused this service's own credentials or account "
                f"({upstream_status}): {error.message}"
            )
        elif 400 <= upstream_status < 500:
            status, kind = upstream_status, "refused_by_upstream"
        elif upstream_status == 503 and wait is not None:
            status, kind = 503, "upstream_unavailable"
            headers["Retry-After"] = wait
        else:
            status, kind = 502, "upstream_failed"
    elif isinstance(error, APITimeoutError):
        status, kind, message = (
            504,
            "upstream_timeout",
            "the upstream service did not answer in time",
        )
    elif isinstance(error, APIConnectionError):
        if "client was closed" in error.message:
            status, kind, message = 503, "shutting_down", "this service is shutting down"
        else:
            status, kind, message = (
                502,
                "upstream_unreachable",
                "the upstream service could not be reached",
            )
    elif isinstance(error, APIStreamError):
        request_id = error.request_id
        status, kind, message = 502, "upstream_failed", error.message
    elif isinstance(error, (APIResponseValidationError, ContentParseError)):
        status, kind, message = (
            502,
            "upstream_bad_answer",
            "the upstream service's answer could not be used",
        )
    else:
        status, kind, message = 500, "internal_error", "internal error"
    content = {
        "error": {
            "message": message,
            "type": kind,
            "upstream_status": upstream_status,
            "request_id": request_id,
        }
    }
    return HTTPReply(status_code=status, headers=headers, content=content)


def _retry_after(headers: Mapping[str, str]) -> str | None:
    # Whole seconds, rounded up: Retry-After has no fractions, and a wait cut short fails again.
    try:
        seconds = retry_after_seconds(_lowercase(headers), now=time.time())
    except (TypeError, ValueError):
        return None
    if seconds is None or not math.isfinite(seconds):
        return None
    return str(max(0, math.ceil(seconds)))


def _lowercase(headers: Mapping[str, str]) -> Mapping[str, str]:
    # aiohttp's headers ignore case; a plain dict in a hand-made error does not.
    if all(name.islower() for name in headers):
        return headers
    return {name.lower(): value for name, value in headers.items()}
