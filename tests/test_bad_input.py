"""Every public entry point rejects wrong types and values, naming the argument, before I/O."""

# These calls break the annotations on purpose: they test the run-time checks behind them.
# mypy: disable-error-code="arg-type, call-overload, dict-item, list-item, call-arg"

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from routmy_async import AsyncRoutmy, Timeout, function_tool, image_part, text_part

OK_MESSAGES = [{"role": "user", "content": "x"}]


def calls(client: AsyncRoutmy) -> list[tuple[str, Callable[[], Any], type[Exception], str]]:
    chat = client.chat.completions

    return [
        (
            "create model",
            (lambda: chat.create(model=None, messages=OK_MESSAGES)),
            TypeError,
            "model",
        ),
        ("create messages", (lambda: chat.create(model="m", messages=None)), TypeError, "messages"),
        ("create role", (lambda: chat.create(model="m", messages=[{}])), ValueError, "role"),
        (
            "create top_p",
            (lambda: chat.create(model="m", messages=OK_MESSAGES, top_p="1")),
            TypeError,
            "top_p",
        ),
        (
            "create seed",
            (lambda: chat.create(model="m", messages=OK_MESSAGES, seed=True)),
            TypeError,
            "seed",
        ),
        (
            "create tool_choice",
            (lambda: chat.create(model="m", messages=OK_MESSAGES, tool_choice=1)),
            TypeError,
            "tool_choice",
        ),
        (
            "create modalities",
            (lambda: chat.create(model="m", messages=OK_MESSAGES, modalities="image")),
            TypeError,
            "modalities",
        ),
        (
            "create reasoning",
            (lambda: chat.create(model="m", messages=OK_MESSAGES, reasoning="high")),
            TypeError,
            "reasoning",
        ),
        (
            "create image_config",
            (lambda: chat.create(model="m", messages=OK_MESSAGES, image_config=[])),
            TypeError,
            "image_config",
        ),
        (
            "create response_format",
            (lambda: chat.create(model="m", messages=OK_MESSAGES, response_format="json")),
            TypeError,
            "response_format",
        ),
        (
            "create extra_query",
            (lambda: chat.create(model="m", messages=OK_MESSAGES, extra_query={"a": 1})),
            TypeError,
            "extra_query",
        ),
        (
            "create timeout",
            (lambda: chat.create(model="m", messages=OK_MESSAGES, timeout=-1)),
            ValueError,
            "timeout",
        ),
        (
            "stream stream",
            (lambda: chat.create(model="m", messages=OK_MESSAGES, stream=1)),
            TypeError,
            "stream",
        ),
        (
            "parse model",
            (lambda: chat.parse(model="", messages=OK_MESSAGES, response_format={})),
            ValueError,
            "model",
        ),
        (
            "run_tools max_rounds",
            (
                lambda: chat.run_tools(
                    model="m", messages=OK_MESSAGES, tools=[text_part], max_rounds=-1
                )
            ),
            ValueError,
            "max_rounds",
        ),
        (
            "create_many concurrency",
            (lambda: chat.create_many([], concurrency=-1)),
            ValueError,
            "concurrency",
        ),
        ("models.list extra", (lambda: client.models.list(page=2)), TypeError, "page"),
        ("models.retrieve", (lambda: client.models.retrieve(5)), TypeError, "model"),
        (
            "embeddings input",
            (lambda: client.embeddings.create(model="m", input=None)),
            TypeError,
            "input",
        ),
        (
            "embed_many inputs",
            (lambda: client.embeddings.embed_many(model="m", inputs=[1])),
            TypeError,
            "inputs",
        ),
        (
            "images prompt",
            (lambda: client.images.generate(model="m", prompt=None)),
            TypeError,
            "prompt",
        ),
        (
            "images n",
            (lambda: client.images.generate(model="m", prompt="p", n="2")),
            ValueError,
            "n must",
        ),
        ("image_part source", (lambda: image_part(None)), TypeError, "image_part"),
        ("image_part detail", (lambda: image_part(b"x", detail="max")), ValueError, "detail"),
    ]


async def test_every_entry_point_rejects_bad_input(mock):
    """Each call fails with the right exception naming the argument; nothing is sent."""
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        checked = 0
        for _label, call, exc, name in calls(client):
            with pytest.raises(exc, match=name):
                result = call()
                if isinstance(result, Awaitable):
                    await result
                else:  # an async generator or manager: start it
                    await result.__anext__()
            checked += 1
    assert checked == len(calls(client)) and mock.requests == []


@pytest.mark.parametrize(
    ("call", "exc", "name"),
    [
        (lambda: AsyncRoutmy(api_key=3), TypeError, "api_key"),
        (lambda: AsyncRoutmy(api_key="k", max_retries="2"), ValueError, "max_retries"),
        (lambda: AsyncRoutmy(api_key="k", default_query={"a": None}), TypeError, "default_query"),
        (lambda: AsyncRoutmy(api_key="k").with_options(timeout="x"), TypeError, "timeout"),
        (lambda: Timeout(read=-1), ValueError, "read"),
        (lambda: Timeout(total=True), TypeError, "total"),
        (lambda: text_part(None), TypeError, "text_part"),
        (lambda: function_tool("nope"), TypeError, "tool"),
        (
            lambda: AsyncRoutmy(api_key="k").chat.completions.stream(model="m", messages=[1]),
            TypeError,
            r"messages\[0\]",
        ),
    ],
)
def test_sync_entry_points_reject_bad_input(call, exc, name):
    """Constructors and sync helpers raise at once, naming the argument."""
    with pytest.raises(exc, match=name):
        call()


async def test_a_query_parameter_that_is_not_a_string_is_named_as_such(mock):
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        with pytest.raises(TypeError, match=r"extra_query: the value of query parameter 'a'"):
            await client.models.list(extra_query={"a": object()})
        with pytest.raises(TypeError, match=r"extra_headers: the value of header 'X-N'.*int"):
            await client.models.list(extra_headers={"X-N": 1})
    assert mock.requests == []
