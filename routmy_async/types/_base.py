"""Base classes of the response Structs: frozen, keyword-only, and nothing the server sent lost.

msgspec drops JSON keys a Struct does not declare. Top-level responses therefore keep the
raw body they were decoded from: ``.raw`` gives the whole answer as plain JSON values (decoded
once, on first use), and an attribute the Struct does not declare is looked up there, so a field
the API adds tomorrow is ``completion.some_new_field`` today.
"""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ["ResponseObject", "TopLevelResponse"]

_MISSING = object()


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
        """Return the object as plain JSON values (fields left at their default are omitted)."""
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result


class TopLevelResponse(ResponseObject, frozen=True, gc=True, dict=True):
    """A whole response body: it keeps its raw JSON and the request id it came with.

    Subclasses repeat ``frozen=True``: mypy's dataclass_transform does not inherit it.
    """

    def _attach(self, raw: bytes, request_id: str | None) -> None:
        # __dict__ (from dict=True) carries what is not a field; frozen forbids setattr.
        self.__dict__["_raw_json"] = raw
        if request_id is not None:
            self.__dict__["_request_id"] = request_id

    @property
    def request_id(self) -> str | None:
        """The ``x-request-id`` the server sent with this response, if any."""
        value: str | None = self.__dict__.get("_request_id")
        return value

    @property
    def raw(self) -> dict[str, Any]:
        """Everything the server sent, as plain JSON values, modelled or not."""
        cached = self.__dict__.get("_raw_dict", _MISSING)
        if cached is _MISSING:
            raw_json = self.__dict__.get("_raw_json")
            cached = msgspec.json.decode(raw_json) if raw_json else self.to_dict()
            if not isinstance(cached, dict):
                cached = {}
            self.__dict__["_raw_dict"] = cached
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
