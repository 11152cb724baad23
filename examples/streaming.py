"""Streaming: print the answer as it arrives, then read the accumulated completion."""

import asyncio

from _mock_env import model, routmy_client


async def main() -> None:
    async with routmy_client() as client:
        # Leaving the block releases the connection, even after a break or an error.
        async with client.chat.completions.stream(
            model=model(), messages=[{"role": "user", "content": "Tell me a short story."}]
        ) as stream:
            async for piece in stream.text_deltas():
                print(piece, end="", flush=True)
        print()
        final = stream.get_final_completion()
        print(f"finish_reason={final.choices[0].finish_reason}, usage={final.usage}")


if __name__ == "__main__":
    asyncio.run(main())
