"""Responses partials follow a message, not a text part: a message's output_text parts
continue one answer (as output_parsed joins them), and under validate="eager" a message
whose text is not JSON is a possible preamble, refused only if it is still the latest
message when the response ends. Served by a MockRoutmy on 127.0.0.1."""

from __future__ import annotations

import copy
import json
from typing import Annotated, Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from routmy_async import ContentParseError, FieldValidationError, InvalidJSONError
from routmy_async._partial_stream import PartialAnswer
from routmy_async.testing import assert_no_open_connections
from routmy_async.testing._replies import response_events, response_object
from tests.test_partial_stream import consistent
from tests.test_sse_patch import page_of


def response_of(messages: list[list[str]]) -> dict[str, Any]:
    """A response whose output is these messages, each made of these output_text parts."""
    response = response_object({"model": "p/m", "input": "x"}, created=1, serial=1)
    template = next(item for item in response["output"] if item["type"] == "message")
    output = []
    for number, parts in enumerate(messages):
        message = copy.deepcopy(template)
        message["id"] = f"msg_{number}"
        message["content"] = [{**template["content"][0], "text": text} for text in parts]
        output.append(message)
    response["output"] = output
    return response


class Ranked(msgspec.Struct):
    id: str
    n: Annotated[int, msgspec.Meta(ge=10)]


# The number 12 cut between the two parts: the first part alone ends on "1", which a
# message-blind reader would take as complete (and eager would refuse, as n >= 10).
SPLIT_NUMBER = [['{"id": "A", "n": 1', '2, "note": "x"}']]


@pytest.mark.parametrize("validate", ["final", "eager"])
async def test_the_parts_of_one_message_continue_one_answer(client, mock, validate):
    """Every delta's parsed and snapshot read the message so far (both parts), no partial
    shows the number before it is complete, and the partial ends on output_parsed."""
    whole = "".join(SPLIT_NUMBER[0])
    mock.reply_stream(response_events(response_of(SPLIT_NUMBER), piece=3), named=True, done=False)
    seen: list[tuple[str | None, Any]] = []
    async with client.responses.stream(
        model="p/m", input="x", text_format=Ranked, validate=validate
    ) as stream:
        async for event in stream:
            if event.type == "response.output_text.delta":
                seen.append((event.snapshot, copy.deepcopy(event.parsed)))
        partial = stream.partial
        final = await stream.get_final_response()
    expected = json.loads(whole)
    assert final.output_parsed == Ranked(id="A", n=12)
    assert partial == final.output_parsed
    assert seen[-1] == (whole, expected)
    for snapshot, parsed in seen:
        assert snapshot is not None and whole.startswith(snapshot)
        assert consistent(parsed, expected)
        assert parsed is None or parsed.get("n") in (None, 12)
    assert_no_open_connections(client)


@pytest.mark.parametrize("format", ["partial", "patch"])
async def test_a_page_follows_one_message_across_its_parts(client, mock, format):
    """A page served the answer of a message in two parts ends on it with [DONE] (the second
    part alone, '2, "note": "x"}', is no JSON: it was an error frame)."""
    from tests.test_sse_patch import data_of

    mock.reply_stream(response_events(response_of(SPLIT_NUMBER), piece=3), named=True, done=False)
    served = await client.responses.create(
        model="p/m", input="x", stream=True, text={"format": {"type": "json_object"}}
    )
    frames = [frame async for frame in served.to_sse(format=format, keepalive=None)]
    assert frames[-1] == b"data: [DONE]\n\n"
    page = page_of(frames) if format == "patch" else data_of(frames[-2])
    assert page == json.loads("".join(SPLIT_NUMBER[0]))
    assert_no_open_connections(client)


async def test_eager_reads_the_json_message_after_a_preamble(client, mock):
    """Under eager, the preamble's deltas are handed out (their parsed raises, as without
    eager), the JSON message's are parsed, the stream ends normally and partial is the
    answer."""
    messages = [["Sure, here", " it is:"], ['{"id": "B", "n": 20}']]
    mock.reply_stream(response_events(response_of(messages), piece=4), named=True, done=False)
    types: list[str] = []
    async with client.responses.stream(
        model="p/m", input="x", text_format=Ranked, validate="eager"
    ) as stream:
        async for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta" and event.output_index == 0:
                with pytest.raises(InvalidJSONError):
                    _ = event.parsed
                assert "Sure, here it is:".startswith(event.snapshot or "?")
        assert stream.partial == Ranked(id="B", n=20)
        final = await stream.get_final_response()
    assert types[-1] == "response.completed"
    assert final.output_parsed == Ranked(id="B", n=20)
    assert_no_open_connections(client)


@pytest.mark.parametrize(
    "messages",
    [
        [["I cannot answer in JSON today."]],  # prose only
        [['{"id": "A", "n": 12}'], ["Hope this ", "helps!"]],  # the last message is prose
    ],
)
async def test_eager_refuses_a_latest_message_that_is_not_json_at_the_end(client, mock, messages):
    """The kept error is raised when the response ends with the prose message the latest,
    instead of response.completed (every earlier event handed out); it carries that
    message's text, get_final_response raises it again, and the parse of the same response
    without a stream refuses it too."""
    response = response_of(messages)
    events = response_events(response, piece=4)
    mock.reply_stream(events, named=True, done=False)
    handed_out = 0
    async with client.responses.stream(
        model="p/m", input="x", text_format=Ranked, validate="eager"
    ) as stream:
        with pytest.raises(InvalidJSONError) as caught:
            async for _ in stream:
                handed_out += 1
        with pytest.raises(InvalidJSONError) as again:
            await stream.get_final_response()
    assert again.value is caught.value
    assert handed_out == len(events) - 1  # all but response.completed
    assert caught.value.content == "".join(messages[-1])
    assert_no_open_connections(client)

    mock.reply_json(response)
    with pytest.raises(ContentParseError, match="not valid JSON"):
        await client.responses.parse(model="p/m", input="x", text_format=Ranked)


async def test_eager_fails_at_once_on_a_bad_field_after_a_preamble(client, mock):
    """A preamble is let through, but the JSON message after it is checked as it streams:
    a wrong type raises at once, before the response ends."""
    messages = [["Sure, here:"], ['{"id": 5, "n": 20, "note": "' + "x" * 60 + '"}']]
    mock.reply_stream(response_events(response_of(messages), piece=4), named=True, done=False)
    types: list[str] = []
    async with client.responses.stream(
        model="p/m", input="x", text_format=Ranked, validate="eager"
    ) as stream:
        with pytest.raises(FieldValidationError) as caught:
            async for event in stream:
                types.append(event.type)
    assert caught.value.path == ("id",)
    assert "response.output_item.done" in types  # the preamble's
    assert types[-1] == "response.output_text.delta" and "response.completed" not in types
    assert_no_open_connections(client)


# -- the answer's eager contract, pure ----------------------------------------------------


@given(
    text=st.one_of(
        st.text(alphabet='{}[]":, ab1\\', max_size=30),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=3), inner, max_size=3)
            ),
            max_leaves=8,
        ).map(json.dumps),
    ),
    data=st.data(),
)
def test_eager_add_raises_once_and_keeps_every_delta(text, data):
    """At any split, an eager answer raises at most once, at the delta that broke it, and
    that is its error; every delta is kept (the view's snapshot is the whole text); an
    answer that is JSON never raises and ends on json.loads's value."""
    cuts = sorted(set(data.draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=8))))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    answer = PartialAnswer(eager=True)
    raised = []
    for piece in pieces:
        try:
            answer.add(piece)
        except InvalidJSONError as error:
            raised.append(error)
    answer.end()
    assert answer.view().snapshot() == text
    assert len(raised) <= 1
    assert answer.error is (raised[0] if raised else None)
    try:
        expected = json.loads(text)
    except ValueError:
        return
    if text.strip():
        assert not raised
        assert answer.view().parsed() == expected
