"""Tool calling: typed Python functions become tools; run_tools runs the loop."""

import asyncio
from typing import Literal

from _mock_env import model, routmy_client


async def get_order(order_id: str) -> dict[str, str]:
    """Look up an order by ID.

    :param order_id: the order's ID, such as "A-123".
    """
    return {"id": order_id, "status": "shipped"}


def convert(amount: float, currency: Literal["EUR", "USD"] = "EUR") -> str:
    """Convert an amount (a sync tool: it runs in a worker thread)."""
    return f"{amount * 1.1:.2f} {currency}"


async def main() -> None:
    async with routmy_client() as client:
        result = await client.chat.completions.run_tools(
            model=model(),
            messages=[{"role": "user", "content": "What is the status of order A-123?"}],
            tools=[get_order, convert],
            max_rounds=4,
        )
        print("answer:", result.choices[0].message.content)
        for message in result.transcript or []:
            print("  ", message)


if __name__ == "__main__":
    asyncio.run(main())
