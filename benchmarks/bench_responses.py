"""CPU per event of a streamed Responses API call: routmy vs openai-python's responses.stream.

    python benchmarks/bench_responses.py [--repeat 5] [--streams 20] [--output FILE.md]

A fake upstream in its own process (a raw asyncio HTTP/1.1 keep-alive server writing prebuilt
bytes) answers every request with the same Responses SSE stream, as OpenAI sends it (an
``event:`` line before each ``data:`` line, chunked encoding). Two workloads:

- ``text``: created, in_progress, a message item and its part, 1,000 ``output_text.delta``
  events, the done events, ``response.completed`` with the whole response;
- ``tools``: a reasoning item (100 summary deltas), two function calls whose 150 argument
  fragments each interleave, and a short text answer (50 deltas).

Each client runs in a fresh process: **routmy** (``client.responses.stream``), **openai**
(openai-python's ``client.responses.stream`` on its default httpx transport) and
**openai-aiohttp** (the same on ``DefaultAioHttpClient``). A client opens ``--streams`` streams
one after the other, iterates every event, and asks for the final response
(``get_final_response()``); CPU is the client process's own CPU time over those streams,
divided by the events received. Two streams before the timer warm up imports and the
connection. Every result is checked after the timer stops (the final text and arguments, the
event count), so a fast but wrong client fails the run. Repetitions interleave the clients and
the table reports the median (min-max). Needs ``pip install 'openai[aiohttp]'``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

# Measure this checkout's routmy_async, whatever the environment has installed.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

KEY = "sk-bench"
TEXT_DELTAS = 1000
CLIENTS = ("routmy", "openai", "openai-aiohttp")
WORKLOADS = ("text", "tools")


# -- the stream the upstream sends ----------------------------------------------------------


def _events(workload: str) -> tuple[list[dict[str, Any]], str, list[str]]:
    """The events of one stream, the final text, and the final arguments of each call."""
    events: list[dict[str, Any]] = []

    def add(kind: str, **fields: Any) -> None:
        events.append({"type": kind, "sequence_number": len(events), **fields})

    base = {
        "id": "resp_bench",
        "object": "response",
        "created_at": 1700000000,
        "model": "bench/model",
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "status": "in_progress",
    }
    add("response.created", response=base)
    add("response.in_progress", response=base)
    output: list[dict[str, Any]] = []
    arguments: list[str] = []
    index = 0
    if workload == "tools":
        summary = "".join(f"step {i}. " for i in range(100))
        pieces = [f"step {i}. " for i in range(100)]
        item = {"type": "reasoning", "id": "rs_1", "summary": [], "status": "in_progress"}
        add("response.output_item.added", output_index=index, item=item)
        ids = {"item_id": "rs_1", "output_index": index}
        add(
            "response.reasoning_summary_part.added",
            **ids,
            summary_index=0,
            part={"type": "summary_text", "text": ""},
        )
        for piece in pieces:
            add("response.reasoning_summary_text.delta", **ids, summary_index=0, delta=piece)
        add("response.reasoning_summary_text.done", **ids, summary_index=0, text=summary)
        done = {
            **item,
            "summary": [{"type": "summary_text", "text": summary}],
            "status": "completed",
        }
        add("response.reasoning_summary_part.done", **ids, summary_index=0, part=done["summary"][0])
        add("response.output_item.done", output_index=index, item=done)
        output.append(done)
        index += 1
        calls = []
        for number in range(2):
            call = {
                "type": "function_call",
                "id": f"fc_{number}",
                "call_id": f"call_{number}",
                "name": "lookup",
                "arguments": "",
                "status": "in_progress",
            }
            add("response.output_item.added", output_index=index + number, item=call)
            calls.append(call)
        fragments = [
            [f'{{"n": {number}, "items": ['] + [f'"i{i}", ' for i in range(148)] + ['"end"]}']
            for number in range(2)
        ]
        for position in range(150):
            for number in range(2):
                add(
                    "response.function_call_arguments.delta",
                    item_id=f"fc_{number}",
                    output_index=index + number,
                    delta=fragments[number][position],
                )
        for number, call in enumerate(calls):
            whole = "".join(fragments[number])
            arguments.append(whole)
            ids = {"item_id": call["id"], "output_index": index + number}
            add("response.function_call_arguments.done", **ids, arguments=whole)
            done = {**call, "arguments": whole, "status": "completed"}
            add("response.output_item.done", output_index=index + number, item=done)
            output.append(done)
        index += 2
    deltas = TEXT_DELTAS if workload == "text" else 50
    pieces = [f"w{i} " for i in range(deltas)]
    text = "".join(pieces)
    message = {
        "type": "message",
        "id": "msg_1",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    add("response.output_item.added", output_index=index, item=message)
    at = {"item_id": "msg_1", "output_index": index, "content_index": 0}
    add(
        "response.content_part.added",
        **at,
        part={"type": "output_text", "text": "", "annotations": []},
    )
    for piece in pieces:
        add("response.output_text.delta", **at, delta=piece, logprobs=[])
    add("response.output_text.done", **at, text=text, logprobs=[])
    part = {"type": "output_text", "text": text, "annotations": []}
    add("response.content_part.done", **at, part=part)
    done = {**message, "status": "completed", "content": [part]}
    add("response.output_item.done", output_index=index, item=done)
    output.append(done)
    final = {
        **base,
        "status": "completed",
        "output": output,
        "usage": {
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": deltas,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 10 + deltas,
        },
    }
    add("response.completed", response=final)
    return events, text, arguments


def _body(workload: str) -> bytes:
    events, _, _ = _events(workload)
    frames = b"".join(
        f"event: {event['type']}\n".encode()
        + b"data: "
        + json.dumps(event, separators=(",", ":")).encode()
        + b"\n\n"
        for event in events
    )
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
        b"Transfer-Encoding: chunked\r\nx-request-id: req-bench\r\n\r\n"
    )
    # Written in pieces of 16 KiB, as a server flushing as it generates would.
    chunks = b"".join(
        f"{len(frames[i : i + 16384]):x}\r\n".encode() + frames[i : i + 16384] + b"\r\n"
        for i in range(0, len(frames), 16384)
    )
    return head + chunks + b"0\r\n\r\n"


# -- the upstream ---------------------------------------------------------------------------


async def _serve(port_file: str) -> None:
    bodies = {workload: _body(workload) for workload in WORKLOADS}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length) if length else b""
                workload = "tools" if b'"tools-workload"' in body else "text"
                writer.write(bodies[workload])
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = str(server.sockets[0].getsockname()[1])
    await asyncio.to_thread(Path(port_file).write_text, port)
    async with server:
        await server.serve_forever()


# -- the clients ----------------------------------------------------------------------------


async def _routmy(base_url: str, workload: str, streams: int) -> tuple[float, int, list[Any]]:
    from routmy_async import AsyncRoutmy

    results = []
    async with AsyncRoutmy(api_key=KEY, base_url=base_url) as client:

        async def one() -> Any:
            count = 0
            async with client.responses.stream(
                model="bench/model", input=workload + "-workload"
            ) as stream:
                async for _ in stream:
                    count += 1
                final = await stream.get_final_response()
            return count, final

        for _ in range(2):
            await one()
        cpu = time.process_time()
        for _ in range(streams):
            results.append(await one())
        cpu = time.process_time() - cpu
    return (
        cpu,
        sum(count for count, _ in results),
        [
            (final.output_text, [call.arguments for call in final.function_calls])
            for _, final in results
        ],
    )


async def _openai(
    base_url: str, workload: str, streams: int, aiohttp: bool
) -> tuple[float, int, list[Any]]:
    import openai

    kwargs: dict[str, Any] = {}
    if aiohttp:
        kwargs["http_client"] = openai.DefaultAioHttpClient()
    client = openai.AsyncOpenAI(api_key=KEY, base_url=base_url, max_retries=0, **kwargs)
    results = []

    async def one() -> Any:
        count = 0
        async with client.responses.stream(
            model="bench/model", input=workload + "-workload"
        ) as stream:
            async for _ in stream:
                count += 1
            final = await stream.get_final_response()
        return count, final

    try:
        for _ in range(2):
            await one()
        cpu = time.process_time()
        for _ in range(streams):
            results.append(await one())
        cpu = time.process_time() - cpu
    finally:
        await client.close()
    checked = [
        (
            final.output_text,
            [item.arguments for item in final.output if item.type == "function_call"],
        )
        for _, final in results
    ]
    return cpu, sum(count for count, _ in results), checked


def _worker(client: str, base_url: str, workload: str, streams: int) -> None:
    if client == "routmy":
        run = _routmy(base_url, workload, streams)
    else:
        run = _openai(base_url, workload, streams, aiohttp=client == "openai-aiohttp")
    cpu, count, results = asyncio.run(run)
    # Checked after the timer: a fast but wrong client fails the run.
    events, text, arguments = _events(workload)
    assert count == streams * len(events), (client, count, streams * len(events))
    for output_text, calls in results:
        assert output_text == text, (client, output_text[:60])
        assert calls == arguments, client
    print(json.dumps({"cpu_us_per_event": cpu / count * 1e6, "events": count}))


# -- the run --------------------------------------------------------------------------------


def _spawn_upstream(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port_file = tmp / "port"
    process = subprocess.Popen([sys.executable, __file__, "--serve", str(port_file)])
    for _ in range(200):
        if port_file.exists() and port_file.read_text():
            return process, f"http://127.0.0.1:{port_file.read_text()}/v1"
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("the upstream did not start")


def _measure(client: str, base_url: str, workload: str, streams: int) -> float:
    result = subprocess.run(
        [sys.executable, __file__, "--worker", client, base_url, workload, str(streams)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    if result.returncode != 0:
        raise RuntimeError(f"{client} {workload} failed:\n{result.stderr}")
    value: float = json.loads(result.stdout.strip().splitlines()[-1])["cpu_us_per_event"]
    return value


def _table(results: dict[tuple[str, str], list[float]], repeat: int, streams: int) -> str:
    import aiohttp
    import msgspec
    import openai

    lines = [
        f"Python {platform.python_version()}, asyncio loop, {os.cpu_count()} CPUs, aiohttp "
        f"{aiohttp.__version__}, msgspec {msgspec.__version__}, openai {openai.__version__}; "
        f"{streams} streams per client process, median (min-max) of {repeat} runs, clients "
        "interleaved, each in a fresh process.",
        "",
        "| workload | events / stream | unit | routmy | openai | openai-aiohttp "
        "| openai / routmy | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for workload in WORKLOADS:
        cells = {}
        for client in CLIENTS:
            values = results[(client, workload)]
            cells[client] = (statistics.median(values), min(values), max(values))
        ratio = min(cells["openai"][0], cells["openai-aiohttp"][0]) / cells["routmy"][0]
        events = len(_events(workload)[0])
        row = [
            workload,
            str(events),
            "µs CPU / event",
            *(f"{m:.2f} ({lo:.2f}-{hi:.2f})" for m, lo, hi in cells.values()),
            f"{ratio:.0f}x",
            "≥ 10x " + ("✓" if ratio >= 10 else "✗"),
        ]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append("openai / routmy compares routmy with the faster of the two openai transports.")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--output", default=None, help="also write the table to this file")
    parser.add_argument("--serve", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--worker", nargs=4, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.serve))
        return
    if args.worker:
        client, base_url, workload, streams = args.worker
        _worker(client, base_url, workload, int(streams))
        return
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        upstream, base_url = _spawn_upstream(Path(tmp))
        try:
            results: dict[tuple[str, str], list[float]] = {}
            for run in range(args.repeat):
                for workload in WORKLOADS:
                    order = CLIENTS if run % 2 == 0 else tuple(reversed(CLIENTS))
                    for client in order:
                        value = _measure(client, base_url, workload, args.streams)
                        results.setdefault((client, workload), []).append(value)
                        print(
                            f"run {run + 1}: {workload:<5} {client:<15} {value:8.2f} µs/event",
                            flush=True,
                        )
        finally:
            upstream.kill()
            upstream.wait()
    table = _table(results, args.repeat, args.streams)
    print()
    print(table)
    if args.output:
        Path(args.output).write_text(table + "\n")


if __name__ == "__main__":
    main()
