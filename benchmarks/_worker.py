"""One client, one workload, in a fresh process: prints a JSON line of measurements.

    python benchmarks/_worker.py CLIENT WORKLOAD BASE_URL [--uvloop]

CLIENT is routmy, openai, openai-aiohttp or floor (raw aiohttp + msgspec, written here).
Every result is verified after the timer stops; a wrong answer exits non-zero.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

sys.path.insert(0, __file__.rsplit("/", 1)[0])

from _upstream import (
    COMPLETION_TEXT,
    MODEL_COUNT,
    PACED_CHUNKS,
    TEXT_CHUNKS,
    model_entry,
    text_pieces,
    tool_arguments,
)

KEY = "sk-bench-key"
NONSTREAM_REQUESTS = 2000
CONCURRENCY = 64
STREAMS = 20
PACED_STREAMS = 5
TOOL_STREAMS = 20
MODEL_CALLS = 200
MESSAGES = [{"role": "user", "content": "What does this endpoint do?"}]


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# -- the floor: raw aiohttp + msgspec, with correct SSE line splitting ---------------------


class Floor:
    """The least work a correct client can do: post, read, split SSE lines, typed decode,
    and hand each chunk to the caller through an async iterator (as any streaming API must).
    """

    def __init__(self, base_url: str):
        import aiohttp

        self.base_url = base_url
        self.session = aiohttp.ClientSession()
        self.headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
        from _floor_types import decoders

        self.completion, self.chunk, self.models, encoder = decoders()
        self.encode = encoder.encode

    async def create(self, model: str) -> Any:
        body = self.encode({"model": model, "messages": MESSAGES})
        async with self.session.post(
            self.base_url + "/chat/completions", data=body, headers=self.headers
        ) as response:
            return self.completion.decode(await response.read())

    async def chunks(self, model: str) -> AsyncIterator[Any]:
        """Typed chunks as an async generator: the smallest streaming client API."""
        body = self.encode({"model": model, "messages": MESSAGES, "stream": True})
        decode = self.chunk.decode
        buffer = b""
        async with self.session.post(
            self.base_url + "/chat/completions", data=body, headers=self.headers
        ) as response:
            async for data in response.content.iter_any():
                buffer += data
                if b"\r" in buffer:
                    buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].lstrip(b" ")
                    if payload == b"[DONE]":
                        return
                    yield decode(payload)

    async def stream(self, model: str) -> tuple[str, str, int]:
        texts: list[str] = []
        arguments: list[str] = []
        events = 0
        async for chunk in self.chunks(model):
            events += 1
            for choice in chunk.choices:
                delta = choice.delta
                if delta is None:
                    continue
                if delta.content:
                    texts.append(delta.content)
                if delta.tool_calls:
                    for call in delta.tool_calls:
                        if call.function is not None and call.function.arguments:
                            arguments.append(call.function.arguments)
        return "".join(texts), "".join(arguments), events

    async def models_list(self) -> tuple[int, int, list[Any]]:
        async with self.session.get(self.base_url + "/models", headers=self.headers) as response:
            return read_models(self.models.decode(await response.read()).data)

    async def close(self) -> None:
        await self.session.close()


# -- the SDKs -------------------------------------------------------------------------------


class Routmy:
    def __init__(self, base_url: str):
        from routmy_async import AsyncRoutmy

        self.client = AsyncRoutmy(api_key=KEY, base_url=base_url)

    async def create(self, model: str) -> Any:
        return await self.client.chat.completions.create(model=model, messages=MESSAGES)

    async def stream(self, model: str) -> tuple[str, str, int]:
        events = 0
        async with self.client.chat.completions.stream(model=model, messages=MESSAGES) as stream:
            async for _ in stream:
                events += 1
        final = stream.get_final_completion()
        message = final.choices[0].message
        arguments = message.tool_calls[0].function.arguments if message.tool_calls else ""
        return message.content or "", arguments, events

    async def models_list(self) -> tuple[int, int, list[Any]]:
        models = await self.client.models.list()
        return read_models(models.data)

    async def close(self) -> None:
        await self.client.close()


class OpenAI:
    def __init__(self, base_url: str, aiohttp_transport: bool):
        import openai

        kwargs: dict[str, Any] = {}
        if aiohttp_transport:
            kwargs["http_client"] = openai.DefaultAioHttpClient()
        self.client = openai.AsyncOpenAI(api_key=KEY, base_url=base_url, **kwargs)

    async def create(self, model: str) -> Any:
        return await self.client.chat.completions.create(model=model, messages=MESSAGES)  # type: ignore[arg-type]

    async def stream(self, model: str) -> tuple[str, str, int]:
        # Plain create(stream=True) with hand accumulation: the SDK's cheapest streaming path.
        texts: list[str] = []
        arguments: list[str] = []
        events = 0
        stream = await self.client.chat.completions.create(
            model=model,
            messages=MESSAGES,
            stream=True,  # type: ignore[arg-type]
        )
        async for chunk in stream:
            events += 1
            for choice in chunk.choices:
                if choice.delta.content:
                    texts.append(choice.delta.content)
                for call in choice.delta.tool_calls or ():
                    if call.function is not None and call.function.arguments:
                        arguments.append(call.function.arguments)
        return "".join(texts), "".join(arguments), events

    async def models_list(self) -> tuple[int, int, list[Any]]:
        # openai's Model keeps fields it does not declare as extras: pricing is a dict there.
        page = await self.client.models.list()
        context = 0
        prompts = []
        for model in page.data:
            context += model.context_length or 0  # type: ignore[attr-defined]
            prompts.append(model.pricing["prompt"])  # type: ignore[attr-defined]
        return len(page.data), context, prompts

    async def close(self) -> None:
        await self.client.close()


def make(client: str, base_url: str) -> Any:
    if client == "routmy":
        return Routmy(base_url)
    if client == "openai":
        return OpenAI(base_url, aiohttp_transport=False)
    if client == "openai-aiohttp":
        return OpenAI(base_url, aiohttp_transport=True)
    if client == "floor":
        return Floor(base_url)
    raise SystemExit(f"unknown client {client}")


def read_models(data: list[Any]) -> tuple[int, int, list[Any]]:
    """What a caller choosing a model reads: each one's context length and prompt price."""
    context = 0
    prompts = []
    for model in data:
        context += model.context_length or 0
        prompts.append(model.pricing.prompt)
    return len(data), context, prompts


def content_of(result: Any) -> str:
    choices = result.choices
    message = choices[0].message
    return message.content


async def nonstream(sdk: Any) -> dict[str, Any]:
    results: list[Any] = []
    pending = iter(range(NONSTREAM_REQUESTS))

    async def worker() -> None:
        for _ in pending:
            results.append(await sdk.create("bench/completion"))

    await sdk.create("bench/completion")  # warm the pool and caches
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    bad = sum(content_of(r) != COMPLETION_TEXT for r in results)
    if len(results) != NONSTREAM_REQUESTS or bad:
        raise SystemExit(f"wrong results: {len(results)} results, {bad} wrong")
    return {"units": NONSTREAM_REQUESTS, "cpu": cpu, "wall": wall}


async def streams(
    sdk: Any, model: str, count: int, expect_text: str, expect_args: str
) -> dict[str, Any]:
    await sdk.stream(model)
    outcomes = []
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        outcomes.append(await sdk.stream(model))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    events = 0
    for text, arguments, seen in outcomes:
        if text != expect_text or arguments != expect_args:
            raise SystemExit(f"wrong stream result: {text[:40]!r} / {arguments[:40]!r}")
        if expect_args:
            json.loads(arguments)
        events += seen
    return {"units": events, "cpu": cpu, "wall": wall}


async def models(sdk: Any) -> dict[str, Any]:
    await sdk.models_list()
    answers = []
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(MODEL_CALLS):
        answers.append(await sdk.models_list())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    entries = [model_entry(i) for i in range(MODEL_COUNT)]
    expected = (
        MODEL_COUNT,
        sum(entry["context_length"] for entry in entries),
        [entry["pricing"]["prompt"] for entry in entries],
    )
    if any(tuple(answer) != expected for answer in answers):
        raise SystemExit("wrong models list (count, context lengths or prompt prices)")
    return {"units": MODEL_CALLS, "cpu": cpu, "wall": wall}


async def run(client: str, workload: str, base_url: str) -> dict[str, Any]:
    if workload == "create":
        # Client construction, after the import, averaged over a few clients.
        make(client, base_url)  # the first pays one-time costs shared by all
        count = 20
        started = time.perf_counter()
        built = [make(client, base_url) for _ in range(count)]
        elapsed = time.perf_counter() - started
        for sdk in built:
            await sdk.close()
        return {"units": count, "cpu": elapsed, "wall": elapsed}
    sdk = make(client, base_url)
    try:
        if workload == "nonstream":
            return await nonstream(sdk)
        if workload == "stream":
            return await streams(sdk, "bench/text", STREAMS, "".join(text_pieces(TEXT_CHUNKS)), "")
        if workload == "paced":
            return await streams(
                sdk, "bench/paced", PACED_STREAMS, "".join(text_pieces(PACED_CHUNKS)), ""
            )
        if workload == "tools":
            return await streams(sdk, "bench/tools", TOOL_STREAMS, "", tool_arguments())
        if workload == "models":
            return await models(sdk)
        if workload == "rss":
            result = await sdk.create("bench/completion")
            if content_of(result) != COMPLETION_TEXT:
                raise SystemExit("wrong result")
            return {"units": 1, "cpu": 0.0, "wall": 0.0, "rss_kib": rss_kib()}
        raise SystemExit(f"unknown workload {workload}")
    finally:
        await sdk.close()


def main() -> None:
    client, workload, base_url = sys.argv[1:4]
    if "--uvloop" in sys.argv:
        import uvloop

        result = uvloop.run(run(client, workload, base_url))
    else:
        result = asyncio.run(run(client, workload, base_url))
    result.update(client=client, workload=workload)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
