"""The FastAPI example on a real uvicorn on 127.0.0.1, against MockRoutmy."""

from __future__ import annotations

import asyncio
import importlib.util
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import uvicorn

from routmy_async._streaming._sse import SSEDecoder, WireEvent
from routmy_async.testing import MockRoutmy

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "fastapi_app.py"


def load_app() -> Any:
    spec = importlib.util.spec_from_file_location("fastapi_app_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.app


@asynccontextmanager
async def serve_example(
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[tuple[str, MockRoutmy, Any]]:
    """The example app on uvicorn (127.0.0.1, a free port) in front of a MockRoutmy."""
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
            yield f"http://127.0.0.1:{port}", mock, app
        finally:
            server.should_exit = True
            await asyncio.wait_for(task, 10)
        # The lifespan closed the app's client on shutdown.
        assert app.state.routmy.is_closed


@pytest_asyncio.fixture
async def served(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[str, MockRoutmy]]:
    async with serve_example(monkeypatch) as (base, mock, _):
        yield base, mock


def sse_events(body: bytes) -> list[bytes | WireEvent]:
    """Parse an SSE body with the SDK's own WHATWG parser (comments dropped); a final
    ``data: [DONE]`` (which the parser consumes) is listed as ``b"[DONE]"``."""
    decoder = SSEDecoder()
    events = decoder.feed_raw(body)
    return [*events, b"[DONE]"] if decoder.done else events


async def test_json_endpoint(served):
    """POST /ask awaits create and returns the answer with its request id."""
    base, _ = served
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/ask", json={"text": "hello api"}) as response:
            body = await response.json()
    assert body == {"answer": "hello api", "request_id": "req-mock-1"}


async def test_completion_endpoint_returns_to_json(served):
    """POST /completion returns the ChatCompletion itself, as completion.to_json() encoded it."""
    base, _ = served
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{base}/completion", json={"text": "whole thing"}) as response:
            assert response.headers["Content-Type"] == "application/json"
            body = await response.json()
    assert body["id"].startswith("chatcmpl-mock") and body["model"] == "mock/echo"
    assert body["choices"][0]["message"]["content"] == "whole thing"
    assert body["usage"]["total_tokens"] > 0


async def test_extract_endpoint_returns_the_pydantic_model(served):
    """POST /extract: parse(response_format=<BaseModel>) sends a strict schema; FastAPI returns
    the validated model."""
    base, mock = served
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{base}/extract", json={"text": "Order Z-42 has shipped"}
        ) as response:
            assert response.status == 200
            body = await response.json()
    assert body == {"id": "Z-42", "status": "shipped"}
    sent = mock.requests[-1].json["response_format"]["json_schema"]
    assert sent["name"] == "Order" and sent["strict"] is True
    assert sent["schema"]["required"] == ["id", "status"]


async def test_streaming_endpoint_end_to_end(served):
    """GET /stream relays the router's chunks as SSE, unchanged, and ends with [DONE]."""
    base, _ = served
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"{base}/stream", params={"q": "stream this to the browser"}
        ) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            assert response.headers["Cache-Control"] == "no-cache"
            assert response.headers["X-Accel-Buffering"] == "no"
            body = await response.read()
    frames = sse_events(body)
    assert frames[-1] == b"[DONE]"
    chunks = [json.loads(frame) for frame in frames[:-1] if isinstance(frame, bytes)]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    text = "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )
    assert text == "stream this to the browser"


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


async def test_upstream_error_reaches_the_browser_as_an_error_event(served):
    """An error frame from the router arrives as `event: error` with its fields, without the
    key, and is the last frame."""
    base, mock = served
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "p/m",
        "choices": [{"index": 0, "delta": {"content": "Hel"}}],
    }
    leaked = f"Provider failed for key {mock.api_key}"
    mock.reply_stream(
        [chunk, {"error": {"message": leaked, "code": 502, "type": "provider_error"}}],
        done=False,
    )
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/stream", params={"q": "hi"}) as response:
            body = await response.read()
    assert mock.api_key.encode() not in body
    frames = sse_events(body)
    assert json.loads(frames[0])["choices"][0]["delta"]["content"] == "Hel"  # type: ignore[arg-type]
    error = frames[-1]
    assert isinstance(error, WireEvent) and error.event == "error"
    assert json.loads(error.data) == {
        "error": {
            "message": "Provider failed for key [REDACTED]",
            "code": 502,
            "type": "provider_error",
            "request_id": "req-mock-1",
            "error_class": "APIStreamError",
        }
    }


@pytest.mark.parametrize(
    ("path", "upstream", "status", "kind"),
    [
        # A refusal says why, with the router's status.
        ("/stream", {"status": 400, "message": "bad model"}, 400, "refused_by_upstream"),
        ("/ask", {"status": 404, "message": "no such model"}, 404, "refused_by_upstream"),
        # A rate limit the browser can wait out: 429 and how long (not retried by the SDK:
        # the wait is past its cap).
        (
            "/ask",
            {"status": 429, "message": "slow down", "headers": {"Retry-After": "120"}, "times": 3},
            429,
            "rate_limited",
        ),
        # The app's own key was refused: the browser's request was fine, so not a 401.
        (
            "/stream",
            {"status": 401, "message": "invalid key {key}"},
            502,
            "upstream_refused_the_service",
        ),
        # A broken upstream, retried by the SDK and still broken.
        ("/ask", {"status": 502, "message": "no provider", "times": 3}, 502, "upstream_failed"),
    ],
)
async def test_an_upstream_failure_reaches_the_browser_with_its_own_status(
    served, path, upstream, status, kind
):
    """An error before any answer is raised in the endpoint and answered with the status
    that says what happened (http_reply_for), never with the key."""
    base, mock = served
    upstream = dict(upstream)
    mock.reply_error(
        upstream.pop("status"),
        upstream.pop("message").format(key=mock.api_key),  # a router that echoes the key
        times=upstream.pop("times", 1),
        **upstream,
    )
    async with aiohttp.ClientSession() as session:
        if path == "/stream":
            request = session.get(f"{base}/stream", params={"q": "hi"})
        else:
            request = session.post(f"{base}/ask", json={"text": "hi"})
        async with request as response:
            assert response.status == status
            retry_after = response.headers.get("Retry-After")
            raw = await response.read()
    body = json.loads(raw)["error"]
    assert body["type"] == kind and body["upstream_status"] == upstream_status_of(status, kind)
    assert body["request_id"]
    assert mock.api_key not in raw.decode()
    assert retry_after == ("120" if status == 429 else None)


def upstream_status_of(status: int, kind: str) -> int:
    return 401 if kind == "upstream_refused_the_service" else status


async def test_the_page_is_served(served):
    """GET / is the page that streams /stream with EventSource."""
    base, _ = served
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{base}/") as response:
            assert response.headers["Content-Type"].startswith("text/html")
            page = await response.text()
    assert 'new EventSource("/stream?q="' in page and 'id="answer"' in page
