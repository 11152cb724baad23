"""One line at a time (pure): the OpenAI Batch input and output formats.

Input, one JSON object a line (https://platform.openai.com/docs/api-reference/batch/request-input)::

    {"custom_id": "q-1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

``method`` and ``url`` may be left out when the whole file has one endpoint. Output
(https://platform.openai.com/docs/api-reference/batch/request-output)::

    {"id": "batch_req_...", "custom_id": "q-1",
     "response": {"status_code": 200, "request_id": "...", "body": {...}}, "error": null}

As OpenAI writes them, a request the server answered with a 4xx or 5xx status has that
status, its request id and its error body in ``response`` and ``"error": null``; ``error``
(``code``, ``message``) is for a failure without such an answer: a timeout or a reset
(``response`` is ``null``), or a 2xx answer that is a failure all the same (an error body, a
body that does not decode, a Responses object whose ``status`` is not ``completed`` or
``incomplete``), whose ``response`` is kept beside the ``error``. The answer's body is
written as the server's own bytes, not decoded and encoded again.

A body is checked by the SDK's own request building (``check_body``): the request the
method would send is made, without I/O, by the same function the method uses, so every check
the real call makes has passed (and none is repeated here, so none can drift); anything else
that stops it there refuses the line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import msgspec

from .._checks import is_integer, is_number
from .._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APIStreamError,
    APITimeoutError,
    AuthenticationError,
    PaymentRequiredError,
)
from .._params import RequestOptions, split_options
from ..types._base import raw_json_of
from ..types.chat import Usage as _ChatUsage

if TYPE_CHECKING:
    from .._request import CallSpec, Pipeline, Request

__all__ = [
    "ENDPOINTS",
    "AnswerFailure",
    "Endpoint",
    "InputLine",
    "LineError",
    "OutputLine",
    "answer_state",
    "call_kwargs",
    "check_body",
    "decode_input",
    "describe_failure",
    "endpoint_for",
    "failure_line",
    "is_fatal",
    "read_output_line",
    "request_of",
    "success_line",
    "usage_of",
]


class LineError(Exception):
    """A line that cannot be sent; the message says why (the caller adds the line number)."""


# -- endpoints -----------------------------------------------------------------------------


def _chat(client: Any) -> Any:
    return client.chat.completions.create


def _chat_spec(pipeline: Pipeline, /, **kwargs: Any) -> CallSpec[Any]:
    from ..resources.chat._completions import chat_completion_spec

    return chat_completion_spec(pipeline, **kwargs)


def _embeddings(client: Any) -> Any:
    return client.embeddings.create


def _embeddings_spec(pipeline: Pipeline, /, **kwargs: Any) -> CallSpec[Any]:
    from ..resources.embeddings import embedding_spec

    return embedding_spec(pipeline, **kwargs)


def _images(client: Any) -> Any:
    return client.images.generate


def _images_spec(pipeline: Pipeline, /, **kwargs: Any) -> CallSpec[Any]:
    from ..resources.images import image_spec

    return image_spec(pipeline, **kwargs)


def _responses(client: Any) -> Any:
    return client.responses.create


def _responses_spec(pipeline: Pipeline, /, **kwargs: Any) -> CallSpec[Any]:
    from ..resources.responses._responses import response_spec

    return response_spec(pipeline, **kwargs)


class Endpoint(NamedTuple):
    """An API route a batch line can name: the SDK method that sends its requests, and the
    function that makes the same request without sending it (for checks)."""

    url: str
    method: Callable[[Any], Callable[..., Any]]
    spec: Callable[..., CallSpec[Any]]
    required: tuple[str, ...]

    def bind(self, client: Any) -> Callable[..., Any]:
        """The method that sends this endpoint's requests with ``client``."""
        return self.method(client)


#: Every endpoint the SDK serves, by its path without ``/v1`` (one line per new endpoint).
ENDPOINTS: dict[str, Endpoint] = {
    "/chat/completions": Endpoint("/v1/chat/completions", _chat, _chat_spec, ("model", "messages")),
    "/embeddings": Endpoint("/v1/embeddings", _embeddings, _embeddings_spec, ("model", "input")),
    "/images/generations": Endpoint(
        "/v1/images/generations", _images, _images_spec, ("model", "prompt")
    ),
    "/responses": Endpoint("/v1/responses", _responses, _responses_spec, ("model",)),
}
_KNOWN = ", ".join(endpoint.url for endpoint in ENDPOINTS.values())
# The URLs lines spell, as spelled (a file uses one or two spellings a million times).
_SPELLINGS: dict[str, Endpoint | None] = {}


def _route(url: str) -> str:
    path = "/" + url.strip().strip("/")
    if path == "/v1" or path.startswith("/v1/"):
        path = path[3:]
    return path


def _lookup(url: str) -> Endpoint | None:
    try:
        return _SPELLINGS[url]
    except KeyError:
        endpoint = ENDPOINTS.get(_route(url))
        if len(_SPELLINGS) < 256:
            _SPELLINGS[url] = endpoint
        return endpoint


def endpoint_for(url: str) -> Endpoint:
    """The endpoint of a URL path (``/v1/chat/completions``; ``/v1`` may be left out).

    :raises ValueError: the SDK serves no such endpoint.
    """
    if not isinstance(url, str):
        raise TypeError(f"endpoint must be a string such as '/v1/chat/completions', not {url!r}")
    endpoint = _lookup(url)
    if endpoint is None:
        raise ValueError(f"unknown endpoint {url!r} (known: {_KNOWN})")
    return endpoint


# -- input ---------------------------------------------------------------------------------


class InputLine(msgspec.Struct):
    """The fields of an input line; other keys are ignored."""

    custom_id: Any = None
    method: Any = None
    url: Any = None
    body: Any = None


_decode_input = msgspec.json.Decoder(InputLine).decode


def decode_input(raw: bytes) -> InputLine:
    """Decode one input line.

    :raises LineError: not JSON, or not a JSON object.
    """
    try:
        return _decode_input(raw)
    except msgspec.ValidationError:
        raise LineError("not a JSON object") from None
    except msgspec.DecodeError as exc:
        raise LineError(f"invalid JSON ({exc})") from None


def _excerpt(value: Any) -> str:
    return f"{value!r:.60}"


def request_of(line: InputLine, default: Endpoint | None) -> tuple[str, Endpoint, dict[str, Any]]:
    """Check the envelope of a line: ``(custom_id, endpoint, body)``.

    The body's own fields are checked by :func:`check_body`.

    :raises LineError: a missing or wrong ``custom_id``, ``method``, ``url`` or ``body``.
    """
    custom_id = line.custom_id
    if custom_id is None:
        raise LineError("missing custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise LineError(f"custom_id must be a non-empty string, not {_excerpt(custom_id)}")
    method = line.method
    if method is not None and (not isinstance(method, str) or method.upper() != "POST"):
        raise LineError(f"method must be POST, not {_excerpt(method)}")
    url = line.url
    if url is None:
        if default is None:
            raise LineError("missing url (give one on every line, or an endpoint for the file)")
        endpoint = default
    else:
        if not isinstance(url, str):
            raise LineError(f"url must be a string, not {_excerpt(url)}")
        found = _lookup(url)
        if found is None:
            raise LineError(f"unknown url {_excerpt(url)} (known: {_KNOWN})")
        if default is not None and found is not default:
            raise LineError(f"url {url!r} differs from the endpoint given for the file")
        endpoint = found
    body = line.body
    if body is None:
        raise LineError("missing body")
    if not isinstance(body, dict):
        raise LineError(f"body must be a JSON object, not {type(body).__name__}")
    return custom_id, endpoint, body


_OPTION_NAMES = frozenset(RequestOptions.__annotations__)


def call_kwargs(body: dict[str, Any]) -> dict[str, Any]:
    """The keyword arguments that send ``body`` exactly as written.

    A body field named like a per-call option (``timeout``, ``max_retries``, ``extra_body``,
    ...) is passed through ``extra_body``, so it reaches the server as a field.
    """
    if _OPTION_NAMES.isdisjoint(body):
        return body
    kwargs = dict(body)
    kwargs["extra_body"] = split_options(kwargs)
    return kwargs


_dry: list[Pipeline] = []


def _dry_pipeline() -> Pipeline:
    """A pipeline that builds requests and never sends one (making it does no I/O).

    It has a token budget, so the token estimate a run with ``tokens_per_minute`` makes is
    made here too: a body it cannot estimate is refused now, not at every run.
    """
    if not _dry:
        from .._config import DEFAULT_TIMEOUT, coerce_timeout
        from .._http._ratelimit import RateLimit
        from .._http._transport import Transport
        from .._request import Pipeline

        transport = Transport(
            max_connections=1,
            session=None,
            verify=True,
            secret="dry-run",
            rate_limit=RateLimit(tokens_per_minute=1e15),
        )
        _dry.append(
            Pipeline(
                transport,
                base_url="http://127.0.0.1:9/v1",
                api_key="dry-run",
                timeout=coerce_timeout(DEFAULT_TIMEOUT),
                max_retries=0,
                default_headers={},
                default_query={},
                user_agent="routmy-async (batch dry run)",
            )
        )
    return _dry[0]


def check_body(endpoint: Endpoint, body: dict[str, Any]) -> Request:
    """Run the SDK's own checks of ``body`` for ``endpoint`` and build the request it would
    send, sending nothing: the checks are those the real call makes, so none can drift.

    Whatever stops the request from being built would stop the real call the same way,
    before anything is sent: the line is refused with that error.

    :raises LineError: a field is missing, or has a type or value the SDK refuses.
    """
    if body.get("stream"):
        raise LineError("body: stream is not supported in a batch (each answer is one line)")
    for name in endpoint.required:
        if name not in body:
            raise LineError(f"body has no {name!r}")
    pipeline = _dry_pipeline()
    try:
        return pipeline.build_request(endpoint.spec(pipeline, **call_kwargs(body)))
    except (TypeError, ValueError) as exc:
        raise LineError(f"body: {exc}") from None
    except Exception as exc:
        raise LineError(f"body: the SDK cannot send it ({type(exc).__name__}: {exc})") from None


# -- output --------------------------------------------------------------------------------


class _Response(msgspec.Struct):
    status_code: int
    request_id: str | None
    body: Any


class _Error(msgspec.Struct):
    code: str
    message: str


class _OutputLine(msgspec.Struct):
    id: str
    custom_id: str
    response: _Response | None
    error: _Error | None


_encode = msgspec.json.Encoder().encode


def _raw_body(result: Any) -> msgspec.Raw:
    """The answer's own JSON bytes, on one line."""
    raw = raw_json_of(result)
    if not raw:
        raw = _encode(result.raw)
    if b"\n" in raw or b"\r" in raw:
        # Valid JSON has CR and LF only as whitespace between tokens (inside a string they
        # are escaped), so a pretty-printed answer can be put on one line byte for byte.
        raw = raw.replace(b"\r", b" ").replace(b"\n", b" ")
    return msgspec.Raw(raw)


#: The states of a Responses object that are its answer; any other (``failed``,
#: ``cancelled``, ``queued``, ``in_progress``) is a failure, sent again by the next run.
RESPONSE_DONE = frozenset(("completed", "incomplete"))


class AnswerFailure(NamedTuple):
    """A 2xx answer that is a failure all the same: how the summary names it (``outcome``)
    and the ``error`` its line gets (``code``, ``message``)."""

    outcome: str
    code: str
    message: str


def answer_state(result: Any) -> tuple[AnswerFailure | None, str | None]:
    """``(failure, incomplete)`` of an answer.

    ``failure``: a Responses object in a state other than ``completed``/``incomplete``; a
    chat completion with a choice that ended in ``finish_reason: "error"`` (a provider that
    failed mid-answer: the text is cut); an answer whose body has a top-level ``error``
    object beside its payload; a chat completion with no choices. ``incomplete``: the
    reason of a Responses object that stopped short (``"max_output_tokens"``). Both
    ``None`` for any other answer.
    """
    kind = getattr(result, "object", None)
    if kind == "response":
        status = getattr(result, "status", None)
        if status == "incomplete":
            details = getattr(result, "incomplete_details", None)
            return None, str(getattr(details, "reason", None) or "unknown")
        if status in RESPONSE_DONE:
            return None, None
        state = str(status or "without status")
        outcome = f"response {state}"
        error = getattr(result, "error", None)
        code = getattr(error, "code", None)
        if code is not None:
            outcome += f" ({code})"
        detail = getattr(error, "message", None)
        message = f"the response {state}" + (f": {detail}" if detail else "")
        return AnswerFailure(outcome, f"response_{state.replace(' ', '_')}", message), None
    error = _body_error(result)
    detail = error.get("message") if isinstance(error, Mapping) else error
    if kind == "chat.completion":
        choices = getattr(result, "choices", None) or ()
        if any(getattr(choice, "finish_reason", None) == "error" for choice in choices):
            message = "a choice ended with finish_reason 'error' (the provider failed)"
            if detail:
                message += f": {detail}"
            return AnswerFailure("finish_reason error", "finish_reason_error", message), None
    if error is not None:
        message = "the answer carries an error object (the provider failed)"
        if detail:
            message += f": {detail}"
        return AnswerFailure("error in answer", "error_in_answer", message), None
    if kind == "chat.completion" and not getattr(result, "choices", None):
        message = "the answer has no choices (no text was generated)"
        return AnswerFailure("no choices", "no_choices", message), None
    return None, None


def _body_error(result: Any) -> Any:
    """The top-level ``error`` object (or string) of an answer's body, else ``None``."""
    raw_json = raw_json_of(result)
    if raw_json is not None and b'"error"' not in raw_json:
        return None  # the common case, without decoding the body again
    raw = result.raw
    error = raw.get("error") if isinstance(raw, Mapping) else None
    return error if error and isinstance(error, (Mapping, str)) else None


def success_line(
    line_id: str, custom_id: str, result: Any, failure: AnswerFailure | None = None
) -> bytes:
    """The output line of an answered request, newline included.

    ``failure`` (from :func:`answer_state`) marks an answer that is not a result: the line
    gets an ``error`` beside its ``response``.
    """
    response = _Response(200, getattr(result, "request_id", None), _raw_body(result))
    error = None if failure is None else _Error(failure.code, failure.message)
    return _encode(_OutputLine(line_id, custom_id, response, error)) + b"\n"


def _json_or_text(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body.decode("utf-8", "replace")


def describe_failure(error: BaseException) -> tuple[str, str, _Response | None, str]:
    """``(code, message, response, outcome)`` of a failed request.

    ``outcome`` names the failure in the summary: the status and the server's code
    (``"429 rate_limit_exceeded"``, ``"503"``), or the kind of failure without an answer
    (``"connection_error"``, ``"timeout"``).
    """
    if isinstance(error, APIStatusError):
        code = error.code if error.code is not None else error.type
        status = error.status_code
        # A 2xx answer whose body is an error keeps its real status (and gets an error).
        response = _Response(error.http_status, error.request_id, error.body)
        outcome = str(status)
        if error.code is not None and str(error.code) != outcome:
            outcome = f"{status} {error.code}"
        name = str(code) if code is not None else f"http_{status}"
        return name, error.message, response, outcome
    if isinstance(error, APIResponseValidationError):
        response = _Response(error.status_code, error.request_id, _json_or_text(error.body))
        return "invalid_response", error.message, response, f"{error.status_code} invalid_response"
    if isinstance(error, APITimeoutError):
        return "timeout", error.message, None, "timeout"
    if isinstance(error, APIConnectionError):
        return "connection_error", error.message, None, "connection_error"
    if isinstance(error, APIStreamError):  # pragma: no cover - a batch never streams
        return str(error.code or "stream_error"), error.message, None, "stream_error"
    if isinstance(error, (TypeError, ValueError)):
        return "invalid_request", str(error), None, "invalid_request"
    return "error", f"{type(error).__name__}: {error}", None, type(error).__name__


def failure_line(line_id: str, custom_id: str, error: BaseException) -> tuple[bytes, str]:
    """The output line of a failed request (newline included) and its outcome name.

    A 4xx or 5xx answer is described by its ``response`` alone (``"error": null``), as
    OpenAI writes it; a 2xx one that is a failure keeps an ``error`` too, or a reader that
    looks at the status would take it for a result.
    """
    code, message, response, outcome = describe_failure(error)
    described = None
    if response is None or 200 <= response.status_code < 300:
        described = _Error(code, message)
    line = _encode(_OutputLine(line_id, custom_id, response, described)) + b"\n"
    return line, outcome


def is_fatal(error: BaseException) -> bool:
    """Whether a failure means every other request would fail too (bad key, no credit)."""
    return isinstance(error, (AuthenticationError, PaymentRequiredError))


_USAGE_FIELDS = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "input_tokens",
    "output_tokens",
    "cost",
)


def usage_of(result: Any) -> tuple[int, int, int, float | None]:
    """``(prompt_tokens, completion_tokens, total_tokens, cost)`` of an answer (zeros when the
    answer has no usage; ``cost`` is ``None`` when the server did not report one).

    The Responses API's ``input_tokens``/``output_tokens`` count as prompt and completion.
    """
    if "usage" in getattr(type(result), "__struct_fields__", ()):
        usage: Any = result.usage
        if usage is None:
            return 0, 0, 0, None
        if type(usage) is _ChatUsage:  # the common case, read directly
            prompt, completion = usage.prompt_tokens, usage.completion_tokens
            return prompt, completion, usage.total_tokens or prompt + completion, usage.cost
        usage = {name: getattr(usage, name, None) for name in _USAGE_FIELDS}
    else:
        raw = result.raw
        usage = raw.get("usage") if isinstance(raw, Mapping) else None
        if not isinstance(usage, Mapping):
            return 0, 0, 0, None
    prompt, completion, total, given_input, given_output = (
        value if is_integer(value) else 0
        for value in (usage.get(name) for name in _USAGE_FIELDS[:5])
    )
    prompt = prompt or given_input
    completion = completion or given_output
    cost = usage.get("cost")
    if not is_number(cost):
        cost = None
    return prompt, completion, total or prompt + completion, cost


# -- reading the output back ---------------------------------------------------------------


_NULL = msgspec.Raw(b"null")


class _SeenResponse(msgspec.Struct):
    status_code: Any = None
    # Raw (msgspec cannot union it with None): decoded only when the line is a 2xx answer.
    body: msgspec.Raw = _NULL


class _SeenLine(msgspec.Struct):
    custom_id: str
    response: _SeenResponse | None = None
    error: Any = None


class _SeenBody(msgspec.Struct):
    object: Any = None
    model: Any = None
    status: Any = None
    usage: Any = None
    error: Any = None
    choices: msgspec.Raw = _NULL


_decode_output = msgspec.json.Decoder(_SeenLine).decode
_decode_body = msgspec.json.Decoder(_SeenBody).decode


def _empty(raw: msgspec.Raw) -> bool:
    return bytes(raw).translate(None, b" \t\r\n") == b"[]"


class OutputLine(NamedTuple):
    """What a whole output line says: whose it is, whether it is a result, what it cost."""

    custom_id: str
    ok: bool
    #: The answer's ``usage.cost`` (``None``: a failure, or an answer that reported none).
    cost: float | None = None
    #: The answer's model and the tokens its ``usage`` counted (a spend limit counts them
    #: on resume): ``None`` and zeros for a line without a 2xx answer that has a usage.
    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0


def read_output_line(raw: bytes) -> OutputLine | None:
    """What a whole output line says, or ``None`` when it is not an output line.

    A line is a result when it has no ``error`` and a 2xx ``response`` whose body is not a
    Responses object in a state other than ``completed`` or ``incomplete``, has no
    top-level ``error`` and is not a chat completion with no choices (an output written
    before those rules had such lines as results: they are failures now). The cost
    is read from any 2xx body: a failed response may have been billed too.
    """
    try:
        line = _decode_output(raw)
    except msgspec.MsgspecError:
        return None
    response = line.response
    status = response.status_code if response is not None else None
    if not (is_integer(status) and 200 <= status < 300):
        return OutputLine(line.custom_id, False)
    assert response is not None
    ok = line.error is None
    try:
        body = _decode_body(response.body)
    except msgspec.MsgspecError:  # a body that is not an object: nothing more to read
        return OutputLine(line.custom_id, ok)
    if body.object == "response" and body.status not in RESPONSE_DONE:
        ok = False
    elif body.error or (body.object == "chat.completion" and _empty(body.choices)):
        ok = False  # an error in the answer, or no choices
    usage = body.usage if isinstance(body.usage, dict) else None
    if usage is None:
        return OutputLine(line.custom_id, ok)
    cost = usage.get("cost")
    if not is_number(cost):
        cost = None
    model = body.model if isinstance(body.model, str) else None
    return OutputLine(line.custom_id, ok, cost, model, *_usage_tokens(usage))


def _usage_tokens(usage: Mapping[str, Any]) -> tuple[int, int]:
    """``(input, output)`` tokens of a chat, Responses or embeddings ``usage``: a total above
    the prompt (embeddings count no output) is output, so no token goes uncounted."""
    prompt, completion, total, given_input, given_output = (
        value if is_integer(value) and value > 0 else 0
        for value in (usage.get(name) for name in _USAGE_FIELDS[:5])
    )
    prompt = prompt or given_input
    completion = completion or given_output or max(0, total - prompt)
    return prompt, completion
