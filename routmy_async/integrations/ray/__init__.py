"""Ray Data steps, and one rate budget for a whole Ray cluster (the ``ray`` extra).

```python
import ray
from routmy_async.integrations.ray import ChatStep, ClusterBudget

budget = ClusterBudget(requests_per_minute=3_000, tokens_per_minute=2_000_000)
answers = ray.data.read_parquet("questions.parquet").map_batches(
    ChatStep,
    fn_constructor_kwargs={
        "model": "provider/model-id",
        "prompt_column": "question",
        "max_tokens": 256,
        "budget": budget,
    },
    compute=ray.data.ActorPoolStrategy(size=4),
    batch_size=64,
    batch_format="pyarrow",
    num_cpus=0.25,
)
answers.write_parquet("answers/")
```

Ray itself is imported only when a ``ClusterBudget`` is made (or unpickled in a worker):
the steps run without it too, on any batch (a dict of columns, pandas, pyarrow).

The key never travels through Ray: every actor reads ``ROUTMY_API_KEY`` (or the file named
by ``ROUTMY_API_KEY_FILE``) from its own environment. Set it where the Ray nodes start
(``ROUTMY_API_KEY=... ray start ...``, a Kubernetes secret in the pod's env). A runtime
env's ``env_vars`` reach the workers too, but Ray writes them to its logs and job metadata
in the clear: put ``ROUTMY_API_KEY_FILE`` (a path) there, never the key.
"""

from __future__ import annotations

import asyncio
import importlib
from decimal import Decimal
from typing import Any

from ..._spend import SpendLimit
from ._cluster_spend import ClusterSpendLimit
from ._coordinator import CoordinatorCore, Unused
from ._grants import Grant, Settings
from ._limit import ClusterRateLimit
from ._ray_compat import GcsStore
from ._spend_book import BookTotals
from ._step import ChatStep, EmbeddingStep

__all__ = [
    "ChatStep",
    "ClusterBudget",
    "ClusterRateLimit",
    "ClusterSpendLimit",
    "EmbeddingStep",
]

# A coordinator call that takes longer than this has failed (it never waits for capacity).
_CALL_TIMEOUT = 30.0


def _ray() -> Any:
    try:
        return importlib.import_module("ray")
    except ImportError:
        raise ImportError("ClusterBudget needs Ray: pip install 'routmy-async[ray]'") from None


class ClusterBudget:
    """Requests-per-minute and tokens-per-minute limits for every process of a Ray cluster
    together, kept by one named Ray actor that hands out capacity in grants.

    Make it in the driver and pass it to the steps (``fn_constructor_kwargs={"budget":
    budget}``) or to your own actors; ``budget.rate_limit()`` inside any of them gives a
    ``RateLimit`` for ``AsyncRoutmy(rate_limit=...)``. With ``requests_per_minute=R`` the
    server sees at most ``R`` requests in any minute, whatever the number of actors; a 429
    pauses every one of them for the server's ``Retry-After``. Without limits, only that
    shared pause applies.

    With ``spend_limit=SpendLimit(max_units=...)`` the quota units of every actor together
    stay within ``max_units``: each attempt reserves its worst case from the cluster's limit
    before it is sent (in blocks the coordinator hands out, so most attempts cost no round
    trip) and settles to its real usage after; an actor that dies counts all it held as
    spent, and a restarted coordinator remembers what was committed.
    ``budget.client_spend_limit()`` gives one client its share (the steps do it for you).

    Two ``ClusterBudget`` objects with the same ``name`` and ``namespace`` are one budget
    (jobs sharing a cluster can share it; give them ``detached=True`` so it outlives the
    first job, and ``shutdown()`` it when done).

    :param requests_per_minute: the cluster's request limit (at least 1).
    :param tokens_per_minute: the cluster's token limit (estimates, corrected by the real
        usage: it holds on average).
    :param name: the coordinator actor's name.
    :param namespace: its Ray namespace.
    :param grant_seconds: how long a grant lasts; longer grants mean fewer calls, and a
        throughput of ``window / (window + grant_seconds)`` of the limit.
    :param window: the limits hold in every span of this many seconds (a minute, as the
        names say; shorter in tests).
    :param detached: keep the coordinator when the job that made it ends.
    :param spend_limit: a :class:`~routmy_async.SpendLimit` with ``max_units`` (and
        ``default_output_tokens`` for requests without ``max_tokens``) for the whole cluster;
        quota units only (``max_dollars`` is not shared across a cluster).
    :raises ValueError: a limit is invalid, or a budget of that name runs with other limits.
    :raises ImportError: Ray is not installed.
    """

    def __init__(
        self,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        name: str = "routmy-budget",
        namespace: str = "routmy",
        grant_seconds: float = 2.0,
        window: float = 60.0,
        detached: bool = False,
        spend_limit: SpendLimit | None = None,
    ):
        settings = Settings(
            requests=requests_per_minute,
            tokens=tokens_per_minute,
            window=window,
            grant_seconds=grant_seconds,
            **_spend_settings(spend_limit),
        )
        ray = _ray()
        # Restarted whenever it dies (its process killed, its node lost), and the calls in
        # flight then are sent again to the new one: the members never see it go.
        actor = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)(_Coordinator)
        options: dict[str, Any] = {"name": name, "namespace": namespace, "get_if_exists": True}
        if detached:
            options["lifetime"] = "detached"
        handle = actor.options(**options).remote(settings, name, namespace)
        running = ray.get(handle.settings.remote(), timeout=120)
        if running != settings:
            raise ValueError(f"a budget named {name!r} already runs with other limits: {running!r}")
        self._settings = settings
        self._handle = handle
        self.name = name
        self.namespace = namespace

    @property
    def requests_per_minute(self) -> float | None:
        """The request limit."""
        return self._settings.requests

    @property
    def tokens_per_minute(self) -> float | None:
        """The token limit."""
        return self._settings.tokens

    def rate_limit(self) -> ClusterRateLimit:
        """A new ``RateLimit`` spending this budget, for one client of the calling process
        (``AsyncRoutmy(rate_limit=budget.rate_limit())``); close it after the client with
        ``await limit.aclose()``."""
        return ClusterRateLimit(_RayCoordinator(self._handle), self._settings)

    @property
    def max_units(self) -> Decimal | None:
        """The cluster's spend limit in quota units (``None``: no spend limit)."""
        micro = self._settings.spend_units
        return None if micro is None else Decimal(micro) / 10**6

    def client_spend_limit(self) -> ClusterSpendLimit | None:
        """A new :class:`ClusterSpendLimit` reserving from this budget's spend limit, for
        one client of the calling process
        (``AsyncRoutmy(spend_limit=budget.client_spend_limit())``), or ``None`` without one;
        close it after the client with ``await limit.aclose()``, which gives back what it
        holds unused. Its ``spend`` shows this process's share only: ``stats()["spend"]`` has
        the cluster's."""
        if self._settings.spend_units is None:
            return None
        return ClusterSpendLimit(
            _RayCoordinator(self._handle),
            default_output_tokens=self._settings.default_output_tokens,
        )

    def stats(self) -> dict[str, Any]:
        """The coordinator's counters: ``joined`` and ``left`` (processes whose client
        closed), ``grants``, ``granted_requests``, ``returned_requests``, ``pauses`` (the
        pauses that held starts longer than before), ``paused_for`` (the seconds the current
        pause still holds, 0.0 when none does), ``spent_by_member`` (requests granted and
        not given back), ``restarted`` (this coordinator was brought back after a death;
        the counters start again then) and ``spend`` (with a spend limit: the ``limit``,
        ``spent``, ``held`` by the actors and ``held_by_member``, in quota units, and the
        coordinator's ``calls`` and the ``blocks`` they handed out; else ``None``)."""
        result: dict[str, Any] = _ray().get(self._handle.stats.remote(), timeout=_CALL_TIMEOUT)
        return result

    def shutdown(self) -> None:
        """Stop the coordinator (a detached one lives until this is called)."""
        _ray().kill(self._handle)
        GcsStore(self.name, self.namespace).clear()

    def __repr__(self) -> str:
        return (
            f"ClusterBudget(name={self.name!r}, requests_per_minute={self.requests_per_minute!r}, "
            f"tokens_per_minute={self.tokens_per_minute!r})"
        )


class _Coordinator(CoordinatorCore):
    """The coordinator as a Ray actor: its snapshot in Ray's GCS, and whether Ray is
    bringing it back after a death."""

    def __init__(self, settings: Settings, name: str, namespace: str):
        restarted = bool(_ray().get_runtime_context().was_current_actor_reconstructed)
        super().__init__(settings, store=GcsStore(name, namespace), restarted=restarted)


class _RayCoordinator:
    """The coordinator actor behind the ``Coordinator`` protocol: blocking calls with
    ``ray.get``, awaited ones through the reference's future on the caller's loop."""

    def __init__(self, handle: Any):
        self._handle = handle

    def grant_now(
        self, member: str, requests: int, tokens: float, need_tokens: float, settle: float
    ) -> Grant:
        ref = self._handle.grant.remote(member, requests, tokens, need_tokens, settle)
        grant: Grant = _ray().get(ref, timeout=_CALL_TIMEOUT)
        return grant

    async def grant(
        self, member: str, requests: int, tokens: float, need_tokens: float, settle: float
    ) -> Grant:
        grant: Grant = await _answer(
            self._handle.grant.remote(member, requests, tokens, need_tokens, settle)
        )
        return grant

    async def give_back(self, unused: Unused, settle: float) -> None:
        await _answer(self._handle.give_back.remote(unused, settle))

    async def pause(self, seconds: float) -> None:
        await _answer(self._handle.pause.remote(seconds))

    async def watch(self, epoch: int, timeout: float) -> tuple[int, float]:
        ref = self._handle.watch.remote(epoch, timeout)
        try:
            state: tuple[int, float] = await _answer(ref, timeout + _CALL_TIMEOUT)
        except asyncio.CancelledError:
            # End the call at the coordinator too: Ray keeps an actor that has a call in
            # flight from exiting (and from running its shutdown hook) until the call ends.
            _ray().cancel(ref)
            raise
        return state

    async def join(self, member: str) -> None:
        await _answer(self._handle.join.remote(member))

    async def leave(self, member: str, unused: Unused, settle: float) -> None:
        await _answer(self._handle.leave.remote(member, unused, settle))

    async def spend_call(
        self, member: str, seq: int, spent: int, returned: int, need: int, want: int
    ) -> tuple[int, BookTotals]:
        answer: tuple[int, BookTotals] = await _answer(
            self._handle.spend_call.remote(member, seq, spent, returned, need, want)
        )
        return answer


def _spend_settings(limit: SpendLimit | None) -> dict[str, Any]:
    """The cluster settings of a spend limit given as a template."""
    if limit is None:
        return {}
    if not isinstance(limit, SpendLimit):
        raise TypeError(
            f"spend_limit must be a routmy_async.SpendLimit(max_units=...), not {limit!r}"
        )
    spend = limit.spend
    if spend.dollars is not None or spend.units is None:
        raise ValueError(
            "a cluster's spend limit counts quota units only: give SpendLimit(max_units=...) "
            "without max_dollars"
        )
    return {
        "spend_units": int(spend.units.limit * 10**6),
        "default_output_tokens": limit.default_output_tokens,
    }


async def _answer(ref: Any, timeout: float = _CALL_TIMEOUT) -> Any:
    return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout)
