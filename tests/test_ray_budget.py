"""``ClusterBudget`` and its Ray glue without Ray: a stand-in ``ray`` module runs the
coordinator in this process, on its own event loop as Ray runs an async actor. (The real Ray
runs in tests/test_ray_cluster.py.)"""

from __future__ import annotations

import asyncio
import concurrent.futures
import pickle
import subprocess
import sys
import threading
import types
import weakref
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import pytest
import pytest_asyncio

import routmy_async.integrations.ray as integration
from routmy_async import AsyncRoutmy, SpendLimit, SpendLimitError
from routmy_async.integrations.ray import (
    ChatStep,
    ClusterBudget,
    ClusterRateLimit,
    ClusterSpendLimit,
)
from routmy_async.testing import MockRoutmy

KEY = "sk-budget-test-77e1c0a9f3"


_LIVE_HANDLES: weakref.WeakValueDictionary[int, _Handle] = weakref.WeakValueDictionary()


def _live_handle(key: int) -> _Handle:
    return _LIVE_HANDLES[key]


class _Ref:
    def __init__(self, future: concurrent.futures.Future[Any]):
        self._future = future

    def future(self) -> concurrent.futures.Future[Any]:
        return self._future


class _Handle:
    """An actor handle: ``handle.method.remote(...)`` runs the method on the actor's loop.

    It pickles as Ray's handles do, as a reference to the running actor (here: by its id, in
    the same process)."""

    def __init__(self, instance: Any, loop: asyncio.AbstractEventLoop):
        self._instance = instance
        self._loop = loop
        _LIVE_HANDLES[id(self)] = self

    def __reduce__(self) -> Any:
        return (_live_handle, (id(self),))

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._instance, name)
        loop = self._loop
        return types.SimpleNamespace(
            remote=lambda *args: _Ref(asyncio.run_coroutine_threadsafe(method(*args), loop))
        )


class FakeRay(types.ModuleType):
    """The parts of ``ray`` the integration uses: named async actors, get, cancel, kill."""

    def __init__(self) -> None:
        super().__init__("ray")
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.named: dict[tuple[str, str], _Handle] = {}
        self.cancelled = 0
        self.killed: list[_Handle] = []
        self.options_seen: list[dict[str, Any]] = []

    def remote(self, **actor_options: Any) -> Any:
        fake = self

        class ActorClass:
            def __init__(self, cls: type[Any]):
                self._cls = cls
                self._options: dict[str, Any] = {}

            def options(self, **options: Any) -> ActorClass:
                self._options = options
                fake.options_seen.append({**actor_options, **options})
                return self

            def remote(self, *args: Any) -> _Handle:
                key = (self._options["namespace"], self._options["name"])
                if key not in fake.named:
                    fake.named[key] = _Handle(self._cls(*args), fake.loop)
                return fake.named[key]

        return ActorClass

    def get_runtime_context(self) -> Any:
        return types.SimpleNamespace(was_current_actor_reconstructed=False)

    def get(self, ref: _Ref, timeout: float | None = None) -> Any:
        return ref.future().result(timeout)

    def cancel(self, ref: _Ref) -> None:
        self.cancelled += 1
        ref.future().cancel()

    def kill(self, handle: _Handle) -> None:
        self.killed.append(handle)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRay]:
    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    yield fake
    fake.close()


@pytest_asyncio.fixture
async def keyed_mock() -> AsyncIterator[MockRoutmy]:
    async with MockRoutmy(api_key=KEY) as server:
        yield server


def test_the_module_exports_its_public_names() -> None:
    """``__all__`` lists exactly the public names, sorted."""
    public = {name for name in vars(integration) if not name.startswith("_")}
    exported = set(integration.__all__)
    assert exported <= public
    assert sorted(integration.__all__) == integration.__all__
    assert {
        "ChatStep",
        "ClusterBudget",
        "ClusterRateLimit",
        "ClusterSpendLimit",
        "EmbeddingStep",
    } == exported


def test_importing_the_integration_does_not_import_ray() -> None:
    """Ray is imported only when a budget is made: the module itself loads without it."""
    code = "import sys, routmy_async.integrations.ray; print('ray' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "False"


def test_a_budget_without_ray_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without Ray, making a budget raises an ImportError naming the extra."""
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ImportError, match=r"routmy-async\[ray\]"):
        ClusterBudget(requests_per_minute=10)


def test_a_budget_is_one_named_coordinator(fake_ray: FakeRay) -> None:
    """The coordinator is a named actor without CPU that Ray restarts (calls in flight sent
    again); the same name is the same budget, and other limits under that name are
    refused."""
    budget = ClusterBudget(requests_per_minute=600, tokens_per_minute=10_000, name="b")
    again = ClusterBudget(requests_per_minute=600, tokens_per_minute=10_000, name="b")
    assert list(fake_ray.named) == [("routmy", "b")]
    coordinator = fake_ray.named["routmy", "b"]
    assert fake_ray.options_seen[0] == {
        "num_cpus": 0,
        "max_restarts": -1,
        "max_task_retries": -1,
        "name": "b",
        "namespace": "routmy",
        "get_if_exists": True,
    }
    with pytest.raises(ValueError, match="already runs with other limits"):
        ClusterBudget(requests_per_minute=60, name="b")
    ClusterBudget(name="kept", detached=True)
    assert fake_ray.options_seen[-1]["lifetime"] == "detached"
    assert budget.requests_per_minute == 600
    assert budget.tokens_per_minute == 10_000
    assert repr(budget) == (
        "ClusterBudget(name='b', requests_per_minute=600, tokens_per_minute=10000)"
    )
    assert budget.stats()["joined"] == 0
    budget.shutdown()
    again.shutdown()
    assert fake_ray.killed == [coordinator, coordinator]  # both are that one actor


def test_a_budget_travels_as_its_name_and_handle(fake_ray: FakeRay) -> None:
    """Unpickled in a worker, a budget attaches to the running coordinator, creating
    nothing; it carries no key."""
    budget = ClusterBudget(requests_per_minute=60, name="p")
    data = pickle.dumps(budget)
    assert KEY.encode() not in data
    copy = pickle.loads(data)
    assert (copy.name, copy.namespace) == ("p", "routmy")
    assert copy.requests_per_minute == 60
    assert len(fake_ray.options_seen) == 1
    assert copy.stats() == budget.stats()  # it talks to the running coordinator
    copy.shutdown()
    assert fake_ray.killed == [fake_ray.named["routmy", "p"]]


async def test_a_step_spends_the_budget_through_the_actor(
    fake_ray: FakeRay, keyed_mock: MockRoutmy
) -> None:
    """A step with a ClusterBudget asks the coordinator actor for grants (blocking and
    awaited calls), watches its pauses during a batch, and leaves it when closed."""
    budget = ClusterBudget(requests_per_minute=600, name="s")
    step = ChatStep(model="mock/echo", base_url=keyed_mock.base_url, budget=budget)
    rows = {"messages": [[{"role": "user", "content": f"q{index}"}] for index in range(30)]}
    out = await asyncio.to_thread(step, rows)
    assert out["error"] == [""] * 30
    await asyncio.to_thread(step.close)
    stats = budget.stats()
    assert stats["joined"] == stats["left"] == 1
    assert stats["grants"] >= 1
    assert fake_ray.cancelled >= 1  # the batch's pause watch was ended at the coordinator


async def test_a_pause_reaches_every_process_through_the_actor(fake_ray: FakeRay) -> None:
    """A pause from one rate limit reaches another through the coordinator actor."""
    budget = ClusterBudget(name="pause")
    first, second = budget.rate_limit(), budget.rate_limit()
    assert isinstance(first, ClusterRateLimit)
    await first.start()
    await second.start()
    first.pause(2.0)
    for _ in range(300):
        if second.pause_remaining():
            break
        await asyncio.sleep(0.01)
    assert second.pause_remaining() > 1.0
    await first.aclose()
    await second.aclose()
    assert budget.stats()["pauses"] == 1


def _used_units(out: dict[str, list[Any]]) -> int:
    """The quota units the answered rows used (mock/echo: token_multiplier 1)."""
    return sum(
        prompt + completion
        for prompt, completion, error in zip(
            out["prompt_tokens"], out["completion_tokens"], out["error"], strict=True
        )
        if not error
    )


async def test_two_actors_stay_within_one_cluster_spend_limit(fake_ray: FakeRay) -> None:
    """Two actors (each its own loop and client) share one spend limit through the
    coordinator: what their answers used together stays within it, the rows it refuses fail
    with a SpendLimitError saying the cluster's limit is used up (nothing sent for them), and
    once the steps are closed nothing stays held and the coordinator's spent is exactly what
    the answers used."""
    async with MockRoutmy(api_key=KEY, latency=0.01) as mock:
        budget = ClusterBudget(name="spend", spend_limit=SpendLimit(max_units=600))
        assert budget.max_units == 600
        steps = [
            ChatStep(
                model="mock/echo",
                base_url=mock.base_url,
                budget=budget,
                prompt_column="prompt",
                max_tokens=60,
            )
            for _ in range(2)
        ]
        rows = {"prompt": [f"question {index}" for index in range(80)]}
        outs = await asyncio.gather(*(asyncio.to_thread(step, rows) for step in steps))
        for step in steps:
            await asyncio.to_thread(step.close)
    errors = [error for out in outs for error in out["error"]]
    refused = [error for error in errors if error]
    assert refused and len(refused) < len(errors)
    assert all(
        error.startswith("SpendLimitError: spend limit: refused a request to 'mock/echo'")
        and "the cluster's limit" in error
        for error in refused
    )
    sent = sum(1 for request in mock.requests if request.path.endswith("/chat/completions"))
    assert sent == len(errors) - len(refused)  # a refused row sent nothing
    used = sum(_used_units(out) for out in outs)
    assert used <= 600
    spend = budget.stats()["spend"]
    assert spend["limit"] == 600
    assert spend["calls"] >= spend["blocks"] >= 1  # the round trips are counted
    # A refused row does not ask again each time another settles: a refusal stands a while.
    assert spend["calls"] < len(refused)
    assert spend["held"] == 0 and spend["held_by_member"] == {
        name: 0 for name in spend["held_by_member"]
    }
    assert spend["spent"] == used
    budget.shutdown()


async def test_an_actor_that_dies_holding_reservations_counts_them_as_spent(
    fake_ray: FakeRay,
) -> None:
    """A process that never closes its share (killed with a reservation in flight) keeps
    its whole block counted at the coordinator: the others can never use it, so the limit
    holds whatever that request was billed."""
    budget = ClusterBudget(name="dies", spend_limit=SpendLimit(max_units=1_000))
    dying, other = budget.client_spend_limit(), budget.client_spend_limit()
    assert isinstance(dying, ClusterSpendLimit) and isinstance(other, ClusterSpendLimit)
    models = [{"id": "m", "token_multiplier": 1}]
    dying.add_models(models)
    other.add_models(models)
    await dying.make_room("m", input_tokens=100, max_output_tokens=300)
    in_flight = dying.reserve("m", input_tokens=100, max_output_tokens=300)
    assert in_flight.output_tokens == 300
    # The process dies here: no settlement, no close. Its block (room for a few such
    # requests, so that most attempts need no round trip) stays committed, unused part too.
    held = budget.stats()["spend"]["held_by_member"][dying.member]
    assert held >= 400
    left = int(1_000 - held)
    with pytest.raises(SpendLimitError, match="the cluster's limit") as refused:
        await other.make_room("m", input_tokens=0, max_output_tokens=left + 1)
    assert refused.value.reserved >= held and refused.value.limit == 1_000
    await other.make_room("m", input_tokens=0, max_output_tokens=left)  # what is left
    other.reserve("m", input_tokens=0, max_output_tokens=left).settle_in_full()
    await other.aclose()
    assert budget.stats()["spend"]["held_by_member"][dying.member] == held
    budget.shutdown()


def test_a_cluster_spend_limit_counts_quota_units_only(fake_ray: FakeRay) -> None:
    """The template must be a SpendLimit in quota units; a budget of that name with another
    spend limit is refused; without one, a budget gives no client share."""
    with pytest.raises(ValueError, match="quota units only"):
        ClusterBudget(name="d", spend_limit=SpendLimit(max_dollars=5))
    with pytest.raises(TypeError, match=r"SpendLimit\(max_units=...\)"):
        ClusterBudget(name="d", spend_limit=100)  # type: ignore[arg-type]
    ClusterBudget(name="u", spend_limit=SpendLimit(max_units=10))
    with pytest.raises(ValueError, match="already runs with other limits"):
        ClusterBudget(name="u", spend_limit=SpendLimit(max_units=20))
    plain = ClusterBudget(name="plain")
    assert plain.client_spend_limit() is None and plain.max_units is None
    assert plain.stats()["spend"] is None


async def test_a_client_with_a_cluster_share_reserves_each_attempt(fake_ray: FakeRay) -> None:
    """A user's own client with ``budget.client_spend_limit()``: the share fetches room
    from the coordinator before each attempt and settles to the answer's usage."""
    budget = ClusterBudget(name="own", spend_limit=SpendLimit(max_units=500))
    share = budget.client_spend_limit()
    assert share is not None
    async with MockRoutmy(api_key=KEY) as mock:
        async with AsyncRoutmy(api_key=KEY, base_url=mock.base_url, spend_limit=share) as client:
            answer = await client.chat.completions.create(
                model="mock/echo", messages=[{"role": "user", "content": "hi"}], max_tokens=20
            )
            assert client.spend is not None and client.spend.units is not None
            assert answer.usage is not None
            assert client.spend.units.spent == answer.usage.total_tokens
            with pytest.raises(SpendLimitError, match="the cluster's limit"):
                await client.chat.completions.create(
                    model="mock/echo",
                    messages=[{"role": "user", "content": "hi"}],
                    max_tokens=600,
                )
        await share.aclose()
    spend = budget.stats()["spend"]
    assert spend["spent"] == Decimal(answer.usage.total_tokens) and spend["held"] == 0
