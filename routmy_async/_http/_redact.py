"""The API key kept out of everything a user sees: one function for exceptions, one for text.

An error can carry the key in many places: a server that echoes the request puts it in the
message, the JSON body (``error.metadata`` included), a header or the error's code, and
aiohttp's own exceptions keep the request headers (``Authorization`` with them) in
``request_info``. :meth:`Redactor.scrub` walks all of it, the chain of causes included,
so the transport and the stream call it once where their errors leave them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["REDACTED", "SECRET_HEADERS", "Redactor"]

REDACTED = "[REDACTED]"
_MAX_DEPTH = 32
_MAX_SECRETS = 64
# Headers whose values are credentials, wherever they were set.
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "x-api-key", "api-key"})


class Redactor:
    """Replaces the secrets (the API key, and keys set in auth headers or by
    ``with_options(api_key=...)``) in text, JSON values, headers and exceptions."""

    __slots__ = ("_added", "_secrets")

    def __init__(self, secret: str | None):
        self._added: list[str] = []  # in the order they came
        self._secrets: list[str] = []  # the longest first: a key inside another never half-replaced
        self.add(secret)

    def add(self, secret: str | None) -> None:
        """Keep ``secret`` out of everything from now on (the first one is never dropped;
        the others are capped to the most recent few dozen, for per-tenant keys)."""
        if not secret or len(secret) < 4 or secret in self._added:
            return
        self._added.append(secret)
        if len(self._added) > _MAX_SECRETS:
            del self._added[1]
        self._secrets = sorted(self._added, key=len, reverse=True)

    def add_from_headers(self, headers: Mapping[str, str]) -> None:
        """Register the credentials found in auth headers (``Bearer <key>``, ``x-api-key``)."""
        for name, value in headers.items():
            if name.lower() in SECRET_HEADERS:
                scheme, _, credential = value.partition(" ")
                self.add(credential.strip() if credential.strip() else scheme)

    def text(self, text: str) -> str:
        """``text`` with every occurrence of a secret replaced."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def value(self, value: Any, _depth: int = 0) -> Any:
        """A copy of a JSON-like value with the secret replaced; the same type comes back
        (a dict stays a dict, bytes stay bytes), and the same object when nothing changes."""
        if not self._secrets:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (bytes, bytearray)):
            for secret in self._secrets:
                encoded = secret.encode()
                if encoded in value:
                    value = bytes(value).replace(encoded, REDACTED.encode())
            return value
        if _depth > _MAX_DEPTH:
            return value
        if isinstance(value, CIMultiDictProxy | CIMultiDict):
            if not self.contains(value):
                return value
            copy: CIMultiDict[str] = CIMultiDict()
            for key, item in value.items():
                copy.add(self.text(key), self.text(item) if isinstance(item, str) else item)
            return CIMultiDictProxy(copy)
        if isinstance(value, dict):
            if not self.contains(value):
                return value
            return {
                self.value(key, _depth + 1): self.value(item, _depth + 1)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            if not self.contains(value):
                return value
            items = [self.value(item, _depth + 1) for item in value]
            if isinstance(value, list):
                return items
            # A named tuple (aiohttp's RequestInfo) keeps its type.
            return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
        return value

    def contains(self, value: Any, _depth: int = 0) -> bool:
        """Whether the secret occurs anywhere in ``value`` (strings, bytes, containers, and
        the attributes of plain objects such as aiohttp's ``RequestInfo``)."""
        if not self._secrets:
            return False
        if isinstance(value, str):
            return any(secret in value for secret in self._secrets)
        if isinstance(value, (bytes, bytearray)):
            return any(secret.encode() in value for secret in self._secrets)
        if _depth > _MAX_DEPTH or value is None or isinstance(value, (int, float, bool)):
            return False
        if isinstance(value, Mapping):
            return any(
                self.contains(key, _depth + 1) or self.contains(item, _depth + 1)
                for key, item in value.items()
            )
        if isinstance(value, list | tuple | set | frozenset):
            return any(self.contains(item, _depth + 1) for item in value)
        if _depth >= 2:
            # Objects two levels down (a response's session, its loop) are not data.
            return False
        return any(self.contains(item, _depth + 1) for item in _attributes(value))

    def scrub(self, error: BaseException) -> BaseException:
        """Remove the secret from ``error`` in place: its arguments, every attribute (message,
        body, metadata, headers, code, ...) and its chain of causes. Returns ``error``.

        An exception of another library whose attributes cannot be cleaned (aiohttp's
        request headers) is cut from the chain; our own message already says what it was.
        """
        if not self._secrets:
            return error
        seen: set[int] = set()
        current: BaseException | None = error
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            self._scrub_one(current)
            cause = current.__cause__ or (
                None if current.__suppress_context__ else current.__context__
            )
            if cause is not None:
                self._scrub_one(cause)
                if self.contains(cause.args) or any(
                    self.contains(item) for item in _attributes(cause)
                ):
                    current.__cause__ = None
                    current.__context__ = None
                    current.__suppress_context__ = True
                    break
            current = cause
        return error

    def _scrub_one(self, error: BaseException) -> None:
        if self.contains(error.args):
            error.args = tuple(self.value(arg) for arg in error.args)
        attributes = getattr(error, "__dict__", None)
        if not attributes:
            return
        for name, item in list(attributes.items()):
            cleaned = self.value(item)
            if cleaned is not item:
                try:
                    setattr(error, name, cleaned)
                except AttributeError:  # pragma: no cover - a read-only attribute
                    pass


def _attributes(value: Any) -> list[Any]:
    """The attribute values of a plain object (``__dict__`` or ``__slots__``)."""
    found: list[Any] = []
    attributes = getattr(value, "__dict__", None)
    if isinstance(attributes, dict):
        found.extend(attributes.values())
    for cls in type(value).__mro__:
        for name in getattr(cls, "__slots__", ()):
            if isinstance(name, str) and hasattr(value, name):
                found.append(getattr(value, name, None))
    return found
