"""What a budgeted run may have spent, written down before each attempt is sent.

The output's answers tell the next run what they used, but not what was paid for without a
line to show: the attempts in flight when the run was killed (the server answers, and bills,
a request whose client is gone), and the attempts counted in full that left no answer (a
``5xx``, a timeout). So a run with ``max_units`` / ``max_cost`` keeps a file beside its
output, ``<output>.spend``: each time an attempt reserves, and each time a line is written,
it appends the limit's ``spent + reserved`` (one JSON line, one ``write()``). That is at
every moment an upper bound of everything the runs of this output may have spent. The next
run counts the larger of it and what the output's answers used, so a run killed and run
again cannot spend what its attempts in flight held twice.

A leftover journal whose output is gone is ignored (a new output starts from nothing); a
run without a budget writes none, so one that adds lines between budgeted runs is counted
by its lines alone.
"""

from __future__ import annotations

import json
import os
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from .._exceptions import SpendLimitError
from .._spend import Price, Reservation, SpendLimit, SpendSnapshot

__all__ = ["JournaledLimit", "journal_path", "read_journal"]

# Two models no router lists (a space cannot be in a model id), priced at one base unit per
# token (a micro quota unit, a picodollar), through which the earlier runs' spend that the
# output does not show is counted in a limit: one per limit, so each counts its own amount.
_EARLIER_UNITS = "earlier runs (quota units)"
_EARLIER_DOLLARS = "earlier runs (dollars)"
_MODELS: list[dict[str, Any]] = [
    {"id": _EARLIER_UNITS, "token_multiplier": "0.000001"},
    {"id": _EARLIER_DOLLARS, "token_multiplier": 0},
]
PRICES = {
    _EARLIER_UNITS: Price(0, 0),
    _EARLIER_DOLLARS: Price(0, "0.000001"),
}
_SCALE = {"units": 10**6, "dollars": 10**12}
# The journal's last lines are enough: each is a few dozen bytes.
_TAIL = 4096


def journal_path(output: Path) -> Path:
    """The journal of an output file: ``<output>.spend`` beside it."""
    return output.with_name(output.name + ".spend")


def read_journal(output: Path) -> dict[str, Decimal]:
    """The last upper bound the earlier runs of ``output`` wrote (``{}``: none, or the
    output is gone). A last line cut short by a kill is skipped for the one before it."""
    path = journal_path(output)
    if not output.exists() or not path.exists():
        return {}
    with path.open("rb") as journal:
        journal.seek(max(0, journal.seek(0, os.SEEK_END) - _TAIL))
        tail = journal.read()
    for line in reversed(tail.splitlines()):
        try:
            written = json.loads(line)
            return {unit: Decimal(written[unit]) for unit in _SCALE if unit in written}
        except (ValueError, TypeError, KeyError, InvalidOperation):
            continue
    return {}


def _bound_of(spend: SpendSnapshot, earlier: dict[str, Decimal]) -> bytes:
    written = {
        totals.unit: str(max(totals.spent + totals.reserved, earlier.get(totals.unit, 0)))
        for totals in (spend.units, spend.dollars)
        if totals is not None
    }
    return json.dumps(written).encode() + b"\n"


class JournaledLimit(SpendLimit):
    """A run's spend limit that writes its upper bound to the journal at each reservation
    (:meth:`reserve` runs just before an attempt is sent: the line is written first, by
    the step it takes after each reservation)."""

    __slots__ = ("_earlier", "_fd")

    def __init__(self, **limits: Any):
        super().__init__(**limits, prices=PRICES)
        self.add_models(_MODELS)
        self._fd = -1
        self._earlier: dict[str, Decimal] = {}

    def count_earlier(self, written: dict[str, Decimal]) -> None:
        """Count as spent what the journal says the earlier runs may have spent beyond what
        this limit already counts (the output's answers)."""
        self._earlier = written  # kept in the new journal even if it cannot be counted here
        spend = self.spend
        for totals, model in ((spend.units, _EARLIER_UNITS), (spend.dollars, _EARLIER_DOLLARS)):
            if totals is None or written.get(totals.unit, Decimal(0)) <= totals.spent:
                continue
            extra = written[totals.unit] - totals.spent
            amount = int((extra * _SCALE[totals.unit]).to_integral_value(rounding=ROUND_CEILING))
            try:
                held = self.reserve(model, input_tokens=0, max_output_tokens=0)
            except SpendLimitError:
                continue  # the answers alone already pass the limit: nothing will be sent
            if totals.unit == "units":
                held.settle(input_tokens=amount, output_tokens=0)
            else:
                held.settle(input_tokens=0, output_tokens=amount)

    def start_journal(self, output: Path) -> None:
        """Replace the journal with where the limit stands, then append to it."""
        path = journal_path(output)
        fresh = path.with_name(path.name + ".tmp")
        fresh.write_bytes(_bound_of(self.spend, self._earlier))
        os.replace(fresh, path)
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def write_journal(self) -> None:
        """Append where the limit stands now (nothing before :meth:`start_journal`)."""
        if self._fd >= 0:
            os.write(self._fd, _bound_of(self.spend, self._earlier))

    def close_journal(self) -> None:
        """Write the last bound (the exact spend once nothing is in flight) and close."""
        fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                os.write(fd, _bound_of(self.spend, self._earlier))
                os.fsync(fd)
            finally:
                os.close(fd)

    def _reserved(self, held: Reservation) -> None:
        """Each reservation is written to the journal before its attempt is sent."""
        del held  # the bound written is the whole limit's, this attempt's hold included
        self.write_journal()
