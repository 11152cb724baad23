"""A Responses stream opened with a JSON ``text_format``: its answer followed as it streams.

As the chat stream's (``resources/chat/_structured_stream.py``): each
``response.output_text.delta`` handed out is added to its text part's ``PartialAnswer`` and
gets the view its ``snapshot`` and ``parsed`` are built from when read; with
``validate="eager"`` every delta is parsed as it is handed out, and the first field that
cannot be valid closes the stream and is raised instead of the event that completed it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from ..._exceptions import ContentParseError, InvalidJSONError
from ..._partial_stream import PartialAnswer, PartialFormat, attach_view, partial_format
from ..._streaming._context import StreamContext
from ...types.response_events import (
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseTextDoneEvent,
)
from ._stream import ResponseStream

if TYPE_CHECKING:
    from ..._streaming._sse_out import Framing

__all__ = ["StructuredResponseStream", "stream_class_for"]


class StructuredResponseStream(ResponseStream):
    """A ``ResponseStream`` that follows its JSON answer (see the module)."""

    _sse_formats = ("events", "text", "partial", "patch")

    def __init__(self, context: StreamContext, *, partial_format: PartialFormat):
        super().__init__(context)
        self._format = partial_format
        # Each text part's answer, by (output_index, content_index). `partial` and the
        # partial frames follow the latest (a later message is the answer output_parsed
        # decodes; an earlier one, a preamble or a first try).
        self._answers: dict[tuple[int, int], PartialAnswer] = {}
        self._latest: PartialAnswer | None = None

    async def __anext__(self) -> ResponseStreamEvent:
        event = await super().__anext__()
        if type(event) is ResponseTextDeltaEvent and event.delta:
            key = (event.output_index, event.content_index)
            answer = self._answers.get(key)
            if answer is None:
                answer = self._answers[key] = self._latest = self._format.answer()
            try:
                view = answer.add(event.delta)
            except ContentParseError as error:
                self._stop_at(error, answer)
            attach_view(event, view)
        elif type(event) is ResponseTextDoneEvent:
            answer = self._answers.get((event.output_index, event.content_index))
            if answer is not None:
                try:
                    answer.end()
                except ContentParseError as error:
                    self._stop_at(error, answer)
        return event

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
