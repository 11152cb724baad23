"""The fault suite: every failure on the wire is typed, nothing is shortened or leaked.

Each behaviour runs against real loopback servers. Figures (faults tried, byte offsets,
soak size, memory) are reported at the end of the pytest run.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
import struct
import tracemalloc
import warnings
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from routmy_async import (
    APIConnectionError,
    APIResponseValidationError,
    AsyncRoutmy,
    InternalServerError,
    RateLimitError,
    RoutmyError,
)
from routmy_async.testing import MockRoutmy, assert_no_open_connections
from tests.conftest import (
    FAULT_FIGURES,
    RawServer,
    chunk,
    chunked_head,
    http_response,
    read_request,
)

MESSAGES = [{"role": "user", "content": "fault"}]
KEY = "sk-fault-suite-SECRET-0123456789"

COMPLETION = json.dumps(
    {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "p/m",
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "The whole answer, ünïcode ☃."},
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 7, "total_tokens": 10},
    }
).encode()
FULL_RESPONSE = http_response(COMPLETION, extra="x-request-id: r1\r\n")


def stream_body() -> bytes:
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}
    frames = [
        {**base, "choices": [{"index": 0, "delta": {"content": piece}}]}
        for piece in ["The ", "whole ", "stream ☃."]
    ]
    frames.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = b"".join(b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames)
    return chunked_head() + chunk(body + b"data: [DONE]\n\n") + b"0\r\n\r\n"


FULL_STREAM = stream_body()


def cut_server(payload: bytes, offsets: list[int], reset: bool) -> RawServer:
    """Answer request i with the first offsets[i] bytes of payload, then reset or close."""
    served = iter(offsets)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        offset = next(served)
        writer.write(payload[:offset])
        await writer.drain()
        if offset >= len(payload):
            return
        sock = writer.get_extra_info("socket")
        if reset and sock is not None:
            # SO_LINGER 0 turns the close into a TCP RST.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort() if reset else writer.close()

    return RawServer(handler)


def offsets_for(payload: bytes) -> list[int]:
    # Every offset through the headers and the start of the body, then every 3rd byte.
    head = payload.index(b"\r\n\r\n") + 4
    dense = list(range(head + 40))
    return dense + list(range(head + 40, len(payload) + 1, 3)) + [len(payload)]


async def complete_response(client: AsyncRoutmy) -> str | None:
    completion = await client.chat.completions.create(model="p/m", messages=MESSAGES)
    return completion.choices[0].message.content


async def complete_stream(client: AsyncRoutmy) -> str | None:
    async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
        final = await stream.until_done()
    assert final.choices[0].finish_reason == "stop"
    return final.choices[0].message.content


@pytest.mark.parametrize("reset", [True, False], ids=["rst", "fin"])
@pytest.mark.parametrize(
    ("kind", "payload", "call", "expected"),
    [
        ("response", FULL_RESPONSE, complete_response, "The whole answer, ünïcode ☃."),
        ("stream", FULL_STREAM, complete_stream, "The whole stream ☃."),
    ],
    ids=["response", "stream"],
)
async def test_cut_at_every_offset(kind, payload, call, expected, reset):
    """An answer cut at any byte gives a typed error or the complete answer, never less."""
    offsets = offsets_for(payload)
    outcomes = {"error": 0, "complete": 0}
    async with cut_server(payload, offsets, reset) as server:
        async with AsyncRoutmy(api_key=KEY, base_url=server.base_url, max_retries=0) as client:
            for _ in offsets:
                try:
                    content = await call(client)
                except RoutmyError as error:
                    assert isinstance(error, (APIConnectionError, APIResponseValidationError))
                    assert KEY not in str(error)
                    outcomes["error"] += 1
                else:
                    assert content == expected
                    outcomes["complete"] += 1
            assert_no_open_connections(client)
    # Only cuts after the last byte the answer needs may complete.
    assert outcomes["complete"] >= 1 and outcomes["error"] >= len(offsets) - 4
    FAULT_FIGURES[f"{kind} cut offsets ({'RST' if reset else 'FIN'})"] = (
        f"{len(offsets)} of {len(payload)} bytes: {outcomes}"
    )


@pytest.mark.parametrize(
    ("payload", "stream", "error"),
    [
        (http_response(b""), False, APIResponseValidationError),
        (
            http_response(b"<html>hi</html>", content_type="text/html"),
            False,
            APIResponseValidationError,
        ),
        (http_response(b'{"choices": 7}'), False, APIResponseValidationError),
        (http_response(b"[]"), False, APIResponseValidationError),
        (http_response(b"", content_type="text/event-stream"), True, APIConnectionError),
        (
            http_response(b"<html>login</html>", content_type="text/html"),
            True,
            APIResponseValidationError,
        ),
        (
            http_response(b"data: {}\n\n", content_type="text/plain"),
            True,
            APIResponseValidationError,
        ),
        (
            http_response(b"data: [1,2]\n\n", content_type="text/event-stream"),
            True,
            APIResponseValidationError,
        ),
        (
            http_response(b"data: {\n\n", content_type="text/event-stream"),
            True,
            APIResponseValidationError,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", False, APIConnectionError),
        (b"NOT HTTP AT ALL\r\n\r\n", False, APIConnectionError),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", False, APIConnectionError),
    ],
    ids=[
        "empty",
        "html",
        "shape",
        "array",
        "stream-empty",
        "stream-html",
        "stream-wrong-type",
        "stream-frame-shape",
        "stream-bad-json",
        "short-body",
        "garbage",
        "bad-chunking",
    ],
)
async def test_bad_bodies_are_typed(payload, stream, error):
    """Malformed answers raise a typed RoutmyError subclass, never a raw one."""

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(payload)
        await writer.drain()

    async with RawServer(handler) as server:
        async with AsyncRoutmy(api_key=KEY, base_url=server.base_url, max_retries=0) as client:
            with pytest.raises(error):
                if stream:
                    async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as s:
                        await s.until_done()
                else:
                    await client.chat.completions.create(model="p/m", messages=MESSAGES)
            assert_no_open_connections(client)
    FAULT_FIGURES["malformed answers"] = FAULT_FIGURES.get("malformed answers", 0) + 1


async def test_wrong_content_type_with_valid_json_still_decodes(mock):
    """A 200 with valid JSON under a wrong Content-Type decodes completely (nothing lost)."""
    mock.reply_json(COMPLETION, headers={"Content-Type": "text/plain"})
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        completion = await client.chat.completions.create(model="p/m", messages=MESSAGES)
    assert completion.usage is not None and completion.usage.total_tokens == 10


@pytest.mark.parametrize("retry_after", [None, "0.05"])
async def test_storm_of_503s_is_bounded_and_spread(retry_after):
    """40 clients hit a server that always answers 503: every call ends within the retry
    budget, and jitter spreads the retries instead of returning in lock-step."""
    times: list[float] = []
    extra = f"Retry-After: {retry_after}\r\n" if retry_after else ""
    loop = asyncio.get_running_loop()

    async def always_busy(reader, writer):
        while True:
            try:
                await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            times.append(loop.time())
            writer.write(
                http_response(
                    b'{"error": {"message": "busy"}}', status="503 Service Unavailable", extra=extra
                )
            )
            await writer.drain()

    async with RawServer(always_busy) as server:
        async with AsyncRoutmy(api_key=KEY, base_url=server.base_url, max_retries=2) as client:
            started = loop.time()
            results = await asyncio.gather(
                *(
                    client.chat.completions.create(model="p/m", messages=MESSAGES)
                    for _ in range(40)
                ),
                return_exceptions=True,
            )
            elapsed = loop.time() - started
    assert all(isinstance(r, InternalServerError) for r in results)
    assert len(times) == 120
    assert elapsed < 5.0  # 2 retries: at most 0.5 s + 1.0 s of backoff, or 2 x Retry-After + jitter
    second_wave = sorted(times)[40:80]
    spread = second_wave[-1] - second_wave[0]
    assert spread > (0.002 if retry_after else 0.1)
    FAULT_FIGURES[f"503 storm (Retry-After {retry_after})"] = (
        f"40 clients x 3 attempts in {elapsed:.2f} s, second wave spread {spread * 1000:.0f} ms"
    )


async def test_429_storm_with_long_retry_after_fails_fast(mock):
    """A Retry-After beyond the cap is not slept: the error comes back at once."""
    mock.reply_error(429, "quota", headers={"Retry-After": "86400"}, times=10)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=5) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        results = await asyncio.gather(
            *(client.chat.completions.create(model="p/m", messages=MESSAGES) for _ in range(10)),
            return_exceptions=True,
        )
        assert loop.time() - started < 2
    assert all(isinstance(r, RateLimitError) for r in results)


async def test_soak_mixed_traffic_leaks_nothing():
    """Thousands of mixed requests and streams (complete, broken off, cancelled, failed) at
    high concurrency leave no acquired connection, no growth in memory, no stray task."""
    problems: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    counts = {"complete": 0, "stream": 0, "broken": 0, "cancelled": 0, "failed": 0}

    async with MockRoutmy(stream_piece=4) as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_connections=64, max_retries=0
        ) as client:

            async def one(number: int) -> None:
                kind = number % 5
                messages = [{"role": "user", "content": f"soak message number {number} " * 3}]
                if kind == 0:
                    await client.chat.completions.create(model="mock/echo", messages=messages)
                    counts["complete"] += 1
                elif kind == 1:
                    async with client.chat.completions.stream(
                        model="mock/echo", messages=messages
                    ) as s:
                        await s.until_done()
                    counts["stream"] += 1
                elif kind == 2:
                    async with client.chat.completions.stream(
                        model="mock/echo", messages=messages
                    ) as s:
                        async for _ in s:
                            break
                    counts["broken"] += 1
                elif kind == 3:
                    task = asyncio.ensure_future(
                        client.chat.completions.create(
                            model="mock/echo", messages=messages, stream=True
                        )
                    )
                    await asyncio.sleep(0)
                    task.cancel()
                    try:
                        stream = await task
                    except asyncio.CancelledError:
                        pass
                    else:
                        await stream.close()
                    counts["cancelled"] += 1
                else:
                    try:
                        await client.chat.completions.create(model="mock/locked", messages=messages)
                    except RoutmyError:
                        counts["failed"] += 1

            async def wave(size: int) -> None:
                # 128 long-lived workers, so the driver itself allocates no task per operation.
                numbers = iter(range(size))

                async def worker() -> None:
                    for number in numbers:
                        await one(number)

                await asyncio.gather(*(worker() for _ in range(128)))

            # Trace from the start, so pooled objects replaced later are counted as freed.
            tracemalloc.start()
            await wave(1000)  # warm-up: pools, caches, interned strings
            # The mock's request log is test state, not the SDK's: clear it on both sides.
            mock.requests.clear()
            mock.request_times.clear()
            gc.collect()
            before_size = tracemalloc.get_traced_memory()[0]
            await wave(2500)
            mock.requests.clear()
            mock.request_times.clear()
            gc.collect()
            after_size = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            for _ in range(50):
                if client.connections_checked_out == 0:
                    break
                await asyncio.sleep(0.02)
            assert_no_open_connections(client)
    gc.collect()
    growth = after_size - before_size
    assert problems == []
    assert growth < 512 * 1024, growth
    assert sum(counts.values()) == 3500
    FAULT_FIGURES["soak"] = (
        f"3500 operations (1000 warm-up + 2500 measured) at up to 128 in flight {counts}; "
        f"memory allocated during the measured run and still alive: {growth / 1024:.0f} KiB "
        f"({before_size / 1024:.0f} KiB traced before, {after_size / 1024:.0f} KiB after)"
    )


def test_unclosed_client_after_loop_closed_never_touches_the_loop():
    """A client left open when its loop ends warns once and schedules nothing on the dead loop."""
    holder: list[AsyncRoutmy] = []
    unraisable: list[Any] = []

    async def use() -> None:
        async with MockRoutmy() as mock:
            client = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url)
            await client.models.list()
            holder.append(client)

    import sys

    asyncio.run(use())
    previous = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            holder.clear()
            gc.collect()
    finally:
        sys.unraisablehook = previous
    ours = [w for w in caught if "unclosed AsyncRoutmy" in str(w.message)]
    assert len(ours) == 1 and ours[0].category is ResourceWarning
    assert not [u for u in unraisable if "Event loop is closed" in repr(u.exc_value)]


def chain(error: BaseException) -> list[BaseException]:
    seen = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


async def test_key_never_leaks_through_any_error_path(caplog):
    """Across every error path, the key is absent from str, repr, causes and debug logs."""

    async def echo_key(reader, writer):
        head, _ = await read_request(reader)
        writer.write(
            http_response(
                b'{"error": {"message": "bad header ' + head.replace(b"\r\n", b" ") + b'"}}',
                status="400 Bad Request",
            )
        )
        await writer.drain()

    failures: list[BaseException] = []
    with caplog.at_level(logging.DEBUG, logger="routmy_async"):
        async with RawServer(echo_key) as server:
            async with AsyncRoutmy(api_key=KEY, base_url=server.base_url, max_retries=1) as client:
                try:
                    await client.chat.completions.create(model="p/m", messages=MESSAGES)
                except RoutmyError as error:
                    failures.append(error)
        async with MockRoutmy() as mock:
            async with AsyncRoutmy(api_key=KEY, base_url=mock.base_url, max_retries=1) as client:
                arms: list[Callable[[], Any]] = [
                    lambda: mock.reply_error(401, "nope", times=2),
                    lambda: mock.reply_error(
                        503, f"key {KEY}", headers={"retry-after-ms": "1"}, times=2
                    ),
                    lambda: mock.reply_default(reset_after=40),
                    lambda: mock.reply_default(reset_after=40),
                    lambda: mock.reply_json(b"not json"),
                    lambda: mock.reply_stream([{"error": {"message": f"x {KEY}", "code": 1}}]),
                ]
                for arm in arms:
                    arm()
                    try:
                        async with client.chat.completions.stream(
                            model="p/m", messages=MESSAGES
                        ) as s:
                            await s.until_done()
                    except RoutmyError as error:
                        failures.append(error)
        async with AsyncRoutmy(
            api_key=KEY, base_url="http://127.0.0.1:9/v1", max_retries=0
        ) as client:
            try:
                await client.models.list()
            except RoutmyError as error:
                failures.append(error)
        async with AsyncRoutmy(
            api_key=KEY, base_url="http://x.invalid/v1", max_retries=0
        ) as client:
            try:
                await client.models.list()
            except RoutmyError as error:
                failures.append(error)
    assert len(failures) == 9
    for failure in failures:
        for link in chain(failure):
            assert KEY not in str(link) and KEY not in repr(link), (type(link), repr(link))
            assert KEY not in repr(getattr(link, "body", "")) and KEY not in repr(link.args)
    assert "[REDACTED]" in str(failures[0])
    assert all(KEY not in record.getMessage() for record in caplog.records)
    assert any(record.levelno == logging.DEBUG for record in caplog.records)
    FAULT_FIGURES["key-leak error paths checked"] = len(failures)


async def test_model_names_and_metadata_cannot_inject_json(mock):
    """Quotes and braces in user data stay data: the body decodes to exactly what was given."""
    evil = 'p/m", "temperature": 99, "x": "'
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        await client.chat.completions.create(
            model=evil,
            messages=[{"role": "user", "content": '"}]}'}],
            metadata={'k"}': 'v\n"'},
        )
    body = msgspec.json.decode(mock.requests[0].body)
    assert body == {
        "model": evil,
        "messages": [{"role": "user", "content": '"}]}'}],
        "metadata": {'k"}': 'v\n"'},
    }
