"""A structured answer served to a page in linear bytes: ``to_sse(format="patch")`` frames that
carry only what changed, and ``"partial"``/``"patch"`` frames coalesced when chunks are ready
together. Against a MockRoutmy on 127.0.0.1; the patch core by property tests."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routmy_async._partial_json import PartialJSON
from routmy_async._partial_patch import PatchWriter, apply_patch
from routmy_async.testing import assert_no_open_connections
from routmy_async.testing._mock import sse_frame
from tests.test_partial_json_properties import dump_options, json_values, wrappers
from tests.test_partial_stream import ORDER, Order, chunk, response_stream

ASK = [{"role": "user", "content": "an answer please"}]
DONE = b"data: [DONE]\n\n"
# What a frame costs besides its operations' content: "data: " and the blank line, the
# operation's brackets and name, and its path (a few keys and an index).
FRAME_OVERHEAD = 64


def deltas(text: str, size: int = 16) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def content_stream(text: str, size: int = 16) -> list[dict[str, Any]]:
    return [
        chunk("", role="assistant"),
        *(chunk(p) for p in deltas(text, size)),
        chunk(None, "stop"),
    ]


def data_of(frame: bytes) -> Any:
    assert frame.startswith(b"data: ") and frame.endswith(b"\n\n"), frame[:80]
    return json.loads(frame[6:-2])


def page_of(frames: list[bytes]) -> Any:
    """What a page holds after applying every patch frame before [DONE], as the example's
    JavaScript does (each frame decoded on its own, as JSON.parse does)."""
    assert frames[-1] == DONE, frames[-1][:200]
    page = None
    for frame in frames[:-1]:
        page = apply_patch(page, data_of(frame))
    return page


def big_answer(size: int) -> dict[str, Any]:
    """A JSON answer of about ``size`` bytes: many small records, a long text, numbers."""
    records: list[dict[str, Any]] = []
    while len(json.dumps(records)) < size - size // 4:
        n = len(records)
        records.append({"name": f"item {n} é😀", "price": n * 1.25, "tags": ["a", str(n)]})
    return {"title": "x" * (size // 4), "records": records, "total": len(records), "ok": True}


# -- the core: any value, any split ---------------------------------------------------------


@given(value=json_values, options=dump_options, wrapper=wrappers, data=st.data())
def test_applying_every_patch_gives_each_partial_and_the_final_value(value, options, wrapper, data):
    """At any split, a page applying the patches (sent as JSON) holds the partial value
    after each delta, and the final value at the end."""
    body = json.dumps(value, **options)
    text = wrapper[0] + body + wrapper[1]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=40)))
    parser = PartialJSON()
    writer = PatchWriter()
    page: Any = None
    for start, stop in zip([0, *cuts], [*cuts, len(text)], strict=True):
        parser.feed(text[start:stop])
        ops = writer.changes(parser.value)
        page = apply_patch(page, json.loads(json.dumps(ops)))
        assert page == (parser.value if parser.started else None)
    final = parser.finish()
    page = apply_patch(page, json.loads(json.dumps(writer.closing(final))))
    assert page == json.loads(body)


def test_a_key_written_twice_is_set_right_at_the_end():
    """{"a": .., "b": .., "a": ..}: the last "a" wins (as json.loads has it), which the
    spine walk cannot see mid-stream; the closing patch sends the whole value then."""
    text = '{"a": "first", "b": [1, 2], "a": {"c": "second"}}'
    parser = PartialJSON()
    writer = PatchWriter()
    page: Any = None
    for piece in deltas(text, 3):
        parser.feed(piece)
        page = apply_patch(page, json.loads(json.dumps(writer.changes(parser.value))))
    page = apply_patch(page, json.loads(json.dumps(writer.closing(parser.finish()))))
    assert page == json.loads(text) == {"a": {"c": "second"}, "b": [1, 2]}


@pytest.mark.parametrize("size", [64 * 1024, 256 * 1024])
def test_patch_bytes_grow_with_the_answer_even_one_frame_per_delta(size):
    """The worst case for the page: a frame after every 16-character delta (no two chunks
    ever ready together). The patches stay within 4x the answer plus a frame's overhead
    per frame; a whole-value frame each time would be the answer's square."""
    text = json.dumps(big_answer(size))
    parser = PartialJSON()
    writer = PatchWriter()
    sent = frames = 0
    for piece in deltas(text):
        parser.feed(piece)
        ops = writer.changes(parser.value)
        if ops:
            sent += len(json.dumps(ops, ensure_ascii=False).encode())
            frames += 1
    assert sent <= 4 * len(text.encode()) + FRAME_OVERHEAD * frames, (sent, len(text), frames)


# -- on the wire ----------------------------------------------------------------------------


async def served(client: Any, mock: Any, text: str, format: str, **reply: Any) -> list[bytes]:
    mock.reply_stream(content_stream(text), **reply)
    stream = await client.chat.completions.create(
        model="p/m", messages=ASK, stream=True, response_format={"type": "json_object"}
    )
    return [frame async for frame in stream.to_sse(format=format, keepalive=None)]


@pytest.mark.parametrize("size", [64 * 1024, 256 * 1024])
async def test_a_big_answer_reaches_the_page_whole_in_linear_bytes(client, mock, size):
    """to_sse(format='patch') of a 64 KB and a 256 KB answer in 16-byte deltas: the page
    rebuilds exactly the final parse, from fewer bytes than 4x the answer plus a frame's
    overhead per frame."""
    answer = big_answer(size)
    text = json.dumps(answer)
    frames = await served(client, mock, text, "patch")
    assert page_of(frames) == answer
    sent = sum(len(frame) for frame in frames)
    assert sent <= 4 * len(text.encode()) + FRAME_OVERHEAD * len(frames), (sent, len(text))
    assert_no_open_connections(client)


async def test_patch_frames_show_the_answer_as_it_grows(client, mock):
    """Chunks that arrive apart make their own patch frames, each holding only what its
    chunk added, and the page holds every field before the stream ends."""
    text = json.dumps(ORDER)
    frames = await served(client, mock, text, "patch", chunk_delay=0.01)
    pages: list[Any] = []
    page: Any = None
    for frame in frames[:-1]:
        page = apply_patch(page, data_of(frame))
        pages.append(json.loads(json.dumps(page)))
    assert len(pages) > 5
    assert pages[-1] == ORDER
    assert any(p.get("order_id") == "A-1" and "items" not in p for p in pages)
    assert all(len(frame) < len(text) + FRAME_OVERHEAD for frame in frames[1:])


async def test_chunks_read_together_make_one_partial_frame(client, mock):
    """A whole answer that arrives in one write (the page's reader has fallen behind, or the
    network gathered it): 'partial' sends a few frames with the latest value, not one per
    chunk; the last one is the final parse."""
    text = json.dumps(big_answer(8 * 1024))
    body = b"".join(sse_frame(c) for c in content_stream(text)) + DONE
    for format in ("partial", "patch"):
        mock.reply_stream([body], done=False)
        stream = await client.chat.completions.create(
            model="p/m", messages=ASK, stream=True, response_format={"type": "json_object"}
        )
        frames = [frame async for frame in stream.to_sse(format=format, keepalive=None)]
        chunks = len(deltas(text))
        assert len(frames) - 1 <= chunks // 10, (format, len(frames), chunks)
        final = page_of(frames) if format == "patch" else data_of(frames[-2])
        assert final == json.loads(text)


async def test_a_patch_body_ends_with_an_error_for_an_answer_the_parse_refuses(client, mock):
    """An answer cut short: the page gets what came (as patches), then the error frame,
    never [DONE]."""
    mock.reply_stream(
        [
            chunk("", role="assistant"),
            *(chunk(p) for p in deltas('{"order_id": "A-1", "placed_at": "2026', 4)),
            chunk(None, "length"),
        ]
    )
    stream = await client.chat.completions.create(
        model="p/m", messages=ASK, stream=True, response_format=Order
    )
    frames = [frame async for frame in stream.to_sse(format="patch")]
    assert frames[-1].startswith(b"event: error\n")
    assert DONE not in frames
    page = None
    for frame in frames[:-1]:
        page = apply_patch(page, data_of(frame))
    assert page == {"order_id": "A-1", "placed_at": "2026"}


async def test_responses_streams_serve_patches_too(client, mock):
    """A Responses stream with a JSON text format, to_sse(format='patch'): the page rebuilds the
    answer; a stream without a JSON format refuses 'patch' before reading anything."""
    text = json.dumps(ORDER)
    mock.reply_stream(response_stream(text), named=True, done=False)
    stream = await client.responses.create(
        model="p/m", input="x", stream=True, text={"format": {"type": "json_object"}}
    )
    frames = [frame async for frame in stream.to_sse(format="patch")]
    assert page_of(frames) == ORDER
    mock.reply_stream(response_stream(text), named=True, done=False)
    plain = await client.responses.create(model="p/m", input="x", stream=True)
    with pytest.raises(ValueError, match="format='patch' serves"):
        plain.to_sse(format="patch")
    await plain.close()
    mock.reply_stream(content_stream(text))
    chat = await client.chat.completions.create(model="p/m", messages=ASK, stream=True)
    with pytest.raises(ValueError, match="format='patch' serves"):
        chat.to_streaming_response(format="patch")
    await chat.close()


async def test_a_page_that_fell_behind_gets_one_frame_for_what_waited(raw_server):
    """The page has its first frame; then the server writes 200 chunks, one write each,
    before the page reads again (its connection was slow): what waited is sent as one frame
    or a few with the latest value (coalesced), not 200, and the page ends on the answer."""
    from routmy_async import AsyncRoutmy
    from tests.conftest import chunk as http_chunk
    from tests.conftest import chunked_head, read_request

    answer = {"title": "t" * 1600, "n": 1}
    chunks = content_stream(json.dumps(answer), size=8)
    page_has_first = asyncio.Event()
    all_written = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(chunked_head() + http_chunk(sse_frame(chunks[0]) + sse_frame(chunks[1])))
        await page_has_first.wait()
        for item in chunks[2:]:
            writer.write(http_chunk(sse_frame(item)))
            await writer.drain()
        writer.write(http_chunk(DONE) + b"0\r\n\r\n")
        await writer.drain()
        all_written.set()
        await reader.read()  # until the client closes

    async with raw_server(handler) as server:
        async with AsyncRoutmy(api_key="k", base_url=server.base_url, max_retries=0) as client:
            stream = await client.chat.completions.create(
                model="p/m", messages=ASK, stream=True, response_format={"type": "json_object"}
            )
            frames = stream.to_sse(format="patch", keepalive=None)
            first = [await frames.__anext__()]
            page_has_first.set()
            await asyncio.wait_for(all_written.wait(), 30)
            rest = [frame async for frame in frames]
    assert len(chunks) > 200
    assert len(rest) <= 5, len(rest)  # frames for what waited, then [DONE]
    assert page_of(first + rest) == answer
