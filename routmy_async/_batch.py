"""Many requests at once: bounded concurrency, request and token rate limits, shared backoff.

The input is pulled lazily, one request per free slot, so a long generator of requests never
sits in memory. Requests run as plain asyncio tasks (aiohttp is asyncio-only) and results
travel through a queue, so the async generator never yields while a cancel scope is open.
Retries happen here rather than in the transport: a 429 seen by one request pauses the
start of every request, which is what a rate-limited server wants.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from typing import TYPE_CHECKING, Any

from . import _retry
from ._exceptions import APIConnectionError, APIStatusError, RateLimitError
from .types.chat import ChatCompletion

if TYPE_CHECKING:
    from .resources.chat import Completions

__all__ = [
    "BatchLimits",
    "collect_in_order",
    "create_many",
    "create_many_iter",
    "estimate_tokens",
    "run_many",
]

logger = logging.getLogger("routmy_async")

ProgressCallback = Callable[[int, "int | None", int], None]
Result = ChatCompletion | BaseException
_DEFAULT_COMPLETION_ESTIMATE = 256
_LOG_EVERY = 5.0


def estimate_tokens(request: Mapping[str, Any]) -> int:
    """A rough token count for a request: prompt characters / 4 plus the completion budget."""
    characters = 0
    for message in request.get("messages") or ():
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            characters += len(content)
        elif isinstance(content, list):
            characters += sum(
                len(part.get("text", "")) for part in content if isinstance(part, Mapping)
            )
    budget = request.get("max_tokens") or request.get("max_completion_tokens")
    if not isinstance(budget, int):
        budget = _DEFAULT_COMPLETION_ESTIMATE
    return characters // 4 + 1 + budget


class BatchLimits:
    """Start times for a batch: request spacing, a token bucket and a shared pause.

    Times come from ``clock`` (monotonic seconds), so the policy is testable without waiting.
    """

    def __init__(
        self,
        *,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self._tokens_per_second = tokens_per_minute / 60.0 if tokens_per_minute else 0.0
        self._capacity = float(tokens_per_minute or 0.0)
        self._tokens = self._capacity
        self._clock = clock
        self._refilled_at = clock()
        self._next_start = 0.0
        self.paused_until = 0.0

    def _refill(self, now: float) -> None:
        if self._tokens_per_second:
            self._tokens = min(
                self._capacity, self._tokens + (now - self._refilled_at) * self._tokens_per_second
            )
        self._refilled_at = now

    def wait_before_start(self, estimate: int) -> float:
        """Reserve a start for a request of ``estimate`` tokens; return how long to wait first."""
        now = self._clock()
        start = max(now, self._next_start, self.paused_until)
        if self._tokens_per_second:
            self._refill(now)
            wanted = min(float(estimate), self._capacity)
            missing = wanted - self._tokens
            if missing > 0:
                start = max(start, now + missing / self._tokens_per_second)
            self._tokens -= wanted
        if self._interval:
            self._next_start = start + self._interval
        return max(0.0, start - now)

    def correct_tokens(self, estimate: int, actual: int) -> None:
        """Give back (or take) the difference between the estimate and the real usage."""
        if self._tokens_per_second:
            self._refill(self._clock())
            self._tokens = min(
                self._capacity, self._tokens + min(estimate, self._capacity) - actual
            )

    def pause(self, seconds: float) -> None:
        """Hold every new start (and retry) for ``seconds``: a 429 slows the whole batch."""
        self.paused_until = max(self.paused_until, self._clock() + seconds)

    def pause_remaining(self) -> float:
        return max(0.0, self.paused_until - self._clock())


class _Progress:
    def __init__(self, progress: bool | ProgressCallback | None, total: int | None):
        self.done = 0
        self.failed = 0
        self._total = total
        self._callback: ProgressCallback | None = None
        self._bar: Any = None
        self._last_log = time.monotonic()
        if callable(progress):
            self._callback = progress
        elif progress:
            try:
                from tqdm import tqdm
            except ImportError:
                self._bar = None
                self._log = True
            else:
                self._bar = tqdm(total=total, unit="req", desc="routmy")
        self._enabled = bool(progress)

    def update(self, failed: bool) -> None:
        self.done += 1
        self.failed += int(failed)
        if self._callback is not None:
            self._callback(self.done, self._total, self.failed)
        elif self._bar is not None:
            self._bar.update(1)
            if failed:
                self._bar.set_postfix(failed=self.failed)
        elif self._enabled:
            now = time.monotonic()
            if now - self._last_log >= _LOG_EVERY or self.done == self._total:
                self._last_log = now
                of = f"/{self._total}" if self._total is not None else ""
                logger.info("create_many: %d%s done, %d failed", self.done, of, self.failed)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _check_options(concurrency: Any, rpm: Any, tpm: Any) -> None:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency must be an int >= 1, not {concurrency!r}")
    for name, value in (("requests_per_minute", rpm), ("tokens_per_minute", tpm)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0
        ):
            raise ValueError(f"{name} must be a positive number or None, not {value!r}")


async def _pull(
    requests: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
) -> AsyncIterator[Mapping[str, Any]]:
    if isinstance(requests, AsyncIterable):
        async for item in requests:
            yield item
    else:
        for item in requests:
            yield item


def _retry_wait(error: BaseException, attempt: int) -> float | None:
    """How long to wait before retrying a failed item, or None if it should not be retried."""
    if isinstance(error, APIStatusError):
        if not _retry.should_retry_status(error.status_code, error.headers):
            return None
        if _retry.retry_after_too_long(error.headers, now=time.time()):
            return None
        return _retry.retry_delay(attempt, error.headers, now=time.time())
    if isinstance(error, APIConnectionError):
        return _retry.backoff_delay(attempt)
    return None


async def run_many(
    call: Callable[..., Awaitable[Any]],
    requests: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
    *,
    concurrency: int,
    requests_per_minute: float | None,
    tokens_per_minute: float | None,
    progress: bool | ProgressCallback | None,
    max_retries: int,
    estimate: Callable[[Mapping[str, Any]], int] = estimate_tokens,
) -> AsyncGenerator[tuple[int, Any], None]:
    """Call ``call(**request)`` for each request under the limits; yield ``(index, result)``.

    A result is the call's return value or the exception it raised once retries were spent.
    Leaving the loop early, or cancelling the caller, cancels every call in flight.
    """
    _check_options(concurrency, requests_per_minute, tokens_per_minute)
    total = len(requests) if isinstance(requests, (list, tuple)) else None
    limits = BatchLimits(
        requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute
    )
    meter = _Progress(progress, total)
    results: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()
    tasks: set[asyncio.Task[None]] = set()

    async def one(index: int, request: dict[str, Any], estimated: int) -> None:
        retries = request.pop("max_retries", max_retries)
        attempt = 0
        while True:
            pause = limits.pause_remaining()
            if pause:
                await asyncio.sleep(pause)
            try:
                result: Any = await call(**request, max_retries=0)
            except Exception as exc:
                wait = _retry_wait(exc, attempt) if attempt < retries else None
                if wait is None:
                    result = exc
                else:
                    attempt += 1
                    if isinstance(exc, RateLimitError):
                        limits.pause(wait)
                    else:
                        await asyncio.sleep(wait)
                    continue
            break
        usage = getattr(result, "usage", None)
        if usage is not None and isinstance(getattr(usage, "total_tokens", None), int):
            limits.correct_tokens(estimated, usage.total_tokens)
        results.put_nowait((index, result))

    source = _pull(requests)
    exhausted = False
    in_flight = 0
    started = 0
    try:
        while True:
            while not exhausted and in_flight < concurrency:
                try:
                    request = await source.__anext__()
                except StopAsyncIteration:
                    exhausted = True
                    break
                if not isinstance(request, Mapping):
                    raise TypeError(
                        f"requests[{started}] must be a dict of keyword arguments, "
                        f"not {type(request).__name__}"
                    )
                if request.get("stream"):
                    raise ValueError(f"requests[{started}]: create_many does not stream")
                estimated = estimate(request)
                wait = limits.wait_before_start(estimated)
                if wait:
                    await asyncio.sleep(wait)
                task = asyncio.create_task(one(started, dict(request), estimated))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                started += 1
                in_flight += 1
            if in_flight == 0:
                break
            index, result = await results.get()
            in_flight -= 1
            meter.update(isinstance(result, BaseException))
            yield index, result
    finally:
        meter.close()
        for task in tasks:
            task.cancel()
        if tasks:
            # Wait for the cancelled calls to release their connections, even if the
            # caller itself is being cancelled.
            await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))


def create_many_iter(
    self: Completions,
    requests: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
    *,
    concurrency: int = 16,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    progress: bool | ProgressCallback | None = None,
) -> AsyncGenerator[tuple[int, Result], None]:
    """Run many ``create`` calls; yield ``(index, completion or exception)`` as each ends."""
    return run_many(
        self.create,
        requests,
        concurrency=concurrency,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        progress=progress,
        max_retries=self._client.max_retries,
    )


async def collect_in_order(
    iterator: AsyncGenerator[tuple[int, Any], None], *, return_exceptions: bool
) -> list[Any]:
    """Gather ``(index, result)`` pairs into a list in input order.

    :raises BaseException: the first failure, when ``return_exceptions`` is false (the rest
        are cancelled first).
    """
    results: dict[int, Any] = {}
    try:
        async for index, result in iterator:
            if isinstance(result, BaseException) and not return_exceptions:
                raise result
            results[index] = result
    finally:
        await iterator.aclose()
    return [results[index] for index in range(len(results))]


async def create_many(
    self: Completions,
    requests: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
    *,
    concurrency: int = 16,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    return_exceptions: bool = True,
    progress: bool | ProgressCallback | None = None,
) -> list[Result]:
    """Run many ``create`` calls and return their results in input order."""
    iterator = create_many_iter(
        self,
        requests,
        concurrency=concurrency,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        progress=progress,
    )
    return await collect_in_order(iterator, return_exceptions=return_exceptions)
