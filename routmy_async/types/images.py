"""Types of ``POST /images/generations``."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from ._base import ResponseObject, TopLevelResponse
from .chat import decode_data_url, write_bytes

__all__ = ["GeneratedImage", "ImagesResponse"]


class GeneratedImage(ResponseObject, frozen=True):
    """A generated image: ``b64_json`` (inline bytes) or ``url``."""

    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = None

    def data(self) -> bytes:
        """The image's bytes, from ``b64_json`` or a ``data:`` URL.

        :raises ValueError: the image is only a remote URL (it is never fetched silently).
        """
        if self.b64_json is not None:
            try:
                return base64.b64decode(self.b64_json)
            except (binascii.Error, ValueError) as exc:
                raise ValueError(f"malformed b64_json: {exc}") from None
        if self.url is not None:
            return decode_data_url(self.url)
        raise ValueError("the image has neither b64_json nor url")

    async def save(self, path: str | Path) -> Path:
        """Write the image's bytes to ``path`` without blocking the event loop."""
        return await write_bytes(path, self.data())


class ImagesResponse(TopLevelResponse, frozen=True):
    """The answer of ``client.images.generate``."""

    created: int = 0
    data: list[GeneratedImage] = []
