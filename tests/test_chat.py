"""Non-streaming chat completions: the body we send, input checks and decoding the answer."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import msgspec
import pytest
from aioresponses import aioresponses

from routmy_async import (
    APIResponseValidationError,
    AsyncRoutmy,
    AuthenticationError,
    BadRequestError,
    PermissionDeniedError,
)
from routmy_async.types import ChatCompletion
from tests.conftest import patched_aioresponses

MESSAGES = [{"role": "user", "content": "What does this endpoint do?"}]
URL = "https://api.rout.my/v1/chat/completions"
ANSWER: dict[str, Any] = {
    "id": "chatcmpl_abc123",
    "object": "chat.completion",
    "created": 1744000000,
    "model": "provider/model-id",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "It creates model responses."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 28, "completion_tokens": 12, "total_tokens": 40},
}


def sent_body(mocked: aioresponses) -> dict[str, Any]:
    (((_, _), calls),) = mocked.requests.items()
    body: dict[str, Any] = json.loads(calls[0].kwargs["data"])
    return body


async def test_body_has_every_typed_field_and_no_unset_ones():
    """Typed fields are sent as given; fields not passed are not sent at all."""
    async with AsyncRoutmy(api_key="sk-x") as client:
        with patched_aioresponses() as mocked:
            mocked.post(URL, payload=ANSWER)
            await client.chat.completions.create(
                model="provider/model-id",
                messages=MESSAGES,
                temperature=0.7,
                top_p=0.9,
                max_tokens=256,
                max_output_tokens=100,
                stop=["\n\n"],
                response_format={"type": "json_object"},
                tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
                tool_choice="auto",
                reasoning={"effort": "high"},
                metadata={"team": "a"},
                modalities=["image", "text"],
                image_config={"aspect_ratio": "1:1"},
                seed=3,
                n=1,
                logprobs=True,
                top_logprobs=2,
                user="u1",
                parallel_tool_calls=False,
                stream_options={"include_usage": True},
                max_completion_tokens=9,
                frequency_penalty=0.1,
                presence_penalty=0.2,
                logit_bias={"50256": -100},
            )
            body = sent_body(mocked)
    assert body["model"] == "provider/model-id" and body["messages"] == MESSAGES
    assert body["temperature"] == 0.7 and body["max_tokens"] == 256
    assert body["image_config"] == {"aspect_ratio": "1:1"} and body["modalities"] == [
        "image",
        "text",
    ]
    assert body["reasoning"] == {"effort": "high"} and body["metadata"] == {"team": "a"}
    assert "stream" not in body


async def test_unknown_keywords_and_extra_body_pass_through_options_do_not():
    """Unknown keywords and extra_body land in the body; per-call options never do."""
    async with AsyncRoutmy(api_key="sk-x") as client:
        with patched_aioresponses() as mocked:
            mocked.post(URL, payload=ANSWER)
            await client.chat.completions.create(  # type: ignore[call-overload]
                model="p/m",
                messages=MESSAGES,
                provider={"order": ["a"]},
                some_future_field={"x": 1},
                extra_body={"temperature": 0.1, "transforms": ["middle-out"]},
                extra_headers={"X-Trace": "t1"},
                timeout=12,
                max_retries=0,
            )
            (((_, _), calls),) = mocked.requests.items()
            body = json.loads(calls[0].kwargs["data"])
            headers = calls[0].kwargs["headers"]
    assert body["some_future_field"] == {"x": 1} and body["provider"] == {"order": ["a"]}
    assert body["temperature"] == 0.1 and body["transforms"] == ["middle-out"]
    assert not {"extra_headers", "timeout", "max_retries", "extra_body"} & body.keys()
    assert headers["X-Trace"] == "t1" and headers["Authorization"] == "Bearer sk-x"


async def test_response_decodes_with_usage_and_request_id(client, mock):
    """The answer decodes into Structs; usage and the request id are reachable."""
    completion = await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert isinstance(completion, ChatCompletion)
    assert completion.choices[0].message.content == MESSAGES[0]["content"]
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert completion.usage.completion_tokens_details is not None
    assert completion.request_id == "req-mock-1"


async def test_unmodelled_fields_stay_reachable(client, mock):
    """Fields the Structs do not declare are reachable as attributes and through .raw."""
    mock.reply_json(
        {
            **ANSWER,
            "router_trace": {"hops": 2},
            "choices": [{**ANSWER["choices"][0], "extra_choice_field": 1}],
        }
    )
    completion = await client.chat.completions.create(model="p/m", messages=MESSAGES)
    assert completion.router_trace == {"hops": 2}
    assert completion.raw["choices"][0]["extra_choice_field"] == 1
    with pytest.raises(AttributeError, match="no such field"):
        completion.not_there  # noqa: B018


async def test_images_reasoning_and_details_are_modelled(client, mock):
    """message.images, reasoning, reasoning_details, cost and token details decode."""
    mock.reply_json(
        {
            **ANSWER,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "native_finish_reason": "STOP",
                    "message": {
                        "role": "assistant",
                        "content": "x",
                        "reasoning_content": "because",
                        "reasoning_details": [
                            {"type": "reasoning.encrypted", "data": "e", "id": "r1"}
                        ],
                        "images": [
                            {
                                "type": "image_url",
                                "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="},
                            }
                        ],
                    },
                }
            ],
            "usage": {
                "prompt_tokens": 1,
                "completion_tokens": 2,
                "total_tokens": 3,
                "cost": 0.25,
                "prompt_tokens_details": {"cached_tokens": 1},
                "completion_tokens_details": {"reasoning_tokens": 2},
            },
        }
    )
    completion = await client.chat.completions.create(model="p/m", messages=MESSAGES)
    choice = completion.choices[0]
    assert choice.native_finish_reason == "STOP"
    assert choice.message.reasoning == "because"
    assert choice.message.reasoning_details == [
        {"type": "reasoning.encrypted", "data": "e", "id": "r1"}
    ]
    assert choice.message.images is not None
    assert choice.message.images[0].data() == b"\x89PNG\r\n\x1a\n"
    assert choice.message.images[0].mime_type == "image/png"
    usage = completion.usage
    assert usage is not None and usage.cost == 0.25
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 1


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"model": ""}, ValueError, "model"),
        ({"model": 3}, TypeError, "model"),
        ({"messages": "hello"}, TypeError, "messages"),
        ({"messages": []}, ValueError, "messages"),
        ({"messages": [{"content": "no role"}]}, ValueError, r"messages\[0\]"),
        ({"messages": ["plain"]}, TypeError, r"messages\[0\]"),
        ({"temperature": "hot"}, TypeError, "temperature"),
        ({"max_tokens": 1.5}, TypeError, "max_tokens"),
        ({"max_tokens": -1}, ValueError, "max_tokens"),
        ({"stream": "yes"}, TypeError, "stream"),
        ({"stop": 5}, TypeError, "stop"),
        ({"tools": "f"}, TypeError, "tools"),
        ({"metadata": ["a"]}, TypeError, "metadata"),
        ({"n": 0}, ValueError, "n must"),
        ({"extra_body": [1]}, TypeError, "extra_body"),
        ({"extra_headers": {"X": "a\nb"}}, ValueError, "CR, LF"),
        ({"custom": object()}, TypeError, "custom"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"timeout": 0}, ValueError, "timeout"),
    ],
)
async def test_bad_input_is_rejected_before_sending(client, mock, kwargs, exc, match):
    """Each bad field raises an error naming it, and no request reaches the server."""
    args = {"model": "p/m", "messages": MESSAGES, **kwargs}
    with pytest.raises(exc, match=match):
        await client.chat.completions.create(**args)
    assert mock.requests == []


async def test_assistant_message_struct_is_accepted_back(client, mock):
    """A ChatCompletionMessage from a response can be sent back in messages."""
    first = await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    await client.chat.completions.create(
        model="mock/echo",
        messages=[*MESSAGES, first.choices[0].message, {"role": "user", "content": "more"}],
    )
    sent = mock.requests[-1].json["messages"][1]
    assert sent == {"role": "assistant", "content": MESSAGES[0]["content"]}


@pytest.mark.parametrize(
    ("body", "content_type", "match"),
    [
        (b"", "application/json", "not valid JSON"),
        (b"<html>oops</html>", "text/html", "text/html"),
        (b'{"choices": "nope"}', "application/json", "unexpected shape"),
    ],
)
async def test_undecodable_200_raises_validation_error(client, mock, body, content_type, match):
    """A 2xx body that does not decode gives APIResponseValidationError keeping the body."""
    mock.reply_json(body, headers={"Content-Type": content_type})
    with pytest.raises(APIResponseValidationError, match=match) as info:
        await client.chat.completions.create(model="p/m", messages=MESSAGES)
    assert info.value.body == body


async def test_wrong_key_gives_authentication_error(mock):
    """The mock checks the key like the service: 401 with its error body."""
    async with AsyncRoutmy(api_key="sk-wrong-secret", base_url=mock.base_url) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.chat.completions.create(model="p/m", messages=MESSAGES)
    assert info.value.code == "Unauthorized" and "sk-wrong-secret" not in str(info.value)


async def test_locked_model_gives_permission_denied(client):
    """A listed but unavailable model answers 403."""
    with pytest.raises(PermissionDeniedError, match="not available"):
        await client.chat.completions.create(model="mock/locked", messages=MESSAGES)


async def test_key_echoed_by_server_is_redacted(mock):
    """If the server echoes the key in an error, the exception shows [REDACTED]."""
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as client:
        mock.reply_error(400, f"bad key {mock.api_key} here")
        with pytest.raises(BadRequestError) as info:
            await client.chat.completions.create(model="p/m", messages=MESSAGES)
    assert mock.api_key not in str(info.value) and "[REDACTED]" in str(info.value)
    assert mock.api_key not in repr(info.value.body)


async def test_debug_log_line_per_request_without_key(mock, caplog):
    """One debug line per attempt with method, path, status, attempt; never the key."""
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=1) as client:
        mock.reply_error(503, "busy", headers={"retry-after-ms": "1"})
        with caplog.at_level(logging.DEBUG, logger="routmy_async"):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    lines = [r.getMessage() for r in caplog.records if r.name == "routmy_async"]
    assert len(lines) == 2
    assert re.search(r"POST /v1/chat/completions -> 503 \(attempt 1, [\d.]+ ms\)", lines[0])
    assert re.search(r"-> 200 \(attempt 2", lines[1])
    assert all(mock.api_key not in line for line in lines)


def test_struct_response_format_and_tools_are_converted():
    """A Struct response_format and Python tools become their wire forms."""
    from routmy_async.resources.chat._completions import _prepare_fields

    class Answer(msgspec.Struct):
        value: int

    def lookup(key: str) -> str:
        """Find a key."""
        return key

    params: dict[str, Any] = {"response_format": Answer, "tools": [lookup]}
    finalize = _prepare_fields(params, {}, False)
    assert finalize is not None
    assert params["response_format"]["json_schema"]["name"] == "Answer"
    assert params["tools"][0]["function"]["name"] == "lookup"
