"""``ResponseStream``: a streamed Responses API call, as typed events and a final ``Response``.

The answer ends at a terminal event: ``response.completed`` or ``response.incomplete`` end it
normally (the loop ends there; the connection goes back to the pool when the body ends),
``response.failed`` and ``error`` raise ``APIStreamError`` once the events before them were
delivered, and a body that ends without any of them raises ``APIConnectionError``: a stream
never ends silently short. After an error every read raises (the stream-end rule of every
stream, in ``EventStream``'s docstring).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from ..._exceptions import APIResponseValidationError, APIStreamError
from ..._streaming._base import EventStream, StreamManager
from ..._streaming._context import StreamContext
from ..._streaming._sse import WireEvent
from ...types._base import attach_answer
from ...types.response_events import (
    ResponseCompletedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseIncompleteEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
)
from ...types.responses import Response
from ._accumulate import EventLines, ResponseAccumulator, decode_event, feed_split

if TYPE_CHECKING:
    from starlette.responses import StreamingResponse

    from ..._streaming._sse_out import Framing

__all__ = ["ResponseStream", "ResponseStreamManager"]

_ENDINGS = frozenset(
    {ResponseCompletedEvent, ResponseIncompleteEvent, ResponseFailedEvent, ResponseErrorEvent}
)


class ResponseStream(EventStream[ResponseStreamEvent]):
    """An open streamed response: iterate it for typed events (``event.type`` tags them).

    Use it as ``async with stream:`` so the connection is released even when the loop is left
    early. ``await stream.get_final_response()`` reads what is left and returns the
    ``Response``; ``text_deltas()`` yields only the text. The loop stops only at the
    answer's end; after an error, or ``close()`` before the end, every read raises
    ``APIConnectionError`` ("closed before its end").
    """

    _noun = "event"
    _terminal = "response.completed, response.incomplete or response.failed"
    # What to_sse serves; a stream with a JSON text_format serves its partials too.
    _sse_formats: tuple[str, ...] = ("events", "text")

    def __init__(self, context: StreamContext):
        super().__init__(context)
        self._finalize: Callable[[Response], Response] | None = context.finalize
        self._ready: deque[ResponseStreamEvent] = deque()
        self._accumulator = ResponseAccumulator()
        self._finished = False  # response.completed or response.incomplete arrived
        self._final: Response | None = None
        self._terminal_raw = b""
        self._event_lines = EventLines()
        # The data of each event waiting in _ready, in the same order: an event is served
        # again (to_sse) exactly as the router sent it, even one decoded before serving
        # began. Trimmed to the waiting events at each batch, so it stays small.
        self._ready_raw: deque[bytes] = deque()
        #: Named SSE events that carry no Responses event (``event: ping``), skipped.
        self.ignored_events = 0

    def _take(self) -> None:
        """Decode and accumulate the next few events, in one tight loop.

        A bad frame, an error or a failed response stops the batch: the events before it are
        still delivered, then the failure is raised by the next ``__anext__``.
        """
        append = self._ready.append
        add = self._accumulator.add
        raws = self._ready_raw
        while len(raws) > len(self._ready):  # those of events handed out since
            raws.popleft()
        for data in self._next_batch():
            try:
                event = decode_event(data)
            except APIResponseValidationError as error:
                error.request_id = self.request_id
                self._fail(error)
                return
            if event is None:
                self.ignored_events += 1
                continue
            raw = data if isinstance(data, bytes) else data.data
            if type(event) in _ENDINGS:
                self._terminal_raw = _response_raw(data)
                self._end(event, raw)
                return
            add(event)
            append(event)
            raws.append(raw)

    def _end(self, event: ResponseStreamEvent, raw: bytes) -> None:
        if isinstance(event, ResponseErrorEvent):
            body = event.error
            self._fail(
                APIStreamError(
                    event.message
                    or (body.message if body else "")
                    or "the server reported an error",
                    code=event.code if event.code is not None else (body.code if body else None),
                    type=body.type if body else None,
                    metadata=body.metadata if body else None,
                    request_id=self.request_id,
                )
            )
            return
        self._accumulator.add(event)
        if isinstance(event, ResponseFailedEvent):
            error = event.response.error
            self._fail(
                APIStreamError(
                    (error.message if error else "") or "the response failed",
                    code=error.code if error else None,
                    type=error.type if error else None,
                    metadata=error.metadata if error else None,
                    request_id=self.request_id,
                )
            )
            return
        self._ready.append(event)
        self._ready_raw.append(raw)
        self._finished = True
        # The answer is whole: whatever a server sends after it is not part of it.
        self._undecoded = []
        self._finish_body()

    def _received(self) -> int:
        return self._accumulator.event_count

    def _delivered(self) -> int:
        # A ``response.failed`` is accumulated (its usage counts) but raised, not handed out.
        failed = type(self._accumulator.terminal) is ResponseFailedEvent
        return self._accumulator.event_count - failed - len(self._ready)

    def _feed(self, data: bytes) -> list[bytes | WireEvent]:
        return feed_split(self._decoder, self._event_lines(data))

    def _used_tokens(self) -> int | None:
        return self._accumulator.usage_tokens

    def _usage(self) -> Any:
        """The terminal response's ``usage`` (a failed response's included)."""
        terminal = self._accumulator.terminal
        return terminal.response.usage if terminal is not None else None

    def _failed_result(self) -> Response | None:
        # A response.failed event carried the whole failed Response: its id and usage count.
        terminal = self._accumulator.terminal
        if isinstance(terminal, ResponseFailedEvent):
            return self._whole()
        return None

    def _result(self) -> Response:
        return self._whole()

    def _whole(self) -> Response:
        """The accumulated response, with the answer's request id, status and headers."""
        accumulator = self._accumulator
        response = accumulator.response()
        answer = self._response
        terminal = accumulator.terminal
        # The terminal event's response as sent (undeclared fields, .raw) when it is the one
        # returned; a response built from the deltas has no such text.
        raw = self._terminal_raw if terminal is not None and response is terminal.response else b""
        attach_answer(response, raw, self.request_id, status=answer.status, headers=answer.headers)
        return response

    # -- results ------------------------------------------------------------------------

    @property
    def completed(self) -> bool:
        """Whether the stream was read to its end: ``response.completed`` or
        ``response.incomplete`` arrived and was handed out."""
        return self._finished and not self._ready

    def current_response(self) -> Response:
        """The response accumulated so far, finished or not (a failed one included)."""
        return self._accumulator.response()

    async def get_final_response(self) -> Response:
        """Read what is left of the stream and return the final ``Response``.

        :raises APIStreamError: the response failed, or the server sent an error.
        :raises APIConnectionError: the stream ended, or was closed, before its last event.
        """
        if self._raised is not None:
            raise self._raised  # what ended the stream, again: never a shortened answer
        async for _ in self:
            pass
        return self._final_response()

    def _final_response(self) -> Response:
        """The final ``Response`` of a stream read to its end (parsed, once)."""
        if self._raised is not None:
            raise self._raised
        if self._final is None:
            response = self._whole()
            if self._finalize is not None:
                response = self._finalize(response)
            self._final = response
        return self._final

    async def until_done(self) -> Response:
        """Read the rest of the stream and return the final response."""
        return await self.get_final_response()

    @property
    def partial(self) -> Any:
        """The answer so far as the ``text_format`` type, every field optional (as the chat
        stream's :attr:`~routmy_async.ChatCompletionStream.partial`): the JSON of the latest
        message (its ``output_text`` parts joined; a later message is the answer
        ``output_parsed`` decodes), over every event handed out so far; ``None`` before the
        JSON begins.

        :raises RuntimeError: the stream was opened without a JSON ``text_format``.
        :raises InvalidJSONError: the answer so far cannot become JSON.
        """
        raise RuntimeError(
            "stream.partial needs a stream opened with a JSON text_format (a msgspec.Struct "
            "or Pydantic model type, or a json_schema or json_object format)"
        )

    async def text_deltas(self) -> AsyncIterator[str]:
        """Yield the pieces of the answer's text (``response.output_text.delta``), only."""
        async for event in self:
            if type(event) is ResponseTextDeltaEvent and event.delta:
                yield event.delta

    # -- serving the stream again -------------------------------------------------------

    def _framing(self, format: str) -> Framing:
        from ..._streaming._sse_out import responses_framing

        raws = self._ready_raw
        while len(raws) > len(self._ready):  # those of events already handed out
            raws.popleft()
        return responses_framing(format, raws)

    def _check_format(self, format: str) -> None:
        if format in ("partial", "patch") and format not in self._sse_formats:
            raise ValueError(
                f"format={format!r} serves the answer's partial JSON: open the stream with a "
                "JSON text_format (a msgspec.Struct or Pydantic model type, or a json_schema "
                "or json_object format)"
            )

    def to_sse(
        self,
        *,
        format: Literal["events", "text", "partial", "patch"] = "events",
        keepalive: float | None = 15.0,
    ) -> AsyncGenerator[bytes, None]:
        """The stream as the body of a ``text/event-stream`` response, frame by frame (see
        the chat stream's :meth:`~routmy_async.ChatCompletionStream.to_sse`: keep-alives, an
        error as the last frame, the upstream closed when the body ends or is left).

        :param format: ``"events"``: every event as ``event: <type>`` and ``data: <JSON>``,
            exactly as the router sent it (what OpenAI-compatible Responses clients read; no
            ``[DONE]``, the last event ends it); ``"text"``: only the output text, each piece
            as ``data: <JSON string>``, then ``data: [DONE]``; ``"partial"`` (a stream with
            a JSON ``text_format``): the answer so far as plain JSON values, a ``data: <JSON>``
            frame each time it grows, then ``data: [DONE]``; ``"patch"``: only what changed,
            as on a chat stream.
        :param keepalive: seconds of silence after which a ``: keep-alive`` comment is
            written (again every as many seconds); ``None`` for none.
        :raises ValueError: an unknown ``format`` (``"partial"`` or ``"patch"`` on a stream
            without a JSON ``text_format``), or ``keepalive`` not positive.
        """
        self._check_format(format)
        return self._serve_sse(self._framing, format, self._sse_formats, keepalive)

    def to_streaming_response(
        self,
        *,
        format: Literal["events", "text", "partial", "patch"] = "events",
        keepalive: float | None = 15.0,
        headers: Mapping[str, str] | None = None,
        status_code: int = 200,
    ) -> StreamingResponse:
        """A Starlette/FastAPI ``StreamingResponse`` serving :meth:`to_sse` that owns the
        stream: when the client disconnects, the upstream stream is closed at once.

        :raises ImportError: Starlette is not installed (``to_sse()`` needs nothing).
        :raises ValueError: as :meth:`to_sse`.
        """
        self._check_format(format)
        return self._serve_response(
            self._framing, format, self._sse_formats, keepalive, headers, status_code
        )

    def __repr__(self) -> str:
        state = "done" if self._finished else ("closed" if self._closed else "open")
        return f"<ResponseStream {state} events={self._accumulator.event_count}>"


class ResponseStreamManager(StreamManager[ResponseStream]):
    """``async with`` opens the stream on entry and closes it on exit."""


class _TerminalEnvelope(msgspec.Struct):
    response: msgspec.Raw = msgspec.Raw(b"")


_decode_terminal = msgspec.json.Decoder(_TerminalEnvelope).decode


def _response_raw(data: bytes | WireEvent) -> bytes:
    """The ``response`` object of a terminal event's data, as its JSON text."""
    if not isinstance(data, bytes):
        data = data.data
    try:
        return bytes(_decode_terminal(data).response)
    except msgspec.MsgspecError:
        return b""
