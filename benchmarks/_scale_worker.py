"""One measured client run for ``bench_scale.py``, in a fresh process.

    python benchmarks/_scale_worker.py streams --client routmy-default --n 1000 --port P
    python benchmarks/_scale_worker.py many --variant create_many --items 10000 --port P

Prints one line ``RESULT {json}``; exits non-zero (with the reason on stderr) when a client
returns anything but the exact text the upstream sent, so a fast but wrong client fails.

``streams``: opens N streams at once (``asyncio.gather``), reads every chunk's content, then
checks each stream's text. Measured over the timed part only: wall time, the process's CPU
time (``getrusage``: user + system) and RSS from ``/proc/self/statm``, sampled every 20 ms
by a background task together with the number of streams open at that moment (response
headers received, body not finished). RSS per stream is the sample in the middle of the
period when the most streams were open, minus the RSS before the first request, divided by
N (the streams asked for, as in the issue).

``many``: 10,000 non-streamed completions at concurrency 256, either through
``create_many`` or through a plain ``asyncio.gather`` over ``create`` bounded by a
``Semaphore``; client CPU per item.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec

EVENTS = 40
MODEL = "bench-model"
API_KEY = "sk-bench-scale"
PAGE = os.sysconf("SC_PAGE_SIZE")
SAMPLE_EVERY = 0.02


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_bytes() -> int:
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE


def expected_text(tag: str) -> str:
    return "".join(f"{tag}.{k} " for k in range(EVENTS))


# -- the floor: raw aiohttp + msgspec typed decode + a minimal SSE line splitter ----------


class FloorDelta(msgspec.Struct, gc=False):
    role: str | None = None
    content: str | None = None


class FloorChoice(msgspec.Struct, gc=False):
    index: int
    delta: FloorDelta
    finish_reason: str | None = None


class FloorChunk(msgspec.Struct, gc=False):
    id: str
    object: str
    created: int
    model: str
    choices: list[FloorChoice]


class FloorMessage(msgspec.Struct, gc=False):
    role: str
    content: str | None = None


class FloorCompletionChoice(msgspec.Struct, gc=False):
    index: int
    message: FloorMessage
    finish_reason: str | None = None


class FloorCompletion(msgspec.Struct, gc=False):
    id: str
    choices: list[FloorCompletionChoice]


_floor_chunk = msgspec.json.Decoder(FloorChunk).decode
_floor_encode = msgspec.json.Encoder().encode


async def floor_sse_data(blocks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The ``data`` of each SSE event: split lines, join data lines, dispatch on a blank one."""
    rest = b""
    data: list[bytes] = []
    async for block in blocks:
        lines = (rest + block).split(b"\n")
        rest = lines.pop()
        for line in lines:
            if line.endswith(b"\r"):
                line = line[:-1]
            if not line:
                if data:
                    yield data[0] if len(data) == 1 else b"\n".join(data)
                    data = []
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value.startswith(b" ") else value)
            # comments (":...") and other fields are ignored


async def floor_chunks(response: Any) -> AsyncIterator[FloorChunk]:
    async for data in floor_sse_data(response.content.iter_any()):
        if data == b"[DONE]":
            continue  # read on to the end of the body so the connection is released cleanly
        yield _floor_chunk(data)


# -- clients ------------------------------------------------------------------------------


class Counter:
    """Streams open right now (headers in, body not finished) and the most at once."""

    def __init__(self) -> None:
        self.open = 0
        self.peak = 0
        self.last_opened = 0.0

    def opened(self) -> None:
        self.last_opened = time.perf_counter()
        self.open += 1
        if self.open > self.peak:
            self.peak = self.open

    def closed(self) -> None:
        self.open -= 1


StreamFn = Callable[[str, Counter], Awaitable[str]]


def build_client(
    name: str, base_url: str, n: int
) -> tuple[StreamFn, Callable[[], Awaitable[None]]]:
    """(open one stream and return its text, close the client) for the named client."""
    messages = lambda tag: [{"role": "user", "content": tag}]  # noqa: E731

    if name in ("routmy-default", "routmy-pool"):
        import routmy_async

        if name == "routmy-default":
            client = routmy_async.AsyncRoutmy(api_key=API_KEY, base_url=base_url)
        else:
            client = routmy_async.AsyncRoutmy(api_key=API_KEY, base_url=base_url, max_connections=n)

        async def routmy_stream(tag: str, counter: Counter) -> str:
            stream = await client.chat.completions.create(
                model=MODEL, messages=messages(tag), stream=True
            )
            counter.opened()
            parts: list[str] = []
            try:
                async with stream:
                    async for chunk in stream:
                        for choice in chunk.choices:
                            content = choice.delta.content
                            if content:
                                parts.append(content)
            finally:
                counter.closed()
            return "".join(parts)

        return routmy_stream, client.close

    if name == "floor":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=n, limit_per_host=0))
        url = base_url + "/chat/completions"
        headers = {
            "Authorization": f"Bearer {API_KEY}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }

        async def floor_stream(tag: str, counter: Counter) -> str:
            body = _floor_encode({"model": MODEL, "messages": messages(tag), "stream": True})
            async with session.post(url, data=body, headers=headers) as response:
                if response.status != 200:
                    raise RuntimeError(f"status {response.status}")
                counter.opened()
                parts: list[str] = []
                try:
                    async for chunk in floor_chunks(response):
                        for choice in chunk.choices:
                            content = choice.delta.content
                            if content:
                                parts.append(content)
                finally:
                    counter.closed()
            return "".join(parts)

        return floor_stream, session.close

    if name in ("openai-default", "openai-aiohttp"):
        import openai

        if name == "openai-default":
            oclient = openai.AsyncOpenAI(api_key=API_KEY, base_url=base_url)
        else:
            oclient = openai.AsyncOpenAI(
                api_key=API_KEY, base_url=base_url, http_client=openai.DefaultAioHttpClient()
            )

        async def openai_stream(tag: str, counter: Counter) -> str:
            stream = await oclient.chat.completions.create(
                model=MODEL,
                messages=messages(tag),  # type: ignore[arg-type]
                stream=True,
            )
            counter.opened()
            parts: list[str] = []
            try:
                async with stream:
                    async for chunk in stream:
                        for choice in chunk.choices:
                            content = choice.delta.content
                            if content:
                                parts.append(content)
            finally:
                counter.closed()
            return "".join(parts)

        return openai_stream, oclient.close

    raise SystemExit(f"unknown client {name!r}")


async def run_streams(name: str, n: int, port: int) -> dict[str, Any]:
    base_url = f"http://127.0.0.1:{port}/v1"
    one, close = build_client(name, base_url, n)
    warm = Counter()
    if await one("warm", warm) != expected_text("warm"):  # imports, lazy paths, first alloc
        raise SystemExit("warm-up stream returned the wrong text")
    tags = [f"s{i}" for i in range(n)]
    counter = Counter()
    samples: list[tuple[float, int, int]] = []

    async def sample() -> None:
        while True:
            samples.append((time.perf_counter(), counter.open, rss_bytes()))
            await asyncio.sleep(SAMPLE_EVERY)

    gc.collect()
    rss0 = rss_bytes()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    sampler = asyncio.create_task(sample())
    texts = await asyncio.gather(*(one(tag, counter) for tag in tags))
    t1 = time.perf_counter()
    cpu1 = cpu_seconds()
    sampler.cancel()
    await close()

    if len(texts) != n:
        raise SystemExit(f"{name}: {len(texts)} texts for {n} streams")
    wrong = [tag for tag, text in zip(tags, texts, strict=True) if text != expected_text(tag)]
    if wrong:
        raise SystemExit(
            f"{name}: {len(wrong)} of {n} streams returned the wrong text, e.g. "
            f"{wrong[0]!r}: {texts[tags.index(wrong[0])][:80]!r}"
        )
    peak = max(open_now for _, open_now, _ in samples)
    at_peak = [rss for _, open_now, rss in samples if open_now == peak]
    rss_mid = at_peak[len(at_peak) // 2]
    return {
        "client": name,
        "n": n,
        "wall_s": t1 - t0,
        "all_open_s": counter.last_opened - t0,  # the last stream's response headers
        "cpu_s": cpu1 - cpu0,
        "chunks": n * EVENTS,
        "cpu_us_per_chunk": (cpu1 - cpu0) / (n * EVENTS) * 1e6,
        "rss_before_kib": rss0 / 1024,
        "rss_mid_kib": rss_mid / 1024,
        "rss_kib_per_stream": (rss_mid - rss0) / 1024 / n,
        "peak_open": max(peak, counter.peak),
        "samples": len(samples),
    }


# -- create_many ---------------------------------------------------------------------------


async def run_many(variant: str, items: int, concurrency: int, port: int) -> dict[str, Any]:
    import routmy_async

    base_url = f"http://127.0.0.1:{port}/v1"
    kwargs: dict[str, Any] = {"api_key": API_KEY, "base_url": base_url}
    kwargs["max_connections"] = concurrency
    if variant == "create_many+rate_limit":
        rate_limit_cls = getattr(routmy_async, "RateLimit", None)
        if rate_limit_cls is None:
            raise SystemExit("routmy_async.RateLimit does not exist")
        kwargs["rate_limit"] = rate_limit_cls(requests_per_minute=10_000_000)
    client = routmy_async.AsyncRoutmy(**kwargs)
    completions = client.chat.completions

    async def gather_bounded(requests: list[dict[str, Any]]) -> list[Any]:
        semaphore = asyncio.Semaphore(concurrency)

        async def one(request: dict[str, Any]) -> Any:
            async with semaphore:
                return await completions.create(**request)

        return await asyncio.gather(*(one(r) for r in requests), return_exceptions=True)

    async def many(requests: list[dict[str, Any]]) -> list[Any]:
        return await completions.create_many(requests, concurrency=concurrency)

    if variant == "gather":
        run = gather_bounded
    elif variant in ("create_many", "create_many+rate_limit"):
        run = many
    else:
        raise SystemExit(f"unknown variant {variant!r}")

    def requests_for(prefix: str, count: int) -> list[dict[str, Any]]:
        return [
            {"model": MODEL, "messages": [{"role": "user", "content": f"{prefix}{i}"}]}
            for i in range(count)
        ]

    def check(prefix: str, requests: list[dict[str, Any]], results: list[Any]) -> None:
        if len(results) != len(requests):
            raise SystemExit(f"{variant}: {len(results)} results for {len(requests)} requests")
        for i, result in enumerate(results):
            if isinstance(result, BaseException):
                raise SystemExit(f"{variant}: item {i} failed: {result!r}")
            content = result.choices[0].message.content
            if content != f"echo {prefix}{i}":
                raise SystemExit(f"{variant}: item {i} got {content!r} (out of order?)")

    warm = requests_for("w", 2 * concurrency)  # opens the pool, loads lazy modules
    check("w", warm, await run(warm))
    requests = requests_for("m", items)
    gc.collect()
    cpu0 = cpu_seconds()
    t0 = time.perf_counter()
    results = await run(requests)
    t1 = time.perf_counter()
    cpu1 = cpu_seconds()
    await client.close()
    check("m", requests, results)
    return {
        "variant": variant,
        "items": items,
        "concurrency": concurrency,
        "wall_s": t1 - t0,
        "cpu_s": cpu1 - cpu0,
        "cpu_us_per_item": (cpu1 - cpu0) / items * 1e6,
        "items_per_s": items / (t1 - t0),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="workload", required=True)
    streams = sub.add_parser("streams")
    streams.add_argument("--client", required=True)
    streams.add_argument("--n", type=int, required=True)
    streams.add_argument("--port", type=int, required=True)
    many = sub.add_parser("many")
    many.add_argument("--variant", required=True)
    many.add_argument("--items", type=int, default=10_000)
    many.add_argument("--concurrency", type=int, default=256)
    many.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    raise_fd_limit()
    if args.workload == "streams":
        result = asyncio.run(run_streams(args.client, args.n, args.port))
    else:
        result = asyncio.run(run_many(args.variant, args.items, args.concurrency, args.port))
    print("RESULT " + json.dumps(result), flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
