"""Machine instructions per delta of partial output, counted under valgrind's callgrind.

CPU time on a shared VM swings; instructions do not. Each side runs the answer a few times
and many times, each in its own process under callgrind; the difference, divided by the
deltas between the two, cancels the process's start, imports and warm-up. The stream's extra
is the structured stream's figure less the plain stream's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

SHORT, LONG = 2, 12  # passes over the answer in the two runs of a side
SIDES = ("ours", "jiter", "growth", "stream", "plain")


def _instructions(script: Path, argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                str(script),
                *argv,
            ],
            # One hash seed for every run: the dicts' and sets' layouts (and so the probes of
            # each lookup) move the count by up to ~7% from seed to seed.
            env={**os.environ, "PYTHONHASHSEED": "0"},
            capture_output=True,
            text=True,
            check=True,
        )
        totals = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        assert totals is not None, done.stderr
        return int(totals.group(1))


def per_delta(script: Path, side: str, kilobytes: int, deltas: int) -> float:
    low = _instructions(script, ["--worker", side, str(kilobytes), str(SHORT)])
    high = _instructions(script, ["--worker", side, str(kilobytes), str(LONG)])
    return (high - low) / ((LONG - SHORT) * deltas)


def report(script: Path, sizes: list[int]) -> None:
    sys.path.insert(0, str(script.parent))
    from bench_partial import answer_of_size, deltas_of

    print("machine instructions per delta (callgrind), thousands:")
    for kilobytes in sizes:
        deltas = len(deltas_of(answer_of_size(kilobytes)))
        count = {side: per_delta(script, side, kilobytes, deltas) for side in SIDES}
        jiter = count["jiter"] - count["growth"]
        extra = count["stream"] - count["plain"]
        print(
            f"{kilobytes:>4} KB: parser {count['ours'] / 1e3:.1f}k, stream extra"
            f" {extra / 1e3:.1f}k (structured {count['stream'] / 1e3:.1f}k, plain"
            f" {count['plain'] / 1e3:.1f}k), jiter re-parse {jiter / 1e3:.1f}k;"
            f" jiter / stream extra {jiter / extra:.2f}x",
            flush=True,
        )
