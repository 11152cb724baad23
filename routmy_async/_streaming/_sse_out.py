"""A stream served again as Server-Sent Events: for a browser's ``EventSource`` or for any
OpenAI-compatible client. Chat streams, Responses streams and raw streams alike.

``sse_frames`` turns a stream into the bytes of a ``text/event-stream`` body, one frame per
item (how an item becomes a frame is the stream kind's :class:`Framing`); ``streaming_response``
wraps them in a Starlette ``StreamingResponse`` that closes the upstream stream the moment its
request ends, however it ends. Starlette is imported only by ``streaming_response``.

Frame format (https://html.spec.whatwg.org/multipage/server-sent-events.html):

- chat, ``format="chunks"``: each upstream chunk as ``data: <chunk JSON>`` exactly as the
  router sent it, then ``data: [DONE]`` (what OpenAI's clients read);
- Responses, ``format="events"``: each event as ``event: <type>`` and ``data: <event JSON>``
  exactly as the router sent it, as OpenAI's Responses streams are written (no ``[DONE]``: the
  ``response.completed`` event ends them);
- raw streams, ``format="events"``: each event with its ``event:`` (unless ``message``),
  ``id:`` and ``data:`` lines, as received, and ``data: [DONE]`` if the upstream sent one;
- ``format="partial"`` (chat and Responses streams with a JSON format): the answer so far as
  plain JSON values, ``data: <JSON>`` each time an item changes it, then ``data: [DONE]``;
- ``format="patch"`` (the same streams): only what changed, ``data: [<operation>, ...]``
  (``_partial_patch``), then ``data: [DONE]``: each byte of the answer is sent about once;
- both partial formats coalesce: items that are ready together (read in one network read, or
  waiting while the page's connection was slow to take the last frame) make one frame;
- ``format="text"`` (chat and Responses): only the answer's text, each piece as
  ``data: <JSON string>`` (``JSON.parse(event.data)`` in the browser gives the text back,
  newlines included), then ``data: [DONE]``, which no JSON string can be;
- ``: keep-alive`` comments while the model is silent, so proxies and browsers keep the
  connection open (and a server learns early that a client has gone);
- an upstream error as ``event: error`` with ``data: {"error": {...}}`` holding the typed
  error's fields, as the last frame (no ``[DONE]`` after it). Errors are scrubbed of the API
  key where they leave the stream, so nothing here can carry it.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol

import anyio
import msgspec

from .._checks import is_number
from .._exceptions import RoutmyError
from .._partial_patch import PatchWriter
from ..types._base import raw_json_of

if TYPE_CHECKING:
    from starlette.responses import StreamingResponse

__all__ = [
    "DONE",
    "KEEPALIVE",
    "Framing",
    "chat_framing",
    "check_options",
    "data_frame",
    "error_frame",
    "partial_framing",
    "raw_framing",
    "responses_framing",
    "sse_frames",
    "streaming_response",
]

SSEFormat = Literal["chunks", "events", "text"]

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
_LINE_END = re.compile(rb"\r\n|\r|\n")
_END = object()
_encode = msgspec.json.Encoder(enc_hook=repr).encode
# Partial values are plain JSON values: nothing for a hook to do.
_encode_partial = msgspec.json.Encoder().encode
_HEADERS = {
    # Never cached, and never buffered by nginx-style proxies: frames must flow as they come.
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def check_options(
    format: str, keepalive: float | None, formats: tuple[str, ...] = ("chunks", "text")
) -> None:
    """:raises ValueError: a ``format`` not among ``formats``, or a ``keepalive`` that is not
    positive."""
    if format not in formats:
        allowed = " or ".join(repr(name) for name in formats)
        raise ValueError(f"format must be {allowed}, not {format!r}")
    if keepalive is not None and (not is_number(keepalive) or not keepalive > 0):
        raise ValueError(
            f"keepalive must be a positive number of seconds or None, not {keepalive!r}"
        )


def data_frame(data: bytes) -> bytes:
    """One SSE event carrying ``data``; a multi-line payload becomes one ``data:`` line per line
    (the client joins them with ``\\n`` again)."""
    if b"\n" in data or b"\r" in data:
        return b"".join(b"data: " + line + b"\n" for line in _LINE_END.split(data)) + b"\n"
    return b"data: " + data + b"\n\n"


def error_frame(error: RoutmyError) -> bytes:
    """``event: error`` with the error's fields, shaped as an API error body
    (``{"error": {"message", "type", "code", ...}}``) so OpenAI-style clients raise it too.

    The URL the request went to is left out, from the message too: a browser has no business
    with the upstream's address.
    """
    message = getattr(error, "message", None) or str(error)
    url = getattr(error, "url", None)
    if url:
        prefix = f"{getattr(error, 'method', None) or 'POST'} {url}: "
        message = message.removeprefix(prefix)
    fields: dict[str, Any] = {"message": message}
    for name in ("type", "code", "status_code", "metadata", "request_id"):
        value = getattr(error, name, None)
        if value is not None:
            fields[name] = value
    fields["error_class"] = type(error).__name__
    return b"event: error\n" + data_frame(_encode({"error": fields}))


class ServedStream(Protocol):
    """What serving reads of a stream (an ``EventStream``): no import of the stream classes,
    which import this module when they are served."""

    def __anext__(self) -> Awaitable[Any]: ...

    async def close(self) -> None: ...


class Framing(NamedTuple):
    """How one kind of stream is served: each item's frame (``b""`` for none), and the
    frames that follow the last item.

    ``coalesce``: the frame shows the stream's state, not the item, so an item whose next
    one is ready at once makes no frame (the next one shows it too); ``end`` sends what the
    last items changed.
    """

    frame: Callable[[Any], bytes]
    end: Callable[[Any], Iterable[bytes]]
    coalesce: bool = False


async def _next_chunk(stream: ServedStream) -> Any:
    try:
        return await stream.__anext__()
    except StopAsyncIteration:
        # A task may not end with StopAsyncIteration: say it with a sentinel instead.
        return _END


def _retrieve(task: asyncio.Task[Any]) -> None:
    # A read abandoned at a disconnect ends with an error nobody awaits: take it, so asyncio
    # does not log "Task exception was never retrieved".
    if not task.cancelled():
        task.exception()


async def sse_frames(
    stream: ServedStream,
    framing: Framing,
    *,
    keepalive: float | None,
    buffered: Callable[[], bool],
    closed_unread: Callable[[], bool],
) -> AsyncGenerator[bytes, None]:
    """The ``text/event-stream`` body of ``stream``, framed by ``framing`` (see the module
    docstring).

    The upstream stream is closed when the body ends, fails, is cancelled or is closed early
    (``aclose()``), so a client that goes away stops the generation at once. The stream hands
    over two of its own tests: whether its next item is ``buffered`` (no wait, so no keep-alive
    task), and whether it was ``closed_unread`` (see ``EventStream``).
    """
    if closed_unread():
        # Closed before a single frame was served, and not by a failure: a mistake in the
        # endpoint, not something to tell the browser.
        raise _closed_unread_error()
    frame_of, coalesce = framing.frame, framing.coalesce
    loop = asyncio.get_running_loop()
    pending: asyncio.Task[Any] | None = None
    last_write = loop.time()
    try:
        while True:
            try:
                if keepalive is None or buffered():
                    # Nothing to wait for (or no keep-alive wanted): no task needed.
                    chunk = await _next_chunk(stream)
                else:
                    # The next read may take long: read in a task, and write a comment each
                    # time `keepalive` seconds pass without a frame. Cancelling the read would
                    # drop the upstream connection, so it is waited for, never timed out.
                    if pending is None:
                        pending = loop.create_task(_next_chunk(stream))
                        pending.add_done_callback(_retrieve)
                    wait = last_write + keepalive - loop.time()
                    done, _ = await asyncio.wait((pending,), timeout=max(wait, 0.0))
                    if not done:
                        yield KEEPALIVE
                        last_write = loop.time()
                        continue
                    chunk = pending.result()
                    pending = None
            except RoutmyError as error:
                yield error_frame(error)
                return
            if chunk is _END:
                break
            if coalesce and buffered():
                continue  # the next item is here already: one frame shows both
            try:
                frame = frame_of(chunk)
            except RoutmyError as error:  # a partial value that cannot be read: not JSON
                yield error_frame(error)
                return
            if frame:
                yield frame
                last_write = loop.time()
        for last in _closing_frames(stream, framing):
            yield last
    finally:
        if pending is not None:
            pending.cancel()
        # close() never suspends; shielded all the same, so a cancelled request cannot cut it.
        with anyio.CancelScope(shield=True):
            await stream.close()


def _closing_frames(stream: ServedStream, framing: Framing) -> list[bytes]:
    """The framing's end; an error frame where it fails."""
    try:
        return list(framing.end(stream))
    except RoutmyError as error:  # a partial value that cannot be read: not JSON
        return [error_frame(error)]


def _closed_unread_error() -> RuntimeError:
    return RuntimeError(
        "the stream was closed before to_sse() read it (was it opened with "
        "`async with client.chat.completions.stream(...)` or `client.responses.stream(...)`, "
        "whose block closed it?): open it with `await ...create(..., stream=True)` and let "
        "the response own it"
    )


def _chunk_frame(chunk: Any) -> bytes:
    raw = raw_json_of(chunk)
    # The chunk exactly as the router sent it: nothing re-encoded, nothing lost.
    return data_frame(raw if raw else chunk.to_json())


def _text_frame(chunk: Any) -> bytes:
    pieces = [
        choice.delta.content
        for choice in chunk.choices
        if choice.index == 0 and choice.delta.content
    ]
    if not pieces:
        return b""
    return b"data: " + _encode("".join(pieces)) + b"\n\n"


def _done(stream: Any) -> tuple[bytes, ...]:
    return (DONE,)


def _nothing(stream: Any) -> tuple[bytes, ...]:
    return ()


def chat_framing(format: str) -> Framing:
    """Chat chunks as they came (``"chunks"``) or the first choice's text (``"text"``)."""
    return Framing(_text_frame if format == "text" else _chunk_frame, _done)


def _response_text_frame(event: Any) -> bytes:
    if event.type != "response.output_text.delta" or not event.delta:
        return b""
    return b"data: " + _encode(event.delta) + b"\n\n"


def responses_framing(format: str, raw_events: deque[bytes]) -> Framing:
    """Responses events as they came (``"events"``) or the output text (``"text"``).

    :param raw_events: the data of each event the stream hands out, in order (the stream
        fills it while it is served); ``b""`` where none was kept (encoded again).
    """
    if format == "text":
        return Framing(_response_text_frame, _done)

    def event_frame(event: Any) -> bytes:
        raw = raw_events.popleft() if raw_events else b""
        name: str = event.type
        data = raw if raw else msgspec.json.encode(event)
        return b"event: " + name.encode() + b"\n" + data_frame(data)

    return Framing(event_frame, _nothing)


def partial_framing(
    read: Callable[[], Any], check: Callable[[], object], *, patches: bool = False
) -> Framing:
    """A structured answer's partial value: ``read()`` after the items that are ready
    together, as ``data: <JSON>`` when it differs from the last frame sent (``"partial"``),
    or only what changed as ``data: [<operation>, ...]`` (``patches``, ``"patch"``); then
    ``data: [DONE]``.

    A whole-value frame lets a page render it as it is; an item that adds nothing to the
    value (a role, a usage chunk, a string still inside an escape) sends nothing. A page
    cannot tell a cut answer's last frame (``{"status": "shi"}``) from a whole one, so at the
    end ``check()`` (the stream's final parse) runs first: what it raises is sent as the last
    frame (``event: error``) instead of ``[DONE]``. Either way the frames before ``[DONE]``
    leave the page holding the final parse's value.
    """
    last = [b""]
    writer = PatchWriter() if patches else None

    def frame(item: Any) -> bytes:
        value = read()
        if writer is not None:
            ops = writer.changes(value)
            return data_frame(_json_of(ops)) if ops else b""
        if value is None:
            return b""
        data = _json_of(value)
        if data == last[0]:
            return b""
        last[0] = data
        return data_frame(data)

    def end(stream: Any) -> Iterator[bytes]:
        try:
            check()
        except RoutmyError as error:
            # What the last items changed (a cut answer, as far as it came), if it reads.
            try:
                held = frame(None)
            except RoutmyError:
                held = b""
            if held:
                yield held
            yield error_frame(error)
            return
        if writer is None:
            held = frame(None)
        else:
            ops = writer.closing(read())
            held = data_frame(_json_of(ops)) if ops else b""
        if held:
            yield held
        yield DONE

    return Framing(frame, end, coalesce=True)


def _json_of(value: Any) -> bytes:
    try:
        return _encode_partial(value)
    except UnicodeEncodeError as error:
        # A lone surrogate escape ("\ud800"): JSON text, but no Unicode (the final parse
        # refuses it too). sse_frames sends it as the error frame that ends the body.
        raise _not_unicode(error) from None


def _not_unicode(error: UnicodeEncodeError) -> RoutmyError:
    from .._exceptions import ContentParseError

    found = error.object[error.start : error.end]
    return ContentParseError(
        f"the answer holds {found.encode('unicode_escape').decode()!r}, a lone surrogate "
        "escape: JSON text, but not Unicode text",
        content=None,
    )


def _raw_event_frame(event: Any) -> bytes:
    name = getattr(event, "event", "message")
    head = b"" if name == "message" else b"event: " + name.encode() + b"\n"
    event_id = getattr(event, "id", None)
    if event_id is not None:
        head += b"id: " + event_id.encode() + b"\n"
    data = getattr(event, "data", None)
    # A stream opened with cast_to= hands out typed values: served as their JSON.
    payload = data.encode() if isinstance(data, str) else msgspec.json.encode(event)
    return head + data_frame(payload)


def _raw_end(stream: Any) -> tuple[bytes, ...]:
    # [DONE] only where the upstream sent one: a raw stream is served as it came.
    return (DONE,) if stream.saw_done else ()


def raw_framing(format: str) -> Framing:
    """A raw stream's events as received (``"events"``)."""
    return Framing(_raw_event_frame, _raw_end)


@functools.cache
def _response_class() -> Callable[..., StreamingResponse]:
    try:
        from starlette.responses import StreamingResponse
    except ImportError as exc:
        raise ImportError(
            "to_streaming_response() needs Starlette (pip install fastapi, or starlette); "
            "stream.to_sse() gives the same bytes for any other framework"
        ) from exc
    from starlette.types import Receive, Scope, Send

    class UpstreamStreamingResponse(StreamingResponse):
        """A ``StreamingResponse`` that owns its upstream stream."""

        def __init__(
            self,
            upstream: ServedStream,
            frames: AsyncGenerator[bytes, None],
            closed_unread: Callable[[], bool],
            **options: Any,
        ):
            super().__init__(frames, media_type="text/event-stream", **options)
            self._upstream = upstream
            self._frames = frames
            self._closed_unread = closed_unread

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            try:
                if self._closed_unread():
                    # Before the status goes out: the server answers 500, which an
                    # EventSource does not retry, where a 200 cut short would make it
                    # reconnect (and ask the model again) forever.
                    raise _closed_unread_error()
                await super().__call__(scope, receive, send)
            finally:
                # A client that hung up ends the response by cancellation (or, on ASGI 2.4
                # servers, by a failed write) while the frames generator sits at a `yield`,
                # where no cancellation reaches it: close the upstream here, at once, rather
                # than whenever the generator is collected.
                with anyio.CancelScope(shield=True):
                    await self._upstream.close()
                    await self._frames.aclose()

    return UpstreamStreamingResponse


def streaming_response(
    stream: ServedStream,
    framing: Framing,
    *,
    keepalive: float | None,
    buffered: Callable[[], bool],
    closed_unread: Callable[[], bool],
    headers: Mapping[str, str] | None,
    status_code: int,
) -> StreamingResponse:
    """A Starlette ``StreamingResponse`` of ``sse_frames(stream)`` that owns the stream.

    :raises ImportError: Starlette is not installed.
    """
    response_class = _response_class()
    frames = sse_frames(
        stream, framing, keepalive=keepalive, buffered=buffered, closed_unread=closed_unread
    )
    return response_class(
        stream,
        frames,
        closed_unread,
        status_code=status_code,
        headers={**_HEADERS, **(headers or {})},
    )
