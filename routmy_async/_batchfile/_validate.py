"""Validating an input file before anything is sent (sync; a run calls it in a worker thread).

One pass reads every line (through the run's ``InputFile``, which remembers what it read, so
the run sends exactly that): JSON, ``custom_id``, ``method``, ``url``, and the body through
the SDK's own checks (``_lines.check_body``); lines that already have a successful result are
not checked again (they cost nothing more). Each id's 32-bit fingerprint is collected for the
duplicate check; when some repeat, a second pass over the lines of those fingerprints only
compares the real ids, so a duplicate is reported with the line of its first occurrence and
a fingerprint collision is never taken for one.
"""

from __future__ import annotations

import heapq
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .._http._ratelimit import estimate_tokens
from ._files import InputFile, Stopped
from ._idset import FingerprintCollector, fingerprint, short_fingerprint
from ._lines import Endpoint, LineError, check_body, decode_input, request_of
from ._resume import Resume
from ._summary import MAX_PROBLEMS, BatchCheck

__all__ = ["check_input"]

_BOM = b"\xef\xbb\xbf"
_SPACE = frozenset((b"", b" ", b"\t", b"\r", b"\n"))  # first bytes of a line that may be blank
_CHECK_EVERY = 4096


class _Counter:
    """Counts a valid line into the check (or, with ``sign=-1``, takes it out again)."""

    def __init__(
        self,
        check: BatchCheck,
        resume: Resume | None,
        retry_failed: bool,
        estimate: bool,
        stateless_responses: bool = False,
    ):
        self.stateless_responses = stateless_responses
        self._check = check
        self._resume = resume if resume is not None and not resume.empty else None
        self._retry_failed = retry_failed
        self._estimate = estimate

    def state(self, custom_id: str) -> str:
        """``"done"``, ``"failed"`` (failed before) or ``"new"``."""
        resume = self._resume
        if resume is None:
            return "new"
        value = fingerprint(custom_id)
        if value in resume.ok:
            return "done"
        return "failed" if value in resume.failed else "new"

    def count(self, state: str, endpoint: Endpoint, body: dict[str, Any], sign: int = 1) -> None:
        check = self._check
        check.valid += sign
        check.endpoints[endpoint.url] = check.endpoints.get(endpoint.url, 0) + sign
        if state == "done":
            check.done += sign
            return
        if state == "failed":
            check.failed_before += sign
            if not self._retry_failed:
                return
        check.to_run += sign
        if self._estimate:
            check.estimated_tokens += sign * estimate_tokens(body)


_STATELESS = (
    "previous_response_id cannot be used here: rout.my's /v1/responses is stateless (it "
    "keeps no earlier response and ignores the id), so the conversation would be lost; "
    "send the earlier items in input instead"
)


def check_line(target: Endpoint, body: dict[str, Any], *, stateless_responses: bool) -> None:
    """The checks of a line's body: the SDK's own (``check_body``), and, against a server
    whose ``/v1/responses`` keeps no state (rout.my), no ``previous_response_id``.

    :raises LineError: the line cannot be sent.
    """
    if (
        stateless_responses
        and target.url == "/v1/responses"
        and body.get("previous_response_id") is not None
    ):
        raise LineError(_STATELESS)
    check_body(target, body)


def check_input(
    source: InputFile,
    *,
    endpoint: Endpoint | None,
    resume: Resume | None,
    retry_failed: bool,
    bad_lines: array[int] | None = None,
    should_stop: Callable[[], bool],
    estimate: bool = True,
    stateless_responses: bool = False,
) -> BatchCheck:
    """Validate every line of ``path``; count what a run would send.

    :param endpoint: the endpoint of lines without a ``url``.
    :param resume: what the output files already hold (``None``: nothing).
    :param bad_lines: where to put the numbers of the invalid lines, in order (a run that
        skips them reads them there).
    :param estimate: estimate the tokens of the lines to run (a run does not need it).
    :param stateless_responses: the server is rout.my, whose ``/v1/responses`` keeps no
        state: a line with ``previous_response_id`` is refused.
    :raises Stopped: ``should_stop()`` became true.
    """
    check = BatchCheck(str(source.path))
    counter = _Counter(check, resume, retry_failed, estimate, stateless_responses)
    ids = FingerprintCollector(bits=32)
    for number, raw in enumerate(_lines_of(source.validation_blocks()), 1):
        if not number % _CHECK_EVERY and should_stop():
            raise Stopped
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        if raw[:1] in _SPACE and not raw.strip():
            continue
        check.lines += 1
        try:
            line = decode_input(raw)
            if isinstance(line.custom_id, str) and line.custom_id:
                ids.add(short_fingerprint(line.custom_id))
            custom_id, target, body = request_of(line, endpoint)
            state = counter.state(custom_id)
            if state != "done":
                check_line(target, body, stateless_responses=counter.stateless_responses)
        except LineError as error:
            check.add_problem(number, str(error))
            if bad_lines is not None:
                bad_lines.append(number)
            continue
        counter.count(state, target, body)
    repeated = ids.repeated()
    del ids
    duplicates: list[tuple[int, str]] = []
    if repeated:
        source.rewind()
        duplicates = _duplicates(source, repeated, endpoint, counter, should_stop)
    if duplicates:
        check.invalid += len(duplicates)
        check.problems = list(heapq.merge(check.problems, duplicates[:MAX_PROBLEMS]))[:MAX_PROBLEMS]
        if bad_lines is not None:
            bad_lines[:] = array("Q", heapq.merge(bad_lines, (number for number, _ in duplicates)))
    check.endpoints = {url: count for url, count in check.endpoints.items() if count}
    check.unfinished = source.unfinished
    return check


def _lines_of(blocks: Iterable[list[bytes]]) -> Iterator[bytes]:
    for block in blocks:
        yield from block


def _duplicates(
    source: InputFile,
    repeated: set[int],
    endpoint: Endpoint | None,
    counter: _Counter,
    should_stop: Callable[[], bool],
) -> list[tuple[int, str]]:
    """The second pass: the later occurrences of every repeated id, taken out of the counts."""
    first: dict[str, int] = {}
    found: list[tuple[int, str]] = []
    for number, raw in enumerate(_lines_of(iter(source.read_block, [])), 1):
        if not number % _CHECK_EVERY and should_stop():
            raise Stopped
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        try:
            line = decode_input(raw)
        except LineError:
            continue
        custom_id = line.custom_id
        if not isinstance(custom_id, str) or not custom_id:
            continue
        if short_fingerprint(custom_id) not in repeated:
            continue
        seen = first.setdefault(custom_id, number)
        if seen == number:
            continue
        # A later occurrence: unless the first pass already reported the line as invalid,
        # report it as a duplicate and take it out of the valid counts.
        try:
            _, target, body = request_of(line, endpoint)
            state = counter.state(custom_id)
            if state != "done":
                check_line(target, body, stateless_responses=counter.stateless_responses)
        except LineError:
            continue
        found.append((number, f"duplicate custom_id {custom_id!r:.60} (first on line {seen})"))
        counter.count(state, target, body, sign=-1)
    return found
