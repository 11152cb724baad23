"""Deterministic measures of the package's own work: calls per request and per chunk.

CPU time on a shared 2-core machine swings 10-60% between identical runs; the number of
function calls the package makes does not. ``count_calls`` runs a workload under
``sys.setprofile`` and counts the Python functions whose code lives in ``routmy_async``
(the mock server in ``routmy_async/testing`` excluded), plus the C functions and the standard
library's Python functions those frames call directly (a ``WeakSet.add``, a
``Semaphore.acquire``). Calls into installed packages (aiohttp, yarl, multidict) and whatever
runs deeper are not counted, so the lowest and the newest aiohttp give the same figures.

The answers come from a bare asyncio server written here, each written whole in one
``write``, so every run reads the same bytes the same way, whatever the SDK version.

Run as a script to print the figures of the ``routmy_async`` it imports, e.g. for an older
commit: ``PYTHONPATH=/path/to/old/checkout python tests/_callcount.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from types import CodeType, FrameType
from typing import Any

import routmy_async

PACKAGE = os.path.dirname(os.path.abspath(routmy_async.__file__)) + os.sep
EXCLUDED = PACKAGE + "testing" + os.sep
KEY = "sk-count-key"


def _chat_body(content: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "mock/echo",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
        }
    ).encode()


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    payload = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "mock/echo",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def content_stream(chunks: int) -> bytes:
    """A chat stream of ``chunks`` content deltas (plus role, finish, usage and [DONE])."""
    frames = [_chunk({"role": "assistant", "content": ""})]
    frames += [_chunk({"content": f"word{n} "}) for n in range(chunks)]
    frames.append(_chunk({}, "stop"))
    usage = {"prompt_tokens": 3, "completion_tokens": chunks, "total_tokens": chunks + 3}
    frames.append(
        b"data: "
        + json.dumps({"id": "chatcmpl-1", "choices": [], "usage": usage}).encode()
        + b"\n\n"
    )
    frames.append(b"data: [DONE]\n\n")
    return b"".join(frames)


def tool_stream(chunks: int) -> bytes:
    """A chat stream of one tool call whose arguments come in ``chunks`` fragments."""
    first = {
        "index": 0,
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": ""},
    }
    frames = [_chunk({"role": "assistant", "tool_calls": [first]})]
    frames += [
        _chunk({"tool_calls": [{"index": 0, "function": {"arguments": f'"k{n}":{n},'}}]})
        for n in range(chunks)
    ]
    frames.append(_chunk({}, "tool_calls"))
    frames.append(b"data: [DONE]\n\n")
    return b"".join(frames)


class FixedServer:
    """HTTP/1.1 keep-alive server on 127.0.0.1 answering every POST with ``self.answer``."""

    def __init__(self) -> None:
        self.answer: tuple[str, bytes] = ("application/json", _chat_body("hello there"))
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                kind, body = self.answer
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: "
                    + kind.encode()
                    + b"\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                    + body
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def __aenter__(self) -> FixedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"


class _Counter:
    def __init__(self) -> None:
        self.calls = 0
        self._ours: dict[CodeType, bool] = {}
        self._stdlib: dict[CodeType, bool] = {}

    def _is_stdlib(self, code: CodeType) -> bool:
        known = self._stdlib.get(code)
        if known is None:
            name = code.co_filename
            known = self._stdlib[code] = not (
                name.startswith(PACKAGE) or "site-packages" in name or "dist-packages" in name
            )
        return known

    def _is_ours(self, code: CodeType) -> bool:
        known = self._ours.get(code)
        if known is None:
            name = code.co_filename
            known = self._ours[code] = name.startswith(PACKAGE) and not name.startswith(EXCLUDED)
        return known

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event == "c_call":
            if self._is_ours(frame.f_code):
                self.calls += 1
        elif event == "call":
            # Ours, or the standard library's called straight from ours: what the package
            # asks of asyncio or weakref costs it too.
            caller = frame.f_back
            code = frame.f_code
            if self._is_ours(code) or (
                caller is not None and self._is_ours(caller.f_code) and self._is_stdlib(code)
            ):
                self.calls += 1


async def count_calls(work: Callable[[], Awaitable[object]]) -> int:
    """The package's calls (Python functions, and C functions called from its frames)
    made while ``work()`` runs."""
    counter = _Counter()
    previous = sys.getprofile()
    sys.setprofile(counter)
    try:
        await work()
    finally:
        sys.setprofile(previous)
    return counter.calls


class _OpcodeCounter:
    """Bytecode instructions executed in the package's own frames: a call count misses a
    function that grew heavier, this does not."""

    def __init__(self) -> None:
        self.opcodes = 0
        self._ours: dict[CodeType, bool] = {}

    def _local(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "opcode":
            self.opcodes += 1
        return self._local

    def __call__(self, frame: FrameType, event: str, arg: object) -> Any:
        code = frame.f_code
        ours = self._ours.get(code)
        if ours is None:
            name = code.co_filename
            ours = self._ours[code] = name.startswith(PACKAGE) and not name.startswith(EXCLUDED)
        if not ours:
            return None
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return self._local


async def count_opcodes(work: Callable[[], Awaitable[object]]) -> int:
    """Bytecode instructions the package's own functions execute while ``work()`` runs."""
    counter = _OpcodeCounter()
    # Whatever traced before (coverage does, in the test run) traces again after: leaving
    # tracing off would silently end the coverage measurement of the whole run.
    previous = sys.gettrace()
    sys.settrace(counter)
    try:
        await work()
    finally:
        sys.settrace(previous)
    return counter.opcodes


MESSAGES = [{"role": "user", "content": "hello"}]


async def measure(hooks: Any = None) -> dict[str, float]:
    """Calls per plain non-streamed request, per content chunk and per tool-call chunk (and
    per request with ``hooks`` given, when given); net memory blocks kept per content chunk."""
    from routmy_async import AsyncRoutmy

    figures: dict[str, float] = {}
    async with FixedServer() as server:
        options: dict[str, Any] = {"api_key": KEY, "base_url": server.base_url, "max_retries": 0}
        if hooks is not None:
            options["hooks"] = hooks
        async with AsyncRoutmy(**options) as client:

            async def requests(n: int) -> None:
                for _ in range(n):
                    await client.chat.completions.create(model="mock/echo", messages=MESSAGES)

            async def stream() -> None:
                async with await client.chat.completions.create(
                    model="mock/echo", messages=MESSAGES, stream=True
                ) as events:
                    async for _ in events:
                        pass

            server.answer = ("application/json", _chat_body("hello there"))
            await requests(5)  # warm: the pool's connection, caches, lazy imports
            n = 20
            figures["request"] = await count_calls(lambda: requests(n)) / n
            if hooks is not None:
                return figures
            # Python 3.12+ switch tracing on lazily: the first traced run misses frames.
            await count_opcodes(lambda: requests(1))
            figures["request_opcodes"] = await count_opcodes(lambda: requests(n)) / n
            for name, make in (("content_chunk", content_stream), ("tool_chunk", tool_stream)):
                # The fewest of three: a body written at once can still arrive in two reads
                # when the loop is busy, and a read costs a few calls of its own.
                for suffix, count in (("", count_calls), ("_opcodes", count_opcodes)):
                    server.answer = ("text/event-stream", make(50))
                    await stream()
                    short = min([await count(stream) for _ in range(3)])
                    server.answer = ("text/event-stream", make(250))
                    await stream()
                    long = min([await count(stream) for _ in range(3)])
                    figures[name + suffix] = (long - short) / 200
            figures["content_chunk_blocks"] = await _blocks_per_chunk(client, server)
    return figures


async def _blocks_per_chunk(client: Any, server: FixedServer) -> float:
    """Memory blocks that the package's own code allocated and still holds per content chunk,
    read when the stream's last event has been handed out (the text kept for the final
    message included): what a long answer costs in memory."""
    import tracemalloc

    kept: list[int] = []
    for chunks in (50, 250, 50, 250, 50, 250):
        server.answer = ("text/event-stream", content_stream(chunks))
        tracemalloc.start(1)
        try:
            async with await client.chat.completions.create(
                model="mock/echo", messages=MESSAGES, stream=True
            ) as events:
                async for _ in events:
                    pass
                snapshot = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        ours = snapshot.filter_traces(
            [tracemalloc.Filter(True, PACKAGE + "*"), tracemalloc.Filter(False, EXCLUDED + "*")]
        )
        kept.append(sum(stat.count for stat in ours.statistics("filename")))
    # The median of three differences: tracemalloc sees the odd buffer freed mid-stream.
    differences = sorted((kept[i + 1] - kept[i]) / 200 for i in (0, 2, 4))
    return differences[1]


def _one_hook() -> Any:
    from routmy_async import Hooks

    class Successes(Hooks):
        """A hook as users write one: count the calls that succeeded."""

        def __init__(self) -> None:
            self.seen = 0

        def on_success(self, call: Any, *, result: Any, elapsed: float) -> None:
            self.seen += 1

    return Successes()


async def measure_all() -> dict[str, float]:
    """Every figure: the plain ones, and calls per request with one ``on_success`` hook."""
    figures = await measure()
    try:
        hooks = [_one_hook()]
    except ImportError:  # an older commit, from before hooks
        return figures
    figures["request_with_hook"] = (await measure(hooks=hooks))["request"]
    return figures


if __name__ == "__main__":
    print(json.dumps(asyncio.run(measure_all())))  # noqa: T201 - the script's output
