"""The two versions of the GenAI conventions: the default keeps what this package has always
recorded; ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`` switches to the latest
(v1.41.0): the router as ``gen_ai.provider.name``, the model's provider in
``routmy.model.provider``, ``gen_ai.system_instructions``, messages as role and parts, and the
token-usage buckets the conventions list."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk")

from routmy_async import AsyncRoutmy
from routmy_async._hooks import Call
from routmy_async.instrumentation import instrument, uninstrument
from tests._otel_helpers import Telemetry, recording

OPT_IN = "OTEL_SEMCONV_STABILITY_OPT_IN"
MESSAGES = [{"role": "user", "content": "hello there"}]
TOKEN_BUCKETS = [
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
]
DURATION_BUCKETS = [
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    yield from recording()


@pytest.fixture
def latest(monkeypatch) -> None:
    monkeypatch.setenv(OPT_IN, "gen_ai_latest_experimental")


@pytest.fixture
def default(monkeypatch) -> None:
    monkeypatch.delenv(OPT_IN, raising=False)


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


def traced(mock: Any, telemetry: Telemetry, **kwargs: Any) -> AsyncRoutmy:
    return AsyncRoutmy(
        api_key=mock.api_key, base_url=mock.base_url, hooks=[telemetry.hooks(**kwargs)]
    )


def bounds(telemetry: Telemetry, name: str) -> list[float]:
    (point, *_) = telemetry.points(name)
    return list(point.explicit_bounds)


@pytest.mark.usefixtures("default")
async def test_the_default_mode_keeps_todays_attributes_and_buckets(mock, telemetry):
    """Without the opt-in: the model's provider is gen_ai.provider.name, no attribute of our
    own for it, and the token buckets stop at 4 Mi as before."""
    async with traced(mock, telemetry) as client:
        await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    (span,) = telemetry.finished()
    assert span.attributes["gen_ai.provider.name"] == "mock"
    assert "routmy.model.provider" not in span.attributes
    assert bounds(telemetry, "gen_ai.client.token.usage") == TOKEN_BUCKETS[:12]
    assert bounds(telemetry, "gen_ai.client.operation.duration") == DURATION_BUCKETS


@pytest.mark.usefixtures("latest")
async def test_the_latest_mode_names_the_router_and_keeps_the_models_provider(mock, telemetry):
    """With the opt-in, a server that is not rout.my is an OpenAI-compatible one ("openai",
    server.address says which), the model's prefix goes in routmy.model.provider, on the
    span and on the metrics, and the histograms use the conventions' buckets."""
    async with traced(mock, telemetry) as client:
        await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        await client.embeddings.create(model="openai/text-embedding-3-small", input="hi")
    chat, embeddings = telemetry.finished()
    assert chat.attributes["gen_ai.provider.name"] == "openai"
    assert chat.attributes["routmy.model.provider"] == "mock"
    assert chat.attributes["server.address"] == "127.0.0.1"
    assert embeddings.attributes["routmy.model.provider"] == "openai"
    for point in telemetry.points("gen_ai.client.operation.duration"):
        assert point.attributes["gen_ai.provider.name"] == "openai"
        assert point.attributes["routmy.model.provider"] in {"mock", "openai"}
    assert bounds(telemetry, "gen_ai.client.token.usage") == TOKEN_BUCKETS
    assert bounds(telemetry, "gen_ai.client.operation.duration") == DURATION_BUCKETS


@pytest.mark.usefixtures("latest")
@pytest.mark.parametrize(
    ("host", "model", "provider", "model_provider"),
    [
        ("api.rout.my", "anthropic/claude-x", "routmy", "anthropic"),
        ("rout.my", "gpt-x", "routmy", None),
        ("API.ROUT.MY.", "openai/gpt-x", "routmy", "openai"),
        ("notrout.my", "openai/gpt-x", "openai", "openai"),
        ("rout.my.example.com", "openai/gpt-x", "openai", "openai"),
        (None, "openai/gpt-x", "openai", "openai"),
    ],
)
def test_the_provider_name_follows_the_host(telemetry, host, model, provider, model_provider):
    """rout.my and its subdomains are "routmy"; any other host (a look-alike included) is
    "openai"; a model id without a prefix has no routmy.model.provider."""
    hooks = telemetry.hooks()
    call = Call("chat", model=model, server_address=host, body={"messages": MESSAGES})
    hooks.on_request(call, attempt=0, method="POST", url="https://x/v1", headers={})
    hooks.on_success(call, result=None, elapsed=0.1)
    (span,) = telemetry.finished()
    assert span.attributes["gen_ai.provider.name"] == provider
    assert span.attributes.get("routmy.model.provider") == model_provider


def test_the_opt_in_is_read_when_the_hooks_are_made(telemetry, monkeypatch):
    """A comma-separated list may name other categories; the value is read once, so changing
    the variable afterwards changes nothing for hooks already made (instrument() included)."""
    monkeypatch.setenv(OPT_IN, "http/dup, gen_ai_latest_experimental ,database")
    installed = instrument(telemetry.tracer_provider, telemetry.meter_provider)
    try:
        monkeypatch.delenv(OPT_IN)
        call = Call("chat", model="mock/echo", server_address="127.0.0.1")
        installed.on_request(call, attempt=0, method="POST", url="http://x/v1", headers={})
        installed.on_success(call, result=None, elapsed=0.1)
    finally:
        uninstrument()
    monkeypatch.setenv(OPT_IN, "gen_ai_latest_experimental_v2,http")
    call = Call("chat", model="mock/echo", server_address="127.0.0.1")
    hooks = telemetry.hooks()
    hooks.on_request(call, attempt=0, method="POST", url="http://x/v1", headers={})
    hooks.on_success(call, result=None, elapsed=0.1)
    opted_in, not_opted_in = telemetry.finished()
    assert opted_in.attributes["gen_ai.provider.name"] == "openai"
    assert not_opted_in.attributes["gen_ai.provider.name"] == "mock"


@pytest.mark.usefixtures("latest")
async def test_chat_messages_are_recorded_as_parts(mock, telemetry):
    """Each chat message is a role and parts: text, a tool call with its arguments decoded,
    a tool's result as tool_call_response; the answer carries its finish reason."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "weather in Paris?"}]},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny in Paris"},
    ]
    async with traced(mock, telemetry, capture_content=True) as client:
        completion = await client.chat.completions.create(model="mock/echo", messages=messages)
        called = await client.chat.completions.create(
            model="mock/echo", messages=[{"role": "user", "content": "Paris?"}], tools=[get_weather]
        )
    span, called_span = telemetry.finished()
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "weather in Paris?"}]},
        {
            "role": "assistant",
            "parts": [
                {
                    "type": "tool_call",
                    "id": "call_1",
                    "name": "get_weather",
                    "arguments": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "call_1", "response": "sunny in Paris"}],
        },
    ]
    assert "gen_ai.system_instructions" not in span.attributes  # chat's are in the history
    answer = completion.choices[0].message.content
    assert answer
    assert json.loads(span.attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": answer}],
            "finish_reason": "stop",
        }
    ]
    (output,) = json.loads(called_span.attributes["gen_ai.output.messages"])
    (call,) = called.choices[0].message.tool_calls or []
    assert output["finish_reason"] == "tool_call"
    assert output["parts"] == [
        {
            "type": "tool_call",
            "id": call.id,
            "name": "get_weather",
            "arguments": json.loads(call.function.arguments),
        }
    ]


@pytest.mark.usefixtures("latest")
async def test_responses_instructions_are_system_instructions(mock, telemetry):
    """A Responses call's instructions are gen_ai.system_instructions, apart from its input;
    input items and output (a function call) are role-and-parts messages."""
    async with traced(mock, telemetry, capture_content=True) as client:
        response = await client.responses.create(
            model="mock/echo", input="hello there", instructions="Answer briefly."
        )
        called = await client.responses.create(
            model="mock/echo",
            input=[
                {"role": "user", "content": [{"type": "input_text", "text": "weather?"}]},
                {
                    "type": "function_call",
                    "call_id": "c1",
                    "name": "get_weather",
                    "arguments": "{}",
                },
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
                {"role": "user", "content": "and in Rome?"},
            ],
            tools=[get_weather],
        )
    plain, with_items = telemetry.finished()
    assert json.loads(plain.attributes["gen_ai.system_instructions"]) == [
        {"type": "text", "content": "Answer briefly."}
    ]
    assert json.loads(plain.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "hello there"}]}
    ]
    assert json.loads(plain.attributes["gen_ai.output.messages"]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": response.output_text}],
            "finish_reason": "stop",
        }
    ]
    assert "gen_ai.system_instructions" not in with_items.attributes
    assert json.loads(with_items.attributes["gen_ai.input.messages"]) == [
        {"role": "user", "parts": [{"type": "text", "content": "weather?"}]},
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "c1", "name": "get_weather", "arguments": {}}],
        },
        {
            "role": "tool",
            "parts": [{"type": "tool_call_response", "id": "c1", "response": "sunny"}],
        },
        {"role": "user", "parts": [{"type": "text", "content": "and in Rome?"}]},
    ]
    (output,) = json.loads(with_items.attributes["gen_ai.output.messages"])
    function_call = called.output[0]
    assert function_call.type == "function_call"
    assert output == {
        "role": "assistant",
        "parts": [
            {
                "type": "tool_call",
                "id": function_call.call_id,
                "name": "get_weather",
                "arguments": json.loads(function_call.arguments),
            }
        ],
        "finish_reason": "tool_call",
    }


@pytest.mark.usefixtures("default")
async def test_the_default_mode_keeps_todays_captured_shapes(mock, telemetry):
    """Without the opt-in, a Responses call's instructions stay a system message of
    gen_ai.input.messages, in the request's own shape, and no gen_ai.system_instructions."""
    async with traced(mock, telemetry, capture_content=True) as client:
        await client.responses.create(
            model="mock/echo", input="hello there", instructions="Answer briefly."
        )
    (span,) = telemetry.finished()
    assert "gen_ai.system_instructions" not in span.attributes
    assert json.loads(span.attributes["gen_ai.input.messages"]) == [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "hello there"},
    ]


@pytest.mark.usefixtures("latest")
async def test_embeddings_input_is_one_user_message_of_text_parts(mock, telemetry):
    """Texts to embed are recorded as text parts; content stays off unless asked for."""
    async with traced(mock, telemetry, capture_content=True) as client:
        await client.embeddings.create(model="mock/embed", input=["a", "b"])
    async with traced(mock, telemetry) as client:
        await client.embeddings.create(model="mock/embed", input=["a", "b"])
    captured, not_captured = telemetry.finished()
    assert json.loads(captured.attributes["gen_ai.input.messages"]) == [
        {
            "role": "user",
            "parts": [{"type": "text", "content": "a"}, {"type": "text", "content": "b"}],
        }
    ]
    assert "gen_ai.input.messages" not in not_captured.attributes
    assert mock.api_key not in str([dict(s.attributes) for s in telemetry.finished()])
