"""The fake upstream for ``bench_scale.py``: a raw asyncio HTTP/1.1 keep-alive server.

    python benchmarks/_scale_upstream.py [--events 40] [--interval 0.05]

Prints ``PORT <n>`` once listening on 127.0.0.1, then serves until killed. Written on bare
``asyncio.Protocol`` (no aiohttp.web) so that a thousand paced streams cost it little CPU.

- ``POST /v1/chat/completions`` with ``"stream": true``: a chunked ``text/event-stream`` of
  ``--events`` ``chat.completion.chunk`` events ``--interval`` seconds apart, each carrying
  the content ``"<tag>.<k> "`` (``tag`` is the last message's content, so every stream's text
  is its own), the last with ``finish_reason: "stop"``, then ``data: [DONE]``. Events are
  timed from the request's arrival on absolute deadlines (rounded up to the millisecond),
  so the schedule does not drift. The tag ``"warm"`` sends every event at once (for
  warm-up requests).
- The same path without ``stream``: a small ``chat.completion`` whose content is
  ``"echo <tag>"``, with ``usage``.
- ``GET /stats``: JSON about the streams finished since the last ``/stats`` (count, first to
  last request's arrival, the median and max of request-to-``[DONE]`` seconds and of the last
  event's lateness), then resets them. The orchestrator uses it to check the upstream kept
  its own schedule.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import math
import resource
import statistics
import sys

CREATED = 1_700_000_000
MODEL = "bench-model"


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _chunk_frame(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk (transfer-encoding: chunked)."""
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def _event_parts(events: int) -> list[tuple[bytes, bytes]]:
    """For each k, the bytes before and after the tag in event k (built once: JSON encoding
    per event would be most of the upstream's CPU at a thousand streams)."""
    parts = []
    for k in range(events):
        delta: dict[str, str] = {"content": "\0"}
        if k == 0:
            delta = {"role": "assistant", **delta}
        chunk = {
            "id": "chatcmpl-scale",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {"index": 0, "delta": delta, "finish_reason": "stop" if k == events - 1 else None},
            ],
        }
        text = "data: " + json.dumps(chunk, separators=(",", ":")) + "\n\n"
        before, after = text.split("\\u0000")
        parts.append((before.encode(), f".{k} ".encode() + after.encode()))
    return parts


STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\n"
    b"Content-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n"
    b"\r\n"
)
DONE = _chunk_frame(b"data: [DONE]\n\n") + b"0\r\n\r\n"


def _json_response(status: str, payload: object) -> bytes:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        status.encode(),
        len(body),
        body,
    )


def _completion(tag: str) -> bytes:
    return _json_response(
        "200 OK",
        {
            "id": "chatcmpl-scale",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": f"echo {tag}"},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        },
    )


class Stats:
    def __init__(self) -> None:
        self.durations: list[float] = []
        self.lateness: list[float] = []
        self.arrivals: list[float] = []

    def take(self) -> dict[str, float | int | None]:
        durations, lateness, arrivals = self.durations, self.lateness, self.arrivals
        self.durations, self.lateness, self.arrivals = [], [], []
        return {
            "streams": len(durations),
            "arrival_spread": max(arrivals) - min(arrivals) if arrivals else None,
            "duration_median": statistics.median(durations) if durations else None,
            "duration_max": max(durations) if durations else None,
            "late_median": statistics.median(lateness) if lateness else None,
            "late_max": max(lateness) if lateness else None,
        }


class Pacer:
    """Calls ``stream.next_event()`` at absolute loop times, rounded up to ``resolution``.

    One asyncio timer for every stream: a thousand ``TimerHandle`` objects in asyncio's heap
    are compared in Python on every push and pop, which at 20,000 events a second was a good
    part of the upstream's CPU. Here streams due in the same millisecond share a bucket.
    """

    def __init__(self, resolution: float = 0.001):
        self.loop = asyncio.get_running_loop()
        self.resolution = resolution
        self.buckets: dict[int, list[Upstream]] = {}
        self.ticks: list[int] = []  # a heap of the buckets' keys (ints compare in C)
        self.timer: asyncio.TimerHandle | None = None
        self.timer_tick: int | None = None

    def at(self, when: float, stream: Upstream) -> None:
        tick = math.ceil(when / self.resolution)
        bucket = self.buckets.get(tick)
        if bucket is not None:
            bucket.append(stream)
            return
        self.buckets[tick] = [stream]
        heapq.heappush(self.ticks, tick)
        if self.timer_tick is None or tick < self.timer_tick:
            self.arm(tick)

    def arm(self, tick: int) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_tick = tick
        self.timer = self.loop.call_at(tick * self.resolution, self.fire)

    def fire(self) -> None:
        self.timer = self.timer_tick = None
        horizon = self.loop.time() + self.resolution / 2
        ticks, resolution = self.ticks, self.resolution
        while ticks and ticks[0] * resolution <= horizon:
            for stream in self.buckets.pop(heapq.heappop(ticks)):
                stream.next_event()
        if ticks and self.timer is None:
            self.arm(ticks[0])


class Upstream(asyncio.Protocol):
    """One keep-alive connection: requests are answered in order, one at a time."""

    def __init__(
        self, parts: list[tuple[bytes, bytes]], interval: float, pacer: Pacer, stats: Stats
    ):
        self.parts = parts
        self.interval = interval
        self.pacer = pacer
        self.stats = stats
        self.loop = pacer.loop
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False  # a stream is being written: parse the next request after it
        self.tag = b""
        self.k = 0
        self.start = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None  # a pending next_event() finds this and stops

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self.parse()

    def parse(self) -> None:
        while not self.busy and self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            method, target, _ = head[0].split(" ", 2)
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self.handle(method, target, body)

    def handle(self, method: str, target: str, body: bytes) -> None:
        transport = self.transport
        assert transport is not None
        path = target.split("?", 1)[0]
        if method == "GET" and path == "/stats":
            transport.write(_json_response("200 OK", self.stats.take()))
            return
        if method != "POST" or not path.endswith("/chat/completions"):
            transport.write(_json_response("404 Not Found", {"error": {"message": "no route"}}))
            return
        try:
            request = json.loads(body)
            tag = str(request["messages"][-1]["content"])
        except (ValueError, KeyError, IndexError, TypeError):
            transport.write(_json_response("400 Bad Request", {"error": {"message": "bad"}}))
            return
        if not request.get("stream"):
            transport.write(_completion(tag))
            return
        self.busy = True
        self.start = self.loop.time()
        if tag != "warm":
            self.stats.arrivals.append(self.start)
        self.tag = json.dumps(tag)[1:-1].encode()  # JSON-escaped, ASCII
        if tag == "warm":  # every event at once
            frames = [_chunk_frame(before + self.tag + after) for before, after in self.parts]
            transport.write(STREAM_HEAD + b"".join(frames) + DONE)
            self.finish(None)
            return
        self.k = 0
        transport.write(STREAM_HEAD)
        self.next_event()

    def next_event(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        k = self.k
        before, after = self.parts[k]
        frame = _chunk_frame(before + self.tag + after)
        if k == len(self.parts) - 1:
            transport.write(frame + DONE)
            self.finish(self.loop.time() - (self.start + k * self.interval))
            return
        transport.write(frame)
        self.k = k + 1
        self.pacer.at(self.start + (k + 1) * self.interval, self)

    def finish(self, late: float | None) -> None:
        if late is not None:
            self.stats.durations.append(self.loop.time() - self.start)
            self.stats.lateness.append(late)
        self.busy = False
        if self.buffer:
            self.parse()


async def serve(events: int, interval: float, port: int) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    pacer = Pacer()
    parts = _event_parts(events)
    server = await loop.create_server(
        lambda: Upstream(parts, interval, pacer, stats), "127.0.0.1", port, backlog=4096
    )
    sock_port = server.sockets[0].getsockname()[1]
    print(f"PORT {sock_port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=40)
    parser.add_argument("--interval", type=float, default=0.05)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    raise_fd_limit()
    try:
        asyncio.run(serve(args.events, args.interval, args.port))
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
