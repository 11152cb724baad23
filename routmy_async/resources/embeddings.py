"""``client.embeddings``: ``POST /embeddings``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from .._checks import check_count, is_integer
from .._http._ratelimit import estimate_tokens
from .._params import RequestOptions, build_body, check_model, split_options
from .._request import Undecodable
from ..types.embeddings import (
    CreateEmbeddingResponse,
    Embedding,
    WireEmbeddingResponse,
    decode_base64_floats,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .._auto_concurrency import AutoConcurrency
    from .._request import CallSpec, Pipeline

__all__ = ["Embeddings", "check_embedding_input"]

_decode_wire = msgspec.json.Decoder(WireEmbeddingResponse).decode


def _decode_embeddings(data: bytes) -> CreateEmbeddingResponse:
    """The answer with every vector a list of floats (base64 ones decoded), in input order.

    :raises Undecodable: a base64 vector does not decode.
    """
    wire = _decode_wire(data)
    try:
        vectors = [
            Embedding(
                object=item.object,
                index=item.index,
                embedding=(
                    decode_base64_floats(item.embedding)
                    if isinstance(item.embedding, str)
                    else item.embedding
                ),
            )
            for item in wire.data
        ]
    except ValueError as exc:
        raise Undecodable(f"an embedding could not be decoded: {exc}") from None
    vectors.sort(key=lambda item: item.index)
    return CreateEmbeddingResponse(
        object=wire.object, data=vectors, model=wire.model, usage=wire.usage
    )


EmbeddingInput = str | Sequence[str] | Sequence[int] | Sequence[Sequence[int]]


def check_embedding_input(value: Any) -> int:
    """Check ``input`` (a string, strings, a token list or token lists); return its item count.

    :raises TypeError: any other shape. :raises ValueError: an empty list.
    """
    if isinstance(value, str):
        return 1
    if isinstance(value, (bytes, dict)) or not isinstance(value, Sequence):
        raise TypeError(
            "input must be a string, a list of strings, a list of token ids or a list of "
            f"token-id lists, not {type(value).__name__}"
        )
    if not value:
        raise ValueError("input must not be empty")
    if all(isinstance(item, str) for item in value):
        return len(value)
    if all(is_integer(item) for item in value):
        return 1
    if all(
        isinstance(item, Sequence)
        and not isinstance(item, (str, bytes))
        and all(is_integer(token) for token in item)
        for item in value
    ):
        return len(value)
    raise TypeError(
        "input must be a string, a list of strings, a list of token ids or a list of "
        "token-id lists (the items are mixed or of another type)"
    )


def embedding_spec(
    pipeline: Pipeline,
    /,
    *,
    model: Any,
    input: Any,
    encoding_format: Any = None,
    dimensions: Any = None,
    user: Any = None,
    **params: Any,
) -> CallSpec[CreateEmbeddingResponse]:
    """Check the keyword arguments of ``create`` and make the :class:`CallSpec` it sends,
    with no I/O (a batch's dry run checks a line with it).

    :raises TypeError: ``input`` or another field has the wrong type.
    :raises ValueError: ``input`` is empty, or ``dimensions`` is not positive.
    """
    options = split_options(params)
    check_model(model)
    check_embedding_input(input)
    if encoding_format not in (None, "float", "base64"):
        raise ValueError(f"encoding_format must be 'float' or 'base64', not {encoding_format!r}")
    if dimensions is not None:
        check_count("dimensions", dimensions, 1)
    if user is not None and not isinstance(user, str):
        raise TypeError(f"user must be a string, not {type(user).__name__}")
    fields: dict[str, Any] = {"model": model, "input": input}
    if encoding_format is not None:
        fields["encoding_format"] = encoding_format
    if dimensions is not None:
        fields["dimensions"] = dimensions
    if user is not None:
        fields["user"] = user
    fields.update(params)
    return pipeline.prepare(
        "embeddings",
        "POST",
        "/embeddings",
        fields=build_body(fields, options.get("extra_body")),
        options=options,
        model=model,
        estimate=estimate_tokens,
        decode=_decode_embeddings,
        what="embeddings",
    )


class Embeddings:
    """Vectors for texts or token lists."""

    def __init__(self, pipeline: Pipeline):
        self._pipeline = pipeline

    async def create(
        self,
        *,
        model: str,
        input: EmbeddingInput,
        encoding_format: Literal["float", "base64"] | None = None,
        dimensions: int | None = None,
        user: str | None = None,
        **params: Unpack[RequestOptions],
    ) -> CreateEmbeddingResponse:
        """Embed ``input``. Vectors are always lists of floats, in input order.

        With ``encoding_format="base64"`` the server sends float32 vectors in base64 (a
        smaller answer) and the SDK decodes them, so the caller never sees the encoding.
        Other keywords, and ``extra_body``, are sent in the body as given.

        :raises TypeError: ``input`` or another field has the wrong type.
        :raises ValueError: ``input`` is empty, or ``dimensions`` is not positive.
        """
        spec = embedding_spec(
            self._pipeline,
            model=model,
            input=input,
            encoding_format=encoding_format,
            dimensions=dimensions,
            user=user,
            **params,
        )
        return await self._pipeline.send(spec)

    async def embed_many(
        self,
        *,
        model: str,
        inputs: Sequence[str],
        batch_size: int = 100,
        concurrency: int | Literal["auto"] | AutoConcurrency = 4,
        max_concurrency: int | None = None,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        progress: bool | Callable[[int, int | None, int], None] | None = None,
        **params: Any,
    ) -> list[list[float]]:
        """Embed a long list of texts in requests of ``batch_size``; vectors in input order.

        Runs under the same concurrency, rate limits, shared 429 backoff and retries as
        ``chat.completions.create_many``, ``concurrency="auto"`` (with ``max_concurrency``)
        included. Other keywords go to every ``create`` call.

        :raises RoutmyError: the first request that failed (the others are cancelled).
        """
        from .._batch import collect_in_order, run_many

        if isinstance(inputs, str) or not isinstance(inputs, Sequence):
            raise TypeError("inputs must be a list of strings")
        if not all(isinstance(text, str) for text in inputs):
            raise TypeError("inputs must be a list of strings")
        check_count("batch_size", batch_size, 1)
        check_model(model)
        requests = (
            {"model": model, "input": list(inputs[start : start + batch_size]), **params}
            for start in range(0, len(inputs), batch_size)
        )
        batches = await collect_in_order(
            run_many(
                self.create,
                requests,
                concurrency=concurrency,
                max_concurrency=max_concurrency,
                requests_per_minute=requests_per_minute,
                tokens_per_minute=tokens_per_minute,
                progress=progress,
                stop_on_error=True,
            ),
            return_exceptions=False,
        )
        vectors: list[list[float]] = []
        for batch in batches:
            vectors.extend(batch.vectors())
        return vectors
