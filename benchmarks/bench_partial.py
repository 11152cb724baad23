"""The extra CPU of partial structured output: our incremental parser against a re-parse.

    python benchmarks/bench_partial.py [--repeat 5] [--sizes 1,4,8,64,512] [--json out.json]

An answer of each size (a JSON object holding an array of order lines, the shape of a typical
``response_format``) is cut into deltas of ~16 characters, and the partial value is read after
every delta, as a stream handing ``parsed`` to each event would. Measured, per answer:

- ``ours``: ``PartialJSON.feed(delta)`` then ``.value``, on every delta;
- ``typed``: the same with a ``TypedPartial(Order)`` listening, reading the typed partial (a
  ``PartialOrder`` with its lines converted to ``Line`` Structs) on every delta;
- ``jiter``: what openai-python does on every ``content.delta``: encode the snapshot to UTF-8
  and ``jiter.from_json(snapshot, partial_mode="trailing-strings")`` (the mode that shows a
  string in progress, as ours does; openai-python passes ``partial_mode=True``, which drops it
  and costs the same). The snapshot's own growth (``snapshot += delta``) is not counted: both
  sides keep it anyway.

Each figure is the best of ``--repeat`` runs, interleaved (the least disturbed by other
processes), in microseconds of CPU per delta. Needs ``jiter`` (installed with openai, the
``bench`` extra).
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import msgspec
from jiter import from_json

from routmy_async._partial_json import PartialJSON
from routmy_async._typed_partial import TypedPartial

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
    started = time.perf_counter()
    for delta in deltas:
        feed(delta)
        parser.value  # noqa: B018 - reading it is the point
    return time.perf_counter() - started


def time_typed(deltas: list[str]) -> float:
    typed = TypedPartial(Order)
    parser = PartialJSON(listener=typed)
    feed = parser.feed
    started = time.perf_counter()
    for delta in deltas:
        feed(delta)
        typed.value(parser)
    return time.perf_counter() - started


def time_jiter(deltas: list[str]) -> float:
    snapshots: list[str] = []
    snapshot = ""
    for delta in deltas:
        snapshot += delta
        snapshots.append(snapshot)
    started = time.perf_counter()
    for snapshot in snapshots:
        from_json(bytes(snapshot, "utf-8"), partial_mode="trailing-strings")
    return time.perf_counter() - started


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
    options.add_argument("--json", type=Path, default=None)
    args = options.parse_args()
    rows = []
    print(
        f"{'size':>7} {'deltas':>7} {'ours':>7} {'typed':>7} {'jiter':>8}"
        f" {'jiter/ours':>11} {'jiter/typed':>12}   (µs per delta)"
    )
    for kilobytes in (int(size) for size in args.sizes.split(",")):
        text = answer_of_size(kilobytes)
        check(text)
        deltas = deltas_of(text)
        # The re-parse at 512 KB takes seconds a run: fewer repeats there.
        slow_repeat = args.repeat if kilobytes <= 64 else max(1, args.repeat // 2)
        best = {"ours": float("inf"), "typed": float("inf"), "jiter": float("inf")}
        for turn in range(args.repeat):
            # Interleaved, so a busy moment of the machine hits every side alike.
            gc.collect()
            best["ours"] = min(best["ours"], time_ours(deltas))
            best["typed"] = min(best["typed"], time_typed(deltas))
            if turn < slow_repeat:
                best["jiter"] = min(best["jiter"], time_jiter(deltas))
        ours, typed, jiter = (best[side] / len(deltas) * 1e6 for side in ("ours", "typed", "jiter"))
        rows.append(
            {
                "kb": kilobytes,
                "deltas": len(deltas),
                "ours_us": ours,
                "typed_us": typed,
                "jiter_us": jiter,
            }
        )
        print(
            f"{kilobytes:>5}KB {len(deltas):>7} {ours:>7.2f} {typed:>7.2f} {jiter:>8.2f}"
            f" {jiter / ours:>10.1f}x {jiter / typed:>11.1f}x"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"python": sys.version.split()[0], "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
