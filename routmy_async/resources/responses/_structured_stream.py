"""A Responses stream opened with a JSON ``text_format``: its answer followed as it streams.

As the chat stream's (``resources/chat/_structured_stream.py``): each
``response.output_text.delta`` handed out is added to its message's ``PartialAnswer`` (one
per message item, by ``output_index``: the message's ``output_text`` parts continue one
answer, as ``output_parsed`` joins them) and gets the view its ``snapshot`` and ``parsed``
are built from when read. The latest message is the answer (``output_parsed`` decodes the
last one; an earlier one is a preamble or a first try).

With ``validate="eager"`` every delta is parsed as it is handed out, and the first field that
cannot be valid closes the stream and is raised instead of the event that completed it. A
message whose text is not JSON may be a prose preamble ("Sure, here:") before the message
that holds the answer: its ``InvalidJSONError`` is kept, and raised (instead of the terminal
event) only if it is still the latest message when the response ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from ..._exceptions import ContentParseError, InvalidJSONError
from ..._partial_stream import (
    PartialAnswer,
    PartialFormat,
    PartialView,
    attach_view,
    partial_format,
)
from ..._streaming._context import StreamContext
from ...types.response_events import (
    ResponseCompletedEvent,
    ResponseIncompleteEvent,
    ResponseOutputItemDoneEvent,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
)
from ._stream import ResponseStream

if TYPE_CHECKING:
    from ..._streaming._sse_out import Framing

__all__ = ["StructuredResponseStream", "stream_class_for"]

# The terminal events a stream hands out (a failed response raises instead).
_HANDED_OUT_ENDINGS = frozenset({ResponseCompletedEvent, ResponseIncompleteEvent})


class StructuredResponseStream(ResponseStream):
    """A ``ResponseStream`` that follows its JSON answer (see the module)."""

    _sse_formats = ("events", "text", "partial", "patch")

    def __init__(self, context: StreamContext, *, partial_format: PartialFormat):
        super().__init__(context)
        self._format = partial_format
        # Each message's answer, by output_index. `partial` and the partial frames follow the
        # latest (a later message is the answer output_parsed decodes; an earlier one, a
        # preamble or a first try).
        self._answers: dict[int, PartialAnswer] = {}
        self._latest: PartialAnswer | None = None

    async def __anext__(self) -> ResponseStreamEvent:
        event = await super().__anext__()
        if type(event) is ResponseTextDeltaEvent and event.delta:
            attach_view(event, self._add(event.output_index, event.delta))
        elif type(event) is ResponseOutputItemDoneEvent:
            answer = self._answers.get(event.output_index)
            if answer is not None:
                self._end_message(answer)
        elif type(event) in _HANDED_OUT_ENDINGS:
            self._at_response_end()
        return event

    def _add(self, output_index: int, delta: str) -> PartialView:
        """Add a delta to its message's answer (a new message's answer becomes the latest)."""
        answer = self._answers.get(output_index)
        if answer is None:
            answer = self._answers[output_index] = self._latest = self._format.answer()
        try:
            return answer.add(delta)
        except InvalidJSONError:
            # Not JSON: a preamble, if a later message holds the answer (_at_response_end).
            return answer.view()
        except ContentParseError as error:
            self._stop_at(error, answer)

    def _end_message(self, answer: PartialAnswer) -> None:
        """The message is whole: a number ending its text is complete (eager checks it)."""
        try:
            answer.end()
        except ContentParseError as error:
            self._stop_at(error, answer)

    def _at_response_end(self) -> None:
        """The response has ended: with ``eager``, a latest message that is not JSON is the
        answer ``output_parsed`` would refuse, and its kept error is raised now."""
        latest = self._latest
        if latest is None:
            return
        self._end_message(latest)  # for a server that sent no output_item.done for it
        if self._format.eager and isinstance(latest.error, InvalidJSONError):
            self._stop_at(latest.error, latest)

    def _stop_at(self, error: ContentParseError, answer: PartialAnswer) -> NoReturn:
        """Eager validation failed: close the connection, drop what is left, raise ``error``
        (and, like any error of a stream, again as the cause of every later read)."""
        error.content = answer.text()
        self._abort()
        self._ready.clear()
        self._ready_raw.clear()
        self._undecoded = []
        self._raising(error)
        raise error

    @property
    def partial(self) -> Any:
        answer = self._latest
        return None if answer is None else answer.typed()

    def _partial_json(self) -> Any:
        answer = self._latest
        if answer is None:
            return None
        try:
            return answer.value()
        except InvalidJSONError:
            # A message that is not JSON (a prose preamble) shows nothing: a later message may
            # hold the answer, and the final parse, at the body's end, says whether one did.
            return None

    def _framing(self, format: str) -> Framing:
        if format in ("partial", "patch"):
            from ..._streaming._sse_out import partial_framing

            return partial_framing(
                self._partial_json, self._check_answer, patches=format == "patch"
            )
        return super()._framing(format)

    def _check_answer(self) -> None:
        """At the end of a ``"partial"`` or ``"patch"`` body: the final parse (see the chat
        stream's)."""
        if self._latest is not None:
            self._latest.check_whole()
        self._final_response()


StructuredResponseStream.partial.__doc__ = ResponseStream.partial.__doc__


def stream_class_for(
    fields: dict[str, Any] | None, finalize: Any, *, validate: Any = "final"
) -> Callable[[StreamContext], ResponseStream]:
    """The stream class to open for a request with these body ``fields``: a plain
    ``ResponseStream`` unless its ``text.format`` asks for JSON.

    :param finalize: the request's finaliser; a structured one names the type asked for.
    :raises ValueError: ``validate="eager"`` without a JSON format, or an unknown ``validate``.
    """
    text = (fields or {}).get("text")
    wire_format = text.get("format") if isinstance(text, dict) else None
    found = partial_format(wire_format, getattr(finalize, "target", None), validate=validate)
    if found is None:
        return ResponseStream

    def make(context: StreamContext) -> ResponseStream:
        return StructuredResponseStream(context, partial_format=found)

    return make
