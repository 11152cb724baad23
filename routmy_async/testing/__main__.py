"""``python -m routmy_async.testing --port 8000``: run MockRoutmy standalone."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from ._mock import DEFAULT_KEY, FLAVORS, Flavor, MockRoutmy


async def _serve(
    host: str, port: int, api_key: str, seconds: float | None, flavor: Flavor, **options: Any
) -> None:
    async with MockRoutmy(host=host, port=port, api_key=api_key, flavor=flavor, **options) as mock:
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
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument(
        "--resolve-models",
        action="store_true",
        help="answers name <model>-2026-01-01, an id the models list does not have",
    )
    quota = parser.add_argument_group("quota modes (a 429 with Retry-After beyond them)")
    quota.add_argument("--max-in-flight", type=int, default=None, help="requests answered at once")
    quota.add_argument("--rpm", type=int, default=None, help="requests admitted per minute")
    quota.add_argument(
        "--latency-per-in-flight",
        type=float,
        default=0.0,
        help="extra seconds per other request being answered (latency grows with load)",
    )
    args = parser.parse_args(argv)
    options = {
        "latency": args.latency,
        "max_in_flight": args.max_in_flight,
        "requests_per_minute": args.rpm,
        "latency_per_in_flight": args.latency_per_in_flight,
        "resolve_models": args.resolve_models,
    }
    try:
        asyncio.run(
            _serve(args.host, args.port, args.api_key, args.seconds, args.flavor, **options)
        )
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
