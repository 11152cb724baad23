"""stream.to_sse() and stream.to_streaming_response(): a chat stream served again as SSE."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest

from routmy_async import AsyncRoutmy
from routmy_async._streaming._sse import WireEvent
from routmy_async._streaming._sse_out import _response_class
from routmy_async.testing import MockRoutmy
from tests.test_fastapi_example import sse_events

ASK = [{"role": "user", "content": "hello"}]
BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {"content": content} if content is not None else {}
    return {**BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def frame(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


async def collect(client: AsyncRoutmy, **options: Any) -> list[bytes]:
    stream = await client.chat.completions.create(model="p/m", messages=ASK, stream=True)
    return [piece async for piece in stream.to_sse(**options)]


async def wait_until(condition: Any, seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


async def test_chunk_frames_are_the_router_chunks_byte_for_byte(client, mock):
    """format="chunks" relays every chunk exactly as the router sent it, then [DONE]."""
    frames = [frame(chunk("Hel")), frame(chunk('lo "world"\n')), frame(chunk(None, "stop"))]
    mock.reply_stream(frames)
    body = b"".join(await collect(client))
    assert body == b"".join(frames) + b"data: [DONE]\n\n"


async def test_a_multi_line_data_event_is_framed_line_by_line(client, mock):
    """An upstream event whose data spans lines goes out as several data: lines of one event."""
    pretty = json.dumps(chunk("hi", "stop"), indent=1).encode()
    mock.reply_stream([b"data: " + pretty.replace(b"\n", b"\ndata: ") + b"\n\n"])
    pieces = await collect(client)
    assert pieces[0].count(b"data: ") == pretty.count(b"\n") + 1
    assert sse_events(b"".join(pieces)) == [pretty, b"[DONE]"]


async def test_text_frames_carry_only_the_text(client, mock):
    """format="text" sends each piece of text as a JSON string; nothing else, then [DONE]."""
    pieces = ["[DONE]", "line one\nline two", ' "quoted" ', "\r\n"]
    mock.reply_stream(
        [
            {**BASE, "choices": [{"index": 0, "delta": {"role": "assistant"}}]},
            *(chunk(piece) for piece in pieces),
            chunk(None, "stop"),
            {**BASE, "choices": [], "usage": {"total_tokens": 3}},
        ]
    )
    frames = await collect(client, format="text")
    assert frames[-1] == b"data: [DONE]\n\n"
    assert [json.loads(f[6:]) for f in frames[:-1]] == pieces
    assert all(f.count(b"\n") == 2 for f in frames)


async def test_keepalive_comments_while_the_model_is_silent(client, mock):
    """With keepalive=0.05 and 0.15 s between chunks, comments fill the gaps; text intact."""
    mock.reply_stream([chunk("a"), chunk("b"), chunk(None, "stop")], chunk_delay=0.15)
    frames = await collect(client, format="text", keepalive=0.05)
    assert frames.count(b": keep-alive\n\n") >= 2
    text = [json.loads(f[6:]) for f in frames if f.startswith(b"data: {") or f[6:7] == b'"']
    assert text == ["a", "b"] and frames[-1] == b"data: [DONE]\n\n"
    # A comment only after a silence: never two frames of data with one between them at once.
    assert frames[0] == b'data: "a"\n\n'


async def test_no_keepalive_when_turned_off_or_the_stream_is_quick(client, mock):
    """keepalive=None writes no comment however slow the model; a quick stream needs none."""
    mock.reply_stream([chunk("a"), chunk(None, "stop")], chunk_delay=0.1)
    assert b": keep-alive\n\n" not in await collect(client, keepalive=None)
    assert b": keep-alive\n\n" not in await collect(client)


async def test_an_upstream_error_is_the_last_frame_without_the_key(client, mock):
    """An error frame becomes `event: error` with the typed error's fields; no [DONE] follows,
    the key is scrubbed and the connection is closed."""
    mock.reply_stream(
        [
            chunk("partial"),
            {
                "error": {
                    "message": f"upstream said {mock.api_key}",
                    "code": "provider_down",
                    "type": "server_error",
                    "metadata": {"provider": "p", "echo": mock.api_key},
                }
            },
        ],
        done=False,
    )
    stream = await client.chat.completions.create(model="p/m", messages=ASK, stream=True)
    frames = [piece async for piece in stream.to_sse()]
    assert len(frames) == 2 and frames[-1].startswith(b"event: error\ndata: ")
    assert mock.api_key.encode() not in b"".join(frames)
    error = sse_events(frames[-1])[0]
    assert isinstance(error, WireEvent)
    assert json.loads(error.data)["error"] == {
        "message": "upstream said [REDACTED]",
        "code": "provider_down",
        "type": "server_error",
        "metadata": {"provider": "p", "echo": "[REDACTED]"},
        "request_id": "req-mock-1",
        "error_class": "APIStreamError",
    }
    assert client.connections_in_use == 0


async def test_a_cut_connection_becomes_an_error_frame(client, mock):
    """A reset mid-stream is an APIConnectionError frame, without the upstream URL."""
    mock.reply_stream([chunk("a" * 50), chunk("b" * 50), chunk(None, "stop")], reset_after=150)
    frames = await collect(client)
    error = sse_events(frames[-1])[0]
    assert isinstance(error, WireEvent) and error.event == "error"
    fields = json.loads(error.data)["error"]
    assert fields["error_class"] == "APIConnectionError"
    assert set(fields) == {"message", "error_class"}
    assert "127.0.0.1" not in fields["message"] and "chunk(s)" in fields["message"]


@pytest.mark.parametrize("keepalive", [0.05, None], ids=["keepalive", "no-keepalive"])
async def test_cancelling_the_reader_closes_the_upstream_at_once(client, mock, keepalive):
    """A cancelled consumer (a client gone) closes the upstream stream: the server sees the
    disconnect and no connection stays in use."""
    mock.reply_default(chunk_delay=0.2)
    stream = await client.chat.completions.create(
        model="p/m", messages=[{"role": "user", "content": "a long answer " * 10}], stream=True
    )
    first = asyncio.Event()

    async def serve() -> None:
        async for piece in stream.to_sse(keepalive=keepalive):
            if piece.startswith(b"data: "):
                first.set()

    task = asyncio.create_task(serve())
    await asyncio.wait_for(first.wait(), 5)
    await asyncio.sleep(0.05)  # the reader is now waiting for the next chunk
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.connections_in_use == 0 and not stream.completed
    await wait_until(lambda: mock.disconnects == 1)


async def test_closing_the_frames_early_closes_the_upstream(client, mock):
    """aclose() after a break (what a framework does with a body it stops reading) closes it."""
    mock.reply_default(chunk_delay=0.2)
    stream = await client.chat.completions.create(
        model="p/m", messages=[{"role": "user", "content": "a long answer " * 10}], stream=True
    )
    frames = stream.to_sse()
    async for _ in frames:
        break
    assert client.connections_in_use == 1
    await frames.aclose()
    assert client.connections_in_use == 0
    await wait_until(lambda: mock.disconnects == 1)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"format": "html"}, "format must be"),
        ({"keepalive": 0}, "keepalive must be"),
        ({"keepalive": -1.0}, "keepalive must be"),
        ({"keepalive": True}, "keepalive must be"),
        ({"keepalive": "15"}, "keepalive must be"),
        ({"keepalive": float("nan")}, "keepalive must be"),
    ],
)
async def test_bad_options_raise_before_anything_is_read(client, options, match):
    """A wrong format or keep-alive interval raises ValueError at the call."""
    async with client.chat.completions.stream(model="p/m", messages=ASK) as stream:
        with pytest.raises(ValueError, match=match):
            stream.to_sse(**options)
        with pytest.raises(ValueError, match=match):
            stream.to_streaming_response(**options)
        assert await stream.until_done()


async def test_a_stream_closed_by_its_block_says_what_to_write(client):
    """to_sse() of a stream that its `async with` block already closed raises, naming create."""
    async with client.chat.completions.stream(model="p/m", messages=ASK) as stream:
        frames = stream.to_sse()
    with pytest.raises(RuntimeError, match=r"create\(\.\.\., stream=True\)"):
        async for _ in frames:
            pass


async def test_streaming_response_needs_starlette(client, monkeypatch):
    """Without Starlette, to_streaming_response() says to use to_sse(); to_sse() still works."""
    _response_class.cache_clear()
    monkeypatch.setitem(sys.modules, "starlette.responses", None)
    try:
        async with client.chat.completions.stream(model="p/m", messages=ASK) as stream:
            with pytest.raises(ImportError, match="to_sse"):
                stream.to_streaming_response()
            assert [f async for f in stream.to_sse()][-1] == b"data: [DONE]\n\n"
    finally:
        _response_class.cache_clear()


class ASGIClient:
    """Calls an ASGI response directly: records what it sends, can hang up mid-body."""

    def __init__(self, *, spec_version: str, hang_up_after: int | None = None):
        self.scope: dict[str, Any] = {"type": "http", "asgi": {"spec_version": spec_version}}
        self.sent: list[dict[str, Any]] = []
        self.hang_up_after = hang_up_after
        self.gone = asyncio.Event()

    async def receive(self) -> dict[str, Any]:
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: dict[str, Any]) -> None:
        bodies = sum(1 for m in self.sent if m["type"] == "http.response.body")
        if self.hang_up_after is not None and bodies >= self.hang_up_after:
            self.gone.set()
            if self.scope["asgi"]["spec_version"] == "2.4":
                raise OSError("the client went away")  # ASGI 2.4: a failed write
            await asyncio.sleep(30)  # ASGI 2.3: the write hangs; the disconnect cancels it
        self.sent.append(message)

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


async def test_streaming_response_serves_the_frames_with_sse_headers(client):
    """The response is text/event-stream, uncached, unbuffered, and ends with [DONE]."""
    stream = await client.chat.completions.create(model="p/m", messages=ASK, stream=True)
    response = stream.to_streaming_response(format="text", headers={"X-Extra": "1"})
    asgi = ASGIClient(spec_version="2.3")
    await response(asgi.scope, asgi.receive, asgi.send)
    headers = dict(asgi.sent[0]["headers"])
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"cache-control"] == b"no-cache" and headers[b"x-accel-buffering"] == b"no"
    assert headers[b"x-extra"] == b"1"
    assert asgi.body == b'data: "hello"\n\ndata: [DONE]\n\n'


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
async def test_streaming_response_closes_the_upstream_when_the_client_hangs_up(
    client, mock, spec_version
):
    """Whether the server reports a disconnect (ASGI 2.3) or a write fails (2.4), the response
    closes the upstream stream before it returns."""
    from starlette.requests import ClientDisconnect

    mock.reply_default(chunk_delay=0.05)
    stream = await client.chat.completions.create(
        model="p/m", messages=[{"role": "user", "content": "a long answer " * 10}], stream=True
    )
    asgi = ASGIClient(spec_version=spec_version, hang_up_after=2)
    response = stream.to_streaming_response()
    if spec_version == "2.4":
        with pytest.raises(ClientDisconnect):
            await response(asgi.scope, asgi.receive, asgi.send)
    else:
        await response(asgi.scope, asgi.receive, asgi.send)
    assert client.connections_in_use == 0 and not stream.completed
    await wait_until(lambda: mock.disconnects == 1)


async def test_a_server_of_ours_can_read_what_to_sse_writes(mock):
    """An SDK client reading the frames (as an OpenAI-compatible client) gets the same chunks,
    and the error frame raises the same typed error."""
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as first:
        stream = await first.chat.completions.create(model="p/m", messages=ASK, stream=True)
        relayed = b"".join([piece async for piece in stream.to_sse()])
        mock.reply_stream([chunk("x"), {"error": {"message": "boom", "code": 503}}], done=False)
        broken = await first.chat.completions.create(model="p/m", messages=ASK, stream=True)
        relayed_error = b"".join([piece async for piece in broken.to_sse()])
    async with MockRoutmy() as second:
        second.reply_stream([relayed], done=False)
        second.reply_stream([relayed_error], done=False)
        async with AsyncRoutmy(
            api_key=second.api_key, base_url=second.base_url, max_retries=0
        ) as reader:
            again = await reader.chat.completions.create(model="p/m", messages=ASK, stream=True)
            final = await again.until_done()
            assert final.choices[0].message.content == "hello"
            failing = await reader.chat.completions.create(model="p/m", messages=ASK, stream=True)
            from routmy_async import APIStreamError

            with pytest.raises(APIStreamError) as info:
                await failing.until_done()
            assert info.value.code == 503 and info.value.message == "boom"
