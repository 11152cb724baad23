"""Static checks of the public types: mypy verifies every assert_type here (never run).

The file is not collected by pytest; `mypy` (part of CI) fails if a type drifts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from routmy_async import AsyncRoutmy, ChatCompletionStream
from routmy_async.types import (
    ChatCompletion,
    ChatCompletionChunk,
    CreateEmbeddingResponse,
    ImagesResponse,
    ModelList,
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
        assert_type(stream.get_final_completion(), ChatCompletion)
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
