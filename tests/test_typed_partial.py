"""Typed partials: the partial JSON as the user's Struct or Pydantic model, fields optional."""

from __future__ import annotations

import datetime
import enum
import json
from typing import Annotated, Any

import msgspec
import pydantic
from hypothesis import given
from hypothesis import strategies as st

from routmy_async._partial_json import PartialJSON
from routmy_async._typed_partial import TypedPartial, partial_type


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Item(msgspec.Struct):
    name: str
    price: Annotated[float, msgspec.Meta(ge=0)]
    color: Color
    tags: list[str] = []


class Order(msgspec.Struct, rename="camel"):
    order_id: str
    placed_at: datetime.datetime
    items: list[Item]
    totals: dict[str, float] = {}
    note: str | None = None


ORDER = {
    "orderId": "A-1",
    "placedAt": "2024-05-01T10:00:00Z",
    "items": [
        {"name": "Widget", "price": 12.5, "color": "red", "tags": ["new"]},
        {"name": "Gadget", "price": 3, "color": "blue"},
    ],
    "totals": {"net": 15.5},
    "note": None,
}


class Cat(msgspec.Struct, tag=True):
    name: str


class Dog(msgspec.Struct, tag=True):
    name: str


class Pet(msgspec.Struct):
    pet: Cat | Dog


class Line(pydantic.BaseModel):
    name: str
    price: float = pydantic.Field(ge=0)


class Invoice(pydantic.BaseModel):
    number: str = pydantic.Field(alias="invoiceNumber")
    due: datetime.date
    lines: list[Line]


def stream(target: Any, text: str, step: int) -> tuple[list[Any], Any]:
    typed = TypedPartial(target)
    parser = PartialJSON(listener=typed)
    seen = []
    for start in range(0, len(text), step):
        parser.feed(text[start : start + step])
        seen.append(typed.value(parser))
    parser.finish()
    return seen, typed.value(parser)


def read_after(target: Any, text: str) -> Any:
    typed = TypedPartial(target)
    parser = PartialJSON(listener=typed)
    parser.feed(text)
    return typed.value(parser)


def test_an_open_object_is_a_partial_instance_with_every_field_none():
    """Before any field is complete, the value is Partial<Name> with every field None."""
    partial = read_after(Order, '{"orderId": ')
    assert type(partial) is partial_type(Order)
    assert type(partial).__name__ == "PartialOrder"
    assert msgspec.structs.asdict(partial) == dict.fromkeys(
        ["order_id", "placed_at", "items", "totals", "note"]
    )


def test_complete_fields_are_converted_and_validated():
    """A finished datetime, enum and nested Struct are the real types at once."""
    text = json.dumps(ORDER)
    partial = read_after(Order, text[: text.index('"Gadget"')])
    assert partial.order_id == "A-1"
    assert partial.placed_at == datetime.datetime(2024, 5, 1, 10, tzinfo=datetime.timezone.utc)
    assert partial.items[0] == Item(name="Widget", price=12.5, color=Color.RED, tags=["new"])
    assert type(partial.items[1]).__name__ == "PartialItem"
    assert partial.items[1].name is None


def test_a_str_field_grows_but_a_date_or_an_enum_waits_for_its_whole_string():
    """A str shows what arrived; a datetime or an enum whose string is unfinished is None."""
    partial = read_after(Order, '{"orderId": "A-')
    assert partial.order_id == "A-"
    partial = read_after(Order, '{"orderId": "A-1", "placedAt": "2024-05')
    assert partial.placed_at is None
    partial = read_after(Order, '{"items": [{"name": "Wid", "price": 1, "color": "re')
    assert partial.items[0].name == "Wid"
    assert partial.items[0].color is None


def test_a_value_that_does_not_fit_stays_none_and_keeps_the_object_partial():
    """A negative price (ge=0) and an unknown color are None; the item stays partial."""
    text = '{"items": [{"name": "A", "price": -1, "color": "green"}, {"name": "B", "price": 1, '
    partial = read_after(Order, text + '"color": "red"}]')
    first, second = partial.items
    assert type(first).__name__ == "PartialItem"
    assert (first.name, first.price, first.color) == ("A", None, None)
    assert second == Item(name="B", price=1.0, color=Color.RED)


def test_a_list_item_that_does_not_fit_keeps_its_index():
    """Indices agree with the JSON: a failed item is None, not dropped."""
    assert read_after(dict[str, list[int]], '{"a": [1, "x", 3]}') == {"a": [1, None, 3]}


def test_the_final_value_equals_msgspec_decoding_the_whole_answer():
    """Once the root closes, the typed partial is the real Order, as msgspec decodes it."""
    text = json.dumps(ORDER)
    for step in (1, 5, 16):
        _, final = stream(Order, text, step)
        assert final == msgspec.json.decode(text, type=Order)
        assert type(final) is Order


def test_the_typed_value_is_one_live_object():
    """A kept partial shows later deltas; reading it costs nothing but the string in progress."""
    typed = TypedPartial(Order)
    parser = PartialJSON(listener=typed)
    parser.feed('{"orderId": "A-1", "items": [')
    kept = typed.value(parser)
    parser.feed('{"name": "W", "price": 1, "color": "red"}')
    assert kept.items == [Item(name="W", price=1.0, color=Color.RED)]
    assert typed.value(parser) is kept


def test_unknown_keys_and_their_contents_are_ignored():
    """A key the Struct does not have changes nothing, whatever it holds."""
    partial = read_after(Item, '{"extra": {"deep": [1, {"x": 2}]}, "name": "A"')
    assert partial.name == "A"


def test_a_type_it_cannot_follow_inside_is_converted_when_complete():
    """A union of Structs is None while it arrives, then the decoded value."""
    assert read_after(Pet, '{"pet": {"type": "Cat", "name": "Tom"').pet is None
    assert read_after(Pet, '{"pet": {"type": "Cat", "name": "Tom"}').pet == Cat(name="Tom")


def test_a_pydantic_model_gets_partial_models_aliases_and_constraints():
    """Pydantic: fields by alias, Field(ge=0) checked, nested models real once complete."""
    text = (
        '{"invoiceNumber": "F-9", "due": "2024-06-30", "lines": [{"name": "A", "price": 2},'
        ' {"name": "B", "price": -3}, {"name": "C", "pr'
    )
    partial = read_after(Invoice, text)
    assert type(partial).__name__ == "PartialInvoice"
    assert (partial.number, partial.due) == ("F-9", datetime.date(2024, 6, 30))
    assert partial.lines[0] == Line(name="A", price=2)
    assert (partial.lines[1].name, partial.lines[1].price) == ("B", None)
    assert partial.lines[2].name == "C"
    whole = text.replace('"price": -3', '"price": 3') + 'ice": 1}]}'
    _, final = stream(Invoice, whole, 7)
    assert final == Invoice.model_validate_json(whole)


# -- any Order, any split -------------------------------------------------------------------

items = st.builds(
    Item,
    name=st.text(max_size=8),
    price=st.floats(min_value=0, max_value=1e6),
    color=st.sampled_from(Color),
    tags=st.lists(st.text(max_size=4), max_size=3),
)
orders = st.builds(
    Order,
    order_id=st.text(max_size=8),
    placed_at=st.datetimes(timezones=st.just(datetime.timezone.utc)),
    items=st.lists(items, max_size=4),
    totals=st.dictionaries(st.text(max_size=4), st.floats(-1e6, 1e6), max_size=3),
    note=st.none() | st.text(max_size=8),
)


def agrees(partial: Any, final: Any) -> bool:
    """Whether what the partial shows is the final value's (None: not there yet)."""
    if partial is None:
        return True
    if type(partial).__name__.startswith("Partial"):
        return all(
            agrees(getattr(partial, field), getattr(final, field))
            for field in final.__struct_fields__
        )
    if isinstance(partial, list):
        return len(partial) <= len(final) and all(map(agrees, partial, final))
    if isinstance(partial, dict):
        return all(agrees(value, final[key]) for key, value in partial.items())
    if isinstance(partial, str) and isinstance(final, str):
        return final.startswith(partial)
    return bool(partial == final)


@given(order=orders, data=st.data())
def test_any_order_at_any_split_shows_only_what_the_final_order_has(order, data):
    """Every typed partial agrees with the final Order, which msgspec would decode."""
    text = msgspec.json.encode(order).decode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=30)))
    typed = TypedPartial(Order)
    parser = PartialJSON(listener=typed)
    for start, stop in zip([0, *cuts], [*cuts, len(text)], strict=True):
        parser.feed(text[start:stop])
        assert agrees(typed.value(parser), order)
    parser.finish()
    assert typed.value(parser) == order == msgspec.json.decode(text, type=Order)


class Strict(msgspec.Struct, forbid_unknown_fields=True):
    a: int


class Tagged(msgspec.Struct):
    values: Annotated[list[int], ["metadata that cannot be hashed"]]
    anything: Any = None


def test_an_object_that_the_type_rejects_stays_partial():
    """A missing required field, or an unknown one where the Struct forbids them: the
    partial object stays, with the fields that fit, as the final parse will fail."""
    assert read_after(Item, '{"name": "A"}') == partial_type(Item)(name="A")
    assert read_after(Strict, '{"a": 1, "b": 2}') == partial_type(Strict)(a=1)


def test_json_of_another_shape_than_the_type_is_none():
    """An array where a Struct belongs is converted when complete, and fails: None."""
    assert read_after(Order, '{"items": [[1, 2], ').items == [None]
    assert read_after(list[Item], '{"a": 1}') is None


def test_an_unhashable_annotation_and_any_are_followed():
    """An Annotated with a list in its extras still converts; Any takes values as they are."""
    partial = read_after(Tagged, '{"values": [1, 2, "x"], "anything": {"k": ["v", 1]}, ')
    assert partial.values == [1, 2, None]
    assert partial.anything == {"k": ["v", 1]}


def test_a_bare_string_answer_of_type_str_grows():
    """A root string is shown as it arrives when the type is str."""
    typed = TypedPartial(str)
    parser = PartialJSON(listener=typed)
    parser.feed('"hello wor')
    assert typed.value(parser) is None  # a root scalar appears when complete
    parser.feed('ld"')
    assert typed.value(parser) == "hello world"
    assert read_after(int, '"not a number"') is None
