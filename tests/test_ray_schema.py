"""The steps' output columns, decided before the first batch (no Ray needed): the ``parsed``
column's shape from the ``response_format``, what fits it, Structs that lost their fields,
and the rows that must not look answered when they were not."""

from __future__ import annotations

import asyncio
import enum
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

import msgspec
import pydantic
import pytest
import pytest_asyncio

from routmy_async import RoutmyError
from routmy_async.integrations.ray._schema import broken_type, fits, parsed_shape
from routmy_async.integrations.ray._step import ChatStep, EmbeddingStep
from routmy_async.testing import MockRoutmy, RecordedRequest, Reply

KEY = "sk-schema-test-7d2e61a0"


class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"


class Rank(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Line(msgspec.Struct):
    sku: str
    size: Size
    rank: Rank
    weight: float | None = None


class Order(msgspec.Struct, rename="camel"):
    order_id: str
    lines: list[Line]
    paid: bool
    kind: Literal["a", "b"]


class Node(msgspec.Struct):
    value: int
    children: list[Node]


class Cat(msgspec.Struct, tag=True):
    name: str


class Mixed(msgspec.Struct):
    value: int | str


class Free(msgspec.Struct):
    extra: dict[str, Any]


class ModelLine(pydantic.BaseModel):
    sku: str
    size: Size


class ModelOrder(pydantic.BaseModel):
    id: str
    lines: list[ModelLine]
    note: str | None = None


def test_a_struct_gives_a_struct_column_with_its_wire_names() -> None:
    """Nested Structs, Enums, Literals and optionals each have one Arrow type."""
    line = ("struct", (("sku", "str"), ("size", "str"), ("rank", "int"), ("weight", "float")))
    assert parsed_shape(Order) == (
        "struct",
        (("orderId", "str"), ("lines", ("list", line)), ("paid", "bool"), ("kind", "str")),
    )


def test_a_pydantic_model_gives_a_struct_column() -> None:
    """A model's fields, by name (its JSON form), nested models included."""
    assert parsed_shape(ModelOrder) == (
        "struct",
        (
            ("id", "str"),
            ("lines", ("list", ("struct", (("sku", "str"), ("size", "str"))))),
            ("note", "str"),
        ),
    )


@pytest.mark.parametrize(
    "response_format",
    [Mixed, Free, Node, Cat, {"type": "json_object"}, None],
    ids=["int-or-str", "dict-of-any", "recursive", "tagged", "dict-format", "none"],
)
def test_types_with_no_single_arrow_type_give_json_text(response_format: Any) -> None:
    """``int | str``, ``dict[str, Any]``, recursive and tagged types, a dict format: JSON."""
    assert parsed_shape(response_format) == "json"


def test_what_fits_a_shape() -> None:
    """Values fit their shape; a wrong type, an unknown key or a huge int does not."""
    shape = parsed_shape(Order)
    good = {"orderId": "x", "lines": [{"sku": "s", "size": "small", "rank": 1}], "paid": True}
    assert fits(good, shape)
    assert fits({"orderId": None, "lines": None}, shape)
    assert not fits({**good, "paid": "yes"}, shape)
    assert not fits({**good, "surprise": 1}, shape)
    assert not fits({"lines": [{"rank": 2**64}]}, shape)
    assert not fits([good], shape)
    assert fits({"anything": [1, "a"]}, "json")


def test_a_struct_that_lost_its_fields_is_found() -> None:
    """What cloudpickle makes of a Struct from ``__main__`` (its annotations set after the
    class was made, so no fields) is found, also nested in a list or an optional."""
    empty = msgspec.defstruct("Order", [])
    empty.__annotations__ = {"id": "str"}
    assert broken_type(empty) == "Order"
    assert broken_type(list[empty]) == "Order"  # type: ignore[valid-type]
    assert broken_type(Order) is None
    assert broken_type(ModelOrder) is None
    assert broken_type(None) is None


# -- the steps ------------------------------------------------------------------------


def json_reply(answer: dict[str, Any]) -> Reply:
    return Reply(headers={"Content-Type": "application/json"}, body=json.dumps(answer).encode())


def odd_answers(request: RecordedRequest) -> Reply | None:
    """Answers a prompt ``NOCHOICES`` with no choices and an embeddings input ``EMPTY``
    with an empty vector: what a row must never be recorded as answered with."""
    if request.path.endswith("/chat/completions"):
        if request.json["messages"][-1]["content"] == "NOCHOICES":
            return json_reply(
                {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
            )
    elif request.path.endswith("/embeddings") and "EMPTY" in request.json["input"]:
        data = [{"object": "embedding", "index": 0, "embedding": []}]
        return json_reply({"object": "list", "data": data, "model": "m"})
    return None


@pytest_asyncio.fixture
async def odd_mock(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MockRoutmy]:
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    server = MockRoutmy(api_key=KEY)
    server.reply_with(odd_answers)
    await server.start()
    try:
        yield server
    finally:
        await server.close()


async def test_an_answer_without_choices_is_an_error(odd_mock: MockRoutmy) -> None:
    """A response with no choices fails its row (and raises with on_error="raise")."""
    step = ChatStep(model="mock/echo", base_url=odd_mock.base_url, prompt_column="q")
    out = await asyncio.to_thread(step, {"q": ["NOCHOICES", "fine"]})
    await asyncio.to_thread(step.close)
    assert out["error"] == ["RoutmyError: the response has no choices", ""]
    assert out["content"] == [None, "fine"]
    strict = ChatStep(
        model="mock/echo", base_url=odd_mock.base_url, prompt_column="q", on_error="raise"
    )
    with pytest.raises(RoutmyError, match="no choices"):
        await asyncio.to_thread(strict, {"q": ["NOCHOICES"]})
    await asyncio.to_thread(strict.close)


async def test_an_empty_vector_is_an_error(odd_mock: MockRoutmy) -> None:
    """An empty embedding fails its rows rather than filling them with ``[]``."""
    step = EmbeddingStep(model="mock/embed", base_url=odd_mock.base_url, inputs_per_request=1)
    out = await asyncio.to_thread(step, {"text": ["EMPTY", "fine"]})
    await asyncio.to_thread(step.close)
    assert out["embedding"][0] is None
    assert "empty vector" in out["error"][0]
    assert out["error"][1] == ""


async def test_tool_calls_get_a_column(odd_mock: MockRoutmy) -> None:
    """With tools, the tool calls the model made land in ``tool_calls`` (JSON text), not
    lost behind an empty content."""
    call = {"id": "call_1", "type": "function", "function": {"name": "ship", "arguments": "{}"}}
    odd_mock.reply_json(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                    "finish_reason": "tool_calls",
                }
            ],
        }
    )
    tool = {"type": "function", "function": {"name": "ship", "parameters": {"type": "object"}}}
    step = ChatStep(model="mock/echo", base_url=odd_mock.base_url, prompt_column="q", tools=[tool])
    out = await asyncio.to_thread(step, {"q": ["ship it"]})
    await asyncio.to_thread(step.close)
    assert out["error"] == [""]
    assert msgspec.json.decode(out["tool_calls"][0]) == [call]


@pytest.mark.parametrize("step_type", [ChatStep, EmbeddingStep])
def test_the_old_concurrency_name_still_works_and_warns(
    monkeypatch: pytest.MonkeyPatch, step_type: Any
) -> None:
    """``concurrency=`` is ``max_in_flight=`` now: it still works, with a warning."""
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    with pytest.warns(DeprecationWarning, match="max_in_flight"):
        step = step_type(model="m", concurrency=3)
    try:
        assert "max_in_flight=3" in repr(step)
    finally:
        step.close()
    # Both given is refused, even when max_in_flight is the default value spelled out.
    default = 16 if step_type is ChatStep else 4
    for max_in_flight in (5, default):
        with pytest.raises(TypeError, match="not both"):
            step_type(model="m", concurrency=3, max_in_flight=max_in_flight)


def test_the_rename_warning_is_seen_when_ray_builds_the_step(tmp_path) -> None:
    """Ray builds a step from map_batches(fn_constructor_kwargs=...) in its own code, whose
    DeprecationWarnings Python's default filters hide: ours is shown all the same."""
    import os
    import subprocess
    import sys

    (tmp_path / "framework.py").write_text(
        "from routmy_async.integrations.ray import ChatStep\n"
        "def build(**kwargs):\n"
        "    return ChatStep(**kwargs)\n"
    )
    code = "import framework\nstep = framework.build(model='m', concurrency=3)\nstep.close()\n"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "", "ROUTMY_API_KEY": KEY},
    )
    assert done.returncode == 0, done.stderr
    assert "concurrency= is deprecated since 0.2" in done.stderr, done.stderr


def test_a_struct_that_lost_its_fields_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The step refuses such a Struct as response_format or as a tool, saying what to do."""
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    empty = msgspec.defstruct("Order", [])
    empty.__annotations__ = {"id": "str"}
    with pytest.raises(TypeError, match="'Order' reached this Ray worker without its fields"):
        ChatStep(model="m", response_format=empty)
    with pytest.raises(TypeError, match="py_modules"):
        ChatStep(model="m", tools=[empty])


def test_a_function_tool_naming_types_it_cannot_see_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A function tool whose postponed annotations name types this process lacks (the
    script's, after Ray sent the function alone) is refused, naming the tool."""
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)

    def ship(line: Missing) -> str:  # type: ignore[name-defined]  # noqa: F821
        return ""

    with pytest.raises(TypeError, match="the tool 'ship' reached this Ray worker"):
        ChatStep(model="m", tools=[ship])


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ({"content": None, "refusal": "I cannot help"}, "the model refused: I cannot help"),
        ({"content": None}, "the answer has no content (finish_reason 'content_filter')"),
    ],
)
async def test_an_answer_without_content_is_an_error(
    odd_mock: MockRoutmy, message: dict[str, Any], expected: str
) -> None:
    """A refusal or a filtered answer (no content, no tool calls) fails its row: a row
    whose error is empty has its answer."""
    odd_mock.reply_json(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 0,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", **message},
                    "finish_reason": "content_filter",
                }
            ],
        }
    )
    step = ChatStep(model="mock/echo", base_url=odd_mock.base_url, prompt_column="q")
    out = await asyncio.to_thread(step, {"q": ["ask"]})
    await asyncio.to_thread(step.close)
    assert out["error"] == [f"RoutmyError: {expected}"]
    assert out["content"] == [None]
    assert out["finish_reason"] == ["content_filter"]


def test_a_dataclass_whose_annotations_name_missing_types_is_refused_clearly() -> None:
    """A dataclass or TypedDict from the driver script, with postponed annotations naming
    what the worker lacks: a TypeError that says why and what to do, not a bare NameError."""
    import dataclasses

    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(
        "from __future__ import annotations\n"
        "import dataclasses\n"
        "@dataclasses.dataclass\n"
        "class Verdict:\n"
        "    label: Literal['yes', 'no']\n",
        namespace,
    )
    verdict = namespace["Verdict"]
    assert dataclasses.is_dataclass(verdict)
    with pytest.raises(TypeError, match=r"'Verdict'.*driver script"):
        parsed_shape(verdict)
