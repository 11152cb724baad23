"""A batch script: JSONL prompts in, JSONL results out; failures recorded; resumable.

    python examples/batch.py prompts.jsonl results.jsonl

Each input line is {"id": ..., "prompt": ...}. Lines whose id is already in the output file
are skipped, so an interrupted run picks up where it stopped. A progress bar shows when the
`progress` extra (tqdm) is installed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from _mock_env import model, routmy_client


def done_ids(path: Path) -> set[str]:
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_text().splitlines():
        if line.strip():
            ids.add(str(json.loads(line)["id"]))
    return ids


def pending(source: Path, skip: set[str]) -> Iterator[dict[str, Any]]:
    # Read lazily: create_many pulls the next line only when a slot frees up.
    with source.open() as lines:
        for line in lines:
            if line.strip():
                item = json.loads(line)
                if str(item["id"]) not in skip:
                    yield item


async def main(source: Path, target: Path, concurrency: int = 16) -> int:
    skip = done_ids(target)
    items: list[dict[str, Any]] = []

    def requests() -> Iterator[dict[str, Any]]:
        for item in pending(source, skip):
            items.append(item)
            yield {"model": model(), "messages": [{"role": "user", "content": item["prompt"]}]}

    written = 0
    async with routmy_client() as client:
        with target.open("a") as out:
            async for index, result in client.chat.completions.create_many_iter(
                requests(), concurrency=concurrency, progress=True
            ):
                record: dict[str, Any] = {"id": items[index]["id"]}
                if isinstance(result, BaseException):
                    record["error"] = f"{type(result).__name__}: {result}"
                else:
                    record["answer"] = result.choices[0].message.content
                    record["tokens"] = result.usage.total_tokens if result.usage else None
                out.write(json.dumps(record) + "\n")
                out.flush()  # each finished line survives an interruption
                written += 1
    print(f"{written} written, {len(skip)} skipped (already done)")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]))))
