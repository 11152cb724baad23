"""``ClusterRateLimit`` in one process: clients sharing an in-process coordinator, against
MockRoutmy (the same classes the Ray actors run, without Ray)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from routmy_async import AsyncRoutmy
from routmy_async.integrations.ray import _limit as _ray_limit
from routmy_async.integrations.ray._coordinator import CoordinatorCore, Snapshot
from routmy_async.integrations.ray._grants import Grant, Settings
from routmy_async.integrations.ray._limit import ClusterRateLimit
from routmy_async.testing import MockRoutmy
from routmy_async.types.chat import ChatCompletion


def most_in_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max(
        sum(1 for later in ordered[index:] if later < start + window)
        for index, start in enumerate(ordered)
    )


def ask(index: int) -> dict[str, Any]:
    return {"model": "mock/echo", "messages": [{"role": "user", "content": f"q{index}"}]}


async def test_clients_sharing_a_budget_stay_within_it_at_the_server(
    mock: MockRoutmy,
) -> None:
    """Three clients with their own ClusterRateLimit on one coordinator: the server never
    sees more than the limit in any window, and every request is answered."""
    settings = Settings(requests=8, window=1.0, grant_seconds=0.3)
    core = CoordinatorCore(settings)
    limits = [ClusterRateLimit(core, settings) for _ in range(3)]
    clients = [
        AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, rate_limit=limit)
        for limit in limits
    ]
    results = await asyncio.gather(
        *(
            client.chat.completions.create_many([ask(index) for index in range(10)], concurrency=4)
            for client in clients
        )
    )
    for client in clients:
        await client.close()
    for limit in limits:
        await limit.aclose()
    assert all(not isinstance(result, BaseException) for batch in results for result in batch)
    assert len(mock.request_times) == 30
    assert most_in_window(mock.request_times, 1.0) <= 8
    stats = await core.stats()
    assert stats["joined"] == stats["left"] == 3
    assert len(stats["spent_by_member"]) == 3


async def test_a_429_pauses_every_member(mock: MockRoutmy) -> None:
    """A 429 with Retry-After seen by one client holds the other client's starts too."""
    settings = Settings()  # no limits: only the shared pause
    core = CoordinatorCore(settings)
    first, second = ClusterRateLimit(core, settings), ClusterRateLimit(core, settings)
    await first.start()
    await second.start()
    async with (
        AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, rate_limit=first) as one,
        AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, rate_limit=second) as two,
    ):
        mock.reply_error(429, "slow down", headers={"Retry-After": "1"})
        retried = asyncio.ensure_future(one.chat.completions.create(**ask(0)))
        for _ in range(300):  # the pause travels: first -> coordinator -> second's watcher
            if second.pause_remaining():
                break
            await asyncio.sleep(0.01)
        assert second.pause_remaining() > 0.5
        await two.chat.completions.create(**ask(1))
        await retried
    await first.aclose()
    await second.aclose()
    refused, *later = mock.request_times
    assert len(later) == 2
    assert all(at - refused >= 0.9 for at in later)
    assert (await core.stats())["pauses"] == 1


async def test_the_first_start_fetches_with_one_blocking_call_then_prefetches() -> None:
    """Without a grant, a reservation asks once and waits; later grants come in the
    background before the held ones run out."""
    settings = Settings(requests=600, window=60.0, grant_seconds=2.0)
    core = CoordinatorCore(settings)
    limit = ClusterRateLimit(core, settings, member="m")
    assert not limit.idle
    assert not limit.limits_tokens
    limit.expect(40)
    waits = [limit.reserve_start(0)[0] for _ in range(3)]
    assert waits[0] == 0.0
    assert limit.blocking_fetches == 1
    await asyncio.sleep(0.05)
    for _ in range(30):
        limit.reserve_start(0)
        await asyncio.sleep(0)
    assert limit.fetches >= 1
    assert limit.blocking_fetches <= 2
    limit.cancel(0.0, 0)  # nothing to give back: an unused start stays unused
    await limit.release()
    await limit.aclose()
    await limit.aclose()  # once is enough
    stats = await core.stats()
    assert stats["returned_requests"] > 0
    assert stats["left"] == 1
    assert "600" in repr(limit)


class SettlementLog(CoordinatorCore):
    """A coordinator that notes every token settlement its members report."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.settled: list[float] = []

    def grant_now(
        self, member: str, requests: int, tokens: float, need_tokens: float, settle: float
    ) -> Grant:
        self.settled.append(settle)
        return super().grant_now(member, requests, tokens, need_tokens, settle)

    async def give_back(self, unused: Any, settle: float = 0.0) -> None:
        self.settled.append(settle)
        await super().give_back(unused, settle)


async def test_token_estimates_are_settled_with_the_coordinator() -> None:
    """Token corrections are reported with the next grant, or when the limit closes."""
    settings = Settings(tokens=60_000, window=60.0, grant_seconds=2.0)
    core = SettlementLog(settings)
    limit = ClusterRateLimit(core, settings)
    assert limit.limits_tokens
    wait, _ = limit.reserve_start(500)
    assert wait == 0.0
    limit.correct(500, 100)
    limit.correct(0, 100)  # no estimate: nothing to correct
    assert not any(core.settled)  # nothing reported yet
    await limit.release()  # kept for the next grant
    assert not any(core.settled)
    await limit.aclose()  # settled on leaving
    assert core.settled[-1] == -400 and sum(core.settled) == -400


async def test_without_limits_only_a_pause_holds_a_start() -> None:
    """A budget without limits never waits, except while paused."""
    settings = Settings()
    core = CoordinatorCore(settings)
    limit = ClusterRateLimit(core, settings)
    assert limit.idle
    wait, start = limit.reserve_start(100)
    assert wait == 0.0
    assert start == pytest.approx(time.monotonic(), abs=1.0)
    limit.pause(5.0)
    assert not limit.idle
    assert limit.reserve_start(0)[0] == pytest.approx(5.0, abs=0.1)
    await limit.aclose()


class _LateCoordinator(CoordinatorCore):
    """Answers with grants whose window is gone by the time they arrive."""

    def grant_now(
        self, member: str, requests: int, tokens: float, need_tokens: float, settle: float
    ) -> Grant:
        return Grant(id=1, delay=0.0, seconds=0.0, requests=1, tokens=None)


async def test_a_coordinator_too_slow_to_be_usable_is_an_error() -> None:
    """Grants that close before they can be used end in a clear error, not a hang."""
    settings = Settings(requests=10, grant_seconds=0.05)
    limit = ClusterRateLimit(_LateCoordinator(settings), settings)
    with pytest.raises(RuntimeError, match="grant_seconds"):
        limit.reserve_start(0)
    await limit.aclose()


class _FailingCoordinator(CoordinatorCore):
    """A coordinator whose awaited calls fail (an actor gone)."""

    async def grant(self, *args: Any) -> Grant:
        raise ConnectionError("gone")

    async def watch(self, epoch: int, timeout: float) -> tuple[int, float]:
        raise ConnectionError("gone")

    async def pause(self, seconds: float) -> None:
        raise ConnectionError("gone")


async def test_a_failing_coordinator_is_logged_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    """Background calls that fail are logged by type (never with their text) and retried."""
    settings = Settings(requests=600)
    limit = ClusterRateLimit(_FailingCoordinator(settings), settings)
    limit.expect(1_000)
    limit.reserve_start(0)  # the blocking path still works
    limit.pause(0.01)
    for _ in range(20):
        limit.reserve_start(0)
        await asyncio.sleep(0.01)
    await limit.aclose()
    assert "ConnectionError" in caplog.text
    assert "gone" not in caplog.text


async def test_outside_a_loop_background_work_is_dropped() -> None:
    """Used outside any event loop, a reservation works and leaves no pending coroutine."""
    settings = Settings(requests=600)
    limit = ClusterRateLimit(CoordinatorCore(settings), settings)

    def use() -> None:
        assert not limit.idle
        limit.reserve_start(0)
        limit.pause(0.01)

    await asyncio.to_thread(use)
    await limit.aclose()


async def test_a_grant_that_arrives_too_late_is_given_back() -> None:
    """A background grant with no usable window left is returned at once."""
    settings = Settings(requests=10)
    core = CoordinatorCore(settings)
    limit = ClusterRateLimit(core, settings)
    late = Grant(id=99, delay=0.0, seconds=0.0, requests=3, tokens=None, pause=0.5, epoch=4)
    limit._accept(late, sent=time.monotonic() - 10)
    assert limit.pause_remaining() > 0
    await asyncio.sleep(0.01)
    await limit.aclose()


async def test_a_pause_reaches_a_new_member_through_its_grant() -> None:
    """A pause set before a member's grant is applied from the grant itself."""
    settings = Settings(requests=600)
    core = CoordinatorCore(settings)
    await core.pause(0.3)
    limit = ClusterRateLimit(core, settings)
    wait, _ = limit.reserve_start(0)
    assert wait == pytest.approx(0.3, abs=0.05)
    await limit.aclose()


class _SlowCoordinator(CoordinatorCore):
    """A coordinator whose grants take a while (an actor being restarted), and which fails
    the first ``failures`` of them."""

    def __init__(self, settings: Settings, *, delay: float, failures: int = 0):
        super().__init__(settings)
        self.delay = delay
        self.failures = failures
        self.asked = 0

    async def grant(self, *args: Any) -> Grant:
        self.asked += 1
        await asyncio.sleep(self.delay)
        if self.failures:
            self.failures -= 1
            raise ConnectionError("restarting")
        return await super().grant(*args)


async def test_waiting_for_a_grant_never_blocks_the_event_loop(mock: MockRoutmy) -> None:
    """Requests with no grant held wait for one in the background: the loop keeps running
    other work meanwhile, and no blocking call is made."""
    settings = Settings(requests=600, window=60.0, grant_seconds=2.0)
    coordinator = _SlowCoordinator(settings, delay=0.3)
    limit = ClusterRateLimit(coordinator, settings)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    running = asyncio.ensure_future(ticker())
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, rate_limit=limit) as c:
        answers = await c.chat.completions.create_many([ask(index) for index in range(5)])
    running.cancel()
    await limit.aclose()
    contents = [
        answer.choices[0].message.content
        for answer in answers
        if isinstance(answer, ChatCompletion)
    ]
    assert contents == [f"q{index}" for index in range(5)]
    assert ticks > 1  # the loop ran the ticker while the grant was on its way
    assert limit.blocking_fetches == 0


async def test_a_coordinator_that_fails_for_a_while_is_waited_for(mock: MockRoutmy) -> None:
    """Grant calls that fail (a coordinator restarting) are asked again, after a backoff,
    and the waiting requests go on when one succeeds."""
    settings = Settings(requests=600, window=60.0, grant_seconds=2.0)
    coordinator = _SlowCoordinator(settings, delay=0.01, failures=3)
    limit = ClusterRateLimit(coordinator, settings)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, rate_limit=limit) as c:
        answer = await c.chat.completions.create(**ask(1))
    await limit.aclose()
    assert answer.choices[0].message.content == "q1"
    assert coordinator.asked >= 4


async def test_a_coordinator_that_never_answers_fails_the_request(
    mock: MockRoutmy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reservation still without a grant after the pending timeout fails its request with
    a clear error instead of waiting forever."""
    monkeypatch.setattr(_ray_limit, "_PENDING_TIMEOUT", 0.2)
    settings = Settings(requests=600, window=60.0, grant_seconds=2.0)
    coordinator = _SlowCoordinator(settings, delay=0.01, failures=1_000)
    limit = ClusterRateLimit(coordinator, settings)
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, rate_limit=limit, max_retries=0
    ) as c:
        with pytest.raises(RuntimeError, match="gave no grant"):
            await c.chat.completions.create(**ask(1))
    await limit.aclose()
    assert mock.requests == []


async def test_grants_that_always_come_too_late_fail_the_request(mock: MockRoutmy) -> None:
    """In the non-blocking path too, grants that close before they arrive end in the
    'raise grant_seconds' error, not a hang."""
    settings = Settings(requests=10, grant_seconds=0.05)
    limit = ClusterRateLimit(_LateCoordinator(settings), settings)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, rate_limit=limit) as c:
        with pytest.raises(RuntimeError, match="grant_seconds"):
            await c.chat.completions.create(**ask(1))
    await limit.aclose()


class _MemoryStore:
    """A Store in memory (Ray's GCS in a cluster)."""

    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None
        self.saves = 0

    def load(self) -> Snapshot | None:
        return self.snapshot

    def save(self, snapshot: Snapshot) -> None:
        self.saves += 1
        self.snapshot = snapshot

    def clear(self) -> None:
        self.snapshot = None


async def test_a_restarted_coordinator_assumes_the_lost_grants_spent() -> None:
    """A coordinator started again from its store grants nothing that could share a window
    with the lost one's grants, and never reuses their ids; the store is written once per
    few grant windows, not per grant."""
    settings = Settings(requests=60, window=6.0, grant_seconds=1.0)
    store = _MemoryStore()
    first = CoordinatorCore(settings, store=store)
    grants = [await first.grant(f"m{index % 3}", 2, 0.0, 0.0, 0.0) for index in range(12)]
    assert store.saves == 1
    latest = max(grant.delay for grant in grants)
    again = CoordinatorCore(settings, store=store, restarted=True)
    grant = await again.grant("m0", 2, 0.0, 0.0, 0.0)
    assert grant.delay >= latest + settings.window + settings.grant_seconds
    assert grant.id > max(old.id for old in grants)
    assert (await again.stats())["restarted"] is True
    CoordinatorCore(settings, store=store)  # a new budget of that name: the snapshot goes
    assert store.snapshot is None
