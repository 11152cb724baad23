"""Responses API types: the ``Response`` object and its output items.

``output`` is a union of items tagged by ``type``: ``message`` (with ``output_text`` and
``refusal`` parts, and typed annotations), ``function_call`` and ``reasoning``. Item types this
module does not model (``web_search_call``, ``image_generation_call``, types added tomorrow) are
kept as :class:`UnknownOutputItem`: the JSON object itself (a ``dict``), readable as attributes
(``item.type``, ``item.id``) and sent back unchanged when it goes into a later ``input``. Content
parts and annotations of unknown types are kept the same way.

Tagged lists are decoded in two steps: msgspec keeps each element as ``msgspec.Raw`` (raw JSON
bytes, no work), then ``__post_init__`` decodes every element with a typed decoder of the known
types and falls back to the unknown class, since a msgspec tagged union has no catch-all. A
known type whose fields have the wrong shape is still a validation error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import msgspec

from ._base import (
    ResponseObject,
    TopLevelResponse,
    decode_lenient,
    output_parsed_of,
    transcript_of,
)

__all__ = [
    "AnnotationContainerFileCitation",
    "AnnotationFileCitation",
    "AnnotationFilePath",
    "AnnotationURLCitation",
    "Response",
    "ResponseAnnotation",
    "ResponseError",
    "ResponseFunctionToolCall",
    "ResponseIncompleteDetails",
    "ResponseInputTokensDetails",
    "ResponseOutputContent",
    "ResponseOutputItem",
    "ResponseOutputMessage",
    "ResponseOutputRefusal",
    "ResponseOutputText",
    "ResponseOutputTokensDetails",
    "ResponseReasoningContent",
    "ResponseReasoningItem",
    "ResponseReasoningSummary",
    "ResponseUsage",
    "UnknownAnnotation",
    "UnknownContentPart",
    "UnknownOutputItem",
]


# -- objects of types we do not model -----------------------------------------------------


class _Unknown(dict[str, Any]):
    """A JSON object of a type this SDK does not model: the object as sent, nothing dropped.

    Its keys read as attributes (``item.id``); ``to_param()`` gives it back unchanged.
    """

    __slots__ = ()

    @property
    def type(self) -> str:
        """The object's ``type`` as sent (``""`` when it had none)."""
        value = self.get("type")
        return value if isinstance(value, str) else ""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"{type(self).__name__} of type {self.type!r} has no field {name!r}"
            ) from None

    def to_param(self) -> dict[str, Any]:
        """The object as sent, for a later request's ``input``."""
        return dict(self)

    def to_dict(self) -> dict[str, Any]:
        """The object as plain JSON values."""
        return dict(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict.__repr__(self)})"


# The ``type`` of an unknown object is declared as the names the API documents that these
# types do not model, so that every member of a union has a literal ``type`` and
# ``if item.type == "message":`` narrows for a type checker, as with openai-python. A type
# newer than these lists still arrives whole, its name in ``type``.
_OtherItemType = Literal[
    "apply_patch_call",
    "apply_patch_call_output",
    "code_interpreter_call",
    "compaction",
    "computer_call",
    "computer_call_output",
    "custom_tool_call",
    "custom_tool_call_output",
    "file_search_call",
    "function_call_output",
    "image_generation_call",
    "local_shell_call",
    "local_shell_call_output",
    "mcp_approval_request",
    "mcp_approval_response",
    "mcp_call",
    "mcp_list_tools",
    "shell_call",
    "shell_call_output",
    "tool_search_call",
    "tool_search_output",
    "web_search_call",
]
_OtherPartType = Literal[
    "reasoning_text", "output_audio", "input_text", "input_image", "input_file"
]
_OtherAnnotationType = Literal["file"]


class UnknownOutputItem(_Unknown):
    """An output item of a type not modelled here (``web_search_call``, ...), kept whole."""

    __slots__ = ()

    @property
    def type(self) -> _OtherItemType:
        """The item's ``type`` as sent."""
        return super().type  # type: ignore[return-value]


class UnknownContentPart(_Unknown):
    """A message content part of a type not modelled here, kept whole."""

    __slots__ = ()

    @property
    def type(self) -> _OtherPartType:
        """The part's ``type`` as sent."""
        return super().type  # type: ignore[return-value]


class UnknownAnnotation(_Unknown):
    """An ``output_text`` annotation of a type not modelled here, kept whole."""

    __slots__ = ()

    @property
    def type(self) -> _OtherAnnotationType:
        """The annotation's ``type`` as sent."""
        return super().type  # type: ignore[return-value]


def _tagged_decoder(
    known: Any, unknown: type[_Unknown], names: frozenset[str]
) -> Callable[[Any], Any]:
    """Return a function turning one raw element into its typed object (or ``unknown``).

    The typed decoder is built on first use: building it resolves the annotations of every
    class of the union, which ``import routmy_async`` should not pay for.
    """
    decoders: list[Callable[[Any], Any]] = []

    def element(value: Any) -> Any:
        if not decoders:
            decoders.append(msgspec.json.Decoder(known).decode)
        decode = decoders[0]
        if type(value) is not msgspec.Raw:
            if isinstance(value, (msgspec.Struct, _Unknown)) or not isinstance(value, Mapping):
                return value
            # A dict given by hand (``Response(output=[{...}])``): decoded like the wire's.
            value = msgspec.Raw(msgspec.json.encode(dict(value)))
        try:
            return decode(value)
        except msgspec.ValidationError as exc:
            try:
                return decode_lenient(decode, value, exc)
            except msgspec.ValidationError:
                pass
            data = msgspec.json.decode(value)
            if not isinstance(data, dict) or data.get("type") in names:
                # Not an object, or a type we model with fields of the wrong shape: a bad
                # answer, not a new kind of object.
                raise
        return unknown(data)

    return element


def _decode_list(values: list[Any], element: Callable[[Any], Any]) -> list[Any] | None:
    """The decoded list, or ``None`` when every element already is an object."""
    for value in values:
        if type(value) is msgspec.Raw or (
            isinstance(value, Mapping) and not isinstance(value, _Unknown)
        ):
            return [element(item) for item in values]
    return None


# -- annotations and content parts --------------------------------------------------------


class _Tagged(ResponseObject, frozen=True, tag_field="type"):
    """An object of a tagged union (its ``type`` is the class's tag)."""

    def to_param(self) -> dict[str, Any]:
        """The object as a later request's ``input`` takes it back (every field, and ``type``)."""
        return {"type": type(self).__struct_config__.tag, **msgspec.structs.asdict(self)}


class AnnotationURLCitation(_Tagged, frozen=True, tag="url_citation"):
    """A cited web page: ``text[start_index:end_index]`` refers to ``url``."""

    type: ClassVar[Literal["url_citation"]] = "url_citation"
    url: str = ""
    title: str = ""
    start_index: int = 0
    end_index: int = 0


class AnnotationFileCitation(_Tagged, frozen=True, tag="file_citation"):
    """A cited file."""

    type: ClassVar[Literal["file_citation"]] = "file_citation"
    file_id: str = ""
    filename: str = ""
    index: int = 0


class AnnotationContainerFileCitation(_Tagged, frozen=True, tag="container_file_citation"):
    """A cited file of a container."""

    type: ClassVar[Literal["container_file_citation"]] = "container_file_citation"
    container_id: str = ""
    file_id: str = ""
    filename: str = ""
    start_index: int = 0
    end_index: int = 0


class AnnotationFilePath(_Tagged, frozen=True, tag="file_path"):
    """A path to a generated file."""

    type: ClassVar[Literal["file_path"]] = "file_path"
    file_id: str = ""
    index: int = 0


_KnownAnnotation = (
    AnnotationURLCitation
    | AnnotationFileCitation
    | AnnotationContainerFileCitation
    | AnnotationFilePath
)
ResponseAnnotation = _KnownAnnotation | UnknownAnnotation
"""An annotation of ``output_text``: a citation, a file path, or one of another type."""

decode_annotation = _tagged_decoder(
    _KnownAnnotation,
    UnknownAnnotation,
    frozenset({"url_citation", "file_citation", "container_file_citation", "file_path"}),
)

if TYPE_CHECKING:
    _Annotations = list[ResponseAnnotation]
else:
    _Annotations = list[msgspec.Raw]


class ResponseOutputText(_Tagged, frozen=True, tag="output_text"):
    """Text the model wrote, with its annotations (citations) and, if asked, logprobs."""

    type: ClassVar[Literal["output_text"]] = "output_text"
    text: str = ""
    annotations: _Annotations = []
    logprobs: list[dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        if self.annotations:
            decoded = _decode_list(self.annotations, decode_annotation)
            if decoded is not None:
                msgspec.structs.force_setattr(self, "annotations", decoded)

    def to_param(self) -> dict[str, Any]:
        """The part as an assistant message's content in a later ``input``."""
        return {
            "type": "output_text",
            "text": self.text,
            "annotations": [annotation.to_param() for annotation in self.annotations],
        }


class ResponseOutputRefusal(_Tagged, frozen=True, tag="refusal"):
    """The model's refusal to answer."""

    type: ClassVar[Literal["refusal"]] = "refusal"
    refusal: str = ""


_KnownContent = ResponseOutputText | ResponseOutputRefusal
ResponseOutputContent = _KnownContent | UnknownContentPart
"""A part of an output message: text, a refusal, or a part of another type."""

decode_content_part = _tagged_decoder(
    _KnownContent, UnknownContentPart, frozenset({"output_text", "refusal"})
)

if TYPE_CHECKING:
    _ContentParts = list[ResponseOutputContent]
else:
    _ContentParts = list[msgspec.Raw]


# -- output items -------------------------------------------------------------------------


class ResponseOutputMessage(_Tagged, frozen=True, tag="message"):
    """An assistant message: ``content`` holds ``output_text`` and ``refusal`` parts."""

    type: ClassVar[Literal["message"]] = "message"
    id: str = ""
    role: str = "assistant"
    status: str | None = None
    content: _ContentParts = []
    phase: str | None = None

    def __post_init__(self) -> None:
        if self.content:
            decoded = _decode_list(self.content, decode_content_part)
            if decoded is not None:
                msgspec.structs.force_setattr(self, "content", decoded)

    @property
    def text(self) -> str:
        """The message's ``output_text`` parts, joined."""
        return "".join(part.text for part in self.content if isinstance(part, ResponseOutputText))

    def to_param(self) -> dict[str, Any]:
        """The message as a later request's ``input`` item.

        An output message goes back with its ``id`` and ``status`` (the API requires both);
        one without an ``id`` (some routers omit it) goes back as a plain assistant message.
        """
        if not self.id:
            return {"role": self.role or "assistant", "content": self.text}
        param: dict[str, Any] = {
            "type": "message",
            "id": self.id,
            "role": self.role or "assistant",
            "status": self.status or "completed",
            "content": [part.to_param() for part in self.content],
        }
        if self.phase is not None:
            param["phase"] = self.phase
        return param


class ResponseFunctionToolCall(_Tagged, frozen=True, tag="function_call"):
    """A call of a function tool: ``arguments`` is the JSON text the model wrote.

    Answer it with a ``{"type": "function_call_output", "call_id": ..., "output": ...}`` item.
    """

    type: ClassVar[Literal["function_call"]] = "function_call"
    id: str | None = None
    call_id: str = ""
    name: str = ""
    arguments: str = ""
    status: str | None = None
    namespace: str | None = None

    def to_param(self) -> dict[str, Any]:
        """The call as a later request's ``input`` item."""
        param: dict[str, Any] = {
            "type": "function_call",
            "call_id": self.call_id,
            "name": self.name,
            "arguments": self.arguments,
        }
        if self.id:
            param["id"] = self.id
        if self.status is not None:
            param["status"] = self.status
        if self.namespace is not None:
            param["namespace"] = self.namespace
        return param


class ResponseReasoningSummary(ResponseObject, frozen=True):
    """A part of a reasoning summary."""

    type: str = "summary_text"
    text: str = ""


class ResponseReasoningContent(ResponseObject, frozen=True):
    """A part of the reasoning text itself (from models that show it)."""

    type: str = "reasoning_text"
    text: str = ""


class ResponseReasoningItem(_Tagged, frozen=True, tag="reasoning"):
    """The model's reasoning: summaries, maybe its text, and ``encrypted_content``.

    Send it back unchanged in a later ``input`` (``store=False`` conversations need the
    ``encrypted_content``); ``to_param()`` does.
    """

    type: ClassVar[Literal["reasoning"]] = "reasoning"
    id: str = ""
    summary: list[ResponseReasoningSummary] = []
    content: list[ResponseReasoningContent] | None = None
    encrypted_content: str | None = None
    status: str | None = None

    @property
    def summary_text(self) -> str:
        """The summary parts, joined by blank lines."""
        return "\n\n".join(part.text for part in self.summary)

    def to_param(self) -> dict[str, Any]:
        """The item as a later request's ``input`` item (``summary`` always present)."""
        param: dict[str, Any] = {
            "type": "reasoning",
            "id": self.id,
            "summary": [{"type": part.type, "text": part.text} for part in self.summary],
        }
        if self.content is not None:
            param["content"] = [{"type": part.type, "text": part.text} for part in self.content]
        if self.encrypted_content is not None:
            param["encrypted_content"] = self.encrypted_content
        if self.status is not None:
            param["status"] = self.status
        return param


_KnownItem = ResponseOutputMessage | ResponseFunctionToolCall | ResponseReasoningItem
ResponseOutputItem = _KnownItem | UnknownOutputItem
"""An item of ``Response.output``: a message, a function call, reasoning, or another type."""

decode_output_item = _tagged_decoder(
    _KnownItem, UnknownOutputItem, frozenset({"message", "function_call", "reasoning"})
)

if TYPE_CHECKING:
    _OutputItems = list[ResponseOutputItem]
    _OptionalOutputItem = ResponseOutputItem | None
    _OptionalContentPart = ResponseOutputContent | None
    _OptionalAnnotation = ResponseAnnotation | None
else:
    _OutputItems = list[msgspec.Raw]
    # msgspec takes no Raw inside a union: a missing field stays None, a JSON null is a Raw
    # that ``decode_optional`` turns into None.
    _OptionalOutputItem = msgspec.Raw
    _OptionalContentPart = msgspec.Raw
    _OptionalAnnotation = msgspec.Raw


def decode_optional(value: Any, element: Callable[[Any], Any]) -> Any:
    """One tagged element of an event (``item``, ``part``, ``annotation``): ``None`` for null."""
    if type(value) is msgspec.Raw and bytes(value).strip() == b"null":
        return None
    return element(value)


# -- usage, errors, the response ----------------------------------------------------------


class ResponseInputTokensDetails(ResponseObject, frozen=True):
    """Breakdown of the input tokens."""

    cached_tokens: int | None = None
    cache_write_tokens: int | None = None


class ResponseOutputTokensDetails(ResponseObject, frozen=True):
    """Breakdown of the output tokens."""

    reasoning_tokens: int | None = None


class ResponseUsage(ResponseObject, frozen=True):
    """Token counts of a response (and, where the router reports it, the ``cost``)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: ResponseInputTokensDetails | None = None
    output_tokens_details: ResponseOutputTokensDetails | None = None
    cost: float | None = None
    cost_details: dict[str, Any] | None = None
    is_byok: bool | None = None


class ResponseError(ResponseObject, frozen=True):
    """Why a response failed (``status == "failed"``)."""

    code: int | str | None = None
    message: str = ""
    type: str | None = None
    param: str | None = None
    metadata: Any = None


class ResponseIncompleteDetails(ResponseObject, frozen=True):
    """Why a response is incomplete (``max_output_tokens``, ``content_filter``, ...)."""

    reason: str | None = None


class Response(TopLevelResponse, frozen=True):
    """A model response (``object: "response"``) of the Responses API.

    ``output_text`` joins the text of every message; ``output_parsed`` holds the object
    ``responses.parse(text_format=...)`` decoded; ``transcript`` holds the input items of a
    ``run_tools`` run. Fields the Struct does not declare are attributes all the same, and
    ``.raw`` has everything the server sent.
    """

    id: str = ""
    object: str = "response"
    created_at: float = 0.0
    status: str | None = None
    model: str = ""
    output: _OutputItems = []
    usage: ResponseUsage | None = None
    error: ResponseError | None = None
    incomplete_details: ResponseIncompleteDetails | None = None
    instructions: str | list[Any] | None = None
    metadata: dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    tool_choice: str | dict[str, Any] | None = None
    tools: list[dict[str, Any]] = []
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    previous_response_id: str | None = None
    reasoning: dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    store: bool | None = None
    background: bool | None = None
    service_tier: str | None = None
    truncation: str | None = None
    top_logprobs: int | None = None
    user: str | None = None
    completed_at: float | None = None
    provider: str | None = None

    def __post_init__(self) -> None:
        if self.output:
            decoded = _decode_list(self.output, decode_output_item)
            if decoded is not None:
                msgspec.structs.force_setattr(self, "output", decoded)

    @property
    def output_text(self) -> str:
        """The text of every ``output_text`` part of every message, joined."""
        return "".join(
            part.text
            for item in self.output
            if isinstance(item, ResponseOutputMessage)
            for part in item.content
            if isinstance(part, ResponseOutputText)
        )

    @property
    def output_parsed(self) -> Any:
        """After ``responses.parse(text_format=T)``: the answer decoded into a ``T``, from the
        text of the last message (all of ``output_text`` when there is one message)."""
        return output_parsed_of(self)

    @property
    def function_calls(self) -> list[ResponseFunctionToolCall]:
        """The ``function_call`` items of ``output``, in order."""
        return [item for item in self.output if isinstance(item, ResponseFunctionToolCall)]

    @property
    def transcript(self) -> list[Any] | None:
        """After ``run_tools``: every input item of the run, tool outputs included."""
        return transcript_of(self)
