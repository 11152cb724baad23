"""Typed partials: the partial JSON value as the user's type, every field optional.

``TypedPartial`` listens to a ``PartialJSON`` parser and keeps a mirror of its live value in
the requested type (a ``msgspec.Struct`` or a Pydantic model, and the lists and dicts of them
that the type names). It is built in place as the parser reports progress, so reading it after
every delta costs O(1), plus the string in progress:

- an object of a Struct (or model) type is a ``Partial<Name>`` instance while it is open: every
  field ``None`` until its value is complete, then converted and validated with the field's
  own type (dates, enums, constrained numbers, nested Structs); once the object closes it is
  replaced by a real instance of the type, built from the fields already converted;
- a list is the list of its converted items, growing; a dict, likewise;
- a ``str`` field shows its string as far as it has arrived; a field whose type needs the
  whole string (a ``datetime``, an enum, a UUID) stays ``None`` until the string is complete;
- a value that completes but does not fit its type stays ``None`` (a list item too, so indices
  agree with the JSON): the final parse reports it, and eager validation reports it at once;
- a type this module cannot follow inside (a union of Structs, a tagged union) is ``None``
  until its whole value is complete, then converted at once.

Like ``PartialJSON.value``, the typed value is one live object: a kept reference shows later
deltas, and a ``Partial<Name>`` object, once complete, is swapped in its parent for the real
instance (the partial object keeps the fields it had). Pydantic is imported only when a model
type is given.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Callable
from typing import Any

import msgspec

from ._partial_json import PartialJSON, Path
from ._pydantic import is_model_type

__all__ = ["TypedPartial", "partial_type"]

_FAILED: Any = object()  # a completed value that does not fit its type
_T = typing.TypeVar("_T")


class _Shape:
    """How to build one JSON container of a type: its partial object, its children's types."""

    kind: type[Any]  # dict or list: the JSON container this type reads from

    def start(self) -> Any:
        raise NotImplementedError

    def child(self, key: str | int) -> tuple[Any, _Shape | None] | None:
        """``(child type, child shape or None)``, or None for a key the type does not have."""
        raise NotImplementedError

    def put(self, partial: Any, key: str | int, value: Any, *, replace: bool) -> None:
        raise NotImplementedError

    def finish(self, partial: Any, plain: Any) -> Any:
        """The complete value, or ``_FAILED``."""
        raise NotImplementedError


class _StructShape(_Shape):
    kind = dict

    def __init__(self, struct_type: type[msgspec.Struct]) -> None:
        self.struct_type = struct_type
        self.partial_type = partial_type(struct_type)
        self.fields: dict[str | int, tuple[str, Any]] = {
            field.encode_name: (field.name, field.type)
            for field in msgspec.structs.fields(struct_type)
        }
        self.forbids_unknown = struct_type.__struct_config__.forbid_unknown_fields

    def start(self) -> Any:
        return self.partial_type()

    def child(self, key: str | int) -> tuple[Any, _Shape | None] | None:
        field = self.fields.get(key)
        return None if field is None else (field[1], shape_of(field[1]))

    def put(self, partial: Any, key: str | int, value: Any, *, replace: bool) -> None:
        field = self.fields.get(key)
        if field is not None:
            setattr(partial, field[0], value)

    def finish(self, partial: Any, plain: Any) -> Any:
        if self.forbids_unknown and not plain.keys() <= self.fields.keys():
            return _FAILED
        values = {
            name: getattr(partial, name) for key, (name, _) in self.fields.items() if key in plain
        }
        try:
            return self.struct_type(**values)
        except (TypeError, ValueError):
            # A field is missing or failed; msgspec says which in the final parse.
            return _FAILED


class _ModelShape(_Shape):
    kind = dict

    def __init__(self, model: Any) -> None:
        self.model = model
        self.partial_type = partial_type(model)
        self.fields: dict[str | int, tuple[str, Any]] = {
            (info.alias or name): (name, _annotated(info))
            for name, info in model.model_fields.items()
        }

    def start(self) -> Any:
        return self.partial_type.model_construct()

    def child(self, key: str | int) -> tuple[Any, _Shape | None] | None:
        field = self.fields.get(key)
        return None if field is None else (field[1], shape_of(field[1]))

    def put(self, partial: Any, key: str | int, value: Any, *, replace: bool) -> None:
        field = self.fields.get(key)
        if field is not None:
            setattr(partial, field[0], value)

    def finish(self, partial: Any, plain: Any) -> Any:
        # Validate from the converted fields: nested models pass through as they are, and the
        # model's own validators (across fields) run, as they would on the whole answer.
        values = {alias: getattr(partial, name) for alias, (name, _) in self.fields.items()}
        present = {alias: value for alias, value in values.items() if alias in plain}
        return _convert(present, self.model)


class _ListShape(_Shape):
    kind = list

    def __init__(self, item_type: Any) -> None:
        self.item_type = item_type
        self.item_shape = shape_of(item_type)

    def start(self) -> Any:
        return []

    def child(self, key: str | int) -> tuple[Any, _Shape | None] | None:
        return self.item_type, self.item_shape

    def put(self, partial: Any, key: str | int, value: Any, *, replace: bool) -> None:
        if replace:
            partial[-1] = value
        else:
            partial.append(value)

    def finish(self, partial: Any, plain: Any) -> Any:
        return partial


class _DictShape(_Shape):
    kind = dict

    def __init__(self, value_type: Any) -> None:
        self.value_type = value_type
        self.value_shape = shape_of(value_type)

    def start(self) -> Any:
        return {}

    def child(self, key: str | int) -> tuple[Any, _Shape | None] | None:
        return self.value_type, self.value_shape

    def put(self, partial: Any, key: str | int, value: Any, *, replace: bool) -> None:
        partial[key] = value

    def finish(self, partial: Any, plain: Any) -> Any:
        return partial


class _Frame:
    """One open container: its plain dict or list, its type, and its partial mirror."""

    __slots__ = ("failed", "partial", "plain", "shape", "shown", "type")

    def __init__(self, plain: Any, target: Any, shape: _Shape | None, partial: Any) -> None:
        self.plain = plain
        self.type = target
        self.shape = shape  # None: a type followed only once its value is complete
        self.partial = partial
        self.shown = False  # whether a string in progress is in the partial list already
        self.failed = False  # whether a value inside did not fit its type


class TypedPartial:
    """A ``JSONListener`` that keeps the parser's partial value as ``target``, in place.

    :param target: a ``msgspec.Struct`` or Pydantic model type (or a list/dict of them).
    """

    def __init__(self, target: Any) -> None:
        self._target = target
        self._root_shape = shape_of(target)
        self._frames: list[_Frame] = []
        self._value: Any = None

    def value(self, parser: PartialJSON) -> Any:
        """The typed partial so far (``None`` before the value begins), with the string in
        progress shown where its type is a plain ``str``."""
        progress = parser.string_in_progress()
        if progress is not None and self._frames:
            self._show(*progress)
        return self._value

    # -- JSONListener --------------------------------------------------------------------

    def opened(self, path: Path, container: dict[str, Any] | list[Any]) -> None:
        target, shape = self._slot_type(path)
        if shape is not None and not isinstance(container, shape.kind):
            shape = None  # the JSON has another shape than the type: convert it when complete
        partial = None if shape is None else shape.start()
        if partial is not None:
            self._put(path, partial)
        self._frames.append(_Frame(container, target, shape, partial))

    def completed(self, path: Path, value: Any) -> None:
        frames = self._frames
        if frames and frames[-1].plain is value:
            frame = frames.pop()
            if frame.type is _UNKNOWN:
                return
            if frame.shape is None:
                typed = _convert(value, frame.type)
            elif frame.failed:
                typed = _FAILED
            else:
                typed = frame.shape.finish(frame.partial, value)
            if typed is _FAILED and frame.partial is not None:
                self._fail()
                typed = frame.partial  # keep the fields that did fit
            self._place(path, typed, replace=frame.partial is not None)
            return
        target, _ = self._slot_type(path)
        if target is _UNKNOWN:
            return
        typed = value if target is Any else _convert(value, target)
        replace = bool(frames) and frames[-1].shown
        if frames:
            frames[-1].shown = False
        self._place(path, typed, replace=replace)

    # -- placing -------------------------------------------------------------------------

    def _slot_type(self, path: Path) -> tuple[Any, _Shape | None]:
        if not self._frames:
            return self._target, self._root_shape
        frame = self._frames[-1]
        if frame.shape is None:
            return _UNKNOWN, None  # inside a value followed only as a whole
        child = frame.shape.child(path[-1])
        return (_UNKNOWN, None) if child is None else child

    def _place(self, path: Path, typed: Any, *, replace: bool) -> None:
        if typed is _FAILED:
            self._fail()
            typed = None  # a list keeps its indices in step with the JSON
        self._put(path, typed, replace=replace)

    def _fail(self) -> None:
        if self._frames:
            self._frames[-1].failed = True

    def _put(self, path: Path, value: Any, *, replace: bool = False) -> None:
        if not self._frames:
            self._value = value
            return
        frame = self._frames[-1]
        if frame.shape is not None:
            frame.shape.put(frame.partial, path[-1], value, replace=replace)

    def _show(self, path: Path, text: str) -> None:
        frame = self._frames[-1]
        if frame.shape is None:
            return
        child = frame.shape.child(path[-1])
        if child is None or not _shows_growing_string(child[0]):
            return
        frame.shape.put(frame.partial, path[-1], text, replace=frame.shown)
        frame.shown = True


_UNKNOWN: Any = object()  # no type: a key the type does not have, or inside an opaque value


def _annotated(info: Any) -> Any:
    """A Pydantic field's annotation with its constraints (``Field(gt=0)``) attached."""
    if not info.metadata:
        return info.annotation
    arguments = (info.annotation, *info.metadata)
    return typing.Annotated[arguments]


def _without_none(target: Any) -> Any:
    """``X | None`` -> ``X``; any other type as it is."""
    args = typing.get_args(target)
    if typing.get_origin(target) in (typing.Union, _union_type()) and type(None) in args:
        rest = [arg for arg in args if arg is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return target


def _union_type() -> Any:
    import types

    return getattr(types, "UnionType", typing.Union)


def _unannotated(target: Any) -> Any:
    return typing.get_args(target)[0] if typing.get_origin(target) is typing.Annotated else target


def _memo(function: Callable[[Any], _T]) -> Callable[[Any], _T]:
    """Remember ``function`` per type; an annotation that cannot be hashed (a list in its
    ``Annotated`` extras) is worked out every time instead."""
    cache: dict[Any, _T] = {}

    def remembered(target: Any) -> _T:
        try:
            return cache[target]
        except KeyError:
            result = cache[target] = function(target)
            return result
        except TypeError:
            return function(target)

    return remembered


@_memo
def shape_of(target: Any) -> _Shape | None:
    """How to follow ``target`` inside its JSON container, or None to convert it whole."""
    inner = _unannotated(_without_none(_unannotated(target)))
    origin = typing.get_origin(inner)
    if isinstance(inner, type) and issubclass(inner, msgspec.Struct):
        config = inner.__struct_config__
        if config.array_like or config.tag is not None:
            return None
        return _StructShape(inner)
    if is_model_type(inner):
        return _ModelShape(inner)
    if origin is list:
        (item,) = typing.get_args(inner) or (Any,)
        return _ListShape(item)
    if origin is dict:
        _, value = typing.get_args(inner) or (str, Any)
        return _DictShape(value)
    return None


def _shows_growing_string(target: Any) -> bool:
    """Whether a field of this type shows a string before it is complete: only a plain
    ``str`` (or ``Any``) does; a date, an enum or a constrained string waits for the whole."""
    return _without_none(target) in (str, Any)


@_memo
def _converter(target: Any) -> Callable[[Any], Any]:
    if _needs_pydantic(target):
        from pydantic import TypeAdapter

        return TypeAdapter(target).validate_python
    return functools.partial(_msgspec_convert, target=target)


def _msgspec_convert(value: Any, *, target: Any) -> Any:
    return msgspec.convert(value, target)


def _needs_pydantic(target: Any) -> bool:
    from ._pydantic import uses_pydantic

    return uses_pydantic(target)


def _convert(value: Any, target: Any) -> Any:
    """``value`` converted and validated as ``target``, or ``_FAILED``."""
    try:
        return _converter(target)(value)
    except (msgspec.ValidationError, ValueError, TypeError):
        return _FAILED


@functools.lru_cache(maxsize=256)
def partial_type(target: Any) -> type[Any]:
    """``Partial<Name>``: the fields of a Struct or a Pydantic model, every one optional and
    ``None`` until set (the type of an object still arriving)."""
    name = f"Partial{target.__name__}"
    if is_model_type(target):
        from pydantic import create_model

        fields: dict[str, Any] = {field: (Any, None) for field in target.model_fields}
        model: type[Any] = create_model(name, **fields)
        model.__doc__ = f"{target.__name__} while it streams: every field None until complete."
        return model
    struct: type[Any] = msgspec.defstruct(
        name,
        [(field.name, Any, None) for field in msgspec.structs.fields(target)],
        kw_only=True,
        module=target.__module__,
    )
    struct.__doc__ = f"{target.__name__} while it streams: every field None until complete."
    return struct
