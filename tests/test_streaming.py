"""Streaming on the wire: any byte split, line endings, errors, release on break and cancel."""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import warnings
from typing import Any

import pytest

from routmy_async import (
    APIConnectionError,
    APIResponseValidationError,
    APIStreamError,
    APITimeoutError,
    AsyncRoutmy,
    Call,
    ChatCompletionStream,
    Hooks,
    RateLimitError,
    StreamSummary,
    Timeout,
)
from routmy_async.testing import assert_no_open_connections
from routmy_async.types import (
    ChatCompletionChunk,
    CompletionDoneEvent,
    ContentDeltaEvent,
    ImageDoneEvent,
    ReasoningDeltaEvent,
    ToolCallArgumentsDeltaEvent,
    ToolCallDoneEvent,
)
from tests.conftest import RawServer, chunk, chunked_head, eventually, read_request

MESSAGES = [{"role": "user", "content": "héllo wörld ☃ 🎉 streaming test"}]
TEXT = MESSAGES[0]["content"]


def frame(obj: dict[str, Any], newline: bytes = b"\n") -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode() + newline + newline


def text_stream(newline: bytes = b"\n") -> bytes:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}
    pieces = [TEXT[i : i + 3] for i in range(0, len(TEXT), 3)]
    out = b": OPENROUTER PROCESSING" + newline + newline
    out += frame({**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]}, newline)
    for piece in pieces:
        out += frame({**base, "choices": [{"index": 0, "delta": {"content": piece}}]}, newline)
    out += frame({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, newline)
    out += frame(
        {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
        },
        newline,
    )
    return out + b"data: [DONE]" + newline + newline


def serve_stream(body: bytes, write_size: int, delay: float = 0.0):
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
                if delay:
                    await asyncio.sleep(delay)
            writer.write(b"0\r\n\r\n")
            await writer.drain()

    return handler


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("write_size", [1, 2, 3, 7, 64, 4096])
async def test_stream_split_at_any_size_and_line_ending(newline, write_size):
    """1-byte, odd and large writes, mid-UTF-8, with LF, CRLF or CR: the same result."""
    async with RawServer(serve_stream(text_stream(newline), write_size)) as server:
        async with AsyncRoutmy(api_key="sk-x", base_url=server.base_url) as client:
            stream = await client.chat.completions.create(
                model="p/m", messages=MESSAGES, stream=True
            )
            async with stream:
                texts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            final = stream.get_final_completion()
            assert_no_open_connections(client)
            # The connection went back to the pool: a second stream reuses it.
            async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as again:
                await again.until_done()
    assert "".join(texts) == TEXT
    assert final.choices[0].message.content == TEXT
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.total_tokens == 3
    assert server.connections == 1


async def test_chunks_are_typed_and_keep_raw(client):
    """Each item is a ChatCompletionChunk with .raw of its frame."""
    async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as stream:
        chunks = [c async for c in stream]
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert chunks[0].raw["object"] == "chat.completion.chunk"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert stream.completed and "done" in repr(stream)


async def test_text_deltas_yield_only_text(client):
    """text_deltas() yields the content pieces and nothing else."""
    async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as stream:
        pieces = [p async for p in stream.text_deltas()]
    assert "".join(pieces) == TEXT and all(pieces)


async def test_events_cover_text_reasoning_tools_images_and_done(client):
    """events() yields typed events, tool calls whole once their choice finishes."""
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_order",
                "parameters": {
                    "type": "object",
                    "properties": {"order_id": {"type": "string"}},
                    "required": ["order_id"],
                },
            },
        }
    ]
    async with client.chat.completions.stream(
        model="mock/echo",
        messages=[{"role": "user", "content": "order 42"}],
        tools=tools,
        reasoning={"effort": "low"},
    ) as stream:
        events = [e async for e in stream.events()]
    kinds = {type(e) for e in events}
    assert {
        ReasoningDeltaEvent,
        ToolCallArgumentsDeltaEvent,
        ToolCallDoneEvent,
        CompletionDoneEvent,
    } <= kinds
    args = "".join(e.arguments_delta for e in events if isinstance(e, ToolCallArgumentsDeltaEvent))
    done = [e for e in events if isinstance(e, ToolCallDoneEvent)]
    assert json.loads(args) == {"order_id": "42"}
    assert len(done) == 1 and done[0].tool_call.function.arguments == args
    assert done[0].tool_call.id == "call_mock_0"
    final = events[-1]
    assert isinstance(final, CompletionDoneEvent)
    assert final.completion.choices[0].finish_reason == "tool_calls"


async def test_image_and_content_events(client):
    """Image output streams as ImageDoneEvent; content as ContentDeltaEvent."""
    async with client.chat.completions.stream(
        model="mock/image",
        messages=[{"role": "user", "content": "cube"}],
        modalities=["image", "text"],
    ) as stream:
        events = [e async for e in stream.events()]
    images = [e for e in events if isinstance(e, ImageDoneEvent)]
    assert len(images) == 1 and images[0].image.data().startswith(b"\x89PNG")
    assert "".join(e.delta for e in events if isinstance(e, ContentDeltaEvent)).endswith("cube")


async def test_error_frame_raises_after_earlier_chunks(client, mock):
    """A mid-stream error frame raises APIStreamError with code and message after the
    chunks before it were delivered."""
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}
    mock.reply_stream(
        [
            {**base, "choices": [{"index": 0, "delta": {"content": "par"}}]},
            {
                **base,
                "error": {"message": "Provider failed", "code": 502, "metadata": {"p": "x"}},
                "choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "error"}],
            },
        ]
    )
    received = []
    with pytest.raises(APIStreamError) as info:
        async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
            async for c in stream:
                received.append(c.choices[0].delta.content)
    assert received == ["par"]
    assert info.value.code == 502 and info.value.message == "Provider failed"
    assert info.value.metadata == {"p": "x"}
    assert_no_open_connections(client)


async def test_error_frame_without_choices_and_string_code(client, mock):
    """An error chunk with no choices and a string code still raises APIStreamError."""
    mock.reply_stream([{"error": {"message": "quota", "code": "rate_limited"}}], done=False)
    with pytest.raises(APIStreamError) as info:
        async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
            await stream.until_done()
    assert info.value.code == "rate_limited"


async def test_event_error_type_frame(client, mock):
    """An `event: error` frame is an error too."""
    mock.reply_stream([b'event: error\ndata: {"message": "boom", "code": 500}\n\n'], done=False)
    with pytest.raises(APIStreamError, match="boom"):
        async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
            await stream.until_done()


async def test_malformed_frame_is_a_validation_error(client, mock):
    """A frame that is not JSON raises APIResponseValidationError with the frame."""
    mock.reply_stream([b"data: {not json\n\n"])
    with pytest.raises(APIResponseValidationError, match="not valid JSON") as info:
        async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
            await stream.until_done()
    assert info.value.body == b"{not json"


async def test_frame_of_unexpected_shape(client, mock):
    """A frame whose fields have the wrong types raises APIResponseValidationError."""
    mock.reply_stream([{"choices": "no"}])
    with pytest.raises(APIResponseValidationError, match="unexpected shape"):
        async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
            await stream.until_done()


async def test_html_200_for_a_stream_request(client, mock):
    """A 200 HTML page instead of an event stream raises, naming the Content-Type."""
    mock.reply_json(b"<html>login</html>", headers={"Content-Type": "text/html"})
    with pytest.raises(APIResponseValidationError, match="text/html"):
        await client.chat.completions.create(model="p/m", messages=MESSAGES, stream=True)
    assert_no_open_connections(client)


async def test_clean_end_without_done_or_finish_raises(client, mock):
    """A stream that ends with neither [DONE] nor a finish_reason is reported as cut off."""
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}
    mock.reply_stream(
        [{**base, "choices": [{"index": 0, "delta": {"content": "half"}}]}], done=False
    )
    with pytest.raises(APIConnectionError, match=r"after 1 chunk\(s\) without \[DONE\]"):
        async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
            await stream.until_done()


async def test_end_with_finish_reason_but_no_done_is_fine(client, mock):
    """Servers that omit [DONE] after every choice finished complete normally."""
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}
    mock.reply_stream(
        [{**base, "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}],
        done=False,
    )
    async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
        final = await stream.until_done()
    assert final.choices[0].message.content == "ok"


async def test_reset_mid_stream_is_a_connection_error(client, mock):
    """A reset after some chunks raises APIConnectionError, never a raw aiohttp error."""
    mock.reply_default(reset_after=200)
    got = []
    with pytest.raises(APIConnectionError, match="stream"):
        async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as stream:
            async for c in stream:
                got.append(c)
    assert_no_open_connections(client)


async def test_stall_mid_stream_hits_idle_timeout(mock):
    """No bytes for longer than stream_idle: APITimeoutError."""
    mock.reply_default(stall_after=150, stall_for=30)
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, timeout=Timeout(stream_idle=0.3)
    ) as client:
        with pytest.raises(APITimeoutError):
            async with client.chat.completions.stream(
                model="mock/echo", messages=MESSAGES
            ) as stream:
                await stream.until_done()


async def test_keep_alive_comments_do_not_count_as_events(mock):
    """Only comments for longer than stream_idle: APITimeoutError naming the comments."""
    mock.reply_stream([], done=False, comments_forever=True, comment_interval=0.05)
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, timeout=Timeout(stream_idle=0.4)
    ) as client:
        with pytest.raises(APITimeoutError, match="keep-alive"):
            async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
                await stream.until_done()


async def test_total_timeout_bounds_endless_comments(mock):
    """Keep-alive comments forever are bounded by the total timeout."""
    mock.reply_stream([], done=False, comments_forever=True, comment_interval=0.05)
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, timeout=Timeout(total=0.5)
    ) as client:
        with pytest.raises(APITimeoutError):
            async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
                await stream.until_done()


async def test_break_closes_the_connection_and_frees_the_pool(mock):
    """Breaking out early closes the response; the server sees the disconnect."""
    mock.reply_default(chunk_delay=0.02)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as stream:
            async for _ in stream:
                break
        assert_no_open_connections(client)
        with pytest.raises(RuntimeError, match="not been read to its end"):
            stream.get_final_completion().choices  # noqa: B018 - using it is what raises
        with pytest.raises(APIConnectionError, match="closed before its end"):
            await stream.get_final_completion()  # awaited: it would read the rest
        assert stream.current_completion().id.startswith("chatcmpl-mock")
        for _ in range(100):
            if mock.disconnects:
                break
            await asyncio.sleep(0.02)
    assert mock.disconnects == 1


async def test_exception_in_consumer_closes_the_stream(mock):
    """An exception inside the loop closes the response on leaving the block."""
    mock.reply_default(chunk_delay=0.02)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        with pytest.raises(ZeroDivisionError):
            async with client.chat.completions.stream(
                model="mock/echo", messages=MESSAGES
            ) as stream:
                async for _ in stream:
                    1 / 0  # noqa: B018
        assert_no_open_connections(client)


async def test_cancelling_the_task_releases_the_connection(mock):
    """Cancelling a task mid-stream frees the pool slot at once."""
    mock.reply_default(chunk_delay=0.05)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        started = asyncio.Event()

        async def consume() -> None:
            async with client.chat.completions.stream(
                model="mock/echo", messages=MESSAGES
            ) as stream:
                async for _ in stream:
                    started.set()

        task = asyncio.create_task(consume())
        await asyncio.wait_for(started.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert_no_open_connections(client)
        for _ in range(100):
            if mock.disconnects:
                break
            await asyncio.sleep(0.02)
    assert mock.disconnects == 1


async def test_cancel_without_context_manager_still_releases(mock):
    """Even without async with, a cancelled read closes the response."""
    mock.reply_default(chunk_delay=0.05)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        stream = await client.chat.completions.create(
            model="mock/echo", messages=MESSAGES, stream=True
        )
        await stream.__anext__()
        task = asyncio.create_task(stream.__anext__())
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert_no_open_connections(client)


async def test_status_error_before_first_event_is_retried(mock):
    """A 429 before the stream starts is retried like a normal request."""
    mock.reply_error(429, "busy", headers={"retry-after-ms": "10"})
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=1) as client:
        async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as stream:
            final = await stream.until_done()
    assert final.choices[0].message.content == TEXT
    assert len(mock.requests) == 2


async def test_status_error_without_retries_raises_typed(client, mock):
    """With retries off, the status error surfaces from create(stream=True)."""
    mock.reply_error(429, "busy")
    with pytest.raises(RateLimitError):
        await client.chat.completions.create(model="mock/echo", messages=MESSAGES, stream=True)


async def test_request_body_has_stream_true(client, mock):
    """stream=True is sent in the body, and Accept asks for an event stream."""
    async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as stream:
        await stream.until_done()
    assert mock.requests[0].json["stream"] is True
    assert mock.requests[0].headers["Accept"] == "text/event-stream"


async def test_dropped_stream_warns_and_closes(mock):
    """A stream dropped unread warns with ResourceWarning and frees its connection."""
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        stream = await client.chat.completions.create(
            model="mock/echo", messages=MESSAGES, stream=True
        )
        assert isinstance(stream, ChatCompletionStream)
        with pytest.warns(ResourceWarning, match="garbage-collected"):
            del stream
            gc.collect()
        assert_no_open_connections(client)


async def test_a_dropped_stream_is_cleaned_up_even_when_its_warning_is_an_error(mock):
    """Under ``-W error`` the ResourceWarning raises inside ``__del__``: by then the
    connection is released and the hooks have heard the stream's end."""
    outcomes: list[str] = []

    class Ends(Hooks):
        def on_stream_end(self, call: Call, summary: StreamSummary) -> None:
            outcomes.append(summary.outcome)

    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, hooks=[Ends()]) as client:
        mock.reply_default(chunk_delay=0.05)
        stream = await client.chat.completions.create(
            model="mock/echo", messages=MESSAGES, stream=True
        )
        await stream.__anext__()
        assert client.connections_in_use == 1
        unraisable: list[Any] = []
        previous = sys.unraisablehook
        sys.unraisablehook = unraisable.append
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", ResourceWarning)
                del stream
                gc.collect()
        finally:
            sys.unraisablehook = previous
        assert [type(u.exc_value) for u in unraisable] == [ResourceWarning]
        assert client.connections_in_use == 0
        assert outcomes == ["cancelled"]


async def test_stream_manager_cannot_be_entered_twice(client):
    """A stream manager is single-use."""
    manager = client.chat.completions.stream(model="mock/echo", messages=MESSAGES)
    async with manager as stream:
        await stream.until_done()
    with pytest.raises(RuntimeError, match="already"):
        await manager.__aenter__()


async def test_n_choices_stream_and_accumulate(client):
    """n=2 streams both choices and the final completion holds both."""
    async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES, n=2) as stream:
        final = await stream.until_done()
    assert [c.message.content for c in final.choices] == [TEXT, TEXT]
    assert final.request_id is not None


async def test_server_talking_after_done_loses_its_connection(client, mock):
    """Bytes after [DONE] do not hold the stream, and a server that never ends its body
    loses the connection shortly after."""
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}
    mock.reply_stream(
        [{**base, "choices": [{"index": 0, "delta": {"content": "x"}, "finish_reason": "stop"}]}],
        comments_forever=True,
        comment_interval=0.05,
    )
    async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
        final = await asyncio.wait_for(stream.until_done(), 0.5)
    assert final.choices[0].message.content == "x"
    assert await eventually(lambda: client.connections_checked_out == 0)


async def test_error_event_with_plain_text_and_refusal_events(client, mock):
    """An `event: error` with non-JSON data keeps the text; refusals stream as events."""
    mock.reply_stream([b"event: error\ndata: upstream exploded\n\n"], done=False)
    with pytest.raises(APIStreamError, match="upstream exploded"):
        async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
            await stream.until_done()
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}
    mock.reply_stream(
        [
            {
                **base,
                "choices": [{"index": 0, "delta": {"refusal": "I can't"}, "finish_reason": "stop"}],
            }
        ]
    )
    from routmy_async.types import RefusalDeltaEvent

    async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
        events = [e async for e in stream.events()]
        assert stream.response.status == 200
    assert any(isinstance(e, RefusalDeltaEvent) and e.delta == "I can't" for e in events)


async def test_final_completion_after_an_early_break_on_the_last_read():
    """Leaving the loop after the first chunk of a stream that arrived in one read still gives
    the whole completion: nothing received is silently left out."""
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}
    pieces = [f"w{i} " for i in range(200)]  # far more events than one decoding batch
    body = b"".join(
        frame({**base, "choices": [{"index": 0, "delta": {"content": piece}}]}) for piece in pieces
    )
    body += frame({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body += b"data: [DONE]\n\n"
    async with RawServer(serve_stream(body, write_size=1 << 20)) as server:
        async with AsyncRoutmy(api_key="sk-x", base_url=server.base_url) as client:
            async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
                async for _ in stream:
                    break
                # One read carried everything, [DONE] included, but the reader has not had
                # it all: not read to its end, yet the final completion needs no await.
                assert not stream.completed
                final = stream.get_final_completion()
    assert final.choices[0].message.content == "".join(pieces)


async def test_openai_stream_habits_work(mock, client):
    """`await stream.get_final_completion()` reads what is left; events carry `.type`."""
    async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.content == TEXT
    assert stream.get_final_completion() is final  # and without await, once read
    assert (await final) is final
    async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as stream:
        types = [event.type async for event in stream.events()]
    assert types[0] == "content.delta" and types[-1] == "completion.done"


def _tool_chunk(
    tool_calls: list[dict[str, Any]] | None, finish: str | None = None
) -> dict[str, Any]:
    delta: dict[str, Any] = {"tool_calls": tool_calls} if tool_calls else {}
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


OPEN_CALL = {"index": 0, "id": "call_a", "type": "function", "function": {"name": "f"}}


async def test_events_started_after_plain_reads_still_name_every_argument_delta(client, mock):
    """Read a chunk with `async for`, then switch to events(): the argument deltas of chunks
    that arrived in the same read are still reported, with their call."""
    mock.reply_stream(
        [
            {**_tool_chunk(None), "choices": [{"index": 0, "delta": {"content": "ok"}}]},
            _tool_chunk([{**OPEN_CALL, "function": {"name": "f", "arguments": ""}}]),
            _tool_chunk([{"index": 0, "function": {"arguments": '{"x":'}}]),
            _tool_chunk([{"index": 0, "function": {"arguments": "1}"}}]),
            _tool_chunk(None, "tool_calls"),
        ]
    )
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    async with stream:
        async for _ in stream:
            break
        deltas = [
            (event.id, event.arguments_delta)
            async for event in stream.events()
            if isinstance(event, ToolCallArgumentsDeltaEvent)
        ]
    assert deltas == [("call_a", '{"x":'), ("call_a", "1}")]


async def test_events_left_early_keeps_nothing_for_the_chunks_read_after(client, mock):
    """events() closed after one event, the stream read on with `async for`: nothing is
    recorded for the later chunks (2,000 of them were kept alive once)."""
    chunks = [_tool_chunk([{**OPEN_CALL, "function": {"name": "f", "arguments": ""}}])]
    chunks += [_tool_chunk([{"index": 0, "function": {"arguments": "x"}}]) for _ in range(2000)]
    mock.reply_stream([*chunks, _tool_chunk(None, "tool_calls")])
    stream = await client.chat.completions.create(model="m", messages=MESSAGES, stream=True)
    async with stream:
        events = stream.events()
        await events.__anext__()
        await events.aclose()
        async for _ in stream:
            pass
        gc.collect()
        alive = sum(isinstance(o, ChatCompletionChunk) for o in gc.get_objects())
    assert alive < 100, alive
