"""Quickstart: one chat completion, its usage and request id."""

import asyncio

from _mock_env import model, routmy_client


async def main() -> None:
    async with routmy_client() as client:
        completion = await client.chat.completions.create(
            model=model(),
            messages=[{"role": "user", "content": "What does this endpoint do?"}],
            temperature=0.7,
            max_tokens=256,
        )
        print(completion.choices[0].message.content)
        if completion.usage:
            print(f"tokens: {completion.usage.total_tokens}, request id: {completion.request_id}")


if __name__ == "__main__":
    asyncio.run(main())
