"""create_many: order, isolation, the concurrency bound, rate limits, backoff, cancellation."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from routmy_async import AsyncRoutmy, BadRequestError
from routmy_async._http._ratelimit import RateLimit, estimate_tokens
from routmy_async.testing import MockRoutmy, assert_no_open_connections
from routmy_async.types import ChatCompletion


def requests(count: int, prefix: str = "q") -> list[dict[str, Any]]:
    return [
        {"model": "mock/echo", "messages": [{"role": "user", "content": f"{prefix} {i}"}]}
        for i in range(count)
    ]


def texts(results: list[Any]) -> list[str | None]:
    return [
        r.choices[0].message.content if isinstance(r, ChatCompletion) else None for r in results
    ]


async def test_results_in_input_order_under_the_concurrency_bound():
    """50 requests at concurrency 5: results in order, never more than 5 in flight."""
    async with MockRoutmy(latency=0.02) as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            results = await client.chat.completions.create_many(requests(50), concurrency=5)
        assert texts(results) == [f"q {i}" for i in range(50)]
        assert mock.peak_in_flight == 5


async def test_one_failure_keeps_the_others(client, mock):
    """A failed item holds its exception; the rest are kept."""
    items = requests(4)
    items[2] = {**items[2], "model": "mock/locked"}
    results = await client.chat.completions.create_many(items, concurrency=1)
    assert texts(results)[:2] == ["q 0", "q 1"] and texts(results)[3] == "q 3"
    assert getattr(results[2], "status_code", None) == 403


async def test_return_exceptions_false_raises_and_cancels(mock):
    """The first failure is raised and the requests still in flight are cancelled."""
    mock.latency = 0.3
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as client:
        items = requests(6)
        items[0] = {**items[0], "messages": "not a list"}
        with pytest.raises(TypeError, match="messages"):
            await client.chat.completions.create_many(items, concurrency=3, return_exceptions=False)
        assert_no_open_connections(client)
    assert len(mock.requests) <= 3


async def test_requests_per_minute_spaces_the_starts():
    """At 600 requests/minute, starts are at least 0.1 s apart."""
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            await client.chat.completions.create_many(requests(5), requests_per_minute=600)
        gaps = [b - a for a, b in zip(mock.request_times, mock.request_times[1:], strict=False)]
        # The span is the rate's guarantee; single gaps allow for arrival jitter under load.
        assert sum(gaps) >= 0.39 and all(gap >= 0.03 for gap in gaps), gaps


def test_token_bucket_waits_and_is_corrected_by_usage():
    """The token budget delays starts and real usage gives tokens back."""
    now = [0.0]
    limits = RateLimit(requests_per_minute=None, tokens_per_minute=600, clock=lambda: now[0])
    assert limits.reserve(400) == 0.0
    assert limits.reserve(400) == pytest.approx(20.0)  # 200 missing at 10 tokens/s
    limits.correct(400, 100)  # the first used 100, not 400: 300 come back
    assert limits.reserve(100) == 0.0
    now[0] = 60.0
    assert limits.reserve(300) == 0.0


def test_pause_holds_every_start():
    """A pause (after a 429) delays the next start for everyone."""
    now = [10.0]
    limits = RateLimit(requests_per_minute=None, tokens_per_minute=None, clock=lambda: now[0])
    limits.pause(2.0)
    assert limits.reserve(1) == 2.0
    assert limits.pause_remaining() == 2.0


def test_estimate_tokens():
    """The estimate counts prompt characters / 4 plus the completion budget."""
    request = {
        "messages": [
            {"role": "user", "content": "x" * 40},
            {"role": "user", "content": [{"type": "text", "text": "y" * 8}]},
        ],
        "max_tokens": 10,
    }
    assert estimate_tokens(request) == 48 // 4 + 1 + 10
    assert estimate_tokens({"messages": []}) == 1 + 256


async def test_a_429_slows_the_whole_batch(mock):
    """One 429 with retry-after pauses new starts for every item, then all succeed."""
    mock.reply_error(429, "slow down", headers={"retry-after-ms": "300"})
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=2) as client:
        started = time.monotonic()
        results = await client.chat.completions.create_many(requests(6), concurrency=1)
    assert texts(results) == [f"q {i}" for i in range(6)]
    assert len(mock.requests) == 7
    assert time.monotonic() - started >= 0.3
    after_429 = mock.request_times[1] - mock.request_times[0]
    assert after_429 >= 0.29


async def test_lazy_input_is_pulled_as_slots_free(client):
    """A generator is consumed no further ahead than the concurrency allows."""
    pulled = []

    def source() -> Iterator[dict[str, Any]]:
        for i, request in enumerate(requests(100)):
            pulled.append(i)
            yield request

    iterator = client.chat.completions.create_many_iter(source(), concurrency=4)
    first = await iterator.__anext__()
    assert first[0] == 0 or first[0] < 4
    assert len(pulled) <= 5
    await iterator.aclose()


async def test_async_iterable_input_and_iter_form(client):
    """An async iterable works; create_many_iter yields (index, result) pairs."""

    async def source() -> AsyncIterator[dict[str, Any]]:
        for request in requests(7, "a"):
            yield request

    seen = {}
    async for index, result in client.chat.completions.create_many_iter(source(), concurrency=3):
        assert isinstance(result, ChatCompletion)
        seen[index] = result.choices[0].message.content
    assert seen == {i: f"a {i}" for i in range(7)}


async def test_cancelling_the_caller_releases_every_connection():
    """Cancelling create_many cancels in-flight requests and frees the pool."""
    async with MockRoutmy(latency=5) as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            task = asyncio.create_task(
                client.chat.completions.create_many(requests(20), concurrency=8)
            )
            for _ in range(100):
                if mock.in_flight == 8:
                    break
                await asyncio.sleep(0.02)
            assert mock.in_flight == 8
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert_no_open_connections(client)
        assert len(mock.requests) == 8


async def test_progress_callback_and_failures(client):
    """progress=callable gets (done, total, failed) after each item."""
    calls = []
    items = requests(3)
    items[1] = {**items[1], "model": "mock/locked"}
    await client.chat.completions.create_many(items, progress=lambda *a: calls.append(a))
    assert calls[-1] == (3, 3, 1) and len(calls) == 3


async def test_progress_bar_with_tqdm(client, capsys):
    """progress=True draws a tqdm bar when tqdm is installed."""
    await client.chat.completions.create_many(requests(3), progress=True)
    assert "3/3" in capsys.readouterr().err


async def test_progress_log_line_without_tqdm(client, monkeypatch, caplog):
    """Without tqdm, progress=True logs a line with the counts."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with caplog.at_level(logging.INFO, logger="routmy_async"):
        await client.chat.completions.create_many(requests(3), progress=True)
    assert any("3/3 done, 0 failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"concurrency": 0}, ValueError, "concurrency"),
        ({"requests_per_minute": -1}, ValueError, "requests_per_minute"),
        ({"tokens_per_minute": "x"}, TypeError, "tokens_per_minute"),
    ],
)
async def test_bad_batch_options(client, kwargs, error, match):
    """Bad options are rejected before anything is sent."""
    with pytest.raises(error, match=match):
        await client.chat.completions.create_many(requests(1), **kwargs)


async def test_bad_items(client):
    """A non-dict item or a streaming item is that item's error, naming its position; the
    other items still run."""
    results = await client.chat.completions.create_many(["nope", *requests(1)])
    assert isinstance(results[0], TypeError) and "requests[0]" in str(results[0])
    assert texts(results)[1] == "q 0"
    results = await client.chat.completions.create_many([{**requests(1)[0], "stream": True}])
    assert isinstance(results[0], ValueError) and "does not stream" in str(results[0])
    with pytest.raises(TypeError, match=r"requests\[0\]"):
        await client.chat.completions.create_many(["nope"], return_exceptions=False)


async def test_server_errors_are_retried_per_item(mock):
    """A 503 on one item is retried for that item; a 400 is not."""
    mock.reply_error(503, "busy", headers={"retry-after-ms": "10"})
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=1) as client:
        results = await client.chat.completions.create_many(requests(2), concurrency=1)
        assert texts(results) == ["q 0", "q 1"]
        mock.reply_error(400, "bad")
        results = await client.chat.completions.create_many(requests(1))
        assert isinstance(results[0], BadRequestError)
