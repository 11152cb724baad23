"""Results FastAPI can return: every response type has to_dict() and to_json() (bytes), and
the two agree."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest

from routmy_async import AsyncRoutmy
from routmy_async.types import ResponseObject, TopLevelResponse

ASK = [{"role": "user", "content": "hello"}]


async def completion(client: AsyncRoutmy) -> Any:
    return await client.chat.completions.create(model="mock/echo", messages=ASK)


async def streamed_completion(client: AsyncRoutmy) -> Any:
    async with client.chat.completions.stream(model="mock/echo", messages=ASK) as stream:
        return await stream.until_done()


async def chunk(client: AsyncRoutmy) -> Any:
    async with client.chat.completions.stream(model="mock/echo", messages=ASK) as stream:
        async for first in stream:
            return first


async def models(client: AsyncRoutmy) -> Any:
    return await client.models.list()


async def model(client: AsyncRoutmy) -> Any:
    return (await client.models.list()).data[0]


async def embeddings(client: AsyncRoutmy) -> Any:
    return await client.embeddings.create(model="mock/embed", input=["a", "b"])


async def images(client: AsyncRoutmy) -> Any:
    return await client.images.generate(model="mock/image", prompt="a lighthouse")


@pytest.mark.parametrize(
    "get",
    [completion, streamed_completion, chunk, models, model, embeddings, images],
    ids=lambda get: get.__name__,
)
async def test_every_response_has_to_dict_and_to_json(
    client: AsyncRoutmy, get: Callable[[AsyncRoutmy], Awaitable[Any]]
) -> None:
    """to_json() is bytes holding exactly what to_dict() holds, and both are plain JSON."""
    result = await get(client)
    assert isinstance(result, ResponseObject)
    encoded = result.to_json()
    assert isinstance(encoded, bytes)
    as_dict = result.to_dict()
    assert msgspec.json.decode(encoded) == as_dict == json.loads(json.dumps(as_dict))
    assert as_dict  # something was sent


def test_every_top_level_type_inherits_them() -> None:
    """No response type overrides them away."""
    pending: list[type[Any]] = [TopLevelResponse]
    seen = []
    while pending:
        kind = pending.pop()
        seen.append(kind)
        pending.extend(kind.__subclasses__())
        assert callable(kind.to_dict) and callable(kind.to_json)
    assert len(seen) > 4


def test_an_unencodable_parsed_value_is_a_clear_type_error() -> None:
    """A parsed value JSON cannot carry raises TypeError naming its type."""
    from routmy_async.types import ChatCompletionMessage

    message = ChatCompletionMessage(content="x", parsed=object())
    with pytest.raises(TypeError, match="object"):
        message.to_json()
    with pytest.raises(TypeError, match="object"):
        message.to_dict()


async def test_returning_a_result_from_a_fastapi_endpoint_gives_its_json(client):
    from fastapi.encoders import jsonable_encoder

    completion = await client.chat.completions.create(
        model="mock/echo", messages=[{"role": "user", "content": "hi"}]
    )
    models = await client.models.list()
    for result in (completion, models):
        encoded = jsonable_encoder(result)
        assert encoded == result.to_dict()
        assert not [key for key in encoded if key.startswith("_")]
    assert dict(completion)["id"] == completion.id
