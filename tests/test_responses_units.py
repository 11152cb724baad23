"""The Responses API without I/O: the types, the event decoder and the accumulator."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routmy_async import APIResponseValidationError
from routmy_async._streaming._sse import SSEDecoder, WireEvent
from routmy_async.resources.responses._accumulate import (
    EventLines,
    ResponseAccumulator,
    ResponseEventDecoder,
    decode_event,
)
from routmy_async.testing._replies import response_events, response_object
from routmy_async.types import (
    AnnotationURLCitation,
    Response,
    ResponseCompletedEvent,
    ResponseErrorEvent,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseTextDeltaEvent,
    UnknownAnnotation,
    UnknownContentPart,
    UnknownOutputItem,
    UnknownResponseEvent,
)
from routmy_async.types.response_events import KNOWN_EVENT_TYPES

FULL: dict[str, Any] = {
    "id": "resp_1",
    "object": "response",
    "created_at": 1700000000,
    "status": "completed",
    "model": "p/m",
    "output": [
        {
            "type": "reasoning",
            "id": "rs_1",
            "summary": [{"type": "summary_text", "text": "Thinking."}],
            "encrypted_content": "gAAA",
        },
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [
                {
                    "type": "output_text",
                    "text": "Hello ",
                    "annotations": [
                        {
                            "type": "url_citation",
                            "url": "https://x.test",
                            "title": "X",
                            "start_index": 0,
                            "end_index": 5,
                        },
                        {"type": "new_citation", "ref": 7},
                    ],
                },
                {"type": "refusal", "refusal": "no"},
                {"type": "output_text", "text": "world", "annotations": []},
                {"type": "output_audio", "data": "AAA"},
            ],
        },
        {
            "type": "function_call",
            "id": "fc_1",
            "call_id": "call_1",
            "name": "get_order",
            "arguments": '{"id": 1}',
            "status": "completed",
        },
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"q": "x"}},
    ],
    "usage": {
        "input_tokens": 10,
        "input_tokens_details": {"cached_tokens": 2},
        "output_tokens": 5,
        "output_tokens_details": {"reasoning_tokens": 1},
        "total_tokens": 15,
        "cost": 0.001,
    },
    "error": None,
    "incomplete_details": None,
    "safety_identifier": "user-7",
}


def test_response_decodes_every_item_type_and_keeps_unknown_ones():
    """A Response holds typed message, function_call and reasoning items; items, parts and
    annotations of other types are kept whole, and output_text joins the text parts."""
    response = msgspec.json.decode(json.dumps(FULL).encode(), type=Response)
    reasoning, message, call, search = response.output
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.summary_text == "Thinking." and reasoning.encrypted_content == "gAAA"
    assert isinstance(message, ResponseOutputMessage)
    first, refusal, _, audio = message.content
    assert isinstance(first, ResponseOutputText) and isinstance(refusal, ResponseOutputRefusal)
    assert isinstance(first.annotations[0], AnnotationURLCitation)
    assert first.annotations[0].url == "https://x.test"
    assert isinstance(first.annotations[1], UnknownAnnotation)
    assert first.annotations[1].ref == 7
    assert isinstance(audio, UnknownContentPart) and audio.type == "output_audio"
    assert isinstance(call, ResponseFunctionToolCall) and call.call_id == "call_1"
    assert isinstance(search, UnknownOutputItem)
    assert search.type == "web_search_call" and search.action == {"q": "x"}
    assert response.output_text == "Hello world" and message.text == "Hello world"
    assert response.function_calls == [call]
    assert response.usage is not None and response.usage.total_tokens == 15
    assert response.usage.input_tokens_details is not None
    assert response.usage.input_tokens_details.cached_tokens == 2
    assert response.output_parsed is None and response.transcript is None
    assert response.to_dict()["output"][3] == FULL["output"][3]


async def test_undeclared_fields_and_raw_stay_reachable(client, mock):
    """A top-level field the Struct does not declare is an attribute; .raw has everything."""
    mock.reply_json(FULL, headers={"x-request-id": "req-1"})
    response = await client.responses.create(model="mock/echo", input="hi")
    assert response.safety_identifier == "user-7"
    assert response.raw["output"][1]["content"][3] == {"type": "output_audio", "data": "AAA"}
    assert response.request_id == "req-1"
    with pytest.raises(AttributeError, match="no such field"):
        _ = response.nothing_like_this


def test_unknown_objects_read_as_attributes_and_go_back_unchanged():
    """An unknown item is its JSON object: attributes, a clear AttributeError, to_param()."""
    item = UnknownOutputItem({"type": "mcp_call", "id": "m1", "server_label": "s"})
    assert item.server_label == "s" and item.to_param() == dict(item) == item.to_dict()
    assert "UnknownOutputItem" in repr(item)
    with pytest.raises(AttributeError, match="'mcp_call' has no field 'other'"):
        _ = item.other
    with pytest.raises(AttributeError):
        _ = item._private
    assert UnknownAnnotation({"type": "file", "file": {"filename": "a.pdf"}}).type == "file"
    assert UnknownOutputItem({"type": 3}).type == ""  # type: ignore[comparison-overlap]


@pytest.mark.parametrize(
    "output",
    [
        [3],
        [{"type": "message", "content": "not a list"}],
        [{"type": "function_call", "arguments": 7}],
        [{"type": "message", "content": [{"type": "output_text", "text": 1}]}],
    ],
)
def test_a_known_type_of_the_wrong_shape_is_an_error(output):
    """Wrong fields of a modelled type do not pass as an unknown item: validation error."""
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(json.dumps({"output": output}).encode(), type=Response)


def test_output_items_go_back_as_input_items():
    """to_param() gives each item the shape the API takes back in a later input."""
    response = msgspec.json.decode(json.dumps(FULL).encode(), type=Response)
    reasoning, message, call, search = (item.to_param() for item in response.output)
    assert reasoning == {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": "Thinking."}],
        "encrypted_content": "gAAA",
    }
    assert message["id"] == "msg_1" and message["status"] == "completed"
    assert (
        message["content"][0]["annotations"][0] == FULL["output"][1]["content"][0]["annotations"][0]
    )
    assert message["content"][1] == {"type": "refusal", "refusal": "no"}
    assert message["content"][2] == {"type": "output_text", "text": "world", "annotations": []}
    assert call == {
        "type": "function_call",
        "call_id": "call_1",
        "name": "get_order",
        "arguments": '{"id": 1}',
        "id": "fc_1",
        "status": "completed",
    }
    assert search == FULL["output"][3]
    bare = ResponseOutputMessage(content=[ResponseOutputText(text="hi")], phase="final_answer")
    assert bare.to_param() == {"role": "assistant", "content": "hi"}
    with_id = msgspec.structs.replace(bare, id="m").to_param()
    assert with_id["phase"] == "final_answer" and with_id["status"] == "completed"
    thought = ResponseReasoningItem(id="r", content=[], status="completed").to_param()
    assert thought == {
        "type": "reasoning",
        "id": "r",
        "summary": [],
        "content": [],
        "status": "completed",
    }
    assert ResponseFunctionToolCall(call_id="c", namespace="ns").to_param()["namespace"] == "ns"


def test_a_response_built_by_hand_takes_dicts():
    """Response(output=[{...}]) decodes the dicts as the wire's would be."""
    response = Response(
        output=[{"type": "message", "content": [{"type": "output_text", "text": "a"}]}, {"x": 1}]  # type: ignore[list-item]
    )
    assert response.output_text == "a"
    assert isinstance(response.output[1], UnknownOutputItem)
    mixed = Response(output=[{"x": 1}, "as given"])  # type: ignore[list-item]
    assert mixed.output[1] == "as given"  # type: ignore[comparison-overlap]  # kept as given


# -- the event decoder ----------------------------------------------------------------------


def sample_events() -> list[dict[str, Any]]:
    """One stream from the mock with reasoning, a function call and a text answer."""
    body = {
        "model": "mock/reasoner",
        "input": "order A-1 please",
        "reasoning": {"effort": "low"},
        "tools": [
            {
                "type": "function",
                "name": "get_order",
                "parameters": {"type": "object", "properties": {"id": {"type": "string"}}},
            }
        ],
    }
    response = response_object(body, created=1, serial=1)
    answer = response_object({"model": "m", "input": "Here it is ☃"}, created=1, serial=2)
    response["output"].extend(answer["output"])  # a text answer after the call
    return response_events(response, piece=3)


EXTRA_EVENTS: list[dict[str, Any]] = [
    {"type": "response.queued", "response": {"id": "r", "status": "queued"}},
    {
        "type": "response.output_text.annotation.added",
        "item_id": "m",
        "annotation_index": 0,
        "annotation": {"type": "file_path", "file_id": "f"},
    },
    {"type": "response.refusal.delta", "item_id": "m", "delta": "no"},
    {"type": "response.refusal.done", "item_id": "m", "refusal": "no"},
    {"type": "response.reasoning_text.delta", "item_id": "r", "delta": "hm"},
    {"type": "response.reasoning_text.done", "item_id": "r", "text": "hm"},
    {"type": "response.failed", "response": {"status": "failed"}},
    {"type": "response.incomplete", "response": {"status": "incomplete"}},
    {"type": "error", "code": "server_error", "message": "boom"},
]


def test_every_event_type_decodes_to_its_class():
    """Each known type decodes to the class whose .type it is; none is left out."""
    seen = set()
    for payload in [*sample_events(), *EXTRA_EVENTS]:
        event = decode_event(json.dumps(payload).encode())
        assert event is not None and event.type == payload["type"]
        assert not isinstance(event, UnknownResponseEvent)
        seen.add(event.type)
    assert seen == KNOWN_EVENT_TYPES


def test_unknown_event_types_pass_through_whole():
    """An unknown type is an UnknownResponseEvent holding the JSON object."""
    data = b'{"type": "response.web_search_call.searching", "item_id": "ws", "sequence_number": 4}'
    event = decode_event(data)
    assert isinstance(event, UnknownResponseEvent)
    assert event.type == "response.web_search_call.searching" and event.sequence_number == 4


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        (b'{"type": "error", "code": 429, "message": "slow"}', 429, "slow"),
        (
            b'{"error": {"message": "Provider failed", "code": 502, "type": "x"}}',
            502,
            "Provider failed",
        ),
        (b'{"error": "plain text"}', None, "plain text"),
        (
            WireEvent(b'{"message": "boom", "code": "e1"}', event="error"),
            "e1",
            "boom",
        ),
        (WireEvent(b"upstream exploded", event="error"), None, "upstream exploded"),
        (WireEvent(b"[1, 2]", event="error"), None, "[1, 2]"),
        (WireEvent(b'{"message": 5}', event="error"), None, '{"message": 5}'),
    ],
)
def test_every_error_shape_becomes_an_error_event(data, code, message):
    """OpenAI's error event, a router's error object and `event: error` all decode alike."""
    event = decode_event(data)
    assert isinstance(event, ResponseErrorEvent)
    body = event.error
    assert (event.code if event.code is not None else body and body.code) == code
    assert (event.message or (body.message if body else "")) == message


def test_frames_that_are_no_event():
    """A named event without a type is skipped; a bad frame is a validation error."""
    assert decode_event(WireEvent(b"{}", event="ping")) is None
    with pytest.raises(APIResponseValidationError, match="not valid JSON") as info:
        decode_event(b"{not json")
    assert info.value.body == b"{not json"
    with pytest.raises(APIResponseValidationError, match="unexpected shape"):
        decode_event(b'{"type": "response.output_text.delta", "delta": 5}')
    with pytest.raises(APIResponseValidationError, match="unexpected shape"):
        decode_event(b'{"no_type": true}')


def frames(events: list[dict[str, Any]], *, named: bool, newline: str) -> bytes:
    out = []
    for event in events:
        lines = [f"event: {event['type']}"] if named else []
        lines.append("data: " + json.dumps(event, ensure_ascii=False))
        out.append(newline.join(lines) + newline + newline)
    return b": OPENROUTER PROCESSING\n\n" + "".join(out).encode()


def reference(data: bytes) -> list[Any]:
    """The events of a whole stream through the plain SSE decoder (no line dropping)."""
    decoder = SSEDecoder()
    return [decode_event(item) for item in decoder.feed_raw(data)]


@settings(max_examples=60, deadline=None)
@given(
    named=st.booleans(),
    newline=st.sampled_from(["\n", "\r\n", "\r"]),
    cuts=st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=40),
    text=st.text(min_size=1, max_size=30),
)
def test_byte_splits_give_the_same_events(named, newline, cuts, text):
    """Any split of the bytes, named or not, LF/CRLF/CR: the same events as in one piece,
    and the event lines dropped before the SSE decoder change nothing."""
    events = sample_events()
    events.insert(5, {"type": "response.output_text.delta", "item_id": "x", "delta": text})
    data = frames(events, named=named, newline=newline)
    expected = reference(data)
    decoder = ResponseEventDecoder()
    got = []
    start = 0
    for cut in [*sorted({c % (len(data) + 1) for c in cuts}), len(data)]:
        got.extend(decoder.feed(data[start:cut]))
        start = cut
    assert got == expected and len(got) == len(events)
    assert not decoder.done


def test_event_lines_drop_only_whole_lines():
    """A split event line, a CR line end and other names are left for the SSE decoder."""
    lines = EventLines()
    assert lines(b"event: response.a\ndata: 1\n\nevent: response.b\ndata: 2\n\n") == (
        b"data: 1\n\ndata: 2\n\n"
    )
    assert lines(b"event: resp") == b"event: resp"  # not at a line start next time
    assert lines(b"onse.c\ndata: 3\n\n") == b"onse.c\ndata: 3\n\n"
    assert lines(b"event: error\ndata: x\n\n") == b"event: error\ndata: x\n\n"
    assert lines(b"event: response.d\r\ndata: 4\r\n\r\n") == b"event: response.d\r\ndata: 4\r\n\r\n"


def test_done_marker_ends_the_decoder():
    """A ping is no event; data: [DONE] (some routers add it) stops decoding."""
    decoder = ResponseEventDecoder()
    assert decoder.feed(b"event: ping\ndata: {}\n\n") == []
    assert decoder.feed(b"data: [DONE]\n\n") == [] and decoder.done


# -- the accumulator ------------------------------------------------------------------------


def accumulate(events: list[dict[str, Any]]) -> ResponseAccumulator:
    accumulator = ResponseAccumulator()
    for payload in events:
        event = decode_event(json.dumps(payload).encode())
        assert event is not None
        accumulator.add(event)
    return accumulator


def test_the_accumulated_output_equals_the_final_response():
    """Built from the deltas alone (a completed event without output), the output is the one
    the server reports."""
    events = sample_events()
    final = events[-1]["response"]
    whole = accumulate(events).response()
    assert [item.to_param() for item in whole.output] == final["output"]
    events[-1] = {**events[-1], "response": {**final, "output": []}}
    # Without the done items too: only the deltas and the added skeletons remain.
    events = [e for e in events if e["type"] != "response.output_item.done"]
    built = accumulate(events).response()
    assert built.output_text == whole.output_text
    assert [item.to_param()["type"] for item in built.output] == [
        "reasoning",
        "function_call",
        "message",
    ]
    assert built.function_calls[0].arguments == whole.function_calls[0].arguments
    reasoning = built.output[0]
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.summary_text == final["output"][0]["summary"][0]["text"]
    assert built.usage is not None and built.status == "completed"


def test_out_of_order_output_indexes_are_sorted():
    """Items arriving at output_index 2, 0, 1 come out in index order."""
    events = []
    for index in (2, 0, 1):
        item = {"type": "message", "id": f"m{index}", "content": []}
        events.append({"type": "response.output_item.added", "output_index": index, "item": item})
    for index in (1, 2, 0):
        events.append(
            {
                "type": "response.output_text.delta",
                "item_id": f"m{index}",
                "output_index": index,
                "delta": str(index),
            }
        )
    response = accumulate(events).response()
    assert response.output_text == "012" and response.status == "in_progress"


def test_interleaved_function_calls_stay_apart():
    """Argument fragments of two calls interleave; each call gets its own."""
    events: list[dict[str, Any]] = [{"type": "response.created", "response": {"id": "r"}}]
    for index in (0, 1):
        item = {"type": "function_call", "id": f"fc{index}", "call_id": f"c{index}", "name": "f"}
        events.append({"type": "response.output_item.added", "output_index": index, "item": item})
    for piece in ('{"a"', '{"b"', ": 1}", ": 2}"):
        index = 0 if "a" in piece or piece == ": 1}" else 1
        events.append(
            {
                "type": "response.function_call_arguments.delta",
                "item_id": f"fc{index}",
                "output_index": index,
                "delta": piece,
            }
        )
    calls = accumulate(events).response().function_calls
    assert [json.loads(call.arguments) for call in calls] == [{"a": 1}, {"b": 2}]


def test_deltas_before_their_items_make_the_items():
    """A server that skips output_item.added still yields whole items, and a late added
    event gives the item its fields without losing the pieces."""
    events: list[dict[str, Any]] = [
        {"type": "response.output_text.delta", "item_id": "m", "output_index": 0, "delta": "Hi"},
        {
            "type": "response.function_call_arguments.delta",
            "item_id": "f",
            "output_index": 1,
            "delta": "{}",
        },
        {
            "type": "response.reasoning_summary_text.delta",
            "item_id": "r",
            "output_index": 2,
            "delta": "a",
        },
        {
            "type": "response.reasoning_summary_text.done",
            "item_id": "r",
            "output_index": 2,
            "text": "",
        },
        {"type": "response.reasoning_text.delta", "item_id": "r", "output_index": 2, "delta": "b"},
        {
            "type": "response.refusal.delta",
            "item_id": "m",
            "output_index": 0,
            "content_index": 1,
            "delta": "n",
        },
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {"type": "function_call", "id": "f", "call_id": "c", "name": "late"},
        },
    ]
    message, call, reasoning = accumulate(events).response().output
    assert isinstance(message, ResponseOutputMessage) and message.text == "Hi"
    assert isinstance(message.content[1], ResponseOutputRefusal)
    assert isinstance(call, ResponseFunctionToolCall)
    assert (call.name, call.call_id, call.arguments) == ("late", "c", "{}")
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.summary_text == "a" and reasoning.content is not None
    assert reasoning.content[0].text == "b"


def test_done_events_are_authoritative_but_never_erase():
    """.done texts replace the pieces; an empty .done text, or a done item without content,
    keeps what streamed; a second item at a taken index is kept after the others."""
    message = {"type": "message", "id": "m", "content": []}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": 0, "item": message},
        {
            "type": "response.content_part.added",
            "item_id": "m",
            "part": {"type": "output_text", "text": "pre", "annotations": []},
        },
        {"type": "response.output_text.delta", "item_id": "m", "delta": "x"},
        {"type": "response.output_text.done", "item_id": "m", "text": ""},
        {
            "type": "response.output_text.annotation.added",
            "item_id": "m",
            "annotation": {"type": "url_citation", "url": "u"},
        },
        {
            "type": "response.content_part.added",
            "item_id": "m",
            "content_index": 1,
            "part": {"type": "refusal", "refusal": "r"},
        },
        {
            "type": "response.content_part.done",
            "item_id": "m",
            "content_index": 1,
            "part": {"type": "refusal", "refusal": "refused"},
        },
        {
            "type": "response.content_part.done",
            "item_id": "m",
            "content_index": 2,
            "part": {"type": "output_image", "url": "u"},
        },
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "function_call", "id": "other", "call_id": "c"},
        },
        {"type": "response.function_call_arguments.delta", "item_id": "other", "delta": "{"},
        {
            "type": "response.function_call_arguments.done",
            "item_id": "other",
            "arguments": "{}",
            "name": "g",
        },
        {
            "type": "response.output_item.done",
            "output_index": 1,
            "item": {"type": "function_call", "id": "other", "call_id": "c", "name": "g"},
        },
    ]
    message_out, call = accumulate(events).response().output
    assert isinstance(message_out, ResponseOutputMessage)
    text, refusal, image = message_out.content
    assert isinstance(text, ResponseOutputText) and text.text == "prex"
    assert isinstance(text.annotations[0], AnnotationURLCitation)
    assert isinstance(refusal, ResponseOutputRefusal) and refusal.refusal == "refused"
    assert isinstance(image, UnknownContentPart)
    assert isinstance(call, ResponseFunctionToolCall) and call.arguments == "{}"


def test_events_that_change_nothing():
    """Unknown events, errors and events without an item leave the response as it was."""
    accumulator = accumulate(
        [
            {"type": "response.output_item.added", "output_index": 0, "item": None},
            {"type": "response.output_item.done", "output_index": 0},
            {"type": "response.content_part.added", "item_id": "m"},
            {"type": "response.output_text.annotation.added", "item_id": "m"},
            {"type": "response.reasoning_summary_part.added", "item_id": "r", "output_index": 1},
        ]
    )
    accumulator.add(UnknownResponseEvent({"type": "response.x"}))
    accumulator.add(ResponseErrorEvent(message="m"))
    assert accumulator.event_count == 7 and accumulator.terminal is None
    assert accumulator.usage_tokens is None
    assert len(accumulator.response().output) == 1  # the reasoning item a summary part made


def test_a_terminal_event_with_output_is_the_answer():
    """response.completed carrying output is taken as it is, and its usage is known."""
    final = response_object({"model": "m", "input": "a b c"}, created=1, serial=3)
    accumulator = accumulate([{"type": "response.completed", "response": final}])
    assert isinstance(accumulator.terminal, ResponseCompletedEvent)
    assert accumulator.response().output_text == "a b c"
    assert accumulator.usage_tokens == final["usage"]["total_tokens"]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.text(max_size=8), max_size=30), st.lists(st.text(max_size=8), max_size=30))
def test_deltas_join_to_the_whole_text(text_pieces, argument_pieces):
    """Whatever the pieces, the accumulated text and arguments are their concatenation."""
    accumulator = ResponseAccumulator()
    for piece in text_pieces:
        accumulator.add(ResponseTextDeltaEvent(item_id="m", delta=piece))
    for piece in argument_pieces:
        accumulator.add(
            decode_event(
                json.dumps(
                    {
                        "type": "response.function_call_arguments.delta",
                        "item_id": "f",
                        "output_index": 1,
                        "delta": piece,
                    }
                ).encode()
            )  # type: ignore[arg-type]
        )
    response = accumulator.response()
    assert response.output_text == "".join(text_pieces)
    calls = response.function_calls
    assert (calls[0].arguments if calls else "") == "".join(argument_pieces)


def test_every_event_kind_folds_in():
    """Done items fill in a response whose terminal event has no output; refusals,
    annotations, reasoning text, unknown items and items without an added event all land."""
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"id": "r", "status": "in_progress"}},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {"type": "computer_call"},
        },
        {
            "type": "response.output_item.added",
            "output_index": 1,
            "item": {"type": "message", "id": "m", "content": []},
        },
        {
            "type": "response.content_part.added",
            "item_id": "m",
            "output_index": 1,
            "part": {"type": "refusal", "refusal": "I "},
        },
        {"type": "response.refusal.delta", "item_id": "m", "output_index": 1, "delta": "can't"},
        {"type": "response.refusal.done", "item_id": "m", "output_index": 1, "refusal": "I can't"},
        {
            "type": "response.content_part.done",
            "item_id": "m",
            "output_index": 1,
            "content_index": 1,
            "part": {
                "type": "output_text",
                "text": "see",
                "annotations": [{"type": "file_citation", "file_id": "f", "filename": "a"}],
            },
        },
        {"type": "response.reasoning_text.delta", "item_id": "r2", "output_index": 2, "delta": "x"},
        {"type": "response.reasoning_text.done", "item_id": "r2", "output_index": 2, "text": "xy"},
        {
            "type": "response.output_item.done",
            "output_index": 2,
            "item": {"type": "reasoning", "id": "r2", "summary": [], "encrypted_content": "e"},
        },
        {
            "type": "response.output_item.done",
            "output_index": 3,
            "item": {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
        },
        {"type": "response.completed", "response": {"id": "r", "status": "completed"}},
    ]
    unknown, message, reasoning, call = accumulate(events).response().output
    assert isinstance(unknown, UnknownOutputItem) and unknown.type == "computer_call"
    assert isinstance(message, ResponseOutputMessage)
    refusal, text = message.content
    assert isinstance(refusal, ResponseOutputRefusal) and refusal.refusal == "I can't"
    assert isinstance(text, ResponseOutputText) and text.text == "see"
    assert text.annotations[0].type == "file_citation"
    assert isinstance(reasoning, ResponseReasoningItem) and reasoning.encrypted_content == "e"
    assert isinstance(call, ResponseFunctionToolCall) and call.call_id == "c"
