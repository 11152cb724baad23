"""Shared fixtures: a MockRoutmy, a client bound to it, and a raw asyncio HTTP server."""

from __future__ import annotations

import asyncio
import inspect
import os
import types
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aioresponses import aioresponses
from hypothesis import HealthCheck, settings

from routmy_async import AsyncRoutmy
from routmy_async.testing import MockRoutmy

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

# Property tests judge correctness, not speed: a loaded CI machine must not fail them.
settings.register_profile(
    "routmy", deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=100
)
settings.load_profile("routmy")


@pytest_asyncio.fixture
async def mock() -> AsyncIterator[MockRoutmy]:
    async with MockRoutmy() as server:
        yield server


@pytest_asyncio.fixture
async def client(mock: MockRoutmy) -> AsyncIterator[AsyncRoutmy]:
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as c:
        yield c


class RawServer:
    """A bare asyncio TCP server on 127.0.0.1 whose handler writes whatever bytes it likes."""

    def __init__(self, handler: Handler):
        self._handler = handler
        self._server: asyncio.Server | None = None
        self.connections = 0
        self.closed_by_client = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            self.closed_by_client += 1
        finally:
            self._tasks.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def __aenter__(self) -> RawServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """Read one HTTP/1.1 request (head and Content-Length body)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return head, body


def http_response(
    body: bytes,
    *,
    status: str = "200 OK",
    content_type: str = "application/json",
    extra: str = "",
) -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def chunked_head(content_type: str = "text/event-stream") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


@pytest.fixture
def raw_server() -> Callable[[Handler], RawServer]:
    return RawServer


async def eventually(predicate: Callable[[], bool], seconds: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``seconds`` run out (False): for what
    happens in the background, such as a connection going back to the pool after a stream
    ended before its body did."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# Only aiohttp >= 3.14 takes (and requires) ``stream_writer``; older ones reject it.
_NEEDS_STREAM_WRITER = "stream_writer" in inspect.signature(aiohttp.ClientResponse).parameters


class AioresponsesCompatResponse(aiohttp.ClientResponse):
    """aioresponses 0.7.9 predates aiohttp 3.14's required ``stream_writer``: supply one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if _NEEDS_STREAM_WRITER and "stream_writer" not in kwargs and "writer" in kwargs:
            kwargs["stream_writer"] = types.SimpleNamespace(output_size=0)
        super().__init__(*args, **kwargs)


def patched_aioresponses() -> aioresponses:
    """An aioresponses whose mocked answers build with the installed aiohttp."""
    mocked = aioresponses()
    original = mocked.add

    def add(url: Any, method: str = "GET", *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("response_class", AioresponsesCompatResponse)
        original(url, method, *args, **kwargs)

    mocked.add = add  # type: ignore[method-assign]
    return mocked


# Figures the fault suite reports at the end of the run (faults tried, offsets, soak sizes).
FAULT_FIGURES: dict[str, Any] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FAULT_FIGURES:
        terminalreporter.section("fault suite figures")
        for name, value in sorted(FAULT_FIGURES.items()):
            terminalreporter.write_line(f"{name}: {value}")


if os.environ.get("ROUTMY_TEST_LOOP") == "uvloop":
    # FastAPI under uvicorn[standard] runs on uvloop: CI runs the wire-level suites on it too.
    import uvloop

    def pytest_asyncio_loop_factories(config: Any, item: Any) -> dict[str, Any]:
        return {"uvloop": uvloop.new_event_loop}
