"""Pydantic v2 types wherever a type goes, without depending on Pydantic.

Nothing here imports Pydantic until a caller has handed us a Pydantic type. The checks look
in ``sys.modules`` first: a program that never imported Pydantic cannot hold one of its types,
so it pays nothing, and a FastAPI app (which always has Pydantic loaded) gets its models
understood. msgspec types never come here.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel, TypeAdapter

__all__ = [
    "argument_adapter",
    "arguments_type",
    "describe_error",
    "is_model_type",
    "json_schema",
    "uses_pydantic",
    "validation_error",
]

# Modules whose classes, or whose ``Annotated`` metadata (``Field(gt=0)``, ``PositiveInt``'s
# ``annotated_types.Gt``), only Pydantic understands.
_PYDANTIC_PACKAGES = frozenset({"pydantic", "pydantic_core", "annotated_types"})
# Keywords whose values are data (a default, allowed values), never schemas to rewrite.
_DATA_KEYWORDS = frozenset({"default", "enum", "const", "examples", "example"})


def _base_model() -> type[Any] | None:
    # ``pydantic.main`` defines BaseModel: when it is not loaded, no model can exist yet.
    main = sys.modules.get("pydantic.main")
    base: type[Any] | None = getattr(main, "BaseModel", None)
    return base


def is_model_type(value: Any) -> bool:
    """Whether ``value`` is a Pydantic ``BaseModel`` subclass (never imports Pydantic)."""
    base = _base_model()
    return base is not None and isinstance(value, type) and issubclass(value, base)


def _from_pydantic(value: Any) -> bool:
    module = getattr(value, "__module__", None)
    return isinstance(module, str) and module.partition(".")[0] in _PYDANTIC_PACKAGES


def uses_pydantic(annotation: Any) -> bool:
    """Whether an annotation (with its ``Annotated`` extras) needs Pydantic to be understood:
    a model, a Pydantic type (``AnyUrl``), a Pydantic dataclass or Pydantic/annotated-types
    metadata, anywhere inside it (``list[Item]``, ``Item | None``, ``dict[str, Item]``)."""
    return "pydantic" in sys.modules and _holds_pydantic(annotation)


def _holds_pydantic(annotation: Any) -> bool:
    # An annotation is a finite tree (a recursive model is one class, not a nested alias).
    # (On Python 3.10 `list[Item]` passes isinstance(..., type): a generic alias has an origin.)
    if isinstance(annotation, type) and typing.get_origin(annotation) is None:
        # Models and Pydantic dataclasses carry their validator in the class itself.
        return _from_pydantic(annotation) or "__pydantic_validator__" in vars(annotation)
    metadata = getattr(annotation, "__metadata__", None)
    if isinstance(metadata, tuple):  # Annotated[T, ...]
        if any(_from_pydantic(type(item)) for item in metadata):
            return True
        return _holds_pydantic(annotation.__origin__)
    return any(_holds_pydantic(arg) for arg in typing.get_args(annotation))


def validation_error() -> type[Exception]:
    """Pydantic's ``ValidationError`` (only called once Pydantic is in use)."""
    from pydantic_core import ValidationError

    return ValidationError


def describe_error(error: Exception) -> tuple[bool, str]:
    """``(is_bad_json, text)`` for a Pydantic ``ValidationError``: one short line per problem
    (``count: Input should be greater than 0``), without the documentation links."""
    errors: list[dict[str, Any]] = error.errors(include_url=False)  # type: ignore[attr-defined]
    bad_json = any(item.get("type") == "json_invalid" for item in errors)
    parts = []
    for item in errors:
        where = ".".join(str(part) for part in item.get("loc", ()))
        parts.append(f"{where}: {item.get('msg')}" if where else str(item.get("msg")))
    return bad_json, "; ".join(parts)


def json_schema(model_or_adapter: type[BaseModel] | TypeAdapter[Any]) -> dict[str, Any]:
    """The JSON schema of a model (or a ``TypeAdapter``), ready for :func:`strict_schema`.

    Two things strict mode refuses are made plain here, as openai-python does for its Pydantic
    helpers: a ``$ref`` with sibling keys (``{"$ref": ..., "description": ...}``) is replaced
    by the definition it points to, and ``"default": null`` is dropped.
    """
    if isinstance(model_or_adapter, type):
        schema = model_or_adapter.model_json_schema()
    else:
        schema = model_or_adapter.json_schema()
    defs = schema.get("$defs", {})
    result: dict[str, Any] = _plain(schema, defs, frozenset())
    return result


def _plain(node: Any, defs: dict[str, Any], expanding: frozenset[str]) -> Any:
    if isinstance(node, list):
        return [_plain(item, defs, expanding) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1 and ref.startswith("#/$defs/"):
        name = ref[8:]
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        if name in expanding or name not in defs:
            # A model that holds itself: inline it once, then refer to it plainly.
            node = {"$ref": ref}
        else:
            node = {**defs[name], **siblings}
            expanding = expanding | {name}
    result = {}
    for key, value in node.items():
        if key in _DATA_KEYWORDS:
            if key != "default" or value is not None:
                result[key] = value
        elif key in ("properties", "$defs") and isinstance(value, dict):
            # Property names are data, not keywords: never mistake one named "default".
            inner = expanding if key == "properties" else frozenset()
            result[key] = {field: _plain(sub, defs, inner) for field, sub in value.items()}
        else:
            result[key] = _plain(value, defs, expanding)
    return result


def arguments_type(
    name: str, parameters: Sequence[tuple[str, Any, Any]], missing: Any
) -> type[Any]:
    """A ``TypedDict`` of a function's parameters, for Pydantic to validate.

    A ``TypedDict`` rather than a model: parameter names such as ``json``, ``schema`` or
    ``_private`` would shadow or be hidden by ``BaseModel`` attributes. A parameter with a
    default is not required; a default that JSON can carry is shown in the schema and filled
    in by validation, as msgspec does for the other tools.

    :param parameters: ``(name, annotation with its Annotated extras, default or missing)``.
    :raises TypeError: an annotation Pydantic cannot handle; the message names the parameter.
    """
    from pydantic import Field, PydanticSchemaGenerationError, TypeAdapter
    from pydantic_core import to_jsonable_python
    from typing_extensions import NotRequired, Required, TypedDict

    fields: dict[str, Any] = {}
    for parameter, annotation, default in parameters:
        if default is missing:
            fields[parameter] = Required[annotation]
            continue
        try:
            to_jsonable_python(default)
        except Exception:
            fields[parameter] = NotRequired[annotation]
        else:
            fields[parameter] = NotRequired[typing.Annotated[annotation, Field(default=default)]]
    arguments: type[Any] = TypedDict(f"{name}_arguments", fields)  # type: ignore[misc]
    try:
        TypeAdapter(arguments).json_schema()
    except (PydanticSchemaGenerationError, TypeError, ValueError) as exc:
        for parameter, annotation, _ in parameters:
            try:
                TypeAdapter(annotation).json_schema()
            except (PydanticSchemaGenerationError, TypeError, ValueError) as inner:
                raise TypeError(
                    f"tool {name!r}: parameter {parameter!r} has an unsupported annotation "
                    f"{annotation!r} ({inner})"
                ) from None
        raise TypeError(  # pragma: no cover - every failure seen so far is one parameter's
            f"tool {name!r}: Pydantic cannot describe its parameters ({exc})"
        ) from None
    return arguments


def argument_adapter(
    arguments: type[Any],
) -> tuple[dict[str, Any], Callable[[str], Any]]:
    """The JSON schema and the validating decoder of a tool's Pydantic argument type (a
    ``BaseModel`` or the ``TypedDict`` from :func:`arguments_type`)."""
    if is_model_type(arguments):
        return json_schema(arguments), arguments.model_validate_json
    from pydantic import TypeAdapter

    adapter: TypeAdapter[Any] = TypeAdapter(arguments)
    return json_schema(adapter), adapter.validate_json
