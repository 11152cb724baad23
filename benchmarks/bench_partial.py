"""The extra CPU of partial structured output: our incremental parser against a re-parse.

    python benchmarks/bench_partial.py [--repeat 5] [--sizes 1,4,8,64,512] [--save]
    python benchmarks/bench_partial.py --sizes 1,8 --instructions   # callgrind, valgrind needed

``--save`` writes ``benchmarks/partial-results.json``, ``partial-results.md`` and the plot
``docs/partial-results.svg`` (extra CPU per delta against answer size, drawn by
``plot_partial.py`` with no plotting library).

An answer of each size (a JSON object holding an array of order lines, the shape of a typical
``response_format``) is cut into deltas of ~16 characters, and the partial value is read after
every delta, as a stream handing ``parsed`` to each event would. Measured, per answer:

- ``ours``: ``PartialJSON.feed(delta)`` then ``.value``, on every delta;
- ``typed``: the same with a ``TypedPartial(Order)`` listening, reading the typed partial (a
  ``PartialOrder`` with its lines converted to ``Line`` Structs) on every delta;
- ``stream``: the same answer streamed by a local server as chat chunks, one per delta, read
  through ``client.chat.completions.stream(response_format=Order)`` and ``events()``, with
  ``event.parsed`` read on every ``content.delta``, less the same stream without a
  ``response_format`` (read alike): the extra CPU the wiring costs a user, parse included;
- ``jiter``: what openai-python does on every ``content.delta``: encode the snapshot to UTF-8
  and ``jiter.from_json(snapshot, partial_mode="trailing-strings")`` (the mode that shows a
  string in progress, as ours does; openai-python passes ``partial_mode=True``, which drops it
  and costs the same). The snapshot's own growth (``snapshot += delta``) is not counted: both
  sides keep it anyway.

Parser, typed and jiter figures are the best of the runs (``--repeat``, and more for small
answers), interleaved, so the least disturbed by other processes, in microseconds of CPU per
delta. The stream's extra is a difference of two streams of ~10-20 µs a delta, so it is the
median (with quartiles) of many samples, each reading many streams of the answer of each kind
back to back. ``--instructions`` counts machine instructions per delta instead (deterministic;
see ``_partial_instructions.py``). Needs ``jiter``
(installed with openai, the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from anywhere

import msgspec
from jiter import from_json

from routmy_async._partial_json import PartialJSON
from routmy_async._typed_partial import TypedPartial

HERE = Path(__file__).resolve().parent
DELTA = 16


class Line(msgspec.Struct):
    sku: str
    name: str
    quantity: int
    price: float
    in_stock: bool
    tags: list[str]


class Order(msgspec.Struct):
    order_id: str
    customer: str
    lines: list[Line]


WORDS = "alpha beta gamma delta widget gadget blue green large small steel oak".split()


def answer_of_size(kilobytes: int, *, seed: int = 7) -> str:
    """A compact JSON answer of about ``kilobytes`` KB: an order with many lines."""
    rng = random.Random(seed)
    lines: list[dict[str, Any]] = []
    order: dict[str, Any] = {"order_id": "A-1029", "customer": "Ada Lovelace", "lines": lines}
    target = kilobytes * 1024
    while len(json.dumps(order)) < target:
        lines.append(
            {
                "sku": f"SKU-{rng.randrange(10**6):06d}",
                "name": " ".join(rng.choice(WORDS) for _ in range(rng.randrange(2, 6))),
                "quantity": rng.randrange(1, 20),
                "price": round(rng.uniform(1, 500), 2),
                "in_stock": rng.random() < 0.8,
                "tags": [rng.choice(WORDS) for _ in range(rng.randrange(0, 3))],
            }
        )
    return json.dumps(order)


def deltas_of(text: str) -> list[str]:
    return [text[i : i + DELTA] for i in range(0, len(text), DELTA)]


def time_ours(deltas: list[str]) -> float:
    parser = PartialJSON()
    feed = parser.feed
    started = time.process_time()
    for delta in deltas:
        feed(delta)
        parser.value  # noqa: B018 - reading it is the point
    return time.process_time() - started


def time_typed(deltas: list[str]) -> float:
    typed = TypedPartial(Order)
    parser = PartialJSON(listener=typed)
    feed = parser.feed
    started = time.process_time()
    for delta in deltas:
        feed(delta)
        typed.value(parser)
    return time.process_time() - started


def time_jiter(deltas: list[str]) -> float:
    started = time.process_time()
    snapshot = ""
    for delta in deltas:
        snapshot += delta
        from_json(bytes(snapshot, "utf-8"), partial_mode="trailing-strings")
    spent = time.process_time() - started
    return spent - time_growth(deltas)


def time_jiter_only(deltas: list[str]) -> float:
    """The re-parse with the snapshot's growth (``--instructions`` subtracts that apart)."""
    started = time.process_time()
    snapshot = ""
    for delta in deltas:
        snapshot += delta
        from_json(bytes(snapshot, "utf-8"), partial_mode="trailing-strings")
    return time.process_time() - started


def time_growth(deltas: list[str]) -> float:
    """The snapshot's own growth, which a stream pays with or without partials."""
    started = time.process_time()
    snapshot = ""
    for delta in deltas:
        snapshot += delta
    return time.process_time() - started


def chunk_stream(deltas: list[str]) -> bytes:
    """The SSE body of a chat stream saying ``deltas``, one chunk each."""
    head = b'data: {"id":"c","object":"chat.completion.chunk","created":1,"model":"p/m",'
    frames = [head + b'"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n']
    for delta in deltas:
        content = json.dumps({"content": delta}).encode()
        frames.append(head + b'"choices":[{"index":0,"delta":' + content + b"}]}\n\n")
    frames.append(head + b'"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n')
    frames.append(b"data: [DONE]\n\n")
    return b"".join(frames)


async def _stream_cpu(client: Any, response_format: Any, streams: int) -> float:
    """CPU of reading ``streams`` streams' events (``parsed`` read on each content delta)."""
    options: dict[str, Any] = (
        {} if response_format is None else {"response_format": response_format}
    )
    started = time.process_time()
    for _ in range(streams):
        async with client.chat.completions.stream(
            model="p/m", messages=[{"role": "user", "content": "x"}], **options
        ) as stream:
            async for event in stream.events():
                if event.type == "content.delta":
                    event.parsed  # noqa: B018 - reading it is the point
    return time.process_time() - started


def time_stream_extra(deltas: list[str], samples: int, streams: int) -> list[float]:
    """The extra CPU per delta of a stream with ``response_format=Order`` over one without,
    once per sample: each sample reads ``streams`` streams of each kind over one connection,
    the two kinds back to back (their order alternating), so that a small answer's extra is
    measured over many deltas rather than as the difference of two single short streams."""
    import asyncio

    from routmy_async import AsyncRoutmy
    from tests._callcount import FixedServer

    async def measure() -> list[float]:
        async with FixedServer() as server:
            server.answer = ("text/event-stream", chunk_stream(deltas))
            async with AsyncRoutmy(
                api_key="sk-bench", base_url=server.base_url, max_retries=0
            ) as client:
                await _stream_cpu(client, Order, 2)  # warm: the connection, lazy imports
                await _stream_cpu(client, None, 2)
                extras = []
                for sample in range(samples):
                    gc.collect()
                    kinds = (Order, None) if sample % 2 else (None, Order)
                    spent = {kind: await _stream_cpu(client, kind, streams) for kind in kinds}
                    extras.append((spent[Order] - spent[None]) / (streams * len(deltas)))
                return extras

    return asyncio.run(measure())


def stream_plan(kilobytes: int) -> tuple[int, int]:
    """(samples, streams a sample) for an answer's size: ~64 KB of deltas a sample up to
    64 KB, so every sample's extra is some milliseconds of CPU; fewer samples for big
    answers, whose single streams are long already."""
    streams = max(1, 64 // kilobytes)
    samples = 31 if kilobytes <= 8 else 11 if kilobytes <= 64 else 3
    return samples, streams


def check(text: str) -> None:
    """Both sides end with the same value as json.loads (a benchmark of a wrong parser is
    worthless)."""
    parser = PartialJSON()
    for delta in deltas_of(text):
        parser.feed(delta)
    assert parser.finish() == json.loads(text) == from_json(text.encode())
    typed = TypedPartial(Order)
    parser = PartialJSON(listener=typed)
    for delta in deltas_of(text):
        parser.feed(delta)
    parser.finish()
    assert typed.value(parser) == msgspec.json.decode(text, type=Order)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--repeat", type=int, default=5)
    options.add_argument("--sizes", default="1,4,8,64,512")
    options.add_argument("--save", action="store_true", help="write partial-results.*")
    options.add_argument(
        "--instructions", action="store_true", help="count machine instructions (callgrind)"
    )
    options.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = options.parse_args()
    if args.worker:
        _instructions_worker(*args.worker)
        return
    if args.instructions:
        from _partial_instructions import report

        report(Path(__file__).resolve(), [int(size) for size in args.sizes.split(",")])
        return
    rows = [measure_size(int(size), args.repeat) for size in args.sizes.split(",")]
    if args.save:
        results = {
            "python": sys.version.split()[0],
            "delta": DELTA,
            "load": _load(),
            "rows": rows,
        }
        (HERE / "partial-results.json").write_text(json.dumps(results, indent=2) + "\n")
        (HERE / "partial-results.md").write_text(markdown(results))
        from plot_partial import main as plot

        plot()


def _instructions_worker(side: str, kilobytes: str, passes: str) -> None:
    """One side's work over the answer, ``passes`` times: what callgrind counts."""
    deltas = deltas_of(answer_of_size(int(kilobytes)))
    count = int(passes)
    if side in ("stream", "plain"):
        import asyncio

        from routmy_async import AsyncRoutmy
        from tests._callcount import FixedServer

        async def run() -> None:
            async with FixedServer() as server:
                server.answer = ("text/event-stream", chunk_stream(deltas))
                async with AsyncRoutmy(
                    api_key="sk-bench", base_url=server.base_url, max_retries=0
                ) as client:
                    await _stream_cpu(client, Order if side == "stream" else None, count)

        asyncio.run(run())
        return
    work = {"ours": time_ours, "jiter": time_jiter_only, "growth": time_growth}[side]
    for _ in range(count):
        work(deltas)


def _load() -> str:
    from _runs import load

    return load()


def measure_size(kilobytes: int, repeat_at_least: int) -> dict[str, Any]:
    text = answer_of_size(kilobytes)
    check(text)
    deltas = deltas_of(text)
    # Small answers take well under a millisecond a run: many runs there, for a steady
    # best; the re-parse at 512 KB takes minutes a run: one run is enough there.
    repeat = max(repeat_at_least, 256 // kilobytes)
    slow_repeat = repeat if kilobytes <= 64 else 1
    best = {"ours": float("inf"), "typed": float("inf"), "jiter": float("inf")}
    for turn in range(repeat):
        # Interleaved, so a busy moment of the machine hits every side alike.
        gc.collect()
        best["ours"] = min(best["ours"], time_ours(deltas))
        best["typed"] = min(best["typed"], time_typed(deltas))
        if turn < slow_repeat:
            best["jiter"] = min(best["jiter"], time_jiter(deltas))
    ours, typed, jiter = (best[side] / len(deltas) * 1e6 for side in ("ours", "typed", "jiter"))
    extras = sorted(extra * 1e6 for extra in time_stream_extra(deltas, *stream_plan(kilobytes)))
    if len(extras) > 2:
        low, stream_us, high = statistics.quantiles(extras, n=4)
    else:
        low, stream_us, high = extras[0], statistics.median(extras), extras[-1]
    print(
        f"{kilobytes:>4} KB, {len(deltas)} deltas, µs per delta: parser {ours:.2f}, typed"
        f" {typed:.2f}, stream extra {stream_us:.2f} [{low:.2f}-{high:.2f}] (median"
        f" [quartiles] of {len(extras)}), jiter {jiter:.2f}; jiter / stream"
        f" {jiter / stream_us:.2f}x",
        flush=True,
    )
    return {
        "kb": kilobytes,
        "deltas": len(deltas),
        "ours_us": ours,
        "typed_us": typed,
        "stream_us": stream_us,
        "stream_q1_us": low,
        "stream_q3_us": high,
        "stream_samples": len(extras),
        "jiter_us": jiter,
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Python {results['python']}, deltas of {results['delta']} characters, the partial read"
        " after every delta, µs of CPU per delta; parser, typed and jiter: best of the"
        " interleaved runs; stream, extra: median [quartiles] of the samples, each sample many"
        " streams with and without `response_format` back to back (1-minute load"
        f" {results.get('load', '?')}).",
        "",
        "| answer | deltas | parser | parser, typed | stream, extra | jiter re-parse "
        "| jiter / parser | jiter / stream | goal (jiter / extra) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        goal = "≥ 1x" if row["kb"] <= 8 else "≥ 10x"
        stream = row.get("stream_us") or float("nan")
        lines.append(
            f"| {row['kb']} KB | {row['deltas']} | {row['ours_us']:.2f} | {row['typed_us']:.2f}"
            f" | {stream:.2f} [{row.get('stream_q1_us', stream):.2f}-"
            f"{row.get('stream_q3_us', stream):.2f}] | {row['jiter_us']:.2f}"
            f" | {row['jiter_us'] / row['ours_us']:.1f}x"
            f" | {row['jiter_us'] / stream:.1f}x | {goal} |"
        )
    by_size = {row["kb"]: row for row in results["rows"]}
    if 4 in by_size and 512 in by_size:
        growth = {
            key: by_size[512][key] / by_size[4][key]
            for key in ("ours_us", "typed_us", "stream_us")
            if by_size[4].get(key)
        }
        lines += [
            "",
            "Per delta, 512 KB against 4 KB: "
            + ", ".join(
                f"{name} {growth[key]:.2f}x"
                for key, name in (
                    ("ours_us", "parser"),
                    ("typed_us", "typed"),
                    ("stream_us", "stream"),
                )
                if key in growth
            )
            + " (goal ≤ 1.5x: linear time).",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
