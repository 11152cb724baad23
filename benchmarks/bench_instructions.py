"""Machine instructions per request and per chunk, this checkout against a git revision:
the A/B that noise cannot move.

    python benchmarks/bench_instructions.py --against 7401da0

CPU time on a shared 2-core VM swings 10-60% between identical runs; an instruction count
under valgrind's callgrind moves by a fraction of a percent. Each workload runs in one client
process under ``valgrind --tool=callgrind`` (the upstream, ``_upstream.py``, runs in its own
process and is not counted) twice, with a small and a larger number of calls; the difference
divided by the extra requests (or stream events) is the cost of one, with the process's
start, the imports and the client's construction cancelled out. ``import`` is the whole of
``python -c "import routmy_async"`` (aiohttp and msgspec included). Both trees are compiled
first, as an installed package is.

Needs valgrind (``apt-get install valgrind``). Takes a few minutes: callgrind runs Python
about 50x slower.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# (workload, calls in the short run, calls in the long run)
WORKLOADS = (("nonstream", 100, 400), ("stream", 2, 8), ("tools", 2, 8))


def _worker(kind: str, count: int, base_url: str) -> None:
    """In the traced process: ``count`` calls of one kind, one after another."""
    sys.path.insert(0, str(HERE))
    from _worker import make

    async def run() -> int:
        sdk = make("routmy", base_url)
        units = 0
        try:
            for _ in range(count):
                if kind == "nonstream":
                    await sdk.create("bench/completion")
                    units += 1
                else:
                    model = "bench/text" if kind == "stream" else "bench/tools"
                    units += (await sdk.stream(model))[2]
        finally:
            await sdk.close()
        return units

    print(asyncio.run(run()))


def _instructions(tree: Path, argv: list[str]) -> tuple[int, str]:
    """Run ``python argv`` under callgrind with ``tree`` first on the path: (instructions,
    the last line it printed)."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "callgrind.out"
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, *argv],
            env={**os.environ, "PYTHONPATH": str(tree)},
            cwd=scratch,
            capture_output=True,
            text=True,
            check=True,
        )
        totals = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        assert totals is not None, done.stderr
        printed = done.stdout.strip().splitlines()
        return int(totals.group(1)), printed[-1] if printed else ""


def _tree_of(revision: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "archive", revision, "routmy_async"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tempfile.TemporaryFile() as file:
        file.write(archive)
        file.seek(0)
        with tarfile.open(fileobj=file) as tar:
            tar.extractall(into, filter="data")
    return into


def _per_unit(tree: Path, kind: str, short: int, long: int, base_url: str) -> float:
    me = str(Path(__file__).resolve())
    low, low_units = _instructions(tree, [me, "--worker", kind, str(short), base_url])
    high, high_units = _instructions(tree, [me, "--worker", kind, str(long), base_url])
    return (high - low) / (int(high_units) - int(low_units))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", help="the git revision to compare with (required)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, count, base_url = args.worker
        _worker(kind, int(count), base_url)
        return
    if not args.against:
        parser.error("--against REVISION is required")
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "_upstream.py"), "0"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert upstream.stdout is not None
        base_url = f"http://127.0.0.1:{upstream.stdout.readline().strip()}/v1"
        with tempfile.TemporaryDirectory() as scratch:
            trees = {args.against: _tree_of(args.against, Path(scratch)), "this checkout": ROOT}
            for tree in trees.values():
                compileall.compile_dir(tree / "routmy_async", quiet=1)
            rows = []
            for kind, short, long in WORKLOADS:
                a, b = (_per_unit(t, kind, short, long, base_url) for t in trees.values())
                unit = "request" if kind == "nonstream" else "event"
                rows.append((f"{kind} (per {unit})", a, b))
            a, b = (_instructions(t, ["-c", "import routmy_async"])[0] for t in trees.values())
            rows.append(("import routmy_async (whole process)", a, b))
    finally:
        upstream.terminate()
        upstream.wait()
    print(f"| measure | {args.against} | this checkout | B / A |")
    print("|---|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a:,.0f} | {b:,.0f} | {b / a:.3f}x |")


if __name__ == "__main__":
    main()
