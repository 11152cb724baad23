"""Responses and raw streams served again as SSE: to_sse() and to_streaming_response(), on a
real MockRoutmy and, for the app's side, on a real uvicorn."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
import uvicorn

from routmy_async import APIStreamError, AsyncRoutmy
from routmy_async._streaming._sse import SSEDecoder, WireEvent
from routmy_async.testing import MockRoutmy, assert_no_open_connections
from routmy_async.testing._replies import response_events, response_object

TEXT = "héllo wörld ☃ a streamed\nanswer"
KEY = "sk-secret-key-123"


def events_for(text: str = TEXT) -> list[dict[str, Any]]:
    response = response_object({"model": "p/m", "input": text}, created=1, serial=1)
    return response_events(response, piece=3)


def parse(body: bytes) -> tuple[list[WireEvent | bytes], bool]:
    """Frames as the SDK's own WHATWG parser reads them, and whether [DONE] ended them."""
    decoder = SSEDecoder()
    events = decoder.feed_raw(body)
    return events, decoder.done


async def served(client: AsyncRoutmy, **options: Any) -> bytes:
    stream = await client.responses.create(model="p/m", input="x", stream=True)
    return b"".join([frame async for frame in stream.to_sse(**options)])


async def test_responses_events_are_relayed_as_the_router_sent_them(mock):
    """Every event goes out as `event: <type>` + its data exactly as sent (a field the SDK
    does not model included), with no [DONE]: the last event ends a Responses stream."""
    events = events_for()
    events[1] = {**events[1], "x_router_extra": {"kept": True}}
    mock.reply_stream(events, named=True, done=False)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        body = await served(client)
        assert_no_open_connections(client)
    frames, done = parse(body)
    assert not done
    assert [(f.event, json.loads(f.data)) for f in frames if isinstance(f, WireEvent)] == [
        (event["type"], event) for event in events
    ]


async def test_after_an_event_read_by_the_endpoint_the_rest_go_out_as_sent(mock):
    """An endpoint that reads the first event itself (to log the response id, say) serves
    the rest byte for byte: the events the stream had already decoded in the same network
    read included, with fields the SDK does not model and zeros it would omit."""
    events = [{**event, "x_router_extra": n} for n, event in enumerate(events_for())]
    # One write: the first events arrive (and are decoded) together.
    mock.reply_stream(events, named=True, done=False)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        stream = await client.responses.create(model="p/m", input="x", stream=True)
        first = await stream.__anext__()
        body = b"".join([frame async for frame in stream.to_sse()])
    frames, _ = parse(body)
    served = [(f.event, f.data) for f in frames if isinstance(f, WireEvent)]
    assert first.type == "response.created"
    assert served == [
        (event["type"], json.dumps(event, separators=(",", ":")).encode()) for event in events[1:]
    ]


async def test_responses_text_format_carries_only_the_text(mock):
    mock.reply_stream(events_for(), named=True, done=False)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        body = await served(client, format="text")
    frames, done = parse(body)
    assert done
    assert "".join(json.loads(f) for f in frames if isinstance(f, bytes)) == TEXT


async def test_a_responses_error_event_is_the_last_frame_without_the_key(mock):
    error = {"type": "error", "message": f"provider down for {KEY}", "code": "server_error"}
    events = [*events_for()[:3], error]
    mock.reply_stream(events, named=True, done=False)
    async with AsyncRoutmy(api_key=KEY, base_url=mock.base_url) as client:
        body = await served(client)
        assert_no_open_connections(client)
    assert KEY.encode() not in body
    frames, done = parse(body)
    last = frames[-1]
    assert not done and isinstance(last, WireEvent) and last.event == "error"
    error = json.loads(last.data)["error"]
    assert error["error_class"] == "APIStreamError" and error["code"] == "server_error"
    assert "provider down" in error["message"]


async def test_raw_stream_events_are_relayed_with_their_names_and_ids(mock):
    """A raw stream is served as it came: event names, ids, data, and [DONE] only when the
    server sent one."""
    upstream = (
        b'event: progress\nid: 7\ndata: {"step": 1}\n\n'
        b"data: line one\ndata: line two\n\n"
        b"data: [DONE]\n\n"
    )
    mock.reply_stream([upstream], done=False, path="/v1/chat/completions")
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        stream = await client.post("/chat/completions", body={}, stream=True)
        body = b"".join([frame async for frame in stream.to_sse()])
        assert stream.saw_done
    frames, done = parse(body)
    assert done
    assert [(f.event, f.id, f.data) for f in frames if isinstance(f, WireEvent)] == [
        ("progress", "7", b'{"step": 1}'),
        ("message", "7", b"line one\nline two"),  # an id carries over, as in browsers
    ]


async def test_a_raw_stream_without_done_is_served_without_one(mock):
    mock.reply_stream([b"data: a\n\n"], done=False, path="/v1/chat/completions")
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        stream = await client.post("/chat/completions", body={}, stream=True)
        body = b"".join([frame async for frame in stream.to_sse()])
    assert body == b"data: a\n\n" and not stream.saw_done


async def test_formats_a_stream_kind_does_not_have_are_refused(mock):
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        stream = await client.responses.create(model="p/m", input="x", stream=True)
        async with stream:
            with pytest.raises(ValueError, match="format must be 'events' or 'text'"):
                stream.to_sse(format="chunks")  # type: ignore[arg-type]
        mock.reply_stream([b"data: a\n\n"], done=False, path="/v1/chat/completions")
        raw = await client.post("/chat/completions", body={}, stream=True)
        async with raw:
            with pytest.raises(ValueError, match="format must be 'events', not 'text'"):
                raw.to_sse(format="text")  # type: ignore[arg-type]


async def test_a_page_reads_a_responses_stream_through_uvicorn_and_leaving_stops_it():
    """An app returns stream.to_streaming_response(): the browser reads the events; a
    browser that leaves mid-answer closes the upstream stream at once."""
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    async with MockRoutmy() as mock:
        client = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url)
        app = FastAPI()

        @app.get("/answer")
        async def answer() -> StreamingResponse:
            stream = await client.responses.create(model="p/m", input=TEXT, stream=True)
            return stream.to_streaming_response(keepalive=1)

        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        )
        task = asyncio.create_task(server.serve())
        try:
            for _ in range(250):
                if server.started:
                    break
                await asyncio.sleep(0.02)
            port = server.servers[0].sockets[0].getsockname()[1]
            url = f"http://127.0.0.1:{port}/answer"
            async with aiohttp.ClientSession() as browser:
                async with browser.get(url) as page:
                    assert page.headers["Content-Type"].startswith("text/event-stream")
                    body = await page.read()
                frames, _ = parse(body)
                named = [f for f in frames if isinstance(f, WireEvent)]
                assert named[-1].event == "response.completed"
                text = "".join(
                    json.loads(f.data)["delta"]
                    for f in named
                    if f.event == "response.output_text.delta"
                )
                assert text == TEXT
                # A slow answer, left after its first frame.
                mock.reply_default(path="/v1/responses", chunk_delay=0.2)
                async with browser.get(url) as page:
                    await page.content.readuntil(b"\n\n")
                for _ in range(250):
                    if mock.disconnects >= 1 and client.connections_in_use == 0:
                        break
                    await asyncio.sleep(0.02)
                assert mock.disconnects >= 1
                assert_no_open_connections(client)
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
            await client.close()


async def test_an_sdk_client_reads_the_relayed_responses_stream(mock):
    """What to_sse writes is a Responses stream an OpenAI-compatible client (this SDK) reads:
    the same text, and an error frame raises the same typed error."""
    mock.reply_stream(events_for(), named=True, done=False)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        relayed = await served(client)
    async with MockRoutmy() as second:
        second.reply_stream([relayed], done=False)
        second.reply_stream(
            [b'event: error\ndata: {"error": {"message": "boom", "code": 503}}\n\n'], done=False
        )
        async with AsyncRoutmy(api_key=second.api_key, base_url=second.base_url) as reader:
            stream = await reader.responses.create(model="p/m", input="x", stream=True)
            final = await stream.get_final_response()
            assert final.output_text == TEXT
            broken = await reader.responses.create(model="p/m", input="x", stream=True)
            with pytest.raises(APIStreamError, match="boom"):
                await broken.get_final_response()
