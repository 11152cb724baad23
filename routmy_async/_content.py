"""Content parts for vision input: ``text_part`` and ``image_part`` (URL, path or bytes)."""

from __future__ import annotations

import base64
import os
from collections.abc import Generator
from pathlib import Path
from typing import Any, Literal

import anyio

__all__ = ["image_part", "sniff_image_type", "text_part"]

_EXTENSIONS = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
_DETAILS = frozenset({"auto", "low", "high"})


def sniff_image_type(data: bytes) -> str | None:
    """The MIME type of PNG, JPEG, GIF or WebP bytes, from their magic numbers."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def text_part(text: str) -> dict[str, Any]:
    """A ``{"type": "text", "text": ...}`` content part.

    :raises TypeError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"text_part() takes a string, not {type(text).__name__}")
    return {"type": "text", "text": text}


def _data_url(data: bytes, mime_type: str | None, name: str | None) -> str:
    mime = mime_type or sniff_image_type(data)
    if mime is None and name is not None:
        mime = _EXTENSIONS.get(os.path.splitext(name)[1].lower())
    if mime is None:
        where = f" of {name}" if name else ""
        raise ValueError(
            f"cannot tell the image type{where}: not PNG, JPEG, GIF or WebP; pass mime_type=..."
        )
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class ContentPart(dict[str, Any]):
    """A content part (a plain dict), which may also be awaited: ``await image_part(...)``
    and ``image_part(...)`` both give the part, as code from either habit expects."""

    def __await__(self) -> Generator[Any, None, ContentPart]:
        return self._ready().__await__()

    async def _ready(self) -> ContentPart:
        return self


class PendingImagePart(ContentPart):
    """``image_part(path)``: the file is read when this is awaited (in a worker thread, so the
    event loop never blocks on disk). Sent unawaited, it is refused with a message."""

    def __init__(self, path: Path, detail: str | None, mime_type: str | None):
        super().__init__()
        self.path = path
        self._detail = detail
        self._mime_type = mime_type

    async def _ready(self) -> ContentPart:
        try:
            data = await anyio.Path(self.path).read_bytes()
        except FileNotFoundError:
            raise FileNotFoundError(f"image_part(): no such file: {self.path}") from None
        except IsADirectoryError:
            raise ValueError(f"image_part(): {self.path} is a directory, not an image") from None
        return _part(_data_url(data, self._mime_type, self.path.name), self._detail)


def _part(url: str, detail: str | None) -> ContentPart:
    image_url: dict[str, Any] = {"url": url}
    if detail is not None:
        image_url["detail"] = detail
    return ContentPart(type="image_url", image_url=image_url)


def image_part(
    source: str | os.PathLike[str] | bytes,
    *,
    detail: Literal["auto", "low", "high"] | None = None,
    mime_type: str | None = None,
) -> ContentPart:
    """An ``image_url`` content part from a URL, a file path or raw bytes.

    A URL (``http(s)://`` or ``data:``) is kept as is, and bytes become a base64 ``data:``
    URL: both are ready at once (``image_part(url)``; ``await image_part(url)`` works too). A
    path must be awaited, ``await image_part("photo.png")``: the file is read in a worker
    thread so the loop never blocks on disk. The MIME type comes from the magic bytes, then
    the file extension, unless ``mime_type`` is given.

    :raises FileNotFoundError: the path does not exist.
    :raises ValueError: the image type cannot be told, or ``detail`` is not auto/low/high.
    :raises TypeError: ``source`` is none of the accepted types.
    """
    if detail is not None and detail not in _DETAILS:
        raise ValueError(f"detail must be 'auto', 'low' or 'high', not {detail!r}")
    if mime_type is not None and (not isinstance(mime_type, str) or "/" not in mime_type):
        raise ValueError(f"mime_type must look like 'image/png', not {mime_type!r}")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _part(_data_url(bytes(source), mime_type, None), detail)
    if isinstance(source, str) and source.startswith(("http://", "https://", "data:")):
        return _part(source, detail)
    if isinstance(source, (str, os.PathLike)):
        return PendingImagePart(Path(source), detail, mime_type)
    raise TypeError(f"image_part() takes a URL, a path or bytes, not {type(source).__name__}")
