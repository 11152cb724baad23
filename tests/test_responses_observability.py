"""The Responses API under hooks and OpenTelemetry: each call a ``responses`` Call and a GenAI
``chat`` span, checked attribute by attribute with the SDK's in-memory exporters, for plain,
streamed, failed, retried and cancelled calls; and the status, headers and rate limits of a
Response and of a ResponseStream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.trace import SpanKind, StatusCode

from routmy_async import (
    APIConnectionError,
    APIStreamError,
    AsyncRoutmy,
    BadRequestError,
    StreamSummary,
)
from routmy_async.instrumentation import instrument, uninstrument
from routmy_async.testing._replies import response_events, response_object
from routmy_async.types import Response
from tests._otel_helpers import Telemetry, recording
from tests.test_hooks import Recorder

INPUT = "hello there"
LIMIT_HEADERS = {
    "x-ratelimit-limit-requests": "100",
    "x-ratelimit-remaining-requests": "42",
    "x-ratelimit-reset-requests": "1m30s",
    "x-ratelimit-limit-tokens": "10000",
    "x-ratelimit-remaining-tokens": "9000",
    "x-ratelimit-reset-tokens": "250ms",
}


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    yield from recording()


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def traced(mock: Any, telemetry: Telemetry, **kwargs: Any) -> AsyncRoutmy:
    options: dict[str, Any] = {"max_retries": 0, **kwargs}
    hooks = [telemetry.hooks(capture_content=options.pop("capture_content", False))]
    return AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, hooks=hooks, **options)


def failed_events() -> list[dict[str, Any]]:
    """A streamed response whose terminal event is ``response.failed``."""
    events = response_events(response_object({"model": "p/m", "input": INPUT}, created=1, serial=1))
    failed = {**events[-1]["response"], "status": "failed", "output": []}
    failed["error"] = {"code": "server_error", "message": "The model crashed"}
    events[-1] = {"type": "response.failed", "sequence_number": 99, "response": failed}
    return events


# -- spans ------------------------------------------------------------------------------------


async def test_a_response_is_a_chat_span_with_the_genai_attributes(mock, telemetry):
    async with traced(mock, telemetry) as client:
        response = await client.responses.create(
            model="mock/echo",
            input=INPUT,
            instructions="Answer briefly.",
            temperature=0.5,
            top_p=0.9,
            max_output_tokens=64,
        )
    (span,) = telemetry.finished()
    assert span.name == "chat mock/echo" and span.kind is SpanKind.CLIENT
    assert span.status.status_code is StatusCode.UNSET
    attributes = dict(span.attributes)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "mock"
    assert attributes["gen_ai.request.model"] == "mock/echo"
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.request.top_p"] == 0.9
    assert attributes["gen_ai.request.max_tokens"] == 64  # from max_output_tokens
    assert attributes["gen_ai.response.id"] == response.id and response.id
    assert attributes["gen_ai.response.model"] == response.model == "mock/echo"
    assert response.status == "completed"
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert response.usage is not None and response.usage.input_tokens > 0
    assert attributes["gen_ai.usage.input_tokens"] == response.usage.input_tokens
    assert attributes["gen_ai.usage.output_tokens"] == response.usage.output_tokens
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == mock.port
    assert "gen_ai.input.messages" not in attributes  # content is opt-in
    assert "gen_ai.output.messages" not in attributes
    assert "error.type" not in attributes
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.count == 1
    assert duration.attributes["gen_ai.operation.name"] == "chat"
    assert duration.attributes["gen_ai.response.model"] == "mock/echo"
    tokens = {
        p.attributes["gen_ai.token.type"]: p.sum
        for p in telemetry.points("gen_ai.client.token.usage")
    }
    assert tokens == {
        "input": response.usage.input_tokens,
        "output": response.usage.output_tokens,
    }


async def test_finish_reasons_follow_the_status_in_chat_words(mock, telemetry):
    async with traced(mock, telemetry) as client:
        cut = await client.responses.create(
            model="mock/echo", input="one two three four", max_output_tokens=2
        )
        called = await client.responses.create(
            model="mock/echo", input="weather in Paris?", tools=[get_weather]
        )
    assert cut.status == "incomplete" and cut.incomplete_details is not None
    assert called.output[0].type == "function_call"
    cut_span, called_span = telemetry.finished()
    assert cut_span.attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert called_span.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)


async def test_a_streamed_response_span_lasts_until_the_end_and_records_the_first_event(
    mock, telemetry
):
    async with traced(mock, telemetry) as client:
        mock.reply_default(path="/responses", chunk_delay=0.02)
        async with client.responses.stream(
            model="mock/echo", input=INPUT, max_output_tokens=64
        ) as stream:
            await stream.__anext__()
            assert telemetry.finished() == []  # open while the stream is
            events = 1
            async for _ in stream:
                events += 1
            final = await stream.get_final_response()
    (span,) = telemetry.finished()
    assert span.name == "chat mock/echo" and span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes)
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert 0 < attributes["gen_ai.response.time_to_first_chunk"] < 5
    assert span.end_time - span.start_time >= 0.02 * 1e9
    assert attributes["routmy.stream.outcome"] == "done"
    assert attributes["routmy.stream.chunks"] == events
    assert attributes["gen_ai.response.id"] == final.id
    assert attributes["gen_ai.response.model"] == final.model
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert final.usage is not None
    assert attributes["gen_ai.usage.input_tokens"] == final.usage.input_tokens
    assert attributes["gen_ai.usage.output_tokens"] == final.usage.output_tokens
    assert "error.type" not in attributes
    (first,) = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    assert first.count == 1 and first.attributes["gen_ai.operation.name"] == "chat"
    assert {
        p.attributes["gen_ai.token.type"] for p in telemetry.points("gen_ai.client.token.usage")
    } == {
        "input",
        "output",
    }


async def test_create_stream_true_is_traced_like_stream(mock, telemetry):
    async with traced(mock, telemetry) as client:
        stream = await client.responses.create(
            model="mock/echo", input="one two three", max_output_tokens=1, stream=True
        )
        async with stream:
            text = "".join([piece async for piece in stream.text_deltas()])
    assert text == "one"
    (span,) = telemetry.finished()
    assert span.attributes["routmy.stream.outcome"] == "done"
    assert span.attributes["gen_ai.response.finish_reasons"] == ("length",)


async def test_failed_calls_carry_an_error_type(mock, telemetry):
    async with traced(mock, telemetry) as client:
        mock.reply_error(400, "bad input")
        with pytest.raises(BadRequestError):
            await client.responses.create(model="mock/echo", input=INPUT)
        mock.reply_stream(failed_events(), named=True, done=False)
        with pytest.raises(APIStreamError, match="The model crashed"):
            async with client.responses.stream(model="mock/echo", input=INPUT) as stream:
                await stream.get_final_response()
        # A 200 response object with status "failed" is returned, and its call failed.
        body = response_object({"model": "mock/echo", "input": INPUT}, created=1, serial=7)
        body.update(status="failed", error={"code": "server_error", "message": "crashed"})
        mock.reply_json(body)
        failed = await client.responses.create(model="mock/echo", input=INPUT)
        assert failed.status == "failed" and failed.error is not None
    rejected, broken_stream, failed_response = telemetry.finished()
    assert rejected.attributes["error.type"] == "400"
    assert rejected.status.status_code is StatusCode.ERROR
    assert broken_stream.attributes["error.type"] == "server_error"  # as a plain call's
    assert broken_stream.attributes["routmy.stream.outcome"] == "error"
    assert broken_stream.status.status_code is StatusCode.ERROR
    # The response.failed event carried the failed Response: its id is the span's, as for
    # the same failure answered whole below.
    assert broken_stream.attributes["gen_ai.response.id"].startswith("resp")
    assert failed_response.attributes["error.type"] == "server_error"
    assert failed_response.status.status_code is StatusCode.ERROR
    assert failed_response.attributes["gen_ai.response.id"] == failed.id
    errors = sorted(
        p.attributes["error.type"]
        for p in telemetry.points("gen_ai.client.operation.duration")
        if "error.type" in p.attributes
    )
    assert errors == ["400", "server_error", "server_error"]


async def test_a_retried_call_is_one_span_with_a_retry_event(mock, telemetry):
    async with traced(mock, telemetry, max_retries=1) as client:
        mock.reply_error(503, "busy", headers={"retry-after-ms": "1"})
        await client.responses.create(model="mock/echo", input=INPUT)
        mock.reply_error(503, "busy", headers={"retry-after-ms": "1"})
        async with client.responses.stream(model="mock/echo", input=INPUT) as stream:
            await stream.get_final_response()
    plain, streamed = telemetry.finished()
    for span in (plain, streamed):
        assert "error.type" not in span.attributes
        (event,) = span.events
        assert event.name == "gen_ai.client.retry"
        assert event.attributes["routmy.retry.reason"] == "status 503"
        assert event.attributes["routmy.attempt"] == 1
    assert streamed.attributes["routmy.stream.outcome"] == "done"
    assert len(mock.requests) == 4


async def test_breaking_out_of_a_stream_or_cancelling_it_ends_its_span(mock, telemetry):
    async with traced(mock, telemetry) as client:
        mock.reply_default(path="/responses", chunk_delay=0.05)
        async with client.responses.stream(model="mock/echo", input=INPUT) as stream:
            async for _ in stream:
                break
        assert len(telemetry.finished()) == 1  # ended when the block was left
        mock.reply_default(path="/responses", chunk_delay=0.5)

        async def read() -> None:
            async with client.responses.stream(model="mock/echo", input=INPUT) as stream:
                async for _ in stream:
                    pass

        task = asyncio.ensure_future(read())
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    left, cancelled = telemetry.finished()
    assert left.attributes["routmy.stream.chunks"] == 1  # the one event read, not the batch
    # Stopping early is no error: no error.type, the status left unset.
    for span in (left, cancelled):
        assert span.attributes["routmy.stream.outcome"] == "cancelled"
        assert span.attributes["routmy.cancelled"] is True
        assert "error.type" not in span.attributes
        assert span.status.status_code is StatusCode.UNSET


async def test_content_is_recorded_only_when_asked_for(mock, telemetry):
    async with traced(mock, telemetry, capture_content=True) as client:
        response = await client.responses.create(
            model="mock/echo", input=INPUT, instructions="Answer briefly."
        )
        items = [{"role": "user", "content": [{"type": "input_text", "text": "weather?"}]}]
        called = await client.responses.create(model="mock/echo", input=items, tools=[get_weather])
        async with client.responses.stream(model="mock/echo", input="streamed") as stream:
            streamed = await stream.get_final_response()
    plain_span, called_span, stream_span = telemetry.finished()
    assert json.loads(plain_span.attributes["gen_ai.input.messages"]) == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": INPUT},
    ]
    assert json.loads(plain_span.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "content": response.output_text}
    ]
    assert response.output_text == INPUT
    assert json.loads(called_span.attributes["gen_ai.input.messages"]) == items
    (call,) = json.loads(called_span.attributes["gen_ai.output.messages"])[0]["tool_calls"]
    function_call = called.output[0]
    assert function_call.type == "function_call"
    assert call == {
        "id": function_call.call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": function_call.arguments},
    }
    assert json.loads(stream_span.attributes["gen_ai.output.messages"]) == [
        {"role": "assistant", "content": streamed.output_text}
    ]
    assert streamed.output_text == "streamed"
    assert mock.api_key not in str([dict(s.attributes) for s in telemetry.finished()])


async def test_every_tool_round_and_parse_is_its_own_span(mock, telemetry):
    import msgspec

    class Answer(msgspec.Struct):
        answer: str

    async with traced(mock, telemetry) as client:
        result = await client.responses.run_tools(
            model="mock/echo", input="weather in Paris?", tools=[get_weather]
        )
        parsed = await client.responses.parse(model="mock/echo", input="x", text_format=Answer)
    assert result.output_text and isinstance(parsed.output_parsed, Answer)
    first, second, parse = telemetry.finished()
    assert first.attributes["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert second.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert second.attributes["gen_ai.response.id"] == result.id
    assert parse.name == "chat mock/echo" and "error.type" not in parse.attributes


async def test_instrument_covers_responses_calls(mock, telemetry):
    instrument(telemetry.tracer_provider, telemetry.meter_provider)
    try:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            await client.responses.create(model="mock/echo", input=INPUT)
    finally:
        uninstrument()
    assert [span.name for span in telemetry.finished()] == ["chat mock/echo"]


# -- hooks ------------------------------------------------------------------------------------


async def test_hooks_see_each_responses_call_and_how_each_stream_ended(mock):
    recorder = Recorder()
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[recorder], max_retries=0
    ) as client:
        response = await client.responses.create(model="mock/echo", input=INPUT)
        assert recorder.kinds() == ["request", "response", "success"]
        assert recorder.events[-1][1] == "Response"
        call = recorder.calls[0]
        assert call.operation == "responses" and call.model == "mock/echo"
        assert not call.stream and call.body is not None and call.body["input"] == INPUT
        assert recorder.events[0][1][2].endswith("/v1/responses")
        recorder.events.clear()

        async with client.responses.stream(model="mock/echo", input=INPUT) as stream:
            events = [event async for event in stream]
            final = await stream.get_final_response()
        mock.reply_default(path="/responses", chunk_delay=0.05)
        async with client.responses.stream(model="mock/echo", input=INPUT) as stream:
            async for _ in stream:
                break
        mock.reply_stream(failed_events(), named=True, done=False)
        with pytest.raises(APIStreamError):
            async with client.responses.stream(model="mock/echo", input=INPUT) as stream:
                await stream.get_final_response()
        mock.reply_default(path="/responses", reset_after=300)
        with pytest.raises(APIConnectionError):
            stream = await client.responses.create(model="mock/echo", input=INPUT, stream=True)
            async with stream:
                await stream.get_final_response()
    assert all(call.operation == "responses" and call.stream for call in recorder.calls[1:])
    ends: list[StreamSummary] = [s for kind, s in recorder.events if kind == "stream_end"]
    assert [end.outcome for end in ends] == ["done", "cancelled", "error", "broken"]
    done = ends[0]
    assert done.chunks == len(events) and done.time_to_first_event is not None
    assert 0 <= done.time_to_first_event <= done.duration
    assert isinstance(done.result, Response) and done.result.id == final.id
    assert done.result.output_text == final.output_text == response.output_text
    assert final.usage is not None and done.usage == final.usage
    assert done.usage.output_tokens == final.usage.output_tokens > 0
    assert ends[1].result is None and ends[1].error is None
    assert isinstance(ends[2].error, APIStreamError)
    # The failed Response that response.failed carried, for the hooks: its id and status.
    assert isinstance(ends[2].result, Response) and ends[2].result.status == "failed"
    assert ends[2].usage is not None  # the failed response's usage
    assert isinstance(ends[3].error, APIConnectionError)
    assert recorder.kinds().count("stream_end") == 4  # each stream ended once


# -- status, headers and rate limits ----------------------------------------------------------


async def test_a_response_and_a_response_stream_expose_status_headers_and_rate_limits(mock, client):
    body = response_object({"model": "mock/echo", "input": INPUT}, created=1, serial=1)
    mock.reply_json(body, headers={**LIMIT_HEADERS, "x-custom": "yes"})
    response = await client.responses.create(model="mock/echo", input=INPUT)
    assert response.status_code == 200 and response.headers["X-Custom"] == "yes"
    assert response.rate_limits.remaining_requests == 42
    assert response.rate_limits.reset_requests == 90

    mock.reply_stream(response_events(body), named=True, done=False, headers=LIMIT_HEADERS)
    async with client.responses.stream(model="mock/echo", input=INPUT) as stream:
        assert stream.status_code == 200
        assert stream.headers["X-RateLimit-Limit-Tokens"] == "10000"
        limits = stream.rate_limits
        assert (limits.limit_tokens, limits.remaining_tokens) == (10000, 9000)
        assert limits.reset_tokens == 0.25
        assert stream.request_id is not None
        final = await stream.get_final_response()
    assert final.status_code == 200 and final.rate_limits.remaining_tokens == 9000
    assert final.request_id == stream.request_id

    failed = {**body, "status": "failed", "error": {"code": "server_error", "message": "x"}}
    mock.reply_json(failed, headers=LIMIT_HEADERS)
    answer = await client.responses.create(model="mock/echo", input=INPUT)
    assert answer.status == "failed" and answer.status_code == 200
    assert answer.rate_limits.limit_requests == 100
