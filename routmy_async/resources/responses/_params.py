"""Request parameters of the Responses API: their types for the editor, their checks.

``ResponseCreateParams`` is written once and shared by ``create``, ``stream`` and ``parse``
through ``Unpack``. At run time any other keyword is accepted too and sent as given (the
router passes unknown fields upstream).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import msgspec

from ..._checks import (
    FieldCheck,
    field_checker,
    is_boolean,
    is_integer,
    is_mapping,
    is_string,
    is_strings,
)
from ..._params import CHAT_CHECKS, RequestOptions
from ...types._base import ResponseObject
from ...types.responses import _Unknown

if TYPE_CHECKING:
    # For the type checker only: Pydantic is never imported to build a request.
    from pydantic import BaseModel

    from ..._tools import FunctionTool

__all__ = [
    "FunctionToolParam",
    "InputItemParam",
    "ReasoningParam",
    "ResponseCreateParams",
    "ResponseInput",
    "ResponseSamplingParams",
    "TextConfigParam",
    "check_input",
    "check_response_params",
]


class InputTextParam(TypedDict, total=False):
    """``{"type": "input_text", "text": ...}``: text inside an input message."""

    type: Literal["input_text"]
    text: str


class InputImageParam(TypedDict, total=False):
    """``{"type": "input_image", "image_url": ..., "detail": ...}``: an image inside an input
    message (a URL or a ``data:`` URL)."""

    type: Literal["input_image"]
    image_url: str
    file_id: str
    detail: Literal["low", "high", "auto"]


class EasyInputMessageParam(TypedDict, total=False):
    """A message: ``role`` and ``content`` (a string, or text and image parts)."""

    type: Literal["message"]
    role: Literal["user", "assistant", "system", "developer"]
    content: str | Sequence[InputTextParam | InputImageParam | Mapping[str, Any]]


class FunctionCallOutputParam(TypedDict, total=False):
    """The result of a ``function_call``, sent back under its ``call_id``."""

    type: Literal["function_call_output"]
    call_id: str
    output: str


InputItemParam = (
    EasyInputMessageParam | FunctionCallOutputParam | Mapping[str, Any] | ResponseObject
)
"""An input item: a message, a ``function_call_output``, any other item as a dict, or an
output item of an earlier response (sent as ``item.to_param()``)."""

ResponseInput = str | Iterable[InputItemParam]
"""``input``: a string (one user message) or a list of items."""


class FunctionToolParam(TypedDict, total=False):
    """A function tool in the Responses API's flat shape."""

    type: Literal["function"]
    name: str
    description: str
    parameters: Mapping[str, Any]
    strict: bool


class TextConfigParam(TypedDict, total=False):
    """``text``: the output ``format`` (``{"type": "json_schema", "name", "schema",
    "strict"}``, ``{"type": "json_object"}``, ``{"type": "text"}``) and ``verbosity``."""

    format: Mapping[str, Any]
    verbosity: Literal["low", "medium", "high"]


class ReasoningParam(TypedDict, total=False):
    """``reasoning``: ``effort`` and ``summary``."""

    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"]
    summary: Literal["auto", "concise", "detailed"]


class ResponseSamplingParams(RequestOptions, total=False):
    """The optional fields every Responses call takes (all but ``tools``)."""

    instructions: str | None
    tool_choice: Literal["auto", "none", "required"] | Mapping[str, Any]
    text: TextConfigParam | Mapping[str, Any]
    reasoning: ReasoningParam | Mapping[str, Any]
    max_output_tokens: int
    max_tool_calls: int
    previous_response_id: str
    store: bool
    metadata: Mapping[str, str]
    temperature: float
    top_p: float
    top_logprobs: int
    parallel_tool_calls: bool
    include: Sequence[str]
    truncation: Literal["auto", "disabled"]
    user: str
    safety_identifier: str
    service_tier: str
    background: bool
    prompt: Mapping[str, Any]
    prompt_cache_key: str
    conversation: str | Mapping[str, Any]
    stream_options: Mapping[str, Any]
    models: Sequence[str]
    provider: Mapping[str, Any]
    plugins: Sequence[Mapping[str, Any]]


class ResponseCreateParams(ResponseSamplingParams, total=False):
    """Every optional field of ``responses.create``."""

    tools: Sequence[
        FunctionToolParam
        | Mapping[str, Any]
        | Callable[..., Any]
        | type[msgspec.Struct]
        | type[BaseModel]
        | FunctionTool
    ]


def _instructions(value: Any) -> bool:
    return value is None or isinstance(value, (str, list))


def _conversation(value: Any) -> bool:
    return isinstance(value, (str, Mapping))


RESPONSES_CHECKS: dict[str, FieldCheck] = {
    **CHAT_CHECKS,  # the fields Responses shares with Chat Completions
    "instructions": FieldCheck(_instructions, "a string"),
    "text": FieldCheck(is_mapping, "a dict such as {'format': {...}}"),
    "previous_response_id": FieldCheck(is_string, "a string (a response id)"),
    "include": FieldCheck(is_strings, "a list of strings"),
    "truncation": FieldCheck(is_string, "'auto' or 'disabled'"),
    "max_tool_calls": FieldCheck(is_integer, "an int", 0),
    "background": FieldCheck(is_boolean, "a bool"),
    "prompt": FieldCheck(is_mapping, "a dict"),
    "prompt_cache_key": FieldCheck(is_string, "a string"),
    "safety_identifier": FieldCheck(is_string, "a string"),
    "conversation": FieldCheck(_conversation, "a string or a dict"),
}


check_response_params = field_checker(RESPONSES_CHECKS)
"""Type-check the known optional fields of a Responses request; unknown ones pass through."""


def check_input(value: Any) -> str | list[Any]:
    """Check ``input`` and return it as sent: output items of a response become
    ``item.to_param()``.

    :raises TypeError: not a string or a list of items, or an item is not a dict or an item.
    :raises ValueError: the list is empty, or a dict item has neither ``type`` nor ``role``.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, Mapping)) or not isinstance(value, Iterable):
        raise TypeError(
            "input must be a string or a list of input items such as "
            f"[{{'role': 'user', 'content': '...'}}], not {type(value).__name__}"
        )
    items = list(value)
    if not items:
        raise ValueError("input must not be an empty list")
    for position, item in enumerate(items):
        if isinstance(item, _Unknown):
            items[position] = item.to_param()
        elif isinstance(item, Mapping):
            if not isinstance(item.get("type"), str) and not isinstance(item.get("role"), str):
                raise ValueError(
                    f"input[{position}] has neither 'type' nor 'role': an input item is a "
                    "message ({'role': ..., 'content': ...}) or a typed item ({'type': ...})"
                )
        elif isinstance(item, ResponseObject) and hasattr(item, "to_param"):
            items[position] = item.to_param()
        else:
            raise TypeError(
                f"input[{position}] must be a dict or an output item of a response, not "
                f"{type(item).__name__}"
            )
    return items
