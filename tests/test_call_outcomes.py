"""Every endpoint x every way a call can end: one report to the hooks, the right error, the
token reservation settled once, and the key nowhere.

A characterization table: it pins what the call paths do today so that folding them into
one pipeline cannot change it unnoticed. Each row runs against a real MockRoutmy on
127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from routmy_async import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APIStreamError,
    AsyncRoutmy,
    BadRequestError,
    Hooks,
    RateLimit,
)
from routmy_async.testing import MockRoutmy

SECRET = "sk-outcome-secret-0123456789"
ASK = [{"role": "user", "content": "hello there"}]


class Recorder(Hooks):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_error(self, call: Any, *, error: BaseException, elapsed: float) -> None:
        self.events.append(("error", error))

    def on_success(self, call: Any, *, result: Any, elapsed: float) -> None:
        self.events.append(("success", result))

    def on_stream_end(self, call: Any, summary: Any) -> None:
        self.events.append(("stream_end", summary.outcome))


class SettlementLog(RateLimit):
    """A generous token budget that records each settlement (estimate, actual)."""

    def __init__(self) -> None:
        super().__init__(tokens_per_minute=10_000_000)
        self.settled: list[tuple[int, int]] = []

    def correct(self, estimate: int, actual: int) -> None:
        self.settled.append((estimate, actual))
        super().correct(estimate, actual)


async def _drain(stream: Any) -> None:
    async with stream:
        async for _ in stream:
            pass


Endpoint = Callable[[AsyncRoutmy], Awaitable[Any]]
ENDPOINTS: dict[str, tuple[Endpoint, bool]] = {
    # name: (the call, whether it streams)
    "chat": (lambda c: c.chat.completions.create(model="mock/echo", messages=ASK), False),
    "chat_stream": (
        lambda c: _open_then_drain(
            c.chat.completions.create(model="mock/echo", messages=ASK, stream=True)
        ),
        True,
    ),
    "responses": (lambda c: c.responses.create(model="mock/echo", input="hello there"), False),
    "responses_stream": (
        lambda c: _open_then_drain(
            c.responses.create(model="mock/echo", input="hello there", stream=True)
        ),
        True,
    ),
    "embeddings": (lambda c: c.embeddings.create(model="mock/embed", input="hello"), False),
    "images": (lambda c: c.images.generate(model="mock/image", prompt="a cat"), False),
    "models": (lambda c: c.models.list(), False),
    "raw": (
        lambda c: c.post("/chat/completions", body={"model": "mock/echo", "messages": ASK}),
        False,
    ),
    "raw_stream": (
        lambda c: _open_then_drain(
            c.post(
                "/chat/completions",
                body={"model": "mock/echo", "messages": ASK, "stream": True},
                stream=True,
            )
        ),
        True,
    ),
}
ESTIMATED = {"chat", "chat_stream", "responses", "responses_stream", "embeddings"}


async def _open_then_drain(opening: Awaitable[Any]) -> None:
    await _drain(await opening)


@dataclass
class Outcome:
    script: Callable[[MockRoutmy, str], object]  # scripts the mock for (endpoint name)
    error: type[BaseException] | None  # None: the call succeeds
    # What the hooks hear, for a whole answer and for a stream.
    whole: list[str]
    streamed: list[str]


def _error_frame(mock: MockRoutmy, name: str) -> None:
    if name == "responses_stream":
        mock.reply_stream(
            [{"type": "error", "code": "server_error", "message": f"upstream died {SECRET}"}],
            named=True,
            done=False,
        )
    else:
        mock.reply_stream([{"error": {"message": f"upstream died {SECRET}", "code": 502}}])


def _bad_frame(mock: MockRoutmy, name: str) -> None:
    mock.reply_stream([b"data: {not json\n\n"], done=name != "responses_stream")


OUTCOMES: dict[str, Outcome] = {
    "ok": Outcome(lambda m, n: None, None, ["success"], ["stream_end:done"]),
    "4xx": Outcome(
        lambda m, n: m.reply_error(400, f"bad request for {SECRET}"),
        BadRequestError,
        ["error"],
        ["error"],
    ),
    "2xx error body": Outcome(
        lambda m, n: m.reply_json({"error": {"message": f"no provider {SECRET}", "code": 400}}),
        APIStatusError,
        ["error"],
        ["error"],
    ),
    "undecodable body": Outcome(
        lambda m, n: m.reply_json(b"{not json"),
        APIResponseValidationError,
        ["error"],
        ["error"],
    ),
    "cut": Outcome(
        lambda m, n: m.reply_default(reset_after=40),
        APIConnectionError,
        ["error"],
        ["stream_end:broken", "error"],
    ),
    "the client closed": Outcome(
        lambda m, n: m.reply_default(stall_before_headers=30),
        APIConnectionError,
        ["error"],
        ["error"],
    ),
}
STREAM_ONLY: dict[str, Outcome] = {
    "error frame": Outcome(_error_frame, APIStreamError, [], ["stream_end:error", "error"]),
    "bad frame": Outcome(_bad_frame, APIResponseValidationError, [], ["stream_end:error", "error"]),
}


def _cases() -> list[Any]:
    cases = []
    for endpoint, (_, streams) in ENDPOINTS.items():
        for outcome in OUTCOMES:
            cases.append(pytest.param(endpoint, outcome, id=f"{endpoint}-{outcome}"))
        if streams:
            for outcome in STREAM_ONLY:
                if endpoint == "raw_stream" and outcome == "bad frame":
                    continue  # a raw stream hands out events undecoded: no bad frame
                cases.append(pytest.param(endpoint, outcome, id=f"{endpoint}-{outcome}"))
    return cases


def _heard(recorder: Recorder) -> list[str]:
    return [f"{kind}:{value}" if kind == "stream_end" else kind for kind, value in recorder.events]


def _assert_no_secret(*things: Any) -> None:
    for thing in things:
        text = f"{thing!s} {thing!r} {getattr(thing, 'args', '')} {getattr(thing, 'body', '')}"
        assert SECRET not in text, f"the key leaked: {text[:300]}"


@pytest.mark.parametrize(("endpoint", "outcome"), _cases())
async def test_every_call_ends_once_with_the_right_error(endpoint, outcome):
    call, streams = ENDPOINTS[endpoint]
    expected = (OUTCOMES | STREAM_ONLY)[outcome]
    recorder = Recorder()
    budget = SettlementLog()
    async with MockRoutmy(api_key=SECRET) as mock:
        client = AsyncRoutmy(
            api_key=SECRET,
            base_url=mock.base_url,
            max_retries=0,
            hooks=[recorder],
            rate_limit=budget,
        )
        expected.script(mock, endpoint)
        error: BaseException | None = None
        try:
            if outcome == "the client closed":
                task = asyncio.ensure_future(call(client))
                for _ in range(500):
                    if mock.requests:
                        break
                    await asyncio.sleep(0.01)
                await client.close()
                await asyncio.wait_for(task, 10)
            else:
                await asyncio.wait_for(call(client), 30)
        except Exception as caught:
            error = caught
        finally:
            await client.close()
    if expected.error is None:
        assert error is None, repr(error)
    else:
        assert isinstance(error, expected.error), repr(error)
        _assert_no_secret(error, error.__cause__)
    assert _heard(recorder) == (expected.streamed if streams else expected.whole), endpoint
    for kind, value in recorder.events:
        if kind == "error":
            _assert_no_secret(value)
    # A reservation is settled once at the most, and never for more than the request's own.
    if endpoint in ESTIMATED:
        assert _settlement(budget.settled) == _expected_settlement(streams, outcome), budget.settled
    else:
        assert budget.settled == []


def _settlement(settled: list[tuple[int, int]]) -> str:
    if not settled:
        return "kept"  # the estimate stays spent: the server may have generated it all
    assert len(settled) == 1, settled  # settled once at the most
    return "given back" if settled[0][1] == 0 else "usage"


def _expected_settlement(streams: bool, outcome: str) -> str:
    """Today's rule: the real usage when the call succeeds; the estimate given back when no
    answer was generated or the answer could not be a stream's; kept as spent when an answer
    came but was unreadable (a whole body that does not decode) or a stream broke or failed
    after it opened."""
    if outcome == "ok":
        return "usage"
    if outcome == "undecodable body":
        return "given back" if streams else "kept"
    if streams and outcome in ("cut", "error frame", "bad frame"):
        return "kept"
    return "given back"


async def test_a_call_cancelled_in_flight_ends_once_for_every_endpoint():
    """A task cancelled while its request waits for an answer: on_error with the
    cancellation (whole and not-yet-open streams alike), once."""
    for endpoint, (call, _) in ENDPOINTS.items():
        recorder = Recorder()
        async with MockRoutmy(api_key=SECRET) as mock:
            async with AsyncRoutmy(
                api_key=SECRET, base_url=mock.base_url, max_retries=0, hooks=[recorder]
            ) as client:
                mock.reply_default(stall_before_headers=30)
                task = asyncio.ensure_future(call(client))
                for _ in range(500):
                    if mock.requests:
                        break
                    await asyncio.sleep(0.01)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        kinds = [kind for kind, _ in recorder.events]
        assert kinds == ["error"], (endpoint, recorder.events)
        assert isinstance(recorder.events[0][1], asyncio.CancelledError), endpoint
