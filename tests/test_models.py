"""GET /models: the list, the modelled fields (router fields included) and everything else
reachable."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import pytest

from routmy_async import APIResponseValidationError, AsyncRoutmy, NotFoundError
from routmy_async.testing import MockRoutmy
from routmy_async.types import (
    Model,
    ModelArchitecture,
    ModelList,
    ModelPricing,
    ModelTopProvider,
)
from routmy_async.types.models import decode_model_list

PRICING = {
    "prompt": "0.000001",
    "completion": "0.000002",
    "request": "0",
    "image": "0.001445",
    "web_search": "0.004",
    "internal_reasoning": "0.000002",
    "input_cache_read": "0.0000001",
    "input_cache_write": "0.00000125",
}
ARCHITECTURE = {
    "modality": "text+image->text",
    "input_modalities": ["text", "image"],
    "output_modalities": ["text"],
    "tokenizer": "GPT",
    "instruct_type": None,
}
TOP_PROVIDER = {"context_length": 128000, "max_completion_tokens": 16384, "is_moderated": True}


def router_entry(i: int = 0, **changes: Any) -> dict[str, Any]:
    """A models-list entry with every router field, shaped like OpenRouter's."""
    entry: dict[str, Any] = {
        "id": f"provider{i % 7}/model-{i}",
        "owned_by": f"provider{i % 7}",
        "token_multiplier": 1 + i % 3,
        "is_available": i % 5 != 0,
        "name": f"Provider {i % 7}: Model {i}",
        "description": f"Model {i}, good at everything.",
        "context_length": 4096 * (1 + i % 32),
        "pricing": {**PRICING, "prompt": f"0.{i + 1:07d}"},
        "architecture": ARCHITECTURE,
        "top_provider": {**TOP_PROVIDER, "context_length": 4096 * (1 + i % 32)},
        "supported_parameters": ["max_tokens", "temperature", "tools"][: 1 + i % 3],
    }
    entry.update(changes)
    return entry


async def listed(entries: list[dict[str, Any]]) -> ModelList:
    """The models list a client decodes when MockRoutmy serves ``entries``."""
    async with (
        MockRoutmy(models=entries) as mock,
        AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as client,
    ):
        return await client.models.list()


async def test_models_list_fields(client, mock):
    """Models decode with token_multiplier and is_available."""
    models = await client.models.list()
    locked = next(m for m in models.data if m.id == "mock/locked")
    assert locked.is_available is False and locked.token_multiplier == 1
    assert locked.context_length is None and locked.pricing is None
    assert locked.architecture is None and locked.supported_parameters is None
    assert models.ids()[0] == "mock/echo" and models.object == "list"
    assert mock.requests[0].method == "GET" and mock.requests[0].path == "/v1/models"


async def test_router_fields_are_typed():
    """Models of a router that lists prices and context lengths (the mock's "openrouter"
    flavor; rout.my lists neither) decode each field into its declared type."""
    async with (
        MockRoutmy(flavor="openrouter") as mock,
        AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client,
    ):
        model = await client.models.retrieve("openai/gpt-4o-mini")
        vision = await client.models.retrieve("mock/vision")
    assert model.name == "OpenAI: GPT-4o-mini"
    assert model.description == "A small, fast and affordable multimodal model."
    assert model.context_length == 128000
    assert isinstance(model.pricing, ModelPricing)
    assert model.pricing.prompt == "0.00000015" and model.pricing.completion == "0.0000006"
    assert model.pricing.input_cache_read == "0.000000075"
    assert model.pricing.input_cache_write is None  # not sent
    assert model.architecture == ModelArchitecture(
        modality="text+image->text",
        input_modalities=["text", "image", "file"],
        output_modalities=["text"],
        tokenizer="GPT",
    )
    assert model.top_provider == ModelTopProvider(
        context_length=128000, max_completion_tokens=16384, is_moderated=True
    )
    assert model.supported_parameters is not None and "tools" in model.supported_parameters
    assert vision.architecture is not None and vision.architecture.input_modalities == [
        "text",
        "image",
    ]
    assert vision.pricing is None and vision.top_provider is None


async def test_prices_as_floats():
    """Prices stay as sent (text or number); prompt_per_token & co. and as_float give floats."""
    models = await listed(
        [
            router_entry(0),
            router_entry(1, pricing={"prompt": 0.5e-6, "completion": 2, "request": "-1"}),
            router_entry(2, pricing={"prompt": "free", "completion": "", "image": "nan"}),
            router_entry(3, pricing={}),
        ]
    )
    text, numbers, odd, empty = (model.pricing for model in models.data)
    assert text is not None and numbers is not None and odd is not None and empty is not None
    assert text.prompt == "0.0000001" and text.prompt_per_token == pytest.approx(1e-7)
    assert text.completion_per_token == pytest.approx(2e-6)
    assert text.as_float("web_search") == pytest.approx(0.004)
    assert text.as_float("input_cache_write") == pytest.approx(1.25e-6)
    assert text.as_float("request") == 0.0
    assert numbers.prompt == pytest.approx(0.5e-6) and isinstance(numbers.completion, float)
    assert numbers.prompt_per_token == pytest.approx(0.5e-6)
    assert numbers.completion_per_token == 2.0
    assert numbers.as_float("request") == -1.0  # a router's "varies" stays visible
    assert odd.prompt == "free" and odd.prompt_per_token is None
    assert odd.completion_per_token is None and odd.as_float("image") is None
    assert empty.prompt_per_token is None and empty.as_float("image") is None
    with pytest.raises(ValueError, match="unknown price 'audio'"):
        text.as_float("audio")  # type: ignore[arg-type]
    assert math.isclose(
        sum(m.pricing.prompt_per_token or 0 for m in models.data if m.pricing), 1e-7 + 0.5e-6
    )


async def test_unknown_fields_stay_reachable():
    """Keys the Structs do not declare, in the entry or its sub-objects, are in model.raw."""
    entry = router_entry(
        0,
        canonical_slug="provider0/model-0-2025",
        per_request_limits=None,
        pricing={**PRICING, "audio": "0.00004", "discount": 0.1},
        architecture={**ARCHITECTURE, "reasoning": True},
        top_provider={**TOP_PROVIDER, "region": "eu"},
    )
    models = await listed([entry])
    model = models.data[0]
    assert model.canonical_slug == "provider0/model-0-2025"
    assert model.per_request_limits is None
    assert model.raw["pricing"]["audio"] == "0.00004" and model.raw["pricing"]["discount"] == 0.1
    assert model.raw["architecture"]["reasoning"] is True
    assert model.raw["top_provider"]["region"] == "eu"
    assert model.pricing is not None and model.pricing.prompt == PRICING["prompt"]
    assert model.architecture is not None and model.architecture.tokenizer == "GPT"
    assert model.top_provider is not None and model.top_provider.context_length == 128000
    assert models.raw["data"][0]["pricing"] == entry["pricing"]
    with pytest.raises(AttributeError):
        model.not_sent  # noqa: B018


async def test_unmodelled_model_fields_are_reachable(client, mock):
    """A field we do not model is reachable from the model; .raw has the entry as sent."""
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
                    "hugging_face_id": "a/b-hf",
                }
            ],
        }
    )
    models = await client.models.list()
    model = models.data[0]
    assert model.context_length == 128000 and model.hugging_face_id == "a/b-hf"
    assert model.raw["pricing"] == {"prompt": "0.1"}
    assert models.raw["data"][0]["id"] == "a/b"
    with pytest.raises(AttributeError):
        model.not_sent  # noqa: B018


async def test_nulls_numbers_and_odd_shapes_decode():
    """null router fields, numeric prices, unknown pricing keys, and an architecture or
    parameter list of another type: the list decodes; the odd value is None, as sent in raw."""
    models = await listed(
        [
            router_entry(
                0,
                name=None,
                description=None,
                context_length=None,
                pricing=None,
                architecture=None,
                top_provider=None,
                supported_parameters=None,
            ),
            router_entry(
                1,
                pricing={"prompt": 0, "completion": 1e-6, "surprise": {"x": [1]}},
                top_provider={"context_length": None, "max_completion_tokens": None},
            ),
            router_entry(2, architecture="text->text", supported_parameters=["tools", 7]),
            router_entry(3, architecture={"modality": "text->text", "input_modalities": "text"}),
            {"id": "bare/model"},
        ]
    )
    nulls, numbers, odd, partly, bare = models.data
    for name in [
        "name",
        "description",
        "context_length",
        "pricing",
        "architecture",
        "top_provider",
        "supported_parameters",
    ]:
        assert getattr(nulls, name) is None, name
        assert getattr(bare, name) is None, name
    assert numbers.pricing == ModelPricing(prompt=0.0, completion=1e-6)
    assert numbers.raw["pricing"]["surprise"] == {"x": [1]}
    assert numbers.top_provider == ModelTopProvider()
    assert odd.architecture is None and odd.raw["architecture"] == "text->text"
    assert odd.supported_parameters is None and odd.raw["supported_parameters"] == ["tools", 7]
    # The keys that fit are kept; the rest is in raw.
    assert partly.architecture == ModelArchitecture(modality="text->text")
    assert partly.raw["architecture"]["input_modalities"] == "text"


async def test_mistyped_router_fields_do_not_fail_the_list():
    """A context_length as text or a float, a price of another type, a pricing that is not an
    object: the list still decodes, each value converted or left out (and kept in raw)."""
    models = await listed(
        [
            router_entry(0, context_length="8192"),
            router_entry(1, context_length=8192.0),
            router_entry(2, context_length=8192.5, name=5, description=["x"]),
            router_entry(3, context_length="unknown", pricing="free"),
            router_entry(
                4,
                pricing={"prompt": True, "completion": "0.000002", "audio": "1"},
                top_provider={"context_length": "n/a", "max_completion_tokens": "4096"},
            ),
            router_entry(5, created="1700000000", is_available="false"),
        ]
    )
    text, whole, fraction, words, parts, loose = models.data
    assert text.context_length == 8192 and whole.context_length == 8192
    assert fraction.context_length is None and fraction.raw["context_length"] == 8192.5
    assert fraction.name is None and fraction.description is None
    assert fraction.raw["name"] == 5
    assert words.context_length is None and words.pricing is None
    assert words.raw["pricing"] == "free" and words.raw["context_length"] == "unknown"
    assert parts.pricing == ModelPricing(completion="0.000002")
    assert parts.top_provider == ModelTopProvider(max_completion_tokens=4096)
    assert parts.raw["pricing"]["prompt"] is True
    assert loose.created == 1700000000 and loose.is_available is False
    # Fields that decode keep decoding: the other models are whole.
    assert text.pricing is not None and text.pricing.prompt == "0.0000001"
    assert text.architecture is not None and text.supported_parameters == ["max_tokens"]


async def test_lenient_decoding_still_rejects_what_is_not_a_models_list(client, mock):
    """Without an id, or with data that is not a list, a list is still an error."""
    mock.reply_json({"object": "list", "data": [{"owned_by": "x", "context_length": "1"}]})
    with pytest.raises(APIResponseValidationError, match="id"):
        await client.models.list()
    mock.reply_json({"object": "list", "data": {"id": "a"}})
    with pytest.raises(APIResponseValidationError, match="data"):
        await client.models.list()
    with pytest.raises(msgspec.ValidationError, match=r"data\[0\]"):
        decode_model_list(b'{"data": [5, {"id": "a", "context_length": "x"}]}')
    with pytest.raises(msgspec.DecodeError):
        decode_model_list(b"{not json")


async def test_three_hundred_models_round_trip():
    """300 router entries: every typed field matches what was sent, and re-encoding a model
    gives its entry back."""
    entries = [router_entry(i) for i in range(300)]
    models = await listed(entries)
    assert len(models.data) == 300
    for model, entry in zip(models.data, entries, strict=True):
        assert model.id == entry["id"] and model.name == entry["name"]
        assert model.context_length == entry["context_length"]
        assert model.pricing is not None and model.pricing.prompt == entry["pricing"]["prompt"]
        assert model.pricing.to_dict() == entry["pricing"]
        assert model.architecture is not None
        assert model.architecture.to_dict() == {
            k: v for k, v in entry["architecture"].items() if v is not None
        }
        assert model.top_provider is not None
        assert model.top_provider.to_dict() == entry["top_provider"]
        assert model.supported_parameters == entry["supported_parameters"]
        sent = {"object": "model", "created": 1700000000, **entry}
        assert msgspec.json.decode(msgspec.json.encode(model)) == sent
        assert model.raw == sent
    assert len(set(models.data)) == 300  # hashable (by id), router lists and all
    assert sum(m.context_length or 0 for m in models.data) == sum(
        e["context_length"] for e in entries
    )


def test_models_built_in_code():
    """A Model built in code takes the router fields as typed values; repr, to_dict and
    equality behave as for any response object."""
    architecture = ModelArchitecture(modality="text->text", input_modalities=["text"])
    model = Model(
        id="a/b",
        context_length=8192,
        pricing=ModelPricing(prompt="0.000001"),
        architecture=architecture,
        supported_parameters=["tools"],
    )
    assert model.architecture is architecture and model.supported_parameters == ["tools"]
    assert model.pricing is not None and model.pricing.prompt_per_token == pytest.approx(1e-6)
    assert model.to_dict() == {
        "id": "a/b",
        "context_length": 8192,
        "pricing": {"prompt": "0.000001"},
        "architecture": {"modality": "text->text", "input_modalities": ["text"]},
        "supported_parameters": ["tools"],
    }
    assert model.raw == model.to_dict()
    assert repr(model) == (
        "Model(id='a/b', context_length=8192, pricing=ModelPricing(prompt='0.000001'), "
        "architecture=ModelArchitecture(modality='text->text', input_modalities=['text']), "
        "supported_parameters=['tools'])"
    )
    decoded = msgspec.json.decode(msgspec.json.encode(model), type=Model)
    assert decoded.architecture == architecture and decoded.to_dict() == model.to_dict()
    assert decoded.architecture is decoded.architecture  # decoded once, then kept
    assert repr(decoded) == repr(model) and hash(decoded) == hash(model)
    assert Model(id="a/b").architecture is None and Model(id="a/b").to_dict() == {"id": "a/b"}


async def test_retrieve_finds_or_raises(client):
    """retrieve() returns one model or NotFoundError with model_not_found."""
    model = await client.models.retrieve("mock/image")
    assert model.token_multiplier == 4
    with pytest.raises(NotFoundError) as info:
        await client.models.retrieve("nope/none")
    assert info.value.code == "model_not_found"
