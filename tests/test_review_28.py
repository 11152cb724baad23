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

from routmy_async import FieldValidationError
from routmy_async.testing import assert_no_open_connections

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
