"""Many requests at once: bounded concurrency, a per-batch rate budget, results as they end.

A runner task pulls the input lazily (one request per free slot, so a long generator never
sits in memory) and starts each request in an anyio task group; results travel through a
memory stream to the async generator, which therefore never yields while a task group or
cancel scope is open. That one task is the bridge between the generator and the group: the
generator cancels and awaits it when it is closed or cancelled.

Retries, the 429 pause and the client's ``RateLimit`` are the transport's: every attempt of
every item goes through them. A batch's own ``requests_per_minute``/``tokens_per_minute`` is a
second ``RateLimit`` that the transport applies to the batch's requests (a context variable
carries it into the batch's tasks), inside the client's budget.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from typing import TYPE_CHECKING, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ._auto_concurrency import AutoConcurrency, auto_concurrency_for, loss_listener
from ._checks import check_count
from ._concurrency import Readmission, attempt_lost, outcome_of
from ._exceptions import SpendLimitError
from ._http._ratelimit import RateLimit, batch_limit, batch_limits_running, estimate_tokens
from .types.chat import ChatCompletion

if TYPE_CHECKING:
    from ._tools import ChatCompletionsLike

__all__ = [
    "collect_in_order",
    "create_many",
    "create_many_iter",
    "estimate_tokens",
    "run_many",
]

logger = logging.getLogger("routmy_async")

ProgressCallback = Callable[[int, "int | None", int], None]
Result = ChatCompletion | BaseException
_LOG_EVERY = 5.0


class _Progress:
    def __init__(
        self,
        progress: bool | ProgressCallback | None,
        total: int | None,
        auto: AutoConcurrency | None = None,
    ):
        self.done = 0
        self.failed = 0
        self._total = total
        self._auto = auto
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
            if self._auto is not None:
                self._bar.set_postfix(failed=self.failed, level=self._auto.level, refresh=False)
            elif failed:
                self._bar.set_postfix(failed=self.failed)
        elif self._enabled:
            now = time.monotonic()
            if now - self._last_log >= _LOG_EVERY or self.done == self._total:
                self._last_log = now
                of = f"/{self._total}" if self._total is not None else ""
                logger.info(
                    "create_many: %d%s done, %d failed%s", self.done, of, self.failed, self._level()
                )

    def _level(self) -> str:
        auto = self._auto
        if auto is None:
            return ""
        return f", concurrency auto: level {auto.level} (max {auto.max_concurrency})"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        auto = self._auto
        if auto is not None and self._enabled and self._callback is None:
            logger.info(
                "create_many: concurrency auto ended at level %d (peak %d, max %d; %d loss "
                "signal(s), %d cut(s))",
                auto.level,
                auto.peak,
                auto.max_concurrency,
                auto.losses,
                auto.cuts,
            )


class _AutoSlots:
    """An adaptive level in the shape of the ``CapacityLimiter`` the runner uses: a slot per
    item index, handed back with the outcome its worker recorded."""

    def __init__(self, auto: AutoConcurrency):
        self.auto = auto
        self._tickets: dict[int, int] = {}
        self._outcomes: dict[int, Any] = {}

    def acquire_on_behalf_of_nowait(self, index: int) -> None:
        ticket = self.auto.try_start()
        if ticket is None:
            raise anyio.WouldBlock
        self._tickets[index] = ticket

    async def acquire_on_behalf_of(self, index: int) -> None:
        self._tickets[index] = await self.auto.start()

    def listener(self, index: int) -> Callable[[BaseException], Readmission | None]:
        return loss_listener(self.auto, self._tickets[index])

    def waiting(self, index: int, waiting: bool) -> None:
        """The item waits for spend room (``True``) or goes to the server again (``False``)."""
        ticket = self._tickets.get(index)
        if ticket is not None:
            if waiting:
                self.auto.off_server(ticket)
            else:
                self.auto.on_server(ticket)

    def record(self, index: int, result: Any) -> None:
        self._outcomes[index] = outcome_of(result)

    def release_on_behalf_of(self, index: int) -> None:
        self.auto.finish(self._tickets.pop(index), self._outcomes.pop(index, "neutral"))

    def close(self) -> None:
        """Hand back the slots of items whose results were never taken (a batch left
        early): an ``AutoConcurrency`` the user holds outlives the batch."""
        for index in list(self._tickets):
            self.release_on_behalf_of(index)


Slots = anyio.CapacityLimiter | _AutoSlots


def _check_options(
    concurrency: Any, max_concurrency: Any, rpm: Any, tpm: Any
) -> tuple[RateLimit | None, Slots]:
    """The batch's own budget and its slots; a bad value is refused before anything is
    pulled or sent."""
    auto = auto_concurrency_for(concurrency, max_concurrency)
    slots: Slots
    if auto is None:
        check_count("concurrency", concurrency, 1)
        slots = anyio.CapacityLimiter(concurrency)
    else:
        slots = _AutoSlots(auto)
    return _budget(rpm, tpm), slots


def _budget(rpm: Any, tpm: Any) -> RateLimit | None:
    if rpm is None and tpm is None:
        return None
    return RateLimit(requests_per_minute=rpm, tokens_per_minute=tpm)


async def _pull(
    requests: AsyncIterable[Mapping[str, Any]],
) -> AsyncGenerator[Mapping[str, Any], None]:
    async for item in requests:
        yield item


def _checked(index: int, request: Any) -> dict[str, Any]:
    if not isinstance(request, Mapping):
        raise TypeError(
            f"requests[{index}] must be a dict of keyword arguments, not {type(request).__name__}"
        )
    if request.get("stream"):
        raise ValueError(f"requests[{index}]: create_many does not stream")
    return dict(request)


class _Runner:
    """Starts the batch's requests under the limits and sends ``(index, result)`` pairs."""

    def __init__(
        self,
        call: Callable[..., Awaitable[Any]],
        requests: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
        *,
        slots: Slots,
        limits: RateLimit | None,
        send: MemoryObjectSendStream[tuple[int, Any]],
        stop_on_error: bool,
    ):
        self._call = call
        self._requests = requests
        self._slots = slots
        self._auto = slots if isinstance(slots, _AutoSlots) else None
        self._limits = limits
        self._send = send
        self._stop_on_error = stop_on_error
        self.stopped = False
        # An error of the input itself (a generator that raised): the batch's error, raised
        # as it is once the group has ended (not wrapped in an ExceptionGroup).
        self.input_error: Exception | None = None
        # Calls in flight, and the event the next one to end sets (see _call_within_spend).
        self._running = 0
        self._ended: anyio.Event | None = None

    async def run(self) -> None:
        if self._limits is None:
            await self._run()
            return
        batch_limit.set(self._limits)  # this task's context, inherited by its group
        batch_limits_running.count += 1
        try:
            await self._run()
        finally:
            batch_limits_running.count -= 1

    async def _run(self) -> None:
        requests = self._requests
        # A plain iterable is read with next(): no async generator step per item.
        items = None
        source = None
        if isinstance(requests, AsyncIterable):
            source = _pull(requests)
        else:
            items = iter(requests)
        try:
            # Items go to idle workers through a zero-size stream: a task per worker (at most
            # `concurrency`), not per item, which anyio makes costly (a scope and an event
            # each).
            work_send, work_receive = anyio.create_memory_object_stream[tuple[int, Any]](0)
            async with self._send, work_receive, anyio.create_task_group() as group, work_send:
                index = 0
                while True:
                    # A slot first, then the next request: the input is pulled no further
                    # ahead than the concurrency allows.
                    try:
                        self._slots.acquire_on_behalf_of_nowait(index)
                    except anyio.WouldBlock:
                        await self._slots.acquire_on_behalf_of(index)
                    if self.stopped:
                        break
                    try:
                        if items is not None:
                            request = next(items)
                        else:
                            assert source is not None
                            request = await source.__anext__()
                    except (StopIteration, StopAsyncIteration):
                        self._slots.release_on_behalf_of(index)
                        break
                    except Exception as exc:
                        self._slots.release_on_behalf_of(index)
                        self.input_error = exc
                        group.cancel_scope.cancel()
                        break
                    try:
                        work_send.send_nowait((index, request))  # a worker is waiting
                    except anyio.WouldBlock:
                        group.start_soon(self._worker, index, request, work_receive)
                    index += 1
        finally:
            if source is not None:
                with anyio.CancelScope(shield=True):
                    await source.aclose()
        if self.input_error is not None:
            raise self.input_error

    async def _worker(
        self, index: int, request: Any, work: MemoryObjectReceiveStream[tuple[int, Any]]
    ) -> None:
        """Run an item, then the next one handed over, until the input is done."""
        while True:
            await self._one(index, request)
            try:
                index, request = await work.receive()
            except anyio.EndOfStream:
                return

    async def _one(self, index: int, request: Any) -> None:
        auto = self._auto
        if auto is not None:
            # The transport tells the level of the 429s it retries within this item.
            token = attempt_lost.set(auto.listener(index))
        try:
            result: Any = await self._call_within_spend(index, _checked(index, request))
        except Exception as exc:  # the item's result: one failure never stops the others
            result = exc
            if self._stop_on_error:
                self.stopped = True
        if auto is not None:
            attempt_lost.reset(token)
            auto.record(index, result)
        try:
            self._send.send_nowait((index, result))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # the consumer has gone: the runner is being cancelled

    async def _call_within_spend(self, index: int, request: dict[str, Any]) -> Any:
        """The call; one the client's spend limit refuses while other calls of the batch are
        in flight is tried again when one of them ends (its settlement gives room back).
        Refused with none in flight, or for a cost it cannot compute, the refusal is the
        item's result: nothing was sent, and each later item is tried on its own."""
        while True:
            self._running += 1
            sent = True
            try:
                return await self._call(**request)
            except SpendLimitError as refused:
                sent = False
                if refused.missing is not None or self._running == 1:
                    raise
            finally:
                self._running -= 1
                ended = self._ended
                # Only an attempt that was sent can give room back; a refusal wakes the
                # waiters only when no call is left to do it (each then tries once alone).
                # Refusals waking each other would go round forever when refusing awaits
                # (a cluster's limit asks its coordinator).
                if ended is not None and (sent or not self._running):
                    self._ended = None
                    ended.set()
            if self._ended is None:
                self._ended = anyio.Event()
            auto = self._auto
            if auto is not None:
                auto.waiting(
                    index, True
                )  # not the server's doing: the level must not learn from it
            try:
                await self._ended.wait()  # set by the next call of the batch that ends
            finally:
                if auto is not None:
                    auto.waiting(index, False)


async def run_many(
    call: Callable[..., Awaitable[Any]],
    requests: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
    *,
    concurrency: int | str | AutoConcurrency,
    requests_per_minute: float | None,
    tokens_per_minute: float | None,
    progress: bool | ProgressCallback | None,
    stop_on_error: bool = False,
    max_concurrency: int | None = None,
) -> AsyncGenerator[tuple[int, Any], None]:
    """Call ``call(**request)`` for each request under the limits; yield ``(index, result)``
    as each one ends.

    A result is the call's return value or the exception it raised (retries are the
    transport's). With ``stop_on_error`` the first failure stops new starts. Leaving the loop
    early, or cancelling the caller, cancels every call in flight. ``concurrency="auto"`` (or
    an ``AutoConcurrency``) lets the number in flight find its own level, up to
    ``max_concurrency``.
    """
    limits, slots = _check_options(
        concurrency, max_concurrency, requests_per_minute, tokens_per_minute
    )
    if isinstance(requests, (str, bytes, Mapping)) or not isinstance(
        requests, (Iterable, AsyncIterable)
    ):
        raise TypeError(
            "requests must be a list (or any iterable or async iterable) of keyword dicts "
            f"for create, not {type(requests).__name__}"
        )
    total = len(requests) if isinstance(requests, (list, tuple)) else None
    auto = slots if isinstance(slots, _AutoSlots) else None
    meter = _Progress(progress, total, None if auto is None else auto.auto)
    # Unbounded, yet never holding more than `concurrency` results: a slot is only freed
    # once the consumer has taken the item's result.
    send, receive = anyio.create_memory_object_stream[tuple[int, Any]](math.inf)
    runner = _Runner(
        call, requests, slots=slots, limits=limits, send=send, stop_on_error=stop_on_error
    )
    # The bridge: the group lives in this task, the generator yields outside it.
    task = asyncio.ensure_future(runner.run())
    try:
        with receive:
            while True:
                try:
                    index, result = receive.receive_nowait()
                except anyio.WouldBlock:
                    try:
                        index, result = await receive.receive()
                    except anyio.EndOfStream:
                        break
                except anyio.EndOfStream:
                    break
                slots.release_on_behalf_of(index)
                meter.update(isinstance(result, BaseException))
                yield index, result
        await task  # an input that raised: its error is the batch's
    finally:
        meter.close()
        if not task.done():
            task.cancel()
        # Wait for the cancelled calls to release their connections, even when the caller
        # itself is being cancelled.
        with anyio.CancelScope(shield=True):
            await asyncio.wait((task,))
        if not task.cancelled():
            task.exception()  # retrieved here; raised above when it mattered
        if auto is not None:
            auto.close()


def create_many_iter(
    self: ChatCompletionsLike,
    requests: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
    *,
    concurrency: int | str | AutoConcurrency = 16,
    max_concurrency: int | None = None,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    progress: bool | ProgressCallback | None = None,
) -> AsyncGenerator[tuple[int, Result], None]:
    """Run many ``create`` calls; yield ``(index, completion or exception)`` as each ends."""
    return run_many(
        self.create,
        requests,
        concurrency=concurrency,
        max_concurrency=max_concurrency,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        progress=progress,
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
    self: ChatCompletionsLike,
    requests: Iterable[Mapping[str, Any]] | AsyncIterable[Mapping[str, Any]],
    *,
    concurrency: int | str | AutoConcurrency = 16,
    max_concurrency: int | None = None,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    return_exceptions: bool = True,
    progress: bool | ProgressCallback | None = None,
) -> list[Result]:
    """Run many ``create`` calls and return their results in input order."""
    iterator = run_many(
        self.create,
        requests,
        concurrency=concurrency,
        max_concurrency=max_concurrency,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        progress=progress,
        stop_on_error=not return_exceptions,
    )
    return await collect_in_order(iterator, return_exceptions=return_exceptions)
