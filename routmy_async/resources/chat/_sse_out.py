"""A chat stream served again as Server-Sent Events: for a browser's ``EventSource`` or for
any OpenAI-compatible client.

``sse_frames`` turns a ``ChatCompletionStream`` into the bytes of a ``text/event-stream``
body; ``streaming_response`` wraps them in a Starlette ``StreamingResponse`` that closes the
upstream stream the moment its request ends, however it ends. Starlette is imported only by
``streaming_response``.

Frame format (https://html.spec.whatwg.org/multipage/server-sent-events.html):

- ``format="chunks"``: each upstream chunk as ``data: <chunk JSON>`` exactly as the router sent
  it, then ``data: [DONE]`` (what OpenAI's clients read);
- ``format="text"``: only the text of the first choice, each piece as ``data: <JSON string>``
  (``JSON.parse(event.data)`` in the browser gives the text back, newlines included), then
  ``data: [DONE]``, which no JSON string can be;
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
from collections.abc import AsyncGenerator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import anyio
import msgspec

from ..._checks import is_number
from ..._exceptions import RoutmyError
from ...types._base import raw_json_of

if TYPE_CHECKING:
    from starlette.responses import StreamingResponse

    from ._stream import ChatCompletionStream

__all__ = [
    "DONE",
    "KEEPALIVE",
    "check_options",
    "data_frame",
    "error_frame",
    "sse_frames",
    "streaming_response",
]

SSEFormat = Literal["chunks", "text"]

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
_LINE_END = re.compile(rb"\r\n|\r|\n")
_END = object()
_encode = msgspec.json.Encoder(enc_hook=repr).encode
_HEADERS = {
    # Never cached, and never buffered by nginx-style proxies: frames must flow as they come.
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",
}


def check_options(format: str, keepalive: float | None) -> None:
    """:raises ValueError: an unknown ``format``, or a ``keepalive`` that is not positive."""
    if format not in ("chunks", "text"):
        raise ValueError(f"format must be 'chunks' or 'text', not {format!r}")
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


async def _next_chunk(stream: ChatCompletionStream) -> Any:
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
    stream: ChatCompletionStream, *, format: SSEFormat, keepalive: float | None
) -> AsyncGenerator[bytes, None]:
    """The ``text/event-stream`` body of ``stream`` (see the module docstring).

    The upstream stream is closed when the body ends, fails, is cancelled or is closed early
    (``aclose()``), so a client that goes away stops the generation at once.
    """
    if (
        stream._closed
        and not stream.completed
        and not (stream._ready or stream._undecoded or stream._failure)
    ):
        # Closed before a single frame was served, and not by a failure: a mistake in the
        # endpoint, not something to tell the browser.
        raise RuntimeError(
            "the stream was closed before to_sse() read it (was it opened with "
            "`async with client.chat.completions.stream(...)`, whose block closed it?): open it "
            "with `await client.chat.completions.create(..., stream=True)` and let the response "
            "own it"
        )
    text_only = format == "text"
    loop = asyncio.get_running_loop()
    pending: asyncio.Task[Any] | None = None
    last_write = loop.time()
    try:
        while True:
            try:
                if keepalive is None or stream._buffered():
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
            frame = _text_frame(chunk) if text_only else _chunk_frame(chunk)
            if frame:
                yield frame
                last_write = loop.time()
        yield DONE
    finally:
        if pending is not None:
            pending.cancel()
        # close() never suspends; shielded all the same, so a cancelled request cannot cut it.
        with anyio.CancelScope(shield=True):
            await stream.close()


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

    class ChatStreamingResponse(StreamingResponse):
        """A ``StreamingResponse`` that owns its upstream chat stream."""

        def __init__(
            self,
            upstream: ChatCompletionStream,
            frames: AsyncGenerator[bytes, None],
            **options: Any,
        ):
            super().__init__(frames, media_type="text/event-stream", **options)
            self._upstream = upstream
            self._frames = frames

        async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await super().__call__(scope, receive, send)
            finally:
                # A client that hung up ends the response by cancellation (or, on ASGI 2.4
                # servers, by a failed write) while the frames generator sits at a `yield`,
                # where no cancellation reaches it: close the upstream here, at once, rather
                # than whenever the generator is collected.
                with anyio.CancelScope(shield=True):
                    await self._upstream.close()
                    await self._frames.aclose()

    return ChatStreamingResponse


def streaming_response(
    stream: ChatCompletionStream,
    *,
    format: SSEFormat,
    keepalive: float | None,
    headers: Mapping[str, str] | None,
    status_code: int,
) -> StreamingResponse:
    """A Starlette ``StreamingResponse`` of ``sse_frames(stream)`` that owns the stream.

    :raises ImportError: Starlette is not installed.
    """
    response_class = _response_class()
    frames = sse_frames(stream, format=format, keepalive=keepalive)
    return response_class(
        stream, frames, status_code=status_code, headers={**_HEADERS, **(headers or {})}
    )
