"""``client.chat.completions``: build the request, call the transport, decode the answer."""

from __future__ import annotations

from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
)
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

import msgspec

from ..._http._ratelimit import estimate_tokens
from ..._params import (
    ChatCompletionParams,
    FormatParams,
    MessageParam,
    ToolsParams,
    build_body,
    check_messages,
    check_model,
    check_params,
    split_options,
)
from ..._partial_stream import take_validate
from ...types.chat import ChatCompletion

if TYPE_CHECKING:
    from pydantic import BaseModel
    from typing_extensions import Unpack

    from ..._auto_concurrency import AutoConcurrency
    from ..._request import CallSpec, Pipeline
    from ..._tools import FunctionTool
    from ...types.events import StreamEvent, ToolResultEvent
    from ._stream import ChatCompletionStream, ChatCompletionStreamManager

__all__ = ["Chat", "Completions"]

_decode_completion = msgspec.json.Decoder(ChatCompletion).decode


_PATH = "/chat/completions"

StructT = TypeVar("StructT", bound=msgspec.Struct)


def _is_model_type(value: type[Any]) -> bool:
    # Only asked about a class that is not a Struct; never imports Pydantic itself.
    from ..._pydantic import is_model_type

    return is_model_type(value)


def _prepare_fields(
    params: dict[str, Any], options: dict[str, Any], stream: object
) -> Callable[[ChatCompletion], ChatCompletion] | None:
    """Turn SDK conveniences into wire values: Struct and Pydantic model response formats,
    Python tools; ``validate`` (an option of the stream, never a body field) moves to the
    call's ``options``.

    Returns the function that decodes a Struct or model response format, if one was given.
    """
    if "validate" in params:
        options["validate"] = take_validate(params, stream=stream)
    finalize = None
    response_format = params.get("response_format")
    if isinstance(response_format, type) and (
        issubclass(response_format, msgspec.Struct) or _is_model_type(response_format)
    ):
        from ..._structured import parser_for, response_format_for

        params["response_format"] = response_format_for(response_format)
        finalize = parser_for(response_format)
    tools = params.get("tools")
    if tools is not None and not isinstance(tools, (str, bytes, Mapping)):
        tools = list(tools)
        if any(not isinstance(tool, Mapping) for tool in tools):
            from ..._tools import as_tool_param

            tools = [as_tool_param(tool) for tool in tools]
        params["tools"] = tools
    return finalize


def chat_completion_spec(
    pipeline: Pipeline, /, *, model: Any, messages: Any, stream: Any = False, **params: Any
) -> CallSpec[ChatCompletion]:
    """Check the keyword arguments of ``create`` and make the :class:`CallSpec` it sends,
    with no I/O (a batch's dry run checks a line with it).

    :raises TypeError: a field has the wrong type. :raises ValueError: a wrong value.
    """
    return _spec(pipeline, model, messages, stream, params)


def _spec(
    pipeline: Pipeline, model: Any, messages: Any, stream: Any, params: dict[str, Any]
) -> CallSpec[ChatCompletion]:
    options = split_options(params)
    check_model(model)
    checked_messages = check_messages(messages)
    if not isinstance(stream, bool):
        raise TypeError(f"stream must be a bool, not {stream!r}")
    finalize = _prepare_fields(params, options, stream) if params else None
    check_params(params)
    fields: dict[str, Any] = {"model": model, "messages": checked_messages}
    if stream:
        fields["stream"] = True
    fields.update(params)
    return pipeline.prepare(
        "chat",
        "POST",
        _PATH,
        fields=build_body(fields, options.get("extra_body")),
        options=options,
        model=model,
        stream=stream,
        estimate=estimate_tokens,
        decode=_decode_completion,
        what="chat completion",
        finalize=finalize,
    )


def _stream_class(spec: CallSpec[ChatCompletion]) -> Callable[[Any], ChatCompletionStream]:
    """The stream to open: a plain one, or one that follows a JSON answer as it streams."""
    from ._structured_stream import stream_class_for  # loaded by the first stream

    fields = spec.fields or {}
    validate = spec.options.get("validate", "final")
    return stream_class_for(fields.get("response_format"), spec.finalize, validate=validate)


class Completions:
    """Chat Completions (``POST /chat/completions``)."""

    def __init__(self, pipeline: Pipeline):
        self._pipeline = pipeline

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[MessageParam],
        stream: Literal[False] = False,
        **params: Unpack[ChatCompletionParams],
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[MessageParam],
        stream: Literal[True],
        **params: Unpack[ChatCompletionParams],
    ) -> ChatCompletionStream: ...

    @overload
    async def create(
        self,
        *,
        model: str,
        messages: Iterable[MessageParam],
        stream: bool,
        **params: Unpack[ChatCompletionParams],
    ) -> ChatCompletion | ChatCompletionStream: ...

    async def create(
        self,
        *,
        model: str,
        messages: Iterable[MessageParam],
        stream: bool = False,
        **params: Any,
    ) -> ChatCompletion | ChatCompletionStream:
        """Create a chat completion; with ``stream=True``, an open ``ChatCompletionStream``.

        Every request field of the API is a keyword argument; any other keyword, and
        ``extra_body``, is sent in the JSON body as given. ``extra_headers``, ``extra_query``,
        ``timeout`` and ``max_retries`` are per-call options, never sent in the body.

        :raises TypeError: a field has the wrong type (before anything is sent).
        :raises ValueError: a field has a wrong value (before anything is sent).
        :raises APIStatusError: the server answered with an error status.
        :raises APIConnectionError: the connection failed or timed out.
        :raises APIResponseValidationError: the answer does not decode.
        """
        spec = _spec(self._pipeline, model, messages, stream, params)
        if stream:
            return await self._pipeline.open_stream(spec, _stream_class(spec))
        return await self._pipeline.send(spec)

    def stream(
        self,
        *,
        model: str,
        messages: Iterable[MessageParam],
        validate: Literal["final", "eager"] = "final",
        **params: Unpack[ChatCompletionParams],
    ) -> ChatCompletionStreamManager:
        """Open a stream as an async context manager, in one step.

        ``async with client.chat.completions.stream(model=..., messages=...) as stream:``
        The request is checked now and sent on entering the block; leaving it closes the
        stream. With a ``msgspec.Struct`` or Pydantic model as ``response_format`` the final
        completion's ``message.parsed`` holds the decoded object. With any JSON
        ``response_format`` (a type, or a ``json_schema``/``json_object`` dict) the answer is
        followed as it streams: ``content.delta`` events carry ``snapshot`` and ``parsed``,
        and ``stream.partial`` gives the answer so far as the type, every field optional.

        :param validate: ``"final"`` (default): the answer is validated once complete;
            ``"eager"``: every field is checked against the format's schema the moment it
            is complete, and the first that cannot be valid raises ``FieldValidationError``
            (text that cannot become JSON, ``InvalidJSONError``) at once and closes the
            stream.
        :raises ValueError: ``validate="eager"`` without a JSON ``response_format``.
        """
        from ._stream import ChatCompletionStreamManager
        from ._structured_stream import stream_class_for

        spec = _spec(self._pipeline, model, messages, True, dict(params))
        fields = spec.fields or {}
        make = stream_class_for(fields.get("response_format"), spec.finalize, validate=validate)
        return ChatCompletionStreamManager(lambda: self._pipeline.open_stream(spec, make))

    async def parse(
        self,
        *,
        model: str,
        messages: Iterable[MessageParam],
        response_format: type[StructT] | type[BaseModel] | Mapping[str, Any],
        **params: Unpack[ToolsParams],
    ) -> ChatCompletion:
        """Ask for JSON that fits ``response_format`` and decode it into ``message.parsed``.

        A ``msgspec.Struct`` type or a Pydantic v2 ``BaseModel`` type is sent as a strict
        ``json_schema`` (the answer decoded by msgspec, or validated by Pydantic); a dict is
        sent as is (``{"type": "json_object"}`` decodes to plain JSON values).

        :raises ContentParseError: the content does not fit, or the model refused or was cut off.
        """
        from ..._structured import parse_completion

        extra: dict[str, Any] = dict(params)
        extra["response_format"] = response_format
        completion: ChatCompletion = await self.create(model=model, messages=messages, **extra)
        if isinstance(response_format, Mapping):
            return parse_completion(completion, None)
        return completion

    async def run_tools(
        self,
        *,
        model: str,
        messages: Iterable[MessageParam],
        tools: Iterable[Callable[..., Any] | type[msgspec.Struct] | FunctionTool],
        max_rounds: int = 8,
        **params: Unpack[FormatParams],
    ) -> ChatCompletion:
        """Call the model, run the tools it asks for (concurrently), repeat until it answers.

        Returns the last ``ChatCompletion``; its ``.transcript`` holds every message of the run.
        A tool that raises, or arguments that do not decode, become an error text for the
        model, never a crash. Stops after ``max_rounds`` model calls at the latest.
        """
        from ..._tools import run_tools

        return await run_tools(
            self, model=model, messages=messages, tools=tools, max_rounds=max_rounds, **params
        )

    def run_tools_stream(
        self,
        *,
        model: str,
        messages: Iterable[MessageParam],
        tools: Iterable[Callable[..., Any] | type[msgspec.Struct] | FunctionTool],
        max_rounds: int = 8,
        **params: Unpack[FormatParams],
    ) -> AsyncIterator[StreamEvent | ToolResultEvent]:
        """``run_tools``, streamed: each round's events, each tool result, then the final
        ``CompletionDoneEvent``."""
        from ..._tools import run_tools_stream

        return run_tools_stream(
            self, model=model, messages=messages, tools=tools, max_rounds=max_rounds, **params
        )

    async def create_many(
        self,
        requests: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        *,
        concurrency: int | Literal["auto"] | AutoConcurrency = 16,
        max_concurrency: int | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        return_exceptions: bool = True,
        progress: bool | Callable[[int, int | None, int], None] | None = None,
    ) -> list[ChatCompletion | BaseException]:
        """Run many ``create`` calls at once; return the results in input order.

        :param requests: keyword dicts for ``create`` (a list, or any iterable or async
            iterable, pulled lazily as slots free up).
        :param concurrency: the most requests in flight at once; ``"auto"`` finds the
            level the server takes (from 4, growing while requests succeed, cut on a 429, a
            503 or a timeout; see :class:`AutoConcurrency`), or an ``AutoConcurrency`` you
            hold to read its level during and after the run.
        :param max_concurrency: the ceiling of ``concurrency="auto"`` (default 64).
        :param requests_per_minute: starts are spaced to stay under this rate.
        :param tokens_per_minute: a token bucket, estimated from each request and corrected
            by its ``usage``.
        :param return_exceptions: keep a failed item's exception in its place (default); with
            ``False`` the first failure cancels the rest and is raised.
        :param progress: ``True`` for a progress bar (the ``progress`` extra, tqdm) or a log
            line every few seconds; a callable gets ``(done, total, failed)``.

        Retryable failures are retried (the client's ``max_retries``, or one per request);
        a 429 pauses every new start of the batch, not just its own item.
        """
        from ..._batch import create_many

        return await create_many(
            self,
            requests,
            concurrency=concurrency,
            max_concurrency=max_concurrency,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            return_exceptions=return_exceptions,
            progress=progress,
        )

    def create_many_iter(
        self,
        requests: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        *,
        concurrency: int | Literal["auto"] | AutoConcurrency = 16,
        max_concurrency: int | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        progress: bool | Callable[[int, int | None, int], None] | None = None,
    ) -> AsyncGenerator[tuple[int, ChatCompletion | BaseException], None]:
        """Like ``create_many``, yielding ``(index, result)`` as each request finishes.

        Leaving the loop early (or cancelling) cancels every request still in flight.
        """
        from ..._batch import create_many_iter

        return create_many_iter(
            self,
            requests,
            concurrency=concurrency,
            max_concurrency=max_concurrency,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            progress=progress,
        )


class Chat:
    """The chat namespace: ``client.chat.completions``."""

    def __init__(self, pipeline: Pipeline):
        self.completions = Completions(pipeline)
