"""MockRoutmy's quota modes, against the real server on 127.0.0.1: a cap on requests in
flight, a requests-per-window quota, latency that grows with load."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from routmy_async import AsyncRoutmy, RateLimitError
from routmy_async.testing import MockRoutmy
from routmy_async.testing.__main__ import main as mock_main
from routmy_async.testing._quota import Quota

MESSAGES = [{"role": "user", "content": "hi"}]
BODY = {"model": "mock/echo", "messages": MESSAGES}


async def post(session: aiohttp.ClientSession, mock: MockRoutmy, path: str = "/chat/completions"):
    started = time.monotonic()
    async with session.post(
        mock.base_url + path, json=BODY, headers={"Authorization": f"Bearer {mock.api_key}"}
    ) as response:
        body = await response.json()
        return response.status, dict(response.headers), body, time.monotonic() - started


async def test_requests_beyond_the_in_flight_cap_get_429_with_retry_after():
    """With max_in_flight=3, of five requests at once three are answered and two refused at
    once with a 429, Retry-After and retry-after-ms, and the service's error body."""
    async with MockRoutmy(latency=0.3, max_in_flight=3) as mock, aiohttp.ClientSession() as s:
        results = await asyncio.gather(*(post(s, mock) for _ in range(5)))
        statuses = sorted(status for status, *_ in results)
        assert statuses == [200, 200, 200, 429, 429]
        refused = [r for r in results if r[0] == 429]
        for _, headers, body, _elapsed in refused:
            assert headers["Retry-After"] == "1"
            assert headers["retry-after-ms"] == "100"  # latency / K: how often a slot frees
            assert body["error"]["type"] == "rate_limit_error"
        assert mock.quota_rejections == 2
        assert mock.quota.peak_in_flight == 3
        assert mock.quota.in_flight == 0
        # Room again once the answers are out.
        assert (await post(s, mock))[0] == 200


async def test_the_sdk_sees_an_in_flight_refusal_as_a_rate_limit_error():
    """The SDK maps the quota's 429 to RateLimitError, with the mock's wait in its headers."""
    async with (
        MockRoutmy(latency=0.3, max_in_flight=1, quota_retry_after=0.05) as mock,
        AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as client,
    ):
        first = asyncio.create_task(
            client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        )
        await asyncio.sleep(0.1)
        with pytest.raises(RateLimitError) as caught:
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        assert caught.value.headers["retry-after-ms"] == "50"
        assert (await first).choices[0].message.content == "hi"


async def test_requests_per_window_quota_refuses_until_the_window_has_room():
    """With 3 requests per 0.5 s window, the fourth is refused with the wait until the oldest
    admission leaves the window, and admitted after that wait."""
    async with (
        MockRoutmy(requests_per_minute=3, quota_window=0.5) as mock,
        aiohttp.ClientSession() as session,
    ):
        for _ in range(3):
            assert (await post(session, mock))[0] == 200
        status, headers, _, _ = await post(session, mock)
        assert status == 429
        wait_ms = int(headers["retry-after-ms"])
        assert 0 < wait_ms <= 500
        await asyncio.sleep(wait_ms / 1000 + 0.02)
        assert (await post(session, mock))[0] == 200
        assert mock.quota_rejections == 1


async def test_latency_grows_with_load():
    """With latency_per_in_flight, a lone request takes the base latency and the last of six
    at once waits 0.1 s more for each of the five others in flight."""
    async with (
        MockRoutmy(latency=0.05, latency_per_in_flight=0.1) as mock,
        aiohttp.ClientSession() as session,
    ):
        alone = (await post(session, mock))[3]
        assert 0.05 <= alone < 0.15
        together = await asyncio.gather(*(post(session, mock) for _ in range(6)))
        assert max(elapsed for *_, elapsed in together) >= 0.55
        assert mock.quota_rejections == 0


async def test_models_list_and_scripted_replies_are_not_metered():
    """The models list (read to price requests) and scripted replies skip the quota."""
    async with (
        MockRoutmy(requests_per_minute=1) as mock,
        aiohttp.ClientSession() as session,
    ):
        headers = {"Authorization": f"Bearer {mock.api_key}"}
        for _ in range(3):
            async with session.get(mock.base_url + "/models", headers=headers) as response:
                assert response.status == 200
        mock.reply_json({"scripted": True})
        assert (await post(session, mock))[2] == {"scripted": True}
        assert (await post(session, mock))[0] == 200
        assert (await post(session, mock))[0] == 429


async def test_an_unauthorized_request_is_refused_before_the_quota():
    """A request without the key gets its 401 and uses none of the quota."""
    async with (
        MockRoutmy(requests_per_minute=1) as mock,
        aiohttp.ClientSession() as session,
    ):
        async with session.post(mock.base_url + "/chat/completions", json=BODY) as response:
            assert response.status == 401
        assert (await post(session, mock))[0] == 200


@pytest.mark.parametrize(
    "options",
    [
        {"max_in_flight": 0},
        {"max_in_flight": 2.5},
        {"requests_per_minute": -1},
        {"requests_per_minute": True},
        {"quota_window": 0},
        {"quota_retry_after": -1},
        {"latency_per_in_flight": -0.1},
    ],
)
def test_bad_quota_settings_are_refused(options):
    """Quota limits and durations must be positive."""
    with pytest.raises(ValueError):
        MockRoutmy(**options)


def test_the_window_slides_on_the_clock():
    """The per-window quota counts admissions in the last ``window`` seconds exactly."""
    now = [100.0]
    quota = Quota(requests_per_minute=2, window=10.0, clock=lambda: now[0])
    assert quota.try_admit() is None
    now[0] = 104.0
    assert quota.try_admit() is None
    assert quota.try_admit() == pytest.approx(6.0)
    now[0] = 110.0  # the first admission has just left the window
    assert quota.try_admit() is None
    assert quota.try_admit() == pytest.approx(4.0)
    assert quota.rejections == 2
    assert quota.in_flight == 3


def test_standalone_mock_takes_quota_flags(capsys):
    """The mock's command line accepts the quota modes."""
    argv = ["--port", "0", "--seconds", "0.05", "--max-in-flight", "8", "--rpm", "600"]
    assert mock_main([*argv, "--latency", "0.01", "--latency-per-in-flight", "0.001"]) == 0
    assert "ROUTMY_BASE_URL=" in capsys.readouterr().out
