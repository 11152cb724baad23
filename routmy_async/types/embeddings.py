"""Types of ``POST /embeddings``."""

from __future__ import annotations

import array
import base64
import sys

import msgspec

from ._base import ResponseObject, TopLevelResponse

__all__ = ["CreateEmbeddingResponse", "Embedding", "EmbeddingUsage", "decode_base64_floats"]


def decode_base64_floats(text: str) -> list[float]:
    """Decode a base64 string of little-endian float32 values into a list of floats.

    :raises ValueError: not base64, or not a whole number of float32 values.
    """
    raw = base64.b64decode(text)
    if len(raw) % 4:
        raise ValueError(f"a base64 embedding of {len(raw)} bytes is not a float32 vector")
    values = array.array("f")
    values.frombytes(raw)
    if sys.byteorder != "little":  # pragma: no cover - the wire format is little-endian
        values.byteswap()
    return values.tolist()


class Embedding(ResponseObject, frozen=True):
    """One vector; ``index`` is the position of its input."""

    object: str = "embedding"
    index: int = 0
    embedding: list[float] = []


class EmbeddingUsage(ResponseObject, frozen=True):
    """Token counts of an embeddings request."""

    prompt_tokens: int = 0
    total_tokens: int = 0
    cost: float | None = None


class CreateEmbeddingResponse(TopLevelResponse, frozen=True):
    """The answer of ``client.embeddings.create``: ``data`` is sorted by ``index``."""

    object: str = "list"
    data: list[Embedding] = []
    model: str = ""
    usage: EmbeddingUsage | None = None

    def vectors(self) -> list[list[float]]:
        """The vectors in input order."""
        return [item.embedding for item in self.data]


class _WireEmbedding(msgspec.Struct, kw_only=True):
    object: str = "embedding"
    index: int = 0
    embedding: list[float] | str = []


class WireEmbeddingResponse(msgspec.Struct, kw_only=True):
    """The body as sent: vectors may be float lists or base64 strings."""

    object: str = "list"
    data: list[_WireEmbedding] = []
    model: str = ""
    usage: EmbeddingUsage | None = None
