"""Eager validation: a field that, once complete, cannot be valid for the schema fails at once.

``SchemaCheck`` listens to a ``PartialJSON`` parser and checks each value the moment it is
complete (and each object or array the moment it opens) against the JSON schema of the
``response_format``, so a stream whose answer has gone wrong can be closed before the model
finishes it. It raises ``FieldValidationError`` from inside ``PartialJSON.feed``, naming the
field's path and the reason; the parser is broken from then on (every later ``feed`` raises
the same error).

What it checks, as soon as it can:

- ``type`` (an object or array where a scalar belongs fails when it opens);
- ``enum`` and ``const``;
- numbers: ``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``multipleOf``;
- strings: ``minLength``, ``maxLength``, ``pattern``, and the formats ``date-time``, ``date``,
  ``time`` and ``uuid``;
- objects: a key the schema does not allow (``additionalProperties: false``) when its value
  completes, ``required`` keys and ``minProperties``/``maxProperties`` when the object closes;
- arrays: ``maxItems`` as soon as one item too many completes, ``minItems`` when it closes;
- ``anyOf``/``oneOf`` (as "any branch fits"), ``allOf``, and ``$ref`` into ``$defs``.

Only what JSON Schema can say is checked: a Pydantic validator written in Python, or a
``__post_init__``, runs on the final parse as always. A check never rejects what the final
parse would accept, except where the schema is stricter than the type (it is generated from
the type, so the two agree).
"""

from __future__ import annotations

import datetime
import math
import operator
import re
import uuid
from collections.abc import Callable
from typing import Any

import msgspec

from ._exceptions import FieldValidationError
from ._partial_json import Key, Path

__all__ = ["SchemaCheck", "format_path", "schema_of"]

_JSON_TYPES: dict[str, tuple[type[Any], ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "null": (type(None),),
}
# The formats msgspec parses (as the final decode will): format name -> the type.
_TYPE_NAMES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "null": "null",
}
_FORMATS: dict[str, Any] = {
    "date-time": datetime.datetime,
    "date": datetime.date,
    "time": datetime.time,
    "uuid": uuid.UUID,
}


_BOUNDS = (
    ("minimum", ">="),
    ("exclusiveMinimum", ">"),
    ("maximum", "<="),
    ("exclusiveMaximum", "<"),
)
_BOUND_HOLDS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def schema_of(target: Any) -> dict[str, Any]:
    """The JSON schema to check against: a schema dict as it is, or a Struct's or Pydantic
    model's schema."""
    if isinstance(target, dict):
        return target
    from ._pydantic import is_model_type, json_schema

    if is_model_type(target):
        return json_schema(target)
    return msgspec.json.schema(target)


def format_path(path: Path) -> str:
    """``items[3].price`` for ``("items", 3, "price")``; ``the answer`` for the root."""
    if not path:
        return "the answer"
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


class SchemaCheck:
    """A ``JSONListener`` that raises ``FieldValidationError`` for the first value that cannot
    be valid for ``schema`` (see the module doc for what is checked, and when).

    :param schema: a JSON schema (``$defs`` at its root are followed by ``$ref``).
    :param accepts: the answer's type, asked about a completed scalar the schema refuses:
        whether it converts all the same (``accepts(key, value)``, for the innermost open
        container). The type's own parse has the last word, so a Pydantic model's lax
        reading (``"2"`` for an ``int``, a bare date for a ``datetime``) is not refused.
    """

    def __init__(
        self, schema: dict[str, Any], *, accepts: Callable[[Key, Any], bool] | None = None
    ) -> None:
        self._root = schema
        self._accepts = accepts
        # The open containers: (container, its schema, its key in its parent).
        self._frames: list[tuple[Any, dict[str, Any] | None, Key]] = []

    # -- JSONListener --------------------------------------------------------------------

    def opened(self, key: Key, container: dict[str, Any] | list[Any]) -> None:
        schema = self._child_schema(key)
        if schema is not None:
            schema = self._branch_for(schema, container, key)
            self._check_type(schema, container, key)
        self._frames.append((container, schema, key))

    def completed(self, key: Key, value: Any) -> None:
        frames = self._frames
        if frames and frames[-1][0] is value:
            _, schema, _ = frames.pop()
            if schema is not None:
                self._check_closed(schema, value, key)
            return
        schema = self._child_schema(key)
        if schema is not None:
            problem = _problem(self._resolve(schema), value, self._resolve)
            if problem is not None and not (self._accepts and self._accepts(key, value)):
                self._fail(key, problem)

    # -- schemas -------------------------------------------------------------------------

    def _resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """Follow ``$ref`` (into the root's ``$defs`` or ``definitions``) and merge ``allOf``."""
        seen = 0
        while "$ref" in schema and seen < 64:
            ref = schema["$ref"]
            if ref == "#":
                target = self._root
            else:
                _, _, name = ref.rpartition("/")
                holder = "$defs" if "/$defs/" in ref else "definitions"
                target = self._root.get(holder, {}).get(name, {})
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
            seen += 1
        if "allOf" in schema:
            merged = {key: value for key, value in schema.items() if key != "allOf"}
            for part in schema["allOf"]:
                merged = {**self._resolve(part), **merged}
            schema = merged
        return schema

    def _child_schema(self, key: Key) -> dict[str, Any] | None:
        """The schema of the value at ``key`` of the innermost open container, or None where
        nothing is known."""
        if not self._frames:
            return self._resolve(self._root)
        container, parent, _ = self._frames[-1]
        if parent is None:
            return None
        if isinstance(container, dict):
            properties = parent.get("properties", {})
            if key in properties:
                return self._resolve(properties[key])
            extra = parent.get("additionalProperties", True)
            if extra is False:
                self._fail(key, "is not a field the schema allows")
            return self._resolve(extra) if isinstance(extra, dict) else None
        assert isinstance(key, int)
        maximum = parent.get("maxItems")
        if maximum is not None and key >= maximum:
            self._fail(key, f"is one item too many (the array allows at most {maximum})")
        prefix = parent.get("prefixItems")
        if prefix is not None and key < len(prefix):
            return self._resolve(prefix[key])
        items = parent.get("items")
        return self._resolve(items) if isinstance(items, dict) else None

    def _branch_for(self, schema: dict[str, Any], container: Any, key: Key) -> dict[str, Any]:
        """Of ``anyOf``/``oneOf`` branches, the one that can hold this container, when only
        one can (``Item | None``); the union itself when several can."""
        branches = schema.get("anyOf") or schema.get("oneOf")
        if not branches:
            return schema
        fitting = [
            branch
            for branch in map(self._resolve, branches)
            if _type_allows(branch.get("type"), container)
        ]
        if not fitting:
            self._fail(
                key, f"must be {_describe_types(schema, self._resolve)}, got {_kind(container)}"
            )
        return fitting[0] if len(fitting) == 1 else schema

    def _check_type(self, schema: dict[str, Any], container: Any, key: Key) -> None:
        if "anyOf" in schema or "oneOf" in schema:
            return
        if not _type_allows(schema.get("type"), container):
            self._fail(
                key, f"must be {_describe_types(schema, self._resolve)}, got {_kind(container)}"
            )
        choices = schema["enum"] if "enum" in schema else [schema.get("const", container)]
        if not any(isinstance(choice, type(container)) for choice in choices):
            allowed = ", ".join(repr(choice) for choice in choices[:10])
            self._fail(key, f"must be one of {allowed}; got {_kind(container)}")

    def _check_closed(self, schema: dict[str, Any], value: Any, key: Key) -> None:
        if "anyOf" in schema or "oneOf" in schema:
            problem = _problem(schema, value, self._resolve)  # the whole value, every branch
        else:
            problem = _container_problem(schema, value)
        if problem is not None:
            self._fail(key, problem)

    def _fail(self, key: Key, reason: str) -> None:
        parents = [frame_key for _, _, frame_key in self._frames if frame_key is not None]
        path: Path = (*parents, key) if key is not None else tuple(parents)
        raise FieldValidationError(
            f"{format_path(path)} {reason}", path=path, reason=reason, content=None
        )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {_short(value)}"
    return "an object" if isinstance(value, dict) else "an array"


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _type_allows(expected: Any, value: Any) -> bool:
    if expected is None:
        return True
    names = expected if isinstance(expected, list) else [expected]
    for name in names:
        kinds = _JSON_TYPES.get(name, ())
        if isinstance(value, bool) and bool not in kinds:
            continue  # True is an int to Python, never to JSON
        if isinstance(value, kinds):
            return True
        if name == "integer" and isinstance(value, float) and value.is_integer():
            return True
    return False


def _describe_types(schema: dict[str, Any], resolve: Any) -> str:
    """``a string or null`` for ``{"anyOf": [{"type": "string"}, {"type": "null"}]}``."""
    branches = schema.get("anyOf") or schema.get("oneOf")
    names: list[Any] = []
    for part in branches or [schema]:
        expected = resolve(part).get("type")
        names.extend(expected if isinstance(expected, list) else [expected])
    return " or ".join(_TYPE_NAMES.get(name, "another value") for name in dict.fromkeys(names))


def _problem(schema: dict[str, Any], value: Any, resolve: Any) -> str | None:
    """Why ``value`` cannot be valid for ``schema`` (the whole value, containers included),
    or None."""
    schema = resolve(schema)
    branches = schema.get("anyOf") or schema.get("oneOf")
    if branches:
        problems = [_problem(branch, value, resolve) for branch in branches]
        if all(problem is not None for problem in problems):
            # One branch of the value's own type says best what is wrong (an enum's values).
            fitting = [
                problem
                for branch, problem in zip(branches, problems, strict=True)
                if _type_allows(resolve(branch).get("type"), value)
            ]
            if len(fitting) == 1:
                return fitting[0]
            tagged = _tagged_problem(schema, value, branches, problems)
            if tagged is not None:
                return tagged
            if fitting:  # several of its kind, none fits: say why for each
                reasons = "; or ".join(str(problem) for problem in fitting[:3])
                return f"fits none of its choices: {reasons}"
            return f"must be {_describe_types(schema, resolve)}, got {_kind(value)}"
    if not _type_allows(schema.get("type"), value):
        return f"must be {_describe_types(schema, resolve)}, got {_kind(value)}"
    if "enum" in schema and not any(_same(value, choice) for choice in schema["enum"]):
        allowed = ", ".join(repr(choice) for choice in schema["enum"][:10])
        return f"must be one of {allowed}; got {_kind(value)}"
    if "const" in schema and not _same(value, schema["const"]):
        return f"must be {schema['const']!r}, got {_kind(value)}"
    if isinstance(value, str):
        return _string_problem(schema, value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _number_problem(schema, value)
    if isinstance(value, dict):
        problem = _container_problem(schema, value)
        for key, item in value.items():
            if problem is not None:
                break
            sub = schema.get("properties", {}).get(key, schema.get("additionalProperties"))
            if sub is False:
                problem = f"has a field {key!r} the schema does not allow"
            elif isinstance(sub, dict):
                inner = _problem(sub, item, resolve)
                problem = None if inner is None else f"[{key!r}] {inner}"
        return problem
    if isinstance(value, list):
        problem = _container_problem(schema, value)
        items = schema.get("items")
        if problem is None and isinstance(items, dict):
            for index, item in enumerate(value):
                inner = _problem(items, item, resolve)
                if inner is not None:
                    return f"[{index}] {inner}"
        return problem
    return None


def _tagged_problem(
    schema: dict[str, Any], value: Any, branches: list[Any], problems: list[Any]
) -> str | None:
    """Of a tagged union's branches (a ``discriminator``), the problem of the one the
    value's tag names: what is wrong with it as what it says it is."""
    discriminator = schema.get("discriminator")
    if not isinstance(discriminator, dict) or not isinstance(value, dict):
        return None
    tag = value.get(discriminator.get("propertyName"))
    target = (discriminator.get("mapping") or {}).get(tag) if isinstance(tag, str) else None
    for branch, problem in zip(branches, problems, strict=True):
        if target is not None and isinstance(branch, dict) and branch.get("$ref") == target:
            return str(problem)
    return None


def _same(value: Any, choice: Any) -> bool:
    # JSON's 1 and 1.0 are one number, but true is not 1.
    if type(value) in (int, float) and type(choice) in (int, float):
        return bool(value == choice)
    return type(value) is type(choice) and bool(value == choice)


def _string_problem(schema: dict[str, Any], value: str) -> str | None:
    minimum = schema.get("minLength")
    if minimum is not None and len(value) < minimum:
        return f"must be at least {minimum} characters long, got {_short(value)}"
    maximum = schema.get("maxLength")
    if maximum is not None and len(value) > maximum:
        return f"must be at most {maximum} characters long, got {len(value)}"
    pattern = schema.get("pattern")
    if pattern is not None and re.search(pattern, value) is None:
        return f"must match the pattern {pattern!r}, got {_short(value)}"
    parsed_as = _FORMATS.get(schema.get("format", ""))
    if parsed_as is not None:
        try:
            msgspec.convert(value, parsed_as)
        except msgspec.ValidationError:
            return f"must be a {schema['format']} string, got {_short(value)}"
    return None


def _number_problem(schema: dict[str, Any], value: float) -> str | None:
    for keyword, sign in _BOUNDS:
        limit = schema.get(keyword)
        if limit is None or isinstance(limit, bool):
            continue
        if not _BOUND_HOLDS[sign](value, limit):
            return f"must be {sign} {limit}, got {value!r}"
    step = schema.get("multipleOf")
    if step and not math.isclose(value / step, round(value / step), rel_tol=0, abs_tol=1e-9):
        return f"must be a multiple of {step}, got {value!r}"
    return None


def _container_problem(schema: dict[str, Any], value: Any) -> str | None:
    if isinstance(value, dict):
        missing = [key for key in schema.get("required", ()) if key not in value]
        if missing:
            return (
                "is missing the required field"
                + ("s " if len(missing) > 1 else " ")
                + (", ".join(repr(key) for key in missing))
            )
        low, high, noun = schema.get("minProperties"), schema.get("maxProperties"), "fields"
    else:
        low, high, noun = schema.get("minItems"), schema.get("maxItems"), "items"
    if low is not None and len(value) < low:
        return f"must have at least {low} {noun}, got {len(value)}"
    if high is not None and len(value) > high:
        return f"must have at most {high} {noun}, got {len(value)}"
    return None
