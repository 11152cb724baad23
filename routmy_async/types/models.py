"""Types of ``GET /v1/models``.

rout.my is a router, so a model entry may carry the router fields (OpenRouter's shapes):
``name``, ``description``, ``context_length``, ``pricing``, ``architecture``, ``top_provider``
and ``supported_parameters``. They are typed and optional; whatever the server sends beyond
them (in the entry or inside ``pricing`` and the other sub-objects) stays in ``model.raw``.
"""

from __future__ import annotations

import math
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Final, Literal, TypeAlias

import msgspec

from ._base import ResponseObject, TopLevelResponse

__all__ = [
    "Model",
    "ModelArchitecture",
    "ModelList",
    "ModelPricing",
    "ModelTopProvider",
    "decode_model_list",
]

PriceName = Literal[
    "prompt",
    "completion",
    "request",
    "image",
    "web_search",
    "internal_reasoning",
    "input_cache_read",
    "input_cache_write",
]


def _to_float(value: str | float | None) -> float | None:
    """A price as a float: decimal text or a number; ``None`` when absent or not a number."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return None
    return float(value) if math.isfinite(value) else None


class ModelPricing(ResponseObject, frozen=True):
    """What a model costs, in USD: per token for ``prompt``, ``completion``,
    ``internal_reasoning`` and the ``input_cache_*`` prices, per request, per image, per web search.

    Each price is kept as sent: decimal text (``"0.000001"``, exact) or a number. The
    ``*_per_token`` properties and :meth:`as_float` give floats. A price the Struct does not
    declare is in ``model.raw["pricing"]``.
    """

    prompt: str | float | None = None
    completion: str | float | None = None
    request: str | float | None = None
    image: str | float | None = None
    web_search: str | float | None = None
    internal_reasoning: str | float | None = None
    input_cache_read: str | float | None = None
    input_cache_write: str | float | None = None

    @property
    def prompt_per_token(self) -> float | None:
        """USD per prompt token as a float (``None`` if not sent or not a number)."""
        return _to_float(self.prompt)

    @property
    def completion_per_token(self) -> float | None:
        """USD per completion token as a float (``None`` if not sent or not a number)."""
        return _to_float(self.completion)

    def as_float(self, price: PriceName) -> float | None:
        """The price named ``price`` as a float (``None`` if not sent or not a number).

        A router's ``"-1"`` (a price that varies, as for an auto-routing model) stays ``-1.0``.
        """
        if price not in self.__struct_fields__:
            raise ValueError(f"unknown price {price!r}; one of {', '.join(self.__struct_fields__)}")
        value: str | float | None = getattr(self, price)
        return _to_float(value)


class ModelArchitecture(ResponseObject, frozen=True):
    """What goes in and out: ``modality`` (``"text+image->text"``), the ``input_modalities``
    and ``output_modalities`` lists, the ``tokenizer`` family and the ``instruct_type``."""

    modality: str | None = None
    input_modalities: list[str] | None = None
    output_modalities: list[str] | None = None
    tokenizer: str | None = None
    instruct_type: str | None = None


class ModelTopProvider(ResponseObject, frozen=True):
    """The limits of the provider the router prefers for this model."""

    context_length: int | None = None
    max_completion_tokens: int | None = None
    is_moderated: bool | None = None


# architecture and supported_parameters are a dozen objects per model (lists of strings) that
# few callers read: a model keeps each as the JSON the server sent (a msgspec.Raw, one object)
# and decodes it on first read. Decoding them up front made decoding a list of 300 router
# models ~1.6x slower. Type checkers see the decoded types.
if TYPE_CHECKING:
    _LazyArchitecture: TypeAlias = "ModelArchitecture | None"
    _LazyParameters: TypeAlias = "list[str] | None"
else:
    _LazyArchitecture = _LazyParameters = msgspec.Raw

_NOT_SENT: Any = msgspec.Raw()

# The sub-objects whose keys are kept one by one when the whole does not fit its type.
_PARTS: Final[dict[str, type[ResponseObject]]] = {
    "pricing": ModelPricing,
    "architecture": ModelArchitecture,
    "top_provider": ModelTopProvider,
}


class _ModelFields(ResponseObject, frozen=True, gc=True, dict=True):
    """The fields of :class:`Model` as they are decoded (see the comment above)."""

    id: str
    object: str = "model"
    created: int = 0
    owned_by: str = ""
    token_multiplier: float | None = None
    is_available: bool | None = None
    name: str | None = None
    description: str | None = None
    context_length: int | None = None
    pricing: ModelPricing | None = None
    architecture: _LazyArchitecture = _NOT_SENT
    top_provider: ModelTopProvider | None = None
    supported_parameters: _LazyParameters = _NOT_SENT


_LAZY: Final[dict[str, tuple[Any, Any]]] = {
    # field: (its slot on _ModelFields, a lenient decoder of its JSON)
    name: (_ModelFields.__dict__[name], msgspec.json.Decoder(kind, strict=False).decode)
    for name, kind in [
        ("architecture", ModelArchitecture | None),
        ("supported_parameters", list[str] | None),
    ]
}


class Model(_ModelFields, frozen=True, gc=True, dict=True):
    """A model the router serves.

    ``token_multiplier`` scales quota use; ``is_available`` is ``False`` for a model that is
    listed but locked for this key. The router fields (``name``, ``description``,
    ``context_length``, ``pricing``, ``architecture``, ``top_provider``,
    ``supported_parameters``) are ``None`` when the server does not send them.
    ``architecture`` and ``supported_parameters`` are decoded on first read (``None`` if the
    server sent another type). ``raw`` holds every field the server sent for it, as sent, and
    a field not declared here is an attribute too (``model.some_new_field``).

    Until then those two are slices of the response body: a decoded model holds on to the body,
    as its list does.
    """

    def _lazy(self, name: str) -> Any:
        slot, decode = _LAZY[name]
        value = slot.__get__(self)
        if type(value) is not msgspec.Raw:
            return value  # built with Model(...), not decoded
        cache = self.__dict__
        if name in cache:
            return cache[name]
        decoded = None
        if value:
            try:
                decoded = decode(value)
            except msgspec.ValidationError:
                # Not the documented type: keep what fits (the rest is in model.raw, as sent).
                loose = msgspec.json.decode(value)
                part = _PARTS.get(name)
                if part is not None and isinstance(loose, dict):
                    decoded = msgspec.convert(_fitting(loose, part), part, strict=False)
        cache[name] = decoded
        return decoded

    @property  # type: ignore[misc]  # a field for type checkers, decoded lazily here
    def architecture(self) -> ModelArchitecture | None:
        """Modalities, tokenizer and instruct type (decoded on first read)."""
        value: ModelArchitecture | None = self._lazy("architecture")
        return value

    @property  # type: ignore[misc]  # a field for type checkers, decoded lazily here
    def supported_parameters(self) -> list[str] | None:
        """The request parameters the model accepts (decoded on first read)."""
        value: list[str] | None = self._lazy("supported_parameters")
        return value

    def to_dict(self) -> dict[str, Any]:
        """Return the model as plain JSON values (fields left at their default are omitted)."""
        # msgspec.to_builtins does not take the Raw fields; the JSON encoder writes them as is.
        result: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(self))
        return result

    def __hash__(self) -> int:
        # By id: the Raw fields (and the lists a router sends) are not hashable, and models
        # that compare equal have the same id.
        return hash((Model, self.id))

    def __repr__(self) -> str:
        parts = []
        for info in msgspec.structs.fields(self):
            value = getattr(self, info.name)
            if value is None or value == info.default:
                continue
            parts.append(f"{info.name}={value!r}")
        return f"Model({', '.join(parts)})"

    @property
    def raw(self) -> dict[str, Any]:
        """Everything the server sent for this model, modelled or not."""
        link = self.__dict__.get("_in_list") or _find_list(self)
        if link is not None:
            parent, position = link
            entries = parent.raw.get("data")
            if isinstance(entries, list) and position < len(entries):
                entry = entries[position]
                if isinstance(entry, dict):
                    return entry
        return self.to_dict()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not fields: a field the server sent that we do not model.
        if name.startswith("_"):
            raise AttributeError(name)
        raw = self.raw
        if name in raw:
            return raw[name]
        raise AttributeError(f"Model has no attribute {name!r} and the server sent no such field")


# Weak references to the most recent lists (frozen Structs holding lists are unhashable,
# so a WeakSet cannot hold them).
_RECENT_LISTS: deque[weakref.ref[ModelList]] = deque(maxlen=64)


def _find_list(model: Model) -> tuple[ModelList, int] | None:
    """The live ModelList holding ``model`` and its position (cached on the model)."""
    for reference in reversed(_RECENT_LISTS):
        models = reference()
        if models is None:
            continue
        for position, candidate in enumerate(models.data):
            if candidate is model:
                link = (models, position)
                model.__dict__["_in_list"] = link
                return link
    return None


class ModelList(TopLevelResponse, frozen=True, weakref=True):
    """The list of models (``object: "list"``)."""

    object: str = "list"
    data: list[Model] = []

    def __post_init__(self) -> None:
        # Linking 300 models to their raw entries up front would cost more than decoding
        # them; model.raw finds its list on first use instead.
        _RECENT_LISTS.append(weakref.ref(self))

    def ids(self) -> list[str]:
        """Return the model ids, in the order the server listed them."""
        return [model.id for model in self.data]


# -- decoding that a mistyped router field cannot break -------------------------------------

_decode_strict = msgspec.json.Decoder(ModelList).decode
_decode_lax = msgspec.json.Decoder(ModelList, strict=False).decode

# The router fields decoded with the list, and their types (the lazy ones are kept as sent
# and cannot fail the list).
_CHECKED: Final[dict[str, Any]] = {
    "name": str | None,
    "description": str | None,
    "context_length": int | None,
    "pricing": ModelPricing | None,
    "top_provider": ModelTopProvider | None,
}


def _fits(value: Any, kind: Any) -> bool:
    try:
        msgspec.convert(value, kind, strict=False)
    except msgspec.ValidationError:
        return False
    return True


def _fitting(value: dict[str, Any], part: type[ResponseObject]) -> dict[str, Any]:
    """The keys of a sub-object that are fields of ``part`` and fit their types."""
    fields = {info.encode_name: info.type for info in msgspec.structs.fields(part)}
    return {k: v for k, v in value.items() if k in fields and _fits(v, fields[k])}


def _salvage(entry: Any) -> Any:
    """The entry without the router fields that do not fit their types; inside ``pricing``
    and ``top_provider`` only the keys that do not fit are left out."""
    if not isinstance(entry, dict):
        return entry
    fixed = dict(entry)
    for key, kind in _CHECKED.items():
        if key not in fixed:
            continue
        value = fixed.pop(key)
        part = _PARTS.get(key)
        if part is not None and isinstance(value, dict):
            value = _fitting(value, part)
        if _fits(value, kind):
            fixed[key] = value
    return fixed


def decode_model_list(body: bytes) -> ModelList:
    """Decode a ``GET /models`` body: typed and strict first (the fast path), and only if that
    fails, leniently, so that a mistyped router field cannot fail the whole list.

    The lenient pass converts what converts (``"8192"`` and ``8192.0`` to ``8192``) and leaves
    out of the typed model each router field that still does not fit (``context_length:
    "unknown"``, ``pricing: "free"``); ``model.raw`` keeps it as sent. A list that fails for
    another reason (a model without an ``id``) still raises, naming that reason.

    :raises msgspec.ValidationError: the body is JSON but not a models list.
    :raises msgspec.DecodeError: the body is not JSON.
    """
    try:
        return _decode_strict(body)
    except msgspec.ValidationError as error:
        strict_error = error
    document = msgspec.json.decode(body)
    entries = document.get("data") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise strict_error
    # What still fails here is not a router field: its error names the real problem.
    fixed = {**document, "data": [_salvage(entry) for entry in entries]}
    return _decode_lax(msgspec.json.encode(fixed))
