"""Cold review of issue 28 (partial structured output): what a user met, as failing tests
first, against a MockRoutmy on 127.0.0.1."""

from __future__ import annotations

import copy
import datetime
import json
from typing import Annotated, Any

import msgspec
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from routmy_async import FieldValidationError
from routmy_async._partial_json import PartialJSON
from routmy_async._partial_patch import PatchWriter, apply_patch
from routmy_async.testing import assert_no_open_connections
from tests.test_partial_stream import consistent

ASK = [{"role": "user", "content": "an answer please"}]
BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    if content is not None:
        delta["content"] = content
    return {**BASE, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


def content_stream(text: str, size: int = 3) -> list[dict[str, Any]]:
    return [
        chunk("", role="assistant"),
        *(chunk(text[i : i + size]) for i in range(0, len(text), size)),
        chunk(None, "stop"),
    ]


async def stream_partials(client: Any, target: Any, *, validate: str = "final") -> tuple[Any, Any]:
    """Every stream.partial read at each content delta (copied), and the final parse."""
    partials: list[Any] = []
    async with client.chat.completions.stream(
        model="p/m", messages=ASK, response_format=target, validate=validate
    ) as stream:
        async for event in stream.events():
            if event.type == "content.delta":
                partials.append(copy.deepcopy(stream.partial))
        final = await stream.get_final_completion()
    return partials, final.choices[0].message.parsed


class Attachment(pydantic.BaseModel):
    name: str
    data: bytes


async def test_a_pydantic_field_shows_what_the_final_parse_gives(client, mock):
    """A Pydantic model's field is converted as Pydantic reads JSON: a `bytes` field is the
    string's UTF-8 bytes (what model_validate_json gives), not msgspec's base64 decoding."""
    answer = {"name": "note", "data": "aGk="}
    mock.reply_stream(content_stream(json.dumps(answer)))
    partials, final = await stream_partials(client, Attachment)
    assert final == Attachment(name="note", data=b"aGk=")
    shown = [p.data for p in partials if p is not None and p.data is not None]
    assert shown and all(data == b"aGk=" for data in shown)
    assert partials[-1] == final


class Meeting(pydantic.BaseModel):
    title: str
    starts: datetime.datetime = pydantic.Field(strict=True)


@pytest.mark.parametrize("validate", ["final", "eager"])
async def test_a_strict_pydantic_datetime_field_streams_and_is_not_refused(client, mock, validate):
    """Field(strict=True) on a datetime: JSON gives it as a string, which Pydantic's JSON mode
    accepts. The partial shows it once complete, the last partial is the model, and eager
    validation does not refuse the correct answer."""
    answer = {"starts": "2026-01-02T03:04:05Z", "title": "review"}
    mock.reply_stream(content_stream(json.dumps(answer)))
    partials, final = await stream_partials(client, Meeting, validate=validate)
    assert final.starts == datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    assert any(p is not None and p.starts == final.starts and p.title is None for p in partials)
    assert partials[-1] == final
    assert_no_open_connections(client)


class Counted(msgspec.Struct):
    count: Annotated[int, msgspec.Meta(ge=0)]


async def test_an_eager_type_error_names_the_type_in_words(client, mock):
    """A float (2.0) where a constrained int belongs (msgspec refuses it): the reason names
    'an int', not the annotation's machinery ('a Annotated')."""
    mock.reply_stream(content_stream('{"count": 2.0}'))
    with pytest.raises(FieldValidationError) as caught:
        await stream_partials(client, Counted, validate="eager")
    assert caught.value.path == ("count",)
    assert "Annotated" not in caught.value.reason
    assert "int" in caught.value.reason
    assert_no_open_connections(client)


class Note(pydantic.BaseModel):
    title: str
    tags: list[str]
    score: float


async def test_every_byte_in_its_own_tcp_write_gives_consistent_partials(raw_server):
    """A raw SSE server writes every byte of the stream separately (UTF-8 characters, escapes,
    surrogate pairs and numbers cut everywhere): every partial agrees with the final value and
    the last equals it."""
    import asyncio

    from routmy_async import AsyncRoutmy
    from tests.conftest import chunk as http_chunk
    from tests.conftest import chunked_head, read_request

    answer: dict[str, Any] = {
        "title": 'caf\u00e9 \U0001f600 "q" \\ \u2028',
        "tags": ["\u00e9", "b\nc"],
        "score": -1.25e-3,
    }
    # The escapes as JSON text gives them (\ud83d\ude00) and the raw characters, both.
    text = json.dumps(answer)[:-1] + ', "extra": "\U0001f600"}'
    frames = (
        b"".join(
            b"data: " + json.dumps(c, ensure_ascii=False).encode() + b"\n\n"
            for c in content_stream(text, size=2)
        )
        + b"data: [DONE]\n\n"
    )

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(chunked_head())
        for byte in frames:
            writer.write(http_chunk(bytes([byte])))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async with (
        raw_server(serve) as server,
        AsyncRoutmy(api_key="k", base_url=server.base_url, max_retries=0) as client,
    ):
        seen: list[Any] = []
        async with client.chat.completions.stream(
            model="p/m", messages=ASK, response_format=Note
        ) as stream:
            async for event in stream.events():
                if event.type == "content.delta":
                    seen.append((copy.deepcopy(event.parsed), copy.deepcopy(stream.partial)))
            final = await stream.get_final_completion()
        assert_no_open_connections(client)
    expected = {**answer, "extra": "\U0001f600"}
    assert final.choices[0].message.parsed == Note(**answer)
    assert seen[-1] == (expected, Note(**answer))
    for parsed, partial in seen:
        assert consistent(parsed, expected)
        if partial is not None and not isinstance(partial, Note):
            assert partial.score in (None, answer["score"])
            assert answer["title"].startswith(partial.title or "")
            assert consistent(partial.tags, answer["tags"])


class Shipment(pydantic.BaseModel):
    shipped: datetime.datetime
    parcels: int = pydantic.Field(ge=1)


@pytest.mark.parametrize(
    ("shipped", "parcels"),
    [
        ("2026-01-02", 2),  # a date alone: Pydantic reads midnight; msgspec's format check not
        ("2026-01-02T03:04Z", 2),  # no seconds
        ("2026-01-02T03:04:05Z", "2"),  # Pydantic's lax mode reads a number in a string
    ],
)
async def test_eager_never_refuses_what_the_pydantic_final_parse_accepts(
    client, mock, shipped, parcels
):
    """The docs: a check never rejects what the final parse would accept. For a Pydantic
    model the final parse is model_validate_json, laxer than the JSON schema in places."""
    mock.reply_stream(content_stream(json.dumps({"shipped": shipped, "parcels": parcels})))
    partials, final = await stream_partials(client, Shipment, validate="eager")
    assert final == Shipment.model_validate_json(
        json.dumps({"shipped": shipped, "parcels": parcels})
    )
    assert partials[-1] == final


async def test_eager_still_refuses_what_the_pydantic_final_parse_refuses(client, mock):
    """The lax reading above does not let a wrong value through: '0' parcels is below the
    bound, 'soon' is no datetime."""
    for answer, field in (
        ({"shipped": "2026-01-02T03:04:05Z", "parcels": "0"}, "parcels"),
        ({"shipped": "soon", "parcels": 2}, "shipped"),
    ):
        mock.reply_stream(content_stream(json.dumps(answer)))
        with pytest.raises(FieldValidationError) as caught:
            await stream_partials(client, Shipment, validate="eager")
        assert caught.value.path == (field,)
        assert_no_open_connections(client)


class Order(pydantic.BaseModel):
    id: str
    status: str


@pytest.mark.parametrize(
    ("text", "finish", "target"),
    [
        ('{"id": "A-1", "status": "shi', "length", Order),  # cut by the token limit
        ('{"id": "A-1", "status": "shi', "stop", {"type": "json_object"}),  # cut, any format
        ('{"id": "A-1"}', "stop", Order),  # a required field missing
        ('{"id": 5, "status": "x"}', "stop", Order),  # a wrong type
    ],
)
async def test_a_partial_page_never_gets_done_for_an_answer_the_final_parse_refuses(
    client, mock, text, finish, target
):
    """to_sse(format='partial'): a page cannot tell a cut or unfit answer from a whole one by
    its frames ({"status": "shi"} looks finished), so the body ends with an error frame, never
    [DONE], where get_final_completion() would raise."""
    chunks = [chunk("", role="assistant"), *content_stream(text, size=4)[1:-1], chunk(None, finish)]
    mock.reply_stream(chunks)
    stream = await client.chat.completions.create(
        model="p/m", messages=ASK, stream=True, response_format=target
    )
    frames = [frame async for frame in stream.to_sse(format="partial")]
    assert b"data: [DONE]\n\n" not in frames
    assert frames[-1].startswith(b"event: error\n")
    assert json.loads(frames[-1].split(b"data: ", 1)[1])["error"]["message"]
    assert_no_open_connections(client)


async def test_a_whole_answer_still_ends_with_done(client, mock):
    mock.reply_stream(content_stream('{"id": "A-1", "status": "shipped"}'))
    stream = await client.chat.completions.create(
        model="p/m", messages=ASK, stream=True, response_format=Order
    )
    frames = [frame async for frame in stream.to_sse(format="partial")]
    assert frames[-2:] == [b'data: {"id":"A-1","status":"shipped"}\n\n', b"data: [DONE]\n\n"]


async def test_a_responses_partial_page_never_gets_done_for_a_cut_answer(client, mock):
    """The same on a Responses stream: an answer cut short ends with an error frame."""
    from tests.test_partial_stream import response_stream

    mock.reply_stream(response_stream('{"id": "A-1", "status": "shi'), named=True, done=False)
    stream = await client.responses.create(
        model="p/m",
        input="x",
        stream=True,
        text={"format": {"type": "json_schema", "name": "Order", "schema": {}}},
    )
    frames = [frame async for frame in stream.to_sse(format="partial")]
    assert b"data: [DONE]\n\n" not in frames
    assert frames[-1].startswith(b"event: error\n")


class Coded(pydantic.BaseModel):
    name: str
    code: str

    @pydantic.field_validator("code")
    @classmethod
    def upper(cls, value: str) -> str:
        return value.upper()


class Trimmed(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(str_strip_whitespace=True)
    name: str


class Catalog(pydantic.BaseModel):
    coded: list[Coded]
    trimmed: Trimmed


async def test_a_field_the_model_rewrites_is_never_shown_as_it_was_sent(client, mock):
    """A field validator (upper-casing) or a str_strip_whitespace config changes the value:
    the partial never shows the raw 'abc' or '  bob  ' that the final parse turns into 'ABC'
    and 'bob'; such a field is None until its object closes, then the model's own value."""
    answer = {"coded": [{"name": "n", "code": "abc"}], "trimmed": {"name": "  bob  "}}
    mock.reply_stream(content_stream(json.dumps(answer), size=2))
    partials, final = await stream_partials(client, Catalog)
    assert final == Catalog(coded=[Coded(name="n", code="ABC")], trimmed=Trimmed(name="bob"))
    assert partials[-1] == final
    for partial in partials:
        for coded in (partial.coded or []) if partial is not None else []:
            assert coded is None or coded.code in (None, "ABC")
        trimmed = None if partial is None else partial.trimmed
        assert trimmed is None or trimmed.name in (None, "bob")


async def test_delta_events_encode_as_json_on_any_stream(client, mock):
    """Code that relays events as JSON (msgspec.json.encode(event)) kept working on plain
    streams before issue 28; a tool call's argument deltas (followed on any stream) and a
    structured stream's content deltas must encode too: as the event, without its view. A
    copy keeps what parsed reads."""
    import msgspec

    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    async with client.chat.completions.stream(
        model="mock/echo", messages=[{"role": "user", "content": "weather"}], tools=tools
    ) as stream:
        events = [event async for event in stream.events()]
    argument_deltas = [e for e in events if e.type == "tool_call.arguments.delta"]
    assert argument_deltas
    for event in argument_deltas:
        data = msgspec.json.decode(msgspec.json.encode(event))
        assert data["type"] == "tool_call.arguments.delta" and "_view" not in data
    assert copy.deepcopy(argument_deltas[-1]).parsed_arguments == json.loads(
        "".join(e.arguments_delta for e in argument_deltas)
    )

    mock.reply_stream(content_stream('{"id": "A-1", "status": "x"}'))
    async with client.chat.completions.stream(
        model="p/m", messages=ASK, response_format=Order
    ) as stream:
        deltas = [e async for e in stream.events() if e.type == "content.delta"]
    assert msgspec.json.decode(msgspec.json.encode(deltas[-1])) == {
        "type": "content.delta",
        "choice_index": 0,
        "delta": deltas[-1].delta,
    }
    assert copy.copy(deltas[-1]).parsed == {"id": "A-1", "status": "x"}
    assert copy.deepcopy(deltas[0]).snapshot == deltas[0].snapshot


async def test_responses_delta_events_encode_as_json(client, mock):
    import msgspec

    from tests.test_partial_stream import response_stream

    mock.reply_stream(response_stream('{"id": "A-1", "status": "x"}'), named=True, done=False)
    async with client.responses.stream(model="p/m", input="x", text_format=Order) as stream:
        deltas = [e async for e in stream if e.type == "response.output_text.delta"]
    data = msgspec.json.decode(msgspec.json.encode(deltas[-1]))
    assert data["type"] == "response.output_text.delta" and "_view" not in data
    assert copy.deepcopy(deltas[-1]).parsed == {"id": "A-1", "status": "x"}
    mock.reply_stream(response_stream(arguments='{"city": "Oslo"}'), named=True, done=False)
    async with client.responses.stream(model="p/m", input="x") as plain:
        calls = [e async for e in plain if e.type == "response.function_call_arguments.delta"]
    assert calls and "_view" not in msgspec.json.decode(msgspec.json.encode(calls[-1]))
    assert copy.deepcopy(calls[-1]).parsed_arguments == {"city": "Oslo"}


async def test_validate_given_to_create_is_never_sent_and_is_honoured(client, mock):
    """create(..., stream=True, validate="eager") sent validate to the server as a body field
    and checked nothing: a wrong field streamed through. It is the stream's option there as on
    .stream(); on a call that does not stream, "eager" cannot apply and is refused before
    anything is sent."""
    mock.reply_stream(content_stream('{"id": 5, "status": "x"}'))
    stream = await client.chat.completions.create(
        model="p/m", messages=ASK, stream=True, response_format=Order, validate="eager"
    )
    with pytest.raises(FieldValidationError) as caught:
        async for _ in stream:
            pass
    assert caught.value.path == ("id",)
    assert "validate" not in mock.requests[-1].json
    assert_no_open_connections(client)
    sent = len(mock.requests)
    for call in (
        client.chat.completions.create(
            model="p/m", messages=ASK, response_format=Order, validate="eager"
        ),
        client.chat.completions.parse(
            model="p/m", messages=ASK, response_format=Order, validate="eager"
        ),
        client.responses.create(model="p/m", input="x", validate="eager"),
    ):
        with pytest.raises(ValueError, match="stream=True"):
            await call
    assert len(mock.requests) == sent
    mock.reply_stream(content_stream('{"id": "A", "status": "x"}'))
    final = await client.chat.completions.create(
        model="p/m", messages=ASK, stream=True, response_format=Order, validate="final"
    )
    async with final:
        async for _ in final:
            pass
    assert "validate" not in mock.requests[-1].json


async def test_validate_given_to_responses_create_is_honoured(client, mock):
    from tests.test_partial_stream import response_stream

    mock.reply_stream(response_stream('{"id": 5, "status": "x"}'), named=True, done=False)
    stream = await client.responses.create(
        model="p/m",
        input="x",
        stream=True,
        text={
            "format": {"type": "json_schema", "name": "Order", "schema": Order.model_json_schema()}
        },
        validate="eager",
    )
    with pytest.raises(FieldValidationError):
        async for _ in stream:
            pass
    assert "validate" not in mock.requests[-1].json


async def test_a_lone_surrogate_escape_ends_a_partial_body_with_an_error_frame(client, mock):
    """A model writing a lone '\\ud800' escape: json.loads takes it, but it is no Unicode, so
    msgspec cannot encode the partial value. The body ends with an error frame (and no
    [DONE]) instead of raising UnicodeEncodeError out of the page's response."""
    mock.reply_stream(content_stream('{"id": "A\\ud800-1", "status": "x"}'))
    stream = await client.chat.completions.create(
        model="p/m", messages=ASK, stream=True, response_format={"type": "json_object"}
    )
    frames = [frame async for frame in stream.to_sse(format="partial")]
    assert frames[-1].startswith(b"event: error\n")
    assert b"surrogate" in frames[-1]
    assert b"data: [DONE]\n\n" not in frames
    assert_no_open_connections(client)


class Tenfold(pydantic.BaseModel):
    """A field after-validator that is not idempotent, and an after model validator that
    rewrites a field: each must run once on an object, as in the final parse."""

    name: str
    qty: Annotated[int, pydantic.AfterValidator(lambda value: value * 10)]

    @pydantic.model_validator(mode="after")
    def shout(self) -> Tenfold:
        self.name = self.name.upper()
        return self


class Tenfolds(pydantic.BaseModel):
    rows: list[Tenfold]
    note: str


class Shouted(msgspec.Struct):
    name: str
    qty: int

    def __post_init__(self) -> None:
        self.name = self.name.upper()


class ShoutedRows(msgspec.Struct):
    rows: list[Shouted]
    note: str


@pytest.mark.parametrize("target", [Tenfolds, ShoutedRows])
async def test_an_objects_own_after_code_runs_once_when_it_closes(client, mock, target):
    """A Pydantic after-validator (a field's AfterValidator, a model_validator(mode="after"))
    or a Struct's __post_init__ runs on an object once it closes, as the final parse runs it:
    the partial's complete objects equal the final parse's (qty 20, not a twice-validated
    200). While an object is open its fields show as their types read them, before that
    code has run (documented)."""
    answer = {"rows": [{"name": "ab", "qty": 2}, {"name": "cd", "qty": 3}], "note": "n"}
    mock.reply_stream(content_stream(json.dumps(answer), size=2))
    partials, final = await stream_partials(client, target)
    assert partials[-1] == final
    tenfold = 10 if target is Tenfolds else 1
    assert [(row.name, row.qty) for row in final.rows] == [("AB", 2 * tenfold), ("CD", 3 * tenfold)]
    for partial in partials:
        for row in (partial.rows or []) if partial is not None else []:
            if isinstance(row, (Tenfold, Shouted)):  # a closed object: as the final parse has it
                assert row in final.rows
            elif row is not None:  # an open one: its fields as sent, its own code not run yet
                assert row.name in (None, "", "a", "ab", "c", "cd")


class Dot(msgspec.Struct, kw_only=True, tag_field="kind", tag="dot"):
    size: Annotated[int, msgspec.Meta(ge=0)]

    def __post_init__(self) -> None:
        if self.size == 7:
            raise ValueError("seven is unlucky")


class Line(msgspec.Struct, kw_only=True, tag_field="kind", tag="line"):
    length: int


class Drawing(msgspec.Struct):
    shape: Dot | Line
    caption: str


async def test_eager_checks_inside_a_union_of_models_follow_the_schema(client, mock):
    """validate='eager' inside a tagged union of Structs: a field the schema refuses fails at
    once, named by the branch its tag chose (not 'must be an object, got an object'); a
    branch's own Python check (__post_init__) runs on the final parse only (documented)."""
    from routmy_async import ContentParseError

    bad = {"shape": {"kind": "dot", "size": -1}, "caption": "x" * 40}
    mock.reply_stream(content_stream(json.dumps(bad), size=2))
    with pytest.raises(FieldValidationError) as caught:
        await stream_partials(client, Drawing, validate="eager")
    assert caught.value.path == ("shape",)
    assert caught.value.reason == "['size'] must be >= 0, got -1"

    unlucky = {"shape": {"kind": "dot", "size": 7}, "caption": "x" * 40}
    mock.reply_stream(content_stream(json.dumps(unlucky), size=2))
    with pytest.raises(ContentParseError, match="seven is unlucky") as final:
        await stream_partials(client, Drawing, validate="eager")
    assert not isinstance(final.value, FieldValidationError)
    assert final.value.content == json.dumps(unlucky)  # read to the end: the final parse's call


# -- second cold review: patches, merged frames, cut streams --------------------------------

# JSON text whose objects may repeat a key (a tiny key alphabet makes repeats common): the
# last one wins, as json.loads and the final parse read it.
_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-99, 99), st.text('ab\u00e9\U0001f600"\\', max_size=6)
)


def _object_text(members: list[tuple[str, str]]) -> str:
    return "{" + ", ".join(f"{json.dumps(key)}: {text}" for key, text in members) + "}"


_texts_with_repeated_keys = st.recursive(
    _scalars.map(json.dumps),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.lists(st.tuples(st.sampled_from("ab"), inner), max_size=4).map(_object_text),
    ),
    max_leaves=12,
)


def _page_after_patches(text: str, cuts: list[int]) -> Any:
    """What a page holds after the patches of ``text`` read at ``cuts``, sent as JSON."""
    parser, writer, page = PartialJSON(), PatchWriter(), None
    for start, stop in zip([0, *cuts], [*cuts, len(text)], strict=True):
        parser.feed(text[start:stop])
        page = apply_patch(page, json.loads(json.dumps(writer.changes(parser.value))))
    return apply_patch(page, json.loads(json.dumps(writer.closing(parser.finish()))))


@given(text=_texts_with_repeated_keys, data=st.data())
def test_a_patch_page_ends_on_the_final_value_when_the_model_repeats_a_key(text, data):
    """At any split of an answer that writes a key twice ('{"a": "abc", "a": "zzzz"}',
    '{"a": {"x": 1}, "a": {"y": 2}}'), the patches apply without error and the page ends
    holding what json.loads gives (the second value replaced the first, which the writer
    must not take for the first one growing). Every delta size, and random cuts."""
    final = json.loads(text)
    for size in range(1, len(text) + 1):
        assert _page_after_patches(text, list(range(size, len(text), size))) == final
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=30)))
    assert _page_after_patches(text, cuts) == final


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ('{"a": "abc", "a": "zzzz"}', 12),  # the second string read whole: not 'abc' + 'z'
        ('{"a": {"x": 1}, "a": {"y": 2}}', 7),  # was a KeyError out of the body
        ('{"a": [1, 2], "a": [3]}', 7),  # was an IndexError out of the body
    ],
)
async def test_a_served_patch_body_with_a_repeated_key_ends_on_the_answer(client, mock, text, size):
    """A model that writes a key twice, served with format='patch' one chunk at a time: the
    body ends with [DONE] and the page holds the final value (it held 'abcz' for 'zzzz', or
    the body broke off with a KeyError and no error frame)."""
    mock.reply_stream(content_stream(text, size=size), chunk_delay=0.02)
    stream = await client.chat.completions.create(
        model="p/m", messages=ASK, stream=True, response_format={"type": "json_object"}
    )
    frames = [frame async for frame in stream.to_sse(format="patch", keepalive=None)]
    assert frames[-1] == b"data: [DONE]\n\n"
    page = None
    for frame in frames[:-1]:
        page = apply_patch(page, json.loads(frame.removeprefix(b"data: ")))
    assert page == json.loads(text)
    assert_no_open_connections(client)


def _response_events_of(messages: list[list[str]]) -> list[Any]:
    """A Responses stream whose output is these messages, each of these output_text parts."""
    from routmy_async.testing._replies import response_events
    from tests.test_responses_partial_messages import response_of

    return response_events(response_of(messages), piece=3)


class Pair(msgspec.Struct):
    id: str
    n: int


async def _eager_final_response(client: Any) -> Any:
    """The final response of a Responses stream read to its end under validate='eager'."""
    async with client.responses.stream(
        model="p/m", input="x", text_format=Pair, validate="eager"
    ) as stream:
        async for _ in stream:
            pass
        return await stream.get_final_response()


async def test_a_responses_answer_in_two_text_parts_of_one_message_is_not_refused(client, mock):
    """One message whose JSON comes in two output_text parts: output_parsed joins them and
    reads the answer; the partials, eager validation and a 'patch' page refuse it (the
    second part alone, '"n": 12}', is no JSON)."""
    events = _response_events_of([['{"id": "A", ', '"n": 12}']])
    mock.reply_stream(events, named=True, done=False)
    final = await _eager_final_response(client)
    assert final.output_parsed == Pair(id="A", n=12)
    assert_no_open_connections(client)


async def test_eager_validation_lets_a_responses_preamble_message_through(client, mock):
    """A first message of prose ('Sure, here:'), then the JSON answer: output_parsed reads
    the last message and a 'patch' page ends on it with [DONE], but validate='eager' raises
    InvalidJSONError at the preamble's first character and closes the stream."""
    mock.reply_stream(
        _response_events_of([["Sure, here:"], ['{"id": "B", "n": 2}']]), named=True, done=False
    )
    final = await _eager_final_response(client)
    assert final.output_parsed == Pair(id="B", n=2)
    assert_no_open_connections(client)
