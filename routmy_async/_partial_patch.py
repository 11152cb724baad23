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
the FastAPI example in a dozen lines of JavaScript).

**Linear.** A partial value only grows (``PartialJSON``: keys and items are added, a string in
progress only lengthens), so only the last member of each container can have changed since the
last look: the writer walks that one spine, not the value, and each byte of the answer is sent
once. The one exception is a key the model writes twice (``{"a": 1, "a": 2}``, where the last
wins). Its second value replaces the first in the live value: when it is the last member, the
writer sees a new container in its place (it keeps the live containers of the spine) or a
string that does not begin with the one shown, and sends it whole. Elsewhere the writer cannot
see it without re-reading the value, so ``closing`` compares what the page holds with the
whole value once at the end, and sends the whole value if they differ.
"""

from __future__ import annotations

from itertools import islice
from typing import Any

__all__ = ["PatchWriter", "apply_patch"]

_NOTHING: Any = object()  # the page holds nothing yet (a JSON null is None)


class PatchWriter:
    """Follows one growing JSON value and says what changed since the last call."""

    __slots__ = ("_shown", "_spine")

    def __init__(self) -> None:
        # What the page holds: our own copy, since the live value grows in place.
        self._shown: Any = _NOTHING
        # The live containers along the last member's chain (the root, its last member, that
        # one's last member, ...) as last looked at. A container grows in place, so another
        # object in its place is another value: a key the model wrote twice (its second value
        # replaces the first) or a Responses stream's next message. That one is sent whole,
        # never compared with what it replaced.
        self._spine: list[Any] = []

    def changes(self, value: Any) -> list[list[Any]]:
        """The operations that turn what the page holds into ``value`` (``None`` before the
        value begins: nothing yet). Empty when nothing changed."""
        ops: list[list[Any]] = []
        if value is None:
            return ops  # nothing yet (a JSON null answer is sent by `closing`)
        if self._shown is _NOTHING:
            self._shown = self._set([], value, 0, ops)
        else:
            self._shown = self._diff([], value, self._shown, 0, ops)
        return ops

    def closing(self, value: Any) -> list[list[Any]]:
        """As ``changes`` for the whole, final ``value``; and if the page would still hold
        something else (a key written twice, not the last one), the whole value instead."""
        ops = self.changes(value)
        if self._shown is _NOTHING or self._shown != value:
            self._shown = _copy(value)
            return [["set", [], value]]
        return ops

    def _set(self, path: list[Any], live: Any, depth: int, ops: list[list[Any]]) -> Any:
        """Send ``live`` whole at ``path``; return the page's new copy of it."""
        ops.append(["set", path, live])
        self._track(depth, live)
        return _copy(live)

    def _track(self, depth: int, live: Any) -> None:
        """Remember the live containers from ``depth`` down the last member's chain."""
        spine = self._spine
        del spine[depth:]
        kind = type(live)
        while kind is dict or kind is list:
            spine.append(live)
            if not live:
                break
            live = live[-1] if kind is list else live[next(reversed(live))]
            kind = type(live)

    def _diff(
        self, path: list[Any], live: Any, shown: Any, depth: int, ops: list[list[Any]]
    ) -> Any:
        """Add to ``ops`` what turns ``shown`` into ``live``; return the new ``shown``."""
        if live is shown:
            return shown
        kind = type(live)
        if kind is not type(shown):
            return self._set(path, live, depth, ops)
        if kind is str:
            # A string in progress only grows; one that does not begin with what the page
            # holds is another string (a key written twice), sent whole. The check reads the
            # string once, as reading it from the parser (a join) did already.
            if len(live) > len(shown) and live.startswith(shown):
                ops.append(["append", path, live[len(shown) :]])
            elif live != shown:
                ops.append(["set", path, live])
            return live
        if kind is list:
            if self._spine[depth] is not live:
                return self._set(path, live, depth, ops)
            count = len(shown)
            if count:
                # Only the last item can still have been open: those before it were complete.
                last = count - 1
                shown[-1] = self._diff([*path, last], live[last], shown[-1], depth + 1, ops)
            if len(live) > count:
                added = live[count:]
                ops.append(["extend", path, added])
                shown.extend(_copy(item) for item in added)
                self._track(depth + 1, live[-1])
            return shown
        if kind is dict:
            if self._spine[depth] is not live:
                return self._set(path, live, depth, ops)
            count = len(shown)
            if count:
                last = next(reversed(shown))
                shown[last] = self._diff([*path, last], live[last], shown[last], depth + 1, ops)
            if len(live) > count:
                # The keys added since, from the end: never a walk over the keys already shown.
                keys = list(islice(reversed(live), len(live) - count))
                members = {key: live[key] for key in reversed(keys)}
                ops.append(["merge", path, members])
                shown.update((key, _copy(item)) for key, item in members.items())
                self._track(depth + 1, live[keys[0]])
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
