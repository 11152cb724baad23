"""Request parameters: their types for the editor, and their checks before anything is sent.

``ChatCompletionParams`` is written once and shared by ``create``, ``stream`` and ``parse``
through ``Unpack``. At run time any other keyword is accepted too and sent as given, because
the router passes unknown fields upstream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import msgspec

from ._checks import (
    FieldCheck,
    field_checker,
    is_boolean,
    is_integer,
    is_mapping,
    is_mappings,
    is_number,
    is_string,
    is_string_map,
    is_strings,
)
from ._config import Timeout
from .types._base import ResponseObject

if TYPE_CHECKING:
    # For the type checker only: Pydantic is never imported to build a request.
    from pydantic import BaseModel

    from ._tools import FunctionTool

__all__ = [
    "CHAT_CHECKS",
    "ChatCompletionParams",
    "FormatParams",
    "MessageParam",
    "RequestOptions",
    "SamplingParams",
    "ToolsParams",
    "build_body",
    "check_messages",
    "check_model",
    "split_options",
]

MessageParam = Mapping[str, Any] | ResponseObject
"""A message: a dict with ``role`` and ``content``, or an assistant message from a response."""


class RequestOptions(TypedDict, total=False):
    """Per-call options: never sent in the body."""

    extra_headers: Mapping[str, str] | None
    extra_query: Mapping[str, str] | None
    extra_body: Mapping[str, Any] | None
    timeout: float | Timeout | None
    max_retries: int


class SamplingParams(RequestOptions, total=False):
    """The optional request fields shared by every chat call (all but tools/response_format)."""

    temperature: float
    top_p: float
    top_k: int
    min_p: float
    top_a: float
    max_tokens: int
    max_output_tokens: int
    max_completion_tokens: int
    stop: str | Sequence[str] | None
    tool_choice: Literal["auto", "none", "required"] | Mapping[str, Any]
    parallel_tool_calls: bool
    reasoning: Mapping[str, Any]
    metadata: Mapping[str, str]
    modalities: Sequence[str]
    image_config: Mapping[str, Any]
    n: int
    seed: int
    frequency_penalty: float
    presence_penalty: float
    repetition_penalty: float
    logit_bias: Mapping[str, float]
    logprobs: bool
    top_logprobs: int
    user: str
    stream_options: Mapping[str, Any]
    service_tier: str
    store: bool
    prediction: Mapping[str, Any]
    audio: Mapping[str, Any]
    verbosity: str
    models: Sequence[str]
    provider: Mapping[str, Any]
    transforms: Sequence[str]
    plugins: Sequence[Mapping[str, Any]]
    usage: Mapping[str, Any]


class ToolsParams(SamplingParams, total=False):
    """``SamplingParams`` plus ``tools`` (for ``parse``, which sets the response format)."""

    tools: Sequence[
        Mapping[str, Any]
        | Callable[..., Any]
        | type[msgspec.Struct]
        | type[BaseModel]
        | FunctionTool
    ]


class FormatParams(SamplingParams, total=False):
    """``SamplingParams`` plus ``response_format`` (for ``run_tools``, which sets the tools)."""

    response_format: Mapping[str, Any] | type[msgspec.Struct] | type[BaseModel]


class ChatCompletionParams(ToolsParams, FormatParams, total=False):
    """Every optional request field of Chat Completions (rout.my's and OpenAI's)."""


_OPTION_NAMES = frozenset(RequestOptions.__annotations__)


def _stop(value: Any) -> bool:
    return value is None or isinstance(value, str) or is_strings(value)


def _tool_choice(value: Any) -> bool:
    return isinstance(value, (str, Mapping))


CHAT_CHECKS: dict[str, FieldCheck] = {
    "stream": FieldCheck(is_boolean, "a bool"),
    "temperature": FieldCheck(is_number, "a number"),
    "top_p": FieldCheck(is_number, "a number"),
    "top_k": FieldCheck(is_integer, "an int", 0),
    "min_p": FieldCheck(is_number, "a number"),
    "top_a": FieldCheck(is_number, "a number"),
    "max_tokens": FieldCheck(is_integer, "an int", 0),
    "max_output_tokens": FieldCheck(is_integer, "an int", 0),
    "max_completion_tokens": FieldCheck(is_integer, "an int", 0),
    "stop": FieldCheck(_stop, "a string or a list of strings"),
    "response_format": FieldCheck(is_mapping, "a dict (or a msgspec.Struct type)"),
    "tools": FieldCheck(is_mappings, "a list of tool definitions (dicts)"),
    "tool_choice": FieldCheck(_tool_choice, "'auto', 'none', 'required' or a dict"),
    "parallel_tool_calls": FieldCheck(is_boolean, "a bool"),
    "reasoning": FieldCheck(is_mapping, "a dict"),
    "metadata": FieldCheck(is_string_map, "a dict with string keys"),
    "modalities": FieldCheck(is_strings, "a list of strings"),
    "image_config": FieldCheck(is_mapping, "a dict"),
    "n": FieldCheck(is_integer, "an int", 1),
    "seed": FieldCheck(is_integer, "an int"),
    "frequency_penalty": FieldCheck(is_number, "a number"),
    "presence_penalty": FieldCheck(is_number, "a number"),
    "repetition_penalty": FieldCheck(is_number, "a number"),
    "logit_bias": FieldCheck(is_string_map, "a dict of token ids to numbers"),
    "logprobs": FieldCheck(is_boolean, "a bool"),
    "top_logprobs": FieldCheck(is_integer, "an int", 0),
    "user": FieldCheck(is_string, "a string"),
    "stream_options": FieldCheck(is_mapping, "a dict"),
    "service_tier": FieldCheck(is_string, "a string"),
    "store": FieldCheck(is_boolean, "a bool"),
    "prediction": FieldCheck(is_mapping, "a dict"),
    "audio": FieldCheck(is_mapping, "a dict"),
    "verbosity": FieldCheck(is_string, "a string"),
    "models": FieldCheck(is_strings, "a list of strings"),
    "provider": FieldCheck(is_mapping, "a dict"),
    "transforms": FieldCheck(is_strings, "a list of strings"),
    "plugins": FieldCheck(is_mappings, "a list of dicts"),
    "usage": FieldCheck(is_mapping, "a dict"),
}
"""The optional fields of Chat Completions that are checked before sending (Responses shares
most of them)."""


def check_model(model: Any) -> str:
    """:raises TypeError: ``model`` is not a string. :raises ValueError: it is empty."""
    if not isinstance(model, str):
        raise TypeError(f"model must be a string such as 'provider/model-id', not {model!r}")
    if not model.strip():
        raise ValueError("model must not be empty: pass an id from client.models.list()")
    return model


def check_messages(messages: Any) -> list[Any]:
    """Check that ``messages`` is a non-empty list of role-bearing messages; return the list
    to send, with every response object turned into its request form.

    A ``ChatCompletionMessage`` (from ``create``, a stream or ``run_tools``) becomes
    ``message.to_param()``, and so do ``ToolCall`` objects inside a dict message, so a
    response appended to ``messages`` goes back exactly as the API takes it.

    :raises TypeError: not a list, or an item is not a message.
    :raises ValueError: the list is empty or an item has no ``role``.
    """
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        raise TypeError(
            "messages must be a list of messages such as "
            f"[{{'role': 'user', 'content': '...'}}], not {type(messages).__name__}"
        )
    items = list(messages)
    if not items:
        raise ValueError("messages must not be empty")
    for position, message in enumerate(items):
        # Exact-type tests first: the common message (a dict with a str role) costs no
        # isinstance call on a path every request takes.
        if message.__class__ is dict or isinstance(message, Mapping):
            role = message.get("role")
            if role == "assistant":
                calls = message.get("tool_calls")
                if (
                    calls
                    and isinstance(calls, (list, tuple))
                    and any(_has_to_param(c) for c in calls)
                ):
                    message = items[position] = {
                        **message,
                        "tool_calls": [c.to_param() if _has_to_param(c) else c for c in calls],
                    }
        elif _has_to_param(message):
            message = items[position] = message.to_param()
            role = message.get("role")
        else:
            raise TypeError(
                f"messages[{position}] must be a dict with 'role' and 'content' (or a "
                f"message from a response), not {type(message).__name__}"
            )
        if not (role.__class__ is str or isinstance(role, str)) or not role:
            raise ValueError(f"messages[{position}] has no 'role' (a non-empty string)")
        content = message.get("content")
        if content.__class__ is not str and isinstance(content, list):
            for part in content:
                if getattr(part, "path", None) is not None and not part:
                    raise TypeError(
                        f"messages[{position}]: image_part({str(part.path)!r}) was not "
                        "awaited; a file is read without blocking the loop: write "
                        "`await image_part(path)`"
                    )
    return items


def _has_to_param(value: Any) -> bool:
    return isinstance(value, ResponseObject) and hasattr(value, "to_param")


check_params = field_checker(CHAT_CHECKS)
"""Type-check the known optional fields of a chat request; unknown ones pass through."""


def split_options(params: dict[str, Any]) -> dict[str, Any]:
    """Remove and return the per-call options (``extra_headers``, ``timeout``, ...)."""
    if not params.keys() & _OPTION_NAMES:
        return {}
    return {name: params.pop(name) for name in _OPTION_NAMES if name in params}


def build_body(fields: dict[str, Any], extra_body: Mapping[str, Any] | None) -> dict[str, Any]:
    """Merge ``extra_body`` over the fields (the caller's explicit override wins)."""
    if extra_body is not None:
        if not isinstance(extra_body, Mapping):
            raise TypeError(f"extra_body must be a dict, not {type(extra_body).__name__}")
        fields.update(extra_body)
    return fields
