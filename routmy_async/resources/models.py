"""``client.models``: ``GET /models``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._params import RequestOptions, split_options
from ..types.models import Model, ModelList, decode_model_list

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .._request import Pipeline

__all__ = ["Models"]

# Strict and fast first; a router's mistyped field (`"context_length": "8192"`) falls back to
# a lenient decode instead of failing the whole list.
_decode_models = decode_model_list


class Models:
    """The models the router serves."""

    def __init__(self, pipeline: Pipeline):
        self._pipeline = pipeline

    async def list(self, **options: Unpack[RequestOptions]) -> ModelList:
        """List the models (``GET /models``); with a key, ``is_available`` marks access.

        ``extra_headers``, ``extra_query``, ``timeout`` and ``max_retries`` apply to this call.
        """
        opts: dict[str, Any] = dict(options)
        split_options(opts)
        if opts:
            raise TypeError(f"models.list() got unexpected arguments: {sorted(opts)}")
        spec = self._pipeline.prepare(
            "models", "GET", "/models", options=options, decode=_decode_models, what="models list"
        )
        return await self._pipeline.send(spec)

    async def retrieve(self, model: str, **options: Unpack[RequestOptions]) -> Model:
        """Find one model by id in the list.

        :raises NotFoundError: no model has that id.
        """
        from .._exceptions import NotFoundError
        from .._params import check_model

        check_model(model)
        models = await self.list(**options)
        for item in models.data:
            if item.id == model:
                return item
        raise NotFoundError(
            f"model {model!r} is not in the models list",
            status_code=404,
            code="model_not_found",
        )
