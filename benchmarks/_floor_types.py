"""The floor's own minimal msgspec Structs (imported only by the floor client)."""

from __future__ import annotations

from typing import Any

import msgspec


class Message(msgspec.Struct):
    role: str = "assistant"
    content: str | None = None


class Choice(msgspec.Struct):
    index: int = 0
    message: Message | None = None
    finish_reason: str | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Completion(msgspec.Struct):
    id: str = ""
    choices: list[Choice] = []
    usage: Usage | None = None


class Function(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class ToolCall(msgspec.Struct):
    index: int = 0
    id: str | None = None
    function: Function | None = None


class Delta(msgspec.Struct):
    role: str | None = None
    content: str | None = None
    tool_calls: list[ToolCall] | None = None


class ChunkChoice(msgspec.Struct):
    index: int = 0
    delta: Delta | None = None
    finish_reason: str | None = None


class Chunk(msgspec.Struct):
    id: str = ""
    choices: list[ChunkChoice] = []
    usage: Usage | None = None


class Pricing(msgspec.Struct):
    prompt: str | float | None = None


class Model(msgspec.Struct):
    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = ""
    token_multiplier: float | None = None
    is_available: bool | None = None
    context_length: int | None = None
    pricing: Pricing | None = None


class ModelList(msgspec.Struct):
    data: list[Model] = []


def decoders() -> tuple[Any, Any, Any, Any]:
    return (
        msgspec.json.Decoder(Completion),
        msgspec.json.Decoder(Chunk),
        msgspec.json.Decoder(ModelList),
        msgspec.json.Encoder(),
    )
