"""Under load, as FastAPI apps and worker pools use the client, against real loopback servers:
the pool and its bounded wait, one rate budget for the whole client, the shared 429 pause,
batches that never hang and yield results as they end."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from routmy_async import APITimeoutError, AsyncRoutmy, RateLimit, Timeout
from routmy_async.testing import MockRoutmy
from routmy_async.types import ChatCompletion

MESSAGES = [{"role": "user", "content": "hi"}]


def requests(count: int) -> list[dict[str, Any]]:
    return [
        {"model": "mock/echo", "messages": [{"role": "user", "content": f"q {i}"}]}
        for i in range(count)
    ]


def gaps(times: list[float]) -> list[float]:
    ordered = sorted(times)
    return [b - a for a, b in itertools.pairwise(ordered)]


# -- the pool -------------------------------------------------------------------------------


async def test_the_default_pool_serves_a_thousand_open_streams_at_once():
    """1,000 streams open together: none waits for another's whole answer."""
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            assert client.max_connections >= 1000
            for _ in range(1000):
                mock.reply_default(chunk_delay=0.05)  # bodies stay open: connections held
            opened = anyio.Event()
            count = 0
            peak = 0

            async def one() -> None:
                nonlocal count, peak
                async with client.chat.completions.stream(
                    model="mock/echo", messages=MESSAGES
                ) as stream:
                    await stream.__anext__()
                    count += 1
                    peak = max(peak, client._transport.connections_in_use)
                    if count == 1000:
                        opened.set()
                    await opened.wait()  # every stream is open before any finishes
                    await stream.until_done()

            with anyio.fail_after(60):
                async with anyio.create_task_group() as group:
                    for _ in range(1000):
                        group.start_soon(one)
            assert peak == 1000  # a connection each, all at once
            assert client.connections_in_use == 0
        assert mock.connections_seen == 1000


async def test_a_full_pool_wait_is_bounded_and_says_why():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key,
            base_url=mock.base_url,
            max_connections=2,
            timeout=Timeout(pool=0.2),
            max_retries=0,
        ) as client:
            mock.reply_default(chunk_delay=0.2)
            mock.reply_default(chunk_delay=0.2)
            first = await client.chat.completions.create(
                model="mock/echo", messages=MESSAGES, stream=True
            )
            second = await client.chat.completions.create(
                model="mock/echo", messages=MESSAGES, stream=True
            )
            started = time.monotonic()
            with pytest.raises(APITimeoutError, match=r"pool was full \(2 of 2 connections"):
                await client.models.list()
            assert time.monotonic() - started < 5
            # Reading a stream to its end, or closing it, gives its connection back.
            await first.until_done()
            await client.models.list()
            await second.close()
            await client.models.list()
            assert client.connections_in_use == 0


async def test_without_a_pool_timeout_a_request_waits_for_a_free_connection():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_connections=1
        ) as client:
            mock.reply_default(chunk_delay=0.05)
            stream = await client.chat.completions.create(
                model="mock/echo", messages=MESSAGES, stream=True
            )

            async def finish_later() -> None:
                await asyncio.sleep(0.2)
                await stream.until_done()

            async with anyio.create_task_group() as group:
                group.start_soon(finish_later)
                models = await client.models.list()
            assert models.data
            assert client.connections_in_use == 0


# -- one rate budget for the whole client ---------------------------------------------------


async def test_one_rate_budget_paces_derived_clients_and_independent_tasks():
    """Two with_options clients and six independent tasks share 600 requests/minute."""
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key,
            base_url=mock.base_url,
            rate_limit=RateLimit(requests_per_minute=600),
        ) as client:
            fast = client.with_options(timeout=5)
            other = client.with_options(max_retries=0)
            assert fast.rate_limit is client.rate_limit is other.rate_limit

            async def handler(c: AsyncRoutmy) -> None:
                await c.chat.completions.create(model="mock/echo", messages=MESSAGES)

            async with anyio.create_task_group() as group:
                for c in (client, fast, other, client, fast, other):
                    group.start_soon(handler, c)
        assert len(mock.request_times) == 6
        assert all(gap >= 0.095 for gap in gaps(mock.request_times)), gaps(mock.request_times)


async def test_a_429_pauses_every_new_start_of_the_client():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_retries=1
        ) as client:
            mock.reply_error(429, "slow down", headers={"retry-after": "0.4"})
            first = asyncio.ensure_future(
                client.chat.completions.create(model="mock/echo", messages=MESSAGES)
            )
            await asyncio.sleep(0.1)  # the 429 has been answered
            assert len(mock.requests) == 1
            # An independent request, started after the 429, waits for the pause too.
            await client.models.list()
            await first
        times = mock.request_times
        assert len(times) == 3
        assert times[1] - times[0] >= 0.39 and times[2] - times[0] >= 0.39


async def test_retries_go_through_the_budget():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key,
            base_url=mock.base_url,
            max_retries=1,
            rate_limit=RateLimit(requests_per_minute=300),
        ) as client:
            mock.reply_error(503, "busy", headers={"retry-after-ms": "1"})
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        assert gaps(mock.request_times)[0] >= 0.19  # the retry waited for its turn


async def test_the_token_budget_is_shared_and_corrected_by_usage():
    """A tokens-per-minute budget: a request's estimate is reserved, then corrected."""
    now = [0.0]
    limit = RateLimit(tokens_per_minute=600, clock=lambda: now[0])
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, rate_limit=limit
        ) as client:
            await client.chat.completions.create(
                model="mock/echo", messages=MESSAGES, max_tokens=400
            )
            # The estimate (about 401) was given back down to the real usage.
            assert limit.reserve(500) == 0.0


async def test_create_many_runs_inside_the_client_budget():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key,
            base_url=mock.base_url,
            rate_limit=RateLimit(requests_per_minute=600),
        ) as client:
            results = await client.chat.completions.create_many(requests(4), concurrency=4)
        assert all(isinstance(r, ChatCompletion) for r in results)
        assert all(gap >= 0.095 for gap in gaps(mock.request_times))


def test_rate_limit_values_are_checked():
    for bad in (0, -1, float("nan"), float("inf"), "60", True):
        with pytest.raises(ValueError, match="requests_per_minute"):
            RateLimit(requests_per_minute=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RateLimit"):
        AsyncRoutmy(api_key="k", rate_limit={"requests_per_minute": 60})  # type: ignore[arg-type]


# -- create_many never hangs and never holds results back -----------------------------------


async def test_a_bad_item_option_met_on_the_retry_path_never_hangs_the_batch():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            mock.reply_error(503, "busy", headers={"retry-after-ms": "1"})
            items = requests(3)
            items[1] = {**items[1], "max_retries": "2"}
            with anyio.fail_after(10):
                results = await client.chat.completions.create_many(items, concurrency=2)
            assert isinstance(results[1], ValueError) and "max_retries" in str(results[1])
            assert isinstance(results[0], ChatCompletion) and isinstance(results[2], ChatCompletion)
            with anyio.fail_after(10), pytest.raises(ValueError, match="max_retries"):
                await client.chat.completions.create_many(items, return_exceptions=False)


async def test_results_are_yielded_while_the_batch_waits_for_its_rate_slot():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            started = time.monotonic()
            first_at = None
            async for _, result in client.chat.completions.create_many_iter(
                requests(4), concurrency=4, requests_per_minute=240
            ):
                assert isinstance(result, ChatCompletion)
                if first_at is None:
                    first_at = time.monotonic() - started
        assert first_at is not None and first_at < 0.3  # not after the last slot (0.75 s)


async def test_results_are_yielded_while_the_input_is_slow():
    async def slow_source() -> AsyncIterator[dict[str, Any]]:
        yield requests(1)[0]
        await asyncio.sleep(1.0)
        yield requests(1)[0]

    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            started = time.monotonic()
            iterator = client.chat.completions.create_many_iter(slow_source(), concurrency=2)
            index, result = await iterator.__anext__()
            assert index == 0 and isinstance(result, ChatCompletion)
            assert time.monotonic() - started < 0.5
            await iterator.aclose()
            assert client.connections_in_use == 0


async def test_the_first_failure_stops_new_starts_when_not_returning_exceptions():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_retries=0
        ) as client:
            items = requests(20)
            items[0] = {**items[0], "model": "mock/locked"}
            with pytest.raises(Exception, match="not available"):
                await client.chat.completions.create_many(
                    items, concurrency=1, return_exceptions=False
                )
        assert len(mock.requests) == 1
