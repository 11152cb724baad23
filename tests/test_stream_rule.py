"""One stream-end rule for chat, Responses and raw streams (issue 25, "One stream loop").

The loop stops only at a whole answer, and again on every read after it; any other end
raises, and after that every read raises ``APIConnectionError`` ("closed before its end",
chained to the error that ended the stream): never a quiet stop with a shortened answer.
Against a raw asyncio server on 127.0.0.1 that writes each answer whole (or holds it open).
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest

from routmy_async import (
    APIConnectionError,
    APIStreamError,
    AsyncRoutmy,
    Call,
    Hooks,
    RoutmyError,
    StreamSummary,
)
from routmy_async.testing._replies import response_events, response_object
from tests.conftest import RawServer, chunk, chunked_head, http_response, read_request

KEY = "sk-stream-rule-0123456789"
MESSAGES = [{"role": "user", "content": "hello"}]
KINDS = ["chat", "responses", "raw"]


def _chat_frame(delta: dict[str, Any], finish: str | None = None) -> bytes:
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "p/m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


_RESPONSE_EVENTS = response_events(
    response_object({"model": "p/m", "input": "one two three"}, created=1, serial=1), piece=4
)


def _responses_frames(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        f"event: {event['type']}\n".encode() + b"data: " + json.dumps(event).encode() + b"\n\n"
        for event in events
    )


_CHAT_START = _chat_frame({"role": "assistant", "content": "one "}) + _chat_frame(
    {"content": "two"}
)
_RESPONSES_START = _responses_frames(_RESPONSE_EVENTS[:3])
_RAW_START = b'data: {"n": 1}\n\ndata: {"n": 2}\n\n'

# Each kind's answer in three shapes: whole; ended by an error frame; cut before its end (the
# body ends with no terminal event).
WHOLE = {
    "chat": _CHAT_START + _chat_frame({}, "stop") + b"data: [DONE]\n\n",
    "responses": _responses_frames(_RESPONSE_EVENTS),
    "raw": _RAW_START + b"data: [DONE]\n\n",
}
ERROR_FRAME = {
    "chat": _CHAT_START + b'data: {"error": {"message": "boom", "code": 502}}\n\n',
    "responses": _RESPONSES_START
    + b'event: error\ndata: {"type": "error", "message": "boom", "code": 502}\n\n',
    "raw": _RAW_START + b'event: error\ndata: {"message": "boom", "code": 502}\n\n',
}
CUT = {
    "chat": _CHAT_START,
    "responses": _RESPONSES_START,
    "raw": _RAW_START + b'data: {"n"',
}
# How each kind says its body ended before the answer did.
CUT_MESSAGE = {
    "chat": r"without \[DONE\] or a finish_reason",
    "responses": "without response.completed, response.incomplete or response.failed",
    "raw": "ended inside an event",
}
# One event: nothing is left buffered to hand out after close().
OPENING = {
    "chat": _chat_frame({"role": "assistant", "content": "one "}),
    "responses": _responses_frames(_RESPONSE_EVENTS[:1]),
    "raw": b'data: {"n": 1}\n\n',
}


def serving(body: bytes, *, hold: bool = False) -> RawServer:
    """A server answering every request with ``body`` as an event stream: whole (keep-alive),
    or, with ``hold``, as the start of a chunked body that never ends."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            await read_request(reader)
            if hold:
                writer.write(chunked_head() + chunk(body))
                await writer.drain()
                await reader.read(1)  # until the client closes the connection
                return
            writer.write(http_response(body, content_type="text/event-stream"))
            await writer.drain()

    return RawServer(answer)


class Ends(Hooks):
    """Records every stream end and every failure the hooks are told of."""

    def __init__(self) -> None:
        self.ends: list[StreamSummary] = []
        self.errors: list[BaseException] = []

    def on_stream_end(self, call: Call, summary: StreamSummary) -> None:
        self.ends.append(summary)

    def on_error(self, call: Call, *, error: BaseException, elapsed: float) -> None:
        self.errors.append(error)


def open_stream(client: AsyncRoutmy, kind: str) -> Any:
    if kind == "chat":
        return client.chat.completions.stream(model="p/m", messages=MESSAGES)
    if kind == "responses":
        return client.responses.stream(model="p/m", input="one two three")
    return client.stream_request("POST", "/jobs", body={"stream": True})


async def read_until_raised(stream: Any) -> tuple[int, BaseException]:
    """Read a stream until it raises; return how many items came first, and the error."""
    items = 0
    try:
        async for _ in stream:
            items += 1
    except RoutmyError as error:
        return items, error
    raise AssertionError("the stream stopped without raising")


async def assert_every_later_read_raises(stream: Any, first: BaseException | None) -> None:
    """Three more reads raise "closed before its end", each chained to the first error the
    stream raised (with none before, the first of these is that error)."""
    for _ in range(3):
        with pytest.raises(APIConnectionError, match="closed before its end") as later:
            await stream.__anext__()
        assert later.value.__cause__ is first
        assert KEY not in str(later.value)
        first = first or later.value


@pytest.mark.parametrize("kind", KINDS)
async def test_an_error_frame_ends_the_stream_and_every_later_read_raises(kind):
    """An error frame raises APIStreamError after the items before it; every later read
    raises "closed before its end" chained to it; the hooks hear of one failed end."""
    hooks = Ends()
    async with (
        serving(ERROR_FRAME[kind]) as server,
        AsyncRoutmy(api_key=KEY, base_url=server.base_url, max_retries=0, hooks=[hooks]) as client,
    ):
        async with open_stream(client, kind) as stream:
            items, error = await read_until_raised(stream)
            assert isinstance(error, APIStreamError) and error.message == "boom"
            assert items == {"chat": 2, "responses": 3, "raw": 2}[kind]
            await assert_every_later_read_raises(stream, error)
        assert client.connections_in_use == 0
    assert [end.outcome for end in hooks.ends] == ["error"]
    assert hooks.errors == [error]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_body_cut_before_its_end_raises_and_every_later_read_raises(kind):
    """A body that ends before the answer does raises APIConnectionError saying so; every
    later read raises "closed before its end" chained to it."""
    hooks = Ends()
    async with (
        serving(CUT[kind]) as server,
        AsyncRoutmy(api_key=KEY, base_url=server.base_url, max_retries=0, hooks=[hooks]) as client,
    ):
        async with open_stream(client, kind) as stream:
            _, error = await read_until_raised(stream)
            assert isinstance(error, APIConnectionError)
            assert re.search(CUT_MESSAGE[kind], str(error)), error
            await assert_every_later_read_raises(stream, error)
    assert [end.outcome for end in hooks.ends] == ["broken"]
    assert hooks.errors == [error]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_whole_answer_stops_and_every_later_read_stops(kind):
    """A stream read to its end stops, and stops again on every later read, told to the
    hooks once as done; its connection goes back to the pool and serves the next stream."""
    hooks = Ends()
    async with (
        serving(WHOLE[kind]) as server,
        AsyncRoutmy(api_key=KEY, base_url=server.base_url, max_retries=0, hooks=[hooks]) as client,
    ):
        for _ in range(2):
            async with open_stream(client, kind) as stream:
                assert [item async for item in stream]
                assert stream.completed
                for _ in range(3):
                    with pytest.raises(StopAsyncIteration):
                        await stream.__anext__()
        assert server.connections == 1
    assert [end.outcome for end in hooks.ends] == ["done", "done"]
    assert hooks.errors == []


@pytest.mark.parametrize("kind", KINDS)
async def test_close_before_the_end_makes_every_later_read_raise(kind):
    """``close()`` before the answer's end: every later read raises "closed before its end"
    (the first of them chained to nothing: no error came before); the hooks hear of one
    cancelled end."""
    hooks = Ends()
    async with (
        serving(OPENING[kind], hold=True) as server,
        AsyncRoutmy(api_key=KEY, base_url=server.base_url, max_retries=0, hooks=[hooks]) as client,
    ):
        stream = await open_stream(client, kind).__aenter__()
        await stream.__anext__()
        await stream.close()
        await assert_every_later_read_raises(stream, None)
        assert not stream.completed and client.connections_in_use == 0
    assert [end.outcome for end in hooks.ends] == ["cancelled"]
    assert hooks.errors == []


@pytest.mark.parametrize("kind", ["chat", "responses"])
async def test_the_final_result_after_an_error_is_that_error(kind):
    """After an error ended the stream, asking for the final result raises that error again
    (awaited or, for chat, not): never a shortened answer."""
    async with (
        serving(ERROR_FRAME[kind]) as server,
        AsyncRoutmy(api_key=KEY, base_url=server.base_url, max_retries=0) as client,
    ):
        async with open_stream(client, kind) as stream:
            _, error = await read_until_raised(stream)
            await assert_every_later_read_raises(stream, error)
            with pytest.raises(APIStreamError) as final:
                if kind == "chat":
                    await stream.get_final_completion()
                else:
                    await stream.get_final_response()
            assert final.value is error
            with pytest.raises(APIStreamError) as done:
                await stream.until_done()
            assert done.value is error
            if kind == "chat":
                with pytest.raises(APIStreamError) as unawaited:
                    stream.get_final_completion()
                assert unawaited.value is error
