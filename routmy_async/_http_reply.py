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
# Refusals of what the caller asked for, passed on with the router's reason. Any other 4xx
# (405, 411, 426, 431, ...) is about how the app spoke to the router: the app's fault, a 502.
_CALLERS_REFUSALS = frozenset({400, 403, 404, 409, 413, 422})
# The router or its provider ran out of time: a 504, never a 408 (which tells a browser its
# own request was slow, and makes some retry it on their own).
_UPSTREAM_TIMEOUTS = frozenset({408, 504})
# A wait longer than a day is no wait a caller can use.
_LONGEST_WAIT = 86_400


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
                                                  gave a wait (seconds, rounded up, at most
                                                  a day)
    400, 403, 404, 409, 413, 422                  the same status and the router's message
    401, 402 (the app's key or credit)            ``502``: the browser's request was not at
                                                  fault
    408, 504 (the router or provider timed out)   ``504``
    503 with a ``Retry-After``                    ``503`` and the wait
    any other status, a broken or undecodable     ``502``
    answer, an error inside a stream, content
    that does not fit its type
    ``APITimeoutError``                           ``504``
    ``APIConnectionError`` (refused, reset,       ``502`` (the client was closed: ``503``)
    TLS, proxy)
    anything else                                 ``500``
    ============================================  ============================================

    Messages of status errors are the router's own (the SDK has already removed the API key
    from them); connection errors get a fixed message, since theirs name hosts and proxies an
    app's caller has no business seeing.
    """
    if isinstance(error, APIStatusError):
        return _reply_for_status(error)
    if isinstance(error, APITimeoutError):
        return _reply(504, "upstream_timeout", "the upstream service did not answer in time")
    if isinstance(error, APIConnectionError):
        if "client was closed" in error.message:
            return _reply(503, "shutting_down", "this service is shutting down")
        return _reply(502, "upstream_unreachable", "the upstream service could not be reached")
    if isinstance(error, APIStreamError):
        return _reply(502, "upstream_failed", error.message, request_id=error.request_id)
    if isinstance(error, (APIResponseValidationError, ContentParseError)):
        return _reply(502, "upstream_bad_answer", "the upstream service's answer could not be used")
    return _reply(500, "internal_error", "internal error")


def _reply_for_status(error: APIStatusError) -> HTTPReply:
    """The rows of the table for an answer the router did give: a status of its own."""
    upstream_status = error.status_code
    message = error.message
    wait = _retry_after(error.headers)
    headers: dict[str, str] = {}
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
    elif upstream_status in _CALLERS_REFUSALS:
        status, kind = upstream_status, "refused_by_upstream"
    elif upstream_status in _UPSTREAM_TIMEOUTS:
        status, kind = 504, "upstream_timeout"
    elif upstream_status == 503 and wait is not None:
        status, kind = 503, "upstream_unavailable"
        headers["Retry-After"] = wait
    else:
        status, kind = 502, "upstream_failed"
    return _reply(
        status,
        kind,
        message,
        upstream_status=upstream_status,
        request_id=error.request_id,
        headers=headers,
    )


def _reply(
    status: int,
    kind: str,
    message: str,
    *,
    upstream_status: int | None = None,
    request_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> HTTPReply:
    content = {
        "error": {
            "message": message,
            "type": kind,
            "upstream_status": upstream_status,
            "request_id": request_id,
        }
    }
    return HTTPReply(status_code=status, headers=headers or {}, content=content)


def _retry_after(headers: Mapping[str, str]) -> str | None:
    # Whole seconds, rounded up: Retry-After has no fractions, and a wait cut short fails again.
    try:
        seconds = retry_after_seconds(_lowercase(headers), now=time.time())
    except (TypeError, ValueError):
        return None
    if seconds is None or not math.isfinite(seconds):
        return None
    return str(min(max(0, math.ceil(seconds)), _LONGEST_WAIT))


def _lowercase(headers: Mapping[str, str]) -> Mapping[str, str]:
    # aiohttp's headers ignore case; a plain dict in a hand-made error does not.
    if all(name.islower() for name in headers):
        return headers
    return {name.lower(): value for name, value in headers.items()}
