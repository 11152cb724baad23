"""Typed partials: the partial JSON value as the user's type, every field optional.

``TypedPartial`` listens to a ``PartialJSON`` parser and keeps a mirror of its live value in
the requested type (a ``msgspec.Struct`` or a Pydantic model, and the lists and dicts of them
that the type names). It is built in place as the parser reports progress, so reading it after
every delta costs O(1), plus the string in progress:

- an object of a Struct (or model) type is a ``Partial<Name>`` instance while it is open: every
  field ``None`` until its value is complete, then converted and validated with the field's
  own type (dates, enums, constrained numbers, nested Structs); once the object closes it is
  replaced by a real instance of the type (a Struct built from the fields already converted, a
  Pydantic model validated from the object's JSON, so each validator runs once). The object's
  own after-code (``__post_init__``, an after model validator) runs then, not while it is open;
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

from ._partial_json import Key, PartialJSON
from ._pydantic import is_model_type

__all__ = ["TypedPartial", "partial_type"]

_FAILED: Any = object()  # a completed value that does not fit its type
_UNSET: Any = object()
_T = typing.TypeVar("_T")


class _Slot:
    """Where a value goes: a field of a Struct or model, or any item of a list or dict. What
    it needs (the shape of its type, its converter) is worked out once, when first needed.

    :param owner: the Pydantic model the value belongs to (a field of it, or an item of a
        field's list or dict): it is converted as that model's ``model_validate_json`` would
        (JSON mode, the model's config), so a partial shows what the final parse gives.
        ``None``: msgspec's conversion, as a Struct's final decode.
    """

    __slots__ = (
        "_converter",
        "_shape",
        "attribute",
        "deferred",
        "grows",
        "owner",
        "plain",
        "type",
    )

    def __init__(
        self, attribute: str, target: Any, owner: Any = None, *, deferred: bool = False
    ) -> None:
        self.attribute = attribute
        self.type = target
        self.owner = owner
        # A field the model's own Python code (a field validator, a str_* config) reads:
        # None until its object closes, never a value that the final parse would change.
        self.deferred = deferred
        bare = _without_none(target)
        self.plain = None if deferred or bare not in (str, int, float, bool) else bare
        self.grows = not deferred and bare in (str, Any)  # shows its string before complete
        self._shape: Any = None if deferred else _UNSET
        self._converter: Any = None

    @property
    def shape(self) -> _Shape | None:
        if self._shape is _UNSET:
            self._shape = shape_of((self.type, self.owner))
        shape: _Shape | None = self._shape
        return shape

    def convert(self, value: Any) -> Any:
        """``value`` converted and validated as this slot's type, or ``_FAILED``."""
        plain = self.plain
        # The common fields cost a type check, not a call into a validator.
        if plain is not None and type(value) is plain:
            return value
        if plain is float and type(value) is int:
            return float(value)
        if self.type is Any or self.deferred:
            return None if self.deferred else value
        if self._converter is None:
            self._converter = _converter((self.type, self.owner))
        try:
            return self._converter(value)
        except (msgspec.ValidationError, ValueError, TypeError):
            return _FAILED

    def problem(self, value: Any) -> str:
        """Why ``value`` does not convert to this slot's type, in words."""
        if self._converter is None:
            self._converter = _converter((self.type, self.owner))
        try:
            self._converter(value)
        except (msgspec.ValidationError, ValueError, TypeError) as error:
            text = str(error).split("\n")[0]
            return f"cannot be {_type_name(self.type)}: {text}"
        return f"cannot be {_type_name(self.type)}"  # pragma: no cover - convert() said it fails


class _Shape:
    """How to build one JSON container of a type: its partial object, its children's slots."""

    kind: type[Any]  # dict or list: the JSON container this type reads from

    def start(self) -> Any:
        raise NotImplementedError

    def child(self, key: Key) -> _Slot | None:
        """The slot of ``key``, or None for a key the type does not have."""
        raise NotImplementedError

    def put(self, partial: Any, slot: _Slot, key: Key, value: Any, *, replace: bool) -> None:
        raise NotImplementedError

    def finish(self, partial: Any, plain: Any) -> Any:
        """The complete value, or ``_FAILED``."""
        raise NotImplementedError


class _StructShape(_Shape):
    kind = dict

    def __init__(self, struct_type: type[msgspec.Struct]) -> None:
        self.struct_type = struct_type
        self.partial_type = partial_type(struct_type)
        self.fields: dict[Key, _Slot] = {
            field.encode_name: _Slot(field.name, field.type)
            for field in msgspec.structs.fields(struct_type)
        }
        self.forbids_unknown = struct_type.__struct_config__.forbid_unknown_fields

    def start(self) -> Any:
        return self.partial_type()

    def child(self, key: Key) -> _Slot | None:
        return self.fields.get(key)

    def put(self, partial: Any, slot: _Slot, key: Key, value: Any, *, replace: bool) -> None:
        setattr(partial, slot.attribute, value)

    def finish(self, partial: Any, plain: Any) -> Any:
        if self.forbids_unknown and not plain.keys() <= self.fields.keys():
            return _FAILED
        values = {
            slot.attribute: getattr(partial, slot.attribute)
            for key, slot in self.fields.items()
            if key in plain
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
        own_code = _fields_read_by_own_code(model)
        self.fields: dict[Key, _Slot] = {
            (info.alias or name): _Slot(
                name, _annotated(info), model, deferred="*" in own_code or name in own_code
            )
            for name, info in model.model_fields.items()
        }

    def start(self) -> Any:
        return self.partial_type.model_construct()

    def child(self, key: Key) -> _Slot | None:
        return self.fields.get(key)

    def put(self, partial: Any, slot: _Slot, key: Key, value: Any, *, replace: bool) -> None:
        setattr(partial, slot.attribute, value)

    def finish(self, partial: Any, plain: Any) -> Any:
        # The object as the final parse reads it: its JSON, once, as it closes. Validating
        # the fields already converted instead would run their validators a second time
        # (an AfterValidator that multiplies, twice), and the model's own after-validators
        # (across fields, or rewriting one) run here once, on the whole object.
        try:
            return self.model.model_validate_json(msgspec.json.encode(plain))
        except (ValueError, TypeError):  # Pydantic's ValidationError is a ValueError
            return _FAILED


class _ListShape(_Shape):
    kind = list

    def __init__(self, item_type: Any, owner: Any) -> None:
        self.item = _Slot("", item_type, owner)

    def start(self) -> Any:
        return []

    def child(self, key: Key) -> _Slot | None:
        return self.item

    def put(self, partial: Any, slot: _Slot, key: Key, value: Any, *, replace: bool) -> None:
        if replace:
            partial[-1] = value
        else:
            partial.append(value)

    def finish(self, partial: Any, plain: Any) -> Any:
        return partial


class _DictShape(_Shape):
    kind = dict

    def __init__(self, value_type: Any, owner: Any) -> None:
        self.value = _Slot("", value_type, owner)

    def start(self) -> Any:
        return {}

    def child(self, key: Key) -> _Slot | None:
        return self.value

    def put(self, partial: Any, slot: _Slot, key: Key, value: Any, *, replace: bool) -> None:
        partial[key] = value

    def finish(self, partial: Any, plain: Any) -> Any:
        return partial


class _Frame:
    """One open container: its plain dict or list, its slot, and its partial mirror."""

    __slots__ = ("failed", "key", "partial", "plain", "shape", "shown", "slot")

    def __init__(
        self, plain: Any, slot: _Slot | None, shape: _Shape | None, partial: Any, key: Key
    ) -> None:
        self.key = key  # where the container sits in its parent (for eager errors' paths)
        self.plain = plain
        self.slot = slot  # None: a key the type does not have, or inside an opaque value
        self.shape = shape  # None: a type followed only once its value is complete
        self.partial = partial
        self.shown = False  # whether a string in progress is in the partial list already
        self.failed = False  # whether a value inside did not fit its type


class TypedPartial:
    """A ``JSONListener`` that keeps the parser's partial value as ``target``, in place.

    :param target: a ``msgspec.Struct`` or Pydantic model type (or a list/dict of them).
    :param eager: a completed field that does not convert to its type raises
        ``FieldValidationError`` at once (what a JSON schema cannot say: a ``datetime``
        string, a constrained Pydantic type).
    """

    def __init__(self, target: Any, *, eager: bool = False) -> None:
        self._eager = eager
        self._root = _Slot("", target)
        self._frames: list[_Frame] = []
        self._value: Any = None

    def value(self, parser: PartialJSON) -> Any:
        """The typed partial so far (``None`` before the value begins), with the string in
        progress shown where its type is a plain ``str``."""
        if self._frames and parser.in_string:
            frame = self._frames[-1]
            if frame.shape is not None:
                key, text = parser.string_in_progress()  # type: ignore[misc]
                slot = frame.shape.child(key)
                if slot is not None and slot.grows:
                    frame.shape.put(frame.partial, slot, key, text, replace=frame.shown)
                    frame.shown = True
        return self._value

    # -- JSONListener --------------------------------------------------------------------

    def opened(self, key: Key, container: dict[str, Any] | list[Any]) -> None:
        slot = self._slot_of(key)
        shape = None if slot is None else slot.shape
        if shape is not None and not isinstance(container, shape.kind):
            shape = None  # the JSON has another shape than the type: convert it when complete
        partial = None if shape is None else shape.start()
        if partial is not None:
            self._put(slot, key, partial, replace=False)  # type: ignore[arg-type]
        self._frames.append(_Frame(container, slot, shape, partial, key))

    def completed(self, key: Key, value: Any) -> None:
        frames = self._frames
        if frames and frames[-1].plain is value:
            frame = frames.pop()
            slot = frame.slot
            if slot is None:
                return
            if frame.shape is None:
                typed = slot.convert(value)
            elif frame.failed:
                typed = _FAILED
            else:
                typed = frame.shape.finish(frame.partial, value)
            if typed is _FAILED and frame.partial is not None:
                self._fail()
                typed = frame.partial  # keep the fields that did fit
            self._place(slot, key, typed, replace=frame.partial is not None)
            return
        if not frames:
            typed = self._root.convert(value)  # a bare scalar answer
            self._value = None if typed is _FAILED else typed
            return
        frame = frames[-1]
        shape = frame.shape
        slot = None if shape is None else shape.child(key)
        if slot is None:
            return
        # Written out: this runs for every value of every typed stream.
        typed = value if type(value) is slot.plain else slot.convert(value)
        if typed is _FAILED:
            if self._eager:
                self._raise(key, slot.problem(value))
            frame.failed = True
            typed = None  # a list keeps its indices in step with the JSON
        shape.put(frame.partial, slot, key, typed, replace=frame.shown)  # type: ignore[union-attr]
        frame.shown = False

    def accepts(self, key: Key, value: Any) -> bool:
        """Whether the completed scalar ``value`` at ``key`` of the innermost open container
        converts to its type (False where the type is not followed there)."""
        if not self._frames:
            return self._root.convert(value) is not _FAILED
        shape = self._frames[-1].shape
        slot = None if shape is None else shape.child(key)
        # A deferred field is the model's own code's to judge: no second opinion here.
        return slot is not None and not slot.deferred and slot.convert(value) is not _FAILED

    def _raise(self, key: Key, reason: str) -> None:
        from ._eager_check import format_path
        from ._exceptions import FieldValidationError

        parents = [frame.key for frame in self._frames if frame.key is not None]
        path = tuple(parents) if key is None else (*parents, key)
        raise FieldValidationError(
            f"{format_path(path)} {reason}", path=path, reason=reason, content=None
        )

    # -- placing -------------------------------------------------------------------------

    def _slot_of(self, key: Key) -> _Slot | None:
        if not self._frames:
            return self._root
        shape = self._frames[-1].shape
        return None if shape is None else shape.child(key)

    def _place(self, slot: _Slot, key: Key, typed: Any, *, replace: bool) -> None:
        if typed is _FAILED:
            self._fail()
            typed = None  # a list keeps its indices in step with the JSON
        self._put(slot, key, typed, replace=replace)

    def _fail(self) -> None:
        if self._frames:
            self._frames[-1].failed = True

    def _put(self, slot: _Slot, key: Key, value: Any, *, replace: bool) -> None:
        if not self._frames:
            self._value = value
            return
        frame = self._frames[-1]
        if frame.shape is not None:
            frame.shape.put(frame.partial, slot, key, value, replace=replace)


def _fields_read_by_own_code(model: Any) -> set[str]:
    """The fields of a Pydantic model whose value its own Python code reads or rewrites: field
    validators (``"*"``: all), and every field under a ``str_*`` config that rewrites strings.
    A ``before``/``wrap`` model validator may rewrite any field: all of them."""
    decorators = model.__pydantic_decorators__
    config = model.model_config
    if any(config.get(key) for key in ("str_strip_whitespace", "str_to_upper", "str_to_lower")):
        return {"*"}
    if any(v.info.mode in ("before", "wrap") for v in decorators.model_validators.values()):
        return {"*"}
    fields: set[str] = set()
    for validator in (*decorators.field_validators.values(), *decorators.validators.values()):
        fields.update(validator.info.fields)
    return fields


def _type_name(target: Any) -> str:
    """``an int`` for ``int``, ``Annotated[int, Meta(ge=0)]`` and ``int | None`` alike."""
    bare = _unannotated(_without_none(_unannotated(target)))
    name = getattr(bare, "__name__", None) if typing.get_origin(bare) is None else None
    if not name:
        return repr(bare)
    return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name}"


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
def shape_of(typed: tuple[Any, Any]) -> _Shape | None:
    """How to follow a type (``(type, owner)``: see ``_Slot``) inside its JSON container, or
    None to convert it whole."""
    target, owner = typed
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
        return _ListShape(item, owner)
    if origin is dict:
        _, value = typing.get_args(inner) or (str, Any)
        return _DictShape(value, owner)
    return None


@_memo
def _converter(typed: tuple[Any, Any]) -> Callable[[Any], Any]:
    """The conversion of a completed plain JSON value to a type (``(type, owner)``)."""
    target, owner = typed
    if owner is not None or _needs_pydantic(target):
        return _pydantic_json_converter(target, owner)
    return functools.partial(_msgspec_convert, target=target)


def _pydantic_json_converter(target: Any, owner: Any) -> Callable[[Any], Any]:
    """Pydantic's JSON-mode validation, as ``model_validate_json`` runs it on the whole answer
    (in Python mode a strict ``datetime`` refuses a string, and ``bytes`` differ), under the
    owning model's config where the type takes one (a model or a dataclass has its own)."""
    from pydantic import PydanticUserError, TypeAdapter

    adapter: Any = None
    if owner is not None:
        try:
            adapter = TypeAdapter(target, config=owner.model_config)
        except PydanticUserError:
            pass
    if adapter is None:
        adapter = TypeAdapter(target)
    validate = adapter.validate_json
    encode = msgspec.json.encode
    return lambda value: validate(encode(value))


def _msgspec_convert(value: Any, *, target: Any) -> Any:
    return msgspec.convert(value, target)


def _needs_pydantic(target: Any) -> bool:
    from ._pydantic import uses_pydantic

    return uses_pydantic(target)


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
