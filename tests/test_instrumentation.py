"""OpenTelemetry GenAI spans and metrics, checked attribute by attribute with the SDK's
in-memory exporters, for plain, streamed, failed, retried and cancelled calls."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.trace import SpanKind, StatusCode

from routmy_async import (
    APIConnectionError,
    APIResponseValidationError,
    AsyncRoutmy,
    BadRequestError,
)
from routmy_async.instrumentation import instrument, uninstrument
from tests._otel_helpers import Telemetry, recording
from tests.test_hooks import fail_a_stream_after_one_chunk

MESSAGES = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    yield from recording()


async def test_a_chat_call_is_a_client_span_with_the_genai_attributes(mock, telemetry):
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[telemetry.hooks()]
    ) as client:
        completion = await client.chat.completions.create(
            model="mock/echo",
            messages=MESSAGES,
            temperature=0.5,
            top_p=0.9,
            max_tokens=64,
            seed=7,
            stop=["END"],
            n=1,
        )
    (span,) = telemetry.finished()
    assert span.name == "chat mock/echo" and span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes)
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.provider.name"] == "mock"
    assert attributes["gen_ai.request.model"] == "mock/echo"
    assert attributes["gen_ai.request.temperature"] == 0.5
    assert attributes["gen_ai.request.top_p"] == 0.9
    assert attributes["gen_ai.request.max_tokens"] == 64
    assert attributes["gen_ai.request.seed"] == 7
    assert attributes["gen_ai.request.stop_sequences"] == ("END",)
    assert attributes["gen_ai.request.choice.count"] == 1
    assert attributes["gen_ai.response.id"] == completion.id
    assert attributes["gen_ai.response.model"] == completion.model
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert completion.usage is not None
    assert attributes["gen_ai.usage.input_tokens"] == completion.usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == completion.usage.completion_tokens
    assert attributes["server.address"] == "127.0.0.1"
    assert attributes["server.port"] == mock.port
    assert "gen_ai.input.messages" not in attributes  # content is opt-in
    assert "error.type" not in attributes
    (duration,) = telemetry.points("gen_ai.client.operation.duration")
    assert duration.count == 1 and duration.attributes["gen_ai.operation.name"] == "chat"
    tokens = {
        p.attributes["gen_ai.token.type"]: p.sum
        for p in telemetry.points("gen_ai.client.token.usage")
    }
    assert tokens == {
        "input": completion.usage.prompt_tokens,
        "output": completion.usage.completion_tokens,
    }


async def test_a_stream_span_lasts_until_the_end_and_records_the_first_chunk(mock, telemetry):
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[telemetry.hooks()]
    ) as client:
        mock.reply_default(chunk_delay=0.05)
        async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as s:
            await s.__anext__()
            assert telemetry.finished() == []  # still open while the stream is
            await s.until_done()
    (span,) = telemetry.finished()
    attributes = dict(span.attributes)
    assert 0 < attributes["gen_ai.response.time_to_first_chunk"] < 5
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["routmy.stream.outcome"] == "done"
    assert span.end_time - span.start_time >= 0.05 * 1e9
    assert telemetry.points("gen_ai.client.operation.time_to_first_chunk")


async def test_failed_retried_and_cancelled_calls(mock, telemetry):
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[telemetry.hooks()], max_retries=1
    ) as client:
        mock.reply_error(400, "bad input")
        with pytest.raises(BadRequestError):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        mock.reply_error(503, "busy", headers={"retry-after-ms": "1"})
        await client.embeddings.create(model="mock/embed", input=["a", "b"])
        mock.reply_default(chunk_delay=0.05)
        async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as s:
            await s.__anext__()
        mock.latency = 5
        task = asyncio.ensure_future(
            client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        )
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    failed, retried, cancelled_stream, cancelled_call = telemetry.finished()
    assert failed.attributes["error.type"] == "400"
    assert failed.status.status_code is StatusCode.ERROR
    assert retried.name == "embeddings mock/embed"
    assert "error.type" not in retried.attributes
    (event,) = retried.events
    assert (
        event.name == "gen_ai.client.retry"
        and event.attributes["routmy.retry.reason"] == "status 503"
    )
    # Stopped by the caller (a stream closed early, a task cancelled): no error, like
    # OpenTelemetry's use_span and openai-python's instrumentation.
    for stopped in (cancelled_stream, cancelled_call):
        assert "error.type" not in stopped.attributes
        assert stopped.status.status_code is StatusCode.UNSET
        assert stopped.attributes["routmy.cancelled"] is True
    assert cancelled_stream.attributes["routmy.stream.outcome"] == "cancelled"
    errors = [
        p.attributes.get("error.type") for p in telemetry.points("gen_ai.client.operation.duration")
    ]
    assert sorted(e for e in errors if e) == ["400"]


async def test_every_stream_failure_ends_exactly_one_span(mock, telemetry):
    """A stream that fails at open (a 400, an HTML page) or after it opened (an error frame,
    a cut connection) ends one span, with one duration point: the on_error that follows a
    failed stream's end adds nothing."""
    async with AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[telemetry.hooks()], max_retries=0
    ) as client:
        mock.reply_error(400, "bad input")
        with pytest.raises(BadRequestError):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES, stream=True)
        mock.reply_json(b"<html>sign in</html>", headers={"Content-Type": "text/html"})
        with pytest.raises(APIResponseValidationError):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES, stream=True)
        await fail_a_stream_after_one_chunk(mock, client)
        mock.reply_default(reset_after=120)
        with pytest.raises(APIConnectionError):
            async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as s:
                await s.until_done()
    spans = telemetry.finished()
    assert [span.attributes["error.type"] for span in spans] == [
        "400",
        "APIResponseValidationError",  # a 200 that is not the answer: not "200"
        "502",  # the error frame's code, as a 200 body holding that error gets
        "APIConnectionError",
    ]
    assert all(span.status.status_code is StatusCode.ERROR for span in spans)
    assert [span.attributes.get("routmy.stream.outcome") for span in spans] == [
        None,
        None,
        "error",
        "broken",
    ]
    points = telemetry.points("gen_ai.client.operation.duration")
    assert sorted((p.attributes["error.type"], p.count) for p in points) == [
        ("400", 1),
        ("502", 1),
        ("APIConnectionError", 1),
        ("APIResponseValidationError", 1),
    ]


async def test_content_is_recorded_only_when_asked_for(mock, telemetry):
    async with AsyncRoutmy(
        api_key=mock.api_key,
        base_url=mock.base_url,
        hooks=[telemetry.hooks(capture_content=True)],
    ) as client:
        await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    (span,) = telemetry.finished()
    assert json.loads(span.attributes["gen_ai.input.messages"]) == MESSAGES
    output = json.loads(span.attributes["gen_ai.output.messages"])
    assert output[0]["content"] == "hello there"
    assert mock.api_key not in str(dict(span.attributes))


async def test_instrument_covers_every_client_until_uninstrument(mock, telemetry):
    instrument(telemetry.tracer_provider, telemetry.meter_provider)
    try:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
            await client.models.list()  # not a GenAI operation: no span
    finally:
        uninstrument()
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert [span.name for span in telemetry.finished()] == ["chat mock/echo"]


def test_the_package_does_not_import_opentelemetry():
    import subprocess
    import sys

    code = (
        "import sys, routmy_async; "
        "assert not [m for m in sys.modules if m.startswith('opentelemetry')], 'otel imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
