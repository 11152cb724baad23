"""The wire half of an SSE stream over one open aiohttp response, shared by stream classes.

``EventStream`` owns the response and gives a subclass its events as SSE data, read on
demand: it reads, splits into events (``SSEDecoder.feed_raw``), bounds the gap between two
events (``stream_idle``; keep-alive comments do not count), ends at the answer's terminal
event (``data: [DONE]``, or the subclass's own) without waiting for the body's end, and
releases the response on every way out. It is a class with ``__anext__`` in its subclasses
rather than an async generator, so nothing is left for the garbage collector to finalise on a
closed loop: a ``break`` followed by leaving ``async with``, an exception or a cancellation
each close the response on the spot (closing is synchronous in aiohttp, so no await in the
cleanup can be cut short). A stream read to its end releases its connection; one abandoned
before its terminal event closes it, because a half-read HTTP/1.1 connection cannot be reused.

At the terminal event the answer is whole: unless the body's end came with it, the response
goes to the transport's ``BodyEnds`` (``_finish_body``), which gives the connection back to
the pool when the body ends, or drops it if the server holds the body open, so the reader is
never held by what follows. Only at the loop's end, after the last item, does the stream give
the body's end a moment (``_END_GRACE``, ``_await_body_end``) to arrive, as it does from any
server that ends its bodies promptly: the next request then finds the connection in the pool
instead of opening another, and a connection cut meanwhile is dropped at once.

The one ``__anext__`` loop lives here; a subclass supplies how a batch of events is decoded
and what ends them. What every stream has lives here too: the answer's ``status_code``,
``headers``, ``rate_limits`` and ``request_id``, and the report of its end to the hooks, once,
however it ended: ``on_stream_end`` with a ``StreamSummary`` (outcome, duration, time to the
first event, events delivered, usage, result), then ``on_error`` too when the outcome is
``error`` or ``broken``. A stream that fails before it opens (a wrong ``Content-Type``)
reports ``on_error`` alone, as a failed request does: it never started.

The stream-end rule is written once, in ``EventStream``'s docstring.

What a subclass supplies: ``_take`` (decode the next batch of ``_undecoded`` into ``_ready``,
calling ``_fail`` at a bad or error frame, ``_finish_body`` at a terminal event of its own),
``_ready`` (typed), ``_received`` (events so far), ``_terminal`` (what ends its answer, for the
error of a body that ends without it); optionally ``_feed`` (bytes to events), ``_at_eof``
(what the body's end means), ``completed`` (whether the answer is whole), ``_used_tokens``,
``_delivered``, ``_usage`` and ``_result`` (what the hooks are told).
"""

from __future__ import annotations

import asyncio
import time
import warnings
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Protocol, TypeVar

import aiohttp

from .._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStreamError,
    APITimeoutError,
    ContentParseError,
    RoutmyError,
)
from .._hooks import StreamOutcome, StreamSummary
from .._http._ratelimit import RateLimitHeaders, parse_rate_limit_headers
from .._http._transport import TRANSPORT_ERRORS, map_transport_error
from ._context import StreamContext
from ._sse import SSEDecoder, WireEvent

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from starlette.responses import StreamingResponse

    from ._sse_out import Framing

__all__ = ["EventStream", "StreamManager"]

_EVENT_STREAM = "text/event-stream"
# How long the end of a stream waits for the body's end to arrive once the answer is whole.
# A server that ends its bodies promptly sends it with, or right after, the terminal event; a
# reader is held at most this long by one that does not (the bound is 50 ms).
_END_GRACE = 0.02
# Events decoded per step: a read can hold a whole stream, and decoding it at once would keep
# a thousand objects alive and cache-cold before the first is used.
_BATCH = 32
# Errors that say the answer itself was bad (an error frame, a frame that does not decode, a
# field that failed eager validation), as opposed to the connection failing: the outcome
# "error" rather than "broken".
_BAD_ANSWERS = (APIStreamError, APIResponseValidationError, ContentParseError)
# The outcomes that are failures of the call: ``on_error`` follows ``on_stream_end``. A reader
# that stops early ("cancelled") has not seen a failure.
_FAILED = frozenset({"error", "broken"})

ItemT = TypeVar("ItemT")
_Self = TypeVar("_Self", bound="EventStream[Any]")


class EventStream(Generic[ItemT]):
    """An open SSE response, read on demand (see the module docstring).

    The stream-end rule, the same for every kind of stream:

    - The loop stops (``StopAsyncIteration``) only at a whole answer (``completed``), and
      again on every read after it. There the token estimate is settled with the answer's
      usage and the hooks are told ``done``.
    - Any other end raises, once the items before it were handed out: an error frame, a bad
      frame, a cut, a body that ends before the answer's terminal event, a timeout.
    - After that, and after ``close()`` or a cancelled read before the end, every read raises
      ``APIConnectionError`` ("closed before its end"), chained to the first error the stream
      raised (kept in ``_raised``, which the final result raises again): a stream never ends
      quietly with a shortened answer.
    """

    _noun = "event"
    # What ends the answer: named in the error of a body that ends without it.
    _terminal = "its last event"
    # Decoded and not yet handed out (each subclass makes its own).
    _ready: deque[ItemT]

    def __init__(self, context: StreamContext):
        response = context.response
        self._response = response
        self._transport = context.transport
        self._content = response.content
        self._idle = context.idle_timeout
        self._method = context.method
        self._url = context.url
        # The token estimate reserved for this request, settled with the usage at the end.
        self._tokens = context.tokens
        self._decoder = SSEDecoder()
        self._undecoded: list[bytes | WireEvent] = []
        self._undecoded_at = 0
        self._failure: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._loop_time = self._loop.time
        self._last_event_at = self._loop_time()
        self._ended = False  # the answer is whole: EOF, or its terminal event
        self._closed = False  # the response released, closed, or handed to the transport
        # The answer is whole and its body has not ended: see _finish_body.
        self._body_open = False
        # Observed by hooks: the operation (None without hooks), and when its first event came.
        self._call = context.call
        self._first_event_at: float | None = None
        # The first error raised to the reader: what ended the stream (see _raising).
        self._raised: RoutmyError | None = None
        self.request_id: str | None = response.headers.get("x-request-id")
        content_type = response.headers.get("Content-Type", "")
        if _EVENT_STREAM not in content_type:
            self._check_content_type(content_type)

    # -- the async iterator ---------------------------------------------------------------

    def __aiter__(self: _Self) -> _Self:
        return self

    async def __aenter__(self: _Self) -> _Self:
        return self

    async def __anext__(self) -> ItemT:
        ready = self._ready
        if ready:  # an item decoded already: the common case, kept free of the try below
            return ready.popleft()
        try:
            while not ready:
                if self._undecoded:
                    self._take()
                    continue
                if self._failure is not None:
                    failure, self._failure = self._failure, None
                    raise failure  # kept in _raised: the final result raises it again
                if self._ended:
                    await self._stop()
                if self._closed:
                    raise self._closed_early() from self._raised
                await self._read()
        except StopAsyncIteration:
            raise
        except BaseException as error:
            self._raising(error)
            raise
        return ready.popleft()

    async def _stop(self) -> NoReturn:
        """No event will come after those handed out: stop at a whole answer (settle the
        tokens, tell the hooks, give the body's end its moment); raise at any other end."""
        if self._raised is not None:
            raise self._closed_early() from self._raised
        if not self.completed:
            raise self._ended_early(self._terminal)
        if self._tokens:
            self._settle_tokens(self._used_tokens())
        if self._call is not None:
            self._observe_end("done", None)
        if self._body_open:
            await self._await_body_end()
        raise StopAsyncIteration

    # -- for subclasses -------------------------------------------------------------------

    def _take(self) -> None:
        """Decode the next batch of ``_undecoded`` events into ``_ready`` (``_next_batch``),
        in one tight loop. A bad or error frame calls ``_fail`` and stops the batch: the items
        before it are still handed out, then the failure is raised."""
        raise NotImplementedError

    def _received(self) -> int:
        """How many events the answer has had so far (for error messages)."""
        raise NotImplementedError

    def _feed(self, data: bytes) -> list[bytes | WireEvent]:
        """The events one read completes: ``self._decoder.feed_raw`` of the bytes, which a
        subclass may prepare first."""
        return self._decoder.feed_raw(data)

    def _at_eof(self) -> None:
        """The body ended without ``[DONE]``: release the connection, and let ``completed``
        say at the loop's end whether the answer is whole. A subclass that can tell at once
        raises ``_ended_early(...)`` instead of ending."""
        self._release()
        self._ended = True

    @property
    def completed(self) -> bool:
        """Whether the stream was read to its end: the body ended whole and every item was
        handed out (a reader that left before the last one did not read it to its end, even
        if the whole body had arrived)."""
        return self._ended and not self._ready and not self._undecoded

    def _delivered(self) -> int:
        """How many events the reader was handed (``StreamSummary.chunks``): those received,
        less those decoded but not yet handed out."""
        return self._received() - len(self._ready)

    def _used_tokens(self) -> int | None:
        """The tokens the answer used, to settle the estimate with (``None``: not told)."""
        return None

    def _usage(self) -> Any:
        """The answer's usage object, if it carried one (told to the hooks)."""
        return None

    def _failed_result(self) -> Any:
        """What a failed stream still answered (a Responses stream's failed ``Response``),
        for the hooks; ``None`` for most streams."""
        return None

    def _result(self) -> Any:
        """The final object of a stream read to its end (told to the hooks)."""
        return None

    def _next_batch(self) -> list[bytes | WireEvent]:
        """Take the next few undecoded events of the last read."""
        start = self._undecoded_at
        events = self._undecoded[start : start + _BATCH]
        if start + _BATCH >= len(self._undecoded):
            self._undecoded = []
            self._undecoded_at = 0
        else:
            self._undecoded_at = start + _BATCH
        return events

    def _fail(self, failure: BaseException) -> None:
        """Stop at a failure: close the response, drop what is left, raise it next."""
        self._transport.redactor.scrub(failure)
        self._abort()
        self._failure = failure
        self._undecoded = []

    def _settle_tokens(self, actual: int | None) -> None:
        if self._tokens:
            self._transport.settle_tokens(self._tokens, actual)
            self._tokens = 0

    def _raising(self, error: BaseException) -> None:
        """An error is leaving ``__anext__`` (anything but ``StopAsyncIteration``): a
        ``RoutmyError`` is scrubbed of the key, and the first one kept in ``_raised`` (what
        ended the stream); the hooks learn how the stream ended (a bad answer: ``error``; the
        connection: ``broken``; anything else, a cancellation say: ``cancelled``)."""
        outcome: StreamOutcome = "cancelled"
        if isinstance(error, RoutmyError):
            # Every error of the stream leaves through here: none carries the key.
            self._transport.redactor.scrub(error)
            if self._raised is None:
                self._raised = error
            outcome = "error" if isinstance(error, _BAD_ANSWERS) else "broken"
        if self._call is not None:
            self._observe_end(outcome, error)

    # -- hooks ----------------------------------------------------------------------------

    def _observe_end(self, outcome: StreamOutcome, error: BaseException | None) -> None:
        """Tell the hooks how the stream ended (once): ``on_stream_end``, then, for a failed
        stream (``error``, ``broken``), ``on_error``."""
        call, self._call = self._call, None
        if call is None:
            return
        failure = self._failure or self._raised
        if outcome == "done" and failure is not None:
            outcome, error = "error", failure  # an end after an error frame is no success
        first = self._first_event_at
        call.emit(
            "on_stream_end",
            StreamSummary(
                outcome=outcome,
                duration=time.monotonic() - call.started,
                time_to_first_event=None if first is None else first - call.started,
                chunks=self._delivered(),
                usage=self._usage(),
                result=self._result() if outcome == "done" else self._failed_result(),
                error=error,
            ),
        )
        if error is not None and outcome in _FAILED:
            call.failed(error)

    # -- reading --------------------------------------------------------------------------

    async def _read(self) -> None:
        """One network read: its events go to ``_undecoded``; EOF and ``[DONE]`` end it."""
        try:
            data = await self._content.readany()
        except BaseException as exc:
            self._abort()
            if isinstance(exc, TRANSPORT_ERRORS):
                raise self._wire_error(exc) from exc
            raise
        if not data:
            self._at_eof()
            return
        events = self._feed(data)
        if events:
            self._undecoded = events
            self._undecoded_at = 0
            self._last_event_at = self._loop_time()
            if self._first_event_at is None:
                self._first_event_at = time.monotonic()
        elif self._decoder.has_pending:
            # Part of an event (a large image line) is arriving: that is progress.
            self._last_event_at = self._loop_time()
        elif self._idle is not None:
            # Keep-alive comments reset the socket timer but are not events.
            if self._loop_time() - self._last_event_at > self._idle:
                self._abort()
                raise APITimeoutError(
                    f"{self._method} {self._url}: no stream event for {self._idle:g} s "
                    f"(only keep-alive comments arrived)",
                    method=self._method,
                    url=self._url,
                )
        if self._decoder.done:
            self._finish_body()

    def _finish_body(self) -> None:
        """The answer is whole (``[DONE]``, or the event that ends it): what follows in the
        body is not part of it. Unless the body has ended, hand the response to the
        transport, which gives the connection back once it does: the reader never waits for
        more than ``_await_body_end`` allows, and a ``break`` or ``close()`` from now on
        leaves the connection to the transport rather than closing it."""
        self._ended = True
        if not self._closed:
            self._closed = True
            response = self._response
            if self._content.at_eof() or response.closed:
                # The usual case: the body's end came with the last event (aiohttp has
                # released the connection, and closed the response, on its own); or the
                # client's close() closed it already.
                response.release()
            else:
                self._transport.body_ends.hand_over(self._response)
                self._body_open = True

    async def _await_body_end(self) -> None:
        """At the loop's end: give the body's end ``_END_GRACE`` to arrive (see the module
        docstring). Whatever follows the terminal event cannot spoil the answer: bytes are
        dropped, and a failed connection is closed."""
        self._body_open = False
        content = self._content
        if content.at_eof() or content.exception() is not None:
            self._after_body_wait()
            return
        # Woken by the body's end or by the grace running out, whichever comes first: no
        # read to cancel, so no cancellation's traceback keeps the reader's frames alive.
        done = self._loop.create_future()

        def wake() -> None:
            if not done.done():
                done.set_result(None)

        content.on_eof(wake)
        timer = self._loop.call_later(_END_GRACE, wake)
        try:
            await done
        finally:
            timer.cancel()
        self._after_body_wait()

    def _after_body_wait(self) -> None:
        if self._content.exception() is not None:
            # Cut after the answer (or closed by the client's close()): not the reader's
            # failure, but no connection to wait for either. The end of the body, had it
            # come, released the connection already (so drop() does nothing then).
            self._transport.body_ends.drop(self._response)

    def _ended_early(self, expected: str) -> APIConnectionError:
        return APIConnectionError(
            f"{self._method} {self._url}: the stream ended after {self._received()} "
            f"{self._noun}(s) without {expected}: the answer is incomplete",
            method=self._method,
            url=self._url,
        )

    def _closed_early(self) -> APIConnectionError:
        """Closed before its end (a cancelled read, close() from elsewhere): never a silent,
        shortened answer."""
        return APIConnectionError(
            f"{self._method} {self._url}: the stream was closed before its end, after "
            f"{self._received()} {self._noun}(s): the answer is incomplete",
            method=self._method,
            url=self._url,
        )

    def _wire_error(self, exc: BaseException) -> APIConnectionError:
        phase = f"stream (after {self._received()} {self._noun}(s))"
        return map_transport_error(exc, method=self._method, url=self._url, phase=phase)

    def _check_content_type(self, content_type: str) -> None:
        # Checked before any byte is parsed: an HTML login page must not pass as a stream.
        self._abort()
        error = APIResponseValidationError(
            f"expected an event stream, got Content-Type {content_type or '(none)'!r}",
            status_code=self._response.status,
            request_id=self.request_id,
        )
        self._transport.redactor.scrub(error)
        self._settle_tokens(0)  # nothing was generated: give the estimate back
        call, self._call = self._call, None
        if call is not None:
            # The stream never opened: a failed request, as a 4xx would be (no stream end).
            call.failed(error)
        raise error

    # -- release --------------------------------------------------------------------------

    def _release(self) -> None:
        if not self._closed:
            self._closed = True
            self._response.release()

    def _abort(self) -> None:
        if not self._closed:
            self._closed = True
            self._response.close()

    # -- serving the stream again (to_sse, to_streaming_response) ---------------------------

    def _buffered(self) -> bool:
        """Whether the next ``__anext__`` answers without waiting for the network."""
        return bool(
            self._ready
            or self._undecoded
            or self._failure is not None
            or self._ended
            or self._closed
        )

    def _closed_unread(self) -> bool:
        """Closed before anything was read, and not by a failure (a served stream whose
        ``async with`` block already closed it)."""
        return (
            self._closed
            and not self.completed
            and not (self._ready or self._undecoded or self._failure)
        )

    def _serve_sse(
        self,
        framing_for: Callable[[str], Framing],
        format: str,
        formats: tuple[str, ...],
        keepalive: float | None,
    ) -> AsyncGenerator[bytes, None]:
        from ._sse_out import check_options, sse_frames

        check_options(format, keepalive, formats)
        return sse_frames(
            self,
            framing_for(format),
            keepalive=keepalive,
            buffered=self._buffered,
            closed_unread=self._closed_unread,
        )

    def _serve_response(
        self,
        framing_for: Callable[[str], Framing],
        format: str,
        formats: tuple[str, ...],
        keepalive: float | None,
        headers: Mapping[str, str] | None,
        status_code: int,
    ) -> StreamingResponse:
        from ._sse_out import check_options, streaming_response

        check_options(format, keepalive, formats)
        return streaming_response(
            self,
            framing_for(format),
            keepalive=keepalive,
            buffered=self._buffered,
            closed_unread=self._closed_unread,
            headers=headers,
            status_code=status_code,
        )

    async def close(self) -> None:
        """Close the stream. A stream not read to its end drops its connection."""
        self._abort()
        if self._call is not None:
            self._observe_end("done" if self.completed else "cancelled", None)

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if getattr(self, "_call", None) is not None and self._closed:
            # Read to its end (or failed) but never finished by its reader: still an end.
            self._observe_end("done" if self.completed else "cancelled", None)
        if not getattr(self, "_closed", True):
            self._closed = True
            # The client's close() (or the loop's end) already closed the response: nothing
            # leaked, nothing to warn about.
            leaked = not (self._loop.is_closed() or self._transport.closed)
            if leaked:
                self._response.close()
            if self._call is not None:
                self._observe_end("cancelled", None)
            # Last: under `-W error` the warning raises here, and the cleanup is done already.
            if leaked:
                _warn(
                    f"{type(self).__name__} was garbage-collected before it was read to the "
                    "end or closed; use `async with stream:` to release its connection",
                    ResourceWarning,
                    source=self,
                    stacklevel=2,
                )

    # -- the answer -----------------------------------------------------------------------

    @property
    def response(self) -> aiohttp.ClientResponse:
        """The underlying aiohttp response (status, headers)."""
        return self._response

    @property
    def status_code(self) -> int:
        """The HTTP status of the stream's answer."""
        return self._response.status

    @property
    def headers(self) -> Mapping[str, str]:
        """The HTTP headers of the stream's answer (case-insensitive)."""
        return self._response.headers

    @property
    def rate_limits(self) -> RateLimitHeaders:
        """The ``x-ratelimit-*`` headers of the answer, parsed."""
        return parse_rate_limit_headers(self._response.headers)


class _Closable(Protocol):
    async def close(self) -> None: ...


StreamT = TypeVar("StreamT", bound=_Closable)


class StreamManager(Generic[StreamT]):
    """``async with`` opens the stream on entry and closes it on exit (``stream(...)`` of the
    chat and Responses resources)."""

    def __init__(self, opener: Callable[[], Awaitable[StreamT]]):
        self._opener = opener
        self._stream: StreamT | None = None

    async def __aenter__(self) -> StreamT:
        if self._stream is not None:
            raise RuntimeError("this stream manager was already entered")
        self._stream = await self._opener()
        return self._stream

    async def __aexit__(self, *exc_info: object) -> None:
        if self._stream is not None:
            await self._stream.close()
