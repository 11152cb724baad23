"""Run an OpenAI Batch-format JSONL file: resumable, crash-safe, within a budget.

    python examples/batch.py --sample requests.jsonl      # write a small file to try
    python examples/batch.py requests.jsonl results.jsonl [MAX_UNITS]

MAX_UNITS is rout.my's own unit of spend, quota units: tokens times the model's
token_multiplier. Every request reserves its worst case before it is sent and settles to its
real usage, so the output (earlier runs' answers included) never uses more; the run stops
when the next request does not fit. (max_cost= does the same in dollars, against a server
that lists prices.)

Input lines are {"custom_id", "method", "url", "body"}, as for the OpenAI Batch API; results
are OpenAI Batch output lines, written one whole line at a time as each request ends. Run the
same command again after a crash or a Ctrl-C: ids already done are skipped, failed ones are
sent again. (The command line does the same: routmy batch requests.jsonl -o results.jsonl.)
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from _mock_env import model, routmy_client

from routmy_async import BatchFileError, BatchStop, run_batch_file


def write_sample(path: Path, count: int = 20) -> None:
    with path.open("w") as out:
        for i in range(count):
            body = {
                "model": model(),
                "messages": [{"role": "user", "content": f"Give me one fact about {i}."}],
                "max_tokens": 64,
            }
            line = {"custom_id": f"fact-{i}", "method": "POST", "url": "/v1/chat/completions"}
            out.write(json.dumps({**line, "body": body}) + "\n")


async def main(source: Path, target: Path, max_units: float | None) -> int:
    # Ctrl-C once: no new requests, those in flight finish and are written; twice: at once.
    stop = BatchStop()
    asyncio.get_running_loop().add_signal_handler(signal.SIGINT, stop.request)
    async with routmy_client() as client:
        try:
            summary = await run_batch_file(
                client,
                source,
                target,
                concurrency=16,
                max_units=max_units,  # quota units, earlier runs' answers included
                progress=True,  # a tqdm bar with the `progress` extra, else log lines
                stop=stop,
            )
        except BatchFileError as error:
            # Invalid lines (the message lists the first ones; nothing was sent), the output
            # in use, a budget the server's answers cannot be held to, an input changed
            # during the run.
            print(error)
            return 1
    print(summary.format())
    return 0 if summary.complete and not summary.failed else 1


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--sample":
        write_sample(Path(sys.argv[2]))
        sys.exit(0)
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    budget = float(sys.argv[3]) if len(sys.argv) == 4 else None
    sys.exit(asyncio.run(main(Path(sys.argv[1]), Path(sys.argv[2]), budget)))
