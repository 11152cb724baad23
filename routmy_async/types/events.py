"""Typed events of ``ChatCompletionStream.events()``, tagged by ``type``."""

from __future__ import annotations

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

    @property
    def type(self) -> str:
        """The event's type, as openai-python's events have it (``"content.delta"``, ...)."""
        tag: str = self.__struct_config__.tag  # type: ignore[assignment]
        return tag


class ContentDeltaEvent(_Event, frozen=True, tag="content.delta"):
    """A piece of the answer's text."""

    delta: str


class RefusalDeltaEvent(_Event, frozen=True, tag="refusal.delta"):
    """A piece of the model's refusal."""

    delta: str


class ReasoningDeltaEvent(_Event, frozen=True, tag="reasoning.delta"):
    """A piece of the model's reasoning text."""

    delta: str


class ToolCallArgumentsDeltaEvent(_Event, frozen=True, tag="tool_call.arguments.delta"):
    """A fragment of a tool call's JSON arguments.

    ``index`` is the call's index on the wire; ``id`` tells apart parallel calls that a
    server sent under one index.
    """

    index: int
    name: str
    arguments_delta: str
    id: str = ""


class ToolCallDoneEvent(_Event, frozen=True, tag="tool_call.done"):
    """A tool call is complete: ``tool_call.function.arguments`` holds the whole JSON text."""

    tool_call: ToolCall


class ImageDoneEvent(_Event, frozen=True, tag="image.done"):
    """An output image arrived whole."""

    image: ImageOutput


class ToolResultEvent(_Event, frozen=True, tag="tool.result"):
    """``run_tools_stream``: a tool ran; ``result`` is the text sent back to the model."""

    tool_call_id: str
    name: str
    result: str
    is_error: bool = False


class CompletionDoneEvent(_Event, frozen=True, tag="completion.done"):
    """The stream ended; ``completion`` is built from every delta seen."""

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
