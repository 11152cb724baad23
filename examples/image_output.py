"""Image output: a chat model that draws; the image is saved to a file."""

import asyncio
import sys
import tempfile
from pathlib import Path

from _mock_env import model, routmy_client


async def main() -> None:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp()) / "cube.png"
    async with routmy_client() as client:
        completion = await client.chat.completions.create(
            model=model("mock/image"),
            messages=[{"role": "user", "content": "Create a square icon of a blue glass cube."}],
            modalities=["image", "text"],
            image_config={"aspect_ratio": "1:1", "image_size": "1K"},
        )
        for image in completion.choices[0].message.images or []:
            path = await image.save(target)
            print(f"saved {path} ({path.stat().st_size} bytes, {image.mime_type})")


if __name__ == "__main__":
    asyncio.run(main())
