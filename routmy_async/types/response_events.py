"""Server-sent events of a streamed Responses API call, tagged by ``type``.

Each class is one event type of the stream (``event.type == "response.output_text.delta"``
narrows to :class:`ResponseTextDeltaEvent` for a type checker). An event of a type not
modelled here arrives as :class:`UnknownResponseEvent`: the JSON object as sent.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args

import msgspec

from .._partial_stream import FrozenView, PartialView, ViewCopies
from ._base import ResponseObject
from .responses import (
    Response,
    ResponseError,
    ResponseReasoningSummary,
    _OptionalAnnotation,
    _OptionalContentPart,
    _OptionalOutputItem,
    _Unknown,
    decode_annotation,
    decode_content_part,
    decode_optional,
    decode_output_item,
)

__all__ = [
    "ResponseCompletedEvent",
    "ResponseContentPartAddedEvent",
    "ResponseContentPartDoneEvent",
    "ResponseCreatedEvent",
    "ResponseErrorEvent",
    "ResponseFailedEvent",
    "ResponseFunctionCallArgumentsDeltaEvent",
    "ResponseFunctionCallArgumentsDoneEvent",
    "ResponseInProgressEvent",
    "ResponseIncompleteEvent",
    "ResponseOutputItemAddedEvent",
    "ResponseOutputItemDoneEvent",
    "ResponseOutputTextAnnotationAddedEvent",
    "ResponseQueuedEvent",
    "ResponseReasoningSummaryPartAddedEvent",
    "ResponseReasoningSummaryPartDoneEvent",
    "ResponseReasoningSummaryTextDeltaEvent",
    "ResponseReasoningSummaryTextDoneEvent",
    "ResponseReasoningTextDeltaEvent",
    "ResponseReasoningTextDoneEvent",
    "ResponseRefusalDeltaEvent",
    "ResponseRefusalDoneEvent",
    "ResponseStreamEvent",
    "ResponseTextDeltaEvent",
    "ResponseTextDoneEvent",
    "UnknownResponseEvent",
]


class _Event(ResponseObject, frozen=True, tag_field="type"):
    sequence_number: int = 0


# -- the response's life ------------------------------------------------------------------


class _Lifecycle(_Event, frozen=True):
    response: Response = msgspec.field(default_factory=Response)


class ResponseCreatedEvent(_Lifecycle, frozen=True, tag="response.created"):
    """The response exists (``status`` ``in_progress`` or ``queued``); the first event."""

    type: ClassVar[Literal["response.created"]] = "response.created"


class ResponseQueuedEvent(_Lifecycle, frozen=True, tag="response.queued"):
    """The response waits for capacity."""

    type: ClassVar[Literal["response.queued"]] = "response.queued"


class ResponseInProgressEvent(_Lifecycle, frozen=True, tag="response.in_progress"):
    """The model is working on the response."""

    type: ClassVar[Literal["response.in_progress"]] = "response.in_progress"


class ResponseCompletedEvent(_Lifecycle, frozen=True, tag="response.completed"):
    """The response is complete: a terminal event; ``response`` is the final object."""

    type: ClassVar[Literal["response.completed"]] = "response.completed"


class ResponseIncompleteEvent(_Lifecycle, frozen=True, tag="response.incomplete"):
    """The response ended early (``response.incomplete_details.reason``): terminal."""

    type: ClassVar[Literal["response.incomplete"]] = "response.incomplete"


class ResponseFailedEvent(_Lifecycle, frozen=True, tag="response.failed"):
    """The response failed (``response.error``): terminal; the stream raises
    ``APIStreamError`` instead of yielding it."""

    type: ClassVar[Literal["response.failed"]] = "response.failed"


class ResponseErrorEvent(_Event, frozen=True, tag="error"):
    """An error inside the stream; the stream raises ``APIStreamError`` instead of yielding it.

    ``code``/``message`` at the top level (OpenAI) or inside ``error`` (some routers).
    """

    type: ClassVar[Literal["error"]] = "error"
    code: int | str | None = None
    message: str = ""
    param: str | None = None
    error: ResponseError | None = None


# -- output items and content parts -------------------------------------------------------


class _ItemEvent(_Event, frozen=True):
    output_index: int = 0
    item: _OptionalOutputItem = None

    def __post_init__(self) -> None:
        if isinstance(self.item, msgspec.Raw):
            msgspec.structs.force_setattr(
                self, "item", decode_optional(self.item, decode_output_item)
            )


class ResponseOutputItemAddedEvent(_ItemEvent, frozen=True, tag="response.output_item.added"):
    """An output item starts at ``output_index``."""

    type: ClassVar[Literal["response.output_item.added"]] = "response.output_item.added"


class ResponseOutputItemDoneEvent(_ItemEvent, frozen=True, tag="response.output_item.done"):
    """An output item is complete: ``item`` is its final form."""

    type: ClassVar[Literal["response.output_item.done"]] = "response.output_item.done"


class _PartEvent(_Event, frozen=True):
    item_id: str = ""
    output_index: int = 0
    content_index: int = 0
    part: _OptionalContentPart = None

    def __post_init__(self) -> None:
        if isinstance(self.part, msgspec.Raw):
            msgspec.structs.force_setattr(
                self, "part", decode_optional(self.part, decode_content_part)
            )


class ResponseContentPartAddedEvent(_PartEvent, frozen=True, tag="response.content_part.added"):
    """A content part of a message starts at ``content_index``."""

    type: ClassVar[Literal["response.content_part.added"]] = "response.content_part.added"


class ResponseContentPartDoneEvent(_PartEvent, frozen=True, tag="response.content_part.done"):
    """A content part of a message is complete."""

    type: ClassVar[Literal["response.content_part.done"]] = "response.content_part.done"


class _ContentEvent(_Event, frozen=True):
    item_id: str = ""
    output_index: int = 0
    content_index: int = 0


class ResponseTextDeltaEvent(
    ViewCopies, _ContentEvent, frozen=True, tag="response.output_text.delta", gc=True, dict=True
):
    """A piece of a message's text.

    On a stream opened with a JSON ``text_format`` (a Struct, a Pydantic model, or a format
    dict), ``snapshot`` and ``parsed`` give the answer so far, as on a chat stream's
    :class:`~routmy_async.types.ContentDeltaEvent`; both are built when read.
    """

    type: ClassVar[Literal["response.output_text.delta"]] = "response.output_text.delta"
    delta: str = ""
    logprobs: list[dict[str, Any]] = []
    # Set by a stream with a JSON text_format: an attribute, not a field (never encoded).
    _view: ClassVar[PartialView | FrozenView | None] = None

    @property
    def snapshot(self) -> str | None:
        """The message's text up to and including this delta (its ``output_text`` parts
        joined, as ``output_parsed`` reads them); ``None`` on a stream opened without a JSON
        ``text_format``."""
        view = self._view
        return None if view is None else view.snapshot()

    @property
    def parsed(self) -> Any:
        """The answer so far as plain JSON values; ``None`` before the JSON begins and on a
        stream opened without a JSON ``text_format``. Live at the newest event, that event's
        own value at an older one (as ``ContentDeltaEvent.parsed``).

        :raises InvalidJSONError: the text up to this delta cannot become JSON.
        """
        view = self._view
        return None if view is None else view.answer.value(view.at)


class ResponseTextDoneEvent(_ContentEvent, frozen=True, tag="response.output_text.done"):
    """A text part is complete: ``text`` is all of it."""

    type: ClassVar[Literal["response.output_text.done"]] = "response.output_text.done"
    text: str = ""
    logprobs: list[dict[str, Any]] = []


class ResponseOutputTextAnnotationAddedEvent(
    _ContentEvent, frozen=True, tag="response.output_text.annotation.added"
):
    """An annotation (a citation) of a text part."""

    type: ClassVar[Literal["response.output_text.annotation.added"]] = (
        "response.output_text.annotation.added"
    )
    annotation_index: int = 0
    annotation: _OptionalAnnotation = None

    def __post_init__(self) -> None:
        if isinstance(self.annotation, msgspec.Raw):
            msgspec.structs.force_setattr(
                self, "annotation", decode_optional(self.annotation, decode_annotation)
            )


class ResponseRefusalDeltaEvent(_ContentEvent, frozen=True, tag="response.refusal.delta"):
    """A piece of the model's refusal."""

    type: ClassVar[Literal["response.refusal.delta"]] = "response.refusal.delta"
    delta: str = ""


class ResponseRefusalDoneEvent(_ContentEvent, frozen=True, tag="response.refusal.done"):
    """A refusal is complete."""

    type: ClassVar[Literal["response.refusal.done"]] = "response.refusal.done"
    refusal: str = ""


# -- function calls and reasoning ---------------------------------------------------------


class ResponseFunctionCallArgumentsDeltaEvent(
    ViewCopies,
    _Event,
    frozen=True,
    tag="response.function_call_arguments.delta",
    gc=True,
    dict=True,
):
    """A fragment of a function call's JSON arguments (``item_id`` names the call item)."""

    type: ClassVar[Literal["response.function_call_arguments.delta"]] = (
        "response.function_call_arguments.delta"
    )
    item_id: str = ""
    output_index: int = 0
    delta: str = ""
    # Set by the stream as the delta is taken in: an attribute, not a field (never encoded).
    _view: ClassVar[PartialView | FrozenView | None] = None

    @property
    def parsed_arguments(self) -> Any:
        """The call's arguments so far as plain JSON values (built when read; live at the
        newest event, as ``ContentDeltaEvent.parsed``); ``None`` for an event not read
        from a stream.

        :raises InvalidJSONError: the arguments so far cannot become JSON.
        """
        view = self._view
        return None if view is None else view.answer.value(view.at)


class ResponseFunctionCallArgumentsDoneEvent(
    _Event, frozen=True, tag="response.function_call_arguments.done"
):
    """A function call's arguments are complete."""

    type: ClassVar[Literal["response.function_call_arguments.done"]] = (
        "response.function_call_arguments.done"
    )
    item_id: str = ""
    output_index: int = 0
    arguments: str = ""
    name: str | None = None


class _SummaryEvent(_Event, frozen=True):
    item_id: str = ""
    output_index: int = 0
    summary_index: int = 0


class ResponseReasoningSummaryPartAddedEvent(
    _SummaryEvent, frozen=True, tag="response.reasoning_summary_part.added"
):
    """A reasoning summary part starts."""

    type: ClassVar[Literal["response.reasoning_summary_part.added"]] = (
        "response.reasoning_summary_part.added"
    )
    part: ResponseReasoningSummary | None = None


class ResponseReasoningSummaryPartDoneEvent(
    _SummaryEvent, frozen=True, tag="response.reasoning_summary_part.done"
):
    """A reasoning summary part is complete."""

    type: ClassVar[Literal["response.reasoning_summary_part.done"]] = (
        "response.reasoning_summary_part.done"
    )
    part: ResponseReasoningSummary | None = None


class ResponseReasoningSummaryTextDeltaEvent(
    _SummaryEvent, frozen=True, tag="response.reasoning_summary_text.delta"
):
    """A piece of a reasoning summary."""

    type: ClassVar[Literal["response.reasoning_summary_text.delta"]] = (
        "response.reasoning_summary_text.delta"
    )
    delta: str = ""


class ResponseReasoningSummaryTextDoneEvent(
    _SummaryEvent, frozen=True, tag="response.reasoning_summary_text.done"
):
    """A reasoning summary part's text is complete."""

    type: ClassVar[Literal["response.reasoning_summary_text.done"]] = (
        "response.reasoning_summary_text.done"
    )
    text: str = ""


class ResponseReasoningTextDeltaEvent(
    _ContentEvent, frozen=True, tag="response.reasoning_text.delta"
):
    """A piece of the reasoning text (from models that show it)."""

    type: ClassVar[Literal["response.reasoning_text.delta"]] = "response.reasoning_text.delta"
    delta: str = ""


class ResponseReasoningTextDoneEvent(
    _ContentEvent, frozen=True, tag="response.reasoning_text.done"
):
    """A reasoning text part is complete."""

    type: ClassVar[Literal["response.reasoning_text.done"]] = "response.reasoning_text.done"
    text: str = ""


# Declared as the event names the API documents that this module does not model, so that
# ``if event.type == "response.output_text.delta":`` narrows for a type checker (see
# ``_OtherItemType`` in ``responses``); a newer type still arrives, its name in ``type``.
_OtherEventType = Literal[
    "response.audio.delta",
    "response.audio.done",
    "response.audio.transcript.delta",
    "response.audio.transcript.done",
    "response.code_interpreter_call.completed",
    "response.code_interpreter_call.in_progress",
    "response.code_interpreter_call.interpreting",
    "response.code_interpreter_call_code.delta",
    "response.code_interpreter_call_code.done",
    "response.compaction.compacting",
    "response.custom_tool_call_input.delta",
    "response.custom_tool_call_input.done",
    "response.file_search_call.completed",
    "response.file_search_call.in_progress",
    "response.file_search_call.searching",
    "response.image_generation_call.completed",
    "response.image_generation_call.generating",
    "response.image_generation_call.in_progress",
    "response.image_generation_call.partial_image",
    "response.mcp_call.completed",
    "response.mcp_call.failed",
    "response.mcp_call.in_progress",
    "response.mcp_call_arguments.delta",
    "response.mcp_call_arguments.done",
    "response.mcp_list_tools.completed",
    "response.mcp_list_tools.failed",
    "response.mcp_list_tools.in_progress",
    "response.web_search_call.completed",
    "response.web_search_call.in_progress",
    "response.web_search_call.searching",
]


class UnknownResponseEvent(_Unknown):
    """An event of a type not modelled here (``response.web_search_call.searching``, ...),
    passed through as the JSON object it was; ``event.type`` and its fields still read as
    attributes."""

    __slots__ = ()

    @property
    def type(self) -> _OtherEventType:
        """The event's ``type`` as sent."""
        return super().type  # type: ignore[return-value]


KnownResponseEvent = (
    ResponseCreatedEvent
    | ResponseQueuedEvent
    | ResponseInProgressEvent
    | ResponseCompletedEvent
    | ResponseIncompleteEvent
    | ResponseFailedEvent
    | ResponseErrorEvent
    | ResponseOutputItemAddedEvent
    | ResponseOutputItemDoneEvent
    | ResponseContentPartAddedEvent
    | ResponseContentPartDoneEvent
    | ResponseTextDeltaEvent
    | ResponseTextDoneEvent
    | ResponseOutputTextAnnotationAddedEvent
    | ResponseRefusalDeltaEvent
    | ResponseRefusalDoneEvent
    | ResponseFunctionCallArgumentsDeltaEvent
    | ResponseFunctionCallArgumentsDoneEvent
    | ResponseReasoningSummaryPartAddedEvent
    | ResponseReasoningSummaryPartDoneEvent
    | ResponseReasoningSummaryTextDeltaEvent
    | ResponseReasoningSummaryTextDoneEvent
    | ResponseReasoningTextDeltaEvent
    | ResponseReasoningTextDoneEvent
)

ResponseStreamEvent = KnownResponseEvent | UnknownResponseEvent
"""An event of a Responses stream: one of the typed events, or an unknown one passed through."""

KNOWN_EVENT_TYPES = frozenset(
    member.__struct_config__.tag for member in get_args(KnownResponseEvent)
)
