"""An incremental JSON parser: text deltas in, a partial value out, pure and linear.

A model streams its JSON answer a few characters at a time. ``PartialJSON`` keeps its state
between deltas (the open containers, the string being read, the few characters of a token cut
by a delta), so a delta costs time in proportion to its own length, never to the text so far.
Re-parsing the whole snapshot on every delta, as openai-python does with ``jiter``, costs the
square of the answer's length over a stream.

**What the partial value shows.** Plain JSON values (``dict``, ``list``, ``str``, ``int``,
``float``, ``bool``, ``None``):

- completed keys and array items, and the containers still open (they grow);
- numbers and ``true``/``false``/``null`` only once complete: ``12`` may still become
  ``125`` or ``12.5``, so it is absent until a delimiter follows it;
- a string in progress as far as it has arrived, decoded; an escape cut by a delta (``\\``,
  ``\\u00``, the first half of a surrogate pair) is held back until it can be decoded whole;
- a key is absent until its name is complete and its value has begun (or, for a number or a
  literal, has ended).

Nothing shown is ever taken back: keys and items are only added, and a string in progress only
grows, until it is complete.

**One live value.** ``value`` is the same object all along, grown in place: a kept reference
shows later deltas too. Handing out a fresh copy per delta would make reading it after every
delta quadratic again; ``snapshot()`` gives an independent deep copy when one is wanted. Reading
``value`` costs O(1), plus the length of a string in progress (a Python ``str`` cannot grow
in place, so the longer string is built when read; for long strings read after every delta that
is one memory copy of the string per read).

**Around the JSON.** A byte order mark and whitespace before the value are skipped. A Markdown
fence (```` ```json ```` or a bare ```` ``` ````) opening the text is skipped, up to its line
break or to an object or array that begins on its line (```` ```json {"a": 1}``` ````), and the
closing fence ends the answer: whatever follows it is ignored. Anything else after the value is an
error. The grammar is RFC 8259's: no ``NaN``, no comments, no trailing commas.

**Errors.** Text that cannot become JSON raises ``InvalidJSONError`` from ``feed`` as soon as it
arrives, naming the character offset; ``finish`` raises it when the text ends early.

**Notifications.** A ``JSONListener`` hears each container open and each value complete, with
its key in its parent (an object key, an array index, or None at the root): the seam for typed
partials and eager validation. ``path()`` gives the whole path when one is wanted.
"""

from __future__ import annotations

import copy
import json.decoder
import re
from collections.abc import Callable
from typing import Any, Protocol

from ._exceptions import ContentParseError, InvalidJSONError

__all__ = ["JSONListener", "Key", "ListenerGroup", "PartialJSON", "Path"]

Key = str | int | None  # where a value sits in its parent: a key, an index; None at the root
Path = tuple[str | int, ...]  # where a value sits in the whole: keys and indices from the root


class JSONListener(Protocol):
    """Hears the parser's progress; called synchronously from ``PartialJSON.feed``."""

    def opened(self, key: Key, container: dict[str, Any] | list[Any]) -> None:
        """A container began at ``key`` of the innermost open container (the previous one
        opened and not completed); it is empty now and will grow in place."""

    def completed(self, key: Key, value: Any) -> None:
        """The value at ``key`` of the innermost open container is complete (a scalar, a
        string, or a closed container, which is then no longer open)."""


class ListenerGroup:
    """Several listeners heard as one, in the order given."""

    def __init__(self, *listeners: JSONListener) -> None:
        self._listeners = listeners

    def opened(self, key: Key, container: dict[str, Any] | list[Any]) -> None:
        for listener in self._listeners:
            listener.opened(key, container)

    def completed(self, key: Key, value: Any) -> None:
        for listener in self._listeners:
            listener.completed(key, value)


# What the parser expects next (the order matters: the hot checks compare ranges).
_STRING = 0  # inside a string value
_KEY_STRING = 1  # inside a key
_COMMA_OR_CLOSE = 2  # after a value inside a container
_VALUE = 3  # a value: after ':', after ',' in an array, at the start
_ITEM_OR_CLOSE = 4  # right after '['
_KEY = 5  # after ',' in an object
_KEY_OR_CLOSE = 6  # right after '{'
_COLON = 7
_DONE = 8  # the value is complete: only whitespace or a closing fence may follow
_START = 9  # before the value: BOM, whitespace, or an opening fence
_OPENING_FENCE = 10  # inside ```json, up to its line break
_AFTER_FENCE = 11  # the closing fence was read: everything else is ignored
# A number or a literal cut by the end of a delta is carried to the next delta in state
# _VALUE or _ITEM_OR_CLOSE, and read again from its first character.

_WHITESPACE = " \t\n\r"
_SKIP_WHITESPACE = re.compile(r"[ \t\n\r]*")
# A run of string content made of whole units: plain characters and complete escapes. It stops
# at the closing quote, a control character, a cut or invalid escape, or the end of the text.
_STRING_RUN = re.compile(
    r'[^"\\\x00-\x1f]*(?:(?:\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})[^"\\\x00-\x1f]*)*'
)
# The start of an escape that the next delta may complete.
_CUT_ESCAPE = re.compile(r"\\(?:u[0-9a-fA-F]{0,3})?")
_HIGH_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}")
_CONTROL = re.compile(r"[\x00-\x1f]")
_NUMBER_START = frozenset("-0123456789")
_NUMBER_CHARS = frozenset("-+0123456789.eE")
_NUMBER_RUN = re.compile(r"[-+0-9.eE]*")
# A whole number; its groups (fraction, exponent) say whether it is a float.
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_LITERALS = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}
_LITERAL_VALUES = {"true": True, "false": False, "null": None}
# The usual member of an object, read in one match from just after its key's opening quote: a
# key without escapes, the colon, and a value that completes here (a string without escapes, a
# number that a delimiter ends, a literal) or opens here (a string, an array, an object).
_MEMBER = re.compile(
    r'([^"\\\x00-\x1f]*)"[ \t\n\r]*:[ \t\n\r]*'
    r'(?:"([^"\\\x00-\x1f]*)(")?'
    r"|(-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?)(?=[ \t\n\r,}\]])"
    r"|(true|false|null)"
    r"|([\[{]))"
)
# The start of such a member, cut before its value began or ended (the next delta's text may
# complete it): only what can still become valid, so an error is never put off.
_MEMBER_CUT = re.compile(
    r'[^"\\\x00-\x1f]*(?:"[ \t\n\r]*(?::[ \t\n\r]*'
    r"(?:-?(?:(?:0|[1-9][0-9]*)(?:\.|\.[0-9]+(?:[eE][-+]?[0-9]*)?|[eE][-+]?[0-9]*)?)?"
    r"|t(?:ru?)?|f(?:a(?:ls?)?)?|n(?:ul?)?))?)?"
)
# A cut member longer than this is read as it comes instead (keys pieced together), so that
# reading it again with each delta never grows with the length of a key.
_CARRY_LIMIT = 64
# The string decoder json.loads uses (in C on CPython): the same escapes, surrogate pairs and
# control-character errors, and the same result.
_scanstring: Callable[[str, int], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_FENCE = "```"
# Where the opening fence's line ends: its line break, or an object or array on that line.
_FENCE_LINE_END = re.compile(r"[\n{\[]")
_BOM = "\ufeff"
_NOTHING: Any = object()


class PartialJSON:
    """Parse one JSON value from text deltas; read the partial value at any time.

    :param listener: told of each container that opens and each value that completes.
    """

    __slots__ = (
        "_carry",
        "_containers",
        "_error",
        "_fed",
        "_fenced",
        "_keys",
        "_listener",
        "_pieces",
        "_root",
        "_state",
        "_string_shown",
    )

    def __init__(self, *, listener: JSONListener | None = None) -> None:
        self._listener = listener
        self._state = _START
        self._root: Any = _NOTHING
        # The open containers, outermost first, and for each object the last key read (None
        # before its first key; a list's entry stays None).
        self._containers: list[Any] = []
        self._keys: list[str | None] = []
        # The decoded pieces of the string being read, and whether it is in its parent yet.
        self._pieces: list[str] = []
        self._string_shown = False
        # Characters of a token cut by the end of a delta, read again with the next one.
        self._carry = ""
        self._fenced = False
        self._fed = 0  # characters fed so far
        self._error: ContentParseError | None = None  # once broken, the parser stays broken

    # -- reading -------------------------------------------------------------------------

    @property
    def started(self) -> bool:
        """Whether any part of the value has arrived (before that, ``value`` is ``None``)."""
        return self._root is not _NOTHING or self._state == _STRING

    @property
    def done(self) -> bool:
        """Whether the value is complete (what follows may only be whitespace or a fence)."""
        return self._state in (_DONE, _AFTER_FENCE)

    @property
    def value(self) -> Any:
        """The partial value so far: one live object, grown in place (see the module doc)."""
        if self._state == _STRING:
            self._show_string()
        return None if self._root is _NOTHING else self._root

    @property
    def in_string(self) -> bool:
        """Whether a string value is being read (and is shown as far as it has arrived)."""
        return self._state == _STRING

    def string_in_progress(self) -> tuple[Key, str] | None:
        """The key of the string being read, and what has arrived of it; or None."""
        if self._state != _STRING:
            return None
        self._show_string()
        return self._key(), self._pieces[0] if self._pieces else ""

    def snapshot(self) -> Any:
        """An independent deep copy of ``value`` that later deltas leave alone (O(size))."""
        return copy.deepcopy(self.value)

    # -- feeding -------------------------------------------------------------------------

    def feed(self, delta: str) -> None:
        """Parse the next piece of text.

        :raises InvalidJSONError: the text so far cannot be the start of a JSON value.
        :raises FieldValidationError: a listener's eager check failed (see ``_eager_check``).
        """
        if self._error is not None:
            raise self._error
        if self._carry:
            text = self._carry + delta
            self._carry = ""
            end = len(text)
            self._fed += len(delta)
        else:
            text = delta
            end = len(text)
            self._fed += end
        # _fed - len(text) is where ``text`` begins in the whole answer (for offsets).
        # The whole machine is written out here, in one frame: a call per token (or even per
        # delta) costs more than the token, and this runs on every delta of every stream.
        try:
            state = self._state
            containers = self._containers
            keys = self._keys
            inline = self._listener is None  # without a listener, values go in place right here
            index = 0
            while index < end:
                if state == _KEY_STRING and inline and not self._pieces:
                    member = _MEMBER.match(text, index)
                    if member is None:
                        if end - index <= _CARRY_LIMIT and _MEMBER_CUT.fullmatch(text, index):
                            self._carry = text[index:]  # read again, whole, with the next delta
                            break
                    else:
                        key, string, closed, number, fraction, exponent, literal, opener = (
                            member.groups()
                        )
                        keys[-1] = key
                        if closed is not None:
                            containers[-1][key] = string
                        elif number is not None:
                            containers[-1][key] = (
                                int(number)
                                if fraction is None and exponent is None
                                else float(number)
                            )
                        elif literal is not None:
                            containers[-1][key] = _LITERAL_VALUES[literal]
                        elif string is not None:
                            state = _STRING  # a string that this text does not finish
                            index = member.start(2)
                            continue
                        else:
                            state = self._open(opener)
                            index = member.end()
                            if text.startswith('"', index):  # '{"key' or '["item'
                                state = _KEY_STRING if opener == "{" else _STRING
                                index += 1
                            continue
                        index = member.end()
                        if text.startswith(', "', index):
                            index += 3
                        else:
                            state = _COMMA_OR_CLOSE
                        continue
                if state <= _KEY_STRING:
                    if text.find('"', index) < 0:
                        self._state = state
                        piece = text[index:]
                        if piece.isprintable() and "\\" not in piece:
                            self._pieces.append(piece)  # the usual middle of a string
                        else:
                            self._hold_string(text, index)
                        return
                    try:
                        piece, index = _scanstring(text, index)
                    except ValueError:
                        # The quote found was escaped, or an escape is invalid or cut.
                        self._state = state
                        self._hold_string(text, index)
                        return
                    if self._pieces:
                        self._pieces.append(piece)
                        piece = "".join(self._pieces)
                        self._pieces = []
                    if state == _KEY_STRING:
                        keys[-1] = piece
                        # The usual ': "' or ': ' after a key, read here rather than in three
                        # more turns of the loop.
                        if text.startswith(":", index):
                            index += 2 if text.startswith(" ", index + 1) else 1
                            if text.startswith('"', index):
                                state = _STRING
                                index += 1
                            else:
                                state = _VALUE
                        else:
                            state = _COLON
                        continue
                    if inline and containers and type(containers[-1]) is dict:
                        containers[-1][keys[-1]] = piece
                        self._string_shown = False
                        state = _COMMA_OR_CLOSE
                    else:
                        state = self._complete(piece)
                    if state == _COMMA_OR_CLOSE and text.startswith(', "', index):
                        # The usual next member or item, in this turn of the loop.
                        state = _KEY_STRING if type(containers[-1]) is dict else _STRING
                        index += 3
                    continue
                char = text[index]
                if char in _WHITESPACE and state != _OPENING_FENCE:
                    index = _SKIP_WHITESPACE.match(text, index).end()  # type: ignore[union-attr]
                elif state == _COMMA_OR_CLOSE:
                    in_object = type(containers[-1]) is dict
                    if char == ",":
                        index += 2 if text.startswith(" ", index + 1) else 1
                        if not in_object:
                            state = _VALUE
                        elif text.startswith('"', index):  # the usual ', "key"'
                            state = _KEY_STRING
                            index += 1
                        else:
                            state = _KEY
                        continue
                    if char != ("}" if in_object else "]"):
                        closer = "'}'" if in_object else "']'"
                        raise _Invalid(index, f"expected ',' or {closer}, found {char!r}")
                    state = self._close()
                    index += 1
                    if state == _COMMA_OR_CLOSE and text.startswith(", ", index):
                        # The usual next member ('}, "key') or object item ('}, {"key').
                        if type(containers[-1]) is dict:
                            if text.startswith('"', index + 2):
                                state = _KEY_STRING
                                index += 3
                        elif text.startswith('{"', index + 2):
                            self._open("{")
                            state = _KEY_STRING
                            index += 4
                elif state <= _ITEM_OR_CLOSE:
                    if char == '"':
                        state = _STRING
                        index += 1
                    elif char in _NUMBER_START:
                        number = _NUMBER.match(text, index)
                        stop = index if number is None else number.end()
                        if stop == end or text[stop] in _NUMBER_CHARS:
                            # Digits may still come (the next delta's), or the token is bad.
                            if _NUMBER_RUN.match(text, index).end() < end:  # type: ignore[union-attr]
                                found = text[index : stop + 1]
                                raise _Invalid(index, f"{found!r} is not a number")
                            self._carry = text[index:]
                            break
                        token = text[index:stop]
                        value = int(token) if number.lastindex is None else float(token)  # type: ignore[union-attr]
                        if inline and containers and type(containers[-1]) is dict:
                            containers[-1][keys[-1]] = value
                            state = _COMMA_OR_CLOSE
                        else:
                            state = self._complete(value)
                        index = stop
                        if state == _COMMA_OR_CLOSE and text.startswith(', "', index):
                            state = _KEY_STRING if type(containers[-1]) is dict else _STRING
                            index += 3
                    elif char == "{" or char == "[":
                        state = self._open(char)
                        index += 1
                        if text.startswith('"', index):  # '{"key' or '["item'
                            state = _KEY_STRING if char == "{" else _STRING
                            index += 1
                    elif char == "]" and state == _ITEM_OR_CLOSE:
                        state = self._close()
                        index += 1
                    elif char in _LITERALS:
                        word, literal = _LITERALS[char]
                        if text.startswith(word, index):
                            if inline and containers and type(containers[-1]) is dict:
                                containers[-1][keys[-1]] = literal
                                state = _COMMA_OR_CLOSE
                            else:
                                state = self._complete(literal)
                            index += len(word)
                        elif word.startswith(text[index:]):
                            self._carry = text[index:]
                            break
                        else:
                            found = text[index : index + len(word)]
                            raise _Invalid(index, f"expected {word!r}, found {found!r}")
                    else:
                        raise _Invalid(index, f"expected a value, found {char!r}")
                elif state <= _KEY_OR_CLOSE:
                    if char == '"':
                        state = _KEY_STRING
                    elif char == "}" and state == _KEY_OR_CLOSE:
                        state = self._close()
                    else:
                        raise _Invalid(index, f"expected a key in quotes, found {char!r}")
                    index += 1
                elif state == _COLON:
                    if char != ":":
                        raise _Invalid(index, f"expected ':' after a key, found {char!r}")
                    state = _VALUE
                    index += 1
                else:
                    self._state = state
                    index = self._outside(text, index)
                    state = self._state
            self._state = state
        except _Invalid as problem:
            offset = self._fed - len(text) + problem.index
            self._error = InvalidJSONError(
                f"the answer is not valid JSON at character {offset}: {problem.reason}",
                offset=offset,
            )
            raise self._error from None
        except ContentParseError as error:  # a listener's (eager validation): it ends the parse
            self._error = error
            raise

    def finish(self) -> Any:
        """End of the text: return the complete value.

        :raises InvalidJSONError: the text ended before the value was complete.
        """
        if self._error is not None:
            raise self._error
        ended_at = self._fed
        if self._state in (_VALUE, _ITEM_OR_CLOSE) and self._carry[:1] in _NUMBER_START:
            self.feed(" ")  # a number at the very end of the text is complete now
        if not self.done:
            raise InvalidJSONError(
                f"the answer ended at character {ended_at} before the JSON was complete",
                offset=ended_at,
            )
        return self._root

    # -- the machine ---------------------------------------------------------------------

    def _hold_string(self, text: str, index: int) -> None:
        """Keep what arrived of a string that this text does not finish; carry a cut escape.

        :raises _Invalid: a control character or an invalid escape.
        """
        if text.find("\\", index) < 0:
            piece = text[index:]
            control = None if piece.isprintable() else _CONTROL.search(piece)
            if control is not None:
                at = index + control.start()
                raise _Invalid(at, f"a control character {text[at]!r} inside a string")
            self._pieces.append(piece)
            return
        stop = _STRING_RUN.match(text, index).end()  # type: ignore[union-attr]
        if stop < len(text):
            if text[stop] != "\\":
                raise _Invalid(stop, f"a control character {text[stop]!r} inside a string")
            if _CUT_ESCAPE.fullmatch(text, stop) is None:
                found = text[stop : stop + 6]
                raise _Invalid(stop, f"an invalid escape {found!r} inside a string")
        hold = stop
        # A trailing high surrogate waits for its low half (json.loads joins the two).
        if (
            stop - index >= 6
            and _HIGH_SURROGATE_ESCAPE.fullmatch(text, stop - 6, stop)
            and _escapes_backslash_at(text, index, stop - 6)
        ):
            hold = stop - 6
        self._carry = text[hold:]
        if hold > index:
            piece = text[index:hold]
            self._pieces.append(_scanstring(piece + '"', 0)[0])

    def _outside(self, text: str, index: int) -> int:
        """Before and after the value: a BOM, whitespace, the Markdown fences."""
        state = self._state
        if state == _AFTER_FENCE:
            return len(text)
        if state == _OPENING_FENCE:
            return self._fence_line(text, index)
        char = text[index]
        if state == _START and char == _BOM and self._fed - len(text) + index == 0:
            return index + 1
        if char == "`" and (state == _START or self._fenced):
            fence = text[index : index + 3]
            if fence == _FENCE:
                self._fenced = True
                self._state = _OPENING_FENCE if state == _START else _AFTER_FENCE
                return index + 3
            if _FENCE.startswith(fence) and index + len(fence) == len(text):
                self._carry = fence
                return len(text)
            raise _Invalid(index, f"expected '```', found {fence!r}")
        if state == _START:
            self._state = _VALUE
            return index
        raise _Invalid(index, f"unexpected {char!r} after the JSON value")

    def _fence_line(self, text: str, index: int) -> int:
        """The rest of the opening fence's line: its info string (``json``) runs to the end
        of the line, or to a ``{`` or ``[`` that begins the JSON on the same line, as some
        models write it (```` ```json {"a": 1}``` ````)."""
        found = _FENCE_LINE_END.search(text, index)
        if found is None:
            return len(text)
        self._state = _VALUE
        return found.end() if found.group() == "\n" else found.start()

    # -- building the value --------------------------------------------------------------

    def _complete(self, value: Any) -> int:
        """Put a complete value in its place; return the state that follows it."""
        containers = self._containers
        state = _COMMA_OR_CLOSE
        if not containers:
            self._root = value
            state = _DONE
        elif type(containers[-1]) is dict:
            containers[-1][self._keys[-1]] = value
        elif self._string_shown:
            containers[-1][-1] = value  # the string shown in progress, now whole
        else:
            containers[-1].append(value)
        self._string_shown = False
        if self._listener is not None:
            self._listener.completed(self._key(), value)
        return state

    def _open(self, char: str) -> int:
        container: dict[str, Any] | list[Any] = {} if char == "{" else []
        containers = self._containers
        if not containers:
            self._root = container
        elif type(containers[-1]) is dict:
            containers[-1][self._keys[-1]] = container
        else:
            containers[-1].append(container)
        if self._listener is not None:
            self._listener.opened(self._key(), container)
        containers.append(container)
        self._keys.append(None)
        return _KEY_OR_CLOSE if char == "{" else _ITEM_OR_CLOSE

    def _close(self) -> int:
        container = self._containers.pop()
        self._keys.pop()
        if self._listener is not None:
            self._listener.completed(self._key(), container)
        return _COMMA_OR_CLOSE if self._containers else _DONE

    def _show_string(self) -> None:
        """Put the string in progress, as far as it has arrived, in its place."""
        pieces = self._pieces
        if len(pieces) == 1:
            text = pieces[0]
        else:
            text = "".join(pieces)
            self._pieces = [text] if text else []
        containers = self._containers
        if not containers:
            self._root = text
        elif type(containers[-1]) is dict:
            containers[-1][self._keys[-1]] = text
        elif self._string_shown:
            containers[-1][-1] = text
        else:
            containers[-1].append(text)
        self._string_shown = True

    def _key(self) -> Key:
        """Where the value just placed sits in the innermost open container."""
        containers = self._containers
        if not containers:
            return None
        if type(containers[-1]) is dict:
            return self._keys[-1]
        return len(containers[-1]) - 1

    def path(self) -> Path:
        """Where the value being read sits: the keys and indices of the open containers."""
        path: list[str | int] = []
        for container, key in zip(self._containers, self._keys, strict=True):
            if type(container) is dict:
                if key is not None:
                    path.append(key)
            else:
                path.append(len(container) - 1)
        return tuple(path)


def _escapes_backslash_at(text: str, start: int, at: int) -> bool:
    """Whether the backslash at ``at`` begins an escape: an even run of backslashes precedes it
    (``start`` is where the string content in ``text`` begins)."""
    run = 0
    while at - run - 1 >= start and text[at - run - 1] == "\\":
        run += 1
    return run % 2 == 0


class _Invalid(Exception):
    """Raised inside the machine; ``feed`` turns it into an ``InvalidJSONError``."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(reason)
        self.index = index
        self.reason = reason
