"""parse() and Struct response formats: the schema sent and the answer decoded."""

from __future__ import annotations

import msgspec
import pytest

from routmy_async import ContentParseError
from routmy_async._structured import strict_schema

ASK = [{"role": "user", "content": "Order Z-42 has shipped"}]


class Item(msgspec.Struct):
    name: str


class Order(msgspec.Struct):
    """An order."""

    id: str
    status: str
    items: list[Item] = []
    note: str | None = None


def answer(content: str | None, finish: str = "stop", refusal: str | None = None) -> dict:  # type: ignore[type-arg]
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "finish_reason": finish,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
            }
        ],
    }


async def test_parse_sends_strict_json_schema_and_decodes(client, mock):
    """The Struct becomes a strict json_schema; the answer decodes into message.parsed."""
    completion = await client.chat.completions.parse(
        model="mock/echo", messages=ASK, response_format=Order
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Order) and parsed.id == "Z-42"
    sent = mock.requests[0].json["response_format"]
    assert sent["type"] == "json_schema"
    schema = sent["json_schema"]
    assert schema["name"] == "Order" and schema["strict"] is True
    assert schema["description"] == "An order."
    body = schema["schema"]
    assert set(body["required"]) == {"id", "status", "items", "note"}
    assert body["additionalProperties"] is False
    assert body["$defs"]["Item"]["additionalProperties"] is False


async def test_dict_response_format_passes_through(client, mock):
    """response_format={"type": "json_object"} is sent untouched; parsed is plain JSON."""
    completion = await client.chat.completions.parse(
        model="mock/echo", messages=ASK, response_format={"type": "json_object"}
    )
    assert mock.requests[0].json["response_format"] == {"type": "json_object"}
    assert completion.choices[0].message.parsed == {"echo": ASK[0]["content"]}


@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (answer('{"id": 1}'), "does not fit Order"),
        (answer("not json"), "not valid JSON"),
        (answer('{"id": "a", "sta', finish="length"), "cut off"),
        (answer(None, refusal="I can't"), "refused"),
        (answer(None), "no content"),
    ],
)
async def test_content_that_does_not_fit(client, mock, reply, match):
    """Bad content, a cut-off answer and a refusal raise ContentParseError keeping the text."""
    mock.reply_json(reply)
    with pytest.raises(ContentParseError, match=match) as info:
        await client.chat.completions.parse(model="mock/echo", messages=ASK, response_format=Order)
    assert info.value.content == reply["choices"][0]["message"]["content"]


async def test_streaming_parse_gives_the_object_at_the_end(client):
    """stream(response_format=Struct): the final completion holds the parsed object."""
    async with client.chat.completions.stream(
        model="mock/echo", messages=ASK, response_format=Order
    ) as stream:
        final = await stream.until_done()
    assert final.choices[0].message.parsed == Order(
        id="Z-42", status="shipped", items=[], note="shipped"
    )


class Node(msgspec.Struct):
    value: int
    children: list[Node] = []


def test_strict_schema_keeps_recursive_refs():
    """A self-referencing root keeps its $defs."""
    schema = strict_schema(msgspec.json.schema(Node))
    assert schema["$defs"]["Node"]["required"] == ["value", "children"]
    assert schema["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}


async def test_a_type_asked_for_again_sends_the_same_schema(client, mock):
    """The schema of a type is built once and reused (it is the costly part of a structured
    request): the second request sends what the first did."""
    for _ in range(2):
        await client.chat.completions.parse(model="mock/echo", messages=ASK, response_format=Order)
    first, second = (request.json["response_format"] for request in mock.requests)
    assert first == second and first["json_schema"]["schema"]["required"] == [
        "id",
        "status",
        "items",
        "note",
    ]
