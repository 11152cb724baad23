"""The command line: ``python -m routmy_async`` (or ``routmy``) chat, models, embed, image, demo."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import msgspec

from ._client import AsyncRoutmy
from ._exceptions import APIStatusError, RoutmyError

__all__ = ["main"]

DEFAULT_MODEL = "openai/gpt-4o-mini"
MOCK_MODEL = "mock/echo"


def _out(text: str = "", end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


def _error_line(error: BaseException) -> str:
    # A status error already reads "403 [code] message (request id ...)".
    if isinstance(error, APIStatusError):
        return f"error: {error}"
    return f"error: {type(error).__name__}: {error}"


@asynccontextmanager
async def _client_for(args: argparse.Namespace) -> AsyncIterator[AsyncRoutmy]:
    if args.mock:
        from .testing import MockRoutmy

        async with MockRoutmy() as mock:
            async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
                yield client
        return
    async with AsyncRoutmy(api_key=args.api_key, base_url=args.base_url) as client:
        yield client


def _model(args: argparse.Namespace, default: str) -> str:
    if args.model:
        return str(args.model)
    if args.mock:
        return MOCK_MODEL if default == DEFAULT_MODEL else default
    return os.environ.get("ROUTMY_MODEL") or default


async def _chat(args: argparse.Namespace) -> int:
    messages: list[dict[str, Any]] = []
    if args.system:
        messages.append({"role": "system", "content": args.system})
    messages.append({"role": "user", "content": args.prompt})
    model = _model(args, DEFAULT_MODEL)
    extra: dict[str, Any] = {}
    if args.json:
        extra["response_format"] = {"type": "json_object"}
    async with _client_for(args) as client:
        if args.no_stream:
            completion = await client.chat.completions.create(
                model=model, messages=messages, **extra
            )
            _out(completion.choices[0].message.content or "")
            return 0
        async with client.chat.completions.stream(
            model=model, messages=messages, **extra
        ) as stream:
            async for piece in stream.text_deltas():
                _out(piece, end="")
        _out()
    return 0


async def _models(args: argparse.Namespace) -> int:
    async with _client_for(args) as client:
        models = await client.models.list()
    if args.json:
        _out(msgspec.json.encode(models.raw).decode())
        return 0
    width = max((len(m.id) for m in models.data), default=5)
    _out(f"{'MODEL':<{width}}  {'OWNER':<12} {'MULT':>6}  AVAILABLE")
    for model in models.data:
        multiplier = "" if model.token_multiplier is None else f"{model.token_multiplier:g}"
        available = {True: "yes", False: "no", None: "?"}[model.is_available]
        _out(f"{model.id:<{width}}  {model.owned_by:<12} {multiplier:>6}  {available}")
    return 0


async def _embed(args: argparse.Namespace) -> int:
    async with _client_for(args) as client:
        response = await client.embeddings.create(
            model=_model(args, "mock/embed" if args.mock else "openai/text-embedding-3-small"),
            input=list(args.texts),
        )
    for text, vector in zip(args.texts, response.vectors(), strict=True):
        preview = ", ".join(f"{value:.4f}" for value in vector[:4])
        _out(f"{text[:40]!r}: [{preview}, ...] ({len(vector)} dims)")
    return 0


async def _image(args: argparse.Namespace) -> int:
    async with _client_for(args) as client:
        response = await client.images.generate(
            model=_model(args, "mock/image" if args.mock else "openai/gpt-image-1"),
            prompt=args.prompt,
        )
    for position, image in enumerate(response.data):
        target = args.output if len(response.data) == 1 else f"{position}-{args.output}"
        path = await image.save(target)
        _out(f"saved {path} ({path.stat().st_size} bytes)")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routmy", description="Talk to rout.my from the terminal (routmy_async)."
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--base-url", default=None, help="default: $ROUTMY_BASE_URL")
    common.add_argument("--api-key", default=None, help="default: $ROUTMY_API_KEY")
    common.add_argument(
        "--mock", action="store_true", help="run against an embedded MockRoutmy (no key)"
    )
    common.add_argument("-m", "--model", default=None, help="default: $ROUTMY_MODEL")
    commands = parser.add_subparsers(dest="command", required=True)

    chat = commands.add_parser("chat", parents=[common], help="ask a model; streams the answer")
    chat.add_argument("prompt")
    chat.add_argument("--system", default=None, help="a system message")
    chat.add_argument("--no-stream", action="store_true", help="wait for the whole answer")
    chat.add_argument("--json", action="store_true", help="ask for a JSON object")

    models = commands.add_parser("models", parents=[common], help="list the models")
    models.add_argument("--json", action="store_true", help="print the raw JSON")

    embed = commands.add_parser("embed", parents=[common], help="embed texts")
    embed.add_argument("texts", nargs="+")

    image = commands.add_parser("image", parents=[common], help="generate an image")
    image.add_argument("prompt")
    image.add_argument("-o", "--output", default="image.png")

    commands.add_parser("demo", help="every feature end to end against an embedded mock")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (errors print one line, exit 1)."""
    args = _parser().parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        runner = run_demo()
    else:
        runner = {"chat": _chat, "models": _models, "embed": _embed, "image": _image}[args.command](
            args
        )
    try:
        return asyncio.run(runner)
    except KeyboardInterrupt:
        return 130
    except (RoutmyError, OSError, ValueError, TypeError) as error:
        sys.stderr.write(_error_line(error) + "\n")
        return 1
