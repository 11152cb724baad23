"""MockRoutmy itself: defaults, scripting, faults, records and the standalone server."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from typing import Any

import aiohttp
import pytest

from routmy_async import (
    APIConnectionError,
    AsyncRoutmy,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
)
from routmy_async.testing import MockRoutmy, Reply
from tests.conftest import eventually

ASK = [{"role": "user", "content": "ping"}]
ASK_FAIL = [{"role": "user", "content": "FAIL"}]


async def test_requires_the_key(mock):
    """No key or a wrong key: 401 with the service's error body."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{mock.base_url}/chat/completions", json={}) as response:
            body = await response.json()
    assert response.status == 401
    assert body == {
        "error": {
            "message": "Invalid API key",
            "type": "authentication_error",
            "code": "Unauthorized",
        }
    }


async def test_records_requests_with_the_key_redacted(client, mock):
    """Every request is recorded: method, path, redacted headers, JSON body."""
    await client.chat.completions.create(model="mock/echo", messages=ASK, metadata={"k": "v"})
    record = mock.requests[0]
    assert (record.method, record.path) == ("POST", "/v1/chat/completions")
    assert record.headers["Authorization"] == "Bearer [REDACTED]"
    assert record.json["metadata"] == {"k": "v"} and json.loads(record.body) == record.json


async def test_json_object_and_reasoning_defaults(client):
    """json_object answers JSON; reasoning adds reasoning and details."""
    completion = await client.chat.completions.create(
        model="mock/echo",
        messages=ASK,
        response_format={"type": "json_object"},
        reasoning={"effort": "high"},
    )
    message = completion.choices[0].message
    assert json.loads(message.content or "") == {"echo": "ping"}
    assert message.reasoning and message.reasoning_details


async def test_strict_models_and_unknown_routes():
    """strict_models answers 404 model_not_found; unknown paths 404, wrong methods 405."""
    async with MockRoutmy(strict_models=True) as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            with pytest.raises(NotFoundError) as info:
                await client.chat.completions.create(model="nope/x", messages=ASK)
            assert info.value.code == "model_not_found"
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{mock.base_url}/nowhere") as response:
                assert response.status == 404
            async with session.get(f"{mock.base_url}/chat/completions") as response:
                assert response.status == 405


async def test_bad_body_is_a_400(mock):
    """A body without messages is rejected like the service does."""
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{mock.base_url}/chat/completions",
            data=b"{not json",
            headers={"Authorization": f"Bearer {mock.api_key}"},
        ) as response:
            assert response.status == 400
        async with session.post(
            f"{mock.base_url}/embeddings",
            json={"model": "m"},
            headers={"Authorization": f"Bearer {mock.api_key}"},
        ) as response:
            assert response.status == 400
        async with session.post(
            f"{mock.base_url}/images/generations",
            json={"model": "m"},
            headers={"Authorization": f"Bearer {mock.api_key}"},
        ) as response:
            assert response.status == 400


async def test_raw_bytes_reply(client, mock):
    """reply_raw writes bytes straight to the socket (here a truncated answer)."""
    mock.reply_raw(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"id":')
    with pytest.raises(APIConnectionError):
        await client.chat.completions.create(model="mock/echo", messages=ASK)


async def test_scripted_replies_are_path_specific(client, mock):
    """A reply queued for a path waits for a request to that path."""
    mock.reply_error(401, "nope", path="/models")
    completion = await client.chat.completions.create(model="mock/echo", messages=ASK)
    assert completion.choices[0].message.content == "ping"
    with pytest.raises(AuthenticationError):
        await client.models.list()
    mock.reply_error(500, "x")
    mock.clear()
    await client.models.list()
    assert len(mock.requests) == 1


async def test_a_responder_answers_by_the_request(client, mock):
    """reply_with answers each request by its content, concurrent ones included; None is the
    default answer, a queued reply still comes first, and reply_with(None) removes it."""
    refused = Reply(
        status=400,
        headers={"Content-Type": "application/json"},
        body=b'{"error": {"message": "row refused"}}',
    )
    mock.reply_with(lambda request: refused if "FAIL" in str(request.json["messages"]) else None)

    async def ask(text: str) -> str:
        answer = await client.chat.completions.create(
            model="mock/echo", messages=[{"role": "user", "content": text}], max_retries=0
        )
        return str(answer.choices[0].message.content)

    outcomes = await asyncio.gather(ask("a"), ask("FAIL b"), ask("c"), return_exceptions=True)
    assert outcomes[0] == "a" and outcomes[2] == "c"
    assert isinstance(outcomes[1], BadRequestError) and outcomes[1].message == "row refused"
    mock.reply_json({"id": "x", "object": "chat.completion", "model": "m", "choices": []})
    queued = await client.chat.completions.create(model="mock/echo", messages=ASK_FAIL)
    assert queued.choices == []
    mock.reply_with(None)
    assert await ask("FAIL again") == "FAIL again"


async def test_a_responders_fault_only_reply_shapes_each_default_answer(client, mock):
    """One faults-only Reply handed out for every request shapes each default answer anew
    (the mock fills a copy, never the responder's Reply)."""
    shaped = Reply(headers={"x-request-id": "req-shaped"})
    mock.reply_with(lambda request: shaped)
    for text in ("one", "two"):
        answer = await client.chat.completions.create(
            model="mock/echo", messages=[{"role": "user", "content": text}]
        )
        assert answer.choices[0].message.content == text
        assert answer.request_id == "req-shaped"
    assert not shaped.scripted


async def test_open_connections_counts_what_clients_keep_open(mock):
    """Kept-alive connections count until their client closes them."""
    assert mock.open_connections == 0
    first = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as second:
        await first.models.list()
        await second.models.list()
        assert mock.open_connections == 2
        await first.close()
        assert await eventually(lambda: mock.open_connections == 1)
    assert await eventually(lambda: mock.open_connections == 0)


async def test_slow_chunks_and_comments(client, mock):
    """chunk_delay slows the stream; comment_interval adds keep-alive comments."""
    mock.reply_default(chunk_delay=0.01, comment_interval=0.001)
    async with client.chat.completions.stream(model="mock/echo", messages=ASK) as stream:
        final = await stream.until_done()
    assert final.choices[0].message.content == "ping"
    mock.reply_default(chunk_delay=0.01, comment_interval=0.001)
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{mock.base_url}/chat/completions",
            json={"model": "mock/echo", "messages": ASK, "stream": True},
            headers={"Authorization": f"Bearer {mock.api_key}"},
        ) as answer,
    ):
        body = await answer.read()
    assert sum(line.startswith(b":") for line in body.splitlines()) > 3


async def test_base_url_before_start_is_an_error():
    """base_url of an unstarted mock raises."""
    with pytest.raises(RuntimeError, match="not started"):
        _ = MockRoutmy().base_url


async def test_pytest_fixture_is_registered(routmy_mock):
    """The shipped routmy_mock fixture gives a started mock."""
    async with AsyncRoutmy(api_key=routmy_mock.api_key, base_url=routmy_mock.base_url) as client:
        models = await client.models.list()
    assert "mock/echo" in models.ids()


async def test_standalone_server_runs():
    """python -m routmy_async.testing serves until told to stop."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "routmy_async.testing",
        "--port",
        str(port),
        "--seconds",
        "20",
        stdout=subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 20)
        assert f"127.0.0.1:{port}/v1" in line.decode()
        async with AsyncRoutmy(
            api_key="sk-mock-key", base_url=f"http://127.0.0.1:{port}/v1"
        ) as client:
            models = await client.models.list()
        assert models.data
    finally:
        process.terminate()
        await process.wait()


async def _wait_until(predicate, seconds: float = 5.0) -> bool:
    """Poll ``predicate`` until it holds (True) or ``seconds`` run out (False)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/nowhere"])
async def test_in_flight_returns_to_zero_when_the_body_never_arrives(mock, path, caplog):
    """A client that sends half a body and hangs up leaves no request counted in flight."""
    caplog.set_level(logging.ERROR, logger="aiohttp")
    _, writer = await asyncio.open_connection("127.0.0.1", mock.port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: mock\r\n"
        f"Authorization: Bearer {mock.api_key}\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n".encode()
        + b'{"model": "mock/echo", "mess'
    )
    await writer.drain()
    assert await _wait_until(lambda: mock.in_flight == 1)
    writer.close()
    await writer.wait_closed()
    assert await _wait_until(lambda: mock.in_flight == 0), "in_flight leaked"
    assert mock.disconnects == 1 and mock.requests == []
    assert not caplog.records, "the mock logged an error for a client that went away"
    # The mock still serves the next client.
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        completion = await client.chat.completions.create(model="mock/echo", messages=ASK)
    assert completion.choices[0].message.content == "ping"
    assert mock.in_flight == 0


async def test_models_requires_the_key(mock):
    """GET /models with a wrong or missing key: 401 with the service's error body."""
    async with aiohttp.ClientSession() as session:
        for headers in ({"Authorization": "Bearer sk-wrong"}, {}):
            async with session.get(f"{mock.base_url}/models", headers=headers) as response:
                assert response.status == 401
                assert (await response.json())["error"]["type"] == "authentication_error"
        async with session.get(
            f"{mock.base_url}/models", headers={"Authorization": f"Bearer {mock.api_key}"}
        ) as response:
            assert response.status == 200
    async with AsyncRoutmy(api_key="sk-wrong", base_url=mock.base_url, max_retries=0) as client:
        with pytest.raises(AuthenticationError):
            await client.models.list()


async def test_fault_only_reply_for_models_shapes_the_default_answer(client, mock):
    """reply_default(path="/models", ...) delivers the models list with the faults applied."""
    mock.reply_default(path="/models", reset_after=10)
    with pytest.raises(APIConnectionError):
        await client.models.list()

    mock.reply_default(path="/models", stall_before_headers=0.3)
    started = asyncio.get_running_loop().time()
    models = await client.models.list()
    assert asyncio.get_running_loop().time() - started >= 0.3
    assert "mock/echo" in models.ids()

    mock.reply_default(path="/models", status=503)
    with pytest.raises(InternalServerError) as info:
        await client.models.list()
    assert info.value.status_code == 503 and '"mock/echo"' in json.dumps(info.value.body)

    mock.reply_default(path="/models", write_size=7, chunk_delay=0.001)
    assert (await client.models.list()).ids() == models.ids()


def _has_ipv6_loopback() -> bool:
    import socket

    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
async def test_ipv6_host_gives_a_usable_base_url():
    """MockRoutmy(host="::1") gives http://[::1]:PORT/v1 and a client can talk to it."""
    async with MockRoutmy(host="::1") as mock:
        assert mock.base_url == f"http://[::1]:{mock.port}/v1"
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            completion = await client.chat.completions.create(model="mock/echo", messages=ASK)
            models = await client.models.list()
    assert completion.choices[0].message.content == "ping" and models.data


async def test_api_key_none_accepts_any_key(monkeypatch):
    """MockRoutmy(api_key=None) takes any non-empty Bearer key, e.g. the one in the env."""
    monkeypatch.setenv("ROUTMY_API_KEY", "sk-whatever-my-shell-has")
    async with MockRoutmy(api_key=None) as mock:
        assert mock.any_key and mock.api_key == "sk-mock-key"  # still a key it accepts
        async with AsyncRoutmy(base_url=mock.base_url) as client:
            completion = await client.chat.completions.create(model="mock/echo", messages=ASK)
            assert "mock/echo" in (await client.models.list()).ids()
        assert completion.choices[0].message.content == "ping"
        async with AsyncRoutmy(api_key="sk-other", base_url=mock.base_url) as client:
            await client.embeddings.create(model="mock/embed", input="x")
        # No Authorization header, or an empty Bearer token, is still refused.
        async with aiohttp.ClientSession() as session:
            for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "sk-x"}):
                async with session.get(f"{mock.base_url}/models", headers=headers) as response:
                    assert response.status == 401
        assert all(r.headers.get("Authorization") != "Bearer sk-other" for r in mock.requests)


async def test_default_key_is_still_checked(mock):
    """The default mock keeps requiring its own key: any other key is a 401."""
    assert mock.api_key == "sk-mock-key" and not mock.any_key
    async with AsyncRoutmy(api_key="sk-other", base_url=mock.base_url, max_retries=0) as client:
        with pytest.raises(AuthenticationError):
            await client.chat.completions.create(model="mock/echo", messages=ASK)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        await client.chat.completions.create(model="mock/echo", messages=ASK)


async def _raw_json(mock: MockRoutmy, method: str, path: str, body: object = None) -> Any:
    """What the mock answers on the wire, read with a bare aiohttp session (no SDK decode)."""
    headers = {"Authorization": f"Bearer {mock.api_key}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, mock.base_url + path, json=body, headers=headers) as response,
    ):
        if response.content_type == "text/event-stream":
            frames = (await response.read()).decode().split("\n\n")
            return [
                json.loads(frame[len("data: ") :])
                for frame in frames
                if frame.startswith("data: {")
            ]
        return await response.json()


async def test_the_default_mock_answers_as_routmy_documents(mock):
    """rout.my sends no usage.cost, no models pricing, and keeps no Responses state: the
    default mock does the same, so features built on those fields are tested as users meet
    them."""
    chat = await _raw_json(
        mock, "POST", "/chat/completions", {"model": "mock/echo", "messages": ASK}
    )
    assert chat["usage"]["total_tokens"] > 0 and "cost" not in chat["usage"]
    chunks = await _raw_json(
        mock, "POST", "/chat/completions", {"model": "mock/echo", "messages": ASK, "stream": True}
    )
    usages = [chunk["usage"] for chunk in chunks if chunk.get("usage")]
    assert usages and all("cost" not in usage for usage in usages)
    vectors = await _raw_json(mock, "POST", "/embeddings", {"model": "mock/embed", "input": "a"})
    assert "cost" not in vectors["usage"]
    models = await _raw_json(mock, "GET", "/models")
    assert models["data"] and all(
        set(item) == {"id", "object", "created", "owned_by", "token_multiplier", "is_available"}
        for item in models["data"]
    )
    first = await _raw_json(mock, "POST", "/responses", {"model": "mock/echo", "input": "hello"})
    # previous_response_id is accepted and ignored: an unknown id is no error, a known one
    # brings back nothing of the earlier conversation.
    again = await _raw_json(
        mock, "POST", "/responses", {"model": "mock/echo", "previous_response_id": "resp_nope"}
    )
    assert again["status"] == "completed"
    follow = await _raw_json(
        mock,
        "POST",
        "/responses",
        {"model": "mock/echo", "input": "and now?", "previous_response_id": first["id"]},
    )
    assert "hello" not in json.dumps(follow["output"])
    assert "cost" not in first["usage"] and "cost" not in follow["usage"]


async def test_the_openrouter_flavor_reports_cost_prices_and_stores_responses():
    """What other routers do stays available, asked for by name."""
    async with MockRoutmy(flavor="openrouter") as mock:
        chat = await _raw_json(
            mock, "POST", "/chat/completions", {"model": "mock/echo", "messages": ASK}
        )
        assert chat["usage"]["cost"] > 0
        models = await _raw_json(mock, "GET", "/models")
        assert any("pricing" in item for item in models["data"])
        first = await _raw_json(mock, "POST", "/responses", {"model": "mock/echo", "input": "hi"})
        again = await _raw_json(
            mock, "POST", "/responses", {"model": "mock/echo", "previous_response_id": first["id"]}
        )
        assert "hi" in json.dumps(again["output"])
        # /v1/responses reports its cost too, in this flavor only.
        usage = first["usage"]
        assert usage["cost"] == pytest.approx(usage["total_tokens"] * 1e-6)


def test_an_unknown_flavor_is_refused():
    with pytest.raises(ValueError, match="flavor must be one of 'routmy', 'openrouter'"):
        MockRoutmy(flavor="openai")  # type: ignore[arg-type]
