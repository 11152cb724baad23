"""function_tool and run_tools: schemas from annotations, the loop, and failures as text."""

from __future__ import annotations

import enum
import functools
import gc
import json
import threading
import warnings
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

import msgspec
import pytest

from routmy_async import FunctionTool, function_tool
from routmy_async.types import CompletionDoneEvent, ToolResultEvent

ASK = [{"role": "user", "content": "What is the status of order A-123?"}]


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(msgspec.Struct):
    city: str


def everything(
    name: str,
    count: int,
    ratio: float,
    flag: bool,
    tags: list[str],
    extra: dict[str, int],
    mode: Literal["a", "b"],
    color: Color,
    note: str | None = None,
    address: Address | None = None,
    limit: int = 10,
) -> str:
    """Do everything.

    :param name: who to greet.
    :param count: how many times.
    """
    return name


def test_schema_from_annotations_defaults_and_docstring():
    """Names, description, per-parameter docs, types and required come from the function."""
    tool = function_tool(everything)
    function = tool.param["function"]
    assert function["name"] == "everything" and function["description"] == "Do everything."
    schema = function["parameters"]
    props = schema["properties"]
    assert props["name"] == {"type": "string", "description": "who to greet."}
    assert props["count"]["type"] == "integer" and props["ratio"]["type"] == "number"
    assert props["flag"]["type"] == "boolean"
    assert props["tags"] == {"type": "array", "items": {"type": "string"}}
    assert props["mode"]["enum"] == ["a", "b"]
    assert props["limit"]["default"] == 10
    assert set(schema["required"]) == {
        "name",
        "count",
        "ratio",
        "flag",
        "tags",
        "extra",
        "mode",
        "color",
    }
    assert "$defs" in schema and "Address" in schema["$defs"]


def test_strict_form_requires_every_property():
    """strict=True lists every property as required and forbids extra ones."""
    tool = function_tool(everything, strict=True, name="all_of_it", description="Custom.")
    function = tool.param["function"]
    assert function["strict"] is True and function["name"] == "all_of_it"
    assert function["description"] == "Custom."
    schema = function["parameters"]
    assert set(schema["required"]) == set(schema["properties"])
    assert schema["additionalProperties"] is False


def test_google_style_docstring_params():
    """Args: sections describe parameters too."""

    def lookup(key: str) -> str:
        """Find a value.

        Args:
            key (str): the key to find.
        """
        return key

    props = function_tool(lookup).param["function"]["parameters"]["properties"]
    assert props["key"]["description"] == "the key to find."


def test_struct_as_tool():
    """A Struct type is a tool whose call returns the decoded Struct."""
    tool = function_tool(Address)
    assert tool.param["function"]["name"] == "Address"
    assert tool.param["function"]["parameters"]["required"] == ["city"]
    assert isinstance(tool, FunctionTool) and function_tool(tool) is tool


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda x: x, "lambda"),
        (42, "function or a msgspec.Struct"),
    ],
)
def test_bad_tools_raise(fn, match):
    """Lambdas and non-callables are rejected with a clear message."""
    with pytest.raises((TypeError, ValueError), match=match):
        function_tool(fn)


def test_unannotated_and_unsupported_parameters_are_named():
    """A parameter without annotation, or with an unsupported one, is named in the error."""

    def no_hint(x) -> None:
        pass

    def bad_hint(handle: threading.Lock) -> None:
        pass

    def star(*values: int) -> None:
        pass

    with pytest.raises(TypeError, match="'x' has no type annotation"):
        function_tool(no_hint)
    with pytest.raises(TypeError, match="'handle' has an unsupported annotation"):
        function_tool(bad_hint)
    with pytest.raises(TypeError, match="values"):
        function_tool(star)
    with pytest.raises(ValueError, match="tool name"):
        function_tool(everything, name="has spaces")


async def test_decode_arguments_and_run():
    """Arguments decode into the annotated types and the function runs (sync in a thread)."""
    seen: list[Any] = []

    def record(count: int, tags: list[str]) -> dict[str, Any]:
        seen.append(threading.current_thread() is threading.main_thread())
        return {"count": count, "tags": tags}

    tool = function_tool(record)
    assert await tool.run('{"count": 2, "tags": ["a"]}') == {"count": 2, "tags": ["a"]}
    assert seen == [False]
    with pytest.raises(msgspec.ValidationError):
        tool.decode_arguments('{"count": "two", "tags": []}')


async def get_order(order_id: str) -> dict[str, str]:
    """Look up an order by ID."""
    return {"id": order_id, "status": "shipped"}


async def test_run_tools_loop_end_to_end(client, mock):
    """The model calls the tool, the result goes back, the final answer uses it."""
    result = await client.chat.completions.run_tools(
        model="mock/echo", messages=ASK, tools=[get_order]
    )
    assert result.choices[0].message.content == 'Tool results: {"id":"A-123","status":"shipped"}'
    transcript = result.transcript
    assert transcript is not None and [m["role"] for m in transcript] == [
        "user",
        "assistant",
        "tool",
        "assistant",
    ]
    assert transcript[2]["tool_call_id"] == "call_mock_0"
    first_request = mock.requests[0].json
    assert first_request["tools"][0]["function"]["name"] == "get_order"
    assert mock.requests[1].json["messages"][1]["tool_calls"][0]["id"] == "call_mock_0"


async def test_reasoning_details_are_sent_back_unchanged(client, mock):
    """The assistant turn carries reasoning_details exactly as received."""
    await client.chat.completions.run_tools(
        model="mock/reasoner", messages=ASK, tools=[get_order], reasoning={"effort": "low"}
    )
    assistant = mock.requests[1].json["messages"][1]
    assert assistant["reasoning_details"] == [
        {"type": "reasoning.text", "text": assistant["reasoning"], "format": "mock-v1", "index": 0}
    ]


async def test_tool_errors_and_bad_arguments_become_text(client, mock):
    """A raising tool, bad JSON arguments and an unknown tool each become error text."""

    async def broken(order_id: str) -> str:
        raise RuntimeError("database down")

    def tool_call(name: str, args: str) -> dict[str, Any]:
        return {
            "id": f"c-{name}",
            "type": "function",
            "function": {"name": name, "arguments": args},
        }

    mock.reply_json(
        {
            "id": "x",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            tool_call("broken", '{"order_id": "1"}'),
                            tool_call("get_order", "{not json"),
                            tool_call("nope", "{}"),
                        ],
                    },
                }
            ],
        }
    )
    result = await client.chat.completions.run_tools(
        model="mock/echo", messages=ASK, tools=[broken, get_order]
    )
    tool_messages = [m for m in result.transcript or [] if m["role"] == "tool"]
    contents = [m["content"] for m in tool_messages]
    assert contents[0] == "Error: broken failed: RuntimeError: database down"
    assert contents[1].startswith("Error: the arguments for get_order are not valid")
    assert contents[2] == "Error: there is no tool named 'nope'"


async def test_max_rounds_stops_the_loop(client, mock):
    """With max_rounds=1 the loop stops after one model call, tool calls unanswered and unrun."""
    ran: list[str] = []

    async def get_order(order_id: str) -> str:
        ran.append(order_id)
        return "shipped"

    result = await client.chat.completions.run_tools(
        model="mock/echo", messages=ASK, tools=[get_order], max_rounds=1
    )
    assert result.choices[0].finish_reason == "tool_calls"
    assert len(mock.requests) == 1
    assert ran == []
    assert result.choices[0].message.tool_calls is not None
    assert result.transcript == [*ASK, result.choices[0].message.to_param()]


async def test_parallel_calls_run_concurrently(client, mock):
    """Two calls in one round run at the same time (both wait for each other)."""
    import anyio

    both_started = anyio.Event()
    started = []

    async def first(order_id: str) -> str:
        started.append(1)
        if len(started) == 2:
            both_started.set()
        with anyio.fail_after(5):
            await both_started.wait()
        return "one"

    async def second(order_id: str) -> str:
        return await first(order_id)

    result = await client.chat.completions.run_tools(
        model="mock/echo", messages=ASK, tools=[first, second]
    )
    assert result.choices[0].message.content == "Tool results: one; one"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tools": []}, "must not be empty"),
        ({"tools": [{"type": "function"}]}, "runnable tools"),
        ({"tools": "x"}, "list of functions"),
        ({"max_rounds": 0}, "max_rounds"),
        ({"tools": [get_order, get_order]}, "two tools"),
    ],
)
async def test_run_tools_bad_input(client, mock, kwargs, match):
    """Bad tools or rounds are rejected before any request."""
    args: dict[str, Any] = {"model": "mock/echo", "messages": ASK, "tools": [get_order], **kwargs}
    with pytest.raises((TypeError, ValueError), match=match):
        await client.chat.completions.run_tools(**args)
    assert mock.requests == []


async def test_run_tools_stream_yields_events_and_results(client):
    """The streaming loop yields deltas, tool results, then the final completion."""
    events = [
        e
        async for e in client.chat.completions.run_tools_stream(
            model="mock/echo", messages=ASK, tools=[get_order]
        )
    ]
    results = [e for e in events if isinstance(e, ToolResultEvent)]
    assert len(results) == 1 and json.loads(results[0].result) == {
        "id": "A-123",
        "status": "shipped",
    }
    final = events[-1]
    assert isinstance(final, CompletionDoneEvent)
    assert final.completion.choices[0].message.content.startswith("Tool results")  # type: ignore[union-attr]
    assert final.completion.transcript is not None and len(final.completion.transcript) == 4


async def test_tools_given_as_functions_to_create(client, mock):
    """create(tools=[fn]) sends the function's definition."""
    await client.chat.completions.create(model="mock/echo", messages=ASK, tools=[get_order])
    assert mock.requests[0].json["tools"][0]["function"]["name"] == "get_order"


F = TypeVar("F", bound=Callable[..., Any])


def logged(log: list[str]) -> Callable[[F], F]:
    """A plain logging decorator, the kind users write: a sync wrapper with functools.wraps."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            log.append(
                f"{getattr(fn, '__name__', '?')}({kwargs}) on main thread: {on_main_thread()}"
            )
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


def on_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def completion_with(message: dict[str, Any], finish: str) -> dict[str, Any]:
    return {
        "id": "c-script",
        "object": "chat.completion",
        "created": 1,
        "model": "p/m",
        "choices": [{"index": 0, "finish_reason": finish, "message": message}],
    }


def weather_call(call_id: str, city: str) -> dict[str, Any]:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "get_weather", "arguments": json.dumps({"city": city})},
    }


async def test_async_tool_behind_a_wraps_decorator_is_awaited(client, mock):
    """The model gets the awaited value, not '<coroutine object ...>', and no warning fires."""
    log: list[str] = []

    @logged(log)
    async def get_weather(city: str) -> str:
        """Current weather for a city.

        :param city: the city's name.
        """
        return f"Sunny in {city}"

    mock.reply_json(
        completion_with(
            {"role": "assistant", "content": None, "tool_calls": [weather_call("w1", "Paris")]},
            "tool_calls",
        )
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = await client.chat.completions.run_tools(
            model="p/m",
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[get_weather],
        )
        gc.collect()
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []
    sent = mock.requests[-1].json["messages"]
    assert sent[-1] == {
        "role": "tool",
        "tool_call_id": "w1",
        "name": "get_weather",
        "content": "Sunny in Paris",
    }
    assert result.choices[0].message.content == "Tool results: Sunny in Paris"
    # The decorator ran once, on the event loop, not in a worker thread.
    assert log == ["get_weather({'city': 'Paris'}) on main thread: True"]
    # The schema still comes from the decorated function's own signature and docstring.
    function = mock.requests[0].json["tools"][0]["function"]
    assert function["name"] == "get_weather"
    assert function["description"] == "Current weather for a city."
    assert function["parameters"]["properties"] == {
        "city": {"type": "string", "description": "the city's name."}
    }
    assert function["parameters"]["required"] == ["city"]


async def fetch_forecast(days: int, city: str) -> str:
    """Forecast for a city.

    :param city: the city's name.
    """
    return f"{days} days of sun in {city}"


class WeatherService:
    """Weather from a service object."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    async def __call__(self, city: str) -> str:
        return f"{self.prefix} {city}"


def sync_front(city: str) -> Awaitable[str]:
    """A sync function that hands back a coroutine."""
    return fetch_forecast(1, city)


@pytest.mark.parametrize(
    ("fn", "expected", "description"),
    [
        (
            functools.partial(fetch_forecast, 3),
            "3 days of sun in Oslo",
            "Forecast for a city.",
        ),
        (
            WeatherService("Rain in"),
            "Rain in Oslo",
            "Weather from a service object.",
        ),
        (
            sync_front,
            "1 days of sun in Oslo",
            "A sync function that hands back a coroutine.",
        ),
        (
            logged([])(functools.partial(fetch_forecast, 2)),
            "2 days of sun in Oslo",
            "Forecast for a city.",
        ),
    ],
    ids=["partial", "async-call-object", "sync-returns-coroutine", "decorated-partial"],
)
async def test_every_async_callable_shape_is_awaited(fn, expected, description):
    """Partials, objects with async __call__ and sync callables returning coroutines."""
    tool = function_tool(fn, name="weather")
    assert await tool.run('{"city": "Oslo"}') == expected
    function = tool.param["function"]
    assert function["description"] == description
    assert list(function["parameters"]["properties"]) == ["city"]
    assert function["parameters"]["required"] == ["city"]


# One scripted conversation, as plain completions and as the equivalent streams: two rounds of
# tool calls, then an answer.
CONVERSATION: list[dict[str, Any]] = [
    {"role": "assistant", "content": None, "tool_calls": [weather_call("w1", "Paris")]},
    {"role": "assistant", "content": None, "tool_calls": [weather_call("w2", "Oslo")]},
    {"role": "assistant", "content": "Paris is sunny, Oslo is sunny."},
]


def streamed(message: dict[str, Any]) -> list[dict[str, Any]]:
    base = {"id": "c-script", "object": "chat.completion.chunk", "created": 1, "model": "p/m"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    chunks = [chunk({"role": "assistant"})]
    for position, call in enumerate(message.get("tool_calls") or []):
        arguments = call["function"]["arguments"]
        head = {**call, "index": position, "function": {"name": call["function"]["name"]}}
        head["function"]["arguments"] = ""
        chunks.append(chunk({"tool_calls": [head]}))
        for start in range(0, len(arguments), 6):
            piece = arguments[start : start + 6]
            chunks.append(
                chunk({"tool_calls": [{"index": position, "function": {"arguments": piece}}]})
            )
    content = message.get("content") or ""
    for start in range(0, len(content), 7):
        chunks.append(chunk({"content": content[start : start + 7]}))
    chunks.append(chunk({}, "tool_calls" if message.get("tool_calls") else "stop"))
    return chunks


@pytest.mark.parametrize(
    ("max_rounds", "requests", "tool_runs"),
    [(8, 3, 2), (3, 3, 2), (2, 2, 1), (1, 1, 0)],
    ids=["answers-early", "answers-on-last-round", "limit-reached", "one-round"],
)
async def test_run_tools_and_run_tools_stream_give_the_same_transcript(
    client, mock, max_rounds, requests, tool_runs
):
    """Same script, same transcript and final completion; the last round's calls never run."""
    ran: list[str] = []

    async def get_weather(city: str) -> str:
        ran.append(city)
        return f"Sunny in {city}"

    ask = [{"role": "user", "content": "Weather in Paris and then Oslo?"}]
    for message in CONVERSATION[:requests]:
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        mock.reply_json(completion_with(message, finish))
    plain = await client.chat.completions.run_tools(
        model="p/m", messages=ask, tools=[get_weather], max_rounds=max_rounds
    )
    assert len(mock.requests) == requests and len(ran) == tool_runs

    mock.clear()
    for message in CONVERSATION[:requests]:
        mock.reply_stream(streamed(message))
    events = [
        event
        async for event in client.chat.completions.run_tools_stream(
            model="p/m", messages=ask, tools=[get_weather], max_rounds=max_rounds
        )
    ]
    assert len(mock.requests) == requests and len(ran) == 2 * tool_runs
    done = events[-1]
    assert isinstance(done, CompletionDoneEvent)
    assert [e for e in events if isinstance(e, CompletionDoneEvent)] == [done]
    results = [e.result for e in events if isinstance(e, ToolResultEvent)]
    assert results == [f"Sunny in {city}" for city in ["Paris", "Oslo"][:tool_runs]]

    assert plain.transcript is not None
    assert plain.transcript == done.completion.transcript
    # The transcript is the question, then each answer and the results of its calls, ending
    # with the last answer: unanswered tool calls included when the limit was reached.
    expected: list[dict[str, Any]] = list(ask)
    for number, message in enumerate(CONVERSATION[:requests]):
        expected.append(message)
        if number < requests - 1:
            call = message["tool_calls"][0]
            city = json.loads(call["function"]["arguments"])["city"]
            expected.append(
                {
                    "role": "tool",
                    "tool_call_id": call["id"],
                    "name": "get_weather",
                    "content": f"Sunny in {city}",
                }
            )
    assert plain.transcript == expected
    plain_message, streamed_message = plain.choices[0].message, done.completion.choices[0].message
    assert (
        plain_message.content == streamed_message.content == CONVERSATION[requests - 1]["content"]
    )
    assert plain_message.to_param() == streamed_message.to_param()
    assert plain.choices[0].finish_reason == done.completion.choices[0].finish_reason


async def test_msgspec_constraints_in_annotated_reach_the_schema_and_the_validation():
    def pick(
        count: Annotated[int, msgspec.Meta(ge=1, le=10)],
        label: Annotated[str, "a note for other tools"] = "x",
    ) -> str:
        """Pick things.

        Args:
            count: how many.
        """
        return f"{count} {label}"

    tool = function_tool(pick)
    count = tool.param["function"]["parameters"]["properties"]["count"]
    assert count == {"type": "integer", "minimum": 1, "maximum": 10, "description": "how many."}
    assert await tool.run('{"count": 3}') == "3 x"
    with pytest.raises(msgspec.ValidationError, match=">= 1"):
        await tool.run('{"count": 0}')


async def test_a_tool_answers_a_call_as_run_tools_would():
    """``answer`` gives a hand-written tool loop the text run_tools would send, errors as text."""

    async def price(sku: str, quantity: Annotated[int, msgspec.Meta(ge=1)]) -> dict[str, Any]:
        if sku == "gone":
            raise LookupError("no such sku")
        return {"sku": sku, "total": 2 * quantity}

    tool = function_tool(price)
    text, is_error = await tool.answer('{"sku": "a1", "quantity": 3}')
    assert (json.loads(text), is_error) == ({"sku": "a1", "total": 6}, False)
    text, is_error = await tool.answer('{"sku": "a1", "quantity": 0}')
    assert is_error and text.startswith("Error: the arguments for price are not valid:")
    assert "quantity" in text
    text, is_error = await tool.answer('{"sku": "gone", "quantity": 1}')
    assert (text, is_error) == ("Error: price failed: LookupError: no such sku", True)
    with pytest.raises(LookupError):
        await tool.run('{"sku": "gone", "quantity": 1}')
