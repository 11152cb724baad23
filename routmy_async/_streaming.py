"""``ChatCompletionStream``: SSE bytes from one open response, as typed chunks and events.

The stream is a class with ``__anext__`` rather than an async generator, so nothing is left
for the garbage collector to finalise on a closed loop: a ``break`` followed by leaving
``async with``, an exception or a cancellation each close the response on the spot (closing is
synchronous in aiohttp, so no await in the cleanup can be cut short). A stream read to its end
releases its connection back to the pool; one abandoned early closes it, because a half-read
HTTP/1.1 connection cannot be reused.
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast

import aiohttp
import anyio
import msgspec

from ._accumulate import CompletionAccumulator
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStreamError,
    APITimeoutError,
    RoutmyError,
)
from ._hooks import Call, StreamOutcome, StreamSummary
from ._ratelimit import RateLimitHeaders, parse_rate_limit_headers
from ._sse import ServerSentEvent, SSEDecoder
from ._transport import TRANSPORT_ERRORS, map_transport_error
from .types.chat import (
    AwaitableChatCompletion,
    ChatCompletion,
    ChatCompletionChunk,
    StreamErrorBody,
)
from .types.events import (
    CompletionDoneEvent,
    ContentDeltaEvent,
    ImageDoneEvent,
    ReasoningDeltaEvent,
    RefusalDeltaEvent,
    StreamEvent,
    ToolCallArgumentsDeltaEvent,
    ToolCallDoneEvent,
)

if TYPE_CHECKING:
    from starlette.responses import StreamingResponse

    from ._transport import Transport

__all__ = ["ChatCompletionStream"]

_decode_chunk = msgspec.json.Decoder(ChatCompletionChunk).decode
_decode_error = msgspec.json.Decoder(StreamErrorBody).decode
_EVENT_STREAM = "text/event-stream"
_DRAIN_SECONDS = 1.0
_BATCH = 32
_DRAIN_BYTES = 1 << 20


class _Error(msgspec.Struct):
    error: StreamErrorBody | None = None


_decode_error_envelope = msgspec.json.Decoder(_Error).decode


class ChatCompletionStream:
    """An open streamed chat completion: iterate it for ``ChatCompletionChunk`` objects.

    Use it as ``async with stream:`` so the connection is released even when the loop is left
    early. ``get_final_completion()`` returns the ``ChatCompletion`` built from every delta.
    """

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        *,
        transport: Transport,
        idle_timeout: float | None,
        method: str = "POST",
        url: str = "",
        finalize: Callable[[ChatCompletion], ChatCompletion] | None = None,
        tokens: int = 0,
        call: Call | None = None,
    ):
        self._response = response
        # Observed by hooks: the operation, and when its first event came.
        self._call = call
        self._first_event_at: float | None = None
        # An error already raised to the reader, raised again by get_final_completion().
        self._raised: BaseException | None = None
        self._transport = transport
        self._content = response.content
        self._idle = idle_timeout
        self._method = method
        self._url = url
        self._finalize = finalize
        # The token estimate reserved for this request, settled with the usage at the end.
        self._tokens = tokens
        self._decoder = SSEDecoder()
        self._ready: deque[ChatCompletionChunk] = deque()
        self._undecoded: list[bytes | ServerSentEvent] = []
        self._undecoded_at = 0
        self._failure: BaseException | None = None
        self._accumulator = CompletionAccumulator()
        self._loop = asyncio.get_running_loop()
        self._loop_time = self._loop.time
        self._last_event_at = self._loop_time()
        self._done = False  # [DONE], or a clean EOF after every choice finished
        self._closed = False
        self._final: AwaitableChatCompletion | None = None
        self.request_id: str | None = response.headers.get("x-request-id")
        #: Named SSE events of types other than ``message``/``error`` (``event: ping``),
        #: which carry no chunk and are skipped.
        self.ignored_events = 0
        content_type = response.headers.get("Content-Type", "")
        if _EVENT_STREAM not in content_type:
            self._check_content_type(content_type)

    # -- the async iterator -------------------------------------------------------------

    def __aiter__(self) -> ChatCompletionStream:
        return self

    async def __anext__(self) -> ChatCompletionChunk:
        ready = self._ready
        try:
            while not ready:
                if self._undecoded:
                    self._take()
                    continue
                if self._failure is not None:
                    failure, self._failure = self._failure, None
                    self._raised = failure  # get_final_completion() raises it again
                    raise failure
                if self._done:
                    if self._tokens:
                        self._settle_tokens()
                    if self._call is not None:
                        self._observe_end("done", None)
                    raise StopAsyncIteration
                if self._closed:
                    # Closed before its end (a cancelled read, close() from elsewhere):
                    # never a silent, shortened answer.
                    raise APIConnectionError(
                        f"{self._method} {self._url}: the stream was closed before its end, "
                        f"after {self._accumulator.chunk_count} chunk(s): the answer is "
                        "incomplete",
                        method=self._method,
                        url=self._url,
                    )
                await self._read()
        except RoutmyError as error:
            # Every error of the stream leaves through here: none carries the key.
            self._transport.redactor.scrub(error)
            if self._call is not None:
                bad_answer = isinstance(error, (APIStreamError, APIResponseValidationError))
                self._observe_end("error" if bad_answer else "broken", error)
            raise
        except BaseException as error:
            if self._call is not None and not isinstance(error, StopAsyncIteration):
                self._observe_end("cancelled", error)
            raise
        return ready.popleft()

    def _observe_end(self, outcome: StreamOutcome, error: BaseException | None) -> None:
        """Tell the hooks how the stream ended (once)."""
        call, self._call = self._call, None
        if call is None:
            return
        failure = self._failure or self._raised
        if outcome == "done" and failure is not None:
            outcome, error = "error", failure  # [DONE] after an error frame is no success
        now = time.monotonic()
        first = self._first_event_at
        result: ChatCompletion | None = None
        if outcome == "done":
            result = self._accumulator.completion()
        call.emit(
            "on_stream_end",
            StreamSummary(
                outcome=outcome,
                duration=now - call.started,
                time_to_first_event=None if first is None else first - call.started,
                chunks=self._accumulator.chunk_count,
                usage=self._accumulator.usage,
                result=result,
                error=error,
            ),
        )

    def _take(self) -> None:
        """Decode and accumulate the next few events of a read, in one tight loop.

        Batches stay small: a read can hold a whole stream (a thousand events), and decoding
        it at once would keep a thousand objects alive and cache-cold before the first is
        used. A bad frame stops the batch: the chunks before it are still delivered, then
        the failure is raised by the next ``__anext__``.
        """
        start = self._undecoded_at
        events = self._undecoded[start : start + _BATCH]
        if start + _BATCH >= len(self._undecoded):
            self._undecoded = []
            self._undecoded_at = 0
        else:
            self._undecoded_at = start + _BATCH
        batch: list[ChatCompletionChunk] = []
        if self._call is not None and self._first_event_at is None:
            self._first_event_at = time.monotonic()
        try:
            self._decode_into(batch, events)
        finally:
            # Whatever decoded before a bad frame is accumulated and delivered first.
            self._accumulator.add_all(batch)
            self._ready.extend(batch)

    def _decode_into(
        self, batch: list[ChatCompletionChunk], events: list[bytes | ServerSentEvent]
    ) -> None:
        append = batch.append
        for data in events:
            if isinstance(data, ServerSentEvent):
                # A typed SSE event (rare): `event: error` is an error frame; a named event
                # of another type (`event: ping`) is not a chunk, and is counted, not decoded.
                if data.event == "error":
                    self._fail(self._stream_error(None, data.data))
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
                self._fail(self._stream_error(chunk.error, data))
                return
            chunk.__dict__["_raw_json"] = data
            append(chunk)

    def _settle_tokens(self) -> None:
        usage = self._accumulator.usage
        self._transport.settle_tokens(self._tokens, usage.total_tokens if usage else None)
        self._tokens = 0

    def _fail(self, failure: BaseException) -> None:
        self._transport.redactor.scrub(failure)
        self._abort()
        self._failure = failure
        self._undecoded = []

    async def _read(self) -> None:
        try:
            data = await self._content.readany()
        except BaseException as exc:
            self._abort()
            if isinstance(exc, TRANSPORT_ERRORS):
                raise self._wire_error(exc) from exc
            raise
        if not data:
            self._on_eof()
            return
        events = self._decoder.feed_raw(data)
        if events:
            self._undecoded = events
            self._undecoded_at = 0
            self._last_event_at = self._loop_time()
        elif self._decoder.has_pending:
            # Part of an event (a large image line) is arriving: that is progress.
            self._last_event_at = self._loop_time()
        elif self._idle is not None:
            # Keep-alive comments reset the socket timer but are not events.
            if self._loop_time() - self._last_event_at > self._idle:
                self._abort()
                raise APITimeoutError(
                    f"{self._method} {self._url}: no stream event for {self._idle:g} s "
                    f"(only keep-alive comments arrived)",
                    method=self._method,
                    url=self._url,
                )
        if self._decoder.done:
            await self._drain()

    async def _drain(self) -> None:
        """After ``[DONE]``: read to EOF so the connection can go back to the pool.

        Bounded in time and size: a server that keeps talking after ``[DONE]`` loses its
        connection instead of holding the caller.
        """
        self._done = True
        content = self._content
        if content.at_eof():
            # The usual case: the body's end arrived with [DONE]; no timer needed.
            self._release()
            return
        drained = 0
        try:
            with anyio.move_on_after(_DRAIN_SECONDS):
                while drained < _DRAIN_BYTES:
                    data = await content.readany()
                    if not data:
                        self._release()
                        return
                    drained += len(data)
        except BaseException as exc:
            self._abort()
            if not isinstance(exc, TRANSPORT_ERRORS):
                raise
            return
        self._abort()

    def _on_eof(self) -> None:
        self._release()
        if self._accumulator.finished:
            self._done = True
            return
        received = self._accumulator.chunk_count
        self._closed = True
        raise APIConnectionError(
            f"{self._method} {self._url}: the stream ended after {received} chunk(s) without "
            "[DONE] or a finish_reason: the answer is incomplete",
            method=self._method,
            url=self._url,
        )

    def _wire_error(self, exc: BaseException) -> APIConnectionError:
        phase = f"stream (after {self._accumulator.chunk_count} chunk(s))"
        return map_transport_error(exc, method=self._method, url=self._url, phase=phase)

    def _stream_error(self, body: StreamErrorBody | None, raw: bytes) -> APIStreamError:
        if body is None:
            try:
                body = _decode_error_envelope(raw).error or _decode_error(raw)
            except msgspec.MsgspecError:
                body = StreamErrorBody(message=raw.decode("utf-8", "replace"))
        message = body.message or "the server reported an error"
        return APIStreamError(
            message,
            code=body.code,
            type=body.type,
            metadata=body.metadata,
            request_id=self.request_id,
        )

    def _check_content_type(self, content_type: str) -> None:
        # Checked before any byte is parsed: an HTML login page must not pass as a stream.
        self._abort()
        error = APIResponseValidationError(
            f"expected an event stream, got Content-Type {content_type or '(none)'!r}",
            status_code=self._response.status,
            request_id=self.request_id,
        )
        self._transport.redactor.scrub(error)
        if self._call is not None:
            self._observe_end("error", error)
        raise error

    # -- release ------------------------------------------------------------------------

    def _release(self) -> None:
        if not self._closed:
            self._closed = True
            self._response.release()

    def _abort(self) -> None:
        if not self._closed:
            self._closed = True
            self._response.close()

    async def close(self) -> None:
        """Close the stream. A stream not read to its end drops its connection."""
        self._abort()
        if self._call is not None:
            self._observe_end("done" if self._done else "cancelled", None)

    async def __aenter__(self) -> ChatCompletionStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_call", None) is not None and getattr(self, "_closed", False):
            # Read to its end (or failed) but never finished by its reader: still an end.
            self._observe_end("done" if self._done else "cancelled", None)
        if not getattr(self, "_closed", True):
            if self._loop.is_closed() or self._transport.closed:
                # The client's close() already closed the response: nothing leaked.
                self._closed = True
                return
            _warn(
                "ChatCompletionStream was garbage-collected before it was read to the end or "
                "closed; use `async with stream:` to release its connection",
                ResourceWarning,
                source=self,
                stacklevel=2,
            )
            self._closed = True
            self._response.close()
            if self._call is not None:
                self._observe_end("cancelled", None)

    # -- results ------------------------------------------------------------------------

    @property
    def response(self) -> aiohttp.ClientResponse:
        """The underlying aiohttp response (status, headers)."""
        return self._response

    @property
    def status_code(self) -> int:
        """The HTTP status of the stream's answer."""
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The HTTP headers of the stream's answer (case-insensitive)."""
        return self._response.headers

    @property
    def rate_limits(self) -> RateLimitHeaders:
        """The ``x-ratelimit-*`` headers of the answer, parsed."""
        return parse_rate_limit_headers(self._response.headers)

    @property
    def completed(self) -> bool:
        """Whether the stream was read to its end (``[DONE]`` or every choice finished)."""
        return self._done

    def current_completion(self) -> ChatCompletion:
        """The completion accumulated so far, finished or not."""
        return self._accumulator.completion()

    def get_final_completion(self) -> AwaitableChatCompletion:
        """The ``ChatCompletion`` built from every delta of the stream.

        Awaited (``await stream.get_final_completion()``, as in openai-python), it first reads
        whatever is left. Called without ``await`` on a stream read to its end, it returns the
        completion at once; on one not read to its end, using the result raises a
        ``RuntimeError`` that says to await it (``current_completion()`` gives the partial
        result).
        """
        if not self._done:
            return cast(AwaitableChatCompletion, _PendingFinalCompletion(self))
        # Every byte has arrived, but the consumer may have stopped before the last events
        # of the final read were decoded: fold them in (or raise what was wrong with them).
        while self._undecoded:
            self._take()
        if self._failure is not None:
            raise self._failure
        if self._raised is not None:
            raise self._raised  # never a shortened answer passed off as the final one
        if self._final is None:
            completion = self._accumulator.completion(AwaitableChatCompletion)
            response = self._response
            completion._attach(
                b"", self.request_id, status=response.status, headers=response.headers
            )
            if self._finalize is not None:
                completion = cast(AwaitableChatCompletion, self._finalize(completion))
            self._final = completion
        return self._final

    async def until_done(self) -> AwaitableChatCompletion:
        """Read the rest of the stream and return the final completion."""
        async for _ in self:
            pass
        return self.get_final_completion()

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
        states = self._accumulator.choices
        async for chunk in self:
            for item in chunk.choices:
                index = item.index
                delta = item.delta
                if delta.content:
                    yield ContentDeltaEvent(choice_index=index, delta=delta.content)
                if delta.refusal:
                    yield RefusalDeltaEvent(choice_index=index, delta=delta.refusal)
                reasoning = delta.reasoning or delta.reasoning_content
                if reasoning:
                    yield ReasoningDeltaEvent(choice_index=index, delta=reasoning)
                if delta.tool_calls:
                    # The accumulator recorded which call each fragment went to.
                    targets = chunk.__dict__.get("_tool_targets", {}).get(index, ())
                    for fragment, call in zip(delta.tool_calls, targets, strict=False):
                        if fragment.function is not None and fragment.function.arguments:
                            yield ToolCallArgumentsDeltaEvent(
                                choice_index=index,
                                index=call.index,
                                id=call.id,
                                name=call.name,
                                arguments_delta=fragment.function.arguments,
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

    def _buffered(self) -> bool:
        """Whether the next ``__anext__`` answers without waiting for the network."""
        return bool(
            self._ready
            or self._undecoded
            or self._failure is not None
            or self._done
            or self._closed
        )

    def to_sse(
        self,
        *,
        format: Literal["chunks", "text"] = "chunks",
        keepalive: float | None = 15.0,
    ) -> AsyncGenerator[bytes, None]:
        """The stream as the body of a ``text/event-stream`` response, frame by frame.

        Read it in any ASGI framework (or ``async for``); each item is one whole SSE frame.
        The upstream stream is closed when the body ends, fails or is cancelled, and when the
        generator is closed early (``await frames.aclose()``).

        :param format: ``"chunks"``: every chunk as ``data: <JSON>``, exactly as the router
            sent it (what OpenAI-compatible clients read); ``"text"``: only the first choice's
            text, each piece as ``data: <JSON string>``. Both end with ``data: [DONE]``.
        :param keepalive: seconds of silence after which a ``: keep-alive`` comment is
            written (again every as many seconds); ``None`` for none.
        :raises ValueError: an unknown ``format``, or ``keepalive`` not positive.

        An error inside the stream (an upstream error frame, a cut connection, a timeout)
        becomes the last frame, ``event: error`` with ``data: {"error": {"message", "type",
        "code", "status_code", "metadata", "request_id", "error_class"}}`` (the fields the
        error has), never followed by ``[DONE]``; the API key is never in it.
        """
        from ._sse_out import check_options, sse_frames

        check_options(format, keepalive)
        return sse_frames(self, format=format, keepalive=keepalive)

    def to_streaming_response(
        self,
        *,
        format: Literal["chunks", "text"] = "chunks",
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
        from ._sse_out import check_options, streaming_response

        check_options(format, keepalive)
        return streaming_response(
            self, format=format, keepalive=keepalive, headers=headers, status_code=status_code
        )

    def __repr__(self) -> str:
        state = "done" if self._done else ("closed" if self._closed else "open")
        return f"<ChatCompletionStream {state} chunks={self._accumulator.chunk_count}>"


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
