"""Concurrency that finds its own level, against a quota it does not know.

    python benchmarks/bench_auto_concurrency.py [--caps 8 32 128] [--rounds 25] [--rpm]

For each cap K, MockRoutmy answers at most K requests at once (``max_in_flight``: a 429
with ``retry-after-ms`` beyond K, by default latency / K: how often a slot frees;
``--retry-after 1`` asks for a whole latency instead) with a latency scaled so that the
quota, never this machine, is the bottleneck (about 80 answers a second at K in flight).
A worker pool sends requests without end through one ``AsyncRoutmy`` (``max_retries=0``:
a refused request goes back to the pool; the client's 429 pause holds every start for the
wait the mock asks, as it does for any user) under each policy: fixed concurrencies K/2,
3K/4, K, 3K/2 and 2K (the sweep), and ``auto`` (``AdaptiveConcurrency`` from 4 up to 4K).
``--rpm`` adds a requests-per-window quota instead of the in-flight cap.

Reports successful answers per second after a warm-up of six latencies (the whole run in
brackets), the 429s, and for ``auto`` its mean and last level; then the issue's two goals:
auto >= 90% of the best fixed throughput, and >= 5x fewer 429s than a fixed 2K.

The pool is a plain asyncio loop here; ``create_many(concurrency="auto")`` will use the same
controller once it is wired in.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routmy_async import APITimeoutError, AsyncRoutmy, RateLimitError
from routmy_async._concurrency import AdaptiveConcurrency
from routmy_async.testing import MockRoutmy

ANSWERS_PER_SECOND = 80  # at the quota: low enough that a busy 2-core machine keeps up
WARM_UP_ROUNDS = 6
MESSAGES = [{"role": "user", "content": "hi"}]


class FixedLevel:
    """The controller's interface at a constant level: what ``concurrency=N`` does today."""

    def __init__(self, level: int):
        self.level = level
        self.in_flight = 0

    def try_start(self) -> int | None:
        if self.in_flight >= self.level:
            return None
        self.in_flight += 1
        return 0

    def finish(self, ticket: int, outcome: str) -> None:
        self.in_flight -= 1


@dataclass
class Run:
    policy: str
    answers: int
    answers_measured: int
    seconds: float
    measured_seconds: float
    rejections: int
    mean_level: float | None = None
    last_level: int | None = None

    @property
    def throughput(self) -> float:
        return self.answers_measured / self.measured_seconds

    @property
    def whole_throughput(self) -> float:
        return self.answers / self.seconds


async def drive(mock: MockRoutmy, limiter: Any, seconds: float, warm_up: float) -> Run:
    """Keep ``limiter``'s level of requests in flight for ``seconds``; count the answers."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    answers = measured = 0
    levels: list[int] = []
    began = loop.time()
    measure_from = began + warm_up
    end = began + seconds

    async def one(client: AsyncRoutmy, ticket: int) -> None:
        nonlocal answers, measured
        outcome = "neutral"
        try:
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
            outcome = "success"
            answers += 1
            if loop.time() >= measure_from:
                measured += 1
        except (RateLimitError, APITimeoutError):
            outcome = "loss"
        finally:
            limiter.finish(ticket, outcome)
            wake.set()

    tasks: set[asyncio.Task[None]] = set()
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as client:
        while (now := loop.time()) < end:
            wake.clear()  # before starting: a completion from here on wakes the wait below
            while (ticket := limiter.try_start()) is not None:
                task = asyncio.create_task(one(client, ticket))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if isinstance(limiter, AdaptiveConcurrency) and now >= measure_from:
                levels.append(limiter.level)
            try:
                await asyncio.wait_for(wake.wait(), timeout=max(0.0, end - now))
            except asyncio.TimeoutError:
                break
        # Let the last answers arrive (not counted): cancelling them mid-answer only makes
        # the server log its handlers' cancellation.
        await asyncio.gather(*tasks, return_exceptions=True)
    run = Run(
        policy="",
        answers=answers,
        answers_measured=measured,
        seconds=seconds,
        measured_seconds=seconds - warm_up,
        rejections=mock.quota_rejections,
    )
    if levels:
        run.mean_level = sum(levels) / len(levels)
        run.last_level = levels[-1]
    return run


async def one_policy(
    name: str, limiter: Any, quota: dict[str, Any], latency: float, rounds: int
) -> Run:
    async with MockRoutmy(latency=latency, **quota) as mock:
        run = await drive(mock, limiter, rounds * latency, WARM_UP_ROUNDS * latency)
    run.policy = name
    return run


def report(title: str, runs: list[Run], reference: int) -> bool:
    print(f"\n### {title}\n")
    print("| policy | answers/s (whole run) | 429s | auto level: mean, last |")
    print("|---|---|---|---|")
    for run in runs:
        level = "" if run.mean_level is None else f"{run.mean_level:.1f}, {run.last_level}"
        print(
            f"| {run.policy} | {run.throughput:.1f} ({run.whole_throughput:.1f}) "
            f"| {run.rejections} | {level} |"
        )
    auto = next(run for run in runs if run.policy == "auto")
    fixed = [run for run in runs if run.policy != "auto"]
    best = max(fixed, key=lambda run: run.throughput)
    double = next(run for run in fixed if run.policy == f"fixed {2 * reference}")
    share = auto.throughput / best.throughput
    fewer = double.rejections / max(1, auto.rejections)
    ok = share >= 0.9 and fewer >= 5
    print(
        f"\nauto: {share:.0%} of the best fixed ({best.policy}); "
        f"{fewer:.1f}x fewer 429s than fixed {2 * reference} -> {'met' if ok else 'NOT met'}"
    )
    return ok


def sweep(reference: int) -> list[int]:
    levels = {max(1, reference // 2), max(1, 3 * reference // 4), reference}
    levels |= {3 * reference // 2, 2 * reference}
    return sorted(levels)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--caps", type=int, nargs="*", default=[8, 32, 128])
    parser.add_argument("--rounds", type=int, default=25, help="run length, in latencies")
    parser.add_argument("--rpm", action="store_true", help="also a requests-per-window quota")
    parser.add_argument(
        "--retry-after",
        type=float,
        default=None,
        help="the wait a refusal asks for, in latencies (default: the mock's, latency / K)",
    )
    args = parser.parse_args()
    met = True
    for cap in args.caps:
        latency = cap / ANSWERS_PER_SECOND
        quota: dict[str, Any] = {
            "max_in_flight": cap,
            "latency_per_in_flight": latency / (4 * cap),
        }
        if args.retry_after is not None:
            quota["quota_retry_after"] = args.retry_after * latency
        runs = [
            await one_policy(f"fixed {level}", FixedLevel(level), quota, latency, args.rounds)
            for level in sweep(cap)
        ]
        auto = AdaptiveConcurrency(max_concurrency=4 * cap)
        runs.append(await one_policy("auto", auto, quota, latency, args.rounds))
        met &= report(f"max_in_flight K={cap}, latency {latency:.2f} s", runs, cap)
    if args.rpm:
        # A quota of ANSWERS_PER_SECOND admissions a second: the level that meets it is the
        # rate times the latency.
        latency, window = 0.4, 2.0
        reference = round(ANSWERS_PER_SECOND * latency)
        quota = {"requests_per_minute": int(ANSWERS_PER_SECOND * window), "quota_window": window}
        runs = [
            await one_policy(f"fixed {level}", FixedLevel(level), quota, latency, args.rounds * 2)
            for level in sweep(reference)
        ]
        auto = AdaptiveConcurrency(max_concurrency=4 * reference)
        runs.append(await one_policy("auto", auto, quota, latency, args.rounds * 2))
        title = f"{ANSWERS_PER_SECOND} requests/s (per {window:.0f} s window), latency {latency} s"
        met &= report(title, runs, reference)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
