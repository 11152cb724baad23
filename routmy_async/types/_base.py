"""Base classes of the response Structs: frozen, keyword-only, and nothing the server sent lost.

msgspec drops JSON keys a Struct does not declare. Top-level responses therefore keep the
raw body they were decoded from: ``.raw`` gives the whole answer as plain JSON values (decoded
once, on first use), and an attribute the Struct does not declare is looked up there, so a field
the API adds tomorrow is ``completion.some_new_field`` today.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, TypeVar

if TYPE_CHECKING:
    from .._http._ratelimit import RateLimitHeaders

import msgspec

__all__ = [
    "RAW_JSON_KEY",
    "ResponseObject",
    "TopLevelResponse",
    "decode_lenient",
    "output_parsed_of",
    "raw_json_of",
    "set_output_parsed",
    "set_transcript",
    "transcript_of",
]

T = TypeVar("T")

_MISSING = object()
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})

# What the SDK knows about an answer beyond its fields (its bytes, request id, status, headers,
# a run's transcript, a parse's result) lives in the instance __dict__ that dict=True gives:
# equality, hashing, pickling, copies and encoding see only what the server sent. This module
# alone names the keys; the rest of the package goes through the typed functions below.
RAW_JSON_KEY: Final = "_raw_json"
"""The key of an answer's own JSON bytes. Named for the stream's per-chunk write alone: a
function call per chunk is over the hot path's budget."""
_REQUEST_ID: Final = "_request_id"
_STATUS: Final = "_status"
_HEADERS: Final = "_headers"
_RAW_DICT: Final = "_raw_dict"
_TRANSCRIPT: Final = "_transcript"
_OUTPUT_PARSED: Final = "_output_parsed"


def _plain_value(value: Any) -> Any:
    """msgspec's hook for values it does not turn into builtins itself: a field kept as raw
    JSON until first read (``Model.architecture``), and a Pydantic model (or Pydantic
    dataclass) in ``message.parsed``, which becomes its own JSON form without importing
    Pydantic here."""
    if isinstance(value, msgspec.Raw):
        return msgspec.json.decode(value) if value else None
    serializer = getattr(type(value), "__pydantic_serializer__", None)
    if serializer is None:
        raise TypeError(f"cannot encode a {type(value).__name__} as JSON")
    return serializer.to_python(value, mode="json")


_encode_json = msgspec.json.Encoder(enc_hook=_plain_value).encode


class ResponseObject(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True, gc=False):
    """A part of an API response.

    ``omit_defaults`` keeps re-encoded objects (an assistant message sent back in a tool loop)
    free of the ``null`` fields the server never sent. ``gc=False`` spares the garbage
    collector thousands of stream objects: decoded JSON cannot form reference cycles.
    """

    def __repr__(self) -> str:
        # Show what the server sent, not the dozen fields left at None.
        parts = []
        for info in msgspec.structs.fields(self):
            value = getattr(self, info.name)
            if info.default is not msgspec.NODEFAULT and value == info.default:
                continue
            if info.default_factory is not msgspec.NODEFAULT and value == info.default_factory():
                continue
            parts.append(f"{info.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_dict(self) -> dict[str, Any]:
        """Return the object as plain JSON values (fields left at their default are omitted).

        Ready for ``json.dumps`` or a FastAPI endpoint; ``parsed`` objects (Structs, Pydantic
        models) become their JSON form too.
        """
        result: dict[str, Any] = msgspec.to_builtins(self, enc_hook=_plain_value)
        return result

    def keys(self) -> list[str]:
        """The keys of :meth:`to_dict`: with ``__getitem__``, ``dict(obj)`` works, and so does
        returning a result from a FastAPI endpoint without ``response_model`` (its encoder
        would otherwise fall back to the object's internals)."""
        return list(self.to_dict())

    def __getitem__(self, key: str) -> Any:
        """``obj["choices"]``: the value of :meth:`to_dict` under ``key``."""
        return self.to_dict()[key]

    def to_json(self) -> bytes:
        """Return the object encoded as JSON bytes: what :meth:`to_dict` holds, encoded once.

        ``Response(content=completion.to_json(), media_type="application/json")`` returns it
        from a FastAPI or Starlette endpoint without a second encoding pass.
        """
        return _encode_json(self)


class TopLevelResponse(ResponseObject, frozen=True, gc=True, dict=True):
    """A whole response body: it keeps its raw JSON and the request id it came with.

    Subclasses repeat ``frozen=True``: mypy's dataclass_transform does not inherit it.
    """

    @property
    def status_code(self) -> int | None:
        """The HTTP status of the answer (``None`` for an object not built from one)."""
        value: int | None = self.__dict__.get(_STATUS)
        return value

    @property
    def headers(self) -> Mapping[str, str]:
        """The HTTP headers of the answer (case-insensitive), as openai-python's
        ``with_raw_response`` gives them; empty for an object not built from one."""
        value: Mapping[str, str] = self.__dict__.get(_HEADERS, _NO_HEADERS)
        return value

    @property
    def rate_limits(self) -> RateLimitHeaders:
        """The ``x-ratelimit-*`` headers of the answer, parsed (fields ``None`` when absent)."""
        from .._http._ratelimit import parse_rate_limit_headers

        return parse_rate_limit_headers(self.headers)

    @property
    def request_id(self) -> str | None:
        """The ``x-request-id`` the server sent with this response, if any."""
        value: str | None = self.__dict__.get(_REQUEST_ID)
        return value

    @property
    def raw(self) -> dict[str, Any]:
        """Everything the server sent, as plain JSON values, modelled or not."""
        cached = self.__dict__.get(_RAW_DICT, _MISSING)
        if cached is _MISSING:
            raw_json = self.__dict__.get(RAW_JSON_KEY)
            cached = msgspec.json.decode(raw_json) if raw_json else self.to_dict()
            if not isinstance(cached, dict):
                cached = {}
            self.__dict__[_RAW_DICT] = cached
        result: dict[str, Any] = cached
        return result

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: an undeclared field the server sent.
        if name.startswith("_"):
            raise AttributeError(name)
        value = self.raw.get(name, _MISSING)
        if value is _MISSING:
            raise AttributeError(
                f"{type(self).__name__} has no attribute {name!r} and the server sent no such field"
            )
        return value


def attach_answer(
    response: TopLevelResponse,
    raw: bytes,
    request_id: str | None,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> None:
    """Keep the raw body, request id, status and headers an answer came with on ``response``."""
    # __dict__ (from dict=True) carries what is not a field; frozen forbids setattr.
    extra = response.__dict__
    extra[RAW_JSON_KEY] = raw
    if request_id is not None:
        extra[_REQUEST_ID] = request_id
    if status is not None:
        extra[_STATUS] = status
    if headers is not None:
        extra[_HEADERS] = headers


def raw_json_of(answer: object) -> bytes | None:
    """The JSON bytes ``answer`` was decoded from, when they were kept (not for an object
    built by hand, copied or unpickled)."""
    extra = getattr(answer, "__dict__", None)
    raw = extra.get(RAW_JSON_KEY) if extra else None
    return raw if isinstance(raw, bytes) else None


def set_transcript(answer: TopLevelResponse, transcript: list[Any]) -> None:
    """Keep the whole conversation of a tool run on its last answer (``answer.transcript``)."""
    answer.__dict__[_TRANSCRIPT] = transcript


def transcript_of(answer: TopLevelResponse) -> list[Any] | None:
    """What :func:`set_transcript` kept, else ``None``."""
    value: list[Any] | None = answer.__dict__.get(_TRANSCRIPT)
    return value


def set_output_parsed(answer: TopLevelResponse, value: Any) -> None:
    """Keep what a parse decoded from the answer (``response.output_parsed``)."""
    answer.__dict__[_OUTPUT_PARSED] = value


def output_parsed_of(answer: TopLevelResponse) -> Any:
    """What :func:`set_output_parsed` kept, else ``None``."""
    return answer.__dict__.get(_OUTPUT_PARSED)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_drop_nulls(item) for item in value]
    return value


def decode_lenient(decode: Callable[[Any], T], data: Any, error: msgspec.ValidationError) -> T:
    """Decode again with every ``null`` object field left out (so it takes its default):
    servers behind a router send ``"logprobs": null`` or ``"annotations": null`` where the
    reference has a list. The slow path only, after ``decode`` refused ``data``; raises the
    first ``error`` when that does not help either."""
    try:
        plain = msgspec.json.decode(data)
    except msgspec.DecodeError:
        raise error from None
    cleaned = _drop_nulls(plain)
    if cleaned == plain:
        raise error
    try:
        return decode(msgspec.json.encode(cleaned))
    except msgspec.ValidationError:
        raise error from None
