"""Raw requests under a spend limit (issue 29): a raw ``client.post`` to an endpoint the SDK
models is priced as its typed call is (embeddings: the prompt alone); a raw request to a path
the limit cannot price is refused before it is sent, naming the path and what to do; a raw
read is sent unpriced."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from routmy_async import AsyncRoutmy, NotFoundError, SpendLimit, SpendLimitError
from routmy_async.testing import MockRoutmy


def client_for(mock: MockRoutmy, limit: SpendLimit) -> AsyncRoutmy:
    return AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, spend_limit=limit)


def sent_to(mock: MockRoutmy, path: str) -> int:
    return sum(1 for request in mock.requests if request.path.endswith(path))


def spent(limit: SpendLimit) -> Decimal:
    units = limit.spend.units
    assert units is not None
    return units.spent


async def test_a_raw_embeddings_post_is_priced_as_the_typed_call():
    """``client.post("/embeddings", ...)`` under a limit with no ``default_output_tokens``
    is sent (embeddings generate nothing: no output cap is needed) and counts what the typed
    call counts for the same input."""
    body: dict[str, Any] = {"model": "mock/embed", "input": ["one two three", "four five"]}
    typed_limit, raw_limit = SpendLimit(max_units=10_000), SpendLimit(max_units=10_000)
    async with MockRoutmy() as mock:
        async with client_for(mock, typed_limit) as typed, client_for(mock, raw_limit) as raw:
            await typed.embeddings.create(**body)
            answer = await raw.post("/embeddings", body=body)
    assert answer["usage"]["prompt_tokens"] > 0
    assert spent(raw_limit) == spent(typed_limit) > 0


async def test_a_raw_chat_post_is_priced_as_the_typed_call_and_needs_its_cap():
    """A raw chat completion with ``max_tokens`` counts what the typed call counts; without
    one (and no ``default_output_tokens``) it is refused as the typed call is, nothing
    sent."""
    messages = [{"role": "user", "content": "hello there"}]
    typed_limit, raw_limit = SpendLimit(max_units=10_000), SpendLimit(max_units=10_000)
    async with MockRoutmy() as mock:
        async with client_for(mock, typed_limit) as typed, client_for(mock, raw_limit) as raw:
            await typed.chat.completions.create(model="mock/echo", messages=messages, max_tokens=9)
            body: dict[str, Any] = {"model": "mock/echo", "messages": messages, "max_tokens": 9}
            await raw.post("/chat/completions", body=body)
            del body["max_tokens"]
            with pytest.raises(SpendLimitError) as refused:
                await raw.post("/chat/completions", body=body)
            assert sent_to(mock, "/chat/completions") == 2
    assert spent(raw_limit) == spent(typed_limit) > 0
    assert refused.value.missing == "max_tokens"


async def test_a_raw_post_to_an_unknown_path_is_refused_naming_it():
    """``client.post("/video/generations", ...)``: the limit cannot price it, so it is
    refused before it is sent (never counted as free), and the error names the path, what
    the limit prices and how to send it anyway; the limit is left as it was."""
    limit = SpendLimit(max_units=10_000, default_output_tokens=100)
    async with MockRoutmy() as mock, client_for(mock, limit) as client:
        with pytest.raises(SpendLimitError) as refused:
            await client.post("/video/generations", body={"model": "mock/echo", "prompt": "a"})
        with pytest.raises(SpendLimitError):
            await client.request("DELETE", "/files/file-1")
        assert sent_to(mock, "/video/generations") == sent_to(mock, "/files/file-1") == 0
    error = refused.value
    assert error.missing == "endpoint" and error.model == "mock/echo"
    assert "POST /video/generations is not an endpoint the spend limit can price" in str(error)
    assert "/embeddings" in str(error) and "client that has no spend_limit" in str(error)
    assert "max_tokens" not in str(error)
    assert spent(limit) == 0 and limit.spend.units is not None
    assert limit.spend.units.reserved == 0


async def test_a_raw_read_is_sent_unpriced_under_a_limit():
    """``client.get("/credits")`` (a path the SDK does not model) and ``client.get("/models")``
    read: they are sent (the mock answers the first with a 404, not the limit with a
    refusal), and count nothing."""
    limit = SpendLimit(max_units=10)
    async with MockRoutmy() as mock, client_for(mock, limit) as client:
        with pytest.raises(NotFoundError, match="No route /v1/credits"):
            await client.get("/credits")
        listed = await client.get("/models")
    assert listed["object"] == "list"
    assert spent(limit) == 0


async def test_the_unpriced_refusal_is_the_same_outside_the_typed_api_through_a_stream():
    """A raw stream to an unknown path is refused on opening, before it is sent; a raw
    stream of chat completions is priced as chat and settles to its usage."""
    limit = SpendLimit(max_units=10_000)
    body = {
        "model": "mock/echo",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    async with MockRoutmy() as mock, client_for(mock, limit) as client:
        with pytest.raises(SpendLimitError, match="POST /custom/stream is not an endpoint"):
            async with client.stream_request("POST", "/custom/stream", body=body):
                pass
        async with client.stream_request("POST", "/chat/completions", body=body) as events:
            frames = [event async for event in events]
        assert sent_to(mock, "/custom/stream") == 0
    assert frames and limit.spend.units is not None
    assert 0 < limit.spend.units.spent < 100 and limit.spend.units.reserved == 0
