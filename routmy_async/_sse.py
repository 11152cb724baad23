"""A sans-I/O Server-Sent Events decoder: bytes in, events out.

It follows the WHATWG event-stream rules
(https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
lines end at CRLF, LF or CR; ``data`` lines of one event are joined with LF; one space after
the colon is dropped; lines starting with a colon are comments; an event is dispatched at a
blank line. Data stays ``bytes`` all the way, so UTF-8 is only ever decoded from whole lines
(by the JSON decoder), never from a network read that may end inside a character.

``data: [DONE]`` ends an OpenAI-style stream: the decoder sets ``done`` and yields nothing more.
"""

from __future__ import annotations

import re

__all__ = ["SSEDecoder", "ServerSentEvent"]

_LINE_BREAK = re.compile(rb"\r\n|\r|\n")
_DONE = b"[DONE]"


class ServerSentEvent:
    """One dispatched event. ``data`` is the raw bytes of its joined ``data`` lines."""

    __slots__ = ("data", "event", "id", "retry")

    def __init__(
        self,
        data: bytes,
        event: str = "message",
        id: str | None = None,
        retry: int | None = None,
    ):
        self.data = data
        self.event = event
        self.id = id
        self.retry = retry

    @property
    def text(self) -> str:
        """The data decoded as UTF-8 (malformed bytes replaced)."""
        return self.data.decode("utf-8", "replace")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ServerSentEvent):
            return NotImplemented
        return (self.data, self.event, self.id, self.retry) == (
            other.data,
            other.event,
            other.id,
            other.retry,
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"ServerSentEvent(event={self.event!r}, data={self.data[:60]!r}, "
            f"id={self.id!r}, retry={self.retry!r})"
        )


class SSEDecoder:
    """Incremental decoder. Call :meth:`feed` with each network read, :meth:`close` at EOF."""

    __slots__ = (
        "_data",
        "_event",
        "_partial",
        "_skip_lf",
        "comments",
        "done",
        "last_event_id",
        "retry",
    )

    def __init__(self) -> None:
        self._partial: list[bytes] = []
        # A CR ended the previous read: an LF opening the next one belongs to the same break.
        self._skip_lf = False
        self._data: list[bytes] = []
        self._event: str | None = None
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self.comments = 0
        self.done = False

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """Add the bytes of one read; return the events it completed, in order."""
        if self.done or not chunk:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
                if not chunk:
                    return []
        if b"\r" in chunk:
            lines = _LINE_BREAK.split(chunk)
            if chunk[-1:] == b"\r":
                self._skip_lf = True
        elif b"\n" in chunk:
            lines = chunk.split(b"\n")
        else:
            # No line end: a piece of a (possibly many-MiB) line; join once it is complete.
            self._partial.append(chunk)
            return []
        if self._partial:
            self._partial.append(lines[0])
            lines[0] = b"".join(self._partial)
            self._partial = []
        tail = lines.pop()
        if tail:
            self._partial.append(tail)
        events: list[ServerSentEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    event = self._dispatch()
                    if event is None:
                        return events
                    events.append(event)
                else:
                    self._event = None
            else:
                self._field(line)
        return events

    def close(self) -> list[ServerSentEvent]:
        """Signal EOF. An event without its closing blank line is discarded, as the spec says."""
        self._partial = []
        self._data = []
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
        elif name == b"id":
            if b"\0" not in value:
                self.last_event_id = value.decode("utf-8", "replace")
        elif name == b"retry":
            if value.isdigit():
                self.retry = int(value)
        # Any other field name is ignored, as the spec requires.

    def _dispatch(self) -> ServerSentEvent | None:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        self._data = []
        event_type = self._event or "message"
        self._event = None
        if data == _DONE:
            self.done = True
            self._partial = []
            return None
        return ServerSentEvent(data, event_type, self.last_event_id, self.retry)
