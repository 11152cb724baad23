"""What a batch file holds (:class:`BatchCheck`) and what a run did (:class:`BatchSummary`).

Plain objects with text and JSON forms; the summary is updated live while a run goes, so a
progress callback can read it.
"""

from __future__ import annotations

import time
import weakref
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .._auto_concurrency import AutoConcurrency
    from .._spend import SpendSnapshot

__all__ = [
    "BatchCheck",
    "BatchSummary",
    "finish",
    "format_money",
    "record_failure",
    "record_incomplete",
    "record_ok",
    "start_requests",
]

#: How many problems a check keeps with their line numbers (all of them are counted).
MAX_PROBLEMS = 100


def format_money(value: float) -> str:
    """``$0.0123`` (small amounts with six decimals, so a cheap run does not read $0.0000)."""
    if value and abs(value) < 0.01:
        return f"${value:.6f}"
    return f"${value:,.4f}"


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class BatchCheck:
    """What validating a batch file found: counts, problems with line numbers, an estimate.

    ``problems`` holds the first :data:`MAX_PROBLEMS` problems as ``(line number, message)``
    in line order; ``invalid`` counts them all. With an output file, ``done`` counts the lines
    that already have a successful result there and ``to_run`` what a run would send.
    """

    def __init__(self, input_file: str) -> None:
        self.input_file = input_file
        #: Non-blank lines in the file.
        self.lines = 0
        #: Lines that can be sent.
        self.valid = 0
        #: Lines that cannot (bad JSON, no custom_id, a duplicate, an unknown url, a bad body).
        self.invalid = 0
        self.problems: list[tuple[int, str]] = []
        #: Valid lines by endpoint URL.
        self.endpoints: dict[str, int] = {}
        #: Valid lines that already have a successful result.
        self.done = 0
        #: Valid lines whose earlier result is a failure (retried unless told not to).
        self.failed_before = 0
        #: Valid lines a run would send.
        self.to_run = 0
        #: The rate limiter's estimate over the lines to run: prompt characters / 4 plus
        #: ``max_tokens`` (or 256) per chat request, the input for embeddings.
        self.estimated_tokens = 0
        #: Bytes of a last line left out as still being written (no newline, not valid JSON).
        self.unfinished = 0

    def add_problem(self, line: int, message: str) -> None:
        """Count a problem; keep it when it is among the first ones."""
        self.invalid += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append((line, message))

    def format_problems(self, limit: int = 20) -> list[str]:
        """The first ``limit`` problems as ``line N: message`` lines (and how many more)."""
        text = [f"line {line}: {message}" for line, message in self.problems[:limit]]
        if self.invalid > len(text):
            text.append(f"... and {self.invalid - len(text):,} more")
        return text

    def format(self) -> str:
        """The check as text: counts, endpoints, the estimate, the first problems."""
        text = [
            f"{self.input_file}: {self.lines:,} lines, {self.valid:,} valid, "
            f"{self.invalid:,} invalid"
        ]
        text.extend(f"  {url}: {count:,}" for url, count in sorted(self.endpoints.items()))
        if self.done or self.failed_before:
            text.append(f"  already done: {self.done:,}; failed before: {self.failed_before:,}")
        text.append(f"  to run: {self.to_run:,}")
        text.append(
            f"  estimated tokens: ~{self.estimated_tokens:,} (prompt characters / 4, plus "
            "max_tokens or 256 per chat request)"
        )
        if self.unfinished:
            text.append(
                f"  the last line ({self.unfinished:,} bytes) has no newline and is not "
                "valid JSON: left out as still being written (not sent)"
            )
        text.extend(self.format_problems())
        return "\n".join(text)

    def to_dict(self) -> dict[str, Any]:
        """The check as plain JSON values."""
        return {
            "input_file": self.input_file,
            "lines": self.lines,
            "valid": self.valid,
            "invalid": self.invalid,
            "endpoints": dict(self.endpoints),
            "done": self.done,
            "failed_before": self.failed_before,
            "to_run": self.to_run,
            "estimated_tokens": self.estimated_tokens,
            "unfinished": self.unfinished,
            "problems": [{"line": line, "message": message} for line, message in self.problems],
        }

    def __repr__(self) -> str:
        return (
            f"BatchCheck(lines={self.lines}, valid={self.valid}, invalid={self.invalid}, "
            f"to_run={self.to_run}, estimated_tokens={self.estimated_tokens})"
        )


class BatchSummary:
    """What a batch run did; updated live while it runs (a progress callback reads it).

    Counts are of request lines: ``ok`` and ``failed`` this run (``failures`` names each
    failure by status and code), ``skipped`` already done before, ``skipped_failed`` failed
    before and left alone (``retry_failed=False``), ``invalid`` skipped as invalid
    (``skip_invalid=True``), ``not_started`` left when the run stopped early and
    ``cancelled`` cut off in flight. Lines not done are sent again by the next run.

    ``ok`` counts the Responses answers that stopped short too (``status: "incomplete"``);
    ``incomplete`` names their reasons. A Responses answer in any other state than
    ``completed`` (``failed``, ``cancelled``, ``queued``, ``in_progress``) is a failure.

    ``cost`` is what this run's answers reported, ``cost_before`` what the answers already
    in the output files had. ``max_cost`` (dollars) and ``max_units`` (quota units) are the
    run's spend limit, which counts the output's earlier answers as spent: ``spend`` is where
    it stood at the end (a :class:`SpendSnapshot`), ``units`` and ``units_before`` the quota
    units of this run's answers and of the earlier ones.

    ``stop_reason`` is ``None`` when the run went through the whole file, ``"budget"`` when
    the spend limit stopped new starts, ``"interrupted"`` when a stop was requested (Ctrl-C),
    ``"fatal_error"`` when the server refused the key or the credit, ``"cost_unknown"`` when
    a line could not be priced under the limit, ``"input_changed"`` when the input was
    truncated or replaced during the run (``stop_detail`` says how; the last two end in a
    ``BatchFileError`` that carries this summary). ``input_grown`` counts the bytes another
    process appended to the input during the run, or the last line left out as still being
    written (no newline, not valid JSON): not validated, so not sent.

    ``auto_concurrency`` is the adaptive level of a run with ``concurrency="auto"`` (live:
    its ``level``, ``peak``, ``losses`` and ``cuts``), ``None`` for a fixed concurrency.
    """

    def __init__(
        self,
        input_file: str,
        output_file: str,
        errors_file: str | None = None,
        *,
        max_cost: float | None = None,
    ) -> None:
        self.input_file = input_file
        self.output_file = output_file
        self.errors_file = errors_file
        self.max_cost = max_cost
        #: Valid request lines in the input.
        self.lines = 0
        #: Lines this run had to do when it started.
        self.to_run = 0
        self.invalid = 0
        self.skipped = 0
        self.skipped_failed = 0
        self.started = 0
        self.ok = 0
        self.failed = 0
        self.cancelled = 0
        #: Failures by outcome: ``"429 rate_limit_exceeded"``, ``"503"``, ``"timeout"``...
        self.failures: dict[str, int] = {}
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.total_tokens = 0
        #: Answers of this run that stopped short, by reason (``"max_output_tokens"``).
        self.incomplete: dict[str, int] = {}
        #: The sum of ``usage.cost`` over the answers of this run (USD).
        self.cost = 0.0
        #: The sum of ``usage.cost`` over the answers already in the output files (USD).
        self.cost_before = 0.0
        #: Answers that reported a cost (the rest are not in ``cost``).
        self.costed = 0
        #: The spend limit in quota units (``max_units``), and the units it counted.
        self.max_units: float | None = None
        self.units = 0.0
        self.units_before = 0.0
        #: The run's spend limit at its end (``None`` without ``max_cost``/``max_units``).
        self.spend: SpendSnapshot | None = None
        #: Bytes appended to the input during the run (left for the next run).
        self.input_grown = 0
        self.stop_reason: str | None = None
        self.stop_detail: str | None = None
        #: Earlier lines dropped from the output files at the end (superseded or unreadable).
        self.compacted = 0
        self.auto_concurrency: AutoConcurrency | None = None
        # The run's clock, which the run's functions below keep (found by the summary).
        self._times = _TIMES[self] = _RunTimes()

    # -- derived ------------------------------------------------------------------------------

    @property
    def done(self) -> int:
        """Requests of this run that ended (``ok + failed``)."""
        return self.ok + self.failed

    @property
    def in_flight(self) -> int:
        """Requests started and not ended (after the run: cut off, sent again next time)."""
        return self.started - self.ok - self.failed

    @property
    def not_started(self) -> int:
        """Lines this run had to do and never started."""
        return max(0, self.to_run - self.started)

    @property
    def cost_total(self) -> float:
        """What the output has cost: ``cost_before + cost`` (what ``max_cost`` bounds)."""
        return self.cost_before + self.cost

    @property
    def cost_unknown(self) -> bool:
        """Whether this run had answers and none reported a ``usage.cost`` (rout.my reports
        none): ``cost`` is then 0 only for want of a number."""
        return self.ok > 0 and self.costed == 0 and not self.cost

    @property
    def complete(self) -> bool:
        """Whether every valid line of the input now has a result (ok or failed), and the
        input did not grow during the run."""
        return (
            self.stop_reason is None
            and self.not_started == 0
            and self.cancelled == 0
            and not self.input_grown
        )

    @property
    def wall_seconds(self) -> float:
        """Seconds from the start of the run (validation included) to its end (or now)."""
        times = self._times
        end = times.ended if times.ended is not None else time.monotonic()
        return end - times.began

    @property
    def request_seconds(self) -> float:
        """Seconds spent sending requests (after validation)."""
        times = self._times
        if times.requests_began is None:
            return 0.0
        end = times.ended if times.ended is not None else time.monotonic()
        return end - times.requests_began

    @property
    def throughput(self) -> float:
        """Requests ended per second of the request phase."""
        seconds = self.request_seconds
        return self.done / seconds if seconds > 0 else 0.0

    # -- forms ----------------------------------------------------------------------------------

    def progress_line(self) -> str:
        """One line for a log: done/total, rate, ETA, failures, tokens, cost."""
        rate = self.throughput
        left = max(0, self.to_run - self.done)
        eta = _duration(left / rate) if rate > 0 else "?"
        return (
            f"batch: {self.done:,}/{self.to_run:,} done ({rate:,.1f}/s, ETA {eta}), "
            f"{self.failed:,} failed, {self.total_tokens:,} tokens, "
            + ("cost unknown" if self.cost_unknown else format_money(self.cost))
            + ("" if self.auto_concurrency is None else f", level {self.auto_concurrency.level}")
        )

    def format(self) -> str:
        """The summary as text (what ``routmy batch`` prints at the end)."""
        text = [f"batch {self.input_file} -> {self.output_file}"]
        if self.errors_file:
            text[0] += f" (errors: {self.errors_file})"
        text += self._count_lines()
        text.append(
            f"tokens: {self.total_tokens:,} (prompt {self.prompt_tokens:,}, completion "
            f"{self.completion_tokens:,}); {self._cost_text()}"
        )
        if 0 < self.costed < self.ok:
            text.append(f"  ({self.ok - self.costed:,} answers reported no cost)")
        text += self._spend_lines()
        if self.input_grown:
            text.append(
                f"  the input grew by {self.input_grown:,} bytes during the run (or its last "
                "line was still being written): those lines were not validated, so not "
                "sent; run again to send them"
            )
        text.append(f"time: {self.wall_seconds:,.1f} s, {self.throughput:,.1f} requests/s")
        auto = self.auto_concurrency
        if auto is not None:
            text.append(
                f"concurrency: auto, level {auto.level} at the end (peak {auto.peak} of max "
                f"{auto.max_concurrency}; {auto.losses:,} loss signal(s), {auto.cuts:,} cut(s))"
            )
        if self.compacted:
            text.append(f"  {self.compacted:,} superseded earlier lines dropped from the output")
        ending = self._ending_line()
        if ending is not None:
            text.append(ending)
        return "\n".join(text)

    def _count_lines(self) -> list[str]:
        """The table of what became of the lines: ok, failed, skipped, and the rarer rows."""
        ok = f"  ok           {self.ok:>10,}"
        if self.incomplete:
            ok += (
                f"   {sum(self.incomplete.values()):,} incomplete ("
                + ", ".join(f"{name}: {count:,}" for name, count in sorted(self.incomplete.items()))
                + ")"
            )
        failed = f"  failed       {self.failed:>10,}"
        if self.failures:
            failed += "   " + ", ".join(
                f"{name}: {count:,}" for name, count in sorted(self.failures.items())
            )
        text = [ok, failed, f"  skipped      {self.skipped:>10,}   already done"]
        if self.skipped_failed:
            text.append(f"  kept failed  {self.skipped_failed:>10,}   failed before, not retried")
        if self.invalid:
            text.append(f"  invalid      {self.invalid:>10,}   skipped, not sent")
        if self.not_started or self.cancelled:
            text.append(f"  not started  {self.not_started:>10,}")
            text.append(f"  cut off      {self.cancelled:>10,}   in flight when stopped")
        return text

    def _spend_lines(self) -> list[str]:
        spend = self.spend
        if spend is None:
            return []
        text = []
        if self.max_units is not None:
            text.append(
                f"quota units: {self.units:,.6g} this run + {self.units_before:,.6g} before "
                f"of {self.max_units:,.6g} allowed"
            )
        if spend.defaulted_outputs:
            text.append(
                f"  {spend.defaulted_outputs:,} request(s) set no max_tokens: reserved "
                "default_output_tokens"
            )
        return text

    def _cost_text(self) -> str:
        if self.cost_unknown:
            # Not $0: the server said nothing of it (rout.my counts tokens, not dollars).
            cost = "cost: unknown (no answer reported usage.cost)"
            if self.cost_before:
                cost += f" this run + {format_money(self.cost_before)} before"
            if self.max_cost is not None:
                cost += f"; max_cost {format_money(self.max_cost)} could not be enforced"
            return cost
        cost = f"cost: {format_money(self.cost)}"
        if self.cost_before:
            cost += (
                f" this run + {format_money(self.cost_before)} before = "
                f"{format_money(self.cost_total)}"
            )
        if self.max_cost is not None:
            cost += f" of {format_money(self.max_cost)} allowed"
        return cost

    def _ending_line(self) -> str | None:
        """Why the run stopped early, or what to do next; None when there is nothing to do."""
        if self.stop_reason == "budget":
            # On rout.my no answer reports a cost: "$0 reported" beside the units would mislead.
            reported = self.costed or self.cost_total
            spent = [f"{format_money(self.cost_total)} reported"] if reported else []
            if self.spend is not None and self.spend.dollars is not None:
                spent = [f"{format_money(float(self.spend.dollars.spent))} counted"]
            if self.max_units is not None:
                spent.append(f"{self.units + self.units_before:,.6g} quota units")
            return (
                f"stopped: the budget is reached ({', '.join(spent)} spent on this output: "
                "the next line does not fit what is left); raise it and run again to go on"
            )
        if self.stop_reason == "interrupted":
            return "stopped: interrupted; run again to resume"
        if self.stop_reason in ("fatal_error", "cost_unknown", "input_changed"):
            return f"stopped: {self.stop_detail}"
        if self.failed:
            return "run again to retry the failed lines"
        return None

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain JSON values (what ``--summary-json`` writes)."""
        return {
            "input_file": self.input_file,
            "output_file": self.output_file,
            "errors_file": self.errors_file,
            "lines": self.lines,
            "to_run": self.to_run,
            "ok": self.ok,
            "failed": self.failed,
            "failures": dict(sorted(self.failures.items())),
            "skipped": self.skipped,
            "skipped_failed": self.skipped_failed,
            "invalid": self.invalid,
            "not_started": self.not_started,
            "cancelled": self.cancelled,
            "complete": self.complete,
            "stop_reason": self.stop_reason,
            "stop_detail": self.stop_detail,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "incomplete": dict(sorted(self.incomplete.items())),
            "cost": round(self.cost, 10),
            "cost_before": round(self.cost_before, 10),
            "cost_total": round(self.cost_total, 10),
            "max_cost": self.max_cost,
            "max_units": self.max_units,
            "units": round(self.units, 6),
            "units_before": round(self.units_before, 6),
            "answers_without_cost": self.ok - self.costed,
            "cost_unknown": self.cost_unknown,
            "compacted": self.compacted,
            "input_grown": self.input_grown,
            "wall_seconds": round(self.wall_seconds, 3),
            "request_seconds": round(self.request_seconds, 3),
            "throughput": round(self.throughput, 3),
            "concurrency_auto": self._auto_dict(),
        }

    def _auto_dict(self) -> dict[str, int] | None:
        auto = self.auto_concurrency
        if auto is None:
            return None
        return {
            "level": auto.level,
            "peak": auto.peak,
            "max_concurrency": auto.max_concurrency,
            "losses": auto.losses,
            "cuts": auto.cuts,
        }

    def __repr__(self) -> str:
        return (
            f"BatchSummary(ok={self.ok}, failed={self.failed}, skipped={self.skipped}, "
            f"not_started={self.not_started}, cost={self.cost!r}, "
            f"stop_reason={self.stop_reason!r})"
        )


class _RunTimes:
    """When a run began, began sending, and ended (``time.monotonic()``)."""

    __slots__ = ("began", "ended", "requests_began")

    def __init__(self) -> None:
        self.began = time.monotonic()
        self.requests_began: float | None = None
        self.ended: float | None = None


# Each live summary's clock: the run's functions below update a summary through its public
# counters and this table, so no other module reaches into a summary's private state.
_TIMES: weakref.WeakKeyDictionary[BatchSummary, _RunTimes] = weakref.WeakKeyDictionary()


# -- updates, by the run ---------------------------------------------------------------------


def start_requests(summary: BatchSummary) -> None:
    """Validation is over: the request phase (``request_seconds``) starts now."""
    _TIMES[summary].requests_began = time.monotonic()


def record_ok(
    summary: BatchSummary, prompt: int, completion: int, total: int, cost: float | None
) -> None:
    """Count a successful answer, its tokens and its cost (``None``: none reported)."""
    summary.ok += 1
    summary.prompt_tokens += prompt
    summary.completion_tokens += completion
    summary.total_tokens += total
    if cost is not None:
        summary.cost += cost
        summary.costed += 1


def record_incomplete(summary: BatchSummary, reason: str) -> None:
    """Count an answer that stopped short, by its reason."""
    summary.incomplete[reason] = summary.incomplete.get(reason, 0) + 1


def record_failure(summary: BatchSummary, outcome: str, cost: float | None = None) -> None:
    """Count a failure by its outcome; a failed response may have been billed all the same."""
    summary.failed += 1
    summary.failures[outcome] = summary.failures.get(outcome, 0) + 1
    if cost is not None:
        summary.cost += cost


def finish(summary: BatchSummary) -> None:
    """The run is over: what is still in flight was cut off, and the clocks stop."""
    summary.cancelled = summary.in_flight
    _TIMES[summary].ended = time.monotonic()
