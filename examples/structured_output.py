"""Structured output: the answer decoded into a msgspec Struct."""

import asyncio

import msgspec
from _mock_env import model, routmy_client


class Order(msgspec.Struct):
    """An order extracted from text."""

    id: str
    status: str


async def main() -> None:
    async with routmy_client() as client:
        completion = await client.chat.completions.parse(
            model=model(),
            messages=[{"role": "user", "content": "Order Z-42 has shipped"}],
            response_format=Order,
        )
        order = completion.choices[0].message.parsed
        print(repr(order))


if __name__ == "__main__":
    asyncio.run(main())
