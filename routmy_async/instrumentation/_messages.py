"""What a call sent and got back, as a span records it when content capture is on.

The default mode records the request's own shapes: chat's ``messages`` as sent, a Responses
call's ``instructions`` as a ``system`` message before its ``input``, an embeddings call's
``input``; the answer as chat messages (a Response's output as one assistant message, its
function calls as ``tool_calls``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from ..types.responses import Response, ResponseFunctionToolCall


def to_json(value: Any) -> str:
    """A span attribute holds text: the content as JSON (its ``str`` if it will not encode)."""
    try:
        return msgspec.json.encode(value, enc_hook=_plain).decode()
    except (TypeError, msgspec.EncodeError):
        return str(value)


def _plain(value: Any) -> Any:
    to_param = getattr(value, "to_param", None)
    if callable(to_param):
        return to_param()
    raise TypeError(type(value).__name__)


def request_content(operation: str, body: Mapping[str, Any]) -> Any:
    """``gen_ai.input.messages`` in the request's own shape, or ``None``."""
    content = _responses_input(body) if operation == "responses" else body.get("messages")
    if content is None:
        content = body.get("input")  # embeddings' input
    return content


def answer_content(result: Any) -> list[Any] | None:
    """``gen_ai.output.messages`` in chat's shape, or ``None``."""
    if isinstance(result, Response):
        return [_output_message(result)]
    choices = getattr(result, "choices", None)
    if isinstance(choices, list):
        return [choice.message.to_param() for choice in choices]
    return None


def _responses_input(body: Mapping[str, Any]) -> list[Any] | None:
    """A Responses request's ``instructions`` and ``input`` as a list of messages."""
    messages: list[Any] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        messages.append({"role": "system", "content": instructions})
    given = body.get("input")
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    elif isinstance(given, Sequence):
        messages.extend(given)
    return messages or None


def _output_message(response: Response) -> dict[str, Any]:
    """The output as one assistant message: its text, and its function calls."""
    message: dict[str, Any] = {"role": "assistant", "content": response.output_text}
    calls = [
        {
            "id": item.call_id,
            "type": "function",
            "function": {"name": item.name, "arguments": item.arguments},
        }
        for item in response.output
        if isinstance(item, ResponseFunctionToolCall)
    ]
    if calls:
        message["tool_calls"] = calls
    return message
