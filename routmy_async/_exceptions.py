"""Every exception routmy_async raises, the one place a status code becomes a class, and the
one parser of error bodies (:func:`parse_error_body`: status errors and stream error frames).

The hierarchy::

    RoutmyError
    ├── APIConnectionError             the request never got a complete answer
    │   ├── APICertificateError        ... because the server's TLS certificate failed checks
    │   ├── APIProxyError              ... because the HTTP proxy refused it (407, 403, 502...)
    │   └── APITimeoutError            ... because a timeout ran out
    ├── APIResponseValidationError     a 2xx body that does not decode into its type
    ├── APIStreamError                 an error frame inside an SSE stream
    ├── ContentParseError              parse(): the model's content does not fit the Struct
    │   ├── InvalidJSONError           ... because the streamed text stopped being JSON
    │   └── FieldValidationError       ... because a field, once complete, cannot be valid
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
    "ErrorBody",
    "FieldValidationError",
    "InternalServerError",
    "InvalidJSONError",
    "NotFoundError",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimitError",
    "RoutmyError",
    "SpendLimitError",
    "UnprocessableEntityError",
    "answer_error",
    "parse_error_body",
    "status_error",
    "stream_error",
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


class InvalidJSONError(ContentParseError):
    """Streamed content that cannot become JSON, found as soon as the offending text arrives.

    :param message: what is wrong, naming the offset.
    :param offset: the character offset in the content (counted from its first character,
        a byte order mark or a Markdown fence included) where the JSON went wrong.
    :param content: the text the model sent, when the caller kept it.
    """

    def __init__(self, message: str, *, offset: int, content: str | None = None):
        super().__init__(message, content=content)
        self.offset = offset


class FieldValidationError(ContentParseError):
    """A field of a streamed answer that, once complete, cannot be valid for the schema.

    :param message: the field and the reason, in words.
    :param path: where the field sits: object keys and array indices from the root.
    :param reason: why it cannot be valid (a wrong type, an unknown enum value, a broken
        constraint).
    :param content: the text the model sent, when the caller kept it.
    """

    def __init__(
        self,
        message: str,
        *,
        path: tuple[str | int, ...],
        reason: str,
        content: str | None = None,
    ):
        super().__init__(message, content=content)
        self.path = path
        self.reason = reason


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
    ``"price"``, ``"max_tokens"``, ``"model"`` for a raw request whose body names none, or
    ``"endpoint"`` for a raw request to a path the limit cannot price) and the limit refuses
    it rather than count it as zero.
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


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    """What an error body says, whatever its shape: the result of :func:`parse_error_body`.

    Every field has the type it is declared with, whatever the server sent: a field of the
    wrong JSON type reads as absent.
    """

    #: The JSON value of the body; its text when it is not JSON; ``None`` when it is empty.
    decoded: Any = None
    message: str | None = None
    code: int | str | None = None
    type: str | None = None
    param: str | None = None
    metadata: Any = None
    error_id: str | None = None
    #: The body has a top-level ``error`` that is a non-empty object or string: it says it is
    #: an error (a stream data frame without one is an ordinary event).
    names_error: bool = False
    #: The body as text, for a message when it names none.
    text: str = ""

    def stated_message(self, default: str) -> str:
        """The server's message; else, for a body that names no error object (plain text, a
        flat object without a message), an excerpt of it; else ``default``."""
        if self.message is not None:
            return self.message
        if not self.names_error:
            text = self.decoded if isinstance(self.decoded, str) else self.text
            excerpt = " ".join(text.split())[:_BODY_EXCERPT]
            if excerpt:
                return excerpt
        return default


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _code(value: Any) -> int | str | None:
    # A JSON true is a Python int: it is no error code.
    return value if isinstance(value, (int, str)) and not isinstance(value, bool) else None


def parse_error_body(body: bytes | bytearray | memoryview | Any) -> ErrorBody:
    """Read an error body of any known shape (pure: never raises on any input).

    ``body`` is raw bytes (JSON, text, HTML or empty) or an already decoded JSON value. The
    shapes: ``{"error": {"message", "code", "type", "param", "metadata"}}``, where a top-level
    ``message`` or ``code`` fills what the error object leaves out; ``{"error": "text",
    "code", "type"}``; and a flat ``{"message", "code", "type", ...}``.
    """
    text = ""
    decoded: Any = body
    if isinstance(body, (bytes, bytearray, memoryview)):
        raw = bytes(body)
        text = raw.decode("utf-8", "replace")
        try:
            decoded = msgspec.json.decode(raw) if raw else None
        except msgspec.DecodeError:
            decoded = text
    if not isinstance(decoded, dict):
        return ErrorBody(decoded=decoded, text=text)
    error = decoded.get("error")
    top_message = _text(decoded.get("message"))
    if isinstance(error, dict):
        fields = error
        message = _text(error.get("message")) or top_message
        code = _code(error.get("code"))
        if code is None:
            code = _code(decoded.get("code"))
        error_id = error.get("error_id", decoded.get("error_id"))
    else:
        named = isinstance(error, str) and error
        fields = decoded
        message = error if named else top_message
        code = _code(decoded.get("code"))
        error_id = decoded.get("error_id")
    return ErrorBody(
        decoded=decoded,
        message=message or None,
        code=code,
        type=_text(fields.get("type")),
        param=_text(fields.get("param")),
        metadata=None if isinstance(error, str) else fields.get("metadata"),
        error_id=str(error_id) if error_id else None,
        names_error=bool(error) and isinstance(error, (dict, str)),
        text=text,
    )


def stream_error(body: bytes | ErrorBody, *, request_id: str | None = None) -> APIStreamError:
    """The ``APIStreamError`` for an error frame inside a stream, whatever its shape."""
    parsed = body if isinstance(body, ErrorBody) else parse_error_body(body)
    return APIStreamError(
        parsed.stated_message("the server reported an error"),
        code=parsed.code,
        type=parsed.type,
        metadata=parsed.metadata,
        request_id=request_id,
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
    parsed = parse_error_body(body)
    decoded, message = parsed.decoded, parsed.message
    if message is None:
        if isinstance(decoded, str) and decoded.strip():
            excerpt = " ".join(decoded.split())[:_BODY_EXCERPT]
            message = f"{reason or 'HTTP error'}: {excerpt}"
        else:
            message = reason or "HTTP error"
    request_id = headers.get("x-request-id") or parsed.error_id
    if status_code >= 500:
        cls: type[APIStatusError] = InternalServerError
    else:
        cls = _BY_STATUS.get(status_code, APIStatusError)
    return cls(
        message,
        status_code=status_code,
        body=decoded,
        headers=headers,
        code=parsed.code,
        type=parsed.type,
        metadata=parsed.metadata,
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
