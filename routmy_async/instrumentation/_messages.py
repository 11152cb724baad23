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


# -- the conventions' parts (OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental) --------
#
# https://github.com/open-telemetry/semantic-conventions/blob/v1.41.0/docs/gen-ai/gen-ai-input-messages.json
# and gen-ai-output-messages.json, gen-ai-system-instructions.json: a message is a role and a
# list of typed parts; a part of a type the schemas do not name passes as it is (their
# GenericPart: anything with a ``type``).


def system_instructions(operation: str, body: Mapping[str, Any]) -> list[Any] | None:
    """A Responses call's ``instructions`` as the conventions' list of parts, or ``None``.

    Chat's system messages are part of the history, so they stay in the input messages.
    """
    if operation != "responses":
        return None
    instructions = _plain_data(body.get("instructions"))
    if isinstance(instructions, str):
        return [_text(instructions)] if instructions else None
    if isinstance(instructions, list):  # instructions given as input items
        parts = [part for item in instructions for part in _responses_item(item)["parts"]]
        return parts or None
    return None


def input_messages(operation: str, body: Mapping[str, Any]) -> list[Any] | None:
    """``gen_ai.input.messages`` as role-and-parts messages, or ``None``."""
    if operation == "responses":
        given = _plain_data(body.get("input"))
        if isinstance(given, str):
            return [{"role": "user", "parts": [_text(given)]}]
        if isinstance(given, list):
            return [_responses_item(item) for item in given] or None
        return None
    if operation == "embeddings":
        given = _plain_data(body.get("input"))
        texts = [given] if isinstance(given, str) else given
        if isinstance(texts, list):
            parts = [_text(text) for text in texts if isinstance(text, str)]
            if parts:  # token-id inputs are no text to record
                return [{"role": "user", "parts": parts}]
        return None
    messages = _plain_data(body.get("messages"))
    if isinstance(messages, list):
        return [_chat_message(message) for message in messages if isinstance(message, dict)]
    return None


def output_messages(result: Any, finish_reason: str | None = None) -> list[Any] | None:
    """``gen_ai.output.messages``: one message per choice (a Response is one), or ``None``.

    :param finish_reason: a Response's status in chat's words (see ``_semconv``).
    """
    if isinstance(result, Response):
        parts = [part for item in result.output for part in _output_item_parts(item)]
        return [{"role": "assistant", "parts": parts, "finish_reason": _finish(finish_reason)}]
    choices = getattr(result, "choices", None)
    if not isinstance(choices, list):
        return None
    messages = []
    for choice in choices:
        message = _chat_message(choice.message.to_param())
        message["finish_reason"] = _finish(choice.finish_reason)
        messages.append(message)
    return messages


def _plain_data(value: Any) -> Any:
    """Request fields as plain lists and dicts (a message may be a response's own object)."""
    if value is None or isinstance(value, str):
        return value
    try:
        return msgspec.to_builtins(value, enc_hook=_plain)
    except (TypeError, msgspec.EncodeError):
        return None


def _text(content: str) -> dict[str, Any]:
    return {"type": "text", "content": content}


def _tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    if isinstance(arguments, str):
        try:  # the schema's arguments are the call's JSON, decoded where it decodes
            arguments = msgspec.json.decode(arguments)
        except msgspec.DecodeError:
            pass
    return {"type": "tool_call", "id": call_id, "name": name, "arguments": arguments}


def _tool_result(call_id: Any, response: Any) -> dict[str, Any]:
    return {"type": "tool_call_response", "id": call_id, "response": response}


# The conventions' finish reasons: chat's, but a tool call is singular.
_FINISH_REASONS = {"tool_calls": "tool_call", "function_call": "tool_call"}


def _finish(reason: str | None) -> str:
    if not reason:
        return "stop"
    return _FINISH_REASONS.get(reason, reason)


def _chat_message(message: Mapping[str, Any]) -> dict[str, Any]:
    """A chat message (``role``, ``content``, ``tool_calls``...) as role and parts."""
    role = message.get("role") or "user"
    if role == "tool":
        parts = [_tool_result(message.get("tool_call_id"), message.get("content"))]
    else:
        parts = []
        reasoning = message.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            parts.append({"type": "reasoning", "content": reasoning})
        parts.extend(_content_parts(message.get("content")))
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            parts.append({"type": "refusal", "content": refusal})
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            parts.append(
                _tool_call(call.get("id"), function.get("name"), function.get("arguments"))
            )
    shaped: dict[str, Any] = {"role": role, "parts": parts}
    name = message.get("name")
    if isinstance(name, str) and name:
        shaped["name"] = name
    return shaped


def _content_parts(content: Any) -> list[Any]:
    """A message's ``content`` (a string, or a list of chat or Responses content parts)."""
    if isinstance(content, str):
        return [_text(content)]
    if not isinstance(content, list):
        return []
    return [_content_part(part) for part in content if isinstance(part, dict)]


def _content_part(part: dict[str, Any]) -> Any:
    kind = part.get("type")
    if kind in ("text", "input_text", "output_text") and isinstance(part.get("text"), str):
        return _text(part["text"])
    if kind == "refusal":
        return {"type": "refusal", "content": part.get("refusal")}
    if kind == "image_url":  # chat: {"image_url": {"url": ...}}, a data: URL included
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if isinstance(url, str):
            return {"type": "uri", "modality": "image", "uri": url}
    if kind == "input_image":
        if isinstance(part.get("image_url"), str):
            return {"type": "uri", "modality": "image", "uri": part["image_url"]}
        if isinstance(part.get("file_id"), str):
            return {"type": "file", "modality": "image", "file_id": part["file_id"]}
    if kind == "input_audio":
        audio = part.get("input_audio")
        if isinstance(audio, dict) and isinstance(audio.get("data"), str):
            blob = {"type": "blob", "modality": "audio", "content": audio["data"]}
            if isinstance(audio.get("format"), str):
                blob["mime_type"] = f"audio/{audio['format']}"
            return blob
    return part


def _responses_item(item: Any) -> dict[str, Any]:
    """A Responses input item as one message."""
    if isinstance(item, str):
        return {"role": "user", "parts": [_text(item)]}
    if not isinstance(item, dict):
        return {"role": "user", "parts": []}
    kind = item.get("type")
    if kind == "function_call":
        call = _tool_call(item.get("call_id"), item.get("name"), item.get("arguments"))
        return {"role": "assistant", "parts": [call]}
    if kind == "function_call_output":
        return {"role": "tool", "parts": [_tool_result(item.get("call_id"), item.get("output"))]}
    if kind in (None, "message") and isinstance(item.get("role"), str):
        return {"role": item["role"], "parts": _content_parts(item.get("content"))}
    # Reasoning, hosted tools' calls, references: earlier output sent back to the model.
    return {"role": "assistant", "parts": _output_item_parts(item)}


def _output_item_parts(item: Any) -> list[Any]:
    """The parts of one Responses output item (an object of the response, or its dict)."""
    data = _plain_data(item)
    if not isinstance(data, dict):
        return []
    kind = data.get("type")
    if kind == "message":
        return _content_parts(data.get("content"))
    if kind == "function_call":
        return [_tool_call(data.get("call_id"), data.get("name"), data.get("arguments"))]
    if kind == "reasoning":
        texts = [s.get("text") for s in data.get("summary") or () if isinstance(s, dict)]
        text = "\n".join(t for t in texts if isinstance(t, str))
        return [{"type": "reasoning", "content": text}] if text else []
    return [data]
