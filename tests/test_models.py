"""GET /models: the list, the modelled fields and everything else reachable."""

from __future__ import annotations

import pytest

from routmy_async import NotFoundError


async def test_models_list_fields(client, mock):
    """Models decode with token_multiplier and is_available."""
    models = await client.models.list()
    locked = next(m for m in models.data if m.id == "mock/locked")
    assert locked.is_available is False and locked.token_multiplier == 1
    assert models.ids()[0] == "mock/echo" and models.object == "list"
    assert mock.requests[0].method == "GET" and mock.requests[0].path == "/v1/models"


async def test_unmodelled_model_fields_are_reachable(client, mock):
    """A field we do not model (context_length, pricing) is reachable from the model."""
    mock.reply_json(
        {
            "object": "list",
            "data": [
                {
                    "id": "a/b",
                    "object": "model",
                    "created": 1,
                    "owned_by": "a",
                    "context_length": 128000,
                    "pricing": {"prompt": "0.1"},
                }
            ],
        }
    )
    models = await client.models.list()
    model = models.data[0]
    assert model.context_length == 128000
    assert model.raw["pricing"] == {"prompt": "0.1"}
    assert models.raw["data"][0]["id"] == "a/b"
    with pytest.raises(AttributeError):
        model.not_sent  # noqa: B018


async def test_retrieve_finds_or_raises(client):
    """retrieve() returns one model or NotFoundError with model_not_found."""
    model = await client.models.retrieve("mock/image")
    assert model.token_multiplier == 4
    with pytest.raises(NotFoundError) as info:
        await client.models.retrieve("nope/none")
    assert info.value.code == "model_not_found"
