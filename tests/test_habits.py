"""What users coming from openai-python do without thinking, against real loopback servers.

Each test is written the way such a user writes the call: appending a response message to
``messages``, deriving a client from a temporary one, reading an error's fields, trusting a
router's 200, reading parallel tool calls, and so on.
"""

from __future__ import annotations

import asyncio
import gc
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
import pytest

from routmy_async import (
    APIResponseValidationError,
    APIStatusError,
    APIStreamError,
    AsyncRoutmy,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    RoutmyError,
    Timeout,
)
from routmy_async.testing import MockRoutmy, assert_no_open_connections
from routmy_async.types import ChatCompletionMessage, ToolCallArgumentsDeltaEvent
from tests.conftest import RawServer, eventually, read_request

KEY = "sk-habits-SECRET-7f3a9c"
MESSAGES = [{"role": "user", "content": "hi"}]
BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}


def chunk_of(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {**BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


TOOL_COMPLETION: dict[str, Any] = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "p/m",
    "choices": [
        {
            "index": 0,
            "finish_reason": "tool_calls",
            "message": {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "annotations": [],
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"q": 1}'},
                    }
                ],
                "reasoning_details": [
                    {"type": "reasoning.encrypted", "data": "opaque==", "id": "r1", "format": None}
                ],
            },
        }
    ],
}


def last_sent_message(mock: MockRoutmy) -> dict[str, Any]:
    message: dict[str, Any] = mock.requests[-1].json["messages"][-1]
    return message


# -- messages from responses go back as valid request messages ---------------------------


async def test_appended_message_from_create_is_sent_as_to_param(mock, client):
    mock.reply_json(TOOL_COMPLETION)
    completion = await client.chat.completions.create(model="p/m", messages=MESSAGES)
    message = completion.choices[0].message
    messages: list[Any] = [*MESSAGES, message]
    messages.append({"role": "tool", "tool_call_id": "call_a", "content": "42"})
    await client.chat.completions.create(model="mock/echo", messages=messages)
    sent = mock.requests[-1].json["messages"][1]
    assert sent == message.to_param()
    assert sent["role"] == "assistant"
    assert sent["tool_calls"] == [
        {
            "id": "call_a",
            "type": "function",
            "function": {"name": "lookup", "arguments": '{"q": 1}'},
        }
    ]
    for response_only in ("parsed", "annotations", "refusal", "images"):
        assert response_only not in sent
    # reasoning_details go back exactly as the server sent them, null fields included.
    assert (
        sent["reasoning_details"] == TOOL_COMPLETION["choices"][0]["message"]["reasoning_details"]
    )


async def test_appended_message_from_a_stream_without_role_is_sent_whole(mock, client):
    """A stream whose deltas never carry a role, tool calls keyed by index."""
    mock.reply_stream(
        [
            chunk_of({"content": "Let me look."}),
            chunk_of(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_a",
                            "function": {"name": "lookup", "arguments": ""},
                        }
                    ]
                }
            ),
            chunk_of({"tool_calls": [{"index": 0, "function": {"arguments": '{"q": 2}'}}]}),
            chunk_of({}, "tool_calls"),
        ]
    )
    async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
        final = await stream.until_done()
    message = final.choices[0].message
    await client.chat.completions.create(model="mock/echo", messages=[*MESSAGES, message])
    sent = last_sent_message(mock)
    assert sent == message.to_param()
    assert sent == {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "lookup", "arguments": '{"q": 2}'},
            }
        ],
    }


async def test_tool_call_objects_inside_a_dict_message_lose_their_index(mock, client):
    mock.reply_json(TOOL_COMPLETION)
    completion = await client.chat.completions.create(model="p/m", messages=MESSAGES)
    calls = completion.choices[0].message.tool_calls
    assert calls is not None and calls[0].index == 0
    assistant = {"role": "assistant", "content": None, "tool_calls": calls}
    await client.chat.completions.create(model="mock/echo", messages=[*MESSAGES, assistant])
    sent = last_sent_message(mock)
    assert sent["tool_calls"] == [call.to_param() for call in calls]
    assert "index" not in sent["tool_calls"][0]


async def test_run_tools_transcript_messages_are_request_messages(mock, client):
    mock.reply_json(TOOL_COMPLETION)

    async def lookup(q: int) -> str:
        return f"found {q}"

    result = await client.chat.completions.run_tools(
        model="mock/echo", messages=MESSAGES, tools=[lookup]
    )
    second = mock.requests[-1].json["messages"]
    assert second[1]["role"] == "assistant" and "index" not in second[1]["tool_calls"][0]
    assert second[2] == {
        "role": "tool",
        "tool_call_id": "call_a",
        "name": "lookup",
        "content": "found 1",
    }
    assert result.transcript is not None
    assert result.transcript[1] == second[1]


def test_a_message_that_is_not_a_message_is_refused_before_sending():
    from routmy_async._params import check_messages
    from routmy_async.types import Usage

    with pytest.raises(TypeError, match=r"messages\[1\]"):
        check_messages([*MESSAGES, Usage()])


# -- a derived client outlives its parent ------------------------------------------------


async def test_with_options_on_a_temporary_client_keeps_the_pool(mock):
    client = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url).with_options(timeout=5)
    gc.collect()  # the temporary parent is gone
    assert not client.is_closed
    completion = await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert completion.choices[0].message.content
    assert mock.open_connections == 1
    await client.close()  # the last client of an ownerless pool closes it
    assert await eventually(lambda: mock.open_connections == 0)


async def test_the_pool_closes_with_the_last_of_several_derived_clients(mock):
    parent = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url)
    first = parent.with_options(max_retries=0)
    second = parent.with_options(timeout=3)
    del parent
    gc.collect()
    await first.chat.completions.create(model="mock/echo", messages=MESSAGES)
    await first.close()
    await asyncio.sleep(0.05)  # time for a close to reach the server, if one were sent
    assert mock.open_connections == 1  # second still uses the pool
    await second.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert mock.connections_seen == 1
    await second.close()
    assert await eventually(lambda: mock.open_connections == 0)
    await second.close()  # twice is fine


async def test_closing_the_owner_still_closes_the_shared_pool(mock):
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as parent:
        derived = parent.with_options(timeout=5)
        await derived.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert derived.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        await derived.chat.completions.create(model="mock/echo", messages=MESSAGES)


async def test_an_unclosed_last_client_still_warns_and_releases(mock):
    client = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url).with_options(timeout=5)
    await client.models.list()
    assert mock.open_connections == 1
    with pytest.warns(ResourceWarning, match="unclosed"):
        del client
        gc.collect()
    assert await eventually(lambda: mock.open_connections == 0)


# -- secrets at one boundary ------------------------------------------------------------


def assert_no_key(error: BaseException) -> None:
    """The key appears nowhere: str, repr, args, every attribute, the whole chain."""
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        assert KEY not in str(link), repr(link)
        assert KEY not in repr(link)
        assert KEY not in repr(link.args)
        for name, value in vars(link).items():
            assert KEY not in repr(value), (type(link).__name__, name)
        link = link.__cause__ or link.__context__


async def test_a_key_echoed_in_error_metadata_is_gone_and_the_body_stays_a_dict():
    echoed = {
        "error": {
            "message": f"key {KEY} rejected",
            "type": "authentication_error",
            "code": f"bad-{KEY}",
            "metadata": {"raw": f"Bearer {KEY}", "list": [KEY, 1]},
        }
    }
    async with MockRoutmy() as mock:
        mock.reply_json(echoed, status=401, headers={"x-echo": f"Bearer {KEY}"})
        async with AsyncRoutmy(api_key=KEY, base_url=mock.base_url) as client:
            with pytest.raises(AuthenticationError) as caught:
                await client.chat.completions.create(model="p/m", messages=MESSAGES)
    error = caught.value
    assert_no_key(error)
    assert isinstance(error.body, dict)
    assert error.body["error"]["metadata"] == {
        "raw": "Bearer [REDACTED]",
        "list": ["[REDACTED]", 1],
    }
    assert error.metadata == {"raw": "Bearer [REDACTED]", "list": ["[REDACTED]", 1]}
    assert error.headers["x-echo"] == "Bearer [REDACTED]"
    assert error.message == "key [REDACTED] rejected"


async def test_a_key_in_a_stream_error_frame_is_gone():
    frame = {"error": {"message": f"upstream saw {KEY}", "code": 502, "metadata": {"k": KEY}}}
    async with MockRoutmy() as mock:
        mock.reply_stream([chunk_of({"content": "a"}), frame], done=False)
        async with AsyncRoutmy(api_key=KEY, base_url=mock.base_url) as client:
            with pytest.raises(APIStreamError) as caught:
                async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as s:
                    async for _ in s:
                        pass
    assert_no_key(caught.value)
    assert caught.value.metadata == {"k": "[REDACTED]"}
    assert caught.value.code == 502


async def test_a_key_in_an_undecodable_answer_is_gone():
    async with MockRoutmy() as mock:
        mock.reply_json(f'{{"choices": "Bearer {KEY}"}}'.encode())
        async with AsyncRoutmy(api_key=KEY, base_url=mock.base_url) as client:
            with pytest.raises(APIResponseValidationError) as caught:
                await client.chat.completions.create(model="p/m", messages=MESSAGES)
    assert_no_key(caught.value)
    assert b"[REDACTED]" in caught.value.body


async def test_a_malformed_http_answer_leaves_no_key_in_the_cause_chain():
    """aiohttp keeps the request headers in the ClientResponseError it raises."""

    async def garbage(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n{}")
        await writer.drain()

    async with RawServer(garbage) as server:
        async with AsyncRoutmy(api_key=KEY, base_url=server.base_url, max_retries=0) as client:
            with pytest.raises(RoutmyError) as caught:
                await client.models.list()
    assert_no_key(caught.value)


# -- a 2xx answer that is an error is an error -------------------------------------------


@pytest.mark.parametrize(
    ("code", "expected", "status"),
    [(502, InternalServerError, 502), ("429", RateLimitError, 429), ("oops", APIStatusError, 200)],
)
async def test_a_200_holding_only_an_error_raises_the_typed_error(mock, code, expected, status):
    body = {"error": {"message": "no provider succeeded", "code": code}}
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as client:
        calls: list[Callable[[], Awaitable[Any]]] = [
            lambda: client.chat.completions.create(model="p/m", messages=MESSAGES),
            lambda: client.embeddings.create(model="mock/embed", input="x"),
            lambda: client.images.generate(model="mock/image", prompt="x"),
        ]
        for call in calls:
            mock.reply_json(body)
            with pytest.raises(expected) as caught:
                await call()
            assert caught.value.status_code == status
            assert caught.value.message == "no provider succeeded"
            assert caught.value.code == code


async def test_a_200_error_with_a_retryable_code_is_retried(mock):
    mock.reply_json(
        {"error": {"message": "overloaded", "code": 503}}, headers={"retry-after-ms": "1"}
    )
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=1) as client:
        completion = await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    assert completion.choices[0].message.content
    assert len(mock.requests) == 2


async def test_an_answer_that_mentions_error_is_still_an_answer(mock, client):
    mock.reply_json(
        {
            "id": "c",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": '"error"'}}],
            "error": None,
        }
    )
    completion = await client.chat.completions.create(model="p/m", messages=MESSAGES)
    assert completion.choices[0].message.content == '"error"'


# -- parallel tool calls that share an index --------------------------------------------


def shared_index_stream() -> list[dict[str, Any]]:
    def call(fragment: dict[str, Any]) -> dict[str, Any]:
        return chunk_of({"tool_calls": [{"index": 0, **fragment}]})

    return [
        call(
            {"id": "call_a", "type": "function", "function": {"name": "weather", "arguments": ""}}
        ),
        call({"function": {"arguments": '{"city": '}}),
        call({"function": {"arguments": '"Oslo"}'}}),
        call({"id": "call_b", "type": "function", "function": {"name": "time", "arguments": ""}}),
        call({"function": {"arguments": '{"tz": "CET"}'}}),
        chunk_of({}, "tool_calls"),
    ]


async def test_parallel_calls_sharing_index_zero_stay_apart(mock, client):
    mock.reply_stream(shared_index_stream())
    async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
        deltas = [e async for e in stream.events() if isinstance(e, ToolCallArgumentsDeltaEvent)]
        final = await stream.until_done()
    calls = final.choices[0].message.tool_calls
    assert calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_a", "weather", '{"city": "Oslo"}'),
        ("call_b", "time", '{"tz": "CET"}'),
    ]
    by_id: dict[str, str] = {}
    for event in deltas:
        by_id[event.id] = by_id.get(event.id, "") + event.arguments_delta
    assert by_id == {"call_a": '{"city": "Oslo"}', "call_b": '{"tz": "CET"}'}
    assert [e.name for e in deltas] == ["weather", "weather", "time"]


async def test_events_name_the_right_call_for_indexless_fragments_in_one_read(mock, client):
    """Index-less fragments of two calls arrive in one network read (one decoded batch)."""

    def call(fragment: dict[str, Any]) -> dict[str, Any]:
        return chunk_of({"tool_calls": [fragment]})

    mock.reply_stream(
        [
            call({"id": "a", "function": {"name": "first", "arguments": '{"x":'}}),
            call({"function": {"arguments": "1}"}}),
            call({"id": "b", "function": {"name": "second", "arguments": '{"y":'}}),
            call({"function": {"arguments": "2}"}}),
            chunk_of({}, "tool_calls"),
        ]
    )
    async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
        events = [e async for e in stream.events() if isinstance(e, ToolCallArgumentsDeltaEvent)]
        final = await stream.until_done()
    assert [(e.name, e.arguments_delta) for e in events] == [
        ("first", '{"x":'),
        ("first", "1}"),
        ("second", '{"y":'),
        ("second", "2}"),
    ]
    calls = final.choices[0].message.tool_calls
    assert calls is not None
    assert [c.function.arguments for c in calls] == ['{"x":1}', '{"y":2}']


# -- SSE per the WHATWG rules -------------------------------------------------------------


async def test_bom_empty_data_and_named_events_on_the_wire(mock, client):
    first = b"\xef\xbb\xbf" + b"data: " + json.dumps(chunk_of({"content": "Hel"})).encode()
    mock.reply_stream(
        [
            first + b"\n\n",
            b"data:\n\n",
            b"event: ping\ndata: {}\n\n",
            chunk_of({"content": "lo"}),
            chunk_of({}, "stop"),
        ],
        write_size=1,  # every byte its own write: the BOM arrives split
    )
    async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
        text = "".join([piece async for piece in stream.text_deltas()])
    assert text == "Hello"
    assert stream.ignored_events == 1


# -- timeouts are values ------------------------------------------------------------------


async def test_timeout_is_immutable_and_checked(mock):
    client = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url)
    other = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url)
    with pytest.raises(AttributeError, match="immutable"):
        client.timeout.read = 1
    assert other.timeout.read == 600.0
    assert client.timeout.replace(read=1).read == 1
    for bad in (math.nan, -1.0, 0):
        with pytest.raises(ValueError, match="positive"):
            Timeout(read=bad)
        with pytest.raises(ValueError):
            client.with_options(timeout=bad)
    await client.close()
    await other.close()


async def test_per_call_float_timeouts_do_not_grow_a_cache(mock):
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        for step in range(200):
            await client.models.list(timeout=30.0 + step / 1000)
        assert len(client._transport._client_timeouts) <= 64


# -- a borrowed session is honoured safely -------------------------------------------------


async def test_a_borrowed_raise_for_status_session_still_gets_typed_errors(mock):
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        async with AsyncRoutmy(
            api_key="wrong", base_url=mock.base_url, session=session, max_retries=2
        ) as client:
            with pytest.raises(AuthenticationError):
                await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
            mock.reply_error(400, "bad")
            with pytest.raises(BadRequestError):
                await client.models.list()
        assert len(mock.requests) == 2  # neither was retried as a connection error
        assert not session.closed


async def test_pool_settings_with_a_borrowed_session_are_refused():
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="borrowed session"):
            AsyncRoutmy(api_key="k", session=session, max_connections=10)
        with pytest.raises(ValueError, match="borrowed session"):
            AsyncRoutmy(api_key="k", session=session, verify=False)


# -- round trip as a property ---------------------------------------------------------------


def test_to_param_of_any_message_decodes_as_an_assistant_message():
    from hypothesis import given
    from hypothesis import strategies as st

    text = st.text(max_size=20)
    calls = st.lists(
        st.builds(
            lambda i, name, args, idx: {
                "id": f"call_{i}",
                "function": {"name": name, "arguments": args},
                "index": idx,
            },
            st.integers(0, 99),
            st.from_regex(r"[a-z_]{1,10}", fullmatch=True),
            text,
            st.none() | st.integers(0, 5),
        ),
        max_size=3,
    )
    details = st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["reasoning.text", "reasoning.encrypted"])},
            optional={"text": text, "data": text, "format": st.none(), "index": st.integers(0, 3)},
        ),
        max_size=3,
    )

    @given(st.none() | text, st.none() | calls, st.none() | details, st.none() | text)
    def check(content, tool_calls, reasoning_details, refusal):
        wire = {"content": content, "tool_calls": tool_calls, "refusal": refusal}
        wire["reasoning_details"] = reasoning_details
        message = msgspec.json.decode(msgspec.json.encode(wire), type=ChatCompletionMessage)
        sent = msgspec.json.encode(message.to_param())
        back = msgspec.json.decode(sent)
        assert back["role"] == "assistant"
        assert "index" not in json.dumps(back.get("tool_calls") or [])
        again = msgspec.json.decode(sent, type=ChatCompletionMessage)
        assert again.content == content
        assert again.reasoning_details == reasoning_details
        assert again.refusal == refusal
        assert [(c.id, c.type, c.function) for c in again.tool_calls or []] == [
            (c.id, "function", c.function) for c in message.tool_calls or []
        ]

    check()


async def test_a_stream_answered_with_a_json_error_raises_the_typed_error(mock, client):
    """The router fails before streaming and answers 200 application/json with an error."""
    mock.reply_json({"error": {"message": "no provider", "code": 502}})
    with pytest.raises(InternalServerError, match="no provider"):
        async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
            await stream.until_done()
    mock.reply_json({"id": "x", "choices": []})
    with pytest.raises(APIResponseValidationError, match="expected an event stream") as caught:
        await client.chat.completions.create(model="p/m", messages=MESSAGES, stream=True)
    assert caught.value.body == b'{"id": "x", "choices": []}'
    assert_no_open_connections(client)


async def test_interleaved_calls_sharing_an_index_and_repeating_their_ids(mock, client):
    def call(fragment: dict[str, Any]) -> dict[str, Any]:
        return chunk_of({"tool_calls": [{"index": 0, **fragment}]})

    mock.reply_stream(
        [
            call({"id": "a", "function": {"name": "weather", "arguments": '{"city":'}}),
            call({"id": "b", "function": {"name": "time", "arguments": '{"tz":'}}),
            call({"id": "a", "function": {"arguments": '"Paris"}'}}),
            call({"id": "b", "function": {"arguments": '"CET"}'}}),
            chunk_of({}, "tool_calls"),
        ]
    )
    async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
        final = await stream.until_done()
    calls = final.choices[0].message.tool_calls
    assert calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("a", "weather", '{"city":"Paris"}'),
        ("b", "time", '{"tz":"CET"}'),
    ]


@pytest.mark.parametrize("empty", ['"choices": []', '"data": []', '"choices": null'])
async def test_a_200_error_with_an_empty_payload_list_is_an_error(mock, client, empty):
    body = f'{{"error": {{"message": "No endpoints found", "code": 404}}, {empty}}}'
    mock.reply_json(body.encode())
    with pytest.raises(NotFoundError, match="No endpoints found"):
        await client.chat.completions.create(model="p/m", messages=MESSAGES)


def test_answer_error_looks_only_at_error_only_bodies():
    from routmy_async._exceptions import answer_error

    def status_of(body: bytes) -> int | None:
        error = answer_error(200, body, {})
        return None if error is None else error.status_code

    assert status_of(b'{"error": {"message": "x", "code": 503}}') == 503
    assert status_of(b'{"error": {"message": "x", "code": "429"}, "choices": [ ]}') == 429
    assert status_of(b'{"error": "plain text", "data": null}') == 200
    assert status_of(b'{"error": {"message": "x"}, "choices": [{"index": 0}]}') is None
    assert status_of(b'{"error": null, "choices": []}') is None
    assert status_of(b'{"error": {"message": "x"}, "data": [{"embedding": []}]}') is None
    assert status_of(b"not json") is None
