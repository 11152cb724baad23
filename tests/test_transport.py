"""Behaviour on the wire, against real loopback servers: keep-alive, retries, timeouts, resets."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from routmy_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncRoutmy,
    BadRequestError,
    InternalServerError,
    RateLimitError,
    Timeout,
)
from routmy_async.testing import MockRoutmy, assert_no_open_connections
from tests.conftest import RawServer, http_response, read_request

MESSAGES = [{"role": "user", "content": "hi"}]


def client_for(mock: MockRoutmy, **kwargs) -> AsyncRoutmy:
    return AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, **kwargs)


async def test_keep_alive_reuses_one_connection(mock):
    """Sequential requests travel over a single pooled connection."""
    async with client_for(mock) as client:
        for _ in range(5):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        assert_no_open_connections(client)
    assert mock.connections_seen == 1


async def test_retries_on_429_with_retry_after_then_succeeds(mock):
    """Two 429s with Retry-After are retried; the waits honour the header."""
    mock.reply_error(429, "slow down", headers={"Retry-After": "0.2"}, times=2)
    async with client_for(mock, max_retries=2) as client:
        started = time.monotonic()
        completion = await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        elapsed = time.monotonic() - started
    assert completion.choices[0].message.content == "hi"
    assert len(mock.requests) == 3
    gaps = [b - a for a, b in zip(mock.request_times, mock.request_times[1:], strict=False)]
    assert all(gap >= 0.19 for gap in gaps)
    assert elapsed < 5


async def test_retry_after_ms_is_preferred(mock):
    """retry-after-ms (milliseconds) is used over Retry-After."""
    mock.reply_error(503, "busy", headers={"retry-after-ms": "50", "Retry-After": "30"})
    async with client_for(mock, max_retries=1) as client:
        started = time.monotonic()
        await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert time.monotonic() - started < 5
    assert len(mock.requests) == 2


async def test_retries_spent_raise_the_last_error(mock):
    """After max_retries the status error is raised, with the server's fields."""
    mock.reply_error(
        502,
        "no provider",
        type="upstream_error",
        code=502,
        headers={"retry-after-ms": "1"},
        times=3,
    )
    async with client_for(mock, max_retries=2) as client:
        with pytest.raises(InternalServerError) as info:
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert info.value.code == 502 and info.value.type == "upstream_error"
    assert len(mock.requests) == 3


async def test_per_call_max_retries_overrides_client(mock):
    """max_retries=0 on a call disables retries for that call only."""
    mock.reply_error(429, "x", headers={"retry-after-ms": "1"})
    async with client_for(mock, max_retries=5) as client:
        with pytest.raises(RateLimitError):
            await client.chat.completions.create(
                model="mock/echo", messages=MESSAGES, max_retries=0
            )
    assert len(mock.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 422])
async def test_client_errors_are_never_retried(mock, status):
    """4xx statuses other than 408/409/429 fail at once."""
    mock.reply_error(status, "no")
    async with client_for(mock, max_retries=3) as client:
        with pytest.raises(Exception) as info:
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert getattr(info.value, "status_code", None) == status
    assert len(mock.requests) == 1


async def test_x_should_retry_false_stops_retries(mock):
    """The server's x-should-retry: false is obeyed on a 503."""
    mock.reply_error(503, "down", headers={"x-should-retry": "false"})
    async with client_for(mock, max_retries=3) as client:
        with pytest.raises(InternalServerError):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert len(mock.requests) == 1


async def test_retry_after_longer_than_cap_is_not_slept(mock):
    """A Retry-After of an hour is answered with the error, not an hour of sleep."""
    mock.reply_error(429, "quota", headers={"Retry-After": "3600"})
    async with client_for(mock, max_retries=3) as client:
        started = time.monotonic()
        with pytest.raises(RateLimitError):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert time.monotonic() - started < 5


async def test_html_error_page_maps_by_status(mock):
    """An HTML 500 page still raises InternalServerError with its text."""
    mock.reply_error(
        500,
        body=b"<html><h1>Internal Server Error</h1></html>",
        headers={"Content-Type": "text/html"},
    )
    async with client_for(mock, max_retries=0) as client:
        with pytest.raises(InternalServerError, match="Internal Server Error"):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)


async def test_stall_before_headers_hits_read_timeout(mock):
    """A server that never answers is cut off by the read timeout: APITimeoutError."""
    mock.reply_default(stall_before_headers=30)
    async with client_for(mock, max_retries=0, timeout=Timeout(connect=5, read=0.3)) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match="timed out"):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert time.monotonic() - started < 5


async def test_stall_mid_body_hits_read_timeout(mock):
    """A body that stops halfway is cut off by the read timeout."""
    mock.reply_default(stall_after=20, stall_for=30)
    async with client_for(mock, max_retries=0, timeout=Timeout(read=0.3)) as client:
        with pytest.raises(APITimeoutError):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)


async def test_total_timeout_per_call(mock):
    """timeout= on the call bounds the whole request."""
    mock.reply_default(stall_before_headers=30)
    async with client_for(mock, max_retries=0) as client:
        with pytest.raises(APITimeoutError):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES, timeout=0.3)


async def test_timeout_is_retried_then_succeeds(mock):
    """A timed-out attempt is retried like a connection error."""
    mock.reply_default(stall_before_headers=30)
    async with client_for(mock, max_retries=1, timeout=Timeout(read=0.3)) as client:
        completion = await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert completion.choices[0].message.content == "hi"


async def test_reset_mid_body_raises_connection_error(mock):
    """A connection reset halfway through the body raises APIConnectionError."""
    mock.reply_default(reset_after=30)
    async with client_for(mock, max_retries=0) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        assert_no_open_connections(client)
    assert not isinstance(info.value, APITimeoutError)


async def test_reset_mid_body_is_retried(mock):
    """A reset is retried, and the retry's answer is returned whole."""
    mock.reply_default(reset_after=30)
    async with client_for(mock, max_retries=1) as client:
        completion = await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert completion.choices[0].message.content == "hi"
    assert len(mock.requests) == 2


async def test_connection_refused_is_typed():
    """Nothing listening: APIConnectionError saying it could not connect."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    async with AsyncRoutmy(
        api_key="sk-x", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0
    ) as client:
        with pytest.raises(APIConnectionError, match="could not connect"):
            await client.models.list()


async def test_dns_failure_is_typed():
    """An unresolvable host: APIConnectionError, never a raw aiohttp error."""
    async with AsyncRoutmy(
        api_key="sk-x", base_url="http://no-such-host.invalid/v1", max_retries=0
    ) as client:
        with pytest.raises(APIConnectionError, match=r"resolve|connect"):
            await client.models.list()


async def test_redirects_are_not_followed():
    """A 307 to another host is not followed, so the key never travels there."""
    hits = []

    async def redirect(reader, writer):
        head, _ = await read_request(reader)
        hits.append(head)
        writer.write(
            http_response(
                b"", status="307 Temporary Redirect", extra="Location: http://127.0.0.2:1/steal\r\n"
            )
        )
        await writer.drain()

    async with RawServer(redirect) as server:
        async with AsyncRoutmy(
            api_key="sk-secret", base_url=server.base_url, max_retries=0
        ) as client:
            with pytest.raises(Exception) as info:
                await client.models.list()
    assert getattr(info.value, "status_code", None) == 307
    assert len(hits) == 1


async def test_cancelled_request_releases_the_connection(mock):
    """Cancelling a request mid-flight leaves no acquired connection behind."""
    mock.reply_default(stall_before_headers=30)
    async with client_for(mock) as client:
        task = asyncio.create_task(
            client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        )
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert_no_open_connections(client)
        completion = await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert completion.choices[0].message.content == "hi"


async def test_bad_request_from_server_body_check(client):
    """The mock validates bodies like the service (400 on a body without model)."""
    with pytest.raises(BadRequestError, match="model"):
        await client.chat.completions.create(
            model="p/m", messages=MESSAGES, extra_body={"model": None}
        )
