"""Responses streams without I/O: SSE data in, typed events out; events in, a ``Response`` out.

:func:`decode_event` turns the data of one SSE event into its typed event. The JSON ``type``
decides, not the SSE ``event:`` name (servers send both, some only the data). An event of an
unknown type is passed through as ``UnknownResponseEvent``; an error in any of the shapes
routers use (``{"type": "error"}``, ``{"error": {...}}``, ``event: error`` with text) becomes a
``ResponseErrorEvent``; a frame that is not JSON, or a known type with fields of the wrong
shape, is an ``APIResponseValidationError``.

:class:`ResponseAccumulator` folds events into the response: output items keyed by their
``output_index`` (they may arrive in any order and interleave), text, refusal, argument and
reasoning deltas joined once at the end, and each ``output_item.done`` item taken as the
final form of its item. The terminal event's ``response`` is the answer when it carries its
``output``; when it does not (some servers leave it out), the output is the accumulated one.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import msgspec

from ..._exceptions import APIResponseValidationError, parse_error_body
from ..._partial_stream import PartialAnswer, attach_view
from ..._streaming._sse import SSEDecoder, WireEvent
from ...types._base import decode_lenient
from ...types.response_events import (
    KNOWN_EVENT_TYPES,
    KnownResponseEvent,
    ResponseCompletedEvent,
    ResponseContentPartAddedEvent,
    ResponseContentPartDoneEvent,
    ResponseCreatedEvent,
    ResponseErrorEvent,
    ResponseFailedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseFunctionCallArgumentsDoneEvent,
    ResponseIncompleteEvent,
    ResponseInProgressEvent,
    ResponseOutputItemAddedEvent,
    ResponseOutputItemDoneEvent,
    ResponseOutputTextAnnotationAddedEvent,
    ResponseQueuedEvent,
    ResponseReasoningSummaryPartAddedEvent,
    ResponseReasoningSummaryPartDoneEvent,
    ResponseReasoningSummaryTextDeltaEvent,
    ResponseReasoningSummaryTextDoneEvent,
    ResponseReasoningTextDeltaEvent,
    ResponseReasoningTextDoneEvent,
    ResponseRefusalDeltaEvent,
    ResponseRefusalDoneEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
    UnknownResponseEvent,
)
from ...types.responses import (
    Response,
    ResponseError,
    ResponseFunctionToolCall,
    ResponseOutputContent,
    ResponseOutputItem,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseReasoningContent,
    ResponseReasoningItem,
    ResponseReasoningSummary,
    UnknownContentPart,
)

__all__ = [
    "EventLines",
    "ResponseAccumulator",
    "ResponseEventDecoder",
    "decode_event",
    "feed_split",
]

_decode_known: Callable[[bytes], KnownResponseEvent] = msgspec.json.Decoder(
    KnownResponseEvent
).decode


class _Envelope(msgspec.Struct):
    type: Any = None
    error: Any = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode


def _error_event(data: bytes) -> ResponseErrorEvent:
    """A ``ResponseErrorEvent`` from a router's error frame, whatever its shape."""
    parsed = parse_error_body(data)
    body = ResponseError(
        code=parsed.code,
        message=parsed.stated_message(""),
        type=parsed.type,
        param=parsed.param,
        metadata=parsed.metadata,
    )
    return ResponseErrorEvent(code=body.code, message=body.message, error=body)


def decode_event(data: bytes | WireEvent) -> ResponseStreamEvent | None:
    """The typed event for the data of one SSE event.

    Returns ``None`` for a named SSE event that carries no Responses event (``event: ping``
    with data but no ``type``): it is not part of the answer.

    :raises APIResponseValidationError: the data is not JSON, or a known event type has
        fields of the wrong shape.
    """
    name = None
    if not isinstance(data, bytes):  # bytes, not WireEvent: the Struct's metaclass is slow
        name = data.event
        data = data.data
    try:
        return _decode_known(data)
    except msgspec.MsgspecError as exc:
        if isinstance(exc, msgspec.ValidationError):
            try:
                return decode_lenient(_decode_known, data, exc)
            except msgspec.ValidationError:
                pass
        return _unusual(data, name, exc)


def _unusual(
    data: bytes, name: str | None, exc: msgspec.MsgspecError
) -> ResponseStreamEvent | None:
    """The slow path of :func:`decode_event`: errors, unknown types and bad frames."""
    try:
        envelope = _decode_envelope(data)
    except msgspec.MsgspecError:
        if name == "error":
            return _error_event(data)
        raise APIResponseValidationError(
            f"a stream frame is not valid JSON: {exc}", body=data
        ) from None
    kind = envelope.type
    if isinstance(kind, str) and kind and kind not in KNOWN_EVENT_TYPES:
        return UnknownResponseEvent(msgspec.json.decode(data))
    if kind is None:
        if envelope.error is not None or name == "error":
            return _error_event(data)
        if name is not None and name != "message":
            return None
    raise APIResponseValidationError(
        f"a stream frame has an unexpected shape: {exc}", body=data
    ) from None


_EVENT_LINE = re.compile(rb"\nevent: response\.[a-z0-9_.]+(?=\n)")
_FIRST_EVENT_LINE = re.compile(rb"event: response\.[a-z0-9_.]+\n")


class EventLines:
    """Drops the ``event: response.<name>`` line a Responses server sends before each
    ``data:`` line, before the bytes reach the SSE decoder.

    The name repeats the ``type`` inside the data, which is what :func:`decode_event` reads;
    without the line, the decoder's fast path (whole ``data:`` events split in C) takes
    every event instead of the line-by-line rules, about four times the work. Only a whole
    line is dropped: it must start at a line start (after an LF in this read, or at the
    read's start when the previous read ended with one) and end with an LF in this read. A
    line split across reads, a CR line end, another event name (``error``, ``ping``) and any
    other field are left for the decoder. Dropping an ``event`` field changes nothing else of
    the event (WHATWG: it only sets the type).
    """

    __slots__ = ("_line_start",)

    def __init__(self) -> None:
        self._line_start = True

    def __call__(self, chunk: bytes) -> bytes:
        line_start = self._line_start
        self._line_start = chunk[-1:] == b"\n"
        if line_start and chunk.startswith(b"event: response."):
            first = _FIRST_EVENT_LINE.match(chunk)
            if first is not None:
                chunk = chunk[first.end() :]
        return _EVENT_LINE.sub(b"", chunk)


def feed_split(decoder: SSEDecoder, chunk: bytes) -> list[bytes | WireEvent]:
    """``decoder.feed_raw(chunk)``, in two steps when the read starts inside an event.

    The SSE decoder splits whole ``data:`` events in C only for a read that starts with
    ``data: ``; a read that starts inside an event (a burst cut anywhere by the network)
    takes the line-by-line rules for all of it. Feeding the end of that first event on its
    own first lets the rest take the fast path. Any split is valid for the incremental
    decoder, so the events are the same.
    """
    if chunk[:6] != b"data: ":
        end = chunk.find(b"\n\n") + 2
        if 1 < end < len(chunk):
            events = decoder.feed_raw(chunk[:end])
            events.extend(decoder.feed_raw(chunk[end:]))
            return events
    return decoder.feed_raw(chunk)


class ResponseEventDecoder:
    """Bytes of a Responses stream in, typed events out (SSE framing and JSON together).

    Pure: feed it each network read; the stream itself decodes the same way, lazily.
    """

    def __init__(self) -> None:
        self._sse = SSEDecoder()
        self._lines = EventLines()

    @property
    def done(self) -> bool:
        """Whether ``data: [DONE]`` arrived (some routers end Responses streams with it)."""
        return self._sse.done

    def feed(self, chunk: bytes) -> list[ResponseStreamEvent]:
        """Add the bytes of one read; return the events they completed, in order.

        :raises APIResponseValidationError: a frame is not JSON or has the wrong shape.
        """
        events = []
        for data in feed_split(self._sse, self._lines(chunk)):
            event = decode_event(data)
            if event is not None:
                events.append(event)
        return events


# -- accumulation ---------------------------------------------------------------------------


class _Part:
    """A content part being streamed: its kind, its text pieces, its annotations."""

    __slots__ = ("annotations", "kind", "other", "pieces")

    def __init__(self, kind: str, other: Any = None):
        self.kind = kind
        self.pieces: list[str] = []
        self.annotations: list[Any] = []
        self.other = other  # a part of a type we do not stream, kept as given

    def build(self) -> ResponseOutputContent:
        if self.kind == "output_text":
            return ResponseOutputText(text="".join(self.pieces), annotations=self.annotations)
        if self.kind == "refusal":
            return ResponseOutputRefusal(refusal="".join(self.pieces))
        other: ResponseOutputContent = self.other or UnknownContentPart({"type": self.kind})
        return other


def _set_text(pieces: list[str], text: str) -> None:
    """A ``.done`` event's whole text replaces the pieces (it is the authoritative form);
    an empty one from a terse server leaves the pieces that arrived."""
    if text or not pieces:
        pieces[:] = [text]


class _Item:
    """An output item being streamed (keyed by ``output_index``)."""

    __slots__ = (
        "argument_answer",
        "arguments",
        "base",
        "done",
        "implicit",
        "name",
        "parts",
        "reasoning",
        "summary",
    )

    def __init__(self, base: ResponseOutputItem, *, implicit: bool = False):
        self.base = base
        # Made for a delta that came before its output_item.added: the item replaces it.
        self.implicit = implicit
        self.done: ResponseOutputItem | None = None
        self.parts: dict[int, _Part] = {}
        self.arguments: list[str] = []
        # The arguments as they stream, for each delta event's parsed_arguments.
        self.argument_answer: PartialAnswer | None = None
        self.name: str | None = None
        self.summary: dict[int, list[str]] = {}
        self.reasoning: dict[int, list[str]] = {}

    def build(self) -> ResponseOutputItem:
        done = self.done
        if done is not None and not self._fills(done):
            return done
        base = done or self.base
        if isinstance(base, ResponseOutputMessage):
            content = [self.parts[i].build() for i in sorted(self.parts)]
            return msgspec.structs.replace(base, content=content or base.content)
        if isinstance(base, ResponseFunctionToolCall):
            return msgspec.structs.replace(
                base,
                arguments="".join(self.arguments) if self.arguments else base.arguments,
                name=self.name or base.name,
            )
        if isinstance(base, ResponseReasoningItem):
            summary = base.summary
            if self.summary:
                summary = [
                    ResponseReasoningSummary(text="".join(self.summary[i]))
                    for i in sorted(self.summary)
                ]
            text = base.content
            if self.reasoning:
                text = [
                    ResponseReasoningContent(text="".join(self.reasoning[i]))
                    for i in sorted(self.reasoning)
                ]
            return msgspec.structs.replace(base, summary=summary, content=text)
        return base

    def _fills(self, done: ResponseOutputItem) -> bool:
        """Whether streamed pieces must fill a done item a server sent without them."""
        if isinstance(done, ResponseOutputMessage):
            return not done.content and bool(self.parts)
        if isinstance(done, ResponseFunctionToolCall):
            return not done.arguments and bool(self.arguments)
        return False


class ResponseAccumulator:
    """Events in, the ``Response`` out. Pure: no I/O, no clock."""

    def __init__(self) -> None:
        self.event_count = 0
        #: The terminal event (completed, incomplete or failed), once it arrived.
        self.terminal: (
            ResponseCompletedEvent | ResponseIncompleteEvent | ResponseFailedEvent | None
        ) = None
        self._base: Response | None = None
        self._items: dict[int, _Item] = {}
        self._by_id: dict[str, _Item] = {}
        self._handlers: dict[type[Any], Callable[[Any], None]] = {
            ResponseTextDeltaEvent: self._text_delta,
            ResponseFunctionCallArgumentsDeltaEvent: self._arguments_delta,
            ResponseReasoningSummaryTextDeltaEvent: self._summary_delta,
            ResponseReasoningTextDeltaEvent: self._reasoning_delta,
            ResponseRefusalDeltaEvent: self._refusal_delta,
            ResponseCreatedEvent: self._lifecycle,
            ResponseQueuedEvent: self._lifecycle,
            ResponseInProgressEvent: self._lifecycle,
            ResponseCompletedEvent: self._terminal,
            ResponseIncompleteEvent: self._terminal,
            ResponseFailedEvent: self._terminal,
            ResponseOutputItemAddedEvent: self._item_added,
            ResponseOutputItemDoneEvent: self._item_done,
            ResponseContentPartAddedEvent: self._part_added,
            ResponseContentPartDoneEvent: self._part_done,
            ResponseTextDoneEvent: self._text_done,
            ResponseRefusalDoneEvent: self._refusal_done,
            ResponseOutputTextAnnotationAddedEvent: self._annotation,
            ResponseFunctionCallArgumentsDoneEvent: self._arguments_done,
            ResponseReasoningSummaryPartAddedEvent: self._summary_part,
            ResponseReasoningSummaryPartDoneEvent: self._summary_part,
            ResponseReasoningSummaryTextDoneEvent: self._summary_done,
            ResponseReasoningTextDoneEvent: self._reasoning_done,
        }

    def add(self, event: ResponseStreamEvent) -> None:
        """Fold one event in (unknown types and errors change nothing)."""
        self.event_count += 1
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    def response(self) -> Response:
        """The response so far: the final one after a terminal event."""
        terminal = self.terminal
        if terminal is not None and terminal.response.output:
            return terminal.response
        base = self._base or Response(status="in_progress")
        items = self._items
        return msgspec.structs.replace(base, output=[items[i].build() for i in sorted(items)])

    @property
    def usage_tokens(self) -> int | None:
        """The ``total_tokens`` of the terminal response's usage, once known."""
        terminal = self.terminal
        usage = terminal.response.usage if terminal is not None else None
        return usage.total_tokens if usage is not None else None

    # -- finding the item an event belongs to ---------------------------------------------

    def _item(self, event: Any, make: Callable[[str], ResponseOutputItem]) -> _Item:
        """The item of a delta event: by ``item_id``, else by ``output_index``. A server that
        skipped ``output_item.added`` gets the item made on the spot."""
        state = self._by_id.get(event.item_id) or self._items.get(event.output_index)
        if state is None:
            state = self._add(event.output_index, make(event.item_id), implicit=True)
        return state

    def _add(self, index: int, item: ResponseOutputItem, *, implicit: bool = False) -> _Item:
        state = _Item(item, implicit=implicit)
        previous = self._items.get(index)
        if previous is not None and previous is not state:
            # A second item at a taken index: keep both, the newcomer after the others.
            index = max(self._items) + 1
        self._items[index] = state
        item_id = getattr(item, "id", None)
        if isinstance(item_id, str) and item_id:
            self._by_id[item_id] = state
        return state

    def _part(self, event: Any, kind: str) -> _Part:
        parts = self._item(event, _message).parts
        part = parts.get(event.content_index)
        if part is None:
            part = parts[event.content_index] = _Part(kind)
        return part

    # -- the hot path: deltas -------------------------------------------------------------

    def _text_delta(self, event: ResponseTextDeltaEvent) -> None:
        state = self._by_id.get(event.item_id) or self._items.get(event.output_index)
        part = state.parts.get(event.content_index) if state is not None else None
        if part is None:
            part = self._part(event, "output_text")
        part.pieces.append(event.delta)

    def _arguments_delta(self, event: ResponseFunctionCallArgumentsDeltaEvent) -> None:
        item = self._item(event, _function_call)
        item.arguments.append(event.delta)
        # The event's parsed_arguments, built only if it is read (PartialAnswer parses then).
        answer = item.argument_answer
        if answer is None:
            answer = item.argument_answer = PartialAnswer()
        attach_view(event, answer.add(event.delta))

    def _summary_delta(self, event: ResponseReasoningSummaryTextDeltaEvent) -> None:
        summary = self._item(event, _reasoning).summary
        summary.setdefault(event.summary_index, []).append(event.delta)

    def _reasoning_delta(self, event: ResponseReasoningTextDeltaEvent) -> None:
        reasoning = self._item(event, _reasoning).reasoning
        reasoning.setdefault(event.content_index, []).append(event.delta)

    def _refusal_delta(self, event: ResponseRefusalDeltaEvent) -> None:
        self._part(event, "refusal").pieces.append(event.delta)

    # -- the rest -------------------------------------------------------------------------

    def _lifecycle(self, event: Any) -> None:
        self._base = event.response

    def _terminal(self, event: Any) -> None:
        self._base = event.response
        self.terminal = event

    def _item_added(self, event: ResponseOutputItemAddedEvent) -> None:
        item = event.item
        if item is None:
            return
        item_id = getattr(item, "id", None)
        state = (self._by_id.get(item_id) if isinstance(item_id, str) else None) or (
            self._items.get(event.output_index)
        )
        if state is not None and (state.implicit or getattr(state.base, "id", None) == item_id):
            state.base = item
            state.implicit = False
            if isinstance(item_id, str) and item_id:
                self._by_id[item_id] = state
            return
        self._add(event.output_index, item)

    def _item_done(self, event: ResponseOutputItemDoneEvent) -> None:
        item = event.item
        if item is None:
            return
        item_id = getattr(item, "id", None)
        state = (self._by_id.get(item_id) if isinstance(item_id, str) else None) or (
            self._items.get(event.output_index)
        )
        if state is None:
            state = self._add(event.output_index, item)
        state.done = item

    def _part_added(self, event: ResponseContentPartAddedEvent) -> None:
        part = event.part
        if part is None:
            return
        parts = self._item(event, _message).parts
        state = parts[event.content_index] = _Part(part.type, part)
        if isinstance(part, ResponseOutputText):
            if part.text:
                state.pieces.append(part.text)
            state.annotations.extend(part.annotations)
        elif isinstance(part, ResponseOutputRefusal) and part.refusal:
            state.pieces.append(part.refusal)

    def _part_done(self, event: ResponseContentPartDoneEvent) -> None:
        part = event.part
        if isinstance(part, ResponseOutputText):
            state = self._part(event, "output_text")
            _set_text(state.pieces, part.text)
            if part.annotations:
                state.annotations[:] = part.annotations
        elif isinstance(part, ResponseOutputRefusal):
            _set_text(self._part(event, "refusal").pieces, part.refusal)
        elif part is not None:
            parts = self._item(event, _message).parts
            parts[event.content_index] = _Part(part.type, part)

    def _text_done(self, event: ResponseTextDoneEvent) -> None:
        _set_text(self._part(event, "output_text").pieces, event.text)

    def _refusal_done(self, event: ResponseRefusalDoneEvent) -> None:
        _set_text(self._part(event, "refusal").pieces, event.refusal)

    def _annotation(self, event: ResponseOutputTextAnnotationAddedEvent) -> None:
        if event.annotation is not None:
            self._part(event, "output_text").annotations.append(event.annotation)

    def _arguments_done(self, event: ResponseFunctionCallArgumentsDoneEvent) -> None:
        state = self._item(event, _function_call)
        _set_text(state.arguments, event.arguments)
        if event.name:
            state.name = event.name

    def _summary_part(
        self, event: ResponseReasoningSummaryPartAddedEvent | ResponseReasoningSummaryPartDoneEvent
    ) -> None:
        pieces = self._item(event, _reasoning).summary.setdefault(event.summary_index, [])
        if event.part is not None and event.part.text:
            _set_text(pieces, event.part.text)

    def _summary_done(self, event: ResponseReasoningSummaryTextDoneEvent) -> None:
        summary = self._item(event, _reasoning).summary
        _set_text(summary.setdefault(event.summary_index, []), event.text)

    def _reasoning_done(self, event: ResponseReasoningTextDoneEvent) -> None:
        reasoning = self._item(event, _reasoning).reasoning
        _set_text(reasoning.setdefault(event.content_index, []), event.text)


def _message(item_id: str) -> ResponseOutputItem:
    return ResponseOutputMessage(id=item_id, status="in_progress")


def _function_call(item_id: str) -> ResponseOutputItem:
    return ResponseFunctionToolCall(id=item_id or None, status="in_progress")


def _reasoning(item_id: str) -> ResponseOutputItem:
    return ResponseReasoningItem(id=item_id, status="in_progress")
