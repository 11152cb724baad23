"""``client.responses``: the Responses API (``POST /responses``), plain and streamed."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, overload

import msgspec

from ..._config import NOT_GIVEN, NotGiven, is_routmy_url
from ..._exceptions import APIStatusError
from ..._http._ratelimit import estimate_tokens
from ..._params import build_body, check_model, split_options
from ..._partial_stream import take_validate
from ...types._base import attach_answer, decode_lenient
from ...types.responses import Response
from ._params import ResponseInput, check_input, check_response_params
from ._stream import ResponseStream, ResponseStreamManager

logger = logging.getLogger("routmy_async")

if TYPE_CHECKING:
    from pydantic import BaseModel
    from typing_extensions import Unpack

    from ..._request import CallSpec, Pipeline
    from ..._tools import FunctionTool
    from ._params import ResponseCreateParams, ResponseSamplingParams

__all__ = ["Responses"]

_decode_strict = msgspec.json.Decoder(Response).decode


def _decode_response(data: bytes) -> Response:
    try:
        return _decode_strict(data)
    except msgspec.ValidationError as exc:
        return decode_lenient(_decode_strict, data, exc)  # a null where a value belongs


_PATH = "/responses"


def _tool_params(tools: Any) -> Any:
    """Python tools (functions, Struct types, ``FunctionTool``) in the flat Responses shape."""
    if tools is None or isinstance(tools, (str, bytes, Mapping)):
        return tools  # not a list: check_params names the problem
    tools = list(tools)
    if all(isinstance(tool, Mapping) for tool in tools):
        return tools
    from ..._tools import function_tool

    return [
        dict(tool) if isinstance(tool, Mapping) else function_tool(tool).responses_param
        for tool in tools
    ]


def _estimate(fields: Mapping[str, Any]) -> int:
    """A token estimate of the input and instructions (made only when a tokens-per-minute
    budget will use it)."""
    text_input = fields.get("input")
    if isinstance(text_input, str):
        messages: list[Any] = [{"content": text_input}]
    elif isinstance(text_input, list):
        messages = [item for item in text_input if isinstance(item, Mapping)]
    else:
        messages = []
    if isinstance(fields.get("instructions"), str):
        messages.append({"content": fields["instructions"]})
    return estimate_tokens({"messages": messages, "max_tokens": fields.get("max_output_tokens")})


def response_spec(
    pipeline: Pipeline, /, *, model: Any, input: Any = NOT_GIVEN, stream: Any = False, **params: Any
) -> CallSpec[Response]:
    """Check the keyword arguments of ``create`` and make the :class:`CallSpec` it sends,
    with no I/O (a batch's dry run checks a line with it).

    :raises TypeError: a field has the wrong type. :raises ValueError: a wrong value.
    """
    return _spec(pipeline, model, input, stream, params)


def _spec(
    pipeline: Pipeline,
    model: Any,
    input: Any,
    stream: Any,
    params: dict[str, Any],
    text_format: Any = None,
) -> CallSpec[Response]:
    options = split_options(params)
    check_model(model)
    if not isinstance(stream, bool):
        raise TypeError(f"stream must be a bool, not {stream!r}")
    if "tools" in params:
        params["tools"] = _tool_params(params["tools"])
    finalize = None
    if text_format is not None:
        from ._tools import apply_text_format

        finalize = apply_text_format(params, text_format)
    check_response_params(params)
    if "previous_response_id" in params and is_routmy_url(pipeline.base_url):
        _warn_stateless()
    fields: dict[str, Any] = {"model": model}
    if not isinstance(input, NotGiven):
        fields["input"] = check_input(input)
    if stream:
        fields["stream"] = True
    fields.update(params)
    return pipeline.prepare(
        "responses",
        "POST",
        _PATH,
        fields=build_body(fields, options.get("extra_body")),
        options=options,
        model=model,
        stream=stream,
        estimate=_estimate,
        decode=_decode_response,
        what="Responses API",
        finalize=finalize,
        recover=_failed_response,
    )


class Responses:
    """The Responses API (``POST /responses``): ``create``, ``stream``, ``parse``,
    ``run_tools``."""

    def __init__(self, pipeline: Pipeline):
        self._pipeline = pipeline

    @overload
    async def create(
        self,
        *,
        model: str,
        input: ResponseInput | NotGiven = NOT_GIVEN,
        stream: Literal[False] = False,
        **params: Unpack[ResponseCreateParams],
    ) -> Response: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        input: ResponseInput | NotGiven = NOT_GIVEN,
        stream: Literal[True],
        **params: Unpack[ResponseCreateParams],
    ) -> ResponseStream: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        input: ResponseInput | NotGiven = NOT_GIVEN,
        stream: bool,
        **params: Unpack[ResponseCreateParams],
    ) -> Response | ResponseStream: ...

    async def create(
        self,
        *,
        model: str,
        input: ResponseInput | NotGiven = NOT_GIVEN,
        stream: bool = False,
        **params: Any,
    ) -> Response | ResponseStream:
        """Create a response; with ``stream=True``, an open ``ResponseStream``.

        ``input`` is a string (one user message) or a list of items: messages (text and
        image parts), output items of an earlier response, ``function_call_output`` items.
        It may be left out when ``previous_response_id`` (or a stored ``prompt``) carries
        the conversation. Every request field of the API is a keyword argument; any other
        keyword, and ``extra_body``, is sent in the JSON body as given. ``extra_headers``,
        ``extra_query``, ``timeout`` and ``max_retries`` are per-call options.

        A response whose ``status`` is ``"failed"`` is returned as it is (its ``error`` says
        why); a streamed one raises ``APIStreamError``.

        :raises TypeError: a field has the wrong type (before anything is sent).
        :raises ValueError: a field has a wrong value (before anything is sent).
        :raises APIStatusError: the server answered with an error status.
        :raises APIConnectionError: the connection failed or timed out.
        :raises APIResponseValidationError: the answer does not decode.
        """
        validate = take_validate(params, stream=stream) if "validate" in params else "final"
        spec = _spec(self._pipeline, model, input, stream, params)
        if stream:
            from ._structured_stream import stream_class_for

            return await self._pipeline.open_stream(
                spec, stream_class_for(spec.fields, spec.finalize, validate=validate)
            )
        return await self._pipeline.send(spec)

    def stream(
        self,
        *,
        model: str,
        input: ResponseInput | NotGiven = NOT_GIVEN,
        text_format: type[msgspec.Struct] | type[BaseModel] | Mapping[str, Any] | None = None,
        validate: Literal["final", "eager"] = "final",
        **params: Unpack[ResponseCreateParams],
    ) -> ResponseStreamManager:
        """Open a stream as an async context manager, in one step.

        ``async with client.responses.stream(model=..., input=...) as stream:`` The request is
        checked now and sent on entering the block; leaving it closes the stream. With a
        ``text_format`` (a ``msgspec.Struct`` type, a Pydantic model or a format dict) the
        final response's ``output_parsed`` holds the decoded answer; with a JSON one, the
        answer is followed as it streams: ``response.output_text.delta`` events carry
        ``snapshot`` and ``parsed``, and ``stream.partial`` gives the answer so far as the
        type, every field optional.

        :param validate: ``"final"`` (default): the answer is validated once complete;
            ``"eager"``: every field is checked against the format's schema the moment it
            is complete, and the first that cannot be valid raises ``FieldValidationError``
            (text that cannot become JSON, ``InvalidJSONError``) at once and closes the
            stream.
        :raises ValueError: ``validate="eager"`` without a JSON ``text_format``.
        """
        from ._structured_stream import stream_class_for

        extra: dict[str, Any] = dict(params)
        spec = _spec(self._pipeline, model, input, True, extra, text_format)
        make = stream_class_for(spec.fields, spec.finalize, validate=validate)
        return ResponseStreamManager(lambda: self._pipeline.open_stream(spec, make))

    async def parse(
        self,
        *,
        model: str,
        input: ResponseInput | NotGiven = NOT_GIVEN,
        text_format: type[msgspec.Struct] | type[BaseModel] | Mapping[str, Any],
        **params: Unpack[ResponseCreateParams],
    ) -> Response:
        """Ask for JSON that fits ``text_format`` and decode it into ``output_parsed``.

        A ``msgspec.Struct`` type is sent as a strict ``json_schema`` text format (merged into
        any ``text`` you pass, ``verbosity`` for one); a dict is sent as the ``format`` as is
        and the answer decodes to plain JSON values.

        :raises ContentParseError: the text does not fit, the model refused, or the response
            is incomplete.
        """
        extra: dict[str, Any] = dict(params)
        return await self._pipeline.send(
            _spec(self._pipeline, model, input, False, extra, text_format)
        )

    async def run_tools(
        self,
        *,
        model: str,
        input: ResponseInput,
        tools: Iterable[Callable[..., Any] | type[msgspec.Struct] | FunctionTool],
        max_rounds: int = 8,
        continue_with: Literal["input", "previous_response_id"] = "input",
        **params: Unpack[ResponseSamplingParams],
    ) -> Response:
        """Call the model, run the ``function_call`` items it asks for (concurrently),
        answer them with ``function_call_output`` items, repeat until it answers.

        :param continue_with: how each round continues the conversation: ``"input"`` resends
            every item so far (stateless; works with ``store=False`` and with rout.my),
            ``"previous_response_id"`` sends only the new tool outputs after the previous
            response's id, for a server that stores responses and keeps the rest. rout.my's
            ``/v1/responses`` is stateless, so against its base URL this mode is refused.
        :raises ValueError: ``continue_with="previous_response_id"`` against rout.my, or with
            ``store=False``.
        :returns: the last ``Response``; ``.transcript`` holds every input item of the run.

        A tool that raises, arguments that do not decode and unknown tools become an error
        text for the model, never a crash. Stops after ``max_rounds`` model calls at the
        latest; the calls of that last answer are not run.
        """
        from ._tools import run_tools

        return await run_tools(
            self,
            model=model,
            input=input,
            tools=tools,
            max_rounds=max_rounds,
            continue_with=continue_with,
            params=dict(params),
            base_url=self._pipeline.base_url,
        )


_warned_stateless = False


def _warn_stateless() -> None:
    """Say once per process that rout.my ignores ``previous_response_id``.

    A log line, not an exception: the parameter is valid and a caller may send it on purpose
    (code shared with a stateful server); what it must not do is lose context unnoticed.
    """
    global _warned_stateless
    if not _warned_stateless:
        _warned_stateless = True
        logger.warning(
            "rout.my's /v1/responses is stateless: previous_response_id is accepted and "
            "ignored, so the model sees only this request's input; send the earlier items "
            "in `input` to continue a conversation"
        )


def _failed_response(error: APIStatusError) -> Response | None:
    """A 2xx ``response`` object with ``status: "failed"`` is an answer, not an error.

    The transport treats any 2xx body that holds an ``error`` object (and no ``choices`` or
    ``data``) as an error; a failed Responses object is one such body, and the API defines
    it as a response whose ``error`` says why.
    """
    body = error.body
    if not (200 <= error.status_code < 300 and isinstance(body, dict)):
        return None
    if body.get("object") != "response" or (
        "output" not in body and body.get("status") != "failed"
    ):
        return None
    try:
        data = msgspec.json.encode(body)
        response = _decode_response(data)
    except (msgspec.MsgspecError, TypeError):
        return None
    # The body as the server sent it (redacted): .raw and undeclared fields read it.
    attach_answer(response, data, error.request_id, status=error.status_code, headers=error.headers)
    return response
