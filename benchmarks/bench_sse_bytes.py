"""What a page receives from ``to_sse(format="partial")`` and ``format="patch"``: bytes and CPU.

    python benchmarks/bench_sse_bytes.py [--sizes 8,64,256] [--repeat 3]

An answer of each size (short records, a long text: ``tests/test_sse_patch.big_answer``) is cut
into 16-character deltas, and a frame is made after every delta, the worst case for a page
(no two chunks ever ready together, so nothing is coalesced): the framing code that
``to_sse`` runs (``partial_framing``), fed by a ``PartialAnswer`` as a stream feeds it. Per
answer and format: the bytes of every frame, that over the answer's size, and the CPU of
making the frames per delta (best of ``--repeat``), parse included.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from routmy_async._partial_stream import PartialAnswer
from routmy_async._streaming._sse_out import partial_framing
from tests.test_sse_patch import big_answer


def serve(text: str, *, patches: bool) -> tuple[int, float]:
    """The bytes of every frame, and the CPU seconds, of one answer served frame by delta."""
    answer = PartialAnswer()
    framing = partial_framing(answer.value, answer.check_whole, patches=patches)
    pieces = [text[i : i + 16] for i in range(0, len(text), 16)]
    sent = 0
    started = time.process_time()
    for piece in pieces:
        answer.add(piece)
        sent += len(framing.frame(None))
    answer.end()
    sent += sum(len(frame) for frame in framing.end(None))
    return sent, time.process_time() - started


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    options.add_argument("--sizes", default="8,64,256")
    options.add_argument("--repeat", type=int, default=3)
    args = options.parse_args()
    head = ("answer", "deltas", "format", "bytes sent", "x answer", "µs/delta")
    widths = (7, 7, 8, 14, 9, 9)
    print(" ".join(f"{name:>{width}}" for name, width in zip(head, widths, strict=True)))
    for size in (int(kb) * 1024 for kb in args.sizes.split(",")):
        text = json.dumps(big_answer(size))
        deltas = -(-len(text) // 16)
        for patches in (False, True):
            best = float("inf")
            for _ in range(args.repeat if size <= 64 * 1024 or patches else 1):
                sent, cpu = serve(text, patches=patches)
                best = min(best, cpu)
            ratio = sent / len(text.encode())
            name = "patch" if patches else "partial"
            print(
                f"{size // 1024:>5}KB {deltas:>7} {name:>8} {sent:>14,} {ratio:>8.1f}x"
                f" {best / deltas * 1e6:>9.2f}"
            )


if __name__ == "__main__":
    main()
