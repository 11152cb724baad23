"""Static checks of the public types: mypy verifies every assert_type here (never run).

The file is not collected by pytest; `mypy` (part of CI) fails if a type drifts.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Any

import msgspec
import pydantic
from starlette.responses import StreamingResponse

from routmy_async import AsyncRoutmy, ChatCompletionStream, FunctionTool, function_tool
from routmy_async.resources.responses._stream import ResponseStream
from routmy_async.types import (
    AwaitableChatCompletion,
    ChatCompletion,
    ChatCompletionChunk,
    CreateEmbeddingResponse,
    ImagesResponse,
    ModelList,
    Response,
    ResponseFunctionToolCall,
    ResponseOutputItem,
    ResponseStreamEvent,
    ResponseTextDeltaEvent,
    ResponseUsage,
    StreamEvent,
)

if TYPE_CHECKING:
    from typing_extensions import assert_type

MESSAGES = [{"role": "user", "content": "hi"}]


class Answer(msgspec.Struct):
    value: int


async def _checks(client: AsyncRoutmy, flag: bool) -> None:
    chat = client.chat.completions
    assert_type(await chat.create(model="m", messages=MESSAGES), ChatCompletion)
    assert_type(await chat.create(model="m", messages=MESSAGES, stream=False), ChatCompletion)
    assert_type(await chat.create(model="m", messages=MESSAGES, stream=True), ChatCompletionStream)
    assert_type(
        await chat.create(model="m", messages=MESSAGES, stream=flag),
        ChatCompletion | ChatCompletionStream,
    )
    async with chat.stream(model="m", messages=MESSAGES) as stream:
        assert_type(stream, ChatCompletionStream)
        async for chunk in stream:
            assert_type(chunk, ChatCompletionChunk)
            assert_type(chunk.choices[0].delta.content, str | None)
        async for text in stream.text_deltas():
            assert_type(text, str)
        async for event in stream.events():
            assert_type(event, StreamEvent)
            if event.type == "content.delta":  # narrows, as openai-python users write it
                assert_type(event.delta, str)
            elif event.type == "tool_call.done":
                assert_type(event.tool_call.function.arguments, str)
        assert_type(stream.get_final_completion(), AwaitableChatCompletion)
        assert_type(await stream.get_final_completion(), AwaitableChatCompletion)
    parsed = await chat.parse(model="m", messages=MESSAGES, response_format=Answer)
    assert_type(parsed, ChatCompletion)
    completion = await chat.create(model="m", messages=MESSAGES, temperature=0.5, max_tokens=9)
    assert_type(completion.choices[0].message.content, str | None)
    assert_type(completion.usage.total_tokens if completion.usage else 0, int)
    assert_type(await client.models.list(), ModelList)
    assert_type(await client.embeddings.create(model="m", input="x"), CreateEmbeddingResponse)
    assert_type(await client.images.generate(model="m", prompt="p"), ImagesResponse)
    results = await chat.create_many([{"model": "m", "messages": MESSAGES}])
    assert_type(results, list[ChatCompletion | BaseException])
    # A typo in a typed field is caught by the type checker:
    await chat.create(model="m", messages=MESSAGES, temprature=0.5)  # type: ignore[call-overload]


class AnswerModel(pydantic.BaseModel):
    value: int


def lookup(key: str) -> str:
    return key


async def _pydantic_and_fastapi_checks(client: AsyncRoutmy) -> None:
    chat = client.chat.completions
    # A Pydantic model wherever a response_format or a tool goes:
    parsed = await chat.parse(model="m", messages=MESSAGES, response_format=AnswerModel)
    assert_type(parsed, ChatCompletion)
    created = await chat.create(model="m", messages=MESSAGES, response_format=AnswerModel)
    assert_type(created, ChatCompletion)
    async with chat.stream(model="m", messages=MESSAGES, response_format=AnswerModel) as stream:
        assert_type(stream, ChatCompletionStream)
    assert_type(function_tool(AnswerModel), FunctionTool)
    await chat.create(
        model="m", messages=MESSAGES, tools=[function_tool(lookup), lookup, Answer, AnswerModel]
    )
    await chat.create(model="m", messages=MESSAGES, tools=[function_tool(lookup)])
    await chat.parse(model="m", messages=MESSAGES, response_format=Answer, tools=[AnswerModel])
    # Results FastAPI can return, and the stream served again:
    assert_type(created.to_dict(), dict[str, Any])
    assert_type(created.to_json(), bytes)
    opened = await chat.create(model="m", messages=MESSAGES, stream=True)
    assert_type(opened.to_sse(), AsyncGenerator[bytes, None])
    assert_type(opened.to_sse(format="text", keepalive=None), AsyncGenerator[bytes, None])
    assert_type(opened.to_streaming_response(keepalive=5), StreamingResponse)
    opened.to_sse(format="html")  # type: ignore[arg-type]


async def _responses_checks(client: AsyncRoutmy, flag: bool) -> None:
    responses = client.responses
    assert_type(await responses.create(model="m", input="hi"), Response)
    assert_type(await responses.create(model="m", input="hi", stream=False), Response)
    assert_type(await responses.create(model="m", input="hi", stream=True), ResponseStream)
    assert_type(
        await responses.create(model="m", input="hi", stream=flag), Response | ResponseStream
    )
    response = await responses.create(
        model="m",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}],
        instructions="Be brief.",
        tools=[lookup, function_tool(lookup), {"type": "web_search_preview"}],
        tool_choice="auto",
        text={"verbosity": "low"},
        reasoning={"effort": "low"},
        max_output_tokens=9,
        store=False,
        metadata={"k": "v"},
    )
    assert_type(response.output_text, str)
    assert_type(response.output[0], ResponseOutputItem)
    assert_type(response.usage, ResponseUsage | None)
    assert_type(response.function_calls, list[ResponseFunctionToolCall])
    await responses.create(model="m", input=response.output)  # output items go back as input
    async with responses.stream(model="m", input="hi") as stream:
        assert_type(stream, ResponseStream)
        async for event in stream:
            assert_type(event, ResponseStreamEvent)
            if event.type == "response.output_text.delta":
                assert_type(event, ResponseTextDeltaEvent)
                assert_type(event.delta, str)
        async for text in stream.text_deltas():
            assert_type(text, str)
        assert_type(await stream.get_final_response(), Response)
    assert_type(await responses.parse(model="m", input="hi", text_format=Answer), Response)
    assert_type(await responses.parse(model="m", input="hi", text_format=AnswerModel), Response)
    assert_type(await responses.run_tools(model="m", input="hi", tools=[lookup]), Response)
    # A typo in a typed field is caught by the type checker:
    await responses.create(model="m", input="hi", temprature=0.5)  # type: ignore[call-overload]
