"""``ChatCompletionStream``: SSE bytes from one open response, as typed chunks and events.

The wire half (reading, splitting, the idle timeout, ending at ``[DONE]`` without waiting for
the body's end, releasing the connection on every way out, the report to the hooks) is
``EventStream``'s; this class decodes the chunks, accumulates them, and decides what ends the
answer: ``data: [DONE]``, or the body's end once every choice has a ``finish_reason``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import msgspec

from ..._exceptions import APIResponseValidationError, stream_error
from ..._partial_stream import PartialAnswer, PartialView, attach_view
from ..._streaming._base import _BATCH, EventStream, StreamManager
from ..._streaming._context import StreamContext
from ..._streaming._sse import WireEvent
from ...types._base import RAW_JSON_KEY, attach_answer
from ...types.chat import (
    AwaitableChatCompletion,
    ChatCompletion,
    ChatCompletionChunk,
)
from ...types.events import (
    CompletionDoneEvent,
    ContentDeltaEvent,
    ImageDoneEvent,
    ReasoningDeltaEvent,
    RefusalDeltaEvent,
    StreamEvent,
    ToolCallArgumentsDeltaEvent,
    ToolCallDoneEvent,
)
from ._accumulate import CompletionAccumulator, ToolCallState

if TYPE_CHECKING:
    from starlette.responses import StreamingResponse

    from ..._streaming._sse_out import Framing


__all__ = ["ChatCompletionStream", "ChatCompletionStreamManager"]

_decode_chunk = msgspec.json.Decoder(ChatCompletionChunk).decode


class ChatCompletionStream(EventStream[ChatCompletionChunk]):
    """An open streamed chat completion: iterate it for ``ChatCompletionChunk`` objects.

    Use it as ``async with stream:`` so the connection is released even when the loop is left
    early. ``get_final_completion()`` returns the ``ChatCompletion`` built from every delta.
    The loop stops only at the answer's end; after an error, or ``close()`` before the end,
    every read raises ``APIConnectionError`` ("closed before its end").
    """

    _noun = "chunk"
    _terminal = "[DONE] or a finish_reason"
    # What to_sse serves; a stream with a JSON response_format serves its partials too.
    _sse_formats: tuple[str, ...] = ("chunks", "text")
    # The view of each choice's answer at its latest content delta handed out: kept by a
    # stream with a JSON response_format (StructuredChatCompletionStream), None here.
    _latest_views: dict[int, PartialView] | None = None

    def __init__(self, context: StreamContext):
        super().__init__(context)
        self._finalize: Callable[[ChatCompletion], ChatCompletion] | None = context.finalize
        self._ready: deque[ChatCompletionChunk] = deque()
        self._accumulator = CompletionAccumulator()
        self._final: AwaitableChatCompletion | None = None
        #: Named SSE events of types other than ``message``/``error`` (``event: ping``),
        #: which carry no chunk and are skipped.
        self.ignored_events = 0

    def _take(self) -> None:
        """Decode and accumulate the next few events of a read, in one tight loop.

        A bad frame stops the batch: the chunks before it are still delivered, then the
        failure is raised by the next ``__anext__``.
        """
        batch: list[ChatCompletionChunk] = []
        # The base's _next_batch, inlined: this is the chat hot path, a call per batch counts.
        start = self._undecoded_at
        undecoded = self._undecoded
        events = undecoded[start : start + _BATCH]
        if start + _BATCH >= len(undecoded):
            self._undecoded = []
            self._undecoded_at = 0
        else:
            self._undecoded_at = start + _BATCH
        try:
            self._decode_into(batch, events)
        finally:
            # Whatever decoded before a bad frame is accumulated and delivered first.
            self._accumulator.add_all(batch)
            self._ready.extend(batch)

    def _decode_into(
        self, batch: list[ChatCompletionChunk], events: list[bytes | WireEvent]
    ) -> None:
        append = batch.append
        for data in events:
            if not isinstance(data, bytes):
                # bytes is tested, not WireEvent: isinstance against a Struct class asks its
                # metaclass (about 200 machine instructions a chunk more than this).
                # A typed SSE event (rare): `event: error` is an error frame; a named event
                # of another type (`event: ping`) is not a chunk, and is counted, not decoded.
                if data.event == "error":
                    self._fail(stream_error(data.data, request_id=self.request_id))
                    return
                if data.event != "message":
                    self.ignored_events += 1
                    continue
                data = data.data
            try:
                chunk = _decode_chunk(data)
            except msgspec.MsgspecError as exc:
                problem = (
                    "has an unexpected shape"
                    if isinstance(exc, msgspec.ValidationError)
                    else "is not valid JSON"
                )
                self._fail(
                    APIResponseValidationError(
                        f"a stream frame {problem}: {exc}", body=data, request_id=self.request_id
                    )
                )
                return
            if chunk.error is not None:
                self._fail(stream_error(data, request_id=self.request_id))
                return
            chunk.__dict__[RAW_JSON_KEY] = data
            append(chunk)

    # -- for EventStream ----------------------------------------------------------------

    def _received(self) -> int:
        return self._accumulator.chunk_count

    def _at_eof(self) -> None:
        self._release()
        if not self._accumulator.finished:
            raise self._ended_early(self._terminal)
        self._ended = True

    def _used_tokens(self) -> int | None:
        usage = self._accumulator.usage
        return usage.total_tokens if usage else None

    def _usage(self) -> Any:
        return self._accumulator.usage

    def _result(self) -> ChatCompletion:
        return self._accumulator.completion()

    # -- results ------------------------------------------------------------------------

    def current_completion(self) -> ChatCompletion:
        """The completion accumulated so far, finished or not."""
        return self._accumulator.completion()

    def get_final_completion(self) -> AwaitableChatCompletion:
        """The ``ChatCompletion`` built from every delta of the stream.

        Awaited (``await stream.get_final_completion()``, as in openai-python), it first reads
        whatever is left. Called without ``await`` on a stream read to its end, it returns the
        completion at once; on one not read to its end, using the result raises a
        ``RuntimeError`` that says to await it (``current_completion()`` gives the partial
        result). After an error it raises that error again.
        """
        if self._raised is not None:
            raise self._raised  # never a shortened answer passed off as the final one
        if not self._ended:
            return cast(AwaitableChatCompletion, _PendingFinalCompletion(self))
        # Every byte has arrived, but the consumer may have stopped before the last events
        # of the final read were decoded: fold them in (or raise what was wrong with them).
        while self._undecoded:
            self._take()
        if self._failure is not None:
            raise self._failure
        if self._final is None:
            completion = self._accumulator.completion(AwaitableChatCompletion)
            response = self._response
            attach_answer(
                completion, b"", self.request_id, status=response.status, headers=response.headers
            )
            if self._finalize is not None:
                completion = cast(AwaitableChatCompletion, self._finalize(completion))
            self._final = completion
        return self._final

    async def until_done(self) -> AwaitableChatCompletion:
        """Read the rest of the stream and return the final completion."""
        if self._raised is None:
            async for _ in self:
                pass
        return self.get_final_completion()

    @property
    def partial(self) -> Any:
        """The first choice's answer so far as the ``response_format`` type, every field
        optional: a ``msgspec.Struct`` or Pydantic model is a ``Partial<Name>`` object while
        it streams (each field ``None`` until its value is complete, then converted and
        validated: dates, enums, nested models), and the real object once complete; a dict
        format gives plain JSON values. ``None`` before the JSON begins.

        It covers every chunk handed out so far, and is one live object that later chunks
        keep growing (see the structured-output guide).

        :raises RuntimeError: the stream was opened without a JSON ``response_format``.
        :raises InvalidJSONError: the answer so far cannot become JSON.
        """
        raise RuntimeError(
            "stream.partial needs a stream opened with a JSON response_format (a msgspec.Struct "
            "or Pydantic model type, or a json_schema or json_object format)"
        )

    async def text_deltas(self, choice: int = 0) -> AsyncIterator[str]:
        """Yield the text pieces of one choice (the first by default), and nothing else."""
        async for chunk in self:
            for item in chunk.choices:
                if item.index == choice and item.delta.content:
                    yield item.delta.content

    async def events(self) -> AsyncIterator[StreamEvent]:
        """Yield typed events: text, refusal and reasoning deltas, tool-call argument deltas,
        whole tool calls, whole images, and at the end the completion.

        A tool call is reported done when its choice finishes (calls may interleave until then).
        """
        accumulator = self._accumulator
        if accumulator.targets is None:
            accumulator.targets = {}  # from now on the accumulator says where fragments went
        try:
            async for event in self._events(accumulator.targets):
                yield event
        finally:
            # Left (or done): stop recording, so nothing is kept for chunks nobody will ask.
            accumulator.targets = None

    async def _events(
        self, recorded: dict[int, tuple[ChatCompletionChunk, dict[int, list[ToolCallState]]]]
    ) -> AsyncIterator[StreamEvent]:
        states = self._accumulator.choices
        # Each tool call's arguments as they stream (None: a call whose first fragments were
        # handed out before events() began, which parsed_arguments cannot show whole).
        arguments: dict[ToolCallState, PartialAnswer | None] = {}
        async for chunk in self:
            entry = recorded.pop(id(chunk), None)
            chunk_targets = entry[1] if entry is not None and entry[0] is chunk else {}
            views = self._latest_views
            for item in chunk.choices:
                index = item.index
                delta = item.delta
                if delta.content:
                    event = ContentDeltaEvent(choice_index=index, delta=delta.content)
                    if views is not None:
                        event.__dict__["_view"] = views[index]  # attach_view, inlined
                    yield event
                if delta.refusal:
                    yield RefusalDeltaEvent(choice_index=index, delta=delta.refusal)
                reasoning = delta.reasoning or delta.reasoning_content
                if reasoning:
                    yield ReasoningDeltaEvent(choice_index=index, delta=reasoning)
                if delta.tool_calls:
                    # The accumulator recorded which call each fragment went to; a chunk it
                    # took in before events() began recording (read in the same network read
                    # as chunks handed out earlier) is matched to the calls as they stand.
                    targets: Sequence[ToolCallState | None] | None = chunk_targets.get(index)
                    if targets is None:
                        targets = [states[index].call_now_for(f) for f in delta.tool_calls]
                    for fragment, call in zip(delta.tool_calls, targets, strict=False):
                        if (
                            call is not None
                            and fragment.function is not None
                            and fragment.function.arguments
                        ):
                            piece = fragment.function.arguments
                            yield _followed(
                                ToolCallArgumentsDeltaEvent(
                                    choice_index=index,
                                    index=call.index,
                                    id=call.id,
                                    name=call.name,
                                    arguments_delta=piece,
                                ),
                                arguments,
                                call,
                            )
                if delta.images:
                    for image in delta.images:
                        yield ImageDoneEvent(choice_index=index, image=image)
                if item.finish_reason is not None:
                    for done in self._finish_tool_calls(index):
                        yield done
        for index in sorted(states):
            for done in self._finish_tool_calls(index):
                yield done
        yield CompletionDoneEvent(completion=self.get_final_completion())

    def _finish_tool_calls(self, index: int) -> list[ToolCallDoneEvent]:
        state = self._accumulator.choices[index]
        finished = []
        for call in state.ordered_tool_calls():
            if not call.done:
                call.done = True
                finished.append(
                    ToolCallDoneEvent(choice_index=index, tool_call=call.to_tool_call())
                )
        return finished

    # -- serving the stream again -------------------------------------------------------

    def _framing(self, format: str) -> Framing:
        from ..._streaming._sse_out import chat_framing

        return chat_framing(format)

    def _check_format(self, format: str) -> None:
        if format in ("partial", "patch") and format not in self._sse_formats:
            raise ValueError(
                f"format={format!r} serves the answer's partial JSON: open the stream with a "
                "JSON response_format (a msgspec.Struct or Pydantic model type, or a "
                "json_schema or json_object format)"
            )

    def to_sse(
        self,
        *,
        format: Literal["chunks", "text", "partial", "patch"] = "chunks",
        keepalive: float | None = 15.0,
    ) -> AsyncGenerator[bytes, None]:
        """The stream as the body of a ``text/event-stream`` response, frame by frame.

        Read it in any ASGI framework (or ``async for``); each item is one whole SSE frame.
        The upstream stream is closed when the body ends, fails or is cancelled, and when the
        generator is closed early (``await frames.aclose()``).

        :param format: ``"chunks"``: every chunk as ``data: <JSON>``, exactly as the router
            sent it (what OpenAI-compatible clients read); ``"text"``: only the first choice's
            text, each piece as ``data: <JSON string>``; ``"partial"`` (a stream with a JSON
            ``response_format``): the first choice's answer so far, as plain JSON values, in
            a ``data: <JSON>`` frame each time it grows (a page renders each frame whole);
            ``"patch"`` (the same streams): only what changed, ``data: [<operation>, ...]``,
            so the bytes sent grow with the answer, not its square (a page applies each
            frame to what it holds; see the structured-output guide). Chunks that are ready
            together make one ``"partial"`` or ``"patch"`` frame. All end with
            ``data: [DONE]``.
        :param keepalive: seconds of silence after which a ``: keep-alive`` comment is
            written (again every as many seconds); ``None`` for none.
        :raises ValueError: an unknown ``format`` (``"partial"`` or ``"patch"`` on a stream
            without a JSON ``response_format``), or ``keepalive`` not positive.

        An error inside the stream (an upstream error frame, a cut connection, a timeout, a
        field that failed eager validation) becomes the last frame, ``event: error`` with
        ``data: {"error": {"message", "type", "code", "status_code", "metadata",
        "request_id", "error_class"}}`` (the fields the error has), never followed by
        ``[DONE]``; the API key is never in it.
        """
        self._check_format(format)
        return self._serve_sse(self._framing, format, self._sse_formats, keepalive)

    def to_streaming_response(
        self,
        *,
        format: Literal["chunks", "text", "partial", "patch"] = "chunks",
        keepalive: float | None = 15.0,
        headers: Mapping[str, str] | None = None,
        status_code: int = 200,
    ) -> StreamingResponse:
        """A Starlette/FastAPI ``StreamingResponse`` serving :meth:`to_sse` that owns the stream.

        ``return stream.to_streaming_response()`` from an endpoint, after
        ``stream = await client.chat.completions.create(..., stream=True)`` (an error before
        the first chunk, a 429 say, is then raised in the endpoint). When the client
        disconnects, the upstream stream is closed at once, so no tokens are paid for after
        the user has left. ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no`` are
        set; ``headers`` adds to them.

        :raises ImportError: Starlette is not installed (``to_sse()`` needs nothing).
        :raises ValueError: as :meth:`to_sse`.
        """
        self._check_format(format)
        return self._serve_response(
            self._framing, format, self._sse_formats, keepalive, headers, status_code
        )

    def __repr__(self) -> str:
        state = "done" if self._ended else ("closed" if self._closed else "open")
        return f"<ChatCompletionStream {state} chunks={self._accumulator.chunk_count}>"


def _followed(
    event: ToolCallArgumentsDeltaEvent,
    answers: dict[ToolCallState, PartialAnswer | None],
    call: ToolCallState,
) -> ToolCallArgumentsDeltaEvent:
    """``event`` with the view of ``call``'s arguments after its fragment; without one for a
    call not followed from its first fragment."""
    piece = event.arguments_delta
    if call in answers:
        answer = answers[call]
    else:
        # The accumulator keeps each fragment's own string: its first one is this one exactly
        # when events() has seen the call from its start.
        answer = answers[call] = (
            PartialAnswer() if call.arguments and call.arguments[0] is piece else None
        )
    if answer is not None:
        attach_view(event, answer.add(piece))
    return event


class _PendingFinalCompletion:
    """``get_final_completion()`` of a stream not read to its end: awaiting it reads the rest;
    anything else says so (rather than an empty completion passing for the answer)."""

    __slots__ = ("_stream",)

    def __init__(self, stream: ChatCompletionStream):
        self._stream = stream

    def __await__(self) -> Generator[Any, None, AwaitableChatCompletion]:
        return self._stream.until_done().__await__()

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(
            "the stream has not been read to its end: write `await "
            "stream.get_final_completion()` (it reads the rest), or iterate the stream fully "
            "first; `stream.current_completion()` gives the partial result"
        )

    def __repr__(self) -> str:
        return "<final completion of a stream not read to its end: await it>"


class ChatCompletionStreamManager(StreamManager[ChatCompletionStream]):
    """``async with`` opens the stream on entry and closes it on exit (from
    ``client.chat.completions.stream(...)``)."""
