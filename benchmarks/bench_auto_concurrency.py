"""Concurrency that finds its own level, against a quota it does not know.

    python benchmarks/bench_auto_concurrency.py [--caps 8 32 128] [--rounds 25] [--rpm]

For each cap K, MockRoutmy answers at most K requests at once (``max_in_flight``: a 429
with ``retry-after-ms`` beyond K, by default latency / K: how often a slot frees;
``--retry-after 1`` asks for a whole latency instead) with a latency scaled so that the
quota, never this machine, is the bottleneck (about 80 answers a second at K in flight).
``create_many_iter`` sends requests without end through one ``AsyncRoutmy``
(``max_retries=0`` unless ``--retries N``: a refused request is a result and its slot goes
back to the level; the client's 429 pause holds every start for the wait the mock asks, as it
does for any user) under each policy: fixed concurrencies K/2, 3K/4, K, 3K/2 and 2K (the
sweep), and ``concurrency=AutoConcurrency(max_concurrency=4K)`` (from 4).
``--rpm`` adds a requests-per-window quota instead of the in-flight cap.

Reports successful answers per second after a warm-up of six latencies (the whole run in
brackets), the 429s, and for ``auto`` its mean and last level; then the issue's two goals:
auto >= 90% of the best fixed throughput, and >= 5x fewer 429s than a fixed 2K.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from routmy_async import AsyncRoutmy, AutoConcurrency
from routmy_async.testing import MockRoutmy
from routmy_async.types import ChatCompletion

ANSWERS_PER_SECOND = 80  # at the quota: low enough that a busy 2-core machine keeps up
WARM_UP_ROUNDS = 6
REQUEST = {"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}]}


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


async def drive(
    mock: MockRoutmy,
    concurrency: int | AutoConcurrency,
    seconds: float,
    warm_up: float,
    retries: int,
) -> Run:
    """Run ``create_many_iter`` over requests without end for ``seconds``; count the answers."""
    loop = asyncio.get_running_loop()
    answers = measured = 0
    levels: list[int] = []
    began = loop.time()
    measure_from = began + warm_up
    end = began + seconds
    auto = concurrency if isinstance(concurrency, AutoConcurrency) else None

    def endless() -> Iterator[dict[str, Any]]:
        # Pulled one request per free slot: the input ends when the time is up, and the
        # requests in flight then finish (not counted).
        while loop.time() < end:
            yield REQUEST

    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, max_retries=retries
    ) as client:
        async for _, result in client.chat.completions.create_many_iter(
            endless(), concurrency=concurrency
        ):
            now = loop.time()
            if isinstance(result, ChatCompletion) and now < end:
                answers += 1
                if now >= measure_from:
                    measured += 1
            if auto is not None and measure_from <= now < end:
                levels.append(auto.level)
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
    name: str,
    concurrency: int | AutoConcurrency,
    quota: dict[str, Any],
    latency: float,
    rounds: int,
    retries: int,
) -> Run:
    async with MockRoutmy(latency=latency, **quota) as mock:
        run = await drive(mock, concurrency, rounds * latency, WARM_UP_ROUNDS * latency, retries)
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
    parser.add_argument(
        "--retries",
        type=int,
        default=0,
        help="the client's max_retries (default 0: a refused request is a result; with "
        "retries the transport retries it after the 429's wait, holding its slot)",
    )
    parser.add_argument("--only-rpm", action="store_true", help="skip the in-flight caps")
    parser.add_argument(
        "--backoff", type=float, default=0.85, help="what a loss multiplies auto's level by"
    )
    args = parser.parse_args()
    if args.only_rpm:
        args.caps = []
        args.rpm = True
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
            await one_policy(f"fixed {level}", level, quota, latency, args.rounds, args.retries)
            for level in sweep(cap)
        ]
        auto = AutoConcurrency(max_concurrency=4 * cap, backoff=args.backoff)
        runs.append(await one_policy("auto", auto, quota, latency, args.rounds, args.retries))
        met &= report(f"max_in_flight K={cap}, latency {latency:.2f} s", runs, cap)
    if args.rpm:
        # A quota of ANSWERS_PER_SECOND admissions a second: the level that meets it is the
        # rate times the latency.
        latency, window = 0.4, 2.0
        reference = round(ANSWERS_PER_SECOND * latency)
        quota = {"requests_per_minute": int(ANSWERS_PER_SECOND * window), "quota_window": window}
        rounds = args.rounds * 2
        runs = [
            await one_policy(f"fixed {level}", level, quota, latency, rounds, args.retries)
            for level in sweep(reference)
        ]
        auto = AutoConcurrency(max_concurrency=4 * reference, backoff=args.backoff)
        runs.append(await one_policy("auto", auto, quota, latency, rounds, args.retries))
        title = f"{ANSWERS_PER_SECOND} requests/s (per {window:.0f} s window), latency {latency} s"
        met &= report(title, runs, reference)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
