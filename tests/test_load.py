"""Under load, as FastAPI apps and worker pools use the client, against real loopback servers:
the pool and its bounded wait, one rate budget for the whole client, the shared 429 pause,
batches that never hang and yield results as they end."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from routmy_async import APIConnectionError, APITimeoutError, AsyncRoutmy, RateLimit, Timeout
from routmy_async.testing import MockRoutmy
from routmy_async.types import ChatCompletion

MESSAGES = [{"role": "user", "content": "hi"}]


def requests(count: int) -> list[dict[str, Any]]:
    return [
        {"model": "mock/echo", "messages": [{"role": "user", "content": f"q {i}"}]}
        for i in range(count)
    ]


def assert_spaced(times: list[float], interval: float) -> None:
    """Starts spaced by the budget, as the server saw them: the whole span is the rate's
    guarantee; each gap allows for arrival jitter on a loaded machine."""
    spread = gaps(times)
    assert all(gap >= interval * 0.3 for gap in spread), spread
    # The first request also opens a connection, so it may arrive a little late.
    assert max(times) - min(times) >= interval * len(spread) - 0.05, spread


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
                    peak = max(peak, client.connections_in_use)
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
        # Every stream had its first event before any ended: 1,000 open HTTP/1.1 answers.
        assert len(mock.requests) == 1000 and opened.is_set()


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
        assert_spaced(mock.request_times, 0.1)


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
        assert gaps(mock.request_times)[0] >= 0.18  # the retry waited for its turn (0.2 s)


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
        assert_spaced(mock.request_times, 0.1)


def test_rate_limit_values_are_checked():
    for bad in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="requests_per_minute"):
            RateLimit(requests_per_minute=bad)
    for wrong in ("60", True):
        with pytest.raises(TypeError, match="tokens_per_minute"):
            RateLimit(tokens_per_minute=wrong)  # type: ignore[arg-type]
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


# -- what a cold review found: closing under load, cancelled waiters, odd inputs -------------


async def test_closing_the_client_fails_every_request_in_flight_at_once():
    """A FastAPI shutdown closes the client while calls are mid-answer or queued."""
    from routmy_async import APIConnectionError

    async with MockRoutmy() as mock:
        client = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_connections=2)
        mock.reply_default(path="/models", stall_after=20, stall_for=30)  # headers, silence
        mock.reply_default(path="/chat/completions", chunk_delay=5)  # stalls after one event
        stream = await client.chat.completions.create(
            model="mock/echo", messages=MESSAGES, stream=True
        )
        await stream.__anext__()
        body = asyncio.ensure_future(client.models.list())
        queued = asyncio.ensure_future(client.models.list())  # waits for a connection
        await asyncio.sleep(0.2)
        await client.close()
        with anyio.fail_after(5):
            for pending in (body, queued):
                with pytest.raises(APIConnectionError, match="client was closed"):
                    await pending
            with pytest.raises(APIConnectionError, match="client was closed"):
                async for _ in stream:
                    pass


async def test_requests_that_give_up_while_waiting_leave_no_phantom_starts():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key,
            base_url=mock.base_url,
            rate_limit=RateLimit(requests_per_minute=600),
        ) as client:

            async def impatient() -> None:
                with anyio.move_on_after(0.25):
                    await client.models.list()

            async with anyio.create_task_group() as group:
                for _ in range(30):
                    group.start_soon(impatient)
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await client.models.list()
            # 30 cancelled reservations would have meant ~2.7 s of waiting.
            assert time.monotonic() - started < 0.5


async def test_a_stream_cut_by_a_cancelled_read_never_ends_silently(mock, client):
    from routmy_async import APIConnectionError

    mock.reply_default(chunk_delay=0.3)
    stream = await client.chat.completions.create(model="mock/echo", messages=MESSAGES, stream=True)
    await stream.__anext__()
    with pytest.raises(asyncio.TimeoutError):  # not the builtin one before Python 3.11
        await asyncio.wait_for(stream.__anext__(), 0.05)
    with pytest.raises(APIConnectionError, match="closed before its end"):
        await stream.__anext__()
    assert client.connections_in_use == 0


async def test_input_errors_of_a_batch_are_raised_as_they_are(client):
    def broken() -> Any:
        yield requests(1)[0]
        raise ValueError("bad line 2")

    with pytest.raises(ValueError, match="bad line 2"):
        await client.chat.completions.create_many(broken())
    for not_a_list in (None, 5, {"model": "m"}, "abc"):
        with pytest.raises(TypeError, match="requests must be"):
            await client.chat.completions.create_many(not_a_list)
    assert client.connections_in_use == 0


async def test_a_429_pauses_the_client_even_when_not_retried():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as c:
            mock.reply_error(429, "slow", headers={"retry-after": "0.3"})
            with pytest.raises(Exception, match="slow"):
                await c.models.list()
            assert 0.2 < c.rate_limit.pause_remaining() <= 0.3
            await c.models.list()
        assert gaps(mock.request_times)[0] >= 0.28


async def test_a_number_timeout_bounds_each_wait_not_a_whole_stream(mock):
    mock.reply_default(chunk_delay=0.15)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, timeout=0.5) as client:
        async with client.chat.completions.stream(
            model="mock/echo", messages=[{"role": "user", "content": "x" * 60}]
        ) as stream:
            final = await stream.until_done()
    assert final.choices[0].message.content == "x" * 60


async def test_per_tenant_keys_share_the_pool_and_never_leak():
    from routmy_async import AuthenticationError

    tenant_key = "sk-tenant-b-0123456789"
    header_key = "sk-header-c-0123456789"
    async with MockRoutmy(api_key=None) as mock:
        async with AsyncRoutmy(api_key="sk-tenant-a-0123456789", base_url=mock.base_url) as a:
            b = a.with_options(api_key=tenant_key)
            await b.models.list()
            assert mock.requests[-1].headers["Authorization"] == "Bearer [REDACTED]"
            await a.models.list()  # one pool: b's kept-alive connection serves a as well
            assert mock.connections_seen == 1 and b.rate_limit is a.rate_limit
            calls: tuple[tuple[str, Callable[[], Awaitable[Any]]], ...] = (
                (tenant_key, lambda: b.models.list()),
                (
                    header_key,
                    lambda: a.models.list(extra_headers={"Authorization": f"Bearer {header_key}"}),
                ),
            )
            for key, call in calls:
                mock.reply_error(401, f"bad key {key}")
                with pytest.raises(AuthenticationError) as caught:
                    await call()
                assert key not in str(caught.value) and key not in repr(caught.value.body)


async def test_copying_a_client_never_closes_the_original(mock):
    import copy
    import gc

    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        duplicate = copy.copy(client)
        other = client.copy(max_retries=0)
        assert other.max_retries == 0
        del duplicate, other
        gc.collect()
        await client.models.list()


async def test_closing_the_client_under_an_open_stream_leaves_nothing_to_warn_about():
    import gc

    async with MockRoutmy() as mock:
        client = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url)
        mock.reply_default(chunk_delay=1)
        stream = await client.chat.completions.create(
            model="mock/echo", messages=MESSAGES, stream=True
        )
        await stream.__anext__()
        await client.close()
        del stream
        gc.collect()  # warnings are errors: a ResourceWarning here fails the test


# -- the budget under a backlog (found by a cold review: a queue is where budgets live) ------


def create(client: AsyncRoutmy, content: str = "hi", **fields: Any) -> Awaitable[ChatCompletion]:
    return client.chat.completions.create(
        model="mock/echo", messages=[{"role": "user", "content": content}], **fields
    )


async def test_a_429_holds_the_requests_already_queued_in_the_budget():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key,
            base_url=mock.base_url,
            max_retries=0,
            rate_limit=RateLimit(requests_per_minute=600),
        ) as client:
            mock.reply_default()
            mock.reply_default()
            mock.reply_error(429, "slow down", headers={"retry-after": "1"})  # the 3rd
            results = await asyncio.wait_for(
                asyncio.gather(*(create(client) for _ in range(8)), return_exceptions=True), 30
            )
        times = sorted(mock.request_times)
        assert sum(isinstance(r, Exception) for r in results) == 1
        refused_at = times[2]
        # Nothing starts during the pause, and after it the starts are spaced again.
        assert all(t >= refused_at + 0.95 for t in times[3:]), [t - times[0] for t in times]
        assert_spaced(times[3:], 0.1)


async def test_a_longer_429_extends_the_pause_for_everyone_waiting():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_retries=0
        ) as client:
            error = {"error": {"message": "slow down", "type": "rate_limit", "code": 429}}
            mock.reply_json(error, status=429, headers={"retry-after": "0.3"})
            mock.reply_json(
                error, status=429, headers={"retry-after": "1.2"}, stall_before_headers=0.15
            )
            first = [asyncio.ensure_future(create(client)) for _ in range(2)]
            await asyncio.sleep(0.05)  # the first 429 is in: a 0.3 s pause
            late = [asyncio.ensure_future(create(client)) for _ in range(2)]
            await asyncio.wait_for(asyncio.gather(*first, *late, return_exceptions=True), 30)
        times = sorted(mock.request_times)
        # The second 429 (answered at about 0.15 s) asked for 1.2 s: the queued two wait
        # for it, not for the shorter pause they found when they queued.
        assert times[2] - times[0] >= 1.2, [t - times[0] for t in times]


async def test_a_request_waiting_for_its_turn_holds_no_connection():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key,
            base_url=mock.base_url,
            max_connections=2,
            timeout=Timeout(total=30, pool=0.5),
            rate_limit=RateLimit(requests_per_minute=120),
        ) as client:
            tasks = [asyncio.ensure_future(create(client, f"q{i}")) for i in range(4)]
            await asyncio.sleep(0.2)
            # One request has been answered; three wait for the budget, none for the pool.
            assert client.connections_in_use == 0
            results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert [r.choices[0].message.content for r in results] == [f"q{i}" for i in range(4)]
        assert_spaced(mock.request_times, 0.5)


async def test_closing_the_client_fails_requests_waiting_for_the_budget_at_once():
    async with MockRoutmy() as mock:
        client = AsyncRoutmy(
            api_key=mock.api_key,
            base_url=mock.base_url,
            rate_limit=RateLimit(requests_per_minute=6),  # one start every 10 s
        )
        tasks = [asyncio.ensure_future(create(client)) for _ in range(3)]
        await asyncio.sleep(0.3)
        started = time.monotonic()
        await client.close()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
        assert time.monotonic() - started < 2
        assert isinstance(results[0], ChatCompletion)
        for waiting in results[1:]:
            assert isinstance(waiting, Exception) and "client was closed" in str(waiting)
        assert len(mock.requests) == 1


async def test_a_batch_limit_inside_a_busy_client_budget_keeps_its_own_spacing():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key,
            base_url=mock.base_url,
            rate_limit=RateLimit(requests_per_minute=600),
        ) as client:
            others = [asyncio.ensure_future(create(client, "other")) for _ in range(10)]
            await asyncio.sleep(0)
            results = await asyncio.wait_for(
                client.chat.completions.create_many(
                    requests(4), concurrency=4, requests_per_minute=120
                ),
                30,
            )
            await asyncio.gather(*others)
        assert all(isinstance(r, ChatCompletion) for r in results)
        batch_times = [
            t
            for t, body in zip(mock.request_times, mock.requests, strict=True)
            if body.json["messages"][0]["content"].startswith("q ")
        ]
        assert len(batch_times) == 4
        assert_spaced(batch_times, 0.5)


async def test_a_start_delayed_by_tokens_keeps_the_request_spacing_after_it():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key,
            base_url=mock.base_url,
            max_retries=0,
            rate_limit=RateLimit(requests_per_minute=300, tokens_per_minute=6_000),
        ) as client:
            work = [
                create(client, "a", max_tokens=5_900),
                create(client, "b", max_tokens=200),  # waits for tokens
                create(client, "c"),
                create(client, "d"),
            ]
            await asyncio.wait_for(asyncio.gather(*work), 30)
        times = sorted(mock.request_times)
        assert all(gap >= 0.2 * 0.8 for gap in gaps(times)), gaps(times)


async def test_tokens_given_back_by_real_usage_let_queued_requests_start_sooner():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key,
            base_url=mock.base_url,
            rate_limit=RateLimit(tokens_per_minute=600),
        ) as client:
            # Each reserves ~200 tokens but uses a handful: the bucket holds three at a time
            # by estimate, yet the usage gives the tokens back as each answer arrives.
            started = time.monotonic()
            await asyncio.wait_for(
                asyncio.gather(*(create(client, f"q{i}", max_tokens=200) for i in range(5))), 30
            )
            elapsed = time.monotonic() - started
        # By the estimates alone the last two would wait ~20 s and ~40 s.
        assert elapsed < 5, elapsed


async def test_close_with_requests_waiting_for_a_slot_leaves_the_count_at_zero():
    """close() wakes the requests queued for a full pool: each fails with "client was
    closed", and the pool's count comes back to zero (it went below zero once)."""
    async with MockRoutmy(latency=0.5) as mock:
        client = AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_connections=2, max_retries=0
        )
        tasks = [
            asyncio.ensure_future(
                client.chat.completions.create(model="mock/echo", messages=MESSAGES)
            )
            for _ in range(6)
        ]
        await asyncio.sleep(0.2)  # two in flight, four queued for a slot
        await client.close()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    assert all(isinstance(r, APIConnectionError) for r in results), results
    assert client.connections_in_use == 0


async def test_close_fails_an_error_answer_whose_body_is_still_arriving():
    """A 500 whose body stalls after the headers: close() fails its read at once, as it does
    for a 200 (it hung, the read timeout never firing once the pool was gone)."""
    async with MockRoutmy() as mock:
        mock.reply_json({"error": {"message": "x"}}, status=500, stall_after=5)
        client = AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_retries=0, timeout=Timeout(read=30)
        )
        task = asyncio.ensure_future(
            client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        )
        for _ in range(500):
            if mock.requests:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        await client.close()
        with pytest.raises(APIConnectionError, match="client was closed"):
            await asyncio.wait_for(task, 10)
    assert client.connections_in_use == 0
