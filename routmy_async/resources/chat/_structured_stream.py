"""A chat stream opened with a JSON ``response_format``: its answer followed as it streams.

Each content delta handed out is added to its choice's ``PartialAnswer`` (a list append: the
parse waits until someone reads ``event.parsed``, ``stream.partial`` or a ``"partial"`` SSE
frame). With ``validate="eager"`` every delta is parsed as it is handed out, and the first
field that cannot be valid ends the stream at once: the connection is closed (a server that
notices the client leaving may stop generating), and the reader gets the
``FieldValidationError`` (or ``InvalidJSONError``) instead of the chunk that completed it.

A stream without a JSON format is a plain ``ChatCompletionStream``: none of this costs it
anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

from ..._exceptions import ContentParseError
from ..._partial_stream import PartialAnswer, PartialFormat, PartialView, partial_format
from ..._streaming._context import StreamContext
from ...types.chat import ChatCompletionChunk
from ._stream import ChatCompletionStream

if TYPE_CHECKING:
    from ..._streaming._sse_out import Framing

__all__ = ["StructuredChatCompletionStream", "stream_class_for"]


class StructuredChatCompletionStream(ChatCompletionStream):
    """A ``ChatCompletionStream`` that follows each choice's JSON answer (see the module)."""

    _sse_formats = ("chunks", "text", "partial", "patch")

    def __init__(self, context: StreamContext, *, partial_format: PartialFormat):
        super().__init__(context)
        self._format = partial_format
        self._answers: dict[int, PartialAnswer] = {}
        self._latest_views: dict[int, PartialView] = {}

    async def __anext__(self) -> ChatCompletionChunk:
        ready = self._ready
        # A chunk decoded already (the usual case) costs no second coroutine.
        chunk = ready.popleft() if ready else await super().__anext__()
        for choice in chunk.choices:
            content = choice.delta.content
            if content:
                answer = self._answers.get(choice.index)
                if answer is None:
                    answer = self._answers[choice.index] = self._format.answer()
                try:
                    self._latest_views[choice.index] = answer.add(content)
                except ContentParseError as error:
                    self._stop_at(error, answer)
            if choice.finish_reason is not None and choice.index in self._answers:
                answer = self._answers[choice.index]
                try:
                    answer.end()
                except ContentParseError as error:
                    self._stop_at(error, answer)
        return chunk

    def _stop_at(self, error: ContentParseError, answer: PartialAnswer) -> NoReturn:
        """Eager validation failed: close the connection, drop what is left, raise ``error``
        (and, like any error of a stream, again as the cause of every later read)."""
        error.content = answer.text()  # the text so far: nothing the model sent is lost
        self._abort()
        self._ready.clear()
        self._undecoded = []
        self._raising(error)
        raise error

    @property
    def partial(self) -> Any:
        answer = self._answers.get(0)
        return None if answer is None else answer.typed()

    def _partial_json(self) -> Any:
        """The first choice's answer so far as plain JSON values (``"partial"`` frames)."""
        answer = self._answers.get(0)
        return None if answer is None else answer.value()

    def _framing(self, format: str) -> Framing:
        if format in ("partial", "patch"):
            from ..._streaming._sse_out import partial_framing

            return partial_framing(
                self._partial_json, self._check_answer, patches=format == "patch"
            )
        return super()._framing(format)

    def _check_answer(self) -> None:
        """At the end of a ``"partial"`` or ``"patch"`` body: the final parse, which raises
        what is wrong with the answer (cut by the token limit, not fitting the type); a dict
        format's answer is at least whole JSON."""
        answer = self._answers.get(0)
        if answer is not None:
            answer.check_whole()
        self.get_final_completion()


# The docstring of the property is the base class's: one text, one place.
StructuredChatCompletionStream.partial.__doc__ = ChatCompletionStream.partial.__doc__


def stream_class_for(
    response_format: Any, finalize: Any, *, validate: Any = "final"
) -> Callable[[StreamContext], ChatCompletionStream]:
    """The stream class to open for a request whose ``response_format`` (as sent) is
    ``response_format``: a plain ``ChatCompletionStream`` unless it asks for JSON.

    :param finalize: the request's finaliser; a structured one names the type asked for.
    :raises ValueError: ``validate="eager"`` without a JSON format, or an unknown ``validate``.
    """
    target = getattr(finalize, "target", None)
    found = partial_format(response_format, target, validate=validate)
    if found is None:
        return ChatCompletionStream

    def make(context: StreamContext) -> ChatCompletionStream:
        return StructuredChatCompletionStream(context, partial_format=found)

    return make
