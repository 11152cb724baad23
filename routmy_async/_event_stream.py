"""The wire half of an SSE stream over one open aiohttp response, shared by stream classes.

``EventStream`` owns the response and gives a subclass its events as SSE data, read on
demand: it reads, splits into events (``SSEDecoder.feed_raw``), bounds the gap between two
events (``stream_idle``; keep-alive comments do not count), drains the body after
``data: [DONE]`` so the connection can go back to the pool, and releases the response on
every way out. It is a class with ``__anext__`` in its subclasses rather than an async
generator, so nothing is left for the garbage collector to finalise on a closed loop: a
``break`` followed by leaving ``async with``, an exception or a cancellation each close the
response on the spot (closing is synchronous in aiohttp, so no await in the cleanup can be cut
short). A stream read to its end releases its connection; one abandoned early closes it,
because a half-read HTTP/1.1 connection cannot be reused.

The subclass decodes the events (``_next_batch``), decides what ends the answer, and raises.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import aiohttp
import anyio

from ._exceptions import APIConnectionError, APIResponseValidationError, APITimeoutError
from ._sse import ServerSentEvent, SSEDecoder
from ._transport import TRANSPORT_ERRORS, map_transport_error

if TYPE_CHECKING:
    from ._transport import Transport

__all__ = ["EventStream", "StreamManager"]

_EVENT_STREAM = "text/event-stream"
_DRAIN_SECONDS = 1.0
_DRAIN_BYTES = 1 << 20
# Events decoded per step: a read can hold a whole stream, and decoding it at once would keep
# a thousand objects alive and cache-cold before the first is used.
_BATCH = 32


class EventStream:
    """An open SSE response, read on demand. See the module docstring."""

    _noun = "event"

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        *,
        transport: Transport,
        idle_timeout: float | None,
        method: str = "POST",
        url: str = "",
        tokens: int = 0,
    ):
        self._response = response
        self._transport = transport
        self._content = response.content
        self._idle = idle_timeout
        self._method = method
        self._url = url
        # The token estimate reserved for this request, settled with the usage at the end.
        self._tokens = tokens
        self._decoder = SSEDecoder()
        self._undecoded: list[bytes | ServerSentEvent] = []
        self._undecoded_at = 0
        self._failure: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._loop_time = self._loop.time
        self._last_event_at = self._loop_time()
        self._ended = False  # the body ended cleanly: EOF, or [DONE] and drained
        self._closed = False
        self.request_id: str | None = response.headers.get("x-request-id")
        content_type = response.headers.get("Content-Type", "")
        if _EVENT_STREAM not in content_type:
            self._check_content_type(content_type)

    # -- for subclasses -------------------------------------------------------------------

    def _received(self) -> int:
        """How many events the answer has had so far (for error messages)."""
        raise NotImplementedError

    def _feed(self, data: bytes) -> list[bytes | ServerSentEvent]:
        """The events one read completes (``self._decoder.feed_raw`` of the bytes, which a
        subclass may prepare first)."""
        raise NotImplementedError

    def _next_batch(self) -> list[bytes | ServerSentEvent]:
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
            self._release()
            self._ended = True
            return
        events = self._feed(data)
        if events:
            self._undecoded = events
            self._undecoded_at = 0
            self._last_event_at = self._loop_time()
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
            await self._drain()

    async def _drain(self) -> None:
        """Read to EOF so the connection can go back to the pool (after ``[DONE]``, or after
        the event that ends the answer).

        Bounded in time and size: a server that keeps talking loses its connection instead of
        holding the caller.
        """
        self._ended = True
        content = self._content
        if content.at_eof():
            # The usual case: the body's end arrived with the last event; no timer needed.
            self._release()
            return
        drained = 0
        try:
            with anyio.move_on_after(_DRAIN_SECONDS):
                while drained < _DRAIN_BYTES:
                    data = await content.readany()
                    if not data:
                        self._release()
                        return
                    drained += len(data)
        except BaseException as exc:
            self._abort()
            if not isinstance(exc, TRANSPORT_ERRORS):
                raise
            return
        self._abort()

    def _ended_early(self, expected: str) -> APIConnectionError:
        return APIConnectionError(
            f"{self._method} {self._url}: the stream ended after {self._received()} "
            f"{self._noun}(s) without {expected}: the answer is incomplete",
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
        raise self._transport.redactor.scrub(error)

    # -- release --------------------------------------------------------------------------

    def _release(self) -> None:
        if not self._closed:
            self._closed = True
            self._response.release()

    def _abort(self) -> None:
        if not self._closed:
            self._closed = True
            self._response.close()

    async def close(self) -> None:
        """Close the stream. A stream not read to its end drops its connection."""
        self._abort()

    async def __aexit__(self, *exc_info: object) -> None:
        self._abort()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        if not getattr(self, "_closed", True):
            if self._loop.is_closed() or self._transport.closed:
                # The client's close() already closed the response: nothing leaked.
                self._closed = True
                return
            _warn(
                f"{type(self).__name__} was garbage-collected before it was read to the end "
                "or closed; use `async with stream:` to release its connection",
                ResourceWarning,
                source=self,
                stacklevel=2,
            )
            self._closed = True
            self._response.close()

    @property
    def response(self) -> aiohttp.ClientResponse:
        """The underlying aiohttp response (status, headers)."""
        return self._response


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
