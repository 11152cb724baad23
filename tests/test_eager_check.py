"""Eager validation: a completed field that cannot be valid fails at once, naming the field."""

from __future__ import annotations

import datetime
import enum
import json
from typing import Annotated, Any

import msgspec
import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

from routmy_async._eager_check import SchemaCheck, format_path, schema_of
from routmy_async._exceptions import ContentParseError, FieldValidationError
from routmy_async._partial_json import ListenerGroup, PartialJSON
from routmy_async._structured import response_format_for
from routmy_async._typed_partial import TypedPartial


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Item(msgspec.Struct):
    sku: Annotated[str, msgspec.Meta(pattern="^SKU-[0-9]+$")]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=12)]
    price: Annotated[float, msgspec.Meta(ge=0, lt=10_000)]
    color: Color


class Order(msgspec.Struct):
    placed_on: datetime.date
    items: Annotated[list[Item], msgspec.Meta(min_length=1, max_length=3)]
    note: str | None = None


def strict_schema_of(target: Any) -> dict[str, Any]:
    """The schema the request sends (all fields required, no unknown fields)."""
    schema: dict[str, Any] = response_format_for(target)["json_schema"]["schema"]
    return schema


def fed(schema: dict[str, Any], *deltas: str) -> PartialJSON:
    parser = PartialJSON(listener=SchemaCheck(schema))
    for delta in deltas:
        parser.feed(delta)
    return parser


def failure(schema: dict[str, Any], text: str) -> FieldValidationError:
    """Feed ``text`` a character at a time; return the error and check it came with the
    last character (at once, not later)."""
    parser = PartialJSON(listener=SchemaCheck(schema))
    for char in text[:-1]:
        parser.feed(char)
    with pytest.raises(FieldValidationError) as caught:
        parser.feed(text[-1])
    return caught.value


ITEM = '{"sku": "SKU-1", "name": "Widget", "price": 2.5, "color": "red"}'


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        ('{"placed_on": "2024-02-30"', ("placed_on",), "must be a date string"),
        ('{"placed_on": 20240101,', ("placed_on",), "must be a string, got the number"),
        ('{"items": [{"sku": "X-1"', ("items", 0, "sku"), "must match the pattern"),
        ('{"items": [{"sku": "SKU-1", "name": ""', ("items", 0, "name"), "at least 1"),
        (
            '{"items": [{"sku": "SKU-1", "name": "a very long name"',
            ("items", 0, "name"),
            "at most 12",
        ),
        ('{"items": [{"price": -0.5,', ("items", 0, "price"), "must be >= 0, got -0.5"),
        ('{"items": [{"price": 1e4}', ("items", 0, "price"), "must be < 10000"),
        ('{"items": [{"color": "green"', ("items", 0, "color"), "must be one of 'blue', 'red'"),
        ('{"items": [{"color": true', ("items", 0, "color"), "got a boolean"),
        ('{"items": {', ("items",), "must be an array, got an object"),
        ('{"items": [[', ("items", 0), "must be an object, got an array"),
        ('{"note": 5}', ("note",), "must be a string or null, got the number 5"),
        ('{"note": [', ("note",), "must be a string or null, got an array"),
        ('{"items": [{"sku": "SKU-1"}', ("items", 0), "missing the required fields 'name', "),
        ('{"items": []', ("items",), "at least 1 items, got 0"),
        ('{"items": [' + ", ".join([ITEM] * 3) + ", {", ("items", 3), "one item too many"),
        ('{"surprise": 1,', ("surprise",), "not a field the schema allows"),
        ('{"items": [{"surprise": {', ("items", 0, "surprise"), "not a field"),
    ],
)
def test_a_field_that_cannot_be_valid_fails_the_moment_it_is_complete(text, path, reason):
    """The error names the field's path and why, and comes with the delta that completes
    the field (or opens a container where none can be)."""
    error = failure(strict_schema_of(Order), text)
    assert error.path == path
    assert reason in error.reason
    assert str(error) == f"{format_path(path)} {error.reason}"
    assert isinstance(error, ContentParseError)


def test_a_value_still_arriving_is_not_judged():
    """An enum value's prefix, a number that may grow, an unclosed object: no error yet."""
    schema = strict_schema_of(Order)
    fed(schema, '{"items": [{"color": "gre')
    fed(schema, '{"items": [{"price": -')
    fed(schema, '{"items": [{"sku": "SKU-1"')


def test_a_valid_answer_never_fails_at_any_split():
    """Every character of a valid answer passes."""
    text = json.dumps({"placed_on": "2024-02-29", "items": [json.loads(ITEM)] * 3, "note": None})
    assert fed(strict_schema_of(Order), *text).finish()["note"] is None


def test_the_parser_stays_broken_after_a_field_fails():
    """Once a field failed, every later feed raises the same error: the stream is over."""
    parser = PartialJSON(listener=SchemaCheck(strict_schema_of(Order)))
    with pytest.raises(FieldValidationError) as first:
        parser.feed('{"placed_on": 1,')
    with pytest.raises(FieldValidationError) as again:
        parser.feed(' "items": []}')
    assert again.value is first.value
    with pytest.raises(FieldValidationError):
        parser.finish()


def test_a_json_schema_dict_works_as_given():
    """A response_format given as a schema dict is checked as it is ($ref into $defs too)."""
    schema = {
        "type": "object",
        "properties": {"rows": {"type": "array", "items": {"$ref": "#/$defs/Row"}}},
        "$defs": {"Row": {"type": "object", "properties": {"n": {"type": "integer"}}}},
    }
    fed(schema, '{"rows": [{"n": 1}, {"n": 2.0}, {"other": "x"}]}')
    error = failure(schema, '{"rows": [{"n": 1}, {"n": 2.5}')
    assert error.path == ("rows", 1, "n")
    assert "must be an integer" in error.reason


class Line(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=5)
    quantity: int = pydantic.Field(gt=0)
    kind: Color | None = None


class Invoice(pydantic.BaseModel):
    lines: list[Line]


def test_a_pydantic_model_is_checked_against_its_schema():
    """Field(gt=0), Field(max_length=5) and an optional enum, from the model's schema."""
    schema = schema_of(Invoice)
    assert failure(schema, '{"lines": [{"quantity": 0,').path == ("lines", 0, "quantity")
    assert failure(schema, '{"lines": [{"name": "toolong"').path == ("lines", 0, "name")
    assert "must be one of" in failure(schema, '{"lines": [{"kind": "pink"').reason
    fed(schema, '{"lines": [{"name": "a", "quantity": 2, "kind": null}]}').finish()


def test_any_of_objects_is_judged_when_the_object_closes():
    """With several object branches, the whole object is checked against each at its end."""
    schema = {
        "anyOf": [
            {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
            {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]},
        ]
    }
    fed(schema, '{"b": "x"}').finish()
    error = failure(schema, '{"c": 1}')
    assert error.path == ()
    assert format_path(error.path) == "the answer"


def test_checks_and_typed_partials_listen_together():
    """A ListenerGroup tells both: the typed partial fills while the check watches."""
    typed = TypedPartial(Order)
    parser = PartialJSON(listener=ListenerGroup(typed, SchemaCheck(strict_schema_of(Order))))
    parser.feed('{"placed_on": "2024-01-02", "items": [' + ITEM)
    assert typed.value(parser).items[0].color is Color.RED
    with pytest.raises(FieldValidationError):
        parser.feed(', {"sku": "nope"')


def test_format_path_reads_like_python():
    """Keys are joined with dots, indices in brackets."""
    assert format_path(("items", 3, "price")) == "items[3].price"
    assert format_path((0, "a")) == "[0].a"


items = st.builds(
    Item,
    sku=st.integers(0, 10**6).map(lambda n: f"SKU-{n}"),
    name=st.text(min_size=1, max_size=12),
    price=st.floats(min_value=0, max_value=9_999),
    color=st.sampled_from(Color),
)
orders = st.builds(
    Order,
    placed_on=st.dates(),
    items=st.lists(items, min_size=1, max_size=3),
    note=st.none() | st.text(max_size=8),
)


@given(order=orders, data=st.data())
def test_a_valid_order_never_fails_eager_validation_at_any_split(order, data):
    """The check never rejects what the final parse accepts, whatever the split."""
    text = msgspec.json.encode(order).decode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=30)))
    parser = PartialJSON(listener=SchemaCheck(strict_schema_of(Order)))
    for start, stop in zip([0, *cuts], [*cuts, len(text)], strict=True):
        parser.feed(text[start:stop])
    assert msgspec.convert(parser.finish(), Order) == order


@pytest.mark.parametrize(
    ("schema", "text", "path", "reason"),
    [
        ({"const": "v1"}, '"v2"', (), "must be 'v1'"),
        ({"enum": [1, 2]}, "[", (), "must be one of 1, 2"),
        ({"type": "integer"}, "true", (), "must be an integer, got a boolean"),
        ({"type": "number", "multipleOf": 0.5}, "[", (), "must be a number"),
        ({"type": "array", "items": {"multipleOf": 0.5}}, "[1.5, 1.2,", (1,), "multiple of 0.5"),
        ({"type": "array", "prefixItems": [{"type": "string"}]}, "[1,", (0,), "must be a string"),
        ({"type": "object", "maxProperties": 1}, '{"a": 1, "b": 2}', (), "at most 1 fields"),
        ({"type": "object", "minProperties": 1}, "{}", (), "at least 1 fields"),
        (
            {"type": "object", "additionalProperties": {"type": "boolean"}},
            '{"a": true, "b": 0,',
            ("b",),
            "must be a boolean",
        ),
        (
            {"allOf": [{"type": "object"}, {"properties": {"n": {"maximum": 3}}}]},
            '{"n": 4,',
            ("n",),
            "must be <= 3",
        ),
        (
            {"type": "object", "properties": {"child": {"$ref": "#"}, "n": {"type": "string"}}},
            '{"child": {"child": {"n": 1,',
            ("child", "child", "n"),
            "must be a string",
        ),
        (
            {"anyOf": [{"type": "null"}, {"type": "array", "items": {"type": "string"}}]},
            '["a", 1]',
            (1,),
            "must be a string",
        ),
        (
            {
                "anyOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}},
                    {"type": "object", "properties": {"a": {"type": "array"}}},
                ]
            },
            '{"a": 1}',
            (),
            # Why each branch of its kind refuses it ("must be an object" said nothing).
            "fits none of its choices: ['a'] must be a string, got the number 1; or ['a'] must",
        ),
        (
            {
                "anyOf": [
                    {"type": "integer"},
                    {"type": "object", "additionalProperties": False, "maxProperties": 5},
                ]
            },
            '{"a": 1,',
            ("a",),
            "not a field the schema allows",
        ),
        (
            {"anyOf": [{"type": "string"}, {"type": "array", "maxItems": 1}]},
            "[1, 2,",
            (1,),
            "one item too many",
        ),
    ],
)
def test_the_schema_keywords_beyond_the_generated_ones(schema, text, path, reason):
    """const, enum, multipleOf, prefixItems, property counts, additionalProperties as a
    schema, allOf, a $ref to the root; under anyOf, the one branch that can hold a container
    judges its parts, and several are judged on the whole value."""
    error = failure(schema, text)
    assert error.path == path
    assert reason in error.reason


def test_numbers_of_either_kind_match_an_enum_but_a_boolean_never_does():
    """1.0 is the enum's 1 (one JSON number); true is not."""
    fed({"enum": [1]}, "[1.0]"[1:4]).finish()
    assert "one of 1" in failure({"enum": [1]}, "true").reason


def test_schema_of_takes_a_struct_a_model_or_a_schema():
    """The schema comes from msgspec for a Struct, from Pydantic for a model, as is for a dict."""
    assert schema_of({"type": "string"}) == {"type": "string"}
    assert schema_of(Order) == msgspec.json.schema(Order)
    assert schema_of(Invoice)["properties"]["lines"]["type"] == "array"


def test_under_several_array_branches_the_whole_array_is_judged_at_its_end():
    """Neither branch is known while the array arrives; when it closes, no branch fits."""
    schema = {
        "anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "array", "items": {"type": "object", "additionalProperties": False}},
        ]
    }
    # Nothing inside is judged while the array arrives.
    assert fed(schema, '[{}, {}, ["nested", {"deep": 1}]').value[2] == ["nested", {"deep": 1}]
    error = failure(schema, '[{"x": 1}]')
    assert error.path == ()
    assert error.reason.startswith("fits none of its choices: [0] must be a string")
    fed(schema, '["a", "b"]').finish()
