"""Vision input: an image from bytes, a file or a URL as a content part."""

import asyncio

from _mock_env import model, routmy_client

from routmy_async import image_part, text_part
from routmy_async.testing import png_bytes


async def main() -> None:
    picture = await image_part(png_bytes(8, 8, (0, 160, 90)), detail="low")
    async with routmy_client() as client:
        completion = await client.chat.completions.create(
            model=model("mock/vision"),
            messages=[{"role": "user", "content": [text_part("Describe this image."), picture]}],
        )
        print(completion.choices[0].message.content)


if __name__ == "__main__":
    asyncio.run(main())
