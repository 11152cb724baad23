"""``client.images``: ``POST /images/generations``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from .._checks import check_count
from .._params import RequestOptions, build_body, check_model, split_options
from ..types.images import ImagesResponse

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from .._request import CallSpec, Pipeline

__all__ = ["Images"]

_decode_images = msgspec.json.Decoder(ImagesResponse).decode


def image_spec(
    pipeline: Pipeline,
    /,
    *,
    model: Any,
    prompt: Any,
    n: Any = None,
    size: Any = None,
    quality: Any = None,
    image_config: Any = None,
    **params: Any,
) -> CallSpec[ImagesResponse]:
    """Check the keyword arguments of ``generate`` and make the :class:`CallSpec` it sends,
    with no I/O (a batch's dry run checks a line with it).

    :raises TypeError: a field has the wrong type. :raises ValueError: ``n`` < 1 or an
        empty prompt.
    """
    options = split_options(params)
    check_model(model)
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, not {type(prompt).__name__}")
    if not prompt.strip():
        raise ValueError("prompt must not be empty")
    if n is not None:
        check_count("n", n, 1)
    for name, value in (("size", size), ("quality", quality)):
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string, not {type(value).__name__}")
    if image_config is not None and not isinstance(image_config, Mapping):
        raise TypeError(f"image_config must be a dict, not {type(image_config).__name__}")
    fields: dict[str, Any] = {"model": model, "prompt": prompt}
    optional: dict[str, Any] = {
        "n": n,
        "size": size,
        "quality": quality,
        "image_config": image_config,
    }
    fields.update((name, value) for name, value in optional.items() if value is not None)
    fields.update(params)
    return pipeline.prepare(
        "images",
        "POST",
        "/images/generations",
        fields=build_body(fields, options.get("extra_body")),
        options=options,
        model=model,
        decode=_decode_images,
        what="images",
    )


class Images:
    """Image generation."""

    def __init__(self, pipeline: Pipeline):
        self._pipeline = pipeline

    async def generate(
        self,
        *,
        model: str,
        prompt: str,
        n: int | None = None,
        size: str | None = None,
        quality: str | None = None,
        image_config: Mapping[str, Any] | None = None,
        **params: Unpack[RequestOptions],
    ) -> ImagesResponse:
        """Generate images from a prompt; each ``data[i]`` offers ``.data()`` and ``.save()``.

        Other keywords, and ``extra_body``, are sent in the body as given.

        :raises TypeError: a field has the wrong type. :raises ValueError: ``n`` < 1 or an
            empty prompt.
        """
        spec = image_spec(
            self._pipeline,
            model=model,
            prompt=prompt,
            n=n,
            size=size,
            quality=quality,
            image_config=image_config,
            **params,
        )
        return await self._pipeline.send(spec)
