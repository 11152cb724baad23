"""What observation costs: no hooks, a no-op hook, and OpenTelemetry spans and metrics.

    python benchmarks/bench_hooks.py [--repeat 5]
    python benchmarks/bench_hooks.py --interleaved 12   # every variant in one process

Starts the fake upstream (``_upstream.py``) in its own process, then runs, in fresh
processes with the order rotated every repeat, W1 (non-streamed completions at concurrency
64) and W2 (streams of 1,000 chunks) with: ``none`` (no hooks), ``noop`` (one hook that overrides
every method with ``pass``), ``otel-api`` (``instrument()`` with no SDK configured: the
API's no-op tracer and meter, so what remains is this package's own instrumentation work)
and ``otel`` (``instrument()`` with the OpenTelemetry SDK, an always-on
sampler and a span processor that drops every span, plus an in-memory metric reader). Reports
client CPU per request (W1) and per stream (W2) and the overhead against ``none``.
Needs ``opentelemetry-sdk`` (dev extra).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VARIANTS = ["none", "noop", "otel-api", "otel"]
W1_REQUESTS = 3000
W2_STREAMS = 20


async def _run(variant: str, workload: str, base_url: str) -> dict[str, Any]:
    from routmy_async import AsyncRoutmy, Hooks

    hooks: list[Hooks] = []
    if variant == "noop":
        # Overrides every method (a plain Hooks() overrides none, and costs nothing at all).
        class Listening(Hooks):
            def on_request(self, call: Any, **kwargs: Any) -> None:
                pass

            def on_response(self, call: Any, **kwargs: Any) -> None:
                pass

            def on_retry(self, call: Any, **kwargs: Any) -> None:
                pass

            def on_error(self, call: Any, **kwargs: Any) -> None:
                pass

            def on_success(self, call: Any, **kwargs: Any) -> None:
                pass

            def on_stream_end(self, call: Any, summary: Any) -> None:
                pass

        hooks = [Listening()]
    elif variant == "otel-api":
        # No SDK configured: the API's no-op tracer and meter. What is left is the
        # instrumentation's own work (attributes, bookkeeping), not the SDK's.
        from routmy_async.instrumentation import instrument

        instrument()
    elif variant == "otel":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

        from routmy_async.instrumentation import instrument

        class Drop(SpanProcessor):
            """Every span is built and ended, then dropped: the SDK's cost, no export."""

        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(Drop())
        instrument(tracer_provider, MeterProvider(metric_readers=[InMemoryMetricReader()]))
    messages = [{"role": "user", "content": "benchmark"}]
    async with AsyncRoutmy(api_key="bench", base_url=base_url, hooks=hooks) as client:
        await client.chat.completions.create(model="bench/text", messages=messages)  # warm
        started = time.process_time()
        if workload == "W1":
            semaphore = asyncio.Semaphore(64)

            async def one() -> None:
                async with semaphore:
                    await client.chat.completions.create(model="bench/text", messages=messages)

            await asyncio.gather(*(one() for _ in range(W1_REQUESTS)))
            units = W1_REQUESTS
        else:
            for _ in range(W2_STREAMS):
                async with client.chat.completions.stream(
                    model="bench/text", messages=messages
                ) as stream:
                    await stream.until_done()
            units = W2_STREAMS
        cpu = time.process_time() - started
        # What a client without hooks does for them per request: build no Call (the test
        # Pipeline.send makes of the client's and the global hooks), timed alone.
        hook_path_ns = None
        if variant == "none":
            from routmy_async import _hooks

            transport = client._transport
            rounds = 200_000
            begun = time.perf_counter()
            for _ in range(rounds):
                _ = transport.hooks is None and _hooks.global_hook_set is None
            hook_path_ns = (time.perf_counter() - begun) / rounds * 1e9
    sdk_floor_us = _sdk_floor_us() if variant == "otel" and workload == "W1" else None
    return {
        "variant": variant,
        "workload": workload,
        "us_per_unit": cpu / units * 1e6,
        "hook_path_ns": hook_path_ns,
        "sdk_floor_us": sdk_floor_us,
    }


def _sdk_floor_us() -> float:
    """The OpenTelemetry SDK's own price for what the GenAI conventions ask of one call, with
    no routmy code at all: a CLIENT span with the request attributes, the response attributes
    set, ended, and three histogram records (duration, input and output tokens)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import SpanKind

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SpanProcessor())
    tracer = tracer_provider.get_tracer("floor")
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("floor")
    duration = meter.create_histogram("gen_ai.client.operation.duration", unit="s")
    usage = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    base = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "bench",
        "gen_ai.request.model": "bench/text",
        "server.address": "127.0.0.1",
        "server.port": 8000,
    }
    rounds = 20_000
    started = time.process_time()
    for _ in range(rounds):
        span = tracer.start_span("chat bench/text", kind=SpanKind.CLIENT, attributes=base)
        span.set_attributes(
            {
                "gen_ai.response.id": "chatcmpl-1",
                "gen_ai.response.model": "bench/text",
                "gen_ai.response.finish_reasons": ("stop",),
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.output_tokens": 20,
            }
        )
        span.end()
        metric = {**base, "gen_ai.response.model": "bench/text"}
        duration.record(0.05, metric)
        usage.record(10, {**metric, "gen_ai.token.type": "input"})
        usage.record(20, {**metric, "gen_ai.token.type": "output"})
    return (time.process_time() - started) / rounds * 1e6


async def _interleaved(base_url: str, rounds: int) -> dict[str, list[float]]:
    """Every variant as a client of its own in ONE process, rounds interleaved: a
    shared VM's drift between processes (1.5-2x here) cancels out of the ratios."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

    from routmy_async import AsyncRoutmy, Hooks
    from routmy_async.instrumentation import OpenTelemetryHooks

    class Listening(Hooks):
        def on_request(self, call: Any, **kwargs: Any) -> None:
            pass

        def on_response(self, call: Any, **kwargs: Any) -> None:
            pass

        def on_success(self, call: Any, **kwargs: Any) -> None:
            pass

        def on_stream_end(self, call: Any, summary: Any) -> None:
            pass

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SpanProcessor())  # built and ended, then dropped
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    hook_sets: dict[str, list[Hooks]] = {
        "none": [],
        "noop": [Listening()],
        "otel-api": [OpenTelemetryHooks()],  # no SDK configured: the API's no-op providers
        "otel": [OpenTelemetryHooks(tracer_provider=tracer_provider, meter_provider=meters)],
    }
    messages = [{"role": "user", "content": "benchmark"}]
    clients = {
        name: AsyncRoutmy(api_key="bench", base_url=base_url, hooks=hooks)
        for name, hooks in hook_sets.items()
    }
    results: dict[str, list[float]] = {f"{w} {v}": [] for w in ("W1", "W2") for v in VARIANTS}
    try:
        semaphore = asyncio.Semaphore(64)

        async def one(client: AsyncRoutmy) -> None:
            async with semaphore:
                await client.chat.completions.create(model="bench/text", messages=messages)

        for client in clients.values():
            await asyncio.gather(*(one(client) for _ in range(200)))  # warm
        for number in range(rounds):
            order = VARIANTS[number % len(VARIANTS) :] + VARIANTS[: number % len(VARIANTS)]
            for name in order:
                client = clients[name]
                started = time.process_time()
                await asyncio.gather(*(one(client) for _ in range(1000)))
                results[f"W1 {name}"].append((time.process_time() - started) / 1000 * 1e6)
                started = time.process_time()
                for _ in range(5):
                    async with client.chat.completions.stream(
                        model="bench/text", messages=messages
                    ) as stream:
                        await stream.until_done()
                results[f"W2 {name}"].append((time.process_time() - started) / 5 * 1e6)
    finally:
        for client in clients.values():
            await client.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--worker", nargs=3, metavar=("VARIANT", "WORKLOAD", "URL"))
    parser.add_argument(
        "--interleaved",
        type=int,
        metavar="ROUNDS",
        help="run every variant in one process, ROUNDS interleaved rounds (steadier ratios)",
    )
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(_run(*args.worker))))
        return
    if args.interleaved:
        upstream = subprocess.Popen(
            [sys.executable, str(HERE / "_upstream.py")], stdout=subprocess.PIPE, text=True
        )
        try:
            assert upstream.stdout is not None
            url = f"http://127.0.0.1:{upstream.stdout.readline().strip()}/v1"
            measured = asyncio.run(_interleaved(url, args.interleaved))
        finally:
            upstream.terminate()
            upstream.wait(timeout=10)
        print(f"one process, {args.interleaved} interleaved rounds, median (min)\n")
        print("| workload | variant | µs CPU per unit | / none |")
        print("|---|---|---|---|")
        for workload, unit in (("W1", "request"), ("W2", "1,000-chunk stream")):
            none = statistics.median(measured[f"{workload} none"])
            for variant in VARIANTS:
                values = measured[f"{workload} {variant}"]
                print(
                    f"| {workload} ({unit}) | {variant} | {statistics.median(values):.1f} "
                    f"({min(values):.1f}) | {statistics.median(values) / none:.3f} |"
                )
        return
    upstream = subprocess.Popen(
        [sys.executable, str(HERE / "_upstream.py")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert upstream.stdout is not None
        base_url = f"http://127.0.0.1:{upstream.stdout.readline().strip()}/v1"
        results: dict[tuple[str, str], list[float]] = {}
        hook_path: list[float] = []
        sdk_floor: list[float] = []
        for repeat in range(args.repeat):
            shift = repeat % len(VARIANTS)
            order = VARIANTS[shift:] + VARIANTS[:shift]
            for workload in ("W1", "W2"):
                for variant in order:
                    done = subprocess.run(
                        [sys.executable, __file__, "--worker", variant, workload, base_url],
                        env={**os.environ, "PYTHONPATH": str(HERE.parent)},  # this checkout
                        capture_output=True,
                        text=True,
                        check=True,
                        timeout=600,
                    )
                    result = json.loads(done.stdout.strip().splitlines()[-1])
                    results.setdefault((workload, variant), []).append(result["us_per_unit"])
                    if result["hook_path_ns"] is not None and workload == "W1":
                        hook_path.append(result["hook_path_ns"])
                    if result["sdk_floor_us"] is not None:
                        sdk_floor.append(result["sdk_floor_us"])
    finally:
        upstream.terminate()
        upstream.wait(timeout=10)
    units = {"W1": "µs CPU / request (concurrency 64)", "W2": "µs CPU / 1,000-chunk stream"}
    print(f"median of {args.repeat} runs, each in a fresh process\n")
    print(
        "| workload | unit | none | noop hook | otel, API only | otel + SDK "
        "| noop / none | otel API / none | otel SDK / none |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for workload in ("W1", "W2"):
        medians = {v: statistics.median(results[(workload, v)]) for v in VARIANTS}
        none = medians["none"]
        print(
            f"| {workload} | {units[workload]} | {none:.1f} | {medians['noop']:.1f} "
            f"| {medians['otel-api']:.1f} | {medians['otel']:.1f} "
            f"| {medians['noop'] / none:.3f} | {medians['otel-api'] / none:.3f} "
            f"| {medians['otel'] / none:.3f} |"
        )
    path_ns = statistics.median(hook_path)
    per_request = statistics.median(results[("W1", "none")]) * 1000
    print(
        f"\nWithout hooks, the hook path costs {path_ns:.0f} ns per call "
        f"({path_ns / per_request:.2%} of a W1 request's CPU)."
    )
    floor_us = statistics.median(sdk_floor)
    otel_extra = statistics.median(results[("W1", "otel")]) - per_request / 1000
    print(
        f"The OpenTelemetry SDK alone, doing what the conventions ask of one call (a span with "
        f"its attributes, three histogram records), costs {floor_us:.1f} µs "
        f"({floor_us / (per_request / 1000):.0%} of a W1 request); the measured otel overhead "
        f"is {otel_extra:.1f} µs per request."
    )


if __name__ == "__main__":
    main()
