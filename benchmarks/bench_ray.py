"""The Ray Data step against one process's create_many: rows per second, client CPU per row.

    python benchmarks/bench_ray.py [--rows 20000] [--actors 2] [--concurrency 32] [--repeat 3]

Starts the fake upstream (``_upstream.py``, prebuilt answers) in its own process, then sends
the same rows three ways: ``create_many`` in this process (concurrency actors x concurrency),
and ``ChatStep`` on a local Ray (``ray.init(num_cpus=2)``) with ``actors`` actors, without and
with a ``ClusterBudget`` whose limit is never reached (the cost of the grants alone). Rates
are measured inside the actors, from the first batch's start to the last batch's end, so
the seconds Ray takes to start its actors are reported apart. CPU is the client's
``process_time`` (each actor's, around its batches). With ``--repeat N`` the three variants
run N times, interleaved, and each figure is the median (min-max); the load average before
and after says how busy the machine was. Needs the ray extra.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from _runs import load, summary  # beside this script

HERE = Path(__file__).resolve().parent


def rows(count: int) -> list[dict[str, Any]]:
    return [{"id": i, "messages": [{"role": "user", "content": f"row {i}"}]} for i in range(count)]


async def one_process(base_url: str, count: int, concurrency: int) -> dict[str, float]:
    from routmy_async import AsyncRoutmy

    requests = [{"model": "bench/json", **row} for row in rows(count)]
    for request in requests:
        del request["id"]
    async with AsyncRoutmy(api_key="sk-bench", base_url=base_url, max_retries=0) as client:
        cpu, wall = time.process_time(), time.perf_counter()
        results = await client.chat.completions.create_many(requests, concurrency=concurrency)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    failed = sum(isinstance(result, BaseException) for result in results)
    return {"rows_per_s": count / wall, "cpu_ms_per_row": cpu / count * 1e3, "failed": failed}


def with_ray(
    base_url: str, count: int, actors: int, concurrency: int, budgeted: bool
) -> dict[str, float]:
    import ray
    import ray.data

    from routmy_async.integrations.ray import ChatStep, ClusterBudget

    class TimedStep(ChatStep):
        """The step, noting each batch's wall span and the actor's CPU for it."""

        def __call__(self, batch: Any) -> Any:
            cpu, start = time.process_time(), time.time()
            out = super().__call__(batch)
            cpu, end = time.process_time() - cpu, time.time()
            size = out.num_rows
            return (
                out.append_column("bench_cpu", [[cpu / size] * size])
                .append_column("bench_start", [[start] * size])
                .append_column("bench_end", [[end] * size])
            )

    options: dict[str, Any] = {"model": "bench/json", "base_url": base_url}
    options["max_in_flight"] = concurrency
    if budgeted:
        options["budget"] = ClusterBudget(
            requests_per_minute=100_000_000, name=f"bench-{time.time_ns()}"
        )
    started = time.perf_counter()
    out = (
        ray.data.from_items(rows(count))
        .map_batches(
            TimedStep,
            fn_constructor_kwargs=options,
            compute=ray.data.ActorPoolStrategy(size=actors),
            batch_size=500,
            batch_format="pyarrow",
            num_cpus=0.25,
        )
        .select_columns(["error", "bench_cpu", "bench_start", "bench_end"])
        .to_pandas()
    )
    total = time.perf_counter() - started
    span = out["bench_end"].max() - out["bench_start"].min()
    return {
        "rows_per_s": count / span,
        "cpu_ms_per_row": out["bench_cpu"].sum() / count * 1e3,
        "failed": int((out["error"] != "").sum()),
        "wall_with_actor_start_s": total,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight per actor")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant (median)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    loads = [load()]
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "_upstream.py"), "0"], stdout=subprocess.PIPE, text=True
    )
    results: dict[str, list[dict[str, float]]] = {
        "create_many": [],
        "ray_step": [],
        "ray_step_budget": [],
    }
    try:
        assert upstream.stdout is not None
        base_url = f"http://127.0.0.1:{upstream.stdout.readline().strip()}/v1"
        import ray

        os.environ["ROUTMY_API_KEY"] = "sk-bench"  # inherited by the Ray workers
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        for _ in range(args.repeat):
            results["create_many"].append(
                asyncio.run(one_process(base_url, args.rows, args.actors * args.concurrency))
            )
            for name, budgeted in (("ray_step", False), ("ray_step_budget", True)):
                results[name].append(
                    with_ray(base_url, args.rows, args.actors, args.concurrency, budgeted)
                )
        ray.shutdown()
    finally:
        upstream.terminate()
        upstream.wait()
    loads.append(load())
    print(
        f"{args.rows} rows, {args.actors} actors x {args.concurrency} in flight, "
        f"{args.repeat} run(s) each; load average {loads[0]} before, {loads[1]} after"
    )
    for name, runs in results.items():
        failed = sum(int(run["failed"]) for run in runs)
        started = (
            f"  {summary(runs, 'wall_with_actor_start_s', '.1f')} s with actor start"
            if "wall_with_actor_start_s" in runs[0]
            else ""
        )
        print(
            f"{name:16} {summary(runs, 'rows_per_s', '.0f')} rows/s"
            f"  {summary(runs, 'cpu_ms_per_row', '.3f')} ms CPU/row  failed {failed}{started}"
        )
    print(json.dumps({"rows": args.rows, "actors": args.actors, "load": loads, **results}))


if __name__ == "__main__":
    main()
