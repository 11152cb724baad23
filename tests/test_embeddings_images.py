"""Embeddings and image generation: bodies, base64 decoding, order, errors."""

from __future__ import annotations

import base64
import struct

import pytest

from routmy_async import APIResponseValidationError, AsyncRoutmy, RateLimitError
from routmy_async.testing import png_bytes


async def test_embeddings_float_and_base64_agree(client, mock):
    """base64 float32 vectors decode to the same floats the float format sends."""
    floats = await client.embeddings.create(model="mock/embed", input=["a", "b"], dimensions=16)
    packed = await client.embeddings.create(
        model="mock/embed", input=["a", "b"], dimensions=16, encoding_format="base64", user="u"
    )
    assert floats.vectors() == packed.vectors()
    assert len(floats.data[0].embedding) == 16
    assert mock.requests[1].json == {
        "model": "mock/embed",
        "input": ["a", "b"],
        "encoding_format": "base64",
        "dimensions": 16,
        "user": "u",
    }
    assert packed.usage is not None and packed.usage.total_tokens == 2


@pytest.mark.parametrize("value", ["one", ["a", "b"], [1, 2, 3], [[1, 2], [3]]])
async def test_all_input_shapes(client, value):
    """A string, strings, a token list and token lists are all accepted."""
    response = await client.embeddings.create(model="mock/embed", input=value)
    expected = 1 if isinstance(value, str) or isinstance(value[0], int) else len(value)
    assert len(response.data) == expected


async def test_out_of_order_answer_is_sorted_by_index(client, mock):
    """Vectors come back in input order whatever order the server sent."""
    vector = base64.b64encode(struct.pack("<2f", 1.0, 2.0)).decode()
    mock.reply_json(
        {
            "object": "list",
            "model": "m",
            "data": [
                {"object": "embedding", "index": 1, "embedding": [3.0, 4.0]},
                {"object": "embedding", "index": 0, "embedding": vector},
            ],
            "usage": {"prompt_tokens": 2, "total_tokens": 2},
            "provider": "x",
        }
    )
    response = await client.embeddings.create(model="m", input=["a", "b"])
    assert response.vectors() == [[1.0, 2.0], [3.0, 4.0]]
    assert response.provider == "x"


async def test_bad_base64_is_a_validation_error(client, mock):
    """A base64 vector that is not float32 data raises APIResponseValidationError."""
    mock.reply_json({"data": [{"index": 0, "embedding": base64.b64encode(b"abc").decode()}]})
    with pytest.raises(APIResponseValidationError, match="could not be decoded"):
        await client.embeddings.create(model="m", input="x")


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"input": []}, ValueError, "empty"),
        ({"input": 5}, TypeError, "input"),
        ({"input": ["a", 1]}, TypeError, "mixed"),
        ({"encoding_format": "hex"}, ValueError, "encoding_format"),
        ({"dimensions": 0}, ValueError, "dimensions"),
        ({"user": 3}, TypeError, "user"),
        ({"model": ""}, ValueError, "model"),
    ],
)
async def test_embedding_bad_input(client, mock, kwargs, exc, match):
    """Bad embedding arguments fail before sending."""
    with pytest.raises(exc, match=match):
        await client.embeddings.create(**{"model": "m", "input": "x", **kwargs})
    assert mock.requests == []


async def test_embeddings_pass_through_and_errors(client, mock):
    """Unknown keywords go in the body; status errors map like chat."""
    await client.embeddings.create(model="m", input="x", extra_body={"input_type": "query"})
    assert mock.requests[0].json["input_type"] == "query"
    mock.reply_error(429, "slow")
    with pytest.raises(RateLimitError):
        await client.embeddings.create(model="m", input="x")


async def test_embed_many_batches_in_order(mock):
    """embed_many splits into batches, runs them concurrently and keeps input order."""
    texts = [f"text {i}" for i in range(23)]
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        vectors = await client.embeddings.embed_many(model="mock/embed", inputs=texts, batch_size=5)
        single = await client.embeddings.create(model="mock/embed", input=texts[17])
    assert len(vectors) == 23 and vectors[17] == single.vectors()[0]
    batch_sizes = [len(r.json["input"]) for r in mock.requests[:-1]]
    assert sorted(batch_sizes) == [3, 5, 5, 5, 5]
    with pytest.raises(TypeError):
        await client.embeddings.embed_many(model="m", inputs="abc")
    with pytest.raises(ValueError, match="batch_size"):
        await client.embeddings.embed_many(model="m", inputs=["a"], batch_size=0)


async def test_images_generate_b64_and_save(client, mock, tmp_path):
    """images.generate returns b64_json images with .data() and .save()."""
    response = await client.images.generate(
        model="mock/image",
        prompt="a cube",
        n=2,
        size="256x256",
        quality="low",
        image_config={"aspect_ratio": "1:1"},
    )
    assert len(response.data) == 2
    assert response.data[0].data() == png_bytes(16, 16)
    path = await response.data[1].save(tmp_path / "x.png")
    assert path.read_bytes().startswith(b"\x89PNG")
    assert mock.requests[0].json == {
        "model": "mock/image",
        "prompt": "a cube",
        "n": 2,
        "size": "256x256",
        "quality": "low",
        "image_config": {"aspect_ratio": "1:1"},
    }


async def test_images_url_form(client, mock):
    """A data: url answer decodes; a remote url is refused, never fetched."""
    response = await client.images.generate(model="m", prompt="x", response_format="url")
    assert response.data[0].data().startswith(b"\x89PNG")
    mock.reply_json({"created": 1, "data": [{"url": "https://cdn.example/i.png"}, {}]})
    remote = await client.images.generate(model="m", prompt="x")
    with pytest.raises(ValueError, match="remote URL"):
        remote.data[0].data()
    with pytest.raises(ValueError, match="neither"):
        remote.data[1].data()


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"prompt": ""}, ValueError, "prompt"),
        ({"prompt": 5}, TypeError, "prompt"),
        ({"n": 0}, ValueError, "n must"),
        ({"size": 256}, TypeError, "size"),
        ({"image_config": "1:1"}, TypeError, "image_config"),
    ],
)
async def test_images_bad_input(client, mock, kwargs, exc, match):
    """Bad image arguments fail before sending."""
    with pytest.raises(exc, match=match):
        await client.images.generate(**{"model": "m", "prompt": "x", **kwargs})
    assert mock.requests == []
