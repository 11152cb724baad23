"""Responses streams on the wire: events, the final response, and every guarantee of chat
streams (release on break/error/cancel, idle timeout, errors after the events before them,
no silent short end)."""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import struct
from typing import Any

import msgspec
import pytest

from routmy_async import (
    APIConnectionError,
    APIResponseValidationError,
    APIStreamError,
    APITimeoutError,
    AsyncRoutmy,
    RoutmyError,
    Timeout,
)
from routmy_async.resources.responses._stream import ResponseStream
from routmy_async.testing import assert_no_open_connections
from routmy_async.testing._replies import response_events, response_object
from routmy_async.types import (
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponseFunctionCallArgumentsDeltaEvent,
    ResponseIncompleteEvent,
    ResponseTextDeltaEvent,
    UnknownResponseEvent,
)
from tests.conftest import RawServer, chunk, chunked_head, eventually, read_request

TEXT = "héllo wörld ☃ 🎉 a streamed answer"
KEY = "sk-secret-key-123"


class Order(msgspec.Struct):
    id: str
    status: str


def events_for(text: str = TEXT, **body: Any) -> list[dict[str, Any]]:
    response = response_object({"model": "p/m", "input": text, **body}, created=1, serial=1)
    return response_events(response, piece=3)


def sse(events: list[Any], *, named: bool = True) -> bytes:
    out = b""
    for event in events:
        if isinstance(event, bytes):
            out += event
            continue
        name = f"event: {event['type']}\n".encode() if named else b""
        out += name + b"data: " + json.dumps(event, ensure_ascii=False).encode() + b"\n\n"
    return out


def serve(body: bytes, write_size: int = 1 << 20):
    async def handler(reader, writer):
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(chunked_head())
            for start in range(0, len(body), write_size):
                writer.write(chunk(body[start : start + write_size]))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    return handler


async def test_stream_yields_typed_events_and_the_final_response(client, mock):
    """Every event is typed; the final response equals what the plain call answers."""
    plain = await client.responses.create(model="mock/reasoner", input=TEXT, reasoning={})
    async with client.responses.stream(model="mock/reasoner", input=TEXT, reasoning={}) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    assert isinstance(events[0], ResponseCreatedEvent)
    assert isinstance(events[-1], ResponseCompletedEvent)
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = "".join(e.delta for e in events if isinstance(e, ResponseTextDeltaEvent))
    assert deltas == TEXT == final.output_text
    assert [type(item) for item in final.output] == [type(item) for item in plain.output]
    assert final.output[0].summary_text == plain.output[0].summary_text
    assert final.usage == plain.usage and final.request_id is not None
    assert stream.completed and "done" in repr(stream)
    assert await stream.get_final_response() is final  # once built, kept
    assert mock.requests[1].json["stream"] is True
    assert mock.requests[1].headers["Accept"] == "text/event-stream"
    assert_no_open_connections(client)
    assert mock.connections_seen == 1  # the stream gave its connection back


async def test_create_stream_true_and_the_text_view(client):
    """create(stream=True) opens a ResponseStream; text_deltas() yields only the text;
    get_final_response() reads what is left first."""
    stream = await client.responses.create(model="mock/echo", input=TEXT, stream=True)
    assert isinstance(stream, ResponseStream)
    async with stream:
        pieces = [piece async for piece in stream.text_deltas()]
    assert "".join(pieces) == TEXT and all(pieces)
    async with client.responses.stream(model="mock/echo", input=TEXT) as again:
        first = await again.__anext__()
        assert isinstance(first, ResponseCreatedEvent)
        final = await again.until_done()
    assert final.output_text == TEXT


async def test_function_call_and_parse_through_a_stream(client):
    """Arguments stream as deltas of their call; text_format parses the final response."""
    async with client.responses.stream(
        model="mock/echo", input="order A-1", tools=[{"type": "function", "name": "f"}]
    ) as stream:
        events = [e async for e in stream]
    arguments = "".join(
        e.delta for e in events if isinstance(e, ResponseFunctionCallArgumentsDeltaEvent)
    )
    final = await stream.get_final_response()
    assert final.function_calls[0].arguments == arguments == "{}"
    async with client.responses.stream(
        model="mock/echo", input="Order B-2 lost", text_format=Order
    ) as stream:
        parsed = (await stream.get_final_response()).output_parsed
    assert parsed == Order(id="B-2", status="lost")


@pytest.mark.parametrize("named", [True, False], ids=["named", "data-only"])
@pytest.mark.parametrize("write_size", [1, 7, 64, 1 << 20])
async def test_any_write_size_gives_the_same_answer(named, write_size):
    """1-byte, odd and whole writes, with or without event lines: the same answer, and the
    connection goes back to the pool."""
    long_text = TEXT * 4  # more events than one decoding step takes from a read
    body = b": OPENROUTER PROCESSING\n\n" + sse(events_for(long_text), named=named)
    async with RawServer(serve(body, write_size)) as server:
        async with AsyncRoutmy(api_key="sk-x", base_url=server.base_url) as client:
            for _ in range(2):
                async with client.responses.stream(model="p/m", input="x") as stream:
                    final = await stream.get_final_response()
                    assert stream.response.status == 200
                assert final.output_text == long_text
            assert_no_open_connections(client)
    assert server.connections == 1


async def test_unknown_events_pass_and_ping_events_are_skipped(client, mock):
    """An event of an unknown type is yielded as it came; a named event with no type is
    skipped and counted; [DONE] after the terminal event is harmless."""
    events = events_for("ok")
    events.insert(2, {"type": "response.web_search_call.searching", "item_id": "ws"})
    frames = [*events[:3], b"event: ping\ndata: {}\n\n", *events[3:]]
    mock.reply_stream(frames, named=True, done=True)
    async with client.responses.stream(model="p/m", input="x") as stream:
        got = [e async for e in stream]
    unknown = [e for e in got if isinstance(e, UnknownResponseEvent)]
    assert len(unknown) == 1 and unknown[0].item_id == "ws"
    assert stream.ignored_events == 1 and (await stream.get_final_response()).output_text == "ok"


async def test_an_error_event_raises_after_the_events_before_it(client, mock):
    """An `error` event raises APIStreamError with its code and message once the events
    before it were delivered; the connection is released."""
    events = events_for()[:8]
    mock.reply_stream(
        [*events, {"type": "error", "code": "server_error", "message": "boom"}, *events_for()[8:]],
        named=True,
        done=False,
    )
    received = []
    with pytest.raises(APIStreamError, match="boom") as info:
        async with client.responses.stream(model="p/m", input="x") as stream:
            async for event in stream:
                received.append(event)
    assert len(received) == 8 and info.value.code == "server_error"
    assert_no_open_connections(client)
    with pytest.raises(APIStreamError, match="boom"):
        await stream.get_final_response()


async def test_a_router_error_object_mid_stream_raises(client, mock):
    """A router's {"error": {...}} frame (no type) raises APIStreamError too."""
    mock.reply_stream(
        [
            *events_for()[:3],
            {"error": {"message": "Provider failed", "code": 502, "metadata": {"p": 1}}},
        ],
        done=False,
    )
    with pytest.raises(APIStreamError, match="Provider failed") as info:
        async with client.responses.stream(model="p/m", input="x") as stream:
            await stream.until_done()
    assert info.value.code == 502 and info.value.metadata == {"p": 1}


async def test_a_failed_response_raises_and_keeps_the_failed_response(client, mock):
    """response.failed raises APIStreamError (its error's code and message) after the events
    before it; current_response() shows the failed response with what streamed."""
    events = events_for()
    failed = {**events[-1]["response"], "status": "failed", "output": []}
    failed["error"] = {"code": "server_error", "message": "The model crashed"}
    events[-1] = {"type": "response.failed", "sequence_number": 99, "response": failed}
    mock.reply_stream(events, named=True, done=False)
    count = 0
    with pytest.raises(APIStreamError, match="The model crashed") as info:
        async with client.responses.stream(model="p/m", input="x") as stream:
            async for _ in stream:
                count += 1
    assert count == len(events) - 1 and info.value.code == "server_error"
    current = stream.current_response()
    assert current.status == "failed" and current.output_text == TEXT
    assert not stream.completed


async def test_an_incomplete_response_ends_normally(client):
    """response.incomplete is a terminal event: the stream ends and the final response says
    why it is incomplete."""
    async with client.responses.stream(
        model="mock/echo", input="one two three", max_output_tokens=2
    ) as stream:
        events = [e async for e in stream]
    final = await stream.get_final_response()
    assert isinstance(events[-1], ResponseIncompleteEvent)
    assert final.status == "incomplete" and final.output_text == "one two"
    assert final.incomplete_details is not None


@pytest.mark.parametrize("done", [False, True], ids=["eof", "done-marker"])
async def test_a_stream_without_a_terminal_event_is_a_connection_error(client, mock, done):
    """A body that ends (or sends [DONE]) before response.completed raises
    APIConnectionError saying how many events arrived; later reads raise "closed before its
    end", and the final response raises the first error again."""
    mock.reply_stream(events_for()[:5], named=True, done=done)
    got = 0
    with pytest.raises(APIConnectionError, match=r"after 5 event\(s\) without response") as info:
        async with client.responses.stream(model="p/m", input="x") as stream:
            async for _ in stream:
                got += 1
    assert got == 5
    with pytest.raises(APIConnectionError, match="closed before its end") as later:
        await stream.__anext__()
    assert later.value.__cause__ is info.value
    with pytest.raises(APIConnectionError) as final:
        await stream.get_final_response()
    assert final.value is info.value


async def test_bad_frames_are_validation_errors(client, mock):
    """A frame that is not JSON raises APIResponseValidationError with the frame and the
    request id; so does a 200 that is not an event stream."""
    mock.reply_stream([*events_for()[:2], b"data: {not json\n\n"], done=False)
    with pytest.raises(APIResponseValidationError, match="not valid JSON") as info:
        async with client.responses.stream(model="p/m", input="x") as stream:
            await stream.until_done()
    assert info.value.body == b"{not json" and info.value.request_id is not None
    mock.reply_json(b"<html>login</html>", headers={"Content-Type": "text/html"})
    with pytest.raises(APIResponseValidationError, match="text/html"):
        await client.responses.create(model="p/m", input="x", stream=True)
    assert_no_open_connections(client)


async def test_break_closes_the_connection(mock):
    """Breaking out early closes the response at once; the final response is refused but
    the partial one is there."""
    mock.reply_default(chunk_delay=0.01)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        async with client.responses.stream(model="mock/echo", input=TEXT) as stream:
            async for event in stream:
                if isinstance(event, ResponseTextDeltaEvent):
                    break
        assert_no_open_connections(client)
        with pytest.raises(APIConnectionError, match="closed before its end"):
            await stream.get_final_response()
        partial = stream.current_response().output_text
        assert partial and TEXT.startswith(partial) and partial != TEXT
        for _ in range(100):
            if mock.disconnects:
                break
            await asyncio.sleep(0.02)
    assert mock.disconnects == 1


async def test_an_exception_in_the_loop_closes_the_stream(mock):
    """An exception inside the loop closes the response on leaving the block."""
    mock.reply_default(chunk_delay=0.01)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        with pytest.raises(ZeroDivisionError):
            async with client.responses.stream(model="mock/echo", input=TEXT) as stream:
                async for _ in stream:
                    1 / 0  # noqa: B018
        assert_no_open_connections(client)


async def test_cancelling_the_task_releases_the_connection(mock):
    """Cancelling a task mid-stream, with or without async with, frees the pool slot."""
    mock.reply_default(chunk_delay=0.05)
    mock.reply_default(chunk_delay=0.05)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        started = asyncio.Event()

        async def consume() -> None:
            async with client.responses.stream(model="mock/echo", input=TEXT) as stream:
                async for _ in stream:
                    started.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert_no_open_connections(client)
        bare = await client.responses.create(model="mock/echo", input=TEXT, stream=True)
        await bare.__anext__()
        pending = asyncio.create_task(bare.__anext__())
        await asyncio.sleep(0.01)
        pending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await pending
        assert_no_open_connections(client)


async def test_idle_timeout_and_endless_comments(mock):
    """No event for longer than stream_idle raises APITimeoutError, also when only
    keep-alive comments arrive."""
    mock.reply_default(path="/responses", stall_after=300, stall_for=30)
    mock.reply_stream([], done=False, comments_forever=True, comment_interval=0.05)
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, timeout=Timeout(stream_idle=0.3)
    ) as client:
        with pytest.raises(APITimeoutError):
            async with client.responses.stream(model="mock/echo", input=TEXT) as stream:
                await stream.until_done()
        with pytest.raises(APITimeoutError, match="keep-alive"):
            async with client.responses.stream(model="mock/echo", input=TEXT) as stream:
                await stream.until_done()
        assert_no_open_connections(client)


async def test_a_server_that_talks_on_after_the_end_loses_its_connection(client, mock):
    """Bytes after the terminal event do not hold the stream; a server that never ends its
    body loses the connection shortly after, and the answer stands."""
    mock.reply_stream(events_for("x"), named=True, done=False, comments_forever=True)
    async with client.responses.stream(model="p/m", input="x") as stream:
        final = await asyncio.wait_for(stream.get_final_response(), 0.5)
    assert final.output_text == "x"
    assert await eventually(lambda: client.connections_checked_out == 0)


async def test_a_status_error_before_the_stream_is_retried(mock):
    """A 429 before the first event is retried like any request."""
    mock.reply_error(429, "busy", headers={"retry-after-ms": "10"})
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=1) as client:
        async with client.responses.stream(model="mock/echo", input=TEXT) as stream:
            final = await stream.get_final_response()
    assert final.output_text == TEXT and len(mock.requests) == 2


async def test_a_dropped_stream_warns_and_closes(mock):
    """A stream dropped unread warns with ResourceWarning and frees its connection; a
    manager is single-use."""
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        stream = await client.responses.create(model="mock/echo", input=TEXT, stream=True)
        with pytest.warns(ResourceWarning, match="ResponseStream was garbage-collected"):
            del stream
            gc.collect()
        assert_no_open_connections(client)
        manager = client.responses.stream(model="mock/echo", input=TEXT)
        async with manager as entered:
            await entered.until_done()
        with pytest.raises(RuntimeError, match="already"):
            await manager.__aenter__()


async def test_a_key_echoed_in_a_stream_error_is_gone(mock):
    """An error event echoing the key reaches the caller without it."""
    mock.reply_stream([{"type": "error", "message": f"bad key {KEY}", "code": "auth"}], done=False)
    async with AsyncRoutmy(api_key=KEY, base_url=mock.base_url) as client:
        with pytest.raises(APIStreamError) as info:
            async with client.responses.stream(model="p/m", input="x") as stream:
                await stream.until_done()
    assert KEY not in str(info.value) and KEY not in repr(info.value.args)


def cut_server(payload: bytes, offsets: list[int]) -> RawServer:
    """Answer request i with the first offsets[i] bytes of payload, then a TCP reset."""
    served = iter(offsets)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        offset = next(served)
        writer.write(payload[:offset])
        await writer.drain()
        if offset >= len(payload):
            return
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    return RawServer(handler)


async def test_a_reset_at_any_offset_is_an_error_or_the_whole_answer():
    """A stream cut by a reset at many offsets gives APIConnectionError (or a validation
    error while the head is cut), or — only past the terminal event — the whole answer;
    never a shortened one, and the pool holds nothing afterwards."""
    body = sse(events_for("The whole stream ☃."))
    payload = chunked_head() + chunk(body) + b"0\r\n\r\n"
    head = len(chunked_head())
    offsets = [*range(0, head + 20, 2), *range(head + 20, len(payload) + 1, 37), len(payload)]
    outcomes = {"error": 0, "complete": 0}
    async with cut_server(payload, offsets) as server:
        async with AsyncRoutmy(api_key=KEY, base_url=server.base_url, max_retries=0) as client:
            for _ in offsets:
                try:
                    async with client.responses.stream(model="p/m", input="x") as stream:
                        final = await stream.get_final_response()
                except RoutmyError as error:
                    assert isinstance(error, (APIConnectionError, APIResponseValidationError))
                    outcomes["error"] += 1
                else:
                    assert final.output_text == "The whole stream ☃."
                    outcomes["complete"] += 1
            assert_no_open_connections(client)
    assert outcomes["complete"] >= 1 and outcomes["error"] >= len(offsets) - 3


def late_end_server(body: bytes, *, reset: bool) -> RawServer:
    """Send the events, then after a pause either [DONE] and the end, or a TCP reset."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(chunked_head() + chunk(body))
        await writer.drain()
        await asyncio.sleep(0.05)
        if reset:
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return
        writer.write(chunk(b"data: [DONE]\n\n") + b"0\r\n\r\n")
        await writer.drain()

    return RawServer(handler)


@pytest.mark.parametrize("reset", [False, True], ids=["done-then-eof", "reset"])
async def test_what_follows_the_terminal_event_cannot_spoil_the_answer(reset):
    """After response.completed, a later [DONE] and end release the connection, a reset
    only drops it; the answer stands either way."""
    async with late_end_server(sse(events_for("fine")), reset=reset) as server:
        async with AsyncRoutmy(api_key="sk-x", base_url=server.base_url) as client:
            async with client.responses.stream(model="p/m", input="x") as stream:
                final = await stream.get_final_response()
            assert await eventually(lambda: client.connections_checked_out == 0)
    assert final.output_text == "fine"


async def test_a_stream_without_any_read_limit(mock):
    """With no read or idle limit, keep-alive comments are simply skipped."""
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, timeout=Timeout(read=None)
    ) as client:
        async with client.responses.stream(model="mock/echo", input="no limit") as stream:
            final = await stream.get_final_response()
    assert final.output_text == "no limit"


async def test_nulls_where_the_reference_has_values_are_taken_as_absent(client, mock):
    """A router's upstream may send "logprobs": null, "item_id": null or "annotations": null:
    the stream and the final response go on (the field takes its default)."""
    events = events_for("ok")
    for event in events:
        if event["type"] == "response.output_text.delta":
            event["logprobs"] = None
            event["item_id"] = None
        if event["type"] == "response.completed":
            event["response"]["tools"] = None
            for item in event["response"]["output"]:
                for part in item.get("content") or ():
                    part["annotations"] = None
    mock.reply_stream(events, named=True, done=False)
    async with client.responses.stream(model="p/m", input="x") as stream:
        deltas = [e.delta async for e in stream if e.type == "response.output_text.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == "ok" and final.output_text == "ok"
    # The same in a plain answer.
    body = events[-1]["response"]
    mock.reply_json(body, path="/v1/responses")
    response = await client.responses.create(model="p/m", input="x")
    assert response.output_text == "ok" and response.raw["tools"] is None


async def test_a_streamed_final_response_keeps_what_the_server_sent(client, mock):
    """Fields no type declares, and .raw as sent, as with a plain create()."""
    events = events_for("ok")
    events[-1]["response"]["shard"] = 7
    mock.reply_stream(events, named=True, done=False)
    async with client.responses.stream(model="p/m", input="x") as stream:
        final = await stream.get_final_response()
    assert final.shard == 7 and final.raw["shard"] == 7
    assert final.raw["output"][0]["content"][0]["text"] == "ok"
