"""Every exception routmy_async raises, and the one place a status code becomes a class.

The hierarchy::

    RoutmyError
    ├── APIConnectionError             the request never got a complete answer
    │   ├── APICertificateError        ... because the server's TLS certificate failed checks
    │   ├── APIProxyError              ... because the HTTP proxy refused it (407, 403, 502...)
    │   └── APITimeoutError            ... because a timeout ran out
    ├── APIResponseValidationError     a 2xx body that does not decode into its type
    ├── APIStreamError                 an error frame inside an SSE stream
    ├── ContentParseError              parse(): the model's content does not fit the Struct
    ├── BatchFileError                 a batch file could not be run (invalid lines, locked output)
    ├── SpendLimitError                refused before sending: over the spend limit, or unpriced
    └── APIStatusError                 a non-2xx answer
        ├── BadRequestError            400
        ├── AuthenticationError        401
        ├── PaymentRequiredError       402
        ├── PermissionDeniedError      403
        ├── NotFoundError              404
        ├── ConflictError              409
        ├── UnprocessableEntityError   422
        ├── RateLimitError             429
        └── InternalServerError        >= 500

Messages never contain the API key: the transport redacts anything the server echoes back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

__all__ = [
    "APICertificateError",
    "APIConnectionError",
    "APIProxyError",
    "APIResponseValidationError",
    "APIStatusError",
    "APIStreamError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchFileError",
    "ConflictError",
    "ContentParseError",
    "InternalServerError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RoutmyError",
    "SpendLimitError",
    "UnprocessableEntityError",
    "answer_error",
    "status_error",
]

_BODY_EXCERPT = 300


class RoutmyError(Exception):
    """The base of every error this SDK raises."""


class APIConnectionError(RoutmyError):
    """The request did not get a complete answer: refused, reset, DNS, cut off mid-body.

    :param message: what happened, in words.
    :param method: the HTTP method of the request, when known.
    :param url: the URL of the request (never carries the key), when known.
    """

    def __init__(self, message: str, *, method: str | None = None, url: str | None = None):
        super().__init__(message)
        self.message = message
        self.method = method
        self.url = url


class APITimeoutError(APIConnectionError):
    """A connect, read, stream-idle or total timeout ran out."""


class APICertificateError(APIConnectionError):
    """The server's TLS certificate failed verification: untrusted, expired or for another host.

    Never retried: another attempt meets the same certificate.

    :param message: what happened, naming the host and the reason, and how to trust a CA.
    :param method: the HTTP method of the request, when known.
    :param url: the URL of the request, when known.
    :param host: the host whose certificate was refused.
    :param reason: why, in words (``"the certificate has expired"``, ...).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        host: str | None = None,
        reason: str = "",
    ):
        super().__init__(message, method=method, url=url)
        self.host = host
        self.reason = reason


class APIProxyError(APIConnectionError):
    """The HTTP proxy, not rout.my, refused the request: a ``407`` (it wants credentials, or
    refused the ones given), a ``403`` of its policy, or a ``502``/``503``/``504`` when it could
    not reach the server.

    A ``407`` or ``403`` is never retried: asking again meets the same refusal.

    :param message: what the proxy answered and what to change, naming the proxy.
    :param method: the HTTP method of the request, when known.
    :param url: the URL of the request, when known.
    :param proxy: the proxy's URL without its credentials (``http://proxy.corp:3128``).
    :param status_code: the proxy's HTTP status (``407``...).
    :param reason: the proxy's reason phrase (``"Proxy Authentication Required"``).
    """

    def __init__(
        self,
        message: str,
        *,
        method: str | None = None,
        url: str | None = None,
        proxy: str | None = None,
        status_code: int | None = None,
        reason: str = "",
    ):
        super().__init__(message, method=method, url=url)
        self.proxy = proxy
        self.status_code = status_code
        self.reason = reason


class APIResponseValidationError(RoutmyError):
    """A successful answer whose body does not have the documented shape.

    :param message: what did not fit.
    :param body: the raw body (or SSE frame) that failed to decode.
    :param status_code: the HTTP status of the answer.
    :param request_id: the server's request id, if it sent one.
    """

    def __init__(
        self,
        message: str,
        *,
        body: bytes = b"",
        status_code: int = 200,
        request_id: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.body = body
        self.status_code = status_code
        self.request_id = request_id


class ContentParseError(RoutmyError):
    """The model answered, but its content does not decode into the requested type.

    :param message: why the content did not fit (or why there was none: refusal, length).
    :param content: the raw text the model sent, kept so nothing is lost.
    :param finish_reason: the choice's finish reason.
    :param refusal: the model's refusal text, if it refused.
    """

    def __init__(
        self,
        message: str,
        *,
        content: str | None,
        finish_reason: str | None = None,
        refusal: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.content = content
        self.finish_reason = finish_reason
        self.refusal = refusal


class BatchFileError(RoutmyError):
    """A batch file could not be run: invalid lines, an output in use by another run, or a
    result that could not be written.

    :param message: what went wrong, and what to do about it.
    :param problems: ``(line number, message)`` for the first invalid lines.
    :param check: the validation that found them (a ``BatchCheck``), when there is one.
    :param summary: what the run did before it stopped (a ``BatchSummary``), when it had
        started.
    """

    def __init__(
        self,
        message: str,
        *,
        problems: Sequence[tuple[int, str]] = (),
        check: Any = None,
        summary: Any = None,
    ):
        super().__init__(message)
        self.message = message
        self.problems = list(problems)
        self.check = check
        self.summary = summary


class SpendLimitError(RoutmyError):
    """A request refused before it was sent, by a spend limit.

    Either its worst case does not fit what is left of the limit (``missing`` is ``None``), or
    its cost cannot be computed (``missing`` names what is unknown: ``"token_multiplier"``,
    ``"price"`` or ``"max_tokens"``) and the limit refuses it rather than count it as zero.
    Amounts are exact ``Decimal`` values in ``unit``.

    :param message: what was refused, and why.
    :param model: the request's model.
    :param unit: ``"units"`` (quota units: tokens times the model's ``token_multiplier``) or
        ``"dollars"``.
    :param spent: what settled attempts used.
    :param reserved: what attempts in flight hold.
    :param limit: the limit.
    :param estimate: this request's worst case, or ``None`` when it cannot be computed.
    :param missing: what is needed to price the request, or ``None``.
    """

    def __init__(
        self,
        message: str,
        *,
        model: str,
        unit: str,
        spent: Any,
        reserved: Any,
        limit: Any,
        estimate: Any = None,
        missing: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.model = model
        self.unit = unit
        self.spent = spent
        self.reserved = reserved
        self.limit = limit
        self.estimate = estimate
        self.missing = missing


class _ServerErrorFields(RoutmyError):
    """Shared fields of an error the server described: ``code``, ``type``, ``message``."""

    def __init__(
        self,
        message: str,
        *,
        code: int | str | None = None,
        type: str | None = None,
        metadata: Any = None,
        request_id: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.type = type
        self.metadata = metadata
        self.request_id = request_id


class APIStreamError(_ServerErrorFields):
    """An error frame (a top-level ``error`` object) arrived inside an SSE stream.

    The chunks before it were delivered; ``code`` is a number or a string, as the server sent it.
    """


class APIStatusError(_ServerErrorFields):
    """The server answered with a non-2xx status.

    :param message: the server's message, or a description of the body when it had none.
    :param status_code: the HTTP status.
    :param body: the decoded JSON body, or the raw text when it was not JSON.
    :param headers: the response headers.

    ``http_status`` is the status the answer came with: ``status_code`` but for a 2xx answer
    whose body is only an error object, where ``status_code`` is the error's own (a numeric
    ``code`` such as 502) and ``http_status`` the 2xx.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        code: int | str | None = None,
        type: str | None = None,
        metadata: Any = None,
        request_id: str | None = None,
    ):
        super().__init__(message, code=code, type=type, metadata=metadata, request_id=request_id)
        self.status_code = status_code
        self.http_status = status_code
        self.body = body
        self.headers: Mapping[str, str] = headers if headers is not None else {}

    def __str__(self) -> str:
        parts = [f"{self.status_code}"]
        if self.code is not None and str(self.code) != str(self.status_code):
            parts.append(f"[{self.code}]")
        parts.append(self.message)
        if self.request_id:
            parts.append(f"(request id {self.request_id})")
        return " ".join(parts)


class BadRequestError(APIStatusError):
    """400: invalid body, missing field, unsupported parameter or a blocked prompt."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or invalid."""


class PaymentRequiredError(APIStatusError):
    """402: the account has no credit left."""


class PermissionDeniedError(APIStatusError):
    """403: the key is valid, but the model is not available to the account."""


class NotFoundError(APIStatusError):
    """404: wrong path or unknown model."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the state of the server."""


class UnprocessableEntityError(APIStatusError):
    """422: the body is well-formed but cannot be processed."""


class RateLimitError(APIStatusError):
    """429: rate limit or quota exhausted."""


class InternalServerError(APIStatusError):
    """500 and above: the router or the upstream provider failed."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    402: PaymentRequiredError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def _error_fields(decoded: Any) -> tuple[str | None, Any, Any, Any, Any]:
    """Pull (message, code, type, metadata, error_id) out of the known error body shapes."""
    if not isinstance(decoded, dict):
        return None, None, None, None, None
    inner = decoded.get("error", decoded)
    if isinstance(inner, str):
        return inner, decoded.get("code"), decoded.get("type"), None, decoded.get("error_id")
    if not isinstance(inner, dict):
        return None, None, None, None, None
    message = inner.get("message")
    error_id = inner.get("error_id", decoded.get("error_id"))
    return (
        message if isinstance(message, str) else None,
        inner.get("code"),
        inner.get("type"),
        inner.get("metadata"),
        error_id,
    )


def status_error(
    status_code: int,
    body: bytes,
    headers: Mapping[str, str],
    *,
    reason: str | None = None,
) -> APIStatusError:
    """Build the typed error for a non-2xx answer (pure: no I/O).

    :param status_code: the HTTP status.
    :param body: the raw response body (JSON, HTML, text or empty).
    :param headers: the response headers (for ``x-request-id``).
    :param reason: the HTTP reason phrase, used when the body says nothing.
    """
    decoded: Any
    try:
        decoded = msgspec.json.decode(body) if body else None
    except msgspec.DecodeError:
        decoded = body.decode("utf-8", "replace")
    message, code, err_type, metadata, error_id = _error_fields(decoded)
    if message is None:
        if isinstance(decoded, str) and decoded.strip():
            excerpt = " ".join(decoded.split())[:_BODY_EXCERPT]
            message = f"{reason or 'HTTP error'}: {excerpt}"
        else:
            message = reason or "HTTP error"
    request_id = headers.get("x-request-id") or (str(error_id) if error_id else None)
    if status_code >= 500:
        cls: type[APIStatusError] = InternalServerError
    else:
        cls = _BY_STATUS.get(status_code, APIStatusError)
    return cls(
        message,
        status_code=status_code,
        body=decoded,
        headers=headers,
        code=code if isinstance(code, (int, str)) else None,
        type=err_type if isinstance(err_type, str) else None,
        metadata=metadata,
        request_id=request_id,
    )


class _ErrorEnvelope(msgspec.Struct):
    """Just enough of a 2xx body to tell an answer from an error in disguise."""

    error: Any = None
    # Raw: the answer's payload is only looked at, never decoded (an empty Raw: absent).
    choices: msgspec.Raw = msgspec.Raw()
    data: msgspec.Raw = msgspec.Raw()


_decode_envelope = msgspec.json.Decoder(_ErrorEnvelope).decode
_NO_PAYLOAD = frozenset({b"", b"[]", b"null"})


def answer_error(
    status_code: int, body: bytes, headers: Mapping[str, str]
) -> APIStatusError | None:
    """The typed error for a 2xx body that holds only an ``error`` object, else ``None``.

    Routers sometimes answer 200 with ``{"error": {"message", "code"}}`` and no ``choices``
    (or ``data``). The status of the error is a numeric ``code`` in the 4xx/5xx range where
    the server gave one, else the answer's own status.
    """
    try:
        envelope = _decode_envelope(body)
    except msgspec.MsgspecError:
        return None
    if not envelope.error or not isinstance(envelope.error, (dict, str)):
        return None
    for payload in (envelope.choices, envelope.data):
        if bytes(payload).replace(b" ", b"") not in _NO_PAYLOAD:
            return None
    code = envelope.error.get("code") if isinstance(envelope.error, dict) else None
    if isinstance(code, str) and code.isdigit():
        code = int(code)
    status = code if isinstance(code, int) and 400 <= code < 600 else status_code
    error = status_error(status, body, headers)
    error.http_status = status_code
    return error
