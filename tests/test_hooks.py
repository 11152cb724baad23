"""Hooks observe every attempt, retry, error and stream end; raw requests; ROUTMY_LOG."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest

from routmy_async import (
    APIConnectionError,
    APIResponseValidationError,
    APIStreamError,
    AsyncRoutmy,
    BadRequestError,
    Call,
    Hooks,
    NotFoundError,
    StreamSummary,
)
from routmy_async.testing import MockRoutmy

MESSAGES = [{"role": "user", "content": "hello there"}]


class Recorder(Hooks):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.calls: list[Call] = []

    def on_request(
        self, call: Call, *, attempt: int, method: str, url: str, headers: Mapping[str, str]
    ) -> None:
        self.calls.append(call)
        self.events.append(("request", (attempt, method, url, dict(headers))))

    def on_response(
        self, call: Call, *, attempt: int, status: int, headers: Mapping[str, str], elapsed: float
    ) -> None:
        assert elapsed >= 0
        self.events.append(("response", (attempt, status)))

    def on_retry(
        self, call: Call, *, attempt: int, reason: str, wait: float, error: BaseException
    ) -> None:
        self.events.append(("retry", (attempt, reason, wait, type(error).__name__)))

    def on_error(self, call: Call, *, error: BaseException, elapsed: float) -> None:
        self.events.append(("error", type(error).__name__))

    def on_success(self, call: Call, *, result: Any, elapsed: float) -> None:
        self.events.append(("success", type(result).__name__))

    def on_stream_end(self, call: Call, summary: StreamSummary) -> None:
        self.events.append(("stream_end", summary))

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.events]


async def fail_a_stream_after_one_chunk(mock: MockRoutmy, client: AsyncRoutmy) -> None:
    """Open a chat stream whose second frame is an error frame, and read it to that error."""
    mock.reply_stream(
        [
            {"choices": [{"index": 0, "delta": {"content": "a"}}]},
            {"error": {"message": "upstream", "code": 502}},
        ],
        done=False,
    )
    with pytest.raises(APIStreamError):
        async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as s:
            await s.until_done()


async def test_a_plain_call_is_seen_request_response_success(mock):
    recorder = Recorder()
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[recorder]
    ) as client:
        await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert recorder.kinds() == ["request", "response", "success"]
    attempt, method, url, headers = recorder.events[0][1]
    assert (attempt, method) == (0, "POST") and url.endswith("/v1/chat/completions")
    assert headers["Authorization"] == "[REDACTED]"
    assert mock.api_key not in repr(recorder.events)
    call = recorder.calls[0]
    assert call.operation == "chat" and call.model == "mock/echo" and not call.stream
    assert call.server_address == "127.0.0.1" and call.body is not None
    assert recorder.events[1][1] == (0, 200)


async def test_retries_and_failures_are_seen(mock):
    recorder = Recorder()
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[recorder], max_retries=1
    ) as client:
        mock.reply_error(503, "busy", headers={"retry-after-ms": "1"})
        await client.models.list()
        assert recorder.kinds() == [
            "request",
            "response",
            "retry",
            "request",
            "response",
            "success",
        ]
        assert recorder.events[2][1][:2] == (0, "status 503")
        recorder.events.clear()
        mock.reply_error(400, "bad")
        with pytest.raises(BadRequestError):
            await client.embeddings.create(model="mock/embed", input="x")
        assert recorder.kinds() == ["request", "response", "error"]
        assert recorder.calls[-1].operation == "embeddings"


async def test_stream_ends_are_seen_with_their_outcome(mock):
    recorder = Recorder()
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[recorder], max_retries=0
    ) as client:
        async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as s:
            await s.until_done()
        mock.reply_default(chunk_delay=0.05)  # the answer is still arriving when we leave
        async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as s:
            async for _ in s:
                break
        await fail_a_stream_after_one_chunk(mock, client)
        mock.reply_default(reset_after=120)
        with pytest.raises(Exception, match=r"connection|stream"):
            async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as s:
                await s.until_done()
    ends = [summary for kind, summary in recorder.events if kind == "stream_end"]
    assert [end.outcome for end in ends] == ["done", "cancelled", "error", "broken"]
    done = ends[0]
    assert done.chunks > 1 and done.time_to_first_event is not None
    assert 0 <= done.time_to_first_event <= done.duration
    assert done.usage is not None and done.result is not None
    assert done.result.choices[0].message.content == "hello there"
    assert isinstance(ends[2].error, APIStreamError)


async def test_a_hook_that_raises_is_logged_once_and_never_breaks_a_call(mock, caplog):
    class Broken(Hooks):
        def on_request(self, call: Call, **kwargs: Any) -> None:
            raise RuntimeError("hook bug")

    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[Broken()]
    ) as client:
        with caplog.at_level(logging.ERROR, logger="routmy_async"):
            for _ in range(3):
                await client.models.list()
    reports = [r for r in caplog.records if "hook" in r.getMessage()]
    assert len(reports) == 1 and "Broken.on_request" in reports[0].getMessage()


async def test_hooks_are_inherited_and_global_hooks_apply_to_every_client(mock):
    from routmy_async._hooks import set_global_hooks

    mine, everyone = Recorder(), Recorder()
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, hooks=[mine]) as client:
        derived = client.with_options(timeout=5)
        assert derived.hooks == (mine,)
        set_global_hooks([everyone])
        try:
            await derived.models.list()
            async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as plain:
                await plain.models.list()
        finally:
            set_global_hooks([])
    assert mine.kinds() == ["request", "response", "success"]
    assert everyone.kinds() == ["request", "response", "success"] * 2


def test_hooks_must_be_hooks():
    with pytest.raises(TypeError, match="Hooks"):
        AsyncRoutmy(api_key="k", hooks=[object()])  # type: ignore[list-item]


# -- raw requests ------------------------------------------------------------------------------


class ModelRow(msgspec.Struct):
    id: str


class ModelRows(msgspec.Struct):
    data: list[ModelRow]


async def test_raw_requests_reach_any_path_with_auth_retries_and_types(mock, client):
    listing = await client.get("/models")
    assert isinstance(listing, dict) and listing["data"]
    typed = await client.get("/models", cast_to=ModelRows)
    assert isinstance(typed, ModelRows) and typed.data[0].id
    answer = await client.post(
        "/chat/completions", body={"model": "mock/echo", "messages": MESSAGES}
    )
    assert answer["choices"][0]["message"]["content"] == "hello there"
    assert mock.requests[-1].headers["Authorization"] == "Bearer [REDACTED]"
    with pytest.raises(NotFoundError, match="No route /v1/credits"):
        await client.get("/credits")
    for bad in (
        "models",
        "https://elsewhere.example/x",
        "//elsewhere.example/x",
        "/../admin",  # out of the base URL's path (a gateway's other services)
        "/%2e%2e/%2E%2E/etc",
        "/models/./x",
    ):
        with pytest.raises(ValueError, match="path"):
            await client.get(bad)
    sent = len(mock.requests)
    # Many distinct paths (an id in each) keep the client's URL cache bounded.
    for number in range(300):
        with pytest.raises(NotFoundError):
            await client.get(f"/items/{number}", max_retries=0)
    assert len(client._pipeline._urls) <= 256
    assert len(mock.requests) == sent + 300
    with pytest.raises(TypeError, match="unexpected"):
        await client.get("/models", nope=1)


def test_routmy_log_switches_logging_on_with_the_key_redacted():
    code = (
        "import asyncio\n"
        "from routmy_async import AsyncRoutmy\n"
        "from routmy_async.testing import MockRoutmy\n"
        "async def main():\n"
        "    async with MockRoutmy() as mock:\n"
        "        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as c:\n"
        "            await c.models.list()\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "ROUTMY_LOG": "debug"}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "GET /v1/models -> 200" in done.stderr
    assert "sk-mock-key" not in done.stderr
    quiet = subprocess.run(
        [sys.executable, "-c", code],
        env={k: v for k, v in os.environ.items() if k != "ROUTMY_LOG"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "GET /v1/models" not in quiet.stderr


async def test_mock_with_any_key_for_hooks(mock):
    async with MockRoutmy(api_key=None) as other:
        async with AsyncRoutmy(api_key="sk-any-1234", base_url=other.base_url) as c:
            assert await c.get("/models")


# -- response headers and rate limits -------------------------------------------------------

LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "100",
    "x-ratelimit-remaining-requests": "42",
    "x-ratelimit-reset-requests": "1m30s",
    "x-ratelimit-limit-tokens": "10000",
    "x-ratelimit-remaining-tokens": "9000",
    "x-ratelimit-reset-tokens": "250ms",
}
COMPLETION = {
    "id": "c",
    "object": "chat.completion",
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}],
}


async def test_every_result_exposes_status_headers_and_parsed_rate_limits(mock, client):
    mock.reply_json(COMPLETION, headers={**LIMIT_HEADERS, "x-custom": "yes"})
    completion = await client.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.status_code == 200 and completion.headers["X-Custom"] == "yes"
    limits = completion.rate_limits
    assert (limits.limit_requests, limits.remaining_requests) == (100, 42)
    assert limits.reset_requests == 90 and limits.reset_tokens == 0.25
    assert (limits.limit_tokens, limits.remaining_tokens) == (10000, 9000)
    for result in (
        await client.models.list(),
        await client.embeddings.create(model="mock/embed", input="x"),
        await client.images.generate(model="mock/image", prompt="x"),
    ):
        assert result.status_code == 200 and "x-request-id" in result.headers
        assert result.rate_limits.remaining_requests is None
    mock.reply_stream(
        [{"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "stop"}]}],
        headers=LIMIT_HEADERS,
    )
    async with client.chat.completions.stream(model="m", messages=MESSAGES) as stream:
        final = await stream.until_done()
        assert stream.status_code == 200 and stream.rate_limits.remaining_tokens == 9000
    assert final.headers["x-ratelimit-limit-requests"] == "100"


async def test_a_spent_request_quota_pauses_new_starts_until_its_reset(mock, client):
    mock.reply_json(
        COMPLETION,
        headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "300ms"},
    )
    await client.chat.completions.create(model="m", messages=MESSAGES)
    assert 0.2 < client.rate_limit.pause_remaining() <= 0.3
    await client.models.list()
    assert mock.request_times[1] - mock.request_times[0] >= 0.28


def test_rate_limit_header_values():
    from routmy_async._http._ratelimit import parse_rate_limit_headers

    parsed = parse_rate_limit_headers(
        {
            "x-ratelimit-reset-requests": "6m0s",
            "x-ratelimit-reset-tokens": "bogus",
            "x-ratelimit-remaining-requests": "n/a",
        }
    )
    assert parsed.reset_requests == 360 and parsed.reset_tokens is None
    assert parsed.remaining_requests is None
    assert parse_rate_limit_headers({"x-ratelimit-reset-requests": "1.5"}).reset_requests == 1.5


async def test_what_hooks_receive_never_carries_the_key_and_every_call_ends_once():
    key = "sk-hooked-0123456789"
    recorder = Recorder()
    async with MockRoutmy(api_key=None) as mock:
        async with AsyncRoutmy(
            api_key=key, base_url=mock.base_url, hooks=[recorder], max_retries=1
        ) as client:
            mock.reply_error(503, f"echo {key}", headers={"retry-after-ms": "1"})
            await client.models.list()

            class Order(msgspec.Struct):
                id: int

            mock.reply_json(
                {
                    "id": "c",
                    "object": "chat.completion",
                    "model": "m",
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": "not json"}}
                    ],
                }
            )
            with pytest.raises(Exception, match="not valid JSON"):
                await client.chat.completions.parse(
                    model="m", messages=MESSAGES, response_format=Order
                )
    assert key not in repr(recorder.events)
    retry = next(value for kind, value in recorder.events if kind == "retry")
    assert retry[1] == "status 503"
    assert recorder.kinds().count("error") == 1  # the failed parse ended its call


async def test_a_final_completion_after_an_error_frame_raises_it_again(mock, client):
    mock.reply_stream(
        [
            {"choices": [{"index": 0, "delta": {"content": "partial "}}]},
            {"error": {"message": "upstream died", "code": 502}},
        ]
    )  # [DONE] follows the error frame, as some routers send it
    async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as stream:
        with pytest.raises(APIStreamError):
            async for _ in stream:
                pass
        with pytest.raises(APIStreamError, match="upstream died"):
            await stream.get_final_completion()


async def test_only_the_methods_a_hook_overrides_are_called(mock, monkeypatch):
    """A hook that only wants successes gets them; the work for other events is skipped (no
    redacted copy of the headers when nobody listens to on_request)."""
    from routmy_async._http import _transport

    successes: list[str] = []

    class OnlySuccess(Hooks):
        def on_success(self, call: Call, *, result: Any, elapsed: float) -> None:
            successes.append(call.operation)

    copies: list[int] = []
    real_safe_headers = _transport.Transport.safe_headers

    def counting(self: Any, headers: Mapping[str, str]) -> dict[str, str]:
        copies.append(1)
        return real_safe_headers(self, headers)

    monkeypatch.setattr(_transport.Transport, "safe_headers", counting)
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[OnlySuccess()]
    ) as client:
        await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        await client.models.list()
    assert successes == ["chat", "models"]
    assert copies == []  # no hook listens to on_request

    recorder = Recorder()
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[recorder]
    ) as client:
        await client.models.list()
    assert copies == [1]
    assert recorder.kinds() == ["request", "response", "success"]


async def test_do_nothing_hooks_make_no_call_and_instance_methods_count(mock, monkeypatch):
    from routmy_async import _request

    made: list[Call] = []

    class CountedCall(Call):
        def __post_init__(self) -> None:  # a msgspec Struct: called by its __init__
            made.append(self)

    monkeypatch.setattr(_request, "Call", CountedCall)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, hooks=[Hooks()]) as client:
        assert len(client.hooks) == 1  # the client lists the hook it was given
        await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert made == []  # yet nothing to observe: no Call is built

    recorder = Recorder()
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[recorder]
    ) as client:
        await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert len(made) == 1  # the count moves when a hook does listen

    seen: list[int] = []
    hook = Hooks()
    hook.on_response = lambda call, **kw: seen.append(kw["status"])  # type: ignore[method-assign]
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, hooks=[hook]) as client:
        await client.models.list()
    assert seen == [200]


async def test_a_call_ends_once_whether_its_stream_failed_before_or_after_it_opened(mock):
    """A stream that never opened (a 4xx, an HTML page instead of an event stream, a refused
    connection) ends in ``on_error`` alone; one that opened ends in ``on_stream_end``, followed
    by ``on_error`` only when it failed, so ``on_error`` counts every failed call once and
    ``on_stream_end`` sees every started stream once."""
    recorder = Recorder()

    def ends() -> list[tuple[str, Any]]:
        seen = [(kind, value) for kind, value in recorder.events if kind in ("error", "stream_end")]
        recorder.events.clear()
        return [(k, v.outcome if isinstance(v, StreamSummary) else v) for k, v in seen]

    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[recorder], max_retries=0
    ) as client:
        mock.reply_error(400, "bad")
        with pytest.raises(BadRequestError):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES, stream=True)
        assert ends() == [("error", "BadRequestError")]

        mock.reply_json(b"<html>sign in</html>", headers={"Content-Type": "text/html"})
        with pytest.raises(APIResponseValidationError, match="text/html"):
            async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES):
                pass
        assert ends() == [("error", "APIResponseValidationError")]

        mock.reply_json(b"<html>sign in</html>", headers={"Content-Type": "text/html"})
        body = {"model": "mock/echo", "messages": MESSAGES, "stream": True}
        with pytest.raises(APIResponseValidationError, match="text/html"):
            async with client.stream_request("POST", "/chat/completions", body=body):
                pass
        assert ends() == [("error", "APIResponseValidationError")]

        await fail_a_stream_after_one_chunk(mock, client)
        assert ends() == [("stream_end", "error"), ("error", "APIStreamError")]

        mock.reply_default(chunk_delay=0.05)
        async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as s:
            async for _ in s:
                break
        assert ends() == [("stream_end", "cancelled")]  # stopping early is no failure

        async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as s:
            await s.until_done()
        assert ends() == [("stream_end", "done")]

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with AsyncRoutmy(
        api_key=mock.api_key,
        base_url=f"http://127.0.0.1:{port}/v1",
        hooks=[recorder],
        max_retries=0,
    ) as client:
        with pytest.raises(APIConnectionError):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES, stream=True)
    assert ends() == [("error", "APIConnectionError")]
