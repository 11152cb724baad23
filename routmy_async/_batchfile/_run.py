"""Running a batch file: lock, read back, validate, send, write, compact.

The order is what makes a run safe to start again at any moment:

1. take the lock on the output (and errors) file, so no other run writes there;
2. read the output back (cutting a torn last line) into the set of done ids;
3. validate the whole input; an invalid file sends nothing (unless told to skip bad lines);
4. stream the validated bytes of the input again (checked against what was validated, block
   by block), skipping done ids, through ``run_many`` (the client's limiter, rate budgets
   and retries), writing each result as one whole line as it ends;
5. after a run that was not interrupted, drop the failure lines superseded by a later line
   (compaction): a line written by this run, or an earlier success.

The long passes (2, 3, 5) run in a worker thread and look at the stop request every few
thousand lines. Requests run under a cancel scope: a stop request sets its deadline to the
grace period (the second one cancels it), while the input generator stops handing out new
lines; a budget that is reached only does the latter.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
import time
from array import array
from collections.abc import AsyncGenerator, Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import msgspec

from .._auto_concurrency import AutoConcurrency, auto_concurrency_for
from .._batch import run_many
from .._checks import check_count, is_number
from .._config import DEFAULT_BASE_URL, is_routmy_url
from .._exceptions import RoutmyError, SpendLimitError
from .._http._ratelimit import RateLimit
from .._spend import SpendLimit, SpendSnapshot
from ._control import BatchFileError, BatchStop
from ._files import (
    Appender,
    FileLock,
    InputFile,
    Stopped,
    compact_file,
    compacting_path,
    scan_file,
)
from ._idset import FingerprintCollector, fingerprint
from ._journal import JournaledLimit, read_journal
from ._lines import (
    Endpoint,
    answer_state,
    call_kwargs,
    decode_input,
    endpoint_for,
    failure_line,
    is_fatal,
    request_of,
    success_line,
    usage_of,
)
from ._requested import RequestModels, read_request_models
from ._resume import ModelUsage, Resume, ResumeState
from ._summary import (
    BatchCheck,
    BatchSummary,
    finish,
    format_money,
    record_failure,
    record_incomplete,
    record_ok,
    start_requests,
)
from ._validate import check_input

if TYPE_CHECKING:
    from .._client import AsyncRoutmy

__all__ = ["BatchRun", "check_only"]

logger = logging.getLogger("routmy_async")

T = TypeVar("T")
Progress = Callable[[BatchSummary], None]
_BOM = b"\xef\xbb\xbf"
_SPACE = frozenset((b"", b" ", b"\t", b"\r", b"\n"))  # first bytes of a line that may be blank
_encode_json = msgspec.json.Encoder().encode
_LOG_EVERY = 5.0
_POSTFIX_EVERY = 0.5


async def _in_thread(function: Callable[..., T], *args: Any, stop: BatchStop, **kwargs: Any) -> T:
    """Run ``function(*args, should_stop=..., **kwargs)`` in a worker thread.

    ``should_stop`` turns true on a stop request, and when the caller is cancelled; a
    cancelled caller still waits for the thread to notice, so no file is touched after this
    returns.
    """
    abort = threading.Event()

    def should_stop() -> bool:
        return abort.is_set() or stop.requested

    call = functools.partial(function, *args, should_stop=should_stop, **kwargs)
    future = asyncio.get_running_loop().run_in_executor(None, call)
    try:
        return await asyncio.shield(future)
    except BaseException:
        abort.set()
        with anyio.CancelScope(shield=True):
            await asyncio.wait((future,))
        if not future.cancelled():  # pragma: no branch - shielded, it is never cancelled
            future.exception()  # retrieved: the caller's error is the one that counts
        raise


def _read_resume(
    paths: list[Path],
    *,
    repair: bool,
    should_stop: Callable[[], bool],
    requested: RequestModels | None = None,
) -> Resume:
    state = ResumeState(None if requested is None else requested.model_of)
    for path in paths:
        scan = scan_file(path, state, repair=repair, should_stop=should_stop)
        if scan.torn:
            logger.warning(
                "%s: the last line (%d bytes) was cut short by an earlier run; %s",
                path,
                scan.torn,
                "removed, its request is sent again" if repair else "a run removes it",
            )
    return state.finish()


def _paths(
    input_file: str | os.PathLike[str],
    output_file: str | os.PathLike[str] | None,
    errors_file: str | os.PathLike[str] | None,
) -> tuple[Path, list[Path]]:
    source = Path(input_file)
    outputs = [Path(path) for path in (output_file, errors_file) if path is not None]
    if not source.is_file():
        raise BatchFileError(f"{source}: no such input file")
    resolved = [path.resolve() for path in outputs]
    if source.resolve() in resolved:
        raise BatchFileError(f"{source}: the input file cannot also be an output file")
    if len(set(resolved)) < len(resolved):
        raise BatchFileError("the errors file must not be the output file")
    return source, outputs


async def check_only(
    input_file: str | os.PathLike[str],
    *,
    endpoint: str | None,
    output_file: str | os.PathLike[str] | None,
    errors_file: str | os.PathLike[str] | None,
    retry_failed: bool,
    base_url: str | None = None,
) -> BatchCheck:
    """Validate a file and count what a run over ``output_file`` would send (reads only);
    ``base_url`` (default: ``ROUTMY_BASE_URL``, then rout.my's) is the server's."""
    if base_url is None:
        base_url = os.environ.get("ROUTMY_BASE_URL") or DEFAULT_BASE_URL
    default = endpoint_for(endpoint) if endpoint is not None else None
    path, outputs = _paths(input_file, output_file, errors_file)
    stop = BatchStop()
    resume = await _in_thread(_read_resume, outputs, repair=False, stop=stop) if outputs else None
    source = InputFile(path)
    try:
        return await _in_thread(
            check_input,
            source,
            endpoint=default,
            resume=resume,
            retry_failed=retry_failed,
            stateless_responses=is_routmy_url(base_url),
            stop=stop,
        )
    finally:
        source.close()


def _invalid_file(path: Path, check: BatchCheck) -> BatchFileError:
    """The error of a file with invalid lines; its message lists the first ones, as a
    traceback is often all a user sees."""
    listed = "\n".join(f"  {line}" for line in check.format_problems(limit=10))
    return BatchFileError(
        f"{path}: {check.invalid:,} invalid line(s); nothing was sent (fix them, or skip "
        f"them with skip_invalid=True / --skip-invalid):\n{listed}",
        problems=check.problems,
        check=check,
    )


class _Item:
    """A line on its way: its id, the method that sends it and its arguments; ``retry``
    when an earlier run left a failure line for it."""

    __slots__ = ("call", "custom_id", "kwargs", "retry")

    def __init__(
        self, custom_id: str, call: Callable[..., Any], kwargs: dict[str, Any], retry: bool
    ):
        self.custom_id = custom_id
        self.call = call
        self.kwargs = kwargs
        self.retry = retry


class _Meter:
    """Progress: a callable gets the live summary; ``True`` shows a tqdm bar (the
    ``progress`` extra) or logs a line every few seconds."""

    def __init__(self, progress: bool | Progress | None, summary: BatchSummary):
        self._summary = summary
        self._callback = progress if callable(progress) else None
        self._bar: Any = None
        self._log = False
        self._last = 0.0  # the first result shows at once
        if self._callback is None and progress:
            try:
                from tqdm import tqdm
            except ImportError:
                self._log = True
            else:
                self._bar = tqdm(total=summary.to_run, unit="req", desc="batch", smoothing=0.05)

    def _postfix(self) -> str:
        summary = self._summary
        auto = summary.auto_concurrency
        return (
            f"failed={summary.failed:,}, tokens={summary.total_tokens:,}, "
            f"cost={'unknown' if summary.cost_unknown else format_money(summary.cost)}"
            + ("" if auto is None else f", level={auto.level}")
        )

    def update(self) -> None:
        if self._callback is not None:
            self._callback(self._summary)
            return
        if self._bar is None and not self._log:
            return
        now = time.monotonic()
        if self._bar is not None:
            self._bar.update(1)
            if now - self._last >= _POSTFIX_EVERY:
                self._last = now
                self._bar.set_postfix_str(self._postfix(), refresh=False)
        elif now - self._last >= _LOG_EVERY:
            self._last = now
            logger.info("%s", self._summary.progress_line())

    def close(self) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.close()
        elif self._log:
            logger.info("%s", self._summary.progress_line())


def _check_options(
    client: AsyncRoutmy,
    *,
    concurrency: int | str | AutoConcurrency,
    max_concurrency: int | None,
    requests_per_minute: float | None,
    tokens_per_minute: float | None,
    max_cost: float | None,
    max_units: float | None,
    default_output_tokens: int | None,
    stop: BatchStop | None,
    grace_period: float,
) -> AutoConcurrency | None:
    """Refuse a bad option before anything is read, so a mistake costs no request; return
    the adaptive level of ``concurrency="auto"``."""
    auto = auto_concurrency_for(concurrency, max_concurrency)
    if auto is None:
        check_count("concurrency", concurrency, 1)
    # Built only to check the values: run_many builds the batch's own budget.
    RateLimit(requests_per_minute=requests_per_minute, tokens_per_minute=tokens_per_minute)
    if default_output_tokens is not None:
        check_count("default_output_tokens", default_output_tokens, 1)
    for name, value in (
        ("max_cost", max_cost),
        ("max_units", max_units),
        ("grace_period", grace_period),
    ):
        if value is not None and (not is_number(value) or not value >= 0):
            raise ValueError(f"{name} must be a number >= 0, not {value!r}")
    if stop is not None and not isinstance(stop, BatchStop):
        raise TypeError(f"stop must be a BatchStop, not {type(stop).__name__}")
    if max_cost is not None and is_routmy_url(client.base_url):
        raise BatchFileError(
            f"max_cost cannot be enforced against {client.base_url}: rout.my lists no "
            "prices and reports no usage.cost (a request costs tokens times the model's "
            "token_multiplier, in quota units, not dollars); nothing was read or sent. "
            "Limit its quota units with max_units (--max-units) instead"
        )
    if not client.api_key_set:
        raise RoutmyError(
            "no API key: pass AsyncRoutmy(api_key=...) or set the ROUTMY_API_KEY "
            "environment variable (nothing was sent)"
        )
    return auto


def _summary_for(
    source: Path, outputs: Sequence[Path], max_cost: float | None, max_units: float | None
) -> BatchSummary:
    errors = str(outputs[1]) if len(outputs) > 1 else None
    summary = BatchSummary(str(source), str(outputs[0]), errors, max_cost=max_cost)
    summary.max_units = max_units
    return summary


class BatchRun:
    """One run of :func:`run_batch_file` (its arguments, checked when it is built)."""

    # The state a run starts from, as immutable defaults that each instance's own values
    # shadow once the run sets them.
    _scope: anyio.CancelScope | None = None
    _stopping = False
    _output: Appender | None = None
    _errors: Appender | None = None
    # max_cost / max_units: the run's spend limit, and the client that reserves in it.
    _limit: JournaledLimit | None = None
    _spent_before: SpendSnapshot | None = None
    _sender: AsyncRoutmy | None = None
    # Lines being sent, and the event the next one to end sets (see _call).
    _sending = 0
    _call_ended: asyncio.Event | None = None
    # What ends the run in a BatchFileError once the requests in flight are written.
    _error: str | None = None
    _serial = 0

    def __init__(
        self,
        client: AsyncRoutmy,
        input_file: str | os.PathLike[str],
        output_file: str | os.PathLike[str],
        *,
        errors_file: str | os.PathLike[str] | None,
        endpoint: str | None,
        concurrency: int | str | AutoConcurrency,
        max_concurrency: int | None,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        max_cost: float | None,
        retry_failed: bool,
        skip_invalid: bool,
        progress: bool | Progress | None,
        stop: BatchStop | None,
        grace_period: float,
        max_units: float | None = None,
        default_output_tokens: int | None = None,
    ):
        auto = _check_options(
            client,
            concurrency=concurrency,
            max_concurrency=max_concurrency,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
            max_cost=max_cost,
            max_units=max_units,
            default_output_tokens=default_output_tokens,
            stop=stop,
            grace_period=grace_period,
        )
        self._client = client
        self._default = endpoint_for(endpoint) if endpoint is not None else None
        self._source, self._outputs = _paths(input_file, output_file, errors_file)
        self._concurrency = concurrency if auto is None else auto
        self._rpm = requests_per_minute
        self._tpm = tokens_per_minute
        self._max_cost = max_cost
        self._max_units = max_units
        self._default_output = default_output_tokens
        self._retry_failed = retry_failed
        self._skip_invalid = skip_invalid
        # Line numbers the run skips (invalid lines and later duplicates), when told to skip.
        self._bad_lines: array[int] = array("Q")
        self._progress = progress
        self._stop = stop if stop is not None else BatchStop()
        self._grace = float(grace_period)
        self.summary = _summary_for(self._source, self._outputs, max_cost, max_units)
        self.summary.auto_concurrency = auto
        # The clock of the scope's deadline, taken inside the run: a stop requested from a
        # signal handler runs outside any task, where anyio.current_time() cannot.
        self._now: Callable[[], float] = time.monotonic
        self._methods: dict[str, Callable[..., Any]] = {}
        # Ids of earlier failure lines that this run has written a new line for: only those
        # lines are superseded (an id queued for a retry but never sent keeps its line).
        self._retried = FingerprintCollector()
        # Line ids unique across runs: a random part per run, then a counter (_serial).
        self._id_prefix = f"batch_req_{os.urandom(6).hex()}"

    # -- the run ------------------------------------------------------------------------------

    async def run(self) -> BatchSummary:
        summary = self.summary
        unlisten = self._stop.add_listener(self._on_stop)
        try:
            with ExitStack() as held:
                for path in self._outputs:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    # The file a symlink points to is the one written: two links to one
                    # file must not let two runs append to it at once.
                    lock = FileLock(path.resolve())
                    lock.acquire()
                    held.callback(lock.release)
                    # A compaction cut short by a crash leaves its new file: the original
                    # was never replaced, so the half-written copy goes.
                    compacting_path(path).unlink(missing_ok=True)
                source = InputFile(self._source)
                held.callback(source.close)
                try:
                    resume = await _in_thread(
                        _read_resume,
                        self._outputs,
                        repair=True,
                        stop=self._stop,
                        requested=await self._request_models(),
                    )
                    check = await _in_thread(
                        check_input,
                        source,
                        endpoint=self._default,
                        resume=resume,
                        retry_failed=self._retry_failed,
                        bad_lines=self._bad_lines if self._skip_invalid else None,
                        estimate=False,
                        stateless_responses=is_routmy_url(self._client.base_url),
                        stop=self._stop,
                    )
                except Stopped:
                    summary.stop_reason = "interrupted"
                    finish(summary)
                    return summary
                if check.invalid and not self._skip_invalid:
                    raise _invalid_file(self._source, check)
                self._plan(check)
                summary.cost_before = resume.cost
                if check.to_run and (self._max_cost is not None or self._max_units is not None):
                    await self._start_budget(resume, check)
                if self._stop.requested:
                    summary.stop_reason = "interrupted"
                else:
                    await self._send_all(check, resume, source)
                    await self._compact(resume)
        finally:
            unlisten()
            if self._limit is not None:
                self._limit.close_journal()  # a run stopped before it sent anything
        finish(summary)
        if self._error is not None:
            raise BatchFileError(self._error, summary=summary)
        return summary

    async def _request_models(self) -> RequestModels | None:
        """The model each input line named, which prices the answers already in the output
        under a budget (``None``: no budget, or no output to price)."""
        if self._max_cost is None and self._max_units is None:
            return None
        if not any(path.is_file() and path.stat().st_size for path in self._outputs):
            return None
        return await _in_thread(read_request_models, self._source, stop=self._stop)

    def _plan(self, check: BatchCheck) -> None:
        summary = self.summary
        summary.lines = check.valid
        summary.to_run = check.to_run
        summary.skipped = check.done
        summary.skipped_failed = 0 if self._retry_failed else check.failed_before
        summary.invalid = check.invalid

    async def _send_all(self, check: BatchCheck, resume: Resume, source: InputFile) -> None:
        summary = self.summary
        self._output = Appender(self._outputs[0])
        if len(self._outputs) > 1:
            self._errors = Appender(self._outputs[1])
        meter = _Meter(self._progress, summary)
        items = self._items(check, resume, source)
        results = run_many(
            self._call,
            items,
            concurrency=self._concurrency,
            requests_per_minute=self._rpm,
            tokens_per_minute=self._tpm,
            progress=None,
        )
        start_requests(summary)
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                self._now = asyncio.get_running_loop().time
                async for _, outcome in results:
                    self._record(*outcome)
                    meter.update()
        finally:
            self._scope = None
            with anyio.CancelScope(shield=True):
                await results.aclose()
                await items.aclose()
                await _in_thread(self._close_files, stop=BatchStop())
                if self._sender is not None:
                    await self._sender.close()  # a with_options client: the pool stays
            meter.close()
            if self._limit is not None:
                self._limit.close_journal()
            self._count_spend()
        summary.input_grown = source.grown()

    def _close_files(self, *, should_stop: Callable[[], bool]) -> None:
        del should_stop  # an fsync is short and must not be skipped
        for appender in (self._output, self._errors):
            if appender is not None:
                appender.close()

    async def _items(
        self, check: BatchCheck, resume: Resume, source: InputFile
    ) -> AsyncGenerator[dict[str, _Item], None]:
        """The lines to send, as ``run_many`` requests, until the validated bytes end or a
        stop."""
        summary = self.summary
        bad = iter(self._bad_lines)
        next_bad = next(bad, 0)
        lookups = not resume.empty
        ok, failed = resume.ok, resume.failed
        number = 0
        source.rewind()
        while True:
            try:
                block = await anyio.to_thread.run_sync(source.read_block)
            except BatchFileError as error:
                self._fail("input_changed", str(error))
                return
            if not block:
                return
            for raw in block:
                number += 1
                if number == next_bad:
                    next_bad = next(bad, 0)
                    continue
                if number == 1 and raw.startswith(_BOM):
                    raw = raw[len(_BOM) :]
                if raw[:1] in _SPACE and not raw.strip():
                    continue
                # The bytes are the ones validated (read_block checked them): a line that
                # was valid then is valid now.
                custom_id, endpoint, body = request_of(decode_input(raw), self._default)
                retry = False
                if lookups:
                    value = fingerprint(custom_id)
                    if value in ok:
                        continue
                    if value in failed:
                        if not self._retry_failed:
                            continue
                        retry = True
                if self._stopping:
                    return
                summary.started += 1
                item = _Item(custom_id, self._method(endpoint), call_kwargs(body), retry)
                yield {"item": item}

    def _method(self, endpoint: Endpoint) -> Callable[..., Any]:
        method = self._methods.get(endpoint.url)
        if method is None:
            sender = self._sender if self._sender is not None else self._client
            method = self._methods[endpoint.url] = endpoint.bind(sender)
        return method

    async def _start_budget(self, resume: Resume, check: BatchCheck) -> None:
        """The run's spend limit (``max_cost`` dollars, ``max_units`` quota units), with what
        the answers already in the output used counted as spent, and the client that
        reserves every attempt in it (a ``with_options`` client of the run's).

        :raises BatchFileError: an answer in the output cannot be priced (its model is not
            in the models list, or has no price for ``max_cost``): what the output spent
            cannot be counted, so nothing is sent.
        """
        limit = JournaledLimit(
            max_units=self._max_units,
            max_dollars=self._max_cost,
            default_output_tokens=self._default_output,
        )
        if resume.usage:
            listed = await self._client.get("/models")
            items = listed.get("data") if isinstance(listed, dict) else None
            limit.add_models(item for item in items or () if isinstance(item, dict))
            for model, usage in resume.usage.items():
                try:
                    held = limit.reserve(model, input_tokens=0, max_output_tokens=0)
                except SpendLimitError as refused:
                    if refused.missing is None:
                        break  # already spent: the run sends nothing (see below)
                    raise _unpriced_answers(
                        self._outputs[0],
                        model,
                        usage,
                        refused,
                        check,
                        by_answer=model in resume.named_by_answers,
                    ) from refused
                cost = usage.cost if usage.costed == usage.answers else None
                held.settle(
                    input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, cost=cost
                )
        # What the earlier runs may have spent beyond their answers (attempts in flight when
        # one was killed, 5xx counted in full): the journal's bound, when it is higher.
        limit.count_earlier(read_journal(self._outputs[0]))
        limit.start_journal(self._outputs[0])
        self._limit = limit
        self._spent_before = limit.spend
        if not _has_room(limit):
            self._budget_reached()
        self._sender = self._client.with_options(spend_limit=limit)

    def _count_spend(self) -> None:
        """What the run's limit counted, into the summary."""
        limit, spent_before = self._limit, self._spent_before
        if limit is None or spent_before is None:
            return
        summary = self.summary
        before, after = spent_before.units, limit.spend.units
        if before is not None and after is not None:
            summary.units_before = float(before.spent)
            summary.units = float(after.spent - before.spent)
        summary.spend = limit.spend

    async def _call(self, item: _Item) -> tuple[_Item, Any]:
        """Send a line. One the spend limit refuses while other lines are being sent waits
        for one of them to end (its settlement gives room back) and is tried again; refused
        with none being sent, the refusal is its result."""
        while True:
            self._sending += 1
            try:
                return item, await item.call(**item.kwargs)
            except SpendLimitError as refused:
                if refused.missing is not None or self._sending == 1:
                    return item, refused
            except Exception as exc:  # the line's result: written as a failure line
                return item, exc
            finally:
                self._sending -= 1
                ended = self._call_ended
                if ended is not None:  # only once a refusal waits: nothing to pay before
                    self._call_ended = None
                    ended.set()
            if self._call_ended is None:
                self._call_ended = asyncio.Event()
            await self._call_ended.wait()

    def _record(self, item: _Item, result: Any) -> None:
        """Write one result as a whole line and count it (between two awaits: never cut)."""
        summary = self.summary
        if isinstance(result, SpendLimitError):
            # Refused before it was sent: not started, no line written (the next run sends it).
            summary.started -= 1
            self._refused_by_budget(result)
            return
        self._serial += 1
        line_id = f"{self._id_prefix}{self._serial:012x}"
        target = self._output
        assert target is not None
        try:
            if isinstance(result, BaseException):
                line, outcome = failure_line(line_id, item.custom_id, result)
                if self._errors is not None:
                    target = self._errors
                target.write(line)
                record_failure(summary, outcome)
                if is_fatal(result):
                    self._fail(
                        "fatal_error",
                        f"the server refused the request ({outcome}: {result}); no new "
                        "requests were started",
                        raise_error=False,
                    )
            else:
                failure, incomplete = answer_state(result)
                prompt, completion, total, cost = usage_of(result)
                if failure is not None:
                    if self._errors is not None:
                        target = self._errors
                    target.write(success_line(line_id, item.custom_id, result, failure))
                    record_failure(summary, failure.outcome, cost)
                else:
                    target.write(success_line(line_id, item.custom_id, result))
                    record_ok(summary, prompt, completion, total, cost)
                    if incomplete is not None:
                        record_incomplete(summary, incomplete)
        except OSError as exc:
            raise BatchFileError(
                f"could not write to {target.path}: {exc}. Every line written before is "
                "whole: make room and run again to resume",
                summary=summary,
            ) from exc
        if item.retry:
            self._retried.add(fingerprint(item.custom_id))
        if self._limit is not None:
            self._limit.write_journal()  # its answer settled: a tighter bound to resume from
            if not _has_room(self._limit):
                self._budget_reached()

    def _fail(self, reason: str, detail: str, *, raise_error: bool = True) -> None:
        """Stop new starts for a reason the summary names; with ``raise_error``, the run
        ends in a ``BatchFileError`` once the requests in flight are written."""
        summary = self.summary
        if summary.stop_reason in (None, "budget"):
            summary.stop_reason = reason
            summary.stop_detail = detail
        if raise_error and self._error is None:
            self._error = detail
        self._stopping = True

    def _refused_by_budget(self, refused: SpendLimitError) -> None:
        """A line the spend limit refused with nothing else being sent: it does not fit what
        is left (the budget is reached), or it cannot be priced (the run stops in an error:
        every such line would be refused)."""
        if refused.missing is None:
            self._budget_reached()
            return
        self._fail(
            "cost_unknown",
            f"the budget cannot be enforced: {refused} (no request of it was sent). "
            + (
                "Set max_tokens on every line, or default_output_tokens (--default-output-tokens)"
                if refused.missing == "max_tokens"
                else "Run without the budget against this server, or drop the line"
            ),
        )

    def _budget_reached(self) -> None:
        summary = self.summary
        if summary.stop_reason is None:
            summary.stop_reason = "budget"
            logger.info(
                "batch: the budget is reached (%s, %d in flight): no new requests start",
                self._limit.spend if self._limit is not None else "",
                summary.in_flight,
            )
        self._stopping = True

    def _on_stop(self, immediate: bool) -> None:
        self._stopping = True
        self.summary.stop_reason = "interrupted"
        scope = self._scope
        if scope is None:
            return
        if immediate or self._grace <= 0:
            scope.cancel()
        else:
            scope.deadline = min(scope.deadline, self._now() + self._grace)

    async def _compact(self, resume: Resume) -> None:
        """Drop superseded failure lines and unreadable lines from the files read back."""
        if self.summary.stop_reason == "interrupted":
            return  # the next run does it; an interrupted user wants out
        retried = self._retried.freeze()

        def drop(value: int) -> bool:
            return value in resume.ok or value in retried

        for scan in resume.scans:
            if scan.unreadable or any(drop(value) for value in scan.failures):
                try:
                    self.summary.compacted += await _in_thread(
                        compact_file, scan.path, keep_from=scan.size, drop=drop, stop=self._stop
                    )
                except Stopped:
                    return


def _unpriced_answers(
    output: Path,
    model: str,
    usage: ModelUsage,
    refused: SpendLimitError,
    check: BatchCheck,
    *,
    by_answer: bool,
) -> BatchFileError:
    """The error of a budgeted run whose output holds answers it cannot price: what they
    used cannot be counted, and counting it as nothing would break the limit.

    :param by_answer: some of them are priced by the model the answer names, their
        request's line being no longer in the input: the user never wrote that model.
    """
    # model: the one the answers' requests named, else the one each answer names
    whose = f"of {model!r}" if model else "whose request and answer name no model"
    why = (
        " (the model the answer names: its line is no longer in the input, or names no "
        "model, so the model its request named is unknown; put the line back to price it "
        "by its request's model)"
        if by_answer and model
        else ""
    )
    return BatchFileError(
        f"{usage.answers:,} answer(s) {whose} already in {output} cannot be counted against "
        f"the budget: {refused.missing} is unknown for it{why}; nothing was sent. Run into a "
        "new output file, or without the budget",
        check=check,
    )


def _has_room(limit: SpendLimit) -> bool:
    """Whether any request could still fit: something is left of every limit set."""
    spend = limit.spend
    return all(totals.spent < totals.limit for totals in (spend.units, spend.dollars) if totals)
