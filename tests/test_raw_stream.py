"""Raw streams: ``client.stream_request(...)`` and ``client.post(..., stream=True)`` for SSE
endpoints the SDK does not model, against real servers on 127.0.0.1 (MockRoutmy's chat
streams, and raw asyncio servers writing exactly the bytes each test needs)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest
from typing_extensions import assert_type

from routmy_async import (
    APIConnectionError,
    APIResponseValidationError,
    APIStreamError,
    APITimeoutError,
    AsyncRoutmy,
    Call,
    Hooks,
    NotFoundError,
    RawStream,
    ServerSentEvent,
    StreamSummary,
    Timeout,
)
from routmy_async._streaming._raw import RawStreamManager
from routmy_async.testing import MockRoutmy
from routmy_async.types import ChatCompletionChunk
from tests.conftest import RawServer, chunk, chunked_head, http_response, read_request

KEY = "sk-raw-stream-SECRET-0123456789"
MESSAGES = [{"role": "user", "content": "stream me back"}]
CHAT = {"model": "mock/echo", "messages": MESSAGES, "stream": True}


def client_for(base_url: str, **options: Any) -> AsyncRoutmy:
    options.setdefault("max_retries", 0)
    return AsyncRoutmy(api_key=KEY, base_url=base_url, **options)


def sse_server(body: bytes, *, split: int | None = None, keep_alive: bool = False) -> RawServer:
    """A server answering every request with ``body`` as a chunked event stream, written
    ``split`` bytes at a time (one chunk each), then the terminating chunk."""
    requests: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head, _ = await read_request(reader)
            requests.append(head)
            writer.write(chunked_head())
            step = split or len(body)
            for start in range(0, len(body), step):
                writer.write(chunk(body[start : start + step]))
                await writer.drain()
                if split:
                    await asyncio.sleep(0)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            if not keep_alive:
                return

    server = RawServer(handler)
    server.requests = requests  # type: ignore[attr-defined]
    return server


class StreamEnds(Hooks):
    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.retries: list[str] = []
        self.ends: list[StreamSummary] = []

    def on_request(
        self, call: Call, *, attempt: int, method: str, url: str, headers: Mapping[str, str]
    ) -> None:
        self.calls.append(call)

    def on_retry(
        self, call: Call, *, attempt: int, reason: str, wait: float, error: BaseException
    ) -> None:
        self.retries.append(reason)

    def on_stream_end(self, call: Call, summary: StreamSummary) -> None:
        self.ends.append(summary)


# -- a chat stream, read raw ------------------------------------------------------------------


async def test_stream_request_reads_a_chat_stream_as_server_sent_events():
    """``async with client.stream_request("POST", path, body=...) as events`` yields every
    event (the keep-alive comment skipped), ``.json()`` decodes one, ``[DONE]`` ends it, and
    the connection goes back to the pool."""
    async with MockRoutmy(api_key=KEY) as mock, client_for(mock.base_url) as client:
        async with client.stream_request("POST", "/chat/completions", body=CHAT) as events:
            assert_type(events, RawStream[ServerSentEvent])
            assert events.status_code == 200
            assert events.headers["x-request-id"].startswith("req-mock-")
            received = [event async for event in events]
            assert events.completed
        assert client.connections_in_use == 0
    assert received and all(type(event) is ServerSentEvent for event in received)
    assert {event.event for event in received} == {"message"}
    assert all(event.id is None for event in received)
    chunks = [event.json() for event in received]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "stream me back"
    assert chunks[-1]["usage"]["total_tokens"] > 0  # the usage-only last chunk came too
    request = mock.requests[-1]
    assert request.headers["Accept"] == "text/event-stream"
    assert request.json == CHAT


async def test_post_with_stream_true_returns_the_same_stream_with_cast_to():
    """``await client.post(path, body=..., stream=True, cast_to=Type)`` returns an open
    stream whose items are the events' data decoded into the type."""
    async with MockRoutmy(api_key=KEY) as mock, client_for(mock.base_url) as client:
        stream = await client.post(
            "/chat/completions", body=CHAT, stream=True, cast_to=ChatCompletionChunk
        )
        assert_type(stream, RawStream[ChatCompletionChunk])
        async with stream:
            chunks = [item async for item in stream]
        plain = await client.post("/chat/completions", body={**CHAT, "stream": False})
        assert_type(plain, Any)
    assert all(isinstance(item, ChatCompletionChunk) for item in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "stream me back"
    )
    assert plain["choices"][0]["message"]["content"] == "stream me back"


async def test_a_retry_on_503_before_the_stream_opens_and_hooks_see_the_call():
    """A 503 before the stream opens is retried like any request; the hooks see one
    ``request`` call, streamed, its retry, and its end (done, with its event count)."""
    hooks = StreamEnds()
    async with MockRoutmy(api_key=KEY) as mock:
        mock.reply_error(503, "upstream busy", path="/v1/chat/completions")
        async with client_for(mock.base_url, max_retries=2, hooks=[hooks]) as client:
            async with client.stream_request("POST", "/chat/completions", body=CHAT) as events:
                received = [event async for event in events]
        assert len(mock.requests) == 2
    assert hooks.retries == ["status 503"]
    call = hooks.calls[0]
    assert (call.operation, call.stream, call.body) == ("request", True, CHAT)
    assert [end.outcome for end in hooks.ends] == ["done"]
    assert hooks.ends[0].chunks == len(received) > 0
    assert hooks.ends[0].time_to_first_event is not None


async def test_the_opening_status_and_a_json_answer_raise_typed_errors():
    """A non-2xx opening raises the usual typed status error; an endpoint that answers JSON
    raises APIResponseValidationError saying to call it without stream=True."""
    async with MockRoutmy(api_key=KEY) as mock, client_for(mock.base_url) as client:
        with pytest.raises(NotFoundError, match="No route /v1/credits"):
            async with client.stream_request("GET", "/credits"):
                pass
        with pytest.raises(APIResponseValidationError, match="without stream=True"):
            await client.get("/models", stream=True)
        assert client.connections_in_use == 0


# -- a custom SSE endpoint --------------------------------------------------------------------

EVENTS = (
    b": a comment, not an event\n"
    b'event: delta\nid: 1\ndata: {"n": 1}\n\n'
    b"data: first line\r\ndata: second line\r\n\r\n"
    b"retry: 3000\nevent: ping\ndata: {}\n\n"
    b"id: 7\rdata: \xc3\xa9t\xc3\xa9\r\r"
)
EXPECTED = [
    ServerSentEvent(event="delta", data='{"n": 1}', id="1"),
    ServerSentEvent(data="first line\nsecond line", id="1"),
    ServerSentEvent(event="ping", data="{}", id="1", retry=3000),
    ServerSentEvent(data="été", id="7", retry=3000),
]


@pytest.mark.parametrize("split", [1, 5, None])
async def test_named_events_ids_retry_and_comments_whatever_the_split(split):
    """Event names, ids (carried over), retry, multi-line data, comments and CR/LF/CRLF
    line ends come out the same when the body arrives a byte at a time; a body ending at an
    event boundary without ``[DONE]`` ends the stream."""
    async with sse_server(EVENTS, split=split) as server, client_for(server.base_url) as client:
        stream = await client.get("/events", stream=True, extra_query={"since": "0"})
        async with stream:
            received = [event async for event in stream]
            assert stream.completed and stream.last_event_id == "7"
        head = server.requests[0].decode()  # type: ignore[attr-defined]
    assert received == EXPECTED
    assert received[0].json() == {"n": 1}
    assert head.startswith("GET /v1/events?since=0 HTTP/1.1")
    assert f"Authorization: Bearer {KEY}" in head


class Delta(msgspec.Struct):
    n: int


async def test_cast_to_decodes_message_events_skips_named_ones_and_fails_on_a_bad_frame():
    """With cast_to, each ``message`` event's data is decoded into the type; other named
    events are skipped and counted; a frame that does not fit raises
    APIResponseValidationError after the items before it."""
    body = b'data: {"n": 1}\n\nevent: ping\ndata: {}\n\ndata: {"n": 2}\n\ndata: {"n": "x"}\n\n'
    async with sse_server(body) as server, client_for(server.base_url) as client:
        async with client.stream_request("GET", "/events", cast_to=Delta) as events:
            assert_type(events, RawStream[Delta])
            received: list[Delta] = []
            with pytest.raises(APIResponseValidationError, match="unexpected shape") as info:
                async for item in events:
                    received.append(item)
            assert events.ignored_events == 1
        assert client.connections_in_use == 0
    assert received == [Delta(1), Delta(2)]
    assert info.value.body == b'{"n": "x"}'
    assert ServerSentEvent(data='{"n": 3}').json(Delta) == Delta(3)
    with pytest.raises(APIResponseValidationError, match="not JSON"):
        ServerSentEvent(data="not json").json()


@pytest.mark.parametrize(
    ("frame", "message", "code"),
    [
        (b'event: error\ndata: {"error": {"message": "busy", "code": 503}}\n\n', "busy", 503),
        (b'data: {"error": {"message": "boom", "code": "up", "type": "x"}}\n\n', "boom", "up"),
        (b"event: error\ndata: it broke\n\n", "it broke", None),
        (b'data: {"error": "quota spent"}\n\n', "quota spent", None),
    ],
)  # fmt: skip
async def test_an_error_frame_raises_api_stream_error_after_the_events_before_it(
    frame, message, code
):
    """An ``event: error`` frame, or a data frame with a top-level ``error``, raises
    APIStreamError (code and message as sent) once the events before it were delivered; a
    frame whose ``error`` is null is an ordinary event; later reads raise "closed before its
    end"."""
    body = b'data: {"error": null, "n": 1}\n\n' + frame + b"data: never\n\n"
    async with sse_server(body) as server, client_for(server.base_url) as client:
        async with client.stream_request("POST", "/jobs", body={"x": 1}) as events:
            received = []
            with pytest.raises(APIStreamError) as info:
                async for event in events:
                    received.append(event.json())
            with pytest.raises(APIConnectionError, match="closed before its end") as later:
                await events.__anext__()
            assert later.value.__cause__ is info.value
        assert client.connections_in_use == 0
    assert received == [{"error": None, "n": 1}]
    assert info.value.message == message and info.value.code == code


async def test_done_ends_the_stream_and_drains_so_the_connection_is_reused():
    """``data: [DONE]`` ends the stream: what follows is not delivered, the rest of the body
    is read, and the next stream reuses the same connection."""
    body = b"data: one\n\ndata: [DONE]\n\ndata: after done\n\n: trailing\n\n"
    server = sse_server(body, split=11, keep_alive=True)
    async with server, client_for(server.base_url) as client:
        for _ in range(2):
            async with client.stream_request("POST", "/jobs") as events:
                assert [event.data async for event in events] == ["one"]
                assert events.completed
            assert client.connections_in_use == 0
        assert server.connections == 1
        assert len(server.requests) == 2  # type: ignore[attr-defined]


# -- ends that are not whole ------------------------------------------------------------------


async def test_a_body_ending_inside_an_event_raises_api_connection_error(raw_server):
    """A body that ends (cleanly, at the HTTP level) in the middle of an event is a cut: the
    events before it are delivered, then APIConnectionError."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
            b'data: {"n": 1}\n\ndata: {"n": 2'
        )
        await writer.drain()

    hooks = StreamEnds()
    async with raw_server(handler) as server, client_for(server.base_url, hooks=[hooks]) as c:
        async with c.stream_request("GET", "/events") as events:
            received = []
            with pytest.raises(APIConnectionError, match="ended inside an event, after 1 whole"):
                async for event in events:
                    received.append(event.data)
            assert not events.completed
    assert received == ['{"n": 1}']
    assert [end.outcome for end in hooks.ends] == ["broken"]


async def test_a_connection_cut_mid_event_raises_api_connection_error(raw_server):
    """The server drops the connection in the middle of a chunked body: APIConnectionError,
    with the events before the cut delivered."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(chunked_head() + chunk(b"data: whole\n\n") + chunk(b"data: half"))
        await writer.drain()
        writer.transport.abort()

    async with raw_server(handler) as server, client_for(server.base_url) as client:
        async with client.stream_request("GET", "/events") as events:
            received = []
            with pytest.raises(APIConnectionError) as info:
                async for event in events:
                    received.append(event.data)
        assert client.connections_in_use == 0
    assert received == ["whole"]
    assert type(info.value) is APIConnectionError


async def test_an_html_answer_is_not_taken_for_a_stream(raw_server):
    """A 200 that is not an event stream (a login page) raises APIResponseValidationError
    before any byte is parsed."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(http_response(b"<html>sign in</html>", content_type="text/html"))
        await writer.drain()

    async with raw_server(handler) as server, client_for(server.base_url) as client:
        with pytest.raises(APIResponseValidationError, match="'text/html'") as info:
            await client.request("GET", "/events", stream=True)
        assert client.connections_in_use == 0
    assert "does not answer with an event stream" in str(info.value)


async def test_the_idle_timeout_counts_events_not_keep_alive_comments():
    """Keep-alive comments alone do not keep a stream alive past ``stream_idle``."""
    async with MockRoutmy(api_key=KEY) as mock:
        mock.reply_stream(
            [], done=False, comments_forever=True, comment_interval=0.02, path="/v1/feed"
        )
        mock.reply_stream(
            [],
            done=False,
            comments_forever=True,
            comment_interval=0.02,
            path="/v1/chat/completions",
        )
        async with client_for(mock.base_url, timeout=Timeout(stream_idle=0.2)) as client:
            started = asyncio.get_running_loop().time()
            with pytest.raises(APITimeoutError, match=r"no stream event for 0\.2 s"):
                async with client.stream_request("POST", "/chat/completions", body=CHAT) as s:
                    async for _ in s:
                        pass
            assert asyncio.get_running_loop().time() - started < 5
            assert client.connections_in_use == 0


# -- leaving early ----------------------------------------------------------------------------


async def test_break_and_cancel_release_the_connection():
    """Leaving the block after a ``break`` closes the stream; a task cancelled while it waits
    for the next event releases the connection too; the hooks see both as cancelled."""
    hooks = StreamEnds()
    async with MockRoutmy(api_key=KEY, stream_piece=1) as mock:
        async with client_for(mock.base_url, hooks=[hooks]) as client:
            async with client.stream_request("POST", "/chat/completions", body=CHAT) as events:
                async for _ in events:
                    break
            assert client.connections_in_use == 0

            mock.reply_default(path="/v1/chat/completions", stall_after=200)
            opened = asyncio.Event()

            async def read() -> None:
                async with client.stream_request("POST", "/chat/completions", body=CHAT) as s:
                    opened.set()
                    async for _ in s:
                        pass

            task = asyncio.create_task(read())
            await opened.wait()
            await asyncio.sleep(0.05)
            assert client.connections_in_use == 1
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert client.connections_in_use == 0
    assert [end.outcome for end in hooks.ends] == ["cancelled", "cancelled"]


async def test_a_reader_that_leaves_after_one_event_is_counted_as_such_chat_and_raw_alike():
    """The whole answer arrives in one read and the reader leaves after its first event: a
    chat stream and a raw stream both report one event handed out and ``cancelled`` (not the
    events decoded ahead, not ``done``); read to the end, ``done`` with every event."""
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}
    frames = [
        {**base, "choices": [{"index": 0, "delta": {"content": f"w{i} "}}]} for i in range(40)
    ]
    frames.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = b"".join(b"data: " + msgspec.json.encode(f) + b"\n\n" for f in frames)
    body += b"data: [DONE]\n\n"
    hooks = StreamEnds()
    async with sse_server(body, keep_alive=True) as server:
        async with client_for(server.base_url, hooks=[hooks]) as client:
            async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as chat:
                async for _ in chat:
                    break
                assert not chat.completed
            async with client.stream_request("POST", "/chat/completions", body=CHAT) as events:
                async for _ in events:
                    break
                assert not events.completed
            async with client.stream_request("POST", "/chat/completions", body=CHAT) as events:
                received = [event async for event in events]
    assert len(received) == len(frames)
    assert [(end.outcome, end.chunks) for end in hooks.ends] == [
        ("cancelled", 1),
        ("cancelled", 1),
        ("done", len(frames)),
    ]


# -- the API's shape --------------------------------------------------------------------------


async def test_a_raw_stream_is_checked_when_it_is_made():
    """A bad path or argument raises at the call, before anything is sent."""
    async with MockRoutmy(api_key=KEY) as mock, client_for(mock.base_url) as client:
        with pytest.raises(ValueError, match="path"):
            client.stream_request("GET", "https://elsewhere.example/x")
        with pytest.raises(TypeError, match="unexpected"):
            client.stream_request("GET", "/events", nope=1)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="stream must be a bool"):
            await client.get("/models", stream="yes")  # type: ignore[call-overload]
        manager = client.stream_request("GET", "/models")
        assert_type(manager, RawStreamManager[ServerSentEvent])
        assert mock.requests == []
