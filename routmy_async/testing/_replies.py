"""What MockRoutmy answers by default: deterministic completions, chunks, vectors and images.

Pure functions over the decoded request body, so the behaviour is easy to read and to test.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import time
import zlib
from collections.abc import Iterator
from typing import Any

__all__ = [
    "DEFAULT_MODELS",
    "chat_chunks",
    "chat_completion",
    "embedding_vector",
    "embeddings_answer",
    "images_answer",
    "instance_for_schema",
    "png_bytes",
    "response_events",
    "response_object",
]

# The fields rout.my's models list documents for every item; what the other routers add
# (prices, context lengths, architectures) is the "openrouter" flavor's.
ROUTMY_MODEL_FIELDS = frozenset(
    {"id", "object", "created", "owned_by", "token_multiplier", "is_available"}
)

# What the "openrouter" flavor's usage.cost charges a token of any model: its mock models
# list it as their price (per token, as strings, as OpenRouter writes prices).
_MOCK_PRICING = {"prompt": "0.000001", "completion": "0.000001"}

DEFAULT_MODELS: list[dict[str, Any]] = [
    {
        "id": "mock/echo",
        "owned_by": "mock",
        "token_multiplier": 1,
        "is_available": True,
        "pricing": _MOCK_PRICING,
    },
    {
        "id": "mock/reasoner",
        "owned_by": "mock",
        "token_multiplier": 2,
        "is_available": True,
        "pricing": _MOCK_PRICING,
    },
    {
        "id": "mock/vision",
        "owned_by": "mock",
        "token_multiplier": 1,
        "is_available": True,
        "name": "Mock: Vision",
        "context_length": 32768,
        "architecture": {
            "modality": "text+image->text",
            "input_modalities": ["text", "image"],
            "output_modalities": ["text"],
            "tokenizer": "Mock",
            "instruct_type": None,
        },
    },
    {"id": "mock/image", "owned_by": "mock", "token_multiplier": 4, "is_available": True},
    {
        "id": "mock/embed",
        "owned_by": "mock",
        "token_multiplier": 0.1,
        "is_available": True,
        "pricing": _MOCK_PRICING,
    },
    {"id": "mock/locked", "owned_by": "mock", "token_multiplier": 1, "is_available": False},
    {
        "id": "openai/gpt-4o-mini",
        "owned_by": "openai",
        "token_multiplier": 1,
        "is_available": True,
        "name": "OpenAI: GPT-4o-mini",
        "description": "A small, fast and affordable multimodal model.",
        "context_length": 128000,
        "pricing": {
            "prompt": "0.00000015",
            "completion": "0.0000006",
            "request": "0",
            "image": "0.000217",
            "web_search": "0",
            "internal_reasoning": "0",
            "input_cache_read": "0.000000075",
        },
        "architecture": {
            "modality": "text+image->text",
            "input_modalities": ["text", "image", "file"],
            "output_modalities": ["text"],
            "tokenizer": "GPT",
            "instruct_type": None,
        },
        "top_provider": {
            "context_length": 128000,
            "max_completion_tokens": 16384,
            "is_moderated": True,
        },
        "supported_parameters": [
            "max_tokens",
            "temperature",
            "top_p",
            "tools",
            "tool_choice",
            "response_format",
            "structured_outputs",
        ],
    },
    {
        "id": "anthropic/claude-sonnet-4",
        "owned_by": "anthropic",
        "token_multiplier": 3,
        "is_available": True,
        "name": "Anthropic: Claude Sonnet 4",
        "context_length": 200000,
        "pricing": {
            "prompt": "0.000003",
            "completion": "0.000015",
            "input_cache_read": "0.0000003",
            "input_cache_write": "0.00000375",
        },
        "top_provider": {
            "context_length": 200000,
            "max_completion_tokens": 64000,
            "is_moderated": False,
        },
        "supported_parameters": ["max_tokens", "temperature", "tools", "reasoning"],
    },
]

_ID_LIKE = re.compile(r"\b(?:[A-Za-z]+-?)?\d[\w-]*")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def png_bytes(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (40, 90, 220)) -> bytes:
    """A small solid-colour PNG, built by hand (zlib + CRC), so no imaging library is needed."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height))
        + chunk(b"IEND", b"")
    )


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = []
        for part in content:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text":
                pieces.append(str(part.get("text", "")))
            elif part.get("type") == "image_url":
                url = str((part.get("image_url") or {}).get("url", ""))
                if url.startswith("data:"):
                    mime = url[5:].split(";", 1)[0]
                    size = len(url.split(",", 1)[-1]) * 3 // 4
                    pieces.append(f"[image {mime}, about {size} bytes]")
                else:
                    pieces.append(f"[image {url}]")
        return " ".join(pieces)
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


def _words(messages: list[Any]) -> int:
    return sum(len(_text_of(m.get("content")).split()) + 1 for m in messages if isinstance(m, dict))


# A fixed value for each string format a decoder checks, so that typed answers decode.
_FORMATTED = {
    "date-time": "2026-01-02T03:04:05Z",
    "date": "2026-01-02",
    "time": "03:04:05",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def instance_for_schema(
    schema: Any, hint: str = "", defs: dict[str, Any] | None = None, name: str = ""
) -> Any:
    """A deterministic value that fits a JSON schema, drawn from the hint text where it can.

    A string property named like an id takes the first id-like token of the hint (``A-123``);
    other strings take the hint's last word.
    """
    if not isinstance(schema, dict):
        return None
    defs = defs if defs is not None else schema.get("$defs", {})
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return instance_for_schema(defs.get(ref[8:], {}), hint, defs, name)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list):
            for option in options:
                if isinstance(option, dict) and option.get("type") != "null":
                    return instance_for_schema(option, hint, defs, name)
            return None
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "object" or "properties" in schema:
        return {
            key: instance_for_schema(sub, hint, defs, key)
            for key, sub in (schema.get("properties") or {}).items()
        }
    if kind == "array":
        return [instance_for_schema(schema.get("items", {}), hint, defs, name)]
    if kind == "string" and schema.get("format") in _FORMATTED:
        return _FORMATTED[schema["format"]]
    if kind == "string":
        words = re.findall(r"[\w-]+", hint)
        found = _ID_LIKE.search(hint)
        if found and (name.lower().endswith("id") or not name):
            return found.group(0)
        return words[-1] if words else "example"
    if kind == "integer":
        number = _NUMBER.search(hint)
        return int(float(number.group(0))) if number else 1
    if kind == "number":
        number = _NUMBER.search(hint)
        return float(number.group(0)) if number else 1.0
    if kind == "boolean":
        return True
    return None


def _tool_calls(body: dict[str, Any], hint: str) -> list[dict[str, Any]] | None:
    tools = body.get("tools")
    messages = body.get("messages") or []
    choice = body.get("tool_choice", "auto")
    if not tools or choice == "none":
        return None
    if messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        return None
    functions = [t.get("function", {}) for t in tools if isinstance(t, dict)]
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        functions = [f for f in functions if f.get("name") == wanted] or functions[:1]
    elif body.get("parallel_tool_calls") is False:
        functions = functions[:1]
    calls = []
    for position, function in enumerate(functions):
        arguments = instance_for_schema(function.get("parameters") or {}, hint)
        calls.append(
            {
                "id": f"call_mock_{position}",
                "type": "function",
                "function": {
                    "name": function.get("name", ""),
                    "arguments": json.dumps(arguments if arguments is not None else {}),
                },
            }
        )
    return calls


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    """The assistant message (as a dict) the mock gives for a request body."""
    messages = body.get("messages") or []
    hint = _last_user_text(messages)
    message: dict[str, Any] = {"role": "assistant", "content": hint}
    calls = _tool_calls(body, hint)
    if calls:
        message["content"] = None
        message["tool_calls"] = calls
    elif messages and isinstance(messages[-1], dict) and messages[-1].get("role") == "tool":
        results = [
            _text_of(m.get("content"))
            for m in messages
            if isinstance(m, dict) and m.get("role") == "tool"
        ]
        message["content"] = "Tool results: " + "; ".join(results[-len(calls or results) :])
    response_format = body.get("response_format")
    if not calls and isinstance(response_format, dict):
        if response_format.get("type") == "json_schema":
            schema = (response_format.get("json_schema") or {}).get("schema") or {}
            message["content"] = json.dumps(instance_for_schema(schema, hint))
        elif response_format.get("type") == "json_object":
            message["content"] = json.dumps({"echo": hint})
    modalities = body.get("modalities") or []
    if not calls and "image" in modalities:
        url = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
        message["images"] = [{"type": "image_url", "image_url": {"url": url}, "index": 0}]
        message["content"] = f"Here is an image of: {hint}"
    if body.get("reasoning") is not None or str(body.get("model", "")).endswith("reasoner"):
        thought = f"The user said {len(hint.split())} words; answering plainly."
        message["reasoning"] = thought
        message["reasoning_details"] = [
            {"type": "reasoning.text", "text": thought, "format": "mock-v1", "index": 0}
        ]
    return message


def _usage(body: dict[str, Any], message: dict[str, Any], *, cost: bool = False) -> dict[str, Any]:
    prompt = _words(body.get("messages") or [])
    completion = len(str(message.get("content") or "").split()) + sum(
        len(c["function"]["arguments"]) // 4 for c in message.get("tool_calls") or []
    )
    reasoning = len(str(message.get("reasoning") or "").split())
    # Every choice is generated, and counted: n answers use n times the tokens.
    choices = _choice_count(body)
    completion, reasoning = completion * choices, reasoning * choices
    total_completion = completion + reasoning
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": total_completion,
        "total_tokens": prompt + total_completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }
    if cost:
        usage["cost"] = round((prompt + total_completion) * 1e-6, 8)
    return usage


def _choice_count(body: dict[str, Any]) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and n > 0 else 1


def chat_completion(
    body: dict[str, Any], *, created: int, serial: int, cost: bool = False
) -> dict[str, Any]:
    """The whole ``chat.completion`` the mock answers with (``usage.cost`` when ``cost``)."""
    message = _answer(body)
    n = _choice_count(body)
    finish = "tool_calls" if message.get("tool_calls") else "stop"
    return {
        "id": f"chatcmpl-mock-{serial}",
        "object": "chat.completion",
        "created": created,
        "model": body.get("model"),
        "provider": "mock",
        "choices": [
            {
                "index": index,
                "message": message,
                "finish_reason": finish,
                "native_finish_reason": finish,
            }
            for index in range(n)
        ],
        "usage": _usage(body, message, cost=cost),
    }


def _pieces(text: str, size: int) -> Iterator[str]:
    for start in range(0, len(text), size):
        yield text[start : start + size]


def chat_chunks(
    body: dict[str, Any], *, created: int, serial: int, piece: int = 8, cost: bool = False
) -> list[dict[str, Any]]:
    """The chunks of a streamed answer: role, text (or tool-call fragments), finish, usage."""
    message = _answer(body)
    base = {
        "id": f"chatcmpl-mock-{serial}",
        "object": "chat.completion.chunk",
        "created": created,
        "model": body.get("model"),
        "provider": "mock",
    }
    n = _choice_count(body)
    chunks: list[dict[str, Any]] = []

    def add(index: int, delta: dict[str, Any], finish: str | None = None) -> None:
        chunks.append(
            {**base, "choices": [{"index": index, "delta": delta, "finish_reason": finish}]}
        )

    for index in range(n):
        add(index, {"role": "assistant", "content": ""})
        if message.get("reasoning"):
            for part in _pieces(message["reasoning"], piece):
                add(index, {"reasoning": part})
            add(index, {"reasoning_details": message["reasoning_details"]})
        for position, call in enumerate(message.get("tool_calls") or []):
            add(
                index,
                {
                    "tool_calls": [
                        {
                            "index": position,
                            "id": call["id"],
                            "type": "function",
                            "function": {"name": call["function"]["name"], "arguments": ""},
                        }
                    ]
                },
            )
            for part in _pieces(call["function"]["arguments"], 5):
                add(index, {"tool_calls": [{"index": position, "function": {"arguments": part}}]})
        for part in _pieces(str(message.get("content") or ""), piece):
            add(index, {"content": part})
        for image in message.get("images") or []:
            add(index, {"images": [image]})
        add(index, {}, "tool_calls" if message.get("tool_calls") else "stop")
    chunks.append({**base, "choices": [], "usage": _usage(body, message, cost=cost)})
    return chunks


def embeddings_answer(body: dict[str, Any], *, cost: bool = False) -> dict[str, Any]:
    """The ``/embeddings`` answer: deterministic vectors, base64 when asked.

    :raises ValueError: the body has no ``model`` or ``input``.
    """
    if not isinstance(body, dict) or "input" not in body or not body.get("model"):
        raise ValueError("'model' and 'input' are required")
    raw_input = body["input"]
    if isinstance(raw_input, str):
        items: list[Any] = [raw_input]
    elif raw_input and all(isinstance(token, int) for token in raw_input):
        items = [raw_input]
    else:
        items = list(raw_input)
    dimensions = int(body.get("dimensions") or 8)
    data = []
    tokens = 0
    for index, item in enumerate(items):
        text = item if isinstance(item, str) else " ".join(map(str, item))
        tokens += len(text.split()) or 1
        vector = embedding_vector(text, dimensions)
        embedding: Any = vector
        if body.get("encoding_format") == "base64":
            embedding = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": body["model"],
        "usage": {
            "prompt_tokens": tokens,
            "total_tokens": tokens,
            **({"cost": round(tokens * 1e-7, 12)} if cost else {}),
        },
    }


def images_answer(body: dict[str, Any]) -> dict[str, Any]:
    """The ``/images/generations`` answer: ``n`` small PNGs, as b64_json or data: URLs.

    :raises ValueError: the body has no ``model`` or ``prompt``.
    """
    if not isinstance(body, dict) or not body.get("prompt") or not body.get("model"):
        raise ValueError("'model' and 'prompt' are required")
    count = int(body.get("n") or 1)
    encoded = base64.b64encode(png_bytes(16, 16)).decode()
    if body.get("response_format") == "url":
        items = [{"url": "data:image/png;base64," + encoded} for _ in range(count)]
    else:
        items = [{"b64_json": encoded} for _ in range(count)]
    return {"created": int(time.time()), "data": items}


def embedding_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text`` (from SHA-256), exact in float32."""
    values: list[float] = []
    counter = 0
    while len(values) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        for offset in range(0, len(digest), 2):
            values.append((int.from_bytes(digest[offset : offset + 2], "big") - 32768) / 32768)
        counter += 1
    values = values[:dimensions]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    # Round-trip through float32 so base64 and float answers carry the very same numbers.
    packed = struct.pack(f"<{dimensions}f", *(v / norm for v in values))
    return list(struct.unpack(f"<{dimensions}f", packed))


# -- the Responses API ----------------------------------------------------------------------


def _chat_content(content: Any) -> Any:
    """Responses content parts (``input_text``, ``input_image``, ``output_text``) as chat's."""
    if not isinstance(content, list):
        return content
    parts: list[dict[str, Any]] = []
    for part in content:
        if not isinstance(part, dict):
            continue
        kind = part.get("type")
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "input_image":
            parts.append({"type": "image_url", "image_url": {"url": str(part.get("image_url"))}})
    return parts


def _chat_body(body: dict[str, Any], earlier: list[Any]) -> dict[str, Any]:
    """A Responses request as the chat request the mock already knows how to answer."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    given = body.get("input")
    items = list(earlier) + ([{"role": "user", "content": given}] if isinstance(given, str) else [])
    if isinstance(given, list):
        items.extend(given)
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == "function_call_output":
            messages.append({"role": "tool", "content": str(item.get("output", ""))})
        elif kind == "function_call":
            messages.append({"role": "assistant", "content": None, "tool_calls": [item]})
        elif isinstance(item.get("role"), str):
            messages.append({"role": item["role"], "content": _chat_content(item.get("content"))})
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    tools = [
        {"type": "function", "function": {"name": t.get("name"), "parameters": t.get("parameters")}}
        for t in body.get("tools") or []
        if isinstance(t, dict) and t.get("type") == "function"
    ]
    if tools:
        chat["tools"] = tools
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice.get("name")}}
    elif choice is not None:
        chat["tool_choice"] = choice
    for name in ("parallel_tool_calls", "reasoning"):
        if name in body:
            chat[name] = body[name]
    form = (body.get("text") or {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(form, dict) and form.get("type") == "json_schema":
        chat["response_format"] = {
            "type": "json_schema",
            "json_schema": {"schema": form.get("schema")},
        }
    elif isinstance(form, dict) and form.get("type") == "json_object":
        chat["response_format"] = {"type": "json_object"}
    return chat


def response_object(
    body: dict[str, Any],
    *,
    created: int,
    serial: int,
    earlier: list[Any] | None = None,
    cost: bool = False,
) -> dict[str, Any]:
    """The whole ``response`` object the mock answers ``/responses`` with.

    The answer is chat's (echo, tool calls for ``tools``, JSON for a ``json_schema`` text
    format, reasoning when asked) as output items: ``reasoning``, ``function_call``s, then
    the ``message``. ``max_output_tokens`` below the answer's length cuts it: ``status``
    ``incomplete``. ``earlier`` holds the items of a ``previous_response_id`` conversation;
    ``cost`` adds ``usage.cost`` (in dollars, as chat's).

    :raises ValueError: the body has no ``model``.
    """
    if not isinstance(body, dict) or not body.get("model"):
        raise ValueError("'model' is required")
    chat = _chat_body(body, earlier or [])
    message = _answer(chat)
    usage = _usage(chat, message, cost=cost)
    output: list[dict[str, Any]] = []
    if message.get("reasoning"):
        output.append(_reasoning_item(message["reasoning"], body, serial))
    output += _function_call_items(message.get("tool_calls") or [], serial)
    status, incomplete = "completed", None
    text = message.get("content")
    limit = body.get("max_output_tokens")
    if isinstance(text, str) and isinstance(limit, int) and len(text.split()) > limit:
        text = " ".join(text.split()[:limit])
        status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    if text is not None:
        output.append(_message_item(text, status, serial))
    return {
        "id": f"resp_mock_{serial}",
        "object": "response",
        "created_at": created,
        "status": status,
        "model": body.get("model"),
        "output": output,
        "usage": _responses_usage(usage, cost=cost),
        "error": None,
        "incomplete_details": incomplete,
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": body.get("reasoning"),
        "store": body.get("store", True),
        "temperature": body.get("temperature"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "max_output_tokens": limit,
        "provider": "mock",
    }


def _reasoning_item(reasoning: str, body: dict[str, Any], serial: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "reasoning",
        "id": f"rs_mock_{serial}",
        "summary": [{"type": "summary_text", "text": reasoning}],
        "status": "completed",
    }
    # A real server hands it back opaque; base64 of the text is opaque enough for a mock.
    if "reasoning.encrypted_content" in (body.get("include") or []):
        item["encrypted_content"] = base64.b64encode(reasoning.encode()).decode()
    return item


def _function_call_items(tool_calls: list[dict[str, Any]], serial: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "function_call",
            "id": f"fc_mock_{serial}_{position}",
            "call_id": call["id"],
            "name": call["function"]["name"],
            "arguments": call["function"]["arguments"],
            "status": "completed",
        }
        for position, call in enumerate(tool_calls)
    ]


def _message_item(text: str, status: str, serial: int) -> dict[str, Any]:
    return {
        "type": "message",
        "id": f"msg_mock_{serial}",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def _responses_usage(usage: dict[str, Any], *, cost: bool) -> dict[str, Any]:
    """Chat's usage under the Responses API's names."""
    return {
        "input_tokens": usage["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": usage["completion_tokens"],
        "output_tokens_details": usage["completion_tokens_details"],
        "total_tokens": usage["total_tokens"],
        **({"cost": usage["cost"]} if cost else {}),
    }


def _skeleton(item: dict[str, Any]) -> dict[str, Any]:
    """An output item as ``output_item.added`` shows it: no content yet, in progress."""
    empty: dict[str, dict[str, Any]] = {
        "message": {"content": []},
        "function_call": {"arguments": ""},
        "reasoning": {"summary": []},
    }
    return {**item, **empty.get(item["type"], {}), "status": "in_progress"}


def response_events(response: dict[str, Any], *, piece: int = 8) -> list[dict[str, Any]]:
    """The events of a streamed ``response`` object, as OpenAI sends them: created,
    in_progress, each item (added, its parts and deltas, done), then the terminal event."""
    events: list[dict[str, Any]] = []

    def add(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    final_type = {"incomplete": "response.incomplete", "failed": "response.failed"}.get(
        str(response.get("status")), "response.completed"
    )
    start = {**response, "status": "in_progress", "output": [], "usage": None}
    add("response.created", response=start)
    add("response.in_progress", response=start)
    for index, item in enumerate(response["output"]):
        add("response.output_item.added", output_index=index, item=_skeleton(item))
        ids = {"item_id": item.get("id", ""), "output_index": index}
        if item["type"] == "reasoning":
            for number, part in enumerate(item["summary"]):
                empty_part = {"type": "summary_text", "text": ""}
                add(
                    "response.reasoning_summary_part.added",
                    **ids,
                    summary_index=number,
                    part=empty_part,
                )
                for text in _pieces(part["text"], piece):
                    add(
                        "response.reasoning_summary_text.delta",
                        **ids,
                        summary_index=number,
                        delta=text,
                    )
                add(
                    "response.reasoning_summary_text.done",
                    **ids,
                    summary_index=number,
                    text=part["text"],
                )
                add("response.reasoning_summary_part.done", **ids, summary_index=number, part=part)
        elif item["type"] == "function_call":
            for text in _pieces(item["arguments"], 5):
                add("response.function_call_arguments.delta", **ids, delta=text)
            add("response.function_call_arguments.done", **ids, arguments=item["arguments"])
        elif item["type"] == "message":
            for number, part in enumerate(item["content"]):
                at = {**ids, "content_index": number}
                add("response.content_part.added", **at, part={**part, "text": ""})
                for text in _pieces(part["text"], piece):
                    add("response.output_text.delta", **at, delta=text, logprobs=[])
                add("response.output_text.done", **at, text=part["text"], logprobs=[])
                add("response.content_part.done", **at, part=part)
        add("response.output_item.done", output_index=index, item=item)
    add(final_type, response=response)
    return events
