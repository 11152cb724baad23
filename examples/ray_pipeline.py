"""Answer every row of a JSONL or Parquet file in a Ray Data pipeline, within one rate budget.

    python examples/ray_pipeline.py --sample questions.jsonl       # a small file to try
    python examples/ray_pipeline.py questions.jsonl answers/        # JSONL in, Parquet out
    python examples/ray_pipeline.py questions.jsonl answers/ --format json   # JSONL out
    python examples/ray_pipeline.py questions.parquet answers/ --address auto  # a running cluster

Each row needs a "question" column; the answers land next to it ("content", "error",
"cost", ...) in Parquet (or JSON Lines) files under the target folder. Needs the ray extra:
pip install 'routmy-async[ray]'.

With ROUTMY_API_KEY set, every Ray worker reads the key from its own environment (set it
where the nodes start; it is never passed as an argument). Without it, the example starts a
MockRoutmy in this process and a Ray on this machine whose actors reach it on 127.0.0.1
(--address is ignored then: a cluster's other nodes could not reach the mock).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow.parquet
import ray
import ray.data

from routmy_async.integrations.ray import ChatStep, ClusterBudget
from routmy_async.testing import MockRoutmy


def write_sample(path: Path, count: int = 40) -> None:
    with path.open("w") as out:
        for index in range(count):
            out.write(json.dumps({"id": index, "question": f"One fact about {index}?"}) + "\n")


def answer(
    dataset: Any, *, model: str, budget: ClusterBudget, base_url: str | None, actors: int
) -> Any:
    """The pipeline's model step: one client per actor, every actor within ``budget``."""
    return dataset.map_batches(
        ChatStep,
        fn_constructor_kwargs={
            "model": model,
            "prompt_column": "question",
            "system_prompt": "Answer in one sentence.",
            "max_tokens": 128,
            # Requests in flight per actor (it was "concurrency"; map_batches' own
            # concurrency= is the number of actors).
            "max_in_flight": 16,
            # With "response_format": a Struct or Pydantic model (Structs from a module of
            # yours, not from this script: Ray strips their fields), the step adds "parsed",
            # a struct column of the same type in every batch; a type with no single Arrow
            # type (int | str, Any, dict[...], recursive) or a dict format makes it JSON text.
            "budget": budget,
            "base_url": base_url,
        },
        compute=ray.data.ActorPoolStrategy(size=actors),
        batch_size=32,
        batch_format="pyarrow",
        num_cpus=0.25,  # the step mostly waits on the network
    )


def run(
    source: Path,
    target: Path,
    *,
    model: str,
    base_url: str | None,
    actors: int,
    output: str = "parquet",
) -> str:
    """Read ``source`` (.jsonl or .parquet), answer every row, write Parquet (or, with
    ``output="json"``, JSON Lines) files to the folder ``target``; return a one-line summary."""
    if source.suffix == ".parquet":
        dataset = ray.data.read_parquet(str(source))
    else:
        dataset = ray.data.read_json(str(source))  # one JSON object a line
    budget = ClusterBudget(requests_per_minute=600, name="ray-pipeline-example")
    answers = answer(dataset, model=model, budget=budget, base_url=base_url, actors=actors)
    # The pipeline runs here, streaming: each block is written as soon as it is answered.
    if output == "json":
        answers.write_json(str(target))  # one JSON object a line, one file per block
        summary = [
            json.loads(line)
            for path in sorted(target.glob("*.json"))
            for line in path.read_text().splitlines()
        ]
    else:
        answers.write_parquet(str(target))
        # Two small columns of the result, read back here rather than in another Ray job.
        summary = pyarrow.parquet.read_table(str(target), columns=["error", "cost"]).to_pylist()
    failed = sum(1 for row in summary if row["error"])
    cost = sum(row["cost"] or 0.0 for row in summary)
    return (
        f"{len(summary)} rows answered, {failed} failed, cost {cost:.6f} USD, written to {target}"
    )


@contextmanager
def mock_in_a_thread() -> Iterator[MockRoutmy]:
    """A MockRoutmy serving from its own event loop while Ray blocks this thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    mock = MockRoutmy()
    asyncio.run_coroutine_threadsafe(mock.start(), loop).result()
    try:
        yield mock
    finally:
        asyncio.run_coroutine_threadsafe(mock.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("target", type=Path, nargs="?")
    parser.add_argument("--sample", action="store_true", help="write a sample source file")
    parser.add_argument("--address", help="a running Ray cluster (auto: the local one)")
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--format", choices=("parquet", "json"), default="parquet")
    args = parser.parse_args(argv)
    if args.sample:
        write_sample(args.source)
        print(f"wrote {args.source}")
        return 0
    if args.target is None:
        parser.error("the target folder is required")
    model = os.environ.get("ROUTMY_MODEL", "mock/echo")
    if os.environ.get("ROUTMY_API_KEY"):
        ray.init(address=args.address)
        summary = run(
            args.source,
            args.target,
            model=model,
            base_url=None,
            actors=args.actors,
            output=args.format,
        )
        print(summary)
        return 0
    with mock_in_a_thread() as mock:
        # Set before Ray starts: its worker processes inherit this environment.
        os.environ["ROUTMY_API_KEY"] = mock.api_key
        # A new Ray on this machine, never a running cluster: other nodes cannot reach the
        # mock on 127.0.0.1.
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        summary = run(
            args.source,
            args.target,
            model=model,
            base_url=mock.base_url,
            actors=args.actors,
            output=args.format,
        )
        print(summary)
        ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
