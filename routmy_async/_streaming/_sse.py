"""A sans-I/O Server-Sent Events decoder: bytes in, events out.

It follows the WHATWG event-stream rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end at CRLF, LF or CR; ``data`` lines of one event are joined with LF; one space after
the colon is dropped; lines starting with a colon are comments; an event is dispatched at a
blank line. Data stays ``bytes`` all the way, so UTF-8 is only ever decoded from whole lines
(by the JSON decoder), never from a network read that may end inside a character.

``data: [DONE]`` ends an OpenAI-style stream: the decoder sets ``done`` and yields nothing more.
A UTF-8 byte order mark opening the stream is dropped (it may arrive split across reads), and
an event whose data is empty carries nothing, so it is not dispatched.
"""

from __future__ import annotations

import re

import msgspec

__all__ = ["SSEDecoder", "WireEvent"]

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_DONE = b"[DONE]"
_BOM = b"\xef\xbb\xbf"


class WireEvent(msgspec.Struct, gc=False):
    """One dispatched event as it came off the wire: ``data`` is the raw bytes of its joined
    ``data`` lines (the public ``ServerSentEvent`` of raw streams is its text form)."""

    data: bytes
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    @property
    def text(self) -> str:
        """The data decoded as UTF-8 (malformed bytes replaced)."""
        return self.data.decode("utf-8", "replace")

    def __repr__(self) -> str:
        return (
            f"WireEvent(event={self.event!r}, data={self.data[:60]!r}, "
            f"id={self.id!r}, retry={self.retry!r})"
        )


class SSEDecoder:
    """Incremental decoder. Call :meth:`feed` with each network read, :meth:`close` at EOF."""

    __slots__ = (
        "_bom_pending",
        "_data",
        "_event",
        "_partial",
        "_plain",
        "_skip_lf",
        "comments",
        "done",
        "last_event_id",
        "retry",
    )

    def __init__(self) -> None:
        self._partial: list[bytes] = []
        # The first bytes, held until they show whether the stream opens with a BOM;
        # None once that is settled.
        self._bom_pending: bytes | None = b""
        # A CR ended the previous read: an LF opening the next one belongs to the same break.
        self._skip_lf = False
        self._data: list[bytes] = []
        self._event: str | None = None
        # No event type, id or retry in play: events can travel as bare data bytes.
        self._plain = True
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self.comments = 0
        self.done = False

    def feed(self, chunk: bytes) -> list[WireEvent]:
        """Add the bytes of one read; return the events it completed, in order."""
        return [
            item if type(item) is WireEvent else WireEvent(item)  # type: ignore[arg-type]
            for item in self.feed_raw(chunk)
        ]

    def feed_raw(self, chunk: bytes) -> list[bytes | WireEvent]:
        """Like :meth:`feed`, but a plain event (type "message", no id or retry ever seen) comes
        back as its data bytes alone: the streaming hot path skips one object per event."""
        if self.done or not chunk:
            return []
        if self._bom_pending is not None:
            chunk = self._bom_pending + chunk
            if len(chunk) < len(_BOM) and _BOM.startswith(chunk):
                self._bom_pending = chunk
                return []
            self._bom_pending = None
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
                if not chunk:
                    return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\n" not in chunk and b"\r" not in chunk:
            # No line end: a piece of a (possibly many-MiB) line; join once it is complete.
            self._partial.append(chunk)
            return []
        if self._partial:
            self._partial.append(chunk)
            chunk = b"".join(self._partial)
            self._partial = []
        if b"\r" in chunk:
            if chunk[-1:] == b"\r":
                self._skip_lf = True
            return self._split_lines(_LINE_BREAK.split(chunk))
        events: list[bytes | WireEvent] = []
        if self._data and chunk[:1] == b"\n":
            # The read starts with the blank line that ends the pending event.
            events = self._lines([b""])
            chunk = chunk[1:]
            if self.done:
                return events
        if self._plain and not self._data and chunk.startswith(b"data: "):
            events.extend(self._feed_blocks(chunk))
        else:
            events.extend(self._split_lines(chunk.split(b"\n")))
        return events

    def _split_lines(self, lines: list[bytes]) -> list[bytes | WireEvent]:
        tail = lines.pop()
        if tail:
            self._partial.append(tail)
        return self._lines(lines)

    def _lines(self, lines: list[bytes]) -> list[bytes | WireEvent]:
        """Apply the line rules to complete lines; return the events they dispatch."""
        events: list[bytes | WireEvent] = []
        data = self._data
        for line in lines:
            if line.startswith(b"data: "):
                data.append(line[6:])
            elif line:
                self._field(line)
            elif data:
                # A blank line dispatches the event (inlined: this runs once per chunk).
                value = data[0] if len(data) == 1 else b"\n".join(data)
                data.clear()
                if not value:
                    # `data:` alone: nothing to deliver.
                    self._event = None
                    self._plain = self.last_event_id is None and self.retry is None
                    continue
                if value == _DONE:
                    self.done = True
                    self._partial = []
                    self._event = None
                    return events
                if self._plain:
                    events.append(value)
                else:
                    events.append(
                        WireEvent(value, self._event or "message", self.last_event_id, self.retry)
                    )
                    self._event = None
                    self._plain = self.last_event_id is None and self.retry is None
            else:
                self._event = None
                self._plain = self.last_event_id is None and self.retry is None
        return events

    def _feed_blocks(self, chunk: bytes) -> list[bytes | WireEvent]:
        """The fast path: an LF-only read that starts with a ``data: `` line of a new event.

        Splitting on ``"\\n\\ndata: "`` yields the JSON of whole one-line events directly, with
        no Python work per event; one count of LFs proves that none of them had a second
        line. Anything else (a comment, a multi-line event, another field) takes the line
        rules instead. What follows the last separator goes through the line rules too.
        """
        parts = chunk[6:].split(b"\n\ndata: ")
        rest = parts.pop()
        if parts:
            whole = len(chunk) - len(rest)
            if chunk.count(b"\n", 0, whole) != 2 * len(parts):
                return self._split_lines(chunk.split(b"\n"))
            if b"" in parts:
                parts = [part for part in parts if part]
            if _DONE in parts:
                self.done = True
                self._partial = []
                return list(parts[: parts.index(_DONE)])
        events: list[bytes | WireEvent] = list(parts)
        events.extend(self._split_lines((b"data: " + rest).split(b"\n")))
        return events

    def close(self) -> list[WireEvent]:
        """Signal EOF. An event without its closing blank line is discarded, as the spec says."""
        self._partial = []
        self._data.clear()
        self._event = None
        return []

    @property
    def has_pending(self) -> bool:
        """Whether bytes of an unfinished line or event are buffered."""
        return bool(self._partial or self._data)

    def _field(self, line: bytes) -> None:
        if line[:5] == b"data:":
            value = line[5:]
            self._data.append(value[1:] if value[:1] == b" " else value)
            return
        if line[:1] == b":":
            self.comments += 1
            return
        name, colon, value = line.partition(b":")
        if colon and value[:1] == b" ":
            value = value[1:]
        if name == b"data":  # "data" with no colon: an empty data line
            self._data.append(b"")
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
            self._plain = False
        elif name == b"id":
            if b"\0" not in value:
                self.last_event_id = value.decode("utf-8", "replace")
                self._plain = False
        elif name == b"retry":
            if value.isdigit():
                self.retry = int(value)
                self._plain = False
        # Any other field name is ignored, as the spec requires.
