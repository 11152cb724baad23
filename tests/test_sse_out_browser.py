"""The example's page in a real browser: headless Chromium (Debian's ``chromium``) driven over
the Chrome DevTools Protocol, against the FastAPI example on uvicorn and a MockRoutmy.

Skipped when Chromium is not installed; ``.ci/run`` installs it.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import aiohttp
import pytest
import pytest_asyncio

from tests.test_fastapi_example import serve_example

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
]

pytestmark = pytest.mark.timeout(90)


class DevTools:
    """A minimal Chrome DevTools Protocol client over one browser-level websocket."""

    def __init__(self, socket: Any):  # an aiohttp ClientWebSocketResponse
        self._socket = socket
        self._ids = itertools.count(1)

    async def send(self, method: str, session: str | None = None, **params: Any) -> Any:
        message: dict[str, Any] = {"id": next(self._ids), "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        await self._socket.send_json(message)
        while True:
            reply = await self._socket.receive_json(timeout=30)
            if reply.get("id") == message["id"]:  # events (no id) are not needed here
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]


@pytest_asyncio.fixture
async def browser(tmp_path: Path) -> AsyncIterator[DevTools]:
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does it)")
    profile = tmp_path / "profile"
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        *FLAGS,
        f"--user-data-dir={profile}",
        "about:blank",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        # Chromium writes its port and browser endpoint here once it listens.
        port_file = profile / "DevToolsActivePort"
        for _ in range(300):
            if port_file.exists() and len(port_file.read_text().splitlines()) == 2:
                break
            if process.returncode is not None:
                pytest.fail(f"chromium exited with {process.returncode}")
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(
                f"ws://127.0.0.1:{port}{path}", max_msg_size=64 * 1024 * 1024
            ) as socket:
                yield DevTools(socket)
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except asyncio.TimeoutError:
                process.kill()
                await process.wait()


async def open_page(devtools: DevTools, url: str) -> tuple[str, str]:
    """A new tab at ``url``: its target id and the session to drive it."""
    target = (await devtools.send("Target.createTarget", url="about:blank"))["targetId"]
    session = (await devtools.send("Target.attachToTarget", targetId=target, flatten=True))[
        "sessionId"
    ]
    await devtools.send("Page.enable", session)
    await devtools.send("Page.navigate", session, url=url)
    return target, session


async def page_state(devtools: DevTools, session: str) -> dict[str, str]:
    result = await devtools.send(
        "Runtime.evaluate",
        session,
        expression=(
            "JSON.stringify({status: document.getElementById('status')?.textContent ?? '',"
            " answer: document.getElementById('answer')?.textContent ?? ''})"
        ),
        returnByValue=True,
    )
    state: dict[str, str] = json.loads(result["result"]["value"])
    return state


async def wait_for(devtools: DevTools, session: str, done: Any, seconds: float) -> dict[str, str]:
    state: dict[str, str] = {}
    for _ in range(int(seconds / 0.05)):
        try:
            state = await page_state(devtools, session)
        except RuntimeError:
            state = {}  # the page is being replaced: its context is gone for a moment
        if state and done(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"the page did not get there in {seconds} s: {state}")


async def test_the_answer_streams_into_the_page(browser, monkeypatch, tmp_path):
    """The page asks /stream with EventSource and the streamed text appears in the DOM."""
    question = "Stream <this> answer into a real browser page"
    async with serve_example(monkeypatch) as (base, mock, _):
        _, session = await open_page(browser, f"{base}/?q={quote_plus(question)}")
        finished = ("done", "connection lost")
        state = await wait_for(
            browser, session, lambda s: s["status"] in finished or "error" in s["status"], 20
        )
        assert state == {"status": "done", "answer": question}
        shot = await browser.send("Page.captureScreenshot", session, format="png")
        picture = base64.b64decode(shot["data"])
        assert picture.startswith(b"\x89PNG\r\n\x1a\n")
        (tmp_path / "answer.png").write_bytes(picture)
        assert [r.json["messages"][0]["content"] for r in mock.requests] == [question]


async def test_closing_the_page_mid_stream_stops_the_upstream(browser, monkeypatch, tmp_path):
    """Closing the tab mid-answer closes the app's upstream stream: MockRoutmy records the
    disconnect, and the app's client holds no connection afterwards."""
    async with serve_example(monkeypatch) as (base, mock, app):
        mock.reply_default(chunk_delay=0.2)
        question = "a long answer that takes a while to arrive " * 4
        target, session = await open_page(browser, f"{base}/?q={quote_plus(question)}")
        state = await wait_for(browser, session, lambda s: len(s["answer"]) >= 16, 20)
        assert state["status"] == "streaming" and question.startswith(state["answer"])
        assert mock.disconnects == 0
        shot = await browser.send("Page.captureScreenshot", session, format="png")
        (tmp_path / "mid_stream.png").write_bytes(base64.b64decode(shot["data"]))
        await browser.send("Target.closeTarget", targetId=target)
        for _ in range(100):
            if mock.disconnects and app.state.routmy.connections_in_use == 0:
                break
            await asyncio.sleep(0.05)
        assert mock.disconnects == 1
        assert app.state.routmy.connections_in_use == 0


async def form_state(devtools: DevTools, session: str) -> dict[str, str]:
    result = await devtools.send(
        "Runtime.evaluate",
        session,
        expression=(
            "JSON.stringify({status: document.getElementById('status')?.textContent ?? '',"
            " id: document.getElementById('id')?.value ?? '',"
            " order_status: document.getElementById('status-field')?.value ?? ''})"
        ),
        returnByValue=True,
    )
    state: dict[str, str] = json.loads(result["result"]["value"])
    return state


async def test_the_form_fills_itself_as_the_answer_streams(browser, monkeypatch, tmp_path):
    """The /form page streams the structured answer's partial JSON: its fields fill while the
    stream is still open (a field appears before the answer ends), and hold the whole answer
    at the end."""
    async with serve_example(monkeypatch) as (base, mock, _):
        mock.reply_default(chunk_delay=0.15)  # slow enough to look at the page mid-answer
        message = "Order A-123 has shipped"
        _, session = await open_page(browser, f"{base}/form?q={quote_plus(message)}")
        seen: list[dict[str, str]] = []
        for _ in range(400):
            try:
                state = await form_state(browser, session)
            except RuntimeError:
                state = {}  # the page is being replaced: its context is gone for a moment
            if state:
                seen.append(state)
                if state["status"] not in ("", "idle", "streaming"):
                    break  # done, an error, or a lost connection
            await asyncio.sleep(0.03)
        assert seen and seen[-1] == {"status": "done", "id": "A-123", "order_status": "shipped"}
        # Before the end: the id complete (or growing) while the status was still streaming.
        early = [s for s in seen if s["status"] == "streaming" and s["id"]]
        assert early, seen
        assert all("A-123".startswith(s["id"]) for s in early)
        assert any(s["order_status"] in ("", "shipped"[: len(s["order_status"])]) for s in early)
        shot = await browser.send("Page.captureScreenshot", session, format="png")
        (tmp_path / "form.png").write_bytes(base64.b64decode(shot["data"]))
        assert [r.json["response_format"]["json_schema"]["name"] for r in mock.requests] == [
            "Order"
        ]


async def test_the_forms_apply_patch_rebuilds_any_answer_in_the_browser(browser, monkeypatch):
    """The example's applyPatch (JavaScript, in the /form page), given the patches of an
    answer with nesting, escapes, non-ASCII text and a key written twice, one frame per
    small delta, holds what JSON.parse of the whole answer gives."""
    answer = {
        "title": 'say "hi"\n\\ é😀 ' * 20,
        "rows": [
            {"n": n, "tags": ["a", str(n)], "ok": n % 2 == 0, "none": None} for n in range(40)
        ],
        "nested": {"deep": {"list": [[1, 2], [], {"x": "y"}]}},
    }
    text = json.dumps(answer)[:-1] + ', "title": "again"}'  # the last "title" wins
    frames = patch_frames(text, step=5)
    assert await applied_on_the_form(browser, monkeypatch, frames) == json.loads(text)


async def test_the_forms_apply_patch_keeps_a_key_named_proto(browser, monkeypatch):
    """An answer with a key named "__proto__" (a map of words the model was given, say):
    JSON.parse makes it an own property, and so must applyPatch, where `obj[key] = value`
    and Object.assign would set the object's prototype instead and lose the key, leaving
    the page short of the answer it then marks done."""
    text = (
        '{"__proto__": "top", "words": {"a": 1, "__proto__": {"n": [2]}}, "s": {"__proto__": "x"}}'
    )
    frames = patch_frames(text, step=4)
    assert any('"merge",["words"]' in frame for frame in frames)
    assert await applied_on_the_form(browser, monkeypatch, frames) == json.loads(text)


def patch_frames(text: str, *, step: int) -> list[str]:
    """The 'patch' frames of an answer fed in deltas of ``step`` characters, the closing
    frame last, as ``to_sse(format="patch")`` writes them."""
    import msgspec

    from routmy_async._partial_json import PartialJSON
    from routmy_async._partial_patch import PatchWriter

    parser, writer, frames = PartialJSON(), PatchWriter(), []
    for start in range(0, len(text), step):
        parser.feed(text[start : start + step])
        if ops := writer.changes(parser.value):
            frames.append(msgspec.json.encode(ops).decode())
    frames.append(msgspec.json.encode(writer.closing(parser.finish())).decode())
    return frames


async def applied_on_the_form(browser: Any, monkeypatch: Any, frames: list[str]) -> Any:
    """What the example's /form page holds after its applyPatch took every frame."""
    async with serve_example(monkeypatch) as (base, _, _):
        _, session = await open_page(browser, f"{base}/form")
        expression = (
            f"JSON.stringify({json.dumps(frames)}"
            ".reduce((value, frame) => applyPatch(value, JSON.parse(frame)), null))"
        )
        for _ in range(100):
            result = await browser.send(
                "Runtime.evaluate", session, expression=expression, returnByValue=True
            )
            if "exceptionDetails" not in result:  # the page's script has loaded
                break
            await asyncio.sleep(0.05)
        return json.loads(result["result"]["value"])
