"""``error.type`` is a property of the failure, not of how the answer was read: the same failure
as a stream and as a plain call gets the same value, in both modes of the conventions; and a
200 Response that failed still records its id and usage."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.trace import StatusCode

from routmy_async import AsyncRoutmy, RoutmyError, Timeout
from routmy_async.testing import MockRoutmy
from routmy_async.testing._replies import response_events, response_object
from tests._otel_helpers import Telemetry, recording

MESSAGES = [{"role": "user", "content": "hello there"}]
FIRST_CHUNK = {"choices": [{"index": 0, "delta": {"content": "a"}}]}
INPUT = "hello there"


@pytest.fixture(params=["default", "gen_ai_latest_experimental"])
def telemetry(request, monkeypatch) -> Iterator[Telemetry]:
    """Both modes: the hooks read OTEL_SEMCONV_STABILITY_OPT_IN when they are made."""
    if request.param == "default":
        monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN", raising=False)
    else:
        monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", f"http, {request.param}")
    yield from recording()


def failed_response_body() -> dict[str, Any]:
    body = response_object({"model": "mock/echo", "input": INPUT}, created=1, serial=7)
    body.update(status="failed", error={"code": "server_error", "message": "The model crashed"})
    return body


def error_in_body(error: Any) -> Callable[[MockRoutmy], object]:
    return lambda mock: mock.reply_json({"error": error})


def error_frame(error: Any) -> Callable[[MockRoutmy], object]:
    return lambda mock: mock.reply_stream([FIRST_CHUNK, {"error": error}], done=False)


def failed_response_events(mock: MockRoutmy) -> None:
    body = failed_response_body()
    events = response_events({**body, "status": "completed", "error": None})
    events[-1] = {"type": "response.failed", "sequence_number": 99, "response": body}
    mock.reply_stream(events, named=True, done=False)


# (what fails, how the plain call meets it, how the stream meets it, the endpoint, error.type)
FAILURES = [
    (
        "a numeric code in a 200",
        error_in_body({"message": "upstream", "code": 502}),
        error_frame({"message": "upstream", "code": 502}),
        "chat",
        "502",
    ),
    (
        "a word code in a 200",
        error_in_body({"message": "upstream", "code": "provider_error"}),
        error_frame({"message": "upstream", "code": "provider_error"}),
        "chat",
        "provider_error",
    ),
    (
        "an error without a code",
        error_in_body({"message": "upstream"}),
        error_frame({"message": "upstream"}),
        "chat",
        "_OTHER",
    ),
    (
        "a failed Response",
        lambda mock: mock.reply_json(failed_response_body()),
        failed_response_events,
        "responses",
        "server_error",
    ),
    (
        "a status at open",
        lambda mock: mock.reply_error(503, "busy"),
        lambda mock: mock.reply_error(503, "busy"),
        "chat",
        "503",
    ),
    (
        "the connection cut mid-answer",
        lambda mock: mock.reply_default(reset_after=20),
        lambda mock: mock.reply_default(reset_after=120),
        "chat",
        "APIConnectionError",
    ),
    (
        "the server going quiet",
        lambda mock: mock.reply_default(stall_after=20),
        lambda mock: mock.reply_default(stall_after=120),
        "chat",
        "APITimeoutError",
    ),
    (
        "an answer that is not JSON",
        lambda mock: mock.reply_json(b"{not json"),
        lambda mock: mock.reply_stream([FIRST_CHUNK, b"data: {not json\n\n"], done=False),
        "chat",
        "APIResponseValidationError",
    ),
]


async def call(client: AsyncRoutmy, endpoint: str, *, stream: bool) -> None:
    """One call that fails, read to its end (a failed Response is returned, not raised)."""
    try:
        if endpoint == "responses":
            if stream:
                async with client.responses.stream(model="mock/echo", input=INPUT) as s:
                    await s.get_final_response()
            else:
                await client.responses.create(model="mock/echo", input=INPUT)
        elif stream:
            async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as s:
                await s.until_done()
        else:
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    except RoutmyError:
        pass


@pytest.mark.parametrize(
    ("plain", "streamed", "endpoint", "expected"),
    [failure[1:] for failure in FAILURES],
    ids=[failure[0] for failure in FAILURES],
)
async def test_a_failure_has_one_error_type_streamed_or_not(
    mock, telemetry, plain, streamed, endpoint, expected
):
    """The plain call's span and the stream's span carry the same error.type, and so do
    their duration points."""
    async with AsyncRoutmy(
        api_key=mock.api_key,
        base_url=mock.base_url,
        hooks=[telemetry.hooks()],
        max_retries=0,
        timeout=Timeout(read=0.4, stream_idle=0.4),
    ) as client:
        plain(mock)
        await call(client, endpoint, stream=False)
        streamed(mock)
        await call(client, endpoint, stream=True)
    spans = telemetry.finished()
    assert [span.attributes["error.type"] for span in spans] == [expected, expected]
    assert all(span.status.status_code is StatusCode.ERROR for span in spans)
    points = telemetry.points("gen_ai.client.operation.duration")
    assert {p.attributes["error.type"] for p in points} == {expected}
    assert sum(p.count for p in points) == 2


async def test_a_failed_response_records_its_id_and_usage(mock, telemetry):
    """A 200 Response with status "failed" is an error on its span, with the response's id,
    model and token counts, as span attributes and as token-usage points."""
    mock.reply_json(failed_response_body())
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[telemetry.hooks()], max_retries=0
    ) as client:
        failed = await client.responses.create(model="mock/echo", input=INPUT)
    assert failed.status == "failed" and failed.usage is not None
    (span,) = telemetry.finished()
    attributes = dict(span.attributes)
    assert attributes["error.type"] == "server_error"
    assert attributes["gen_ai.response.id"] == failed.id == "resp_mock_7"
    assert attributes["gen_ai.response.model"] == "mock/echo"
    assert attributes["gen_ai.response.finish_reasons"] == ("error",)
    assert attributes["gen_ai.usage.input_tokens"] == failed.usage.input_tokens > 0
    assert attributes["gen_ai.usage.output_tokens"] == failed.usage.output_tokens > 0
    # The tokens were spent all the same; the conventions give token usage no error.type
    # (the duration histogram carries it).
    tokens = {
        p.attributes["gen_ai.token.type"]: (p.sum, p.attributes.get("error.type"))
        for p in telemetry.points("gen_ai.client.token.usage")
    }
    assert tokens == {
        "input": (failed.usage.input_tokens, None),
        "output": (failed.usage.output_tokens, None),
    }
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "server_error"


async def test_a_streamed_failed_response_records_its_id_and_usage(mock, telemetry):
    """A stream that ends in response.failed records the id and usage that event carried,
    as the same failure without streaming does."""
    failed_response_events(mock)
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[telemetry.hooks()], max_retries=0
    ) as client:
        await call(client, "responses", stream=True)
    usage = failed_response_body()["usage"]
    (span,) = telemetry.finished()
    # The failed Response the event carried: its id and model are the span's too.
    assert span.attributes["gen_ai.response.id"] == failed_response_body()["id"]
    assert span.attributes["error.type"] == "server_error"
    assert span.attributes["gen_ai.usage.input_tokens"] == usage["input_tokens"] > 0
    assert span.attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"] > 0
    assert sorted(
        (p.attributes["gen_ai.token.type"], p.sum)
        for p in telemetry.points("gen_ai.client.token.usage")
    ) == [("input", usage["input_tokens"]), ("output", usage["output_tokens"])]
