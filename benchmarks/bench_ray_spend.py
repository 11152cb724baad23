"""The Ray cluster spend limit's round trips: a ChatStep with and without
``ClusterBudget(spend_limit=...)``, rows per second and coordinator calls per row.

    python benchmarks/bench_ray_spend.py [--rows 4000] [--actors 2] [--in-flight 16]
        [--latency 0.02] [--repeat 3]

Starts MockRoutmy in its own process (``python -m routmy_async.testing``, answering as
rout.my: token usage, no cost), then sends the same rows through ``ChatStep`` on a local
Ray (``ray.init(num_cpus=2)``) two ways: with no budget, and with a ``ClusterBudget`` whose
only limit is a spend limit in quota units that the rows never reach (the cost of the
blocks alone). Each attempt then reserves its worst case from the blocks its actor holds
and asks the coordinator for another when they are short; ``budget.stats()["spend"]``
counts those calls and the blocks handed out, reported per row. Rates are measured inside
the actors, from the first batch's start to the last batch's end (Ray's actor start-up is
left out), after one small warm-up run of each. With ``--repeat N`` the variants run N
times, interleaved, and each figure is the median (min-max). Needs the ray extra.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import warnings
from typing import Any

from _runs import load, summary  # beside this script

KEY = "sk-bench"
# Far above what the rows use (a row uses ~20 units and reserves ~100): never reached.
UNITS = 10**9


def with_ray(
    base_url: str, count: int, actors: int, in_flight: int, spend: bool
) -> dict[str, float]:
    import ray.data

    from routmy_async import SpendLimit
    from routmy_async.integrations.ray import ChatStep, ClusterBudget

    class TimedStep(ChatStep):
        """The step, noting each batch's wall span."""

        def __call__(self, batch: Any) -> Any:
            start = time.time()
            out = super().__call__(batch)
            end = time.time()
            size = out.num_rows
            return out.append_column("bench_start", [[start] * size]).append_column(
                "bench_end", [[end] * size]
            )

    options: dict[str, Any] = {
        "model": "mock/echo",
        "base_url": base_url,
        "prompt_column": "prompt",
        "max_tokens": 16,
        "max_in_flight": in_flight,
    }
    budget = None
    if spend:
        budget = ClusterBudget(
            name=f"bench-spend-{time.time_ns()}", spend_limit=SpendLimit(max_units=UNITS)
        )
        options["budget"] = budget
    items = [{"prompt": f"row {i}: say something short"} for i in range(count)]
    out = (
        ray.data.from_items(items)
        .map_batches(
            TimedStep,
            fn_constructor_kwargs=options,
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=200,
            batch_format="pyarrow",
            num_cpus=0.25,
        )
        .select_columns(["error", "bench_start", "bench_end"])
        .to_pandas()
    )
    span = out["bench_end"].max() - out["bench_start"].min()
    result = {"rows_per_s": count / span, "failed": int((out["error"] != "").sum())}
    if budget is not None:
        stats = budget.stats()["spend"]
        # An actor reports what it spent on its next call or when its step closes, which
        # may come just after the dataset ends: wait a little for the last reports.
        deadline = time.monotonic() + 5
        while stats["held"] and time.monotonic() < deadline:
            time.sleep(0.1)
            stats = budget.stats()["spend"]
        result["calls_per_row"] = stats["calls"] / count
        result["blocks_per_row"] = stats["blocks"] / count
        result["spent_units"] = float(stats["spent"])
        budget.shutdown()
    return result


def start_mock(latency: float) -> tuple[subprocess.Popen[str], str]:
    mock = subprocess.Popen(
        [sys.executable, "-m", "routmy_async.testing", "--port", "0", "--api-key", KEY,
         "--latency", str(latency)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert mock.stdout is not None
    found = re.search(r"listening on (\S+)", mock.stdout.readline())
    assert found is not None, "MockRoutmy did not start"
    return mock, found[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=16, help="requests in flight per actor")
    parser.add_argument("--latency", type=float, default=0.02, help="the mock's seconds a request")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant (median)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    loads = [load()]
    mock, base_url = start_mock(args.latency)
    results: dict[str, list[dict[str, float]]] = {"ray_step": [], "ray_step_spend": []}
    try:
        import ray
        import ray.data

        os.environ["ROUTMY_API_KEY"] = KEY  # inherited by the Ray workers
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        for spend in (False, True):  # warm-up: Ray's first datasets start slower
            with_ray(base_url, max(200, args.rows // 10), args.actors, args.in_flight, spend)
        for _ in range(args.repeat):
            for name, spend in (("ray_step", False), ("ray_step_spend", True)):
                results[name].append(
                    with_ray(base_url, args.rows, args.actors, args.in_flight, spend)
                )
        ray.shutdown()
    finally:
        mock.terminate()
        mock.wait()
    loads.append(load())
    print(
        f"{args.rows} rows, {args.actors} actors x {args.in_flight} in flight, mock latency "
        f"{args.latency * 1e3:.0f} ms, {args.repeat} run(s) each; load average {loads[0]} "
        f"before, {loads[1]} after"
    )
    for name, runs in results.items():
        failed = sum(int(run["failed"]) for run in runs)
        calls = (
            f"  {summary(runs, 'calls_per_row', '.4f')} coordinator calls/row"
            f"  {summary(runs, 'blocks_per_row', '.4f')} blocks/row"
            if "calls_per_row" in runs[0]
            else ""
        )
        print(f"{name:16} {summary(runs, 'rows_per_s', '.0f')} rows/s  failed {failed}{calls}")
    print(json.dumps({"rows": args.rows, "actors": args.actors, "load": loads, **results}))


if __name__ == "__main__":
    main()
