"""The FastAPI example on a real uvicorn on 127.0.0.1, against MockRoutmy."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import uvicorn

from routmy_async.testing import MockRoutmy

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"


def load_app() -> Any:
    spec = importlib.util.spec_from_file_location("fastapi_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


@pytest_asyncio.fixture
async def served(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, MockRoutmy]]:
    async with MockRoutmy() as mock:
        monkeypatch.setenv("ROUTMY_BASE_URL", mock.base_url)
        monkeypatch.setenv("ROUTMY_API_KEY", mock.api_key)
        app = load_app()
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}", mock
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
        # The lifespan closed the app's client on shutdown.
        assert app.state.routmy.is_closed


async def test_json_endpoint(served):
    """POST /ask awaits create and returns the answer with its request id."""
    base, _ = served
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/ask", json={"text": "hello api"}) as response:
            body = await response.json()
    assert body == {"answer": "hello api", "request_id": "req-mock-1"}


async def test_streaming_endpoint_end_to_end(served):
    """GET /stream relays the model's deltas as SSE and ends with [DONE]."""
    base, _ = served
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{base}/stream", params={"q": "stream this to the browser"}
        ) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            text = await response.text()
    frames = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
    assert frames[-1] == "[DONE]"
    assert "".join(json.loads(f)["delta"] for f in frames[:-1]) == "stream this to the browser"


async def test_browser_disconnect_stops_the_upstream_stream(served):
    """When the browser goes away, the upstream stream is closed and its connection freed."""
    base, mock = served
    mock.reply_default(chunk_delay=0.1)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/stream", params={"q": "a long answer " * 10}) as response:
            first = await response.content.readline()
            assert first.startswith(b"data: ")
    for _ in range(100):
        if mock.disconnects:
            break
        await asyncio.sleep(0.05)
    assert mock.disconnects == 1
