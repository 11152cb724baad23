"""What a cold review of issue 25's last changes found, each as the user meets it:
``FunctionTool.answer`` given decoded arguments, ``client.redact`` before the first request,
and a served stream that its ``async with`` block closed."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

import msgspec
import pytest

from routmy_async import function_tool

pydantic = pytest.importorskip("pydantic")


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def repeat(times: Annotated[int, pydantic.Field(ge=1)]) -> str:
    """Repeat a letter (Pydantic checks the arguments)."""
    return "n" * times


@pytest.mark.parametrize("tool", [function_tool(add), function_tool(repeat)], ids=repr)
@pytest.mark.parametrize("arguments", [{"a": 1, "b": 2}, ["a"], 3])
async def test_answer_refuses_arguments_that_are_not_json_text(tool: Any, arguments: Any):
    """A hand-written loop that passes decoded arguments (a dict) gets a TypeError naming the
    tool, for a msgspec and a Pydantic tool alike; it is never sent to the model as an
    ``Error: ...`` answer (the Pydantic tool did that: its decoder's TypeError counted as bad
    arguments)."""
    with pytest.raises(TypeError, match=rf"arguments for {tool.name} must be the JSON text"):
        await tool.answer(arguments)
    with pytest.raises(TypeError, match=rf"arguments for {tool.name} must be the JSON text"):
        await tool.run(arguments)


async def test_answer_still_takes_text_and_bytes():
    """JSON text, its bytes, and an empty string or None (no arguments) are still taken."""
    tool = function_tool(add)
    assert await tool.answer('{"a": 1, "b": 2}') == ("3", False)
    assert await tool.answer(b'{"a": 2, "b": 2}') == ("4", False)  # type: ignore[arg-type]
    text, is_error = await tool.answer("")
    assert is_error and "missing required field `a`" in text
    assert await tool.answer(None) == (text, True)  # type: ignore[arg-type]
    assert isinstance(tool.decode_arguments('{"a": 1, "b": 1}'), msgspec.Struct)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("served_in_block", [True, False], ids=["in-block", "after-block"])
async def test_a_stream_its_block_closed_is_a_500_not_a_200_cut_short(served_in_block: bool):
    """An endpoint that serves a stream from ``async with ...stream(...)`` (the block closes
    it before the response is sent) gets a 500 with the RuntimeError in the server's log. It
    was a 200 whose body broke off: a browser's EventSource reconnects after that, asking the
    model again each time, and the page never learns why."""
    import aiohttp
    import uvicorn
    from fastapi import FastAPI
    from starlette.responses import StreamingResponse

    from routmy_async import AsyncRoutmy
    from routmy_async.testing import MockRoutmy, assert_no_open_connections

    async with MockRoutmy() as mock:
        client = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url)
        app = FastAPI()

        @app.get("/answer")
        async def answer() -> StreamingResponse:
            ask = [{"role": "user", "content": "hi"}]
            async with client.chat.completions.stream(model="p/m", messages=ask) as stream:
                if served_in_block:
                    return stream.to_streaming_response()
            return stream.to_streaming_response()

        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_config=None)
        )
        # A handler of our own: an earlier uvicorn in this process may have turned its
        # loggers' propagation off, which caplog depends on.
        handler = _Records()
        uvicorn_errors = logging.getLogger("uvicorn.error")
        uvicorn_errors.addHandler(handler)
        task = asyncio.create_task(server.serve())
        try:
            for _ in range(250):
                if server.started:
                    break
                await asyncio.sleep(0.02)
            port = server.servers[0].sockets[0].getsockname()[1]
            async with aiohttp.ClientSession() as browser:
                async with browser.get(f"http://127.0.0.1:{port}/answer") as page:
                    status, body = page.status, await page.read()
        finally:
            server.should_exit = True
            await task
            await client.close()
            uvicorn_errors.removeHandler(handler)
        assert (status, body) == (500, b"Internal Server Error")
        errors = [record.exc_info[1] for record in handler.records if record.exc_info]
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
        assert "was it opened with `async with" in str(errors[0])
        assert_no_open_connections(client)


async def test_redact_knows_the_environments_proxy_before_the_first_request(
    monkeypatch: pytest.MonkeyPatch,
):
    """``client.redact`` promises every secret the client knows, proxy credentials included:
    those of an ``HTTPS_PROXY`` it will use are hidden from its first line on, not only once
    a request has made the pool (which is when the environment's proxy used to be read)."""
    from routmy_async import AsyncRoutmy

    monkeypatch.setenv("HTTPS_PROXY", "http://deploy:env-proxy-pass-77@127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "")
    async with AsyncRoutmy(api_key="sk-main-123456", base_url="https://example.invalid/v1") as c:
        text = c.redact("env-proxy-pass-77 / deploy:env-proxy-pass-77 / sk-main-123456")
    assert text == "[REDACTED] / [REDACTED] / [REDACTED]"
    async with AsyncRoutmy(
        api_key="sk-main-123456", base_url="https://example.invalid/v1", trust_env=False
    ) as c:
        # trust_env=False: the environment's proxy is not this client's, nor its secret.
        assert c.redact("env-proxy-pass-77") == "env-proxy-pass-77"


@pytest.mark.parametrize("given", [b"sk-main-123456", ValueError("sk-main-123456"), None])
async def test_redact_refuses_what_is_not_text(given: Any):
    """Bytes or an exception given to ``client.redact`` raise a TypeError naming the type,
    not a riddle from deep inside ("argument of type 'ValueError' is not iterable")."""
    from routmy_async import AsyncRoutmy

    async with AsyncRoutmy(api_key="sk-main-123456", base_url="http://127.0.0.1:9/v1") as c:
        with pytest.raises(
            TypeError, match=f"redact\\(\\) takes a str, not {type(given).__name__}"
        ):
            c.redact(given)
