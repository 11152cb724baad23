"""The response Structs: compact reprs, raw access, to_dict, and config value objects."""

from __future__ import annotations

import msgspec
import pytest

from routmy_async import NOT_GIVEN, Timeout
from routmy_async._config import coerce_timeout
from routmy_async.resources.chat._accumulate import CompletionAccumulator
from routmy_async.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    Model,
    ModelList,
    ToolCall,
)


def test_repr_shows_only_what_was_set():
    """repr leaves out fields still at their defaults."""
    completion = ChatCompletion(
        id="x", choices=[Choice(message=ChatCompletionMessage(content="hi"))]
    )
    assert repr(completion) == (
        "ChatCompletion(id='x', choices=[Choice(message=ChatCompletionMessage(content='hi'))])"
    )


def test_raw_without_a_body_falls_back_to_fields():
    """An object built in code has .raw equal to its fields; request_id is None."""
    completion = ChatCompletion(id="x", model="m")
    assert completion.raw["id"] == "x" and completion.request_id is None
    assert completion.to_dict() == {"id": "x", "model": "m"}
    with pytest.raises(AttributeError):
        completion._private  # noqa: B018


def test_model_raw_outside_a_list():
    """A Model built alone has .raw of its own fields."""
    model = Model(id="a/b", token_multiplier=2)
    assert model.raw == {"id": "a/b", "token_multiplier": 2}
    with pytest.raises(AttributeError):
        model._hidden  # noqa: B018
    listed = msgspec.json.decode(b'{"data": [{"id": "a/b", "x": 1}]}', type=ModelList)
    assert listed.data[0].raw == listed.data[0].to_dict()  # no raw body attached: fields only


def test_message_to_param_round_trip():
    """to_param keeps tool calls, refusal, reasoning and details for the next turn."""
    message = msgspec.convert(
        {
            "role": "assistant",
            "content": None,
            "refusal": "no",
            "reasoning": "r",
            "name": "bot",
            "reasoning_details": [{"type": "reasoning.encrypted", "data": "d"}],
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
            ],
        },
        ChatCompletionMessage,
    )
    assert message.to_param() == {
        "role": "assistant",
        "content": None,
        "refusal": "no",
        "reasoning": "r",
        "name": "bot",
        "reasoning_details": [{"type": "reasoning.encrypted", "data": "d"}],
        "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    assert isinstance(message.tool_calls[0], ToolCall)  # type: ignore[index]


def test_not_given_and_timeout_values():
    """NOT_GIVEN is falsy with a short repr; Timeouts compare and hash by value."""
    assert not NOT_GIVEN and repr(NOT_GIVEN) == "NOT_GIVEN"
    assert Timeout(read=5) == Timeout(read=5) and hash(Timeout(read=5)) == hash(Timeout(read=5))
    assert Timeout(read=5) != Timeout(read=6) and Timeout() != "x"
    unlimited = coerce_timeout(None)
    assert (unlimited.connect, unlimited.read, unlimited.total) == (None, None, None)
    with pytest.raises(TypeError, match="connect"):
        Timeout(connect="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        coerce_timeout(True)


def test_accumulator_edge_cases():
    """A late id, model from a later chunk, unindexed details and refusal logprobs."""
    chunks = [
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"reasoning_details": [{"type": "reasoning.text", "text": "a"}]},
                }
            ]
        },
        {
            "id": "late",
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "reasoning_details": [
                            {"type": "reasoning.text", "text": "b", "signature": None}
                        ]
                    },
                    "logprobs": {"refusal": [{"token": "no", "logprob": -1.0}]},
                }
            ],
        },
        {
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"function": {"arguments": "{}"}}]},
                    "finish_reason": "stop",
                }
            ]
        },
    ]
    acc = CompletionAccumulator()
    for raw in chunks:
        acc.add(msgspec.convert(raw, ChatCompletionChunk))
    done = acc.completion()
    assert done.id == "late" and done.model == "m"
    message = done.choices[0].message
    assert message.reasoning_details == [
        {"type": "reasoning.text", "text": "ab", "signature": None}
    ]
    assert done.choices[0].logprobs is not None
    assert [t.token for t in done.choices[0].logprobs.refusal or []] == ["no"]
    assert message.tool_calls is not None and message.tool_calls[0].function.arguments == "{}"
