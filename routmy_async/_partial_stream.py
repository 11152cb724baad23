"""A streamed JSON answer's partial values, for its events: built when read, in linear time.

A stream opened with a JSON ``response_format`` keeps one ``PartialAnswer`` per choice (and a
tool-call stream one per call). Each text delta is added to it as it is handed out; each event
holds a ``PartialView``: the answer and how many deltas it had at that event. Nothing is parsed
until someone reads a view, so a stream whose events are never asked for their ``parsed`` value
parses nothing (unless ``eager`` validation asked for every delta to be checked at once).

**What a view gives.** ``snapshot()``: the text so far (a join: a copy of the text, each read).
``parsed()``: the partial value as plain JSON values (see ``PartialJSON`` for what an
incomplete field shows). Read at the newest event, it feeds the parser only the deltas it has
not seen, so reading it at every event costs the answer's length once in all: it is the
parser's one live value, which later deltas keep growing in place (keys and items added, a
string in progress replaced by its longer self; nothing shown is taken back). Read at an older
event, after later deltas were read, it is built afresh from that event's text (one parse of
it): an independent value that never changes.

**Typed.** ``typed()`` gives the value as the user's type with every field optional
(``TypedPartial``), at the newest delta: a live object, like ``parsed()``.

**Eager.** With a schema and ``eager=True``, each delta is parsed as it is added, and a field
that, once complete, cannot be valid raises ``FieldValidationError`` from ``add`` (invalid JSON
raises ``InvalidJSONError``), once: the answer stays broken after that (``error``), later
deltas are kept for the text without being parsed, and reads raise the error again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from ._exceptions import ContentParseError

if TYPE_CHECKING:
    from ._partial_json import JSONListener, PartialJSON

__all__ = [
    "FrozenView",
    "PartialAnswer",
    "PartialFormat",
    "PartialView",
    "ViewCopies",
    "attach_view",
    "json_text",
    "partial_format",
    "take_validate",
]

_FENCE = "```"
_UNREAD: Any = object()
_FENCE_LINE_END = re.compile(r"[\n{\[]")


class PartialAnswer:
    """The deltas of one JSON answer, and its parser, fed only as far as someone reads.

    :param target: the type for ``typed()`` (a Struct or Pydantic model type, or a list or
        dict of them); ``None``: ``typed()`` gives the plain value.
    :param schema: the JSON schema to check each completed field against (``eager``).
    :param eager: parse every delta as it is added, so a bad field raises at once.
    """

    __slots__ = (
        "_eager",
        "_ended",
        "_error",
        "_fed",
        "_parser",
        "_pieces",
        "_schema",
        "_target",
        "_typed",
        "_typed_fed",
        "_typed_parser",
    )

    def __init__(
        self, *, target: Any = None, schema: dict[str, Any] | None = None, eager: bool = False
    ) -> None:
        self._pieces: list[str] = []
        self._fed = 0  # the deltas the parser has had
        self._eager = eager
        # The answer is whole (its choice finished): a number ending the text is complete.
        self._ended = False
        self._target = target
        self._schema = schema
        # What broke the parse, and after how many deltas: reads from there on raise it.
        self._error: tuple[int, ContentParseError] | None = None
        self._typed: Any = None
        # Made when first needed: an answer nobody reads is never parsed.
        self._parser: PartialJSON | None = None
        # The typed partial listens to a parser of its own, made the first time typed() is
        # read (it catches up then): reading only `parsed` never pays for conversions. With
        # `eager`, the main parser carries it (the conversion is part of the check).
        self._typed_parser: PartialJSON | None = None
        self._typed_fed = 0

    def _new_parser(self) -> PartialJSON:
        # Loaded with the first parse: the event types import this module for PartialView.
        from ._partial_json import ListenerGroup, PartialJSON

        listeners: list[JSONListener] = []
        typed = None
        if self._eager and self._target is not None:
            from ._typed_partial import TypedPartial

            typed = self._typed = TypedPartial(self._target, eager=True)
        # The schema's check first: it names an enum's values, a bound, a pattern; the typed
        # partial's conversion then catches what a schema cannot say (a datetime string). A
        # scalar the schema refuses but the type converts is the type's call (Pydantic's lax
        # reading): the final parse would accept it.
        if self._eager and self._schema is not None:
            from ._eager_check import SchemaCheck

            accepts = None if typed is None else typed.accepts
            listeners.append(SchemaCheck(self._schema, accepts=accepts))
        if typed is not None:
            listeners.append(typed)
        if not listeners:
            return PartialJSON()
        listener = listeners[0] if len(listeners) == 1 else ListenerGroup(*listeners)
        return PartialJSON(listener=listener)

    def add(self, piece: str) -> PartialView:
        """Take the next delta; return the view of the answer as it stands after it.

        :raises InvalidJSONError: ``eager``, and with this delta the text cannot become JSON.
        :raises FieldValidationError: ``eager``, and this delta completed a field that cannot
            be valid. Either is raised at the delta that broke the answer only: the deltas
            after it are kept (``view()``, ``text()``) without being parsed.
        """
        self._pieces.append(piece)
        if self._eager and self._error is None:
            self._feed_to(len(self._pieces))
        return PartialView(self, len(self._pieces))

    def view(self) -> PartialView:
        """The view of the answer after every delta added so far (the one ``add`` returns,
        for a delta whose ``add`` raised)."""
        return PartialView(self, len(self._pieces))

    @property
    def error(self) -> ContentParseError | None:
        """What broke the answer's parse (with ``eager``, as soon as a delta broke it; without,
        once a read reached it), or ``None``."""
        return None if self._error is None else self._error[1]

    def end(self) -> None:
        """The answer is whole: a number or literal that ends the text is complete now (``12``
        was held back while ``125`` could still come).

        :raises FieldValidationError: ``eager``, and that last value cannot be valid.
        """
        self._ended = True
        if self._eager and self._error is None:
            self._feed_to(len(self._pieces))

    def check_whole(self) -> None:
        """:raises InvalidJSONError: the text is not one whole JSON value (it was cut short,
        or is not JSON)."""
        parser = self._feed_to(len(self._pieces))
        if not parser.done:
            parser.finish()

    def ended_at(self, at: int) -> bool:
        """Whether the first ``at`` deltas are the whole answer (its choice finished)."""
        return self._ended and at == len(self._pieces)

    def text(self, at: int | None = None) -> str:
        """The text of the first ``at`` deltas (all of them by default)."""
        return "".join(self._pieces if at is None else self._pieces[:at])

    def value(self, at: int | None = None) -> Any:
        """The partial value after ``at`` deltas (all by default), as plain JSON values.

        :raises InvalidJSONError: the text so far cannot become JSON.
        """
        count = len(self._pieces) if at is None else at
        parser = self._parser
        if count == self._fed + 1 and parser is not None and self._error is None:
            # The usual read: the newest event, one delta after the last read.
            self._fed = count
            try:
                parser.feed(self._pieces[count - 1])
            except ContentParseError as error:
                self._error = (count, error)
                raise
            if self._ended and count == len(self._pieces):
                self._finish(parser)
            return parser.value
        if self._error is not None and count >= self._error[0]:
            raise self._error[1]
        if count < self._fed:
            # An older event read after a newer one: its own value, parsed from its own text.
            from ._partial_json import PartialJSON

            parser = PartialJSON()
            parser.feed(self.text(count))
            return parser.value
        return self._feed_to(count).value

    def typed(self) -> Any:
        """The value after every delta added so far, as the target type with every field
        optional (``None`` before the value begins).

        :raises InvalidJSONError: the text so far cannot become JSON.
        """
        parser = self._feed_to(len(self._pieces))
        if self._target is None:
            return parser.value
        if self._eager:
            return self._typed.value(parser)
        typed_parser = self._typed_parser
        if typed_parser is None:
            from ._partial_json import PartialJSON
            from ._typed_partial import TypedPartial

            self._typed = TypedPartial(self._target)
            typed_parser = self._typed_parser = PartialJSON(listener=self._typed)
        pieces = self._pieces
        while self._typed_fed < len(pieces):
            # The text fed the main parser without an error: no error here either.
            typed_parser.feed(pieces[self._typed_fed])
            self._typed_fed += 1
        if self._ended:
            self._finish(typed_parser)
        return self._typed.value(typed_parser)

    def _feed_to(self, count: int) -> PartialJSON:
        """The parser, fed the first ``count`` deltas (it has had none beyond them)."""
        if self._error is not None and count >= self._error[0]:
            raise self._error[1]
        parser = self._parser
        if parser is None:
            parser = self._parser = self._new_parser()
        pieces = self._pieces
        while self._fed < count:
            piece = pieces[self._fed]
            self._fed += 1  # a delta that raises is not fed twice: the parser stays broken
            try:
                parser.feed(piece)
            except ContentParseError as error:
                self._error = (self._fed, error)
                raise
        if self._ended and count == len(pieces):
            self._finish(parser)
        return parser

    def _finish(self, parser: PartialJSON) -> None:
        """At the answer's end, complete a number that ends it (``finish`` does just that
        before it checks the value is whole; an answer cut short stays as far as it came)."""
        from ._exceptions import FieldValidationError, InvalidJSONError

        if parser.done:
            return
        try:
            parser.finish()
        except FieldValidationError as error:
            self._error = (len(self._pieces), error)
            raise
        except InvalidJSONError:
            pass  # cut short: the final parse says so


class PartialView(msgspec.Struct, array_like=True, gc=False):
    """One event's look at its answer: the answer, and how many deltas it had then.

    A Struct, made in C: one is made for every delta of a structured stream. It refers to
    the answer only (never the other way), so it needs no garbage-collector tracking.
    """

    answer: PartialAnswer
    at: int

    def snapshot(self) -> str:
        """The text up to and including this event's delta."""
        return self.answer.text(self.at)

    def parsed(self) -> Any:
        """The partial value at this event (see the module doc for when it is live).

        :raises InvalidJSONError: the text up to this event cannot become JSON.
        """
        return self.answer.value(self.at)

    def frozen(self) -> FrozenView:
        """This event's look, on its own: its text, parsed when read (what a copy keeps)."""
        answer = self.answer
        return FrozenView(answer.text(self.at), ended=answer.ended_at(self.at))

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as what it shows: the answer's later deltas stay behind.
        return self.frozen().__reduce__()

    def __repr__(self) -> str:
        return f"<partial answer at delta {self.at}>"


class FrozenView:
    """An event's look at its answer, held on its own (a deep copy's, an unpickled event's):
    the text up to the event, parsed the first time ``parsed`` is read; it never changes.

    :param ended: the text is the whole answer (a number ending it is complete).
    """

    __slots__ = ("_ended", "_text", "_value")

    def __init__(self, text: str, ended: bool = False) -> None:
        self._text = text
        self._ended = ended
        self._value: Any = _UNREAD

    def snapshot(self) -> str:
        """The text up to and including the event's delta."""
        return self._text

    def parsed(self) -> Any:
        """The partial value at the event, as plain JSON values.

        :raises InvalidJSONError: the text cannot become JSON.
        """
        if self._value is _UNREAD:
            from ._exceptions import InvalidJSONError
            from ._partial_json import PartialJSON

            parser = PartialJSON()
            parser.feed(self._text)
            if self._ended:
                try:
                    parser.finish()
                except InvalidJSONError:
                    pass  # cut short: shown as far as it came, as the live view does
            self._value = parser.value
        return self._value

    # The shape of a PartialView (``view.answer.value(view.at)``, the events' one-call read):
    # a frozen view is its own answer, at its one and only point.
    at = None

    @property
    def answer(self) -> FrozenView:
        return self

    def value(self, at: int | None = None) -> Any:
        """The same as ``parsed()`` (``at`` is the frozen point, whatever is passed)."""
        return self.parsed()

    def frozen(self) -> FrozenView:
        return self

    def __reduce__(self) -> tuple[Any, ...]:
        return (FrozenView, (self._text, self._ended))  # the value is parsed again when read

    def __repr__(self) -> str:
        return f"<partial answer of {len(self._text)} characters>"


def attach_view(event: Any, view: PartialView | FrozenView) -> None:
    """Give a (frozen) delta event its view. The view is an attribute of the event, not one
    of its fields: ``msgspec.json.encode(event)`` gives the event as the server sent it (a
    view holds the whole answer, which has no JSON form of its own)."""
    event.__dict__["_view"] = view


class ViewCopies:
    """Copies and pickles of a delta event that keep what its ``snapshot`` and ``parsed``
    read (msgspec copies and pickles only the fields). ``copy.copy`` shares the original's
    view; ``copy.deepcopy`` and pickling keep the event's own look (``FrozenView``): its
    text, parsed when read, which later deltas never change."""

    __slots__ = ()

    def __copy__(self) -> Any:
        import msgspec

        copied = msgspec.structs.replace(self)  # type: ignore[type-var]
        view = self.__dict__.get("_view")
        if view is not None:
            attach_view(copied, view)
        return copied

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        import copy

        fields = {name: copy.deepcopy(value, memo) for name, value in _fields_of(self).items()}
        view = self.__dict__.get("_view")
        return _rebuilt(type(self), fields, None if view is None else view.frozen())

    def __reduce__(self) -> tuple[Any, ...]:
        # The view pickles as its FrozenView (PartialView.__reduce__).
        return (_rebuilt, (type(self), _fields_of(self), self.__dict__.get("_view")))


def _fields_of(event: Any) -> dict[str, Any]:
    import msgspec

    return {field.name: getattr(event, field.name) for field in msgspec.structs.fields(event)}


def _rebuilt(kind: type, fields: dict[str, Any], view: FrozenView | None) -> Any:
    """A delta event made again from its fields, with its view (a copy's, an unpickled
    event's)."""
    event = kind(**fields)
    if view is not None:
        attach_view(event, view)
    return event


class PartialFormat:
    """How a stream with a JSON format follows its answers: each answer's type, schema, and
    whether every delta is checked as it arrives.

    :param target: the Struct or Pydantic model type asked for (``typed()`` gives it), or
        ``None`` for plain JSON values.
    :param schema: the JSON schema eager validation checks against (``None``: only that the
        text is JSON).
    :param eager: check every delta as it arrives (``validate="eager"``).
    """

    __slots__ = ("eager", "schema", "target")

    def __init__(self, *, target: Any, schema: dict[str, Any] | None, eager: bool) -> None:
        self.target = target
        self.schema = schema
        self.eager = eager

    def answer(self) -> PartialAnswer:
        """A new answer to follow (one per choice)."""
        return PartialAnswer(target=self.target, schema=self.schema, eager=self.eager)


def partial_format(wire_format: Any, target: Any, *, validate: Any) -> PartialFormat | None:
    """The ``PartialFormat`` of a stream whose request asks for ``wire_format`` (the
    ``response_format`` as sent, or a Responses ``text.format``), or ``None`` where the answer
    is not asked to be JSON.

    :param target: the Struct or Pydantic model type the format was made from, or ``None``.
    :param validate: ``"final"`` (the whole answer, once complete) or ``"eager"``.
    :raises TypeError: ``validate`` is not a string.
    :raises ValueError: ``validate`` is neither ``"final"`` nor ``"eager"``, or ``"eager"``
        without a JSON format.
    """
    if not isinstance(validate, str):
        raise TypeError(f"validate must be 'final' or 'eager', not {validate!r:.80}")
    if validate not in ("final", "eager"):
        raise ValueError(f"validate must be 'final' or 'eager', not {validate!r:.80}")
    kind = wire_format.get("type") if isinstance(wire_format, Mapping) else None
    if kind not in ("json_schema", "json_object"):
        if validate == "eager":
            raise ValueError(
                "validate='eager' checks a JSON answer as it streams: give a response_format "
                "(text_format on the Responses API): a msgspec.Struct or Pydantic model type, "
                "or a json_schema or json_object format"
            )
        return None
    eager = validate == "eager"
    schema: dict[str, Any] | None = None
    if eager and target is not None:
        from ._eager_check import schema_of

        schema = schema_of(target)
    elif eager and kind == "json_schema":
        # Chat nests the schema under "json_schema"; the Responses text format does not.
        holder = wire_format.get("json_schema", wire_format)
        found = holder.get("schema") if isinstance(holder, Mapping) else None
        schema = dict(found) if isinstance(found, Mapping) else None
    return PartialFormat(target=target, schema=schema, eager=eager)


def take_validate(params: dict[str, Any], *, stream: object) -> Any:
    """Take ``validate`` out of a ``create`` call's keywords (where any other keyword goes in
    the request body): an option of the SDK, which the server must never receive instead of
    the stream checking the answer. Its value is checked where the stream is made.

    :raises ValueError: ``validate`` other than ``"final"`` on a call that does not stream.
    """
    validate = params.pop("validate", "final")
    if not stream and validate != "final":
        raise ValueError(
            f"validate={validate!r:.80} checks an answer as it streams: pass stream=True "
            "(or open it with .stream(...)); an answer that does not stream is validated "
            "once it is whole"
        )
    return validate


def json_text(text: str) -> str:
    """The JSON inside a model's answer: a byte order mark and whitespace before it skipped,
    and a Markdown fence (```` ```json ````, or a bare ```` ``` ````) around it removed, as
    the incremental parser reads it (the JSON on the fence's line or on the next). Anything
    else is returned as it is."""
    start = 0
    if text.startswith("\ufeff"):
        start = 1
    stripped = text[start:].lstrip()
    if not stripped.startswith(_FENCE):
        return text[start:] if start else text
    # The fence's line ends at its line break, or where an object or array begins on it.
    line_end = _FENCE_LINE_END.search(stripped, len(_FENCE))
    if line_end is None:
        return stripped  # only the opening fence: not JSON, and the decoder says so
    body_at = line_end.end() if line_end.group() == "\n" else line_end.start()
    # JSON strings cannot hold a raw line break, so "\n```" is the closing fence.
    end = stripped.find("\n" + _FENCE, body_at)
    if end < 0:
        end = stripped.rfind(_FENCE)
        if end < body_at:
            end = len(stripped)
    return stripped[body_at:end]
