"""Typed events of ``ChatCompletionStream.events()``, tagged by ``type``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import msgspec

from .._partial_stream import FrozenView, PartialView, ViewCopies
from .chat import ChatCompletion, ImageOutput, ToolCall

__all__ = [
    "CompletionDoneEvent",
    "ContentDeltaEvent",
    "ImageDoneEvent",
    "ReasoningDeltaEvent",
    "RefusalDeltaEvent",
    "StreamEvent",
    "ToolCallArgumentsDeltaEvent",
    "ToolCallDoneEvent",
    "ToolResultEvent",
]


class _Event(msgspec.Struct, kw_only=True, frozen=True, tag_field="type"):
    choice_index: int = 0
    #: The event's type, as openai-python's events have it (``"content.delta"``, ...): a
    #: ``Literal`` per class, so ``event.type == "content.delta"`` narrows for a type checker.
    type: ClassVar[str]


class ContentDeltaEvent(ViewCopies, _Event, frozen=True, tag="content.delta", dict=True):
    """A piece of the answer's text.

    On a stream opened with a JSON ``response_format`` (a Struct, a Pydantic model, or a
    ``json_schema``/``json_object`` dict), ``snapshot`` and ``parsed`` give the answer so far;
    both are built when read (see the structured-output guide).
    """

    type: ClassVar[Literal["content.delta"]] = "content.delta"

    delta: str
    # The answer this delta belongs to, and how far it had come: what snapshot and parsed are
    # built from when read. An attribute, not a field: never encoded (None on a stream
    # without a JSON format).
    _view: ClassVar[PartialView | FrozenView | None] = None

    @property
    def snapshot(self) -> str | None:
        """The choice's text up to and including this delta; ``None`` on a stream opened
        without a JSON ``response_format``."""
        view = self._view
        return None if view is None else view.snapshot()

    @property
    def parsed(self) -> Any:
        """The answer so far as plain JSON values (``dict``, ``list``, ``str``, numbers,
        ``bool``, ``None``): complete keys and items, numbers and literals once complete, a
        string in progress as far as it has arrived. ``None`` before the JSON begins, and on a
        stream opened without a JSON ``response_format``.

        Read at the newest event it is the stream's live value, which later deltas keep
        growing in place (nothing it shows is taken back, a string only grows); read at an
        older event it is that event's own value. ``copy.deepcopy`` keeps a value as it was.

        :raises InvalidJSONError: the text up to this delta cannot become JSON.
        """
        view = self._view
        return None if view is None else view.answer.value(view.at)


class RefusalDeltaEvent(_Event, frozen=True, tag="refusal.delta"):
    """A piece of the model's refusal."""

    type: ClassVar[Literal["refusal.delta"]] = "refusal.delta"

    delta: str


class ReasoningDeltaEvent(_Event, frozen=True, tag="reasoning.delta"):
    """A piece of the model's reasoning text."""

    type: ClassVar[Literal["reasoning.delta"]] = "reasoning.delta"

    delta: str


class ToolCallArgumentsDeltaEvent(
    ViewCopies, _Event, frozen=True, tag="tool_call.arguments.delta", dict=True
):
    """A fragment of a tool call's JSON arguments.

    ``index`` is the call's index on the wire; ``id`` tells apart parallel calls that a
    server sent under one index.
    """

    type: ClassVar[Literal["tool_call.arguments.delta"]] = "tool_call.arguments.delta"

    index: int
    name: str
    arguments_delta: str
    id: str = ""
    # The call's arguments so far, for parsed_arguments (None: not followed); never encoded.
    _view: ClassVar[PartialView | FrozenView | None] = None

    @property
    def parsed_arguments(self) -> Any:
        """The call's arguments so far as plain JSON values, as ``ContentDeltaEvent.parsed``
        gives an answer (built when read; live at the newest event). ``None`` where the call
        was not followed from its first fragment (``events()`` began after it).

        :raises InvalidJSONError: the arguments so far cannot become JSON.
        """
        view = self._view
        return None if view is None else view.answer.value(view.at)


class ToolCallDoneEvent(_Event, frozen=True, tag="tool_call.done"):
    """A tool call is complete: ``tool_call.function.arguments`` holds the whole JSON text."""

    type: ClassVar[Literal["tool_call.done"]] = "tool_call.done"

    tool_call: ToolCall


class ImageDoneEvent(_Event, frozen=True, tag="image.done"):
    """An output image arrived whole."""

    type: ClassVar[Literal["image.done"]] = "image.done"

    image: ImageOutput


class ToolResultEvent(_Event, frozen=True, tag="tool.result"):
    """``run_tools_stream``: a tool ran; ``result`` is the text sent back to the model."""

    type: ClassVar[Literal["tool.result"]] = "tool.result"

    tool_call_id: str
    name: str
    result: str
    is_error: bool = False


class CompletionDoneEvent(_Event, frozen=True, tag="completion.done"):
    """The stream ended; ``completion`` is built from every delta seen."""

    type: ClassVar[Literal["completion.done"]] = "completion.done"

    completion: ChatCompletion


StreamEvent = (
    ContentDeltaEvent
    | RefusalDeltaEvent
    | ReasoningDeltaEvent
    | ToolCallArgumentsDeltaEvent
    | ToolCallDoneEvent
    | ImageDoneEvent
    | CompletionDoneEvent
)
"""Any event of ``ChatCompletionStream.events()``; ``event.type`` narrows it."""
