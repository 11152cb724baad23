"""Batch files at scale: ``run_batch_file`` against ``create_many_iter`` over the same requests.

    python benchmarks/bench_batchfile.py [--lines 1000000] [--repeat 1] [--concurrency 64]

A fake upstream (a raw asyncio HTTP/1.1 keep-alive server writing one prebuilt ~600-byte
chat.completion with ``usage.cost``) runs in its own process. Each measurement runs in a
fresh process, repetitions interleaved:

- **create_many**: ``client.chat.completions.create_many_iter`` over a generator that reads
  the same JSONL file lazily and decodes each line's body; results are dropped. (This is
  ``create_many``'s machinery with bounded memory: ``create_many`` itself returns a list of
  every result, a gigabyte or more at a million lines.)
- **batch file**: ``run_batch_file`` over the file into a fresh output: validation pass,
  streaming, one line written per result, resume bookkeeping.
- **resume**: ``run_batch_file`` again over the finished output: the output is read back and
  the input validated, every line is skipped, nothing is sent.

Reported: wall time, the worker's CPU (user + system, all threads) per line, peak RSS
(``ru_maxrss``), and the ratios batch / create_many. The output is checked after the timer
(every id exactly once, every line a success). The upstream's CPU share is reported to show
it is not the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve()
MODES = ["create_many", "batch", "resume"]

ANSWER = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1744000000,
        "model": "bench/model",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "A short answer of about the length a batch job asks for, "
                    "one or two sentences that summarise the item it was given.",
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 14,
            "completion_tokens": 30,
            "total_tokens": 44,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
            "cost": 0.0000123,
        },
    },
    separators=(",", ":"),
).encode()
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-request-id: req-bench\r\n"
    + f"Content-Length: {len(ANSWER)}\r\n\r\n".encode()
    + ANSWER
)


# -- the upstream -----------------------------------------------------------------------------


class _Upstream(asyncio.Protocol):
    """Answers every request on a keep-alive connection with the prebuilt completion."""

    def connection_made(self, transport: Any) -> None:
        self._transport = transport
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).lower()
            at = head.find(b"content-length:")
            length = int(head[at + 15 : head.find(b"\r\n", at) if b"\r\n" in head[at:] else None])
            total = end + 4 + length
            if len(buffer) < total:
                return
            del buffer[:total]
            self._transport.write(RESPONSE)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Upstream, "127.0.0.1", port, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


# -- the workers ------------------------------------------------------------------------------


def write_input(path: Path, lines: int) -> None:
    with path.open("w") as out:
        for i in range(lines):
            body = {
                "model": "bench/model",
                "messages": [{"role": "user", "content": f"Summarise item {i} in one sentence."}],
                "max_tokens": 64,
            }
            line = {"custom_id": f"req-{i:08d}", "method": "POST", "url": "/v1/chat/completions"}
            out.write(json.dumps({**line, "body": body}, separators=(",", ":")) + "\n")


async def work(
    mode: str, port: int, source: Path, target: Path, concurrency: int
) -> dict[str, Any]:
    import msgspec

    from routmy_async import AsyncRoutmy, run_batch_file

    base_url = f"http://127.0.0.1:{port}/v1"
    async with AsyncRoutmy(api_key="sk-bench", base_url=base_url, max_retries=0) as client:
        began_cpu = time.process_time()
        began = time.perf_counter()
        done = failed = 0
        if mode == "create_many":

            class Line(msgspec.Struct):
                body: dict[str, Any]

            decode = msgspec.json.Decoder(Line).decode

            def requests() -> Any:
                with source.open("rb") as lines:
                    for raw in lines:
                        yield decode(raw).body

            async for _, result in client.chat.completions.create_many_iter(
                requests(), concurrency=concurrency
            ):
                done += 1
                failed += isinstance(result, BaseException)
        else:
            summary = await run_batch_file(client, source, target, concurrency=concurrency)
            done, failed = summary.done, summary.failed
            if mode == "resume":
                done = summary.skipped
        wall = time.perf_counter() - began
        cpu = time.process_time() - began_cpu
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "mode": mode,
        "done": done,
        "failed": failed,
        "wall": wall,
        "cpu": cpu,
        "max_rss_kib": usage.ru_maxrss,
    }


# -- the driver -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU from /proc (Linux), 0 elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_output(target: Path, lines: int) -> None:
    seen = set()
    with target.open("rb") as results:
        for raw in results:
            line = json.loads(raw)
            assert line["error"] is None and line["response"]["status_code"] == 200, line
            seen.add(line["custom_id"])
    assert seen == {f"req-{i:08d}" for i in range(lines)}, "not every id done exactly once"


def run_worker(
    mode: str, port: int, source: Path, target: Path, concurrency: int
) -> dict[str, Any]:
    command = [sys.executable, str(HERE), "--worker", mode, "--port", str(port)]
    command += ["--input", str(source), "--output", str(target), "--concurrency", str(concurrency)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"worker {mode} failed:\n{result.stderr}")
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--input", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--output", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.port))
        return
    if args.worker:
        result = asyncio.run(
            work(args.worker, args.port, args.input, args.output, args.concurrency)
        )
        print(json.dumps(result))
        return

    upstream = subprocess.Popen(
        [sys.executable, str(HERE), "--serve"], stdout=subprocess.PIPE, text=True
    )
    assert upstream.stdout is not None
    port = int(upstream.stdout.readline())
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    try:
        with tempfile.TemporaryDirectory(prefix="bench-batchfile-") as directory:
            source = Path(directory) / "requests.jsonl"
            write_input(source, args.lines)
            size = source.stat().st_size
            print(f"{args.lines:,} lines, {size / 2**20:,.1f} MiB of input", flush=True)
            for repetition in range(args.repeat):
                order = MODES if repetition % 2 == 0 else ["batch", "resume", "create_many"]
                target = Path(directory) / f"results-{repetition}.jsonl"
                for mode in order:
                    before = cpu_seconds(upstream.pid)
                    result = run_worker(mode, port, source, target, args.concurrency)
                    result["upstream_share"] = (cpu_seconds(upstream.pid) - before) / result["wall"]
                    assert result["done"] == args.lines and not result["failed"], result
                    if mode == "batch":
                        check_output(target, args.lines)
                    runs[mode].append(result)
                    print(
                        f"  {mode:<12} {result['wall']:8.1f} s wall, "
                        f"{result['cpu'] / args.lines * 1e6:7.1f} µs CPU/line, "
                        f"peak RSS {result['max_rss_kib'] / 1024:6.1f} MiB, "
                        f"upstream {result['upstream_share']:.0%} of a core",
                        flush=True,
                    )
                target.unlink()
    finally:
        upstream.terminate()
        upstream.wait()
    report(runs, args)


def report(runs: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> None:
    def median(mode: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[mode])

    lines = args.lines
    base_cpu = median("create_many", "cpu") / lines * 1e6
    base_rss = median("create_many", "max_rss_kib") / 1024
    print(
        f"\nPython {platform.python_version()}, {os.cpu_count()} CPUs, {lines:,} lines, "
        f"concurrency {args.concurrency}, median of {args.repeat}\n"
    )
    header = "| run | wall s | lines/s | µs CPU / line | peak RSS MiB"
    print(header + " | CPU / create_many | RSS / create_many |")
    print("|---|---|---|---|---|---|---|")
    for mode in MODES:
        cpu = median(mode, "cpu") / lines * 1e6
        rss = median(mode, "max_rss_kib") / 1024
        wall = median(mode, "wall")
        print(
            f"| {mode} | {wall:,.1f} | {lines / wall:,.0f} | {cpu:.1f} | {rss:.1f} | "
            f"{cpu / base_cpu:.2f} | {rss / base_rss:.2f} |"
        )
    overhead = median("batch", "cpu") / lines * 1e6 - base_cpu
    print(f"\nbatch-file overhead: {overhead:.1f} µs CPU per line over create_many")
    if args.out:
        args.out.write_text(json.dumps({"lines": lines, "runs": runs}, indent=2) + "\n")


if __name__ == "__main__":
    main()
