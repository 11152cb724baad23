"""What a growing partial JSON value gained since it was last shown: patches, pure and linear.

A page shown the whole partial value on every change receives the square of the answer's
length in bytes (a 256 KB answer is gigabytes). ``PatchWriter`` remembers what the page holds
and gives, each time it is asked, only what changed, as a list of operations:

- ``["set", path, value]``: the value at ``path`` becomes ``value`` (``[]``: the whole value);
- ``["append", path, text]``: the string at ``path`` grows by ``text``;
- ``["extend", path, items]``: the array at ``path`` gets ``items`` at its end;
- ``["merge", path, members]``: the object at ``path`` gets these keys, in order.

A path is a list of object keys and array indices from the root. Applied in order to what
the page holds, the operations give the value as it stands (``apply_patch`` does it in Python,
the FastAPI example in six lines of JavaScript).

**Linear.** A partial value only grows (``PartialJSON``: keys and items are added, a string in
progress only lengthens), so only the last member of each container can have changed since the
last look: the writer walks that one spine, not the value, and each byte of the answer is sent
once. The one exception is a key the model writes twice (``{"a": 1, "a": 2}``, where the last
wins): the writer cannot see it mid-stream without re-reading the value, so ``closing`` compares
what the page holds with the whole value once at the end, and sends the whole value if they
differ.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

__all__ = ["PatchWriter", "apply_patch"]

_NOTHING: Any = object()  # the page holds nothing yet (a JSON null is None)


class PatchWriter:
    """Follows one growing JSON value and says what changed since the last call."""

    __slots__ = ("_root", "_shown")

    def __init__(self) -> None:
        # What the page holds: our own copy, since the live value grows in place.
        self._shown: Any = _NOTHING
        # The live value last looked at: another object is another answer (a Responses
        # stream's next message), sent whole rather than compared with the last.
        self._root: Any = None

    def changes(self, value: Any) -> list[list[Any]]:
        """The operations that turn what the page holds into ``value`` (``None`` before the
        value begins: nothing yet). Empty when nothing changed."""
        ops: list[list[Any]] = []
        if value is None:
            return ops  # nothing yet (a JSON null answer is sent by `closing`)
        renewed = value is not self._root and type(value) in (dict, list)
        self._root = value
        if self._shown is _NOTHING or renewed:
            ops.append(["set", [], value])
            self._shown = _copy(value)
        else:
            self._shown = _diff([], value, self._shown, ops)
        return ops

    def closing(self, value: Any) -> list[list[Any]]:
        """As ``changes`` for the whole, final ``value``; and if the page would still hold
        something else (a key written twice), the whole value instead."""
        ops = self.changes(value)
        if self._shown is _NOTHING or self._shown != value:
            self._shown = _copy(value)
            return [["set", [], value]]
        return ops


def _diff(path: list[Any], live: Any, shown: Any, ops: list[list[Any]]) -> Any:
    """Add to ``ops`` what turns ``shown`` into ``live``; return the new ``shown``."""
    if live is shown:
        return shown
    kind = type(live)
    if kind is not type(shown):
        ops.append(["set", path, live])
        return _copy(live)
    if kind is str:
        if len(live) > len(shown):  # a string in progress: it only grows
            ops.append(["append", path, live[len(shown) :]])
        elif live != shown:
            ops.append(["set", path, live])
        return live
    if kind is list:
        count = len(shown)
        if count:
            # Only the last item can still have been open: those before it were complete.
            shown[-1] = _diff([*path, count - 1], live[count - 1], shown[-1], ops)
        if len(live) > count:
            added = live[count:]
            ops.append(["extend", path, added])
            shown.extend(_copy(item) for item in added)
        return shown
    if kind is dict:
        count = len(shown)
        if count:
            last = next(reversed(shown))
            shown[last] = _diff([*path, last], live[last], shown[last], ops)
        if len(live) > count:
            # The keys added since, from the end: never a walk over the keys already shown.
            keys = list(islice(reversed(live), len(live) - count))
            members = {key: live[key] for key in reversed(keys)}
            ops.append(["merge", path, members])
            shown.update((key, _copy(item)) for key, item in members.items())
        return shown
    if live != shown:  # a number or a literal: complete when shown, so never changes here
        ops.append(["set", path, live])
    return live


def _copy(value: Any) -> Any:
    """A copy of a JSON value's containers (strings and numbers are immutable: shared)."""
    kind = type(value)
    if kind is dict:
        return {key: _copy(item) for key, item in value.items()}
    if kind is list:
        return [_copy(item) for item in value]
    return value


def apply_patch(value: Any, ops: list[list[Any]]) -> Any:
    """``value`` (what a page holds; ``None`` at first) with ``ops`` applied in order; the
    containers are changed in place. The Python twin of the example's JavaScript."""
    box = {"value": value}
    for op, path, data in ops:
        parent: Any = box
        key: Any = "value"
        for step in path:
            parent, key = parent[key], step
        if op == "set":
            parent[key] = data
        elif op == "append":
            parent[key] += data
        elif op == "extend":
            parent[key].extend(data)
        elif op == "merge":
            parent[key].update(data)
        else:
            raise ValueError(f"unknown patch operation {op!r}")
    return box["value"]
