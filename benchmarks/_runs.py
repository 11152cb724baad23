"""What the Ray benchmarks report about their runs: the machine's load, and medians."""

from __future__ import annotations

import statistics
from pathlib import Path


def load() -> str:
    """The 1-minute load average (this machine's other work shares its cores)."""
    try:
        return Path("/proc/loadavg").read_text().split()[0]
    except OSError:
        return "?"


def summary(runs: list[dict[str, float]], field: str, spec: str) -> str:
    """The median of ``field`` over the runs, with its range when there are several."""
    values = [run[field] for run in runs]
    middle = format(statistics.median(values), spec)
    if len(values) == 1:
        return middle
    return f"{middle} ({format(min(values), spec)}-{format(max(values), spec)})"
