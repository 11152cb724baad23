"""``RawStream``: a streamed raw request, for SSE endpoints the SDK does not model yet.

``client.stream_request(method, path, ...)`` (an async context manager) and
``await client.post(path, ..., stream=True)`` open one. Iterated, it yields every event of the
answer as a :class:`ServerSentEvent` (``event``, ``data``, ``id``, ``retry``, ``.json()``),
or, with ``cast_to=``, the ``data`` of every ``message`` event decoded into that type.

How it ends, for an endpoint whose rules the SDK does not know:

- ``data: [DONE]`` ends it: the loop ends there, what follows is not delivered, and the
  connection goes back to the pool when the body ends (or is dropped if the server holds the
  body open); so does the body's end at an event boundary: a generic endpoint need not send
  ``[DONE]``.
- The body ending inside an event (a line or an event without its closing blank line), or cut
  by the network, raises ``APIConnectionError``: never a silently shortened answer.
- An ``event: error`` frame, or a data frame that is a JSON object with a top-level
  ``"error"``, raises ``APIStreamError`` once the events before it were delivered.
- After an error, or ``close()`` before the end, every read raises ``APIConnectionError``
  (the stream-end rule of every stream, in ``EventStream``'s docstring).
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast, overload

import msgspec

from .._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStreamError,
    parse_error_body,
    stream_error,
)
from . import _sse
from ._base import EventStream, StreamManager
from ._context import StreamContext

if TYPE_CHECKING:
    from starlette.responses import StreamingResponse


__all__ = ["RawStream", "RawStreamManager", "ServerSentEvent"]

T = TypeVar("T")
_R = TypeVar("_R")

_MESSAGE = "message"


def _invalid(problem: str, exc: msgspec.MsgspecError, data: bytes) -> APIResponseValidationError:
    kind = "has an unexpected shape" if isinstance(exc, msgspec.ValidationError) else "is not JSON"
    return APIResponseValidationError(f"{problem} {kind}: {exc}", body=data)


class ServerSentEvent(msgspec.Struct, frozen=True):
    """One event of a raw stream.

    :ivar event: the event's type (``event:`` line); ``"message"`` when it had none.
    :ivar data: its ``data:`` lines, joined with newlines, as text.
    :ivar id: the last event id seen so far (``id:`` lines carry over, as in browsers).
    :ivar retry: the last ``retry:`` the server asked for, in milliseconds.
    """

    event: str = _MESSAGE
    data: str = ""
    id: str | None = None
    retry: int | None = None

    @overload
    def json(self) -> Any: ...
    @overload
    def json(self, cast_to: type[_R]) -> _R: ...
    def json(self, cast_to: Any = Any) -> Any:
        """The ``data`` decoded as JSON, or into ``cast_to`` (a msgspec Struct, ...).

        :raises APIResponseValidationError: the data is not JSON, or does not fit ``cast_to``.
        """
        try:
            return msgspec.json.decode(self.data, type=cast_to)
        except msgspec.MsgspecError as exc:
            raise _invalid("the event's data", exc, self.data.encode()) from None


def _stream_error(data: bytes, *, named: bool) -> APIStreamError | None:
    """The ``APIStreamError`` an error frame carries: a data frame with a top-level ``error``,
    or an ``event: error`` frame, which is an error whatever it carries."""
    parsed = parse_error_body(data)
    return stream_error(parsed) if named or parsed.names_error else None


class RawStream(EventStream[T], Generic[T]):
    """An open SSE answer of any endpoint: iterate it for events (see the module docstring).

    Use it as ``async with stream:`` so the connection is released even when the loop is left
    early. ``T`` is :class:`ServerSentEvent`, or the ``cast_to`` type the stream was opened
    with. ``status_code``, ``headers``, ``rate_limits`` and ``request_id`` describe the answer.
    The loop stops only at the answer's end; after an error, or ``close()`` before the end,
    every read raises ``APIConnectionError`` ("closed before its end").
    """

    _noun = "event"

    def __init__(self, context: StreamContext, *, cast_to: type[T] | None = None):
        self._events = 0
        self._ready: deque[T] = deque()
        self._decode: Callable[[bytes], T] | None = (
            None if cast_to is None else msgspec.json.Decoder(cast_to).decode
        )
        #: Events of a type other than ``message`` (``event: ping``), skipped with ``cast_to``.
        self.ignored_events = 0
        self._last_usage: Mapping[str, Any] | None = None
        super().__init__(context)

    def _take(self) -> None:
        """Turn the next few events into items; an error frame or a bad one stops the batch
        (the items before it are still delivered, then the failure is raised)."""
        append = self._ready.append
        decode = self._decode
        for item in self._next_batch():
            if type(item) is bytes:
                data, name, event_id, retry = item, _MESSAGE, None, None
            else:
                assert isinstance(item, _sse.WireEvent)
                data, name, event_id, retry = item.data, item.event, item.id, item.retry
            named_error = name == "error"
            if named_error or b'"error"' in data:
                error = _stream_error(data, named=named_error)
                if error is not None:
                    error.request_id = self.request_id
                    self._fail(error)
                    return
            if b'"usage"' in data:
                self._note_usage(data)
            self._events += 1
            if decode is None:
                event = ServerSentEvent(name, data.decode("utf-8", "replace"), event_id, retry)
                append(cast(T, event))
            elif name != _MESSAGE:
                self.ignored_events += 1
            else:
                try:
                    append(decode(data))
                except msgspec.MsgspecError as exc:
                    failure = _invalid("a stream event's data", exc, data)
                    failure.request_id = self.request_id
                    self._fail(failure)
                    return

    def _note_usage(self, data: bytes) -> None:
        """Keep the last usage an event carried (a chat stream's usage chunk, the response
        of a Responses stream's last event): a spend limit settles the stream to it and the
        hooks see it, as for the typed streams (without it a limit counts the stream's
        whole reservation)."""
        try:
            payload = msgspec.json.decode(data)
        except msgspec.DecodeError:
            return
        if not isinstance(payload, dict):
            return
        usage = payload.get("usage")
        response = payload.get("response")
        if usage is None and isinstance(response, dict):
            usage = response.get("usage")
        if isinstance(usage, dict):
            self._last_usage = usage

    def _used_tokens(self) -> int | None:
        total = None if self._last_usage is None else self._last_usage.get("total_tokens")
        return total if isinstance(total, int) and not isinstance(total, bool) else None

    def _usage(self) -> Any:
        return self._last_usage

    def _at_eof(self) -> None:
        # The end of the body at an event boundary ends a generic stream; inside an event
        # (a line or an event without its closing blank line) it was cut short.
        self._release()
        decoder = self._decoder
        if decoder.has_pending and not decoder.done:
            raise APIConnectionError(
                f"{self._method} {self._url}: the stream ended inside an event, after "
                f"{self._events} whole event(s): the answer is incomplete",
                method=self._method,
                url=self._url,
            )
        self._ended = True

    def _received(self) -> int:
        return self._events

    def _delivered(self) -> int:
        # With ``cast_to``, events of another type were received but never handed out.
        return self._events - self.ignored_events - len(self._ready)

    # -- results ------------------------------------------------------------------------

    @property
    def last_event_id(self) -> str | None:
        """The last ``id:`` the server sent: send it back as ``Last-Event-ID`` to resume."""
        return self._decoder.last_event_id

    @property
    def saw_done(self) -> bool:
        """Whether the server ended the stream with ``data: [DONE]``."""
        return self._decoder.done

    # -- serving the stream again -------------------------------------------------------

    def to_sse(
        self,
        *,
        format: Literal["events"] = "events",
        keepalive: float | None = 15.0,
    ) -> AsyncGenerator[bytes, None]:
        """The stream as the body of a ``text/event-stream`` response, frame by frame: each
        event with its ``event:`` (unless ``message``), ``id:`` and ``data:`` lines as
        received (a stream opened with ``cast_to=`` serves each value as its JSON), then
        ``data: [DONE]`` if the server sent one. Keep-alives, an error as the last frame and
        closing work as for the chat stream's
        :meth:`~routmy_async.ChatCompletionStream.to_sse`.

        :param keepalive: seconds of silence after which a ``: keep-alive`` comment is
            written; ``None`` for none.
        :raises ValueError: an unknown ``format``, or ``keepalive`` not positive.
        """
        from ._sse_out import raw_framing

        return self._serve_sse(raw_framing, format, ("events",), keepalive)

    def to_streaming_response(
        self,
        *,
        format: Literal["events"] = "events",
        keepalive: float | None = 15.0,
        headers: Mapping[str, str] | None = None,
        status_code: int = 200,
    ) -> StreamingResponse:
        """A Starlette/FastAPI ``StreamingResponse`` serving :meth:`to_sse` that owns the
        stream: when the client disconnects, the upstream stream is closed at once.

        :raises ImportError: Starlette is not installed (``to_sse()`` needs nothing).
        :raises ValueError: as :meth:`to_sse`.
        """
        from ._sse_out import raw_framing

        return self._serve_response(
            raw_framing, format, ("events",), keepalive, headers, status_code
        )

    def __repr__(self) -> str:
        state = "done" if self._ended else ("closed" if self._closed else "open")
        return f"<RawStream {self._method} {state} events={self._events}>"


class RawStreamManager(StreamManager[RawStream[T]]):
    """``async with client.stream_request(...) as events:`` opens the stream on entry (the
    request was checked when the manager was made) and closes it on exit."""
