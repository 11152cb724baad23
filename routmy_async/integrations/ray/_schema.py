"""Each output column's type, decided once per step before the first batch.

Ray Data turns every batch into an Arrow block on its own, inferring types from the values
when they come without one: a ``parsed`` column of ``{"v": 1}`` in one batch and ``{"v":
"text"}`` in another, or a nullable field that happens to be null in every row of one batch,
gives blocks that ``write_parquet`` cannot combine or that cannot be read back as one dataset.
So the step writes every column with a type fixed from its options: the ``response_format``'s
type gives the ``parsed`` column's shape, and a type with no single Arrow type (``int | str``,
``Any``, any ``dict``, a recursive or tagged-union type, a dict ``response_format``) makes it a
column of JSON text.

A shape is plain data, so this module needs neither pyarrow nor Pydantic: a leaf name
(:data:`LEAVES`), ``("list", item)`` or ``("struct", ((name, shape), ...))``; ``"json"`` is a
column of JSON text. :func:`fits` says whether a row's value has the column's shape, so a value
that would not fit is an error on its row rather than a value Arrow drops or reshapes.
"""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import sys
import types
import typing
import uuid
from collections.abc import Mapping
from typing import Any, Union

import msgspec

__all__ = ["LEAVES", "Shape", "broken_type", "fits", "parsed_shape"]

#: A column's shape: a leaf name, ``("list", item)`` or ``("struct", ((name, shape), ...))``.
Shape = Any

#: Leaf shapes: text, 64-bit ints, doubles, booleans, float32 vectors, and JSON text.
LEAVES = frozenset({"str", "int", "float", "bool", "vector", "json"})

# Types that both msgspec's ``to_builtins`` and Pydantic's JSON mode turn into text.
_TEXT_TYPES = (
    str,
    bytes,
    bytearray,
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    uuid.UUID,
    decimal.Decimal,
)
_SEQUENCES = (list, tuple, set, frozenset)
_INT64 = (-(2**63), 2**63 - 1)


class _NoArrowType(Exception):
    """The type has no single Arrow type: the column holds JSON text."""


def parsed_shape(target: Any) -> Shape:
    """The shape of the ``parsed`` column for a ``response_format`` (``"json"`` when its
    values have no single Arrow type, or when it is a dict and so says nothing of them)."""
    if target is None or isinstance(target, Mapping):
        return "json"
    try:
        shape = _shape(target, ())
    except _NoArrowType:
        return "json"
    # A top-level leaf cannot happen for a Struct or a model, but a struct is what we promise.
    return shape if isinstance(shape, tuple) and shape[0] == "struct" else "json"


def _shape(tp: Any, seen: tuple[Any, ...]) -> Shape:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Annotated:
        return _shape(args[0], seen)
    if tp is bool:
        return "bool"
    if tp is int:
        return "int"
    if tp is float:
        return "float"
    if isinstance(tp, type) and issubclass(tp, _TEXT_TYPES) and not issubclass(tp, enum.Enum):
        return "str"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _values_shape([member.value for member in tp])
    if origin is typing.Literal:
        return _values_shape(list(args))
    if origin is Union or origin is types.UnionType:
        options = [arg for arg in args if arg is not type(None)]
        if len(options) != 1:
            raise _NoArrowType
        return _shape(options[0], seen)
    if origin in _SEQUENCES:
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            items = {_shape(arg, seen) for arg in args}
            if len(items) != 1:
                raise _NoArrowType
            return ("list", items.pop())
        if len(args) != 1 and origin is not tuple:
            raise _NoArrowType  # a bare list: items of any type
        return ("list", _shape(args[0], seen))
    if isinstance(tp, type) and tp in seen:
        raise _NoArrowType  # a recursive type has no finite Arrow type
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return _struct_shape(tp, seen)
    if isinstance(tp, type) and _is_pydantic_model(tp):
        return _model_shape(tp, seen)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = _type_hints(tp)
        fields = [(field.name, hints[field.name]) for field in dataclasses.fields(tp)]
        return _fields_shape(fields, (*seen, tp))
    if isinstance(tp, type) and typing.is_typeddict(tp):
        return _fields_shape(list(_type_hints(tp).items()), (*seen, tp))
    # Any, object, dicts, bare containers, None alone, anything unknown.
    raise _NoArrowType


def _type_hints(tp: type) -> dict[str, Any]:
    """``typing.get_type_hints(tp)``, refusing clearly when a name it needs is missing here.

    :raises TypeError: the type's postponed annotations (``from __future__ import
        annotations``) name what this process does not have: a class defined in the driver
        script (``__main__``), rebuilt by Ray without the module around it.
    """
    try:
        return typing.get_type_hints(tp)
    except NameError as exc:
        raise TypeError(
            f"the type {tp.__qualname__!r} reached this Ray worker without the names its "
            f"annotations use ({exc}): it was defined in the driver script or a notebook "
            "(__main__). Define it in a module the workers can import (shipped with "
            "runtime_env={'py_modules': [...]} or {'working_dir': ...}), or use a Pydantic model"
        ) from None


def _values_shape(values: list[Any]) -> Shape:
    if values and all(isinstance(value, str) for value in values):
        return "str"
    if values and all(type(value) is int for value in values):
        return "int"
    raise _NoArrowType


def _struct_shape(tp: type[msgspec.Struct], seen: tuple[Any, ...]) -> Shape:
    config = tp.__struct_config__
    if config.tag_field is not None or config.array_like:
        raise _NoArrowType  # a tagged union member, or an array on the wire
    fields = [(field.encode_name, field.type) for field in msgspec.structs.fields(tp)]
    return _fields_shape(fields, (*seen, tp))


def _is_pydantic_model(tp: type[Any]) -> bool:
    pydantic = sys.modules.get("pydantic")
    return pydantic is not None and issubclass(tp, pydantic.BaseModel)


def _model_shape(tp: Any, seen: tuple[Any, ...]) -> Shape:
    config = tp.model_config
    if config.get("extra") == "allow" or getattr(tp, "__pydantic_root_model__", False):
        raise _NoArrowType  # keys nobody declared, or not an object at all
    by_alias = bool(config.get("serialize_by_alias"))
    fields = [
        ((field.serialization_alias or field.alias or name) if by_alias else name, field.annotation)
        for name, field in tp.model_fields.items()
        if not field.exclude
    ]
    fields.extend((name, field.return_type) for name, field in tp.model_computed_fields.items())
    return _fields_shape(fields, (*seen, tp))


def _fields_shape(fields: list[tuple[str, Any]], seen: tuple[Any, ...]) -> Shape:
    if not fields:
        raise _NoArrowType  # Parquet has no struct without fields
    return ("struct", tuple((name, _shape(tp, seen)) for name, tp in fields))


def fits(value: Any, shape: Shape) -> bool:
    """Whether ``value`` (plain JSON values) goes into a column of ``shape`` unchanged."""
    if value is None or shape == "json":
        return True
    if shape == "str":
        return isinstance(value, str)
    if shape == "bool":
        return isinstance(value, bool)
    if shape == "int":
        return type(value) is int and _INT64[0] <= value <= _INT64[1]
    if shape == "float":
        return type(value) in (int, float)
    if shape == "vector":
        return isinstance(value, list) and all(type(item) in (int, float) for item in value)
    kind, inner = shape
    if kind == "list":
        return isinstance(value, list) and all(fits(item, inner) for item in value)
    if not isinstance(value, dict):
        return False
    names = dict(inner)
    return all(key in names and fits(item, names[key]) for key, item in value.items())


def broken_type(target: Any) -> str | None:
    """The name of a msgspec Struct inside ``target`` that lost its fields on the way to this
    process, or ``None``.

    Ray's cloudpickle sends a class defined in the driver script (``__main__``) or a notebook
    by value and rebuilds it here: the class gets its ``__annotations__`` back, but msgspec
    reads a Struct's fields when the class is created, before they are set, so the copy has
    none and would ask the model for ``{}`` and parse every answer into ``{}``.
    """
    return _broken(target, set())


def _broken(tp: Any, seen: set[int]) -> str | None:
    if id(tp) in seen:
        return None
    seen.add(id(tp))
    for arg in typing.get_args(tp):
        found = _broken(arg, seen)
        if found:
            return found
    if not isinstance(tp, type):
        return None
    if issubclass(tp, msgspec.Struct):
        declared = any(
            name
            for klass in tp.__mro__
            for name, hint in vars(klass).get("__annotations__", {}).items()
            if "ClassVar" not in str(hint)
        )
        if declared and not tp.__struct_fields__:
            return tp.__qualname__
        try:
            hints = [field.type for field in msgspec.structs.fields(tp)]
        except NameError:
            # Annotations naming types this process cannot see (``from __future__ import
            # annotations`` in the driver script): the same loss, told the same way.
            return tp.__qualname__
        for hint in hints:
            found = _broken(hint, seen)
            if found:
                return found
    return None
