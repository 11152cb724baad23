"""Content helpers: text and image parts from URLs, paths and bytes; output images."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from routmy_async import image_part, text_part
from routmy_async._content import sniff_image_type
from routmy_async.testing import png_bytes
from routmy_async.types import ImageOutput, ImageURL

JPEG = b"\xff\xd8\xff\xe0" + b"\0" * 16
GIF = b"GIF89a" + b"\0" * 16
WEBP = b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 8


def test_text_part():
    """text_part wraps a string; anything else is a TypeError."""
    assert text_part("hi") == {"type": "text", "text": "hi"}
    with pytest.raises(TypeError, match="string"):
        text_part(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (png_bytes(), "image/png"),
        (JPEG, "image/jpeg"),
        (GIF, "image/gif"),
        (WEBP, "image/webp"),
        (b"plain", None),
    ],
)
def test_magic_bytes(data, mime):
    """PNG, JPEG, GIF and WebP are told apart by their magic bytes."""
    assert sniff_image_type(data) == mime


async def test_url_is_kept_and_detail_set():
    """An http(s) or data: URL is passed through; detail lands in image_url."""
    part = await image_part("https://example.com/cat.png", detail="high")
    assert part == {
        "type": "image_url",
        "image_url": {"url": "https://example.com/cat.png", "detail": "high"},
    }
    data_url = "data:image/png;base64,AAAA"
    assert (await image_part(data_url))["image_url"]["url"] == data_url


async def test_bytes_become_a_data_url():
    """Bytes become a base64 data: URL with the sniffed MIME type."""
    data = png_bytes()
    part = await image_part(data)
    url = part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == data


async def test_path_is_read_and_extension_used_when_magic_fails(tmp_path):
    """A path is read (in a thread); the extension names the type when bytes do not."""
    (tmp_path / "a.png").write_bytes(png_bytes())
    (tmp_path / "odd.webp").write_bytes(b"not really an image")
    assert (await image_part(tmp_path / "a.png"))["image_url"]["url"].startswith("data:image/png")
    part = await image_part(str(tmp_path / "odd.webp"))
    assert part["image_url"]["url"].startswith("data:image/webp;base64,")


async def test_mime_type_override(tmp_path):
    """mime_type= wins over sniffing."""
    part = await image_part(b"raw", mime_type="image/heic")
    assert part["image_url"]["url"].startswith("data:image/heic;base64,")


@pytest.mark.parametrize(
    ("source", "kwargs", "exc", "match"),
    [
        ("/no/such/file.png", {}, FileNotFoundError, "no such file"),
        (b"unknown bytes", {}, ValueError, "cannot tell the image type"),
        (12, {}, TypeError, "URL, a path or bytes"),
        (b"x", {"detail": "ultra"}, ValueError, "detail"),
        (b"x", {"mime_type": "png"}, ValueError, "mime_type"),
    ],
)
async def test_bad_sources(source, kwargs, exc, match):
    """Missing files, unknown types and wrong arguments raise clear errors."""
    with pytest.raises(exc, match=match):
        await image_part(source, **kwargs)


async def test_directory_is_rejected(tmp_path):
    """A directory is not an image."""
    with pytest.raises(ValueError, match="directory"):
        await image_part(tmp_path)


async def test_output_image_data_and_save(tmp_path):
    """An output image decodes its data: URL and saves it; a remote URL is refused."""
    data = png_bytes()
    image = ImageOutput(
        image_url=ImageURL(url="data:image/png;base64," + base64.b64encode(data).decode())
    )
    assert image.data() == data and image.mime_type == "image/png"
    path = await image.save(tmp_path / "out.png")
    assert path.read_bytes() == data
    remote = ImageOutput(image_url=ImageURL(url="https://cdn.example/x.png"))
    assert remote.mime_type is None
    with pytest.raises(ValueError, match="remote URL"):
        remote.data()
    with pytest.raises(ValueError, match="malformed"):
        ImageOutput(image_url=ImageURL(url="data:image/png;base64")).data()
    plain = ImageOutput(image_url=ImageURL(url="data:text/plain,hello%20there"))
    assert plain.data() == b"hello there"


async def test_image_part_without_await_for_urls_and_bytes_and_a_clear_error_for_paths(
    tmp_path, mock, client
):
    part = image_part("https://example.com/cat.png")  # openai-python habit: no await
    assert part == {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
    assert (await part) == part
    raw = image_part(png_bytes())
    assert raw["image_url"]["url"].startswith("data:image/png;base64,")
    (tmp_path / "a.png").write_bytes(png_bytes())
    pending = image_part(tmp_path / "a.png")
    parts: list[Any] = [text_part("what is this?"), pending]
    message = {"role": "user", "content": parts}
    with pytest.raises(TypeError, match=r"was not awaited.*await image_part\(path\)"):
        await client.chat.completions.create(model="mock/echo", messages=[message])
    assert mock.requests == []
    parts[1] = await pending
    await client.chat.completions.create(model="mock/echo", messages=[message])
    sent = mock.requests[-1].json["messages"][0]["content"][1]
    assert sent["image_url"]["url"].startswith("data:image/png;base64,")
