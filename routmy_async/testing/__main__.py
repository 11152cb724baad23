"""``python -m routmy_async.testing --port 8000``: run MockRoutmy standalone."""

from __future__ import annotations

import argparse
import asyncio
import sys

from ._mock import DEFAULT_KEY, FLAVORS, Flavor, MockRoutmy


async def _serve(host: str, port: int, api_key: str, seconds: float | None, flavor: Flavor) -> None:
    async with MockRoutmy(host=host, port=port, api_key=api_key, flavor=flavor) as mock:
        sys.stdout.write(
            f"MockRoutmy listening on {mock.base_url}\n"
            f"  export ROUTMY_BASE_URL={mock.base_url}\n"
            f"  export ROUTMY_API_KEY={api_key}\n"
        )
        sys.stdout.flush()
        if seconds is None:
            await asyncio.Event().wait()
        else:
            await asyncio.sleep(seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m routmy_async.testing", description="Run a local mock of rout.my."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=DEFAULT_KEY)
    parser.add_argument(
        "--flavor",
        choices=FLAVORS,
        default="routmy",
        help="answer as rout.my (no cost, no prices, stateless Responses) or as other routers",
    )
    parser.add_argument("--seconds", type=float, default=None, help="stop after this long")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.host, args.port, args.api_key, args.seconds, args.flavor))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
