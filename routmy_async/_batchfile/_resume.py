"""Where a run stands (pure): output lines in, the set of done ids out.

The output files are read back line by line (``_files.scan_file`` does the reading): a
successful line marks its ``custom_id`` done; a failed one marks it failed (sent again by the
next run unless told not to); a line that does not decode is unreadable and never taken as
a result. Only fingerprints are kept (see ``_idset``), so a million done ids cost 8 MB.
The ``usage.cost`` of every answer is added up: what the output has cost so far; and the
tokens of every answer, by model, which a run's spend limit counts as spent before it sends
anything (``max_cost``, ``max_units``). The model is the one the answer's request named, when
the run read the input's (``_requested``): the rate the answer was reserved and settled at;
else the one the answer names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ._idset import FingerprintCollector, FingerprintSet, fingerprint
from ._lines import read_output_line

__all__ = ["FileScan", "ModelUsage", "Resume", "ResumeState"]


class ModelUsage:
    """What the answers of one model used: tokens, and the costs they reported."""

    __slots__ = ("answers", "cost", "costed", "input_tokens", "output_tokens")

    def __init__(self) -> None:
        self.answers = 0
        self.input_tokens = 0
        self.output_tokens = 0
        #: The sum of the costs reported, over ``costed`` answers of ``answers``.
        self.cost = 0.0
        self.costed = 0


class FileScan:
    """One output file as read back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Bytes of whole lines: where this run's lines start.
        self.size = 0
        #: Whole lines read.
        self.lines = 0
        #: Whole lines that are not results (torn and glued to the next, garbage, blank).
        self.unreadable = 0
        #: Bytes of a last line without its newline (a write cut short), cut off on repair.
        self.torn = 0
        #: Fingerprints of the ids of its failure lines (repeats included).
        self.failures = FingerprintCollector()


class Resume:
    """The done state of every output file of a run."""

    def __init__(
        self,
        ok: FingerprintSet,
        failed: FingerprintSet,
        stale: int,
        scans: list[FileScan],
        *,
        cost: float = 0.0,
        uncosted: int = 0,
        usage: dict[str, ModelUsage] | None = None,
        named_by_answers: frozenset[str] = frozenset(),
    ):
        #: Ids with a successful line.
        self.ok = ok
        #: Ids with failure lines only.
        self.failed = failed
        #: Failure lines of ids that also have a successful line (dropped on compaction).
        self.stale = stale
        self.scans = scans
        #: The sum of the ``usage.cost`` the answers in the files reported (USD).
        self.cost = cost
        #: Successful lines whose answer reported no cost.
        self.uncosted = uncosted
        #: The answers' usage by the model their request named (else the answer's; a line
        #: with a usage and no model either way under ``""``).
        self.usage: dict[str, ModelUsage] = usage if usage is not None else {}
        #: The keys of ``usage`` that some answer named itself, its request's line being no
        #: longer in the input (or naming no model).
        self.named_by_answers = named_by_answers

    @property
    def empty(self) -> bool:
        """Whether no id has a result yet (a fresh run: no look-ups needed)."""
        return not len(self.ok) and not len(self.failed)


class ResumeState:
    """Collects the results of whole output lines; :meth:`finish` builds the :class:`Resume`.

    :param request_model: the model the input line of an id's fingerprint named (see
        ``_requested``): an answer's usage is counted under its request's model, and under
        the one the answer names when it gives ``None`` or is not given.
    """

    def __init__(self, request_model: Callable[[int], str | None] | None = None) -> None:
        self._request_model = request_model
        self._ok = FingerprintCollector()
        self._scans: list[FileScan] = []
        self._cost = 0.0
        self._uncosted = 0
        self._usage: dict[str, ModelUsage] = {}
        self._named_by_answers: set[str] = set()

    def begin(self, path: Path) -> FileScan:
        """Start reading another file."""
        scan = FileScan(path)
        self._scans.append(scan)
        return scan

    def feed(self, scan: FileScan, raw: bytes) -> None:
        """Take one whole line (newline included) of ``scan``'s file."""
        scan.lines += 1
        scan.size += len(raw)
        seen = read_output_line(raw)
        if seen is None:
            scan.unreadable += 1
            return
        value = fingerprint(seen.custom_id)
        (self._ok if seen.ok else scan.failures).add(value)
        if seen.cost is not None:
            self._cost += seen.cost
        elif seen.ok:
            self._uncosted += 1
        if seen.input_tokens or seen.output_tokens or seen.cost is not None:
            model = None if self._request_model is None else self._request_model(value)
            if model is None:
                model = seen.model or ""
                self._named_by_answers.add(model)
            usage = self._usage.get(model)
            if usage is None:
                usage = self._usage[model] = ModelUsage()
            usage.answers += 1
            usage.input_tokens += seen.input_tokens
            usage.output_tokens += seen.output_tokens
            if seen.cost is not None:
                usage.cost += seen.cost
                usage.costed += 1

    def finish(self) -> Resume:
        """The done sets; each file keeps its own failure fingerprints for compaction."""
        ok = self._ok.freeze()
        failed = FingerprintCollector()
        stale = 0
        for scan in self._scans:
            for value in scan.failures:
                failed.add(value)
                stale += value in ok
        return Resume(
            ok,
            failed.freeze(without=ok),
            stale,
            self._scans,
            cost=self._cost,
            uncosted=self._uncosted,
            usage=self._usage,
            named_by_answers=frozenset(self._named_by_answers),
        )
