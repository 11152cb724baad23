"""client.responses on the wire: create, what is sent, parse, the tool loop, the mock route."""

from __future__ import annotations

import json
import logging

import aiohttp
import msgspec
import pytest

from routmy_async import (
    APIStatusError,
    AsyncRoutmy,
    AuthenticationError,
    BadRequestError,
    ContentParseError,
    InternalServerError,
    RateLimit,
    function_tool,
)
from routmy_async.testing import MockRoutmy
from routmy_async.types import (
    Response,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseReasoningItem,
    UnknownOutputItem,
)

TOOL_SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}},
    "required": ["order_id"],
}


class Order(msgspec.Struct):
    """An order and its status."""

    id: str
    status: str


async def get_order(order_id: str) -> dict[str, str]:
    """Look up an order.

    :param order_id: the order's id.
    """
    return {"order_id": order_id, "status": "shipped"}


def lookup_failing(order_id: str) -> str:
    """Always fails."""
    raise RuntimeError(f"database down for {order_id}")


async def test_create_returns_a_typed_response(client, mock):
    """A plain call: the Response is typed, output_text joins the text, usage and the
    request id are there."""
    response = await client.responses.create(model="mock/echo", input="What does it do?")
    assert isinstance(response, Response)
    assert response.status == "completed" and response.id.startswith("resp_mock_")
    assert response.output_text == "What does it do?"
    assert isinstance(response.output[0], ResponseOutputMessage)
    assert response.usage is not None and response.usage.total_tokens > 0
    assert response.request_id == "req-mock-1"
    assert response.raw["provider"] == "mock"
    assert mock.requests[0].path == "/v1/responses"


async def test_every_field_is_sent_as_given_and_unknown_ones_pass_through(client, mock):
    """Typed fields, unknown keywords and extra_body reach the body; options do not."""
    await client.responses.create(
        model="mock/echo",
        input="hi",
        instructions="Be brief.",
        text={"verbosity": "low"},
        reasoning={"effort": "low", "summary": "auto"},
        max_output_tokens=64,
        store=False,
        metadata={"run": "1"},
        temperature=0.5,
        top_p=0.9,
        parallel_tool_calls=False,
        tool_choice="auto",
        include=["reasoning.encrypted_content"],
        truncation="auto",
        brand_new_field={"x": 1},
        extra_body={"temperature": 0.1, "other": True},
        extra_headers={"X-Trace": "t1"},
        timeout=30,
    )
    sent = mock.requests[0]
    assert sent.json == {
        "model": "mock/echo",
        "input": "hi",
        "instructions": "Be brief.",
        "text": {"verbosity": "low"},
        "reasoning": {"effort": "low", "summary": "auto"},
        "max_output_tokens": 64,
        "store": False,
        "metadata": {"run": "1"},
        "temperature": 0.1,
        "top_p": 0.9,
        "parallel_tool_calls": False,
        "tool_choice": "auto",
        "include": ["reasoning.encrypted_content"],
        "truncation": "auto",
        "brand_new_field": {"x": 1},
        "other": True,
    }
    assert sent.headers["X-Trace"] == "t1"


async def test_output_items_of_a_response_go_back_into_input(client, mock):
    """Earlier output items (reasoning, calls, messages, unknown ones) are sent as to_param()
    next to messages with image parts and function_call_output items."""
    first = await client.responses.create(
        model="mock/reasoner", input="order A-1", tools=[get_order], reasoning={}
    )
    assert isinstance(first.output[0], ResponseReasoningItem)
    call = first.output[1]
    assert isinstance(call, ResponseFunctionToolCall) and call.name == "get_order"
    unknown = UnknownOutputItem({"type": "web_search_call", "id": "ws", "status": "completed"})
    items = [
        {
            "role": "user",
            "content": [
                {"type": "input_text", "text": "look"},
                {"type": "input_image", "image_url": "https://x.test/a.png", "detail": "low"},
            ],
        },
        *first.output,
        unknown,
        {"type": "function_call_output", "call_id": call.call_id, "output": "shipped"},
    ]
    second = await client.responses.create(model="mock/echo", input=items)
    sent = mock.requests[1].json["input"]
    assert sent[1] == first.output[0].to_param() and sent[2] == call.to_param()
    assert sent[3] == dict(unknown)
    assert second.output_text == "Tool results: shipped"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"model": 3, "input": "x"}, TypeError, "model"),
        ({"model": "m", "input": {"role": "user"}}, TypeError, "input must be"),
        ({"model": "m", "input": []}, ValueError, "empty"),
        ({"model": "m", "input": [{"content": "x"}]}, ValueError, r"input\[0\]"),
        ({"model": "m", "input": [3]}, TypeError, r"input\[0\]"),
        ({"model": "m", "input": "x", "temperature": "hot"}, TypeError, "temperature"),
        ({"model": "m", "input": "x", "text": "json"}, TypeError, "text"),
        ({"model": "m", "input": "x", "max_output_tokens": -1}, ValueError, "max_output_tokens"),
        ({"model": "m", "input": "x", "previous_response_id": 7}, TypeError, "previous"),
        ({"model": "m", "input": "x", "stream": "yes"}, TypeError, "stream"),
        ({"model": "m", "input": "x", "tools": "get_order"}, TypeError, "tools"),
        ({"model": "m", "input": "x", "extra_body": [1]}, TypeError, "extra_body"),
    ],
)
async def test_bad_arguments_are_refused_before_sending(client, mock, kwargs, error, match):
    """Each bad argument raises naming it, and nothing reaches the server."""
    with pytest.raises(error, match=match):
        await client.responses.create(**kwargs)
    assert mock.requests == []


@pytest.fixture
async def stateful():
    """A server that stores responses (the mock's "openrouter" flavor), and a client."""
    async with MockRoutmy(flavor="openrouter") as server:
        async with AsyncRoutmy(
            api_key=server.api_key, base_url=server.base_url, max_retries=0
        ) as client:
            yield server, client


async def test_input_may_be_left_out_with_a_previous_response(stateful):
    """Without input, previous_response_id carries the conversation on a server that keeps
    it (rout.my does not: see test_run_tools_by_previous_response_id_is_refused_against_routmy)."""
    mock, client = stateful
    first = await client.responses.create(model="mock/echo", input="remember me")
    again = await client.responses.create(model="mock/echo", previous_response_id=first.id)
    assert "input" not in mock.requests[1].json
    assert again.output_text == "remember me"
    with pytest.raises(BadRequestError, match="not found") as info:
        await client.responses.create(model="mock/echo", previous_response_id="resp_nope")
    assert info.value.code == "previous_response_not_found"


async def test_a_failed_response_is_returned_and_an_error_body_raised(client, mock):
    """A 200 response object with status failed is an answer (its error says why); a 200
    holding only an error object is the typed error."""
    failed = {
        "id": "resp_f",
        "object": "response",
        "status": "failed",
        "output": [],
        "error": {"code": "server_error", "message": "The model crashed"},
    }
    mock.reply_json(failed)
    response = await client.responses.create(model="mock/echo", input="x")
    assert response.status == "failed" and response.error is not None
    assert response.error.code == "server_error" and response.request_id is not None
    mock.reply_json({"error": {"message": "upstream down", "code": 502}})
    with pytest.raises(InternalServerError, match="upstream down"):
        await client.responses.create(model="mock/echo", input="x")
    mock.reply_json({"error": {"message": "odd", "code": "odd_code"}})
    with pytest.raises(APIStatusError, match="odd"):
        await client.responses.create(model="mock/echo", input="x")
    mock.reply_json({**failed, "output": "not a list"})
    with pytest.raises(APIStatusError, match="The model crashed"):
        await client.responses.create(model="mock/echo", input="x")
    # Without its (empty) output, and with a field no type declares: still the answer,
    # with everything the server sent.
    mock.reply_json({k: v for k, v in {**failed, "shard": 7}.items() if k != "output"})
    response = await client.responses.create(model="mock/echo", input="x")
    assert response.status == "failed" and response.output == []
    assert response.shard == 7 and response.raw["error"]["code"] == "server_error"


async def test_the_mock_checks_the_key_and_the_method(mock):
    """/responses is an API route like the others: a 401 without the key, 405 for GET, 400
    without a model."""
    async with AsyncRoutmy(api_key="sk-wrong", base_url=mock.base_url, max_retries=0) as client:
        with pytest.raises(AuthenticationError):
            await client.responses.create(model="mock/echo", input="x")
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as client:
        with pytest.raises(APIStatusError) as info:
            await client.get("/responses")
        assert info.value.status_code == 405
        with pytest.raises(BadRequestError, match="model"):
            await client.post("/responses", body={})
    # JSON that is not an object: the client only sends objects, so the bytes go as given.
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{mock.base_url}/responses",
            data=b"[1]",
            headers={"Authorization": f"Bearer {mock.api_key}", "Content-Type": "application/json"},
        ) as answer,
    ):
        assert answer.status == 400
        assert "Invalid request body" in (await answer.json())["error"]["message"]


async def test_a_token_budget_is_settled_with_the_usage(mock):
    """Under a tokens-per-minute budget, a response's usage settles the estimate."""
    limit = RateLimit(tokens_per_minute=100_000)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, rate_limit=limit) as c:
        await c.responses.create(model="mock/echo", input="a b c", instructions="short")
        first = await c.responses.create(
            model="mock/echo", input=[{"role": "user", "content": "hi"}]
        )
        await c.responses.create(model="mock/echo", previous_response_id=first.id)
        async with c.responses.stream(model="mock/echo", input="streamed") as stream:
            await stream.until_done()
    assert limit.tokens_per_minute == 100_000


# -- structured output ----------------------------------------------------------------------


async def test_parse_fills_output_parsed_and_sends_the_flat_text_format(client, mock):
    """parse(text_format=Struct) sends text.format as the flat strict json_schema (merged
    with text options) and decodes the answer into output_parsed."""
    response = await client.responses.parse(
        model="mock/echo", input="Order A-123 shipped", text_format=Order, text={"verbosity": "low"}
    )
    assert response.output_parsed == Order(id="A-123", status="shipped")
    text = mock.requests[0].json["text"]
    assert text["verbosity"] == "low"
    form = text["format"]
    assert form["type"] == "json_schema" and form["name"] == "Order" and form["strict"] is True
    assert form["schema"]["required"] == ["id", "status"]
    assert form["description"] == "An order and its status."


async def test_parse_with_a_dict_format_gives_plain_json(client):
    """A dict text_format is sent as given and the answer decodes to plain JSON values."""
    response = await client.responses.parse(
        model="mock/echo", input="hello", text_format={"type": "json_object"}
    )
    assert response.output_parsed == {"echo": "hello"}


async def test_parse_refuses_what_does_not_fit(client, mock):
    """A refusal, an incomplete answer, a failed one, no message and bad JSON each raise
    ContentParseError keeping the text."""
    refusal = {
        "object": "response",
        "status": "completed",
        "output": [
            {"type": "message", "id": "m", "content": [{"type": "refusal", "refusal": "No."}]}
        ],
    }
    mock.reply_json(refusal)
    with pytest.raises(ContentParseError, match="refused") as info:
        await client.responses.parse(model="mock/echo", input="x", text_format=Order)
    assert info.value.refusal == "No."
    with pytest.raises(ContentParseError, match="incomplete") as info:
        await client.responses.parse(
            model="mock/echo", input="one two three", text_format=Order, max_output_tokens=1
        )
    assert info.value.finish_reason == "max_output_tokens"
    mock.reply_json(
        {
            "object": "response",
            "status": "failed",
            "output": [],
            "error": {"code": "server_error", "message": "crashed"},
        }
    )
    with pytest.raises(ContentParseError, match="failed: crashed"):
        await client.responses.parse(model="mock/echo", input="x", text_format=Order)
    mock.reply_json({"object": "response", "status": "completed", "output": []})
    with pytest.raises(ContentParseError, match="no message"):
        await client.responses.parse(model="mock/echo", input="x", text_format=Order)
    text = {"type": "output_text", "text": '{"id": 1}'}
    mock.reply_json({"output": [{"type": "message", "id": "m", "content": [text]}]})
    with pytest.raises(ContentParseError, match="does not fit Order") as info:
        await client.responses.parse(model="mock/echo", input="x", text_format=Order)
    assert info.value.content == '{"id": 1}'
    mock.reply_json(
        {"output": [{"type": "message", "id": "m", "content": [{**text, "text": "{"}]}]}
    )
    with pytest.raises(ContentParseError, match="not valid JSON"):
        await client.responses.parse(model="mock/echo", input="x", text_format=Order)
    with pytest.raises(TypeError, match="text_format"):
        await client.responses.parse(model="mock/echo", input="x", text_format=3)
    with pytest.raises(TypeError, match="text must be"):
        await client.responses.parse(model="m", input="x", text_format=Order, text="x")


def text_part(text: str) -> dict[str, str]:
    return {"type": "output_text", "text": text}


async def test_parse_takes_a_pydantic_model(client, mock):
    """A Pydantic model is a text format too; a bad answer names the model."""
    pytest.importorskip("pydantic")
    from pydantic import BaseModel

    class Ticket(BaseModel):
        id: str
        status: str

    response = await client.responses.parse(
        model="mock/echo", input="Ticket T-9 open", text_format=Ticket
    )
    assert response.output_parsed == Ticket(id="T-9", status="open")
    mock.reply_json({"output": [{"type": "message", "id": "m", "content": [text_part("{}")]}]})
    with pytest.raises(ContentParseError, match="does not fit Ticket"):
        await client.responses.parse(model="mock/echo", input="x", text_format=Ticket)
    mock.reply_json({"output": [{"type": "message", "id": "m", "content": [text_part("{")]}]})
    with pytest.raises(ContentParseError, match="not valid JSON"):
        await client.responses.parse(model="mock/echo", input="x", text_format=Ticket)


# -- tools ----------------------------------------------------------------------------------


def test_function_tools_have_the_flat_responses_shape():
    """FunctionTool.responses_param is the flat shape, strict always stated."""
    tool = function_tool(get_order)
    assert tool.responses_param == {
        "type": "function",
        "name": "get_order",
        "description": "Look up an order.",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string", "description": "the order's id."}},
            "required": ["order_id"],
        },
        "strict": False,
    }
    strict = function_tool(Order, strict=True).responses_param
    assert strict["strict"] is True and strict["parameters"]["additionalProperties"] is False
    assert tool.param["function"]["name"] == "get_order"  # the chat shape is unchanged


async def test_create_sends_python_tools_flat_and_dicts_as_given(client, mock):
    """Functions become flat tool definitions; dict tools are sent untouched."""
    raw = {"type": "web_search_preview"}
    response = await client.responses.create(
        model="mock/echo", input="order B-7", tools=[get_order, raw]
    )
    tools = mock.requests[0].json["tools"]
    assert tools[0]["name"] == "get_order" and "function" not in tools[0]
    assert tools[1] == raw
    call = response.function_calls[0]
    assert json.loads(call.arguments) == {"order_id": "B-7"}
    await client.responses.create(
        model="mock/echo",
        input="x",
        tools=[{"type": "function", "name": "f", "parameters": TOOL_SCHEMA}],
    )
    assert mock.requests[1].json["tools"][0]["name"] == "f"


async def test_run_tools_resends_the_items_by_default(client, mock):
    """The loop runs the call, answers with function_call_output and resends every item;
    the transcript holds the whole run."""
    result = await client.responses.run_tools(
        model="mock/echo", input="Where is order A-123?", tools=[get_order]
    )
    assert result.output_text == 'Tool results: {"order_id":"A-123","status":"shipped"}'
    transcript = result.transcript or []
    assert [item.get("type", item.get("role")) for item in transcript] == [
        "user",
        "function_call",
        "function_call_output",
        "message",
    ]
    second = mock.requests[1].json
    assert second["input"] == transcript[:3] and "previous_response_id" not in second
    assert second["tools"][0]["strict"] is False


async def test_run_tools_can_continue_by_previous_response_id(stateful):
    """continue_with='previous_response_id' sends only the tool outputs after the previous
    response's id; a server that stores responses keeps the rest."""
    mock, client = stateful
    result = await client.responses.run_tools(
        model="mock/echo",
        input=[{"role": "user", "content": "Where is order C-9?"}],
        tools=[get_order],
        continue_with="previous_response_id",
    )
    first, second = (request.json for request in mock.requests)
    assert second["previous_response_id"].startswith("resp_mock_")
    assert [item["type"] for item in second["input"]] == ["function_call_output"]
    assert "C-9" in result.output_text and len(result.transcript or []) == 4
    assert first["input"] == [{"role": "user", "content": "Where is order C-9?"}]


async def test_run_tools_turns_failures_into_text_and_stops_at_max_rounds(client, mock):
    """A raising tool becomes an error text for the model; at max_rounds the last calls
    are not run."""
    result = await client.responses.run_tools(
        model="mock/echo", input="order D-1", tools=[lookup_failing]
    )
    outputs = [i for i in result.transcript or [] if i.get("type") == "function_call_output"]
    assert "RuntimeError: database down for" in outputs[0]["output"]
    stopped = await client.responses.run_tools(
        model="mock/echo", input="order E-2", tools=[get_order], max_rounds=1
    )
    assert stopped.function_calls and len(mock.requests) == 3
    assert (stopped.transcript or [])[-1]["type"] == "function_call"
    with pytest.raises(ValueError, match="continue_with"):
        await client.responses.run_tools(
            model="m",
            input="x",
            tools=[get_order],
            continue_with="memory",
        )
    with pytest.raises(ValueError, match="max_rounds"):
        await client.responses.run_tools(model="m", input="x", tools=[get_order], max_rounds=0)
    sent = len(mock.requests)
    with pytest.raises(ValueError, match="store=False"):
        await client.responses.run_tools(
            model="m",
            input="x",
            tools=[get_order],
            continue_with="previous_response_id",
            store=False,
        )
    assert len(mock.requests) == sent  # refused before anything ran


async def test_the_mock_answers_like_the_api(mock):
    """The mock: reasoning items with encrypted content when asked, incomplete answers at
    max_output_tokens, tool_choice by name, instructions and json_schema formats."""
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        thought = await client.responses.create(
            model="mock/reasoner",
            input="why",
            include=["reasoning.encrypted_content"],
            store=False,
        )
        reasoning = thought.output[0]
        assert isinstance(reasoning, ResponseReasoningItem) and reasoning.encrypted_content
        cut = await client.responses.create(
            model="mock/echo", input="one two three four", max_output_tokens=2
        )
        assert cut.status == "incomplete" and cut.output_text == "one two"
        assert cut.incomplete_details is not None
        assert cut.incomplete_details.reason == "max_output_tokens"
        chosen = await client.responses.create(
            model="mock/echo",
            input="order Z-1",
            instructions="Use tools.",
            tools=[get_order, {"type": "function", "name": "other", "parameters": TOOL_SCHEMA}],
            tool_choice={"type": "function", "name": "other"},
        )
        assert [call.name for call in chosen.function_calls] == ["other"]
    async with MockRoutmy(flavor="openrouter") as stateful_mock:
        async with AsyncRoutmy(
            api_key=stateful_mock.api_key, base_url=stateful_mock.base_url
        ) as client:
            unstored = await client.responses.create(model="mock/echo", input="x", store=False)
            with pytest.raises(BadRequestError, match="not found"):
                await client.responses.create(model="mock/echo", previous_response_id=unstored.id)


async def test_a_scripted_mock_stream_and_mock_helpers():
    """reply_stream(named=True) frames dicts with their event names."""
    from routmy_async.testing import sse_frame

    assert sse_frame({"type": "response.x"}, named=True) == (
        b'event: response.x\ndata: {"type":"response.x"}\n\n'
    )
    assert sse_frame({"no": "type"}, named=True) == b'data: {"no":"type"}\n\n'
    async with MockRoutmy() as mock:
        mock.reply_stream(
            [{"type": "response.completed", "response": {"id": "r", "output": []}}],
            named=True,
            done=False,
        )
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            async with client.responses.stream(model="mock/echo", input="x") as stream:
                final = await stream.get_final_response()
    assert final.id == "r"


# -- the command line -----------------------------------------------------------------------


def test_cli_chat_through_the_responses_api(capsys):
    """`routmy chat --api responses` streams (or, with --no-stream, prints) the answer."""
    from routmy_async._cli import main

    assert main(["chat", "Hello responses", "--mock", "--api", "responses"]) == 0
    assert capsys.readouterr().out == "Hello responses\n"
    argv = ["chat", "hi", "--mock", "--api", "responses", "--no-stream", "--json"]
    assert main([*argv, "--system", "Be brief"]) == 0
    assert json.loads(capsys.readouterr().out) == {"echo": "hi"}


async def test_cli_responses_stream_error_after_text(capsys):
    """An error event mid-stream ends the partial line, then prints the error line."""
    import asyncio

    from routmy_async._cli import main

    async with MockRoutmy() as mock:
        events = [
            {"type": "response.output_text.delta", "item_id": "m", "delta": "Hel"},
            {"type": "error", "code": "server_error", "message": "Provider failed"},
        ]
        mock.reply_stream(events, named=True, done=False)
        argv = ["chat", "hi", "--api", "responses", "--base-url", mock.base_url]
        assert await asyncio.to_thread(main, [*argv, "--api-key", mock.api_key]) == 1
    captured = capsys.readouterr()
    assert captured.out == "Hel\n"
    assert captured.err.startswith("error: stream error [server_error] Provider failed")


async def test_the_mock_keeps_only_recent_conversations(stateful, monkeypatch):
    """A long-running stateful mock forgets the oldest stored responses beyond its limit."""
    from routmy_async.testing import _mock

    _, client = stateful
    monkeypatch.setattr(_mock, "_STORED_RESPONSES", 1)
    first = await client.responses.create(model="mock/echo", input="one")
    second = await client.responses.create(model="mock/echo", input="two")
    again = await client.responses.create(model="mock/echo", previous_response_id=second.id)
    assert again.output_text == "two"
    with pytest.raises(BadRequestError, match="not found"):
        await client.responses.create(model="mock/echo", previous_response_id=first.id)


async def test_run_tools_by_previous_response_id_is_refused_against_routmy():
    """rout.my ignores previous_response_id: a loop continued by it would lose everything
    but the latest tool outputs, so it is refused before anything is sent."""
    async with AsyncRoutmy(api_key="sk-test", base_url="https://api.rout.my/v1") as client:
        with pytest.raises(ValueError, match=r"stateless.*continue_with='input'"):
            await client.responses.run_tools(
                model="mock/echo",
                input="Where is order C-9?",
                tools=[get_order],
                continue_with="previous_response_id",
            )


async def test_previous_response_id_to_routmy_is_said_once(caplog, monkeypatch):
    """Sent by hand to rout.my, previous_response_id is logged once as ignored by the
    service (it is valid, so not refused)."""
    from routmy_async.resources.responses import _responses as module

    monkeypatch.setattr(module, "_warned_stateless", False)
    async with AsyncRoutmy(
        api_key="sk-test", base_url="https://api.rout.my/v1", max_retries=0
    ) as client:
        with caplog.at_level(logging.WARNING, logger="routmy_async"):
            for _ in range(2):
                # Built and refused by the check before any I/O: a bad input keeps it offline.
                with pytest.raises(TypeError):
                    await client.responses.create(
                        model="mock/echo",
                        input=7,  # type: ignore[call-overload]
                        previous_response_id="resp_1",
                    )
    said = [r for r in caplog.records if "stateless" in r.getMessage()]
    assert len(said) == 1 and "previous_response_id is accepted and ignored" in said[0].getMessage()
