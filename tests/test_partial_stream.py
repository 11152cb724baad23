"""Partial structured output on real streams: snapshot, parsed, parsed_arguments, stream.partial,
eager validation and fenced answers, against a MockRoutmy on 127.0.0.1."""

from __future__ import annotations

import asyncio
import copy
import datetime
import enum
import itertools
import json
from typing import Any

import msgspec
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routmy_async import (
    APIConnectionError,
    AsyncRoutmy,
    ContentParseError,
    FieldValidationError,
    InvalidJSONError,
)
from routmy_async.testing import MockRoutmy
from routmy_async.testing._mock import sse_frame
from routmy_async.testing._replies import response_events, response_object
from routmy_async.types import ContentDeltaEvent
from tests.conftest import eventually

ASK = [{"role": "user", "content": "an order please"}]
BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Item(msgspec.Struct):
    name: str
    price: float
    color: Color


class Order(msgspec.Struct):
    order_id: str
    placed_at: datetime.datetime
    items: list[Item]


class OrderModel(pydantic.BaseModel):
    order_id: str
    count: int = pydantic.Field(ge=0)


ORDER = {
    "order_id": "A-1",
    "placed_at": "2026-01-02T03:04:05Z",
    "items": [
        {"name": "pen", "price": 1.5, "color": "red"},
        {"name": "ink \u00e9\U0001f600", "price": 20, "color": "blue"},
    ],
}


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    if content is not None:
        delta["content"] = content
    return {**BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def content_stream(text: str, size: int = 7) -> list[dict[str, Any]]:
    return [
        chunk("", role="assistant"),
        *(chunk(p) for p in pieces(text, size)),
        chunk(None, "stop"),
    ]


def consistent(partial: Any, final: Any) -> bool:
    """Whether a partial value shows only what the final one holds: keys and items of it,
    and a string that the final string begins with."""
    if isinstance(partial, dict):
        return isinstance(final, dict) and all(
            key in final and consistent(value, final[key]) for key, value in partial.items()
        )
    if isinstance(partial, list):
        return (
            isinstance(final, list)
            and len(partial) <= len(final)
            and all(consistent(a, b) for a, b in zip(partial, final, strict=False))
        )
    if isinstance(partial, str):
        return isinstance(final, str) and final.startswith(partial)
    return partial is None or partial == final


async def test_content_deltas_carry_snapshot_and_parsed(client, mock):
    """Each content.delta on a stream with a Struct response_format has the text so far and
    the partial value at that delta; the last equals the final message's parsed."""
    text = json.dumps(ORDER)
    mock.reply_stream(content_stream(text))
    seen: list[tuple[str, Any]] = []
    async with client.chat.completions.stream(
        model="p/m", messages=ASK, response_format=Order
    ) as stream:
        async for event in stream.events():
            if event.type == "content.delta":
                # Read when the event arrives, kept as it was then.
                seen.append((event.snapshot, copy.deepcopy(event.parsed)))
        final = await stream.get_final_completion()
    assert [snapshot for snapshot, _ in seen] == [
        text[: i + len(p)] for i, p in zip(range(0, len(text), 7), pieces(text, 7), strict=True)
    ]
    parsed = final.choices[0].message.parsed
    assert isinstance(parsed, Order) and parsed.items[1].color is Color.BLUE
    assert seen[-1][1] == ORDER
    assert seen[0][1] == {}
    assert all(consistent(value, ORDER) for _, value in seen)


async def test_an_older_event_read_late_gives_its_own_value(client, mock):
    """An event kept and read after later ones gives the value at its own delta (an
    independent object); one read at the newest event is the live value, which grows."""
    text = json.dumps({"a": "hello", "b": [1, 2, 3]})
    mock.reply_stream(content_stream(text, size=4))
    async with client.chat.completions.stream(
        model="p/m", messages=ASK, response_format={"type": "json_object"}
    ) as stream:
        events = [event async for event in stream.events() if event.type == "content.delta"]
    # Read in reverse: every read but the first is of an event older than one already read.
    values = [event.parsed for event in reversed(events)]
    assert values[0] == json.loads(text)
    expected = []
    for event in events:
        expected.append(_prefix_value(event.snapshot))
    assert list(reversed(values)) == expected


def _prefix_value(text: str) -> Any:
    from routmy_async._partial_json import PartialJSON

    parser = PartialJSON()
    parser.feed(text)
    return copy.deepcopy(parser.value)


async def test_a_value_read_at_the_newest_event_grows_in_place(client, mock):
    """The documented trade: parsed read at the newest event is the stream's live value, so a
    kept reference shows later deltas (copy.deepcopy keeps it as it was)."""
    mock.reply_stream(content_stream('{"name": "Ada", "tags": ["x", "y"]}', size=5))
    async with client.chat.completions.stream(
        model="p/m", messages=ASK, response_format={"type": "json_object"}
    ) as stream:
        kept = None
        async for event in stream.events():
            if event.type == "content.delta":
                value = event.parsed
                if kept is None and value:
                    kept, as_it_was = value, copy.deepcopy(value)
    assert as_it_was == {"name": ""}
    assert kept == {"name": "Ada", "tags": ["x", "y"]}


async def test_stream_partial_is_the_typed_value_so_far(client, mock):
    """stream.partial is the user's type with every field optional: a datetime or an enum
    stays None until its string is complete, then is converted; a closed object is the real
    Struct."""
    text = json.dumps(ORDER)
    mock.reply_stream(content_stream(text, size=3))
    partials: list[Any] = []
    async with client.chat.completions.stream(
        model="p/m", messages=ASK, response_format=Order
    ) as stream:
        assert stream.partial is None
        async for _ in stream:  # chunks, not events: partial follows them too
            current = stream.partial
            if current is not None:
                partials.append(
                    (current.placed_at, [getattr(i, "color", None) for i in current.items or []])
                )
        last = stream.partial
    assert isinstance(last, Order) and last.placed_at == datetime.datetime(
        2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc
    )
    placed = [placed_at for placed_at, _ in partials]
    # Absent while its string streams, a datetime once complete, never a piece of a string.
    assert None in placed and all(p is None or isinstance(p, datetime.datetime) for p in placed)
    colors = {color for _, item_colors in partials for color in item_colors}
    assert colors <= {None, Color.RED, Color.BLUE}


async def test_a_pydantic_model_partial_and_final(client, mock):
    """A Pydantic model works as the response_format: typed partial and final parsed."""
    mock.reply_stream(content_stream('{"order_id": "B-2", "count": 3}', size=4))
    async with client.chat.completions.stream(
        model="p/m", messages=ASK, response_format=OrderModel
    ) as stream:
        async for _ in stream:
            pass
        assert stream.partial == OrderModel(order_id="B-2", count=3)
        final = await stream.get_final_completion()
    assert final.choices[0].message.parsed == OrderModel(order_id="B-2", count=3)


async def test_a_stream_without_a_json_format_has_none_of_it(client, mock):
    """Without a JSON response_format: snapshot and parsed are None, stream.partial and
    to_sse(format='partial') say what is missing."""
    mock.reply_stream(content_stream('{"a": 1}'))
    async with client.chat.completions.stream(model="p/m", messages=ASK) as stream:
        events = [event async for event in stream.events()]
        with pytest.raises(RuntimeError, match="response_format"):
            _ = stream.partial
        with pytest.raises(ValueError, match="response_format"):
            stream.to_sse(format="partial")
    deltas = [event for event in events if event.type == "content.delta"]
    assert deltas and all(d.snapshot is None and d.parsed is None for d in deltas)


async def test_tool_call_argument_deltas_carry_parsed_arguments(client, mock):
    """tool_call.arguments.delta events give the arguments so far as JSON values."""
    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f"}}
    arguments = '{"city": "Paris", "days": 3}'
    mock.reply_stream(
        [
            chunk(None, tool_calls=[{**first, "function": {"name": "f", "arguments": ""}}]),
            *(
                chunk(None, tool_calls=[{"index": 0, "function": {"arguments": p}}])
                for p in pieces(arguments, 4)
            ),
            chunk(None, "tool_calls"),
        ]
    )
    async with client.chat.completions.stream(model="p/m", messages=ASK) as stream:
        seen = [
            copy.deepcopy(event.parsed_arguments)
            async for event in stream.events()
            if event.type == "tool_call.arguments.delta"
        ]
    assert seen[-1] == {"city": "Paris", "days": 3}
    assert {"city": "Paris"} in seen and seen[0] in (None, {})


async def test_parsed_raises_when_the_answer_is_not_json(client, mock):
    """Reading parsed once the text cannot become JSON raises InvalidJSONError naming the
    offset; the final parse fails too (nothing passes for an answer)."""
    mock.reply_stream(content_stream('{"a": 1} trailing words', size=6))
    async with client.chat.completions.stream(
        model="p/m", messages=ASK, response_format={"type": "json_object"}
    ) as stream:
        events = [event async for event in stream.events() if event.type == "content.delta"]
    assert events[0].parsed == {}
    with pytest.raises(InvalidJSONError) as caught:
        _ = events[-1].parsed
    assert caught.value.offset == 9


# -- eager validation ------------------------------------------------------------------------


async def test_eager_validation_stops_at_the_first_bad_field(client, mock):
    """validate='eager': an enum value that does not exist raises FieldValidationError naming
    the field as soon as it is complete; the stream is closed (no later chunk handed out,
    the connection not kept) and every later read raises."""
    bad = dict(ORDER, items=[{"name": "pen", "price": 1.5, "color": "green"}, *ORDER["items"]])
    text = json.dumps(bad)
    cut = text.index('"green"') + len('"green"')
    mock.reply_stream(content_stream(text, size=4))
    handed: list[str] = []
    async with client.chat.completions.stream(
        model="p/m", messages=ASK, response_format=Order, validate="eager"
    ) as stream:
        with pytest.raises(FieldValidationError) as caught:
            async for event in stream.events():
                if event.type == "content.delta":
                    handed.append(event.delta)
        error = caught.value
        assert error.path == ("items", 0, "color")
        assert "green" in str(error) and "items[0].color" in str(error)
        # Nothing after the delta that completed the bad value was handed out.
        assert len("".join(handed)) < cut <= len("".join(handed)) + 4
        assert error.content is not None and error.content.startswith(text[: cut - 4])
        with pytest.raises(APIConnectionError):
            await stream.__anext__()
        with pytest.raises(FieldValidationError):
            await stream.get_final_completion()
    assert client.connections_checked_out == 0
    assert await eventually(lambda: mock.open_connections == 0)


async def test_eager_validation_stops_a_stream_still_being_written(mock):
    """The stream is closed while the server is still sending (stalled after the bad field):
    the reader is not held until the answer's end, and no connection is kept."""
    bad = json.dumps({"order_id": "B-2", "count": -4, "more": "x" * 50})
    frames = content_stream(bad, size=8)
    # Everything but the last two chunks is written, then the server holds the body open.
    written = sum(len(sse_frame(frame)) for frame in frames[:-2])
    mock.reply_stream(frames, stall_after=written, stall_for=30)
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as client:
        async with client.chat.completions.stream(
            model="p/m", messages=ASK, response_format=OrderModel, validate="eager"
        ) as stream:
            with pytest.raises(FieldValidationError, match="count") as caught:
                async for _ in stream:
                    pass
            assert caught.value.path == ("count",)
            # Raised while the server still holds the body open (its end never came).
            assert mock.requests and not stream.completed
        assert client.connections_checked_out == 0


async def test_eager_without_a_json_format_is_refused_before_sending(client, mock):
    """validate='eager' needs a JSON format: a ValueError before anything is sent."""
    with pytest.raises(ValueError, match="response_format"):
        client.chat.completions.stream(model="p/m", messages=ASK, validate="eager")
    with pytest.raises(ValueError, match="'final' or 'eager'"):
        client.chat.completions.stream(
            model="p/m",
            messages=ASK,
            response_format=Order,
            validate="always",
        )
    assert mock.requests == []


async def test_eager_with_a_schema_dict_checks_the_schema(client, mock):
    """A json_schema dict is checked against its own schema."""
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "maximum": 10}},
        "required": ["n"],
    }
    mock.reply_stream(content_stream('{"n": 12, "m": 1}', size=3))
    form = {"type": "json_schema", "json_schema": {"name": "N", "schema": schema}}
    async with client.chat.completions.stream(
        model="p/m", messages=ASK, response_format=form, validate="eager"
    ) as stream:
        with pytest.raises(FieldValidationError, match="<= 10"):
            async for _ in stream:
                pass


# -- around the JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wrapped",
    [
        "```json\n{}\n```",
        "```\n{}\n```\nHope this helps.",
        "```json {}```",  # the fence and the JSON on one line
        "```{}```",
        "```json {}",  # a one-line fence that never closes
        "\ufeff  {}",
        "\n\n  {}  \n",
    ],
)
async def test_partials_and_final_read_inside_a_fence(client, mock, wrapped):
    """A BOM, whitespace or a Markdown fence around the JSON: the partials and the final
    parsed both read the JSON inside."""
    text = wrapped.replace("{}", json.dumps(ORDER))
    mock.reply_stream(content_stream(text, size=5))
    async with client.chat.completions.stream(
        model="p/m", messages=ASK, response_format=Order
    ) as stream:
        last = None
        async for event in stream.events():
            if event.type == "content.delta":
                last = event.parsed
        final = await stream.get_final_completion()
    assert last == ORDER
    assert msgspec.to_builtins(final.choices[0].message.parsed) == ORDER


async def test_create_parses_a_fenced_answer(client, mock):
    """create(response_format=Struct) parses an answer wrapped in a fence (it failed before)."""
    mock.reply_json(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "p/m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {
                        "role": "assistant",
                        "content": "```json\n" + json.dumps(ORDER) + "\n```",
                    },
                }
            ],
        }
    )
    completion = await client.chat.completions.create(
        model="p/m", messages=ASK, response_format=Order
    )
    assert completion.choices[0].message.parsed.order_id == "A-1"


async def test_a_fence_that_never_closes_is_not_passed_off(client, mock):
    """An opened fence whose JSON is cut off still fails the final parse."""
    mock.reply_stream(content_stream('```json\n{"order_id": "A', size=5))
    async with client.chat.completions.stream(
        model="p/m", messages=ASK, response_format=Order
    ) as stream:
        with pytest.raises(ContentParseError):
            await stream.get_final_completion()


# -- served to a page ------------------------------------------------------------------------


async def test_to_sse_partial_sends_the_value_as_it_grows(client, mock):
    """to_sse(format='partial') writes the answer so far as JSON frames, only when it
    changed, then [DONE]. (The chunks come apart, so that most arrive alone: chunks that
    arrive together make one frame.)"""
    mock.reply_stream(content_stream(json.dumps(ORDER), size=6), chunk_delay=0.01)
    stream = await client.chat.completions.create(
        model="p/m", messages=ASK, stream=True, response_format=Order
    )
    frames = [frame async for frame in stream.to_sse(format="partial")]
    assert frames[-1] == b"data: [DONE]\n\n"
    values = [json.loads(frame[6:]) for frame in frames[:-1]]
    assert values[-1] == ORDER
    assert len(values) > 5
    assert all(a != b for a, b in itertools.pairwise(values))


async def test_to_sse_partial_ends_with_an_error_frame_on_bad_json(client, mock):
    """A partial value that cannot be read (the text is not JSON) ends the body with an
    error frame, never [DONE]."""
    mock.reply_stream(content_stream('{"a": 1} oops', size=4))
    stream = await client.chat.completions.create(
        model="p/m", messages=ASK, stream=True, response_format={"type": "json_object"}
    )
    frames = [frame async for frame in stream.to_sse(format="partial")]
    assert frames[-1].startswith(b"event: error\n")
    assert b"InvalidJSONError" in frames[-1]


# -- the Responses API -----------------------------------------------------------------------


def response_stream(text: str | None = None, arguments: str | None = None) -> list[Any]:
    """The events of a response whose message says ``text`` (or whose one function call
    has ``arguments``), in small deltas."""
    body: dict[str, Any] = {"model": "p/m", "input": "x"}
    if arguments is not None:
        body["tools"] = [{"type": "function", "name": "f"}]
    response = response_object(body, created=1, serial=1)
    for item in response["output"]:
        if item["type"] == "message" and text is not None:
            item["content"][0]["text"] = text
        if item["type"] == "function_call" and arguments is not None:
            item["arguments"] = arguments
    return response_events(response, piece=5)


async def test_responses_text_deltas_carry_snapshot_and_parsed(client, mock):
    """response.output_text.delta events on a stream with a text_format carry snapshot and
    parsed; stream.partial is the typed value; the final output_parsed agrees."""
    text = json.dumps(ORDER)
    mock.reply_stream(response_stream(text), named=True, done=False)
    seen = []
    async with client.responses.stream(model="p/m", input="x", text_format=Order) as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                seen.append((event.snapshot, copy.deepcopy(event.parsed)))
        assert isinstance(stream.partial, Order)
        final = await stream.get_final_response()
    assert seen[-1] == (text, ORDER)
    assert all(text.startswith(snapshot) for snapshot, _ in seen)
    assert all(consistent(value, ORDER) for _, value in seen)
    assert msgspec.to_builtins(final.output_parsed) == ORDER


async def test_responses_function_call_deltas_carry_parsed_arguments(client, mock):
    """response.function_call_arguments.delta events give the arguments so far, on any
    stream (no text_format needed)."""
    mock.reply_stream(
        response_stream(arguments='{"city": "Oslo", "days": [1, 2]}'), named=True, done=False
    )
    async with client.responses.stream(model="p/m", input="x") as stream:
        seen = [
            copy.deepcopy(event.parsed_arguments)
            async for event in stream
            if event.type == "response.function_call_arguments.delta"
        ]
        with pytest.raises(RuntimeError, match="text_format"):
            _ = stream.partial
    assert seen[-1] == {"city": "Oslo", "days": [1, 2]}
    assert all(consistent(value, seen[-1]) for value in seen)


async def test_responses_eager_validation_closes_the_stream(client, mock):
    """validate='eager' on responses.stream: the first bad field raises at once, the
    connection is released and later reads raise."""
    bad = json.dumps(dict(ORDER, placed_at="yesterday"))
    mock.reply_stream(response_stream(bad), named=True, done=False)
    async with client.responses.stream(
        model="p/m", input="x", text_format=Order, validate="eager"
    ) as stream:
        with pytest.raises(FieldValidationError) as caught:
            async for _ in stream:
                pass
        assert caught.value.path == ("placed_at",)
        with pytest.raises(APIConnectionError):
            await stream.__anext__()
    assert client.connections_checked_out == 0
    with pytest.raises(ValueError, match="text_format"):
        client.responses.stream(model="p/m", input="x", validate="eager")


async def test_responses_to_sse_partial(client, mock):
    """A Responses stream with a text_format serves its partial JSON to a page too."""
    mock.reply_stream(response_stream(json.dumps(ORDER)), named=True, done=False)
    stream = await client.responses.create(
        model="p/m",
        input="x",
        stream=True,
        text={"format": {"type": "json_schema", "name": "Order", "schema": {}}},
    )
    frames = [frame async for frame in stream.to_sse(format="partial")]
    assert frames[-1] == b"data: [DONE]\n\n"
    assert json.loads(frames[-2][6:]) == ORDER


# -- any split -------------------------------------------------------------------------------

_ITEM = st.fixed_dictionaries(
    {
        "name": st.text(max_size=12),
        "price": st.floats(allow_nan=False, allow_infinity=False, width=32),
        "color": st.sampled_from(["red", "blue"]),
    }
)
_ORDERS = st.fixed_dictionaries(
    {
        "order_id": st.text(max_size=20),
        "placed_at": st.datetimes(
            min_value=datetime.datetime(2000, 1, 1), max_value=datetime.datetime(2100, 1, 1)
        ).map(lambda moment: moment.isoformat() + "Z"),
        "items": st.lists(_ITEM, max_size=4),
    }
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(order=_ORDERS, cuts=st.lists(st.integers(min_value=1, max_value=10**6), max_size=40))
def test_any_split_of_an_answer_gives_consistent_partials(order, cuts):
    """For an answer that fits the schema, split anywhere into SSE deltas (inside strings,
    escapes, surrogate pairs, numbers, literals, whitespace): every event's parsed shows only
    what the final value holds, the last one equals it, and the final parsed agrees."""
    text = json.dumps(order, indent=1)  # ASCII escapes, surrogate pairs and whitespace
    bounds = sorted({cut % len(text) for cut in cuts} - {0})
    deltas = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)], strict=True)]

    async def run() -> tuple[list[Any], Any]:
        async with MockRoutmy() as mock:
            frames = [chunk("", role="assistant"), *map(chunk, deltas), chunk(None, "stop")]
            mock.reply_stream(frames)
            async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
                async with client.chat.completions.stream(
                    model="p/m", messages=ASK, response_format=Order
                ) as stream:
                    values = [
                        copy.deepcopy(event.parsed)
                        async for event in stream.events()
                        if event.type == "content.delta"
                    ]
                    final = await stream.get_final_completion()
        return values, final.choices[0].message.parsed

    values, parsed = asyncio.run(run())
    final = json.loads(text)
    assert len(values) == len(deltas)
    assert all(consistent(value, final) for value in values)
    assert values[-1] == final
    assert msgspec.json.decode(msgspec.json.encode(parsed)) == msgspec.json.decode(
        msgspec.json.encode(msgspec.convert(final, Order))
    )


async def test_a_pickled_or_deep_copied_delta_event_keeps_its_parsed_value(client, mock):
    """Events kept across processes (pickle) or deep-copied keep snapshot and parsed: each
    the event's own value at its delta, which later deltas never change (a plain copy shares
    the original's)."""
    import pickle

    text = json.dumps(ORDER)
    mock.reply_stream(content_stream(text, size=9))
    async with client.chat.completions.stream(
        model="p/m", messages=ASK, response_format=Order
    ) as stream:
        kept = []
        async for event in stream.events():
            if event.type == "content.delta":
                kept.append((event, copy.deepcopy(event.parsed), event.snapshot))
                frozen = copy.deepcopy(event)
                assert frozen.parsed == event.parsed and frozen.parsed is not event.parsed
    for event, parsed, snapshot in kept:
        for again in (pickle.loads(pickle.dumps(event)), copy.deepcopy(event)):
            assert type(again) is type(event) and again == event
            assert again.snapshot == snapshot
            assert again.parsed == parsed
    assert pickle.loads(pickle.dumps(kept[-1][0])).parsed == ORDER

    mock.reply_stream(response_stream(text), named=True, done=False)
    async with client.responses.stream(model="p/m", input="x", text_format=Order) as stream:
        deltas = [e async for e in stream if e.type == "response.output_text.delta"]
    assert pickle.loads(pickle.dumps(deltas[-1])).parsed == ORDER
    mock.reply_stream(response_stream(arguments='{"city": "Oslo"}'), named=True, done=False)
    async with client.responses.stream(model="p/m", input="x") as plain:
        calls = [e async for e in plain if e.type == "response.function_call_arguments.delta"]
    assert pickle.loads(pickle.dumps(calls[-1])).parsed_arguments == {"city": "Oslo"}
    plain_event = pickle.loads(pickle.dumps(ContentDeltaEvent(delta="x")))
    assert plain_event.parsed is None and plain_event.snapshot is None


def two_message_response(first: str, second: str) -> dict[str, Any]:
    """A response whose output holds two message items (a preamble or a first attempt, then
    the answer), with these texts."""
    response = response_object({"model": "p/m", "input": "x"}, created=1, serial=1)
    [message] = [item for item in response["output"] if item["type"] == "message"]
    later = copy.deepcopy(message)
    message["content"][0]["text"] = first
    later["id"] = message["id"] + "_2"
    later["content"][0]["text"] = second
    response["output"].append(later)
    return response


@pytest.mark.parametrize(
    "first", ["I will read the order and answer in JSON.", json.dumps({**ORDER, "order_id": "X"})]
)
async def test_output_parsed_of_two_messages_is_the_last_messages_json(client, mock, first):
    """A Responses answer with two message items (prose then JSON, or two JSON answers):
    output_parsed is the JSON of the last message's text, the model's final answer, where it
    failed on the two texts joined; output_text still joins them all. The stream agrees:
    its partial, its final output_parsed and a 'patch' page all end on the last answer."""
    response = two_message_response(first, json.dumps(ORDER))
    mock.reply_json(response)
    parsed = await client.responses.parse(model="p/m", input="x", text_format=Order)
    assert msgspec.to_builtins(parsed.output_parsed) == ORDER
    assert parsed.output_text == first + json.dumps(ORDER)

    mock.reply_stream(response_events(response, piece=7), named=True, done=False)
    async with client.responses.stream(model="p/m", input="x", text_format=Order) as stream:
        async for _ in stream:
            pass
        assert msgspec.to_builtins(stream.partial) == ORDER
        final = await stream.get_final_response()
    assert msgspec.to_builtins(final.output_parsed) == ORDER

    if first.startswith("{"):  # a page following the answers sees the last one at the end
        from tests.test_sse_patch import page_of

        mock.reply_stream(response_events(response, piece=7), named=True, done=False)
        served = await client.responses.create(
            model="p/m", input="x", stream=True, text={"format": {"type": "json_object"}}
        )
        assert page_of([frame async for frame in served.to_sse(format="patch")]) == ORDER


@pytest.mark.parametrize("format", ["partial", "patch"])
async def test_a_prose_preamble_message_never_ends_a_partial_body(client, mock, format):
    """A Responses answer whose first message is prose and whose last is the JSON, served
    with its events apart (so the page reads the prose message while it is the latest): the
    prose shows nothing and ends nothing; the page ends on the JSON answer, then [DONE]."""
    from tests.test_sse_patch import data_of, page_of

    response = two_message_response("I will read the order first.", json.dumps(ORDER))
    mock.reply_stream(response_events(response, piece=7), named=True, done=False, chunk_delay=0.005)
    served = await client.responses.create(
        model="p/m", input="x", stream=True, text={"format": {"type": "json_object"}}
    )
    frames = [frame async for frame in served.to_sse(format=format)]
    assert frames[-1] == b"data: [DONE]\n\n"
    assert (page_of(frames) if format == "patch" else data_of(frames[-2])) == ORDER
