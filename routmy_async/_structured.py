"""Structured output: a strict JSON schema from a ``msgspec.Struct`` or a Pydantic v2
``BaseModel``, and decoding the answer into it (msgspec for Structs, Pydantic for models)."""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable
from typing import Any

import msgspec

from ._exceptions import ContentParseError
from ._partial_stream import json_text
from .types.chat import ChatCompletion, Choice

__all__ = [
    "StructuredFinalizer",
    "parse_completion",
    "parser_for",
    "response_format_for",
    "strict_schema",
]


def _strictify(node: Any) -> None:
    """Make every object schema strict: all properties required, no additional properties."""
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node:
            node["required"] = list(node["properties"])
            node["additionalProperties"] = False
        for value in node.values():
            _strictify(value)
    elif isinstance(node, list):
        for value in node:
            _strictify(value)


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Return a strict copy of a JSON schema, with a ``$ref`` root inlined.

    Strict mode (OpenAI's, which routers pass on) wants every property listed in ``required``
    and ``additionalProperties: false`` on every object.
    """
    result = copy.deepcopy(schema)
    ref = result.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        defs = result.get("$defs", {})
        root = dict(defs.get(ref.removeprefix("#/$defs/"), {}))
        remaining = {key: value for key, value in defs.items() if key != ref[8:]}
        if remaining or _refers_to(root, ref):
            root["$defs"] = defs
        result = root
    _strictify(result)
    return result


def _refers_to(node: Any, ref: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == ref or any(_refers_to(v, ref) for v in node.values())
    if isinstance(node, list):
        return any(_refers_to(v, ref) for v in node)
    return False


def _is_struct(target: Any) -> bool:
    return isinstance(target, type) and issubclass(target, msgspec.Struct)


# A type's strict schema, built once: building it (annotations resolved, the schema
# generated, copied and made strict) costs ~0.3 ms, more than a request's whole client CPU.
# Weak keys: a type defined in a loop is not kept alive. The schema is shared by every
# request body that asks for the type, and nothing in a send writes to a body.
_SCHEMAS: weakref.WeakKeyDictionary[type[Any], dict[str, Any]] = weakref.WeakKeyDictionary()


def _schema_of(struct_type: type[Any]) -> dict[str, Any]:
    schema = _SCHEMAS.get(struct_type)
    if schema is None:
        if _is_struct(struct_type):
            schema = strict_schema(msgspec.json.schema(struct_type))
        else:
            from ._pydantic import json_schema

            schema = strict_schema(json_schema(struct_type))
        _SCHEMAS[struct_type] = schema
    return schema


def response_format_for(struct_type: type[Any]) -> dict[str, Any]:
    """The ``response_format`` asking for JSON that decodes into ``struct_type`` (a
    ``msgspec.Struct`` or a Pydantic ``BaseModel`` type)."""
    schema = _schema_of(struct_type)
    description = (struct_type.__doc__ or "").strip().split("\n\n")[0].strip()
    json_schema_param: dict[str, Any] = {
        "name": struct_type.__name__,
        "schema": schema,
        "strict": True,
    }
    if description:
        json_schema_param["description"] = description
    return {"type": "json_schema", "json_schema": json_schema_param}


def parse_completion(completion: ChatCompletion, target: type[Any] | None) -> ChatCompletion:
    """Decode each choice's content into ``target`` (plain JSON when ``None``) as ``parsed``.

    A Pydantic model validates the content itself (``model_validate_json``).

    :raises ContentParseError: a choice refused, was cut off, had no content, or does not fit.
    """
    if target is not None and not _is_struct(target):
        return _parse_with_pydantic(completion, target)
    decode_type: Any = target if target is not None else Any
    for choice in completion.choices:
        message = choice.message
        # The JSON inside a Markdown fence, as the stream's partials read it.
        content = json_text(_content_of(choice))
        try:
            parsed = msgspec.json.decode(content, type=decode_type)
        except msgspec.ValidationError as exc:
            raise ContentParseError(
                f"the answer does not fit {getattr(target, '__name__', 'JSON')}: {exc}",
                content=message.content,
                finish_reason=choice.finish_reason,
            ) from None
        except msgspec.DecodeError as exc:
            raise ContentParseError(
                f"the answer is not valid JSON: {exc}",
                content=message.content,
                finish_reason=choice.finish_reason,
            ) from None
        msgspec.structs.force_setattr(message, "parsed", parsed)
    return completion


def _content_of(choice: Choice) -> str:
    """The content to parse; raises when there is none: a refusal, a cut-off answer, null."""
    message = choice.message
    if message.refusal:
        raise ContentParseError(
            f"the model refused: {message.refusal}",
            content=message.content,
            finish_reason=choice.finish_reason,
            refusal=message.refusal,
        )
    if choice.finish_reason == "length":
        raise ContentParseError(
            "the answer was cut off by the token limit (finish_reason 'length') before the "
            "JSON was complete; raise max_tokens",
            content=message.content,
            finish_reason=choice.finish_reason,
        )
    if message.content is None:
        raise ContentParseError(
            f"the answer has no content to parse (finish_reason {choice.finish_reason!r})",
            content=None,
            finish_reason=choice.finish_reason,
        )
    return message.content


def _parse_with_pydantic(completion: ChatCompletion, model: type[Any]) -> ChatCompletion:
    from ._pydantic import describe_error, validation_error

    invalid = validation_error()
    for choice in completion.choices:
        message = choice.message
        content = json_text(_content_of(choice))
        try:
            parsed = model.model_validate_json(content)
        except invalid as exc:
            bad_json, text = describe_error(exc)
            problem = "is not valid JSON" if bad_json else f"does not fit {model.__name__}"
            raise ContentParseError(
                f"the answer {problem}: {text}",
                content=message.content,
                finish_reason=choice.finish_reason,
            ) from None
        msgspec.structs.force_setattr(message, "parsed", parsed)
    return completion


class StructuredFinalizer:
    """Parses a completion into ``target`` (for create, parse and streams); a stream reads
    ``target`` to give typed partials."""

    __slots__ = ("target",)

    def __init__(self, target: type[Any]) -> None:
        self.target = target

    def __call__(self, completion: ChatCompletion) -> ChatCompletion:
        return parse_completion(completion, self.target)


def parser_for(target: type[Any]) -> Callable[[ChatCompletion], ChatCompletion]:
    """A finaliser that parses a completion into ``target`` (for create, parse and streams)."""
    return StructuredFinalizer(target)
