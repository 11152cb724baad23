"""Pydantic v2 models wherever a type goes, side by side with msgspec: parse, stream-parse,
create, tools and validation errors."""

from __future__ import annotations

import json
import sys
import threading
from typing import Annotated, Any, Literal

import msgspec
import pytest
from pydantic import AnyUrl, BaseModel, Field, PositiveInt, field_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from routmy_async import ContentParseError, function_tool
from routmy_async._pydantic import is_model_type, json_schema, uses_pydantic
from routmy_async._structured import response_format_for

ASK = [{"role": "user", "content": "Order Z-42 has shipped"}]


class ItemStruct(msgspec.Struct):
    name: str


class OrderStruct(msgspec.Struct):
    """An order."""

    id: str
    status: str
    items: list[ItemStruct] = []
    note: str | None = None


class Item(BaseModel):
    name: str


class Order(BaseModel):
    """An order."""

    id: str
    status: str
    items: list[Item] = []
    note: str | None = None


BOTH = pytest.mark.parametrize("order_type", [OrderStruct, Order], ids=["msgspec", "pydantic"])


def answer(content: str | None, finish: str = "stop", refusal: str | None = None) -> dict:  # type: ignore[type-arg]
    message = {"role": "assistant", "content": content, "refusal": refusal}
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
    }


@BOTH
async def test_parse_sends_the_same_strict_schema_and_fills_parsed(client, mock, order_type):
    """A Struct or a BaseModel: a strict json_schema named after it, and message.parsed an
    instance of it."""
    completion = await client.chat.completions.parse(
        model="mock/echo", messages=ASK, response_format=order_type
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, order_type)
    assert (parsed.id, parsed.status, parsed.items) == ("Z-42", "shipped", [])
    sent = mock.requests[0].json["response_format"]
    assert sent["type"] == "json_schema"
    assert sent["json_schema"]["name"] == order_type.__name__
    assert sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["description"] == "An order."
    schema = sent["json_schema"]["schema"]
    assert schema["required"] == ["id", "status", "items", "note"]
    assert schema["additionalProperties"] is False
    item = schema["$defs"][f"Item{'Struct' if order_type is OrderStruct else ''}"]
    assert item["additionalProperties"] is False and item["required"] == ["name"]


@BOTH
async def test_create_and_stream_parse_with_either_type(client, order_type):
    """create(response_format=T) and stream(..., response_format=T) parse at the end too."""
    created = await client.chat.completions.create(
        model="mock/echo", messages=ASK, response_format=order_type
    )
    assert isinstance(created.choices[0].message.parsed, order_type)
    async with client.chat.completions.stream(
        model="mock/echo", messages=ASK, response_format=order_type
    ) as stream:
        final = await stream.until_done()
    parsed = final.choices[0].message.parsed
    assert isinstance(parsed, order_type) and parsed.id == "Z-42"


@BOTH
@pytest.mark.parametrize(
    ("reply", "match"),
    [
        (answer('{"id": 1, "status": "x"}'), "does not fit Order"),
        (answer("not json"), "not valid JSON"),
        (answer('{"id": "a", "sta', finish="length"), "cut off"),
        (answer(None, refusal="I can't"), "refused"),
        (answer(None), "no content"),
    ],
)
async def test_content_that_does_not_fit_raises_alike(client, mock, order_type, reply, match):
    """Bad content, a cut-off answer and a refusal raise ContentParseError for both kinds of
    type, keeping the raw content."""
    mock.reply_json(reply)
    with pytest.raises(ContentParseError, match=match) as info:
        await client.chat.completions.parse(
            model="mock/echo", messages=ASK, response_format=order_type
        )
    assert info.value.content == reply["choices"][0]["message"]["content"]


async def test_pydantic_errors_are_short_and_name_the_field(client, mock):
    """A Pydantic validation error reads as `field: problem`, without documentation links."""
    mock.reply_json(answer('{"id": "a", "status": 3}'))
    with pytest.raises(ContentParseError) as info:
        await client.chat.completions.parse(model="m", messages=ASK, response_format=Order)
    assert (
        str(info.value) == "the answer does not fit Order: status: Input should be a valid string"
    )


class Part(BaseModel):
    sku: str


class Shipment(BaseModel):
    """A shipment: parts, a main part with its own description, and a tree of boxes."""

    main: Part = Field(description="the part that matters")
    parts: list[Part]
    carrier: Literal["ups", "dhl"] | None = None
    boxes: list[Box] = []


class Box(BaseModel):
    label: str
    inner: Box | None = Field(default=None, description="a box inside")
    default: str = "x"


Shipment.model_rebuild()


def test_pydantic_schemas_are_made_strict_as_openai_does():
    """A $ref with siblings is inlined, `default: null` dropped, a recursive model kept as a
    $ref, and a property named "default" survives."""
    schema = response_format_for(Shipment)["json_schema"]["schema"]
    main = schema["properties"]["main"]
    assert "$ref" not in main and main["description"] == "the part that matters"
    assert main["properties"] == {"sku": {"title": "Sku", "type": "string"}}
    assert main["additionalProperties"] is False and main["required"] == ["sku"]
    assert "default" not in schema["properties"]["carrier"]
    box = schema["$defs"]["Box"]
    assert box["required"] == ["label", "inner", "default"]
    assert box["properties"]["default"] == {"default": "x", "title": "Default", "type": "string"}
    inner = box["properties"]["inner"]
    assert inner["anyOf"][0] == {"$ref": "#/$defs/Box"} and "default" not in inner
    json.dumps(schema)  # finite: the recursion stayed a $ref


class Looping(BaseModel):
    again: Looping = Field(description="itself, with a description beside the $ref")


Looping.model_rebuild()


def test_a_model_holding_itself_beside_a_description_is_inlined_once():
    """{"$ref": self, "description": ...} is expanded one level, then referred to plainly."""
    schema = json_schema(Looping)
    again = schema["$defs"]["Looping"]["properties"]["again"]
    assert again["description"].startswith("itself")
    assert again["properties"]["again"] == {"$ref": "#/$defs/Looping"}


# -- tools --------------------------------------------------------------------------------


class Address(BaseModel):
    """Where to ship."""

    city: str
    zip: str = Field(pattern=r"^\d{5}$")


def ship_msgspec(order_id: str, count: int = 1) -> str:
    """Ship an order.

    :param order_id: the order's id.
    """
    return f"shipped {count} of {order_id}"


def ship_pydantic(
    order_id: Annotated[str, Field(pattern=r"^[A-Z]-\d+$")],
    count: PositiveInt = 1,
) -> str:
    """Ship an order.

    :param order_id: the order's id.
    """
    return f"shipped {count} of {order_id}"


@pytest.mark.parametrize("fn", [ship_msgspec, ship_pydantic], ids=["msgspec", "pydantic"])
async def test_function_tools_alike(fn):
    """Same name, description, parameter text, required list and defaults from either path;
    the sync function runs in a worker thread with its arguments decoded."""
    tool = function_tool(fn, name="ship")
    function = tool.param["function"]
    assert function["description"] == "Ship an order."
    parameters = function["parameters"]
    assert parameters["required"] == ["order_id"]
    assert parameters["properties"]["order_id"]["description"] == "the order's id."
    assert parameters["properties"]["count"]["default"] == 1
    assert await tool.run('{"order_id": "A-1"}') == "shipped 1 of A-1"
    assert await tool.run('{"order_id": "A-1", "count": 3}') == "shipped 3 of A-1"


def test_pydantic_constraints_reach_the_schema():
    """Field constraints and Pydantic types are in the schema the model sees."""
    properties = function_tool(ship_pydantic).param["function"]["parameters"]["properties"]
    assert properties["order_id"]["pattern"] == r"^[A-Z]-\d+$"
    assert properties["count"]["exclusiveMinimum"] == 0


async def test_model_parameters_arrive_as_models_on_the_loop():
    """A parameter annotated with a BaseModel is validated into an instance of it; an async
    tool runs on the event loop; a returned model is sent as its JSON."""
    seen: list[Any] = []

    async def ship_to(order_id: str, address: Address, express: bool = False) -> Address:
        seen.append((address, express, threading.current_thread() is threading.main_thread()))
        return address

    tool = function_tool(ship_to)
    schema = tool.param["function"]["parameters"]
    assert schema["properties"]["address"] == {"$ref": "#/$defs/Address"}
    assert schema["$defs"]["Address"]["properties"]["zip"]["pattern"] == r"^\d{5}$"
    result = await tool.run('{"order_id": "A-1", "address": {"city": "Oslo", "zip": "01234"}}')
    assert seen == [(Address(city="Oslo", zip="01234"), False, True)]
    assert result == Address(city="Oslo", zip="01234")


def test_parameter_names_a_model_could_not_have():
    """Parameters named like BaseModel attributes (json, schema) or private ones work."""

    def odd(json: Annotated[str, Field(min_length=1)], schema: int, _private: int = 0) -> str:
        return f"{json}{schema}{_private}"

    tool = function_tool(odd)
    assert list(tool.param["function"]["parameters"]["properties"]) == [
        "json",
        "schema",
        "_private",
    ]
    assert tool.decode_arguments('{"json": "a", "schema": 2}') == {
        "json": "a",
        "schema": 2,
        "_private": 0,
    }


async def test_a_default_json_cannot_carry_is_left_to_python():
    """A default that is not JSON stays out of the schema and the function's own applies."""
    marker = object()

    def tagged(count: PositiveInt, tag: object = marker) -> bool:
        return tag is marker

    tool = function_tool(tagged)
    assert "default" not in tool.param["function"]["parameters"]["properties"]["tag"]
    assert await tool.run('{"count": 1}') is True


def test_a_base_model_is_a_tool():
    """A BaseModel type is a tool whose call returns the validated model, as a Struct does."""
    tool = function_tool(Address, strict=True)
    function = tool.param["function"]
    assert function["name"] == "Address" and function["description"] == "Where to ship."
    assert function["strict"] is True
    assert function["parameters"]["required"] == ["city", "zip"]
    assert function["parameters"]["additionalProperties"] is False
    assert "title" not in function["parameters"]


def test_unsupported_annotations_name_the_parameter():
    """A type Pydantic cannot describe, next to a Pydantic one, is named in the TypeError."""

    def bad(handle: threading.Lock, count: PositiveInt) -> None:
        pass

    with pytest.raises(TypeError, match="'handle' has an unsupported annotation"):
        function_tool(bad)


@pytest.mark.parametrize(
    ("fn", "arguments", "expected"),
    [
        (
            ship_msgspec,
            '{"order_id": 7}',
            "Error: the arguments for ship are not valid: Expected `str`, got `int` - at "
            "`$.order_id`",
        ),
        (
            ship_pydantic,
            '{"order_id": "nope", "count": 0}',
            "Error: the arguments for ship are not valid: order_id: String should match "
            "pattern '^[A-Z]-\\d+$'; count: Input should be greater than 0",
        ),
        (
            ship_pydantic,
            "{not json",
            "Error: the arguments for ship are not valid: Invalid JSON: key must be a string at "
            "line 1 column 2",
        ),
    ],
    ids=["msgspec", "pydantic", "pydantic-bad-json"],
)
async def test_invalid_arguments_become_an_error_text_for_the_model(
    client, mock, fn, arguments, expected
):
    """Arguments that do not validate are answered with an error text, never a crash."""
    call = {"id": "c1", "type": "function", "function": {"name": "ship", "arguments": arguments}}
    reply = answer(None, finish="tool_calls")
    reply["choices"][0]["message"]["tool_calls"] = [call]
    mock.reply_json(reply)
    result = await client.chat.completions.run_tools(
        model="mock/echo", messages=ASK, tools=[function_tool(fn, name="ship")]
    )
    tool_message = next(m for m in result.transcript or [] if m["role"] == "tool")
    assert tool_message["content"] == expected


class Strict(BaseModel):
    code: str

    @field_validator("code")
    @classmethod
    def known(cls, value: str) -> str:
        if value == "boom":
            raise LookupError("no such code")  # not a ValueError: Pydantic lets it through
        return value


async def test_a_validator_raising_anything_is_still_bad_arguments():
    """A user validator's own exception is reported as invalid arguments, not a crash."""

    def check(item: Strict) -> str:
        return item.code

    tool = function_tool(check)
    assert await tool.run('{"item": {"code": "ok"}}') == "ok"
    from routmy_async._tools import _run_call
    from routmy_async.types import Function, ToolCall

    call = ToolCall(id="c", function=Function(name="check", arguments='{"item": {"code": "boom"}}'))
    text, is_error = await _run_call({"check": tool}, call)
    assert is_error and text == (
        "Error: the arguments for check are not valid: LookupError: no such code"
    )


async def test_run_tools_with_pydantic_tools_end_to_end(client, mock):
    """run_tools with a Pydantic-annotated function and a BaseModel tool: both run, the model
    results go back as JSON."""

    async def quote(address: Address) -> Address:
        """Quote shipping to an address."""
        return address

    result = await client.chat.completions.run_tools(
        model="mock/echo",
        messages=[{"role": "user", "content": "Ship to 12345"}],
        tools=[quote, Item],
    )
    tool_messages = [m for m in result.transcript or [] if m["role"] == "tool"]
    assert [m["name"] for m in tool_messages] == ["quote", "Item"]
    assert json.loads(tool_messages[0]["content"]) == {"city": "12345", "zip": "12345"}
    assert json.loads(tool_messages[1]["content"]) == {"name": "12345"}
    sent = mock.requests[0].json["tools"]
    assert sent[0]["function"]["description"] == "Quote shipping to an address."


@pydantic_dataclass
class Crate:
    size: int


def test_what_counts_as_a_pydantic_annotation():
    """Models, Pydantic types and Pydantic metadata anywhere inside count; plain types do not."""
    assert uses_pydantic(Item) and uses_pydantic(list[Item]) and uses_pydantic(Item | None)
    assert uses_pydantic(dict[str, Item]) and uses_pydantic(PositiveInt)
    assert uses_pydantic(Annotated[int, Field(gt=0)])
    assert uses_pydantic(AnyUrl) and uses_pydantic(list[Crate])  # a type, a Pydantic dataclass
    assert not uses_pydantic(int) and not uses_pydantic(list[ItemStruct])
    assert not uses_pydantic(Literal["a", "b"]) and not uses_pydantic(Annotated[int, "doc"])


def test_nothing_is_pydantic_while_pydantic_is_not_loaded(monkeypatch):
    """Without Pydantic in sys.modules no type counts as one, and nothing imports it."""
    monkeypatch.delitem(sys.modules, "pydantic")
    monkeypatch.delitem(sys.modules, "pydantic.main")
    assert not uses_pydantic(Item) and not is_model_type(Item)
    assert "pydantic" not in sys.modules


def test_to_dict_and_to_json_carry_a_pydantic_parsed():
    """A completion whose parsed is a BaseModel encodes it as its JSON."""
    from routmy_async._structured import parse_completion
    from routmy_async.types import ChatCompletion

    completion = msgspec.convert(answer('{"id": "a", "status": "b"}'), ChatCompletion)
    parse_completion(completion, Order)
    message = completion.to_dict()["choices"][0]["message"]
    assert message["parsed"] == {"id": "a", "status": "b", "items": [], "note": None}
    assert msgspec.json.decode(completion.to_json()) == completion.to_dict()
