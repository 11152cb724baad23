"""One actor's event loop, client and share of the budget, and the key from its environment.

The loop runs in a daemon thread of the actor and the client lives on it; a ``Runtime`` is
closed once, from whichever thread lets it go (usually Ray's, in its graceful exit; the
loop's own when a collection happens there).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol, TypeVar

from ..._client import AsyncRoutmy
from ..._exceptions import RoutmyError
from ..._http._redact import SECRET_HEADERS
from ..._spend import SpendLimit
from ._cluster_spend import ClusterSpendLimit
from ._limit import ClusterRateLimit

__all__ = ["BudgetSource", "Runtime", "check_headers", "read_api_key"]

logger = logging.getLogger("routmy_async")

T = TypeVar("T")

# How long closing may take before the actor goes on exiting without it.
_CLOSE_TIMEOUT = 10.0


class BudgetSource(Protocol):
    """Anything that builds a ``ClusterRateLimit`` for the process it is in (``ClusterBudget``)."""

    def rate_limit(self) -> ClusterRateLimit:
        """A new rate limit for one client, spending the shared budget."""
        ...

    def client_spend_limit(self) -> SpendLimit | None:
        """A new spend limit for one client, reserving from the shared one (if any)."""
        ...


MakeClient = Callable[[ClusterRateLimit | None, SpendLimit | None], AsyncRoutmy]


def read_api_key(variable: str) -> str:
    """The key from the environment: ``variable``, else the file named by ``<variable>_FILE``.

    Warns (once per process) when the key itself came in a Ray runtime env's ``env_vars``.

    :raises RoutmyError: neither is set (naming the variables, never a value).
    """
    key = os.environ.get(variable, "").strip()
    if key:
        _warn_if_in_runtime_env(variable)
        return key
    path = os.environ.get(f"{variable}_FILE", "").strip()
    if path:
        try:
            with open(path, encoding="utf-8") as file:
                key = file.read().strip()
        except OSError as exc:
            raise RoutmyError(
                f"{variable}_FILE names a file that cannot be read ({type(exc).__name__})"
            ) from None
        if key:
            return key
    raise RoutmyError(
        f"no API key in this worker's environment: set {variable} (or {variable}_FILE, the "
        "path of a file holding it) in the environment of the Ray nodes; the key is never "
        "passed as an argument"
    )


_warned: set[str] = set()


def _warn_if_in_runtime_env(variable: str) -> None:
    """Say so when the key came in ``runtime_env={"env_vars": ...}``: Ray's runtime-env
    agent writes those values to ``runtime_env_agent.log`` in the clear (Ray 2.60), which
    we cannot undo from here, only point out. Ray is looked up, never imported, and asked
    only when connected: ``get_runtime_context()`` would otherwise start a local Ray."""
    ray = sys.modules.get("ray")
    if ray is None or variable in _warned:
        return
    try:
        if not ray.is_initialized():
            return
        env_vars = ray.get_runtime_context().runtime_env.get("env_vars") or {}
    except Exception:  # not connected, or another Ray's API: nothing to check
        return
    if variable in env_vars:
        _warned.add(variable)
        # A warning, not a log line: the package's logger has only a NullHandler unless the
        # application configures logging, and a Ray worker's stderr reaches the driver.
        warnings.warn(
            f"{variable} came in a Ray runtime_env's env_vars, which Ray writes to its logs "
            "(runtime_env_agent.log) in the clear: set it where the Ray nodes start, or put "
            f"{variable}_FILE (the path of a file holding the key) in the runtime env instead",
            UserWarning,
            stacklevel=2,
        )


def check_headers(name: str, headers: Any) -> None:
    if headers is None:
        return
    if not isinstance(headers, Mapping):
        raise TypeError(f"{name} must be a dict of header names and values")
    for header in headers:
        if str(header).lower() in SECRET_HEADERS:
            raise ValueError(
                f"{name} must not carry {header!r}: arguments travel through Ray in the clear; "
                "the key comes from the environment"
            )


class _Loop:
    """An event loop running in a daemon thread of the actor."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="routmy-ray-loop", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        loop = self.loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            # Stopped: whatever still runs is cancelled and awaited, then the loop closes
            # here, in its own thread.
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def run(self, work: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``work`` on the loop and wait for its result in the calling thread."""
        future = asyncio.run_coroutine_threadsafe(work, self.loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()  # a cancelled Ray task must not leave requests running
            raise

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def stop(self) -> None:
        """Stop the loop; from another thread, wait (briefly) for it to close."""
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if not self.in_loop_thread:
            self._thread.join(_CLOSE_TIMEOUT)


class Runtime:
    """One actor's loop, client and share of the budget; closed once, from any thread."""

    def __init__(self, make_client: MakeClient, budget: BudgetSource | None):
        self._loop = _Loop()
        self._lock = threading.Lock()
        self._closed = False
        self.spend: SpendLimit | None = None
        try:
            self.client, self.limit = self._loop.run(self._open(make_client, budget))
        except BaseException:
            self._loop.stop()
            raise

    async def _open(
        self, make_client: MakeClient, budget: BudgetSource | None
    ) -> tuple[AsyncRoutmy, ClusterRateLimit | None]:
        limit = budget.rate_limit() if budget is not None else None
        if limit is not None:
            await limit.join()  # no watch yet: an idle actor keeps no call in flight
        self.spend = budget.client_spend_limit() if budget is not None else None
        return make_client(limit, self.spend), limit

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        if self._closed:
            work.close()
            raise RuntimeError("this step is closed")
        return self._loop.run(work)

    def close(self) -> None:
        """Close the client, give the budget back, stop the loop (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._loop.in_loop_thread:
            # Collected on its own loop's thread, which cannot wait for itself: close in a
            # task, and stop the loop when that is done.
            task = self._loop.loop.create_task(self._aclose())
            task.add_done_callback(lambda _: self._loop.stop())
            return
        try:
            self._loop.run(self._aclose(), timeout=_CLOSE_TIMEOUT)
        except (Exception, concurrent.futures.CancelledError) as exc:
            logger.warning("ray step: closing the client failed: %s", type(exc).__name__)
        finally:
            self._loop.stop()

    async def _aclose(self) -> None:
        try:
            await self.client.close()
        finally:
            try:
                if isinstance(self.spend, ClusterSpendLimit):
                    await self.spend.aclose()  # what it holds unused goes back
            finally:
                if self.limit is not None:
                    await self.limit.aclose()
