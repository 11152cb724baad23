"""What a cold review of issue 25's last changes found, each as the user meets it:
``FunctionTool.answer`` given decoded arguments, ``client.redact`` before the first request,
and a served stream that its ``async with`` block closed."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest

from routmy_async import function_tool

pydantic = pytest.importorskip("pydantic")


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def repeat(times: Annotated[int, pydantic.Field(ge=1)]) -> str:
    """Repeat a letter (Pydantic checks the arguments)."""
    return "n" * times


@pytest.mark.parametrize("tool", [function_tool(add), function_tool(repeat)], ids=repr)
@pytest.mark.parametrize("arguments", [{"a": 1, "b": 2}, ["a"], 3])
async def test_answer_refuses_arguments_that_are_not_json_text(tool: Any, arguments: Any):
    """A hand-written loop that passes decoded arguments (a dict) gets a TypeError naming the
    tool, for a msgspec and a Pydantic tool alike; it is never sent to the model as an
    ``Error: ...`` answer (the Pydantic tool did that: its decoder's TypeError counted as bad
    arguments)."""
    with pytest.raises(TypeError, match=rf"arguments for {tool.name} must be the JSON text"):
        await tool.answer(arguments)
    with pytest.raises(TypeError, match=rf"arguments for {tool.name} must be the JSON text"):
        await tool.run(arguments)


async def test_answer_still_takes_text_and_bytes():
    """JSON text, its bytes, and an empty string or None (no arguments) are still taken."""
    tool = function_tool(add)
    assert await tool.answer('{"a": 1, "b": 2}') == ("3", False)
    assert await tool.answer(b'{"a": 2, "b": 2}') == ("4", False)  # type: ignore[arg-type]
    text, is_error = await tool.answer("")
    assert is_error and "missing required field `a`" in text
    assert await tool.answer(None) == (text, True)  # type: ignore[arg-type]
    assert isinstance(tool.decode_arguments('{"a": 1, "b": 1}'), msgspec.Struct)
