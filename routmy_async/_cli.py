"""The command line: ``python -m routmy_async`` (or ``routmy``) chat, models, embed, image, demo.

Exit codes: 0 done, 1 an error (printed as one line on stderr), 2 a usage error, 130 Ctrl-C,
141 stdout closed by its reader (``routmy chat ... | head``), quietly, as a Unix tool killed
by SIGPIPE would exit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from ._client import AsyncRoutmy
from ._exceptions import APIStatusError, APIStreamError, RoutmyError

__all__ = ["main"]

DEFAULT_MODEL = "openai/gpt-4o-mini"
MOCK_MODEL = "mock/echo"
# 128 + SIGPIPE: what a shell reports for a tool whose reader went away (`... | head`).
EXIT_BROKEN_PIPE = 141


def _out(text: str = "", end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


def _error_line(error: BaseException) -> str:
    # A status error already reads "403 [code] message (request id ...)".
    if isinstance(error, APIStatusError):
        return f"error: {error}"
    if isinstance(error, APIStreamError):
        # Built from the fields, the same shape: a numeric code is the upstream's status,
        # a string code goes in brackets, then the message and the request id.
        parts = ["error: stream error"]
        if isinstance(error.code, int):
            parts.append(str(error.code))
        elif error.code is not None:
            parts.append(f"[{error.code}]")
        parts.append(error.message)
        if error.request_id:
            parts.append(f"(request id {error.request_id})")
        return " ".join(parts)
    return f"error: {type(error).__name__}: {error}"


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at devnull so the flush at exit cannot fail again.

    Without it Python prints "Exception ignored ... BrokenPipeError" when it flushes what
    is left in the buffer at shutdown (see "Note on SIGPIPE" in the ``signal`` docs).
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):  # no real descriptor behind sys.stdout: nothing to redirect
        pass


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
        printed = False
        try:
            async with client.chat.completions.stream(
                model=model, messages=messages, **extra
            ) as stream:
                async for piece in stream.text_deltas():
                    _out(piece, end="")
                    printed = printed or bool(piece)
        except RoutmyError:
            if printed:
                _out()  # end the partial answer, so the error line starts a line of its own
            raise
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


def _image_path(output: str, position: int, count: int) -> Path:
    """``-o out/x.png``: exactly that for one image, ``out/x-0.png``, ``out/x-1.png``... else."""
    path = Path(output)
    if count == 1:
        return path
    return path.with_name(f"{path.stem}-{position}{path.suffix}")


async def _image(args: argparse.Namespace) -> int:
    async with _client_for(args) as client:
        response = await client.images.generate(
            model=_model(args, "mock/image" if args.mock else "openai/gpt-image-1"),
            prompt=args.prompt,
            n=args.n,
        )
    for position, image in enumerate(response.data):
        target = _image_path(args.output, position, len(response.data))
        target.parent.mkdir(parents=True, exist_ok=True)
        path = await image.save(target)
        _out(f"saved {path} ({path.stat().st_size} bytes)")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


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
    image.add_argument(
        "-o",
        "--output",
        default="image.png",
        help="where to save (several images: NAME-0.png, NAME-1.png, ...; "
        "missing directories are created)",
    )
    image.add_argument(
        "-n", "--n", type=_positive_int, default=1, help="how many images (default 1)"
    )

    commands.add_parser("demo", help="every feature end to end against an embedded mock")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (errors print one line, exit 1).

    A reader that closes stdout early (``routmy chat ... | head``) ends the command quietly
    with 141, the code a shell shows for a tool stopped by SIGPIPE.
    """
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
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (RoutmyError, OSError, ValueError, TypeError) as error:
        sys.stderr.write(_error_line(error) + "\n")
        return 1
