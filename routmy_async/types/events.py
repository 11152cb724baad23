"""Typed events of ``ChatCompletionStream.events()``, tagged by ``type``."""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

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


class ContentDeltaEvent(_Event, frozen=True, tag="content.delta"):
    """A piece of the answer's text."""

    type: ClassVar[Literal["content.delta"]] = "content.delta"

    delta: str


class RefusalDeltaEvent(_Event, frozen=True, tag="refusal.delta"):
    """A piece of the model's refusal."""

    type: ClassVar[Literal["refusal.delta"]] = "refusal.delta"

    delta: str


class ReasoningDeltaEvent(_Event, frozen=True, tag="reasoning.delta"):
    """A piece of the model's reasoning text."""

    type: ClassVar[Literal["reasoning.delta"]] = "reasoning.delta"

    delta: str


class ToolCallArgumentsDeltaEvent(_Event, frozen=True, tag="tool_call.arguments.delta"):
    """A fragment of a tool call's JSON arguments.

    ``index`` is the call's index on the wire; ``id`` tells apart parallel calls that a
    server sent under one index.
    """

    type: ClassVar[Literal["tool_call.arguments.delta"]] = "tool_call.arguments.delta"

    index: int
    name: str
    arguments_delta: str
    id: str = ""


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
