"""The command line: ``python -m routmy_async`` (or ``routmy``) chat, models, embed, image,
batch, demo.

Exit codes: 0 done, 1 an error (printed as one line on stderr), 2 a usage error, 130 Ctrl-C,
141 stdout closed by its reader (``routmy chat ... | head``), quietly, as a Unix tool killed
by SIGPIPE would exit. ``batch`` adds 3 (the file ran through, some lines failed), 4 (stopped
at ``--max-cost``), 5 (every line validated is done, but the input grew during the run: run
again for the rest) and 128 + the signal number when stopped by SIGINT (130) or SIGTERM (143);
its 1 includes a ``--max-cost`` the server's answers cannot be held to and an input changed
during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from ._client import AsyncRoutmy
from ._exceptions import APIStatusError, APIStreamError, RoutmyError

if TYPE_CHECKING:
    from ._batchfile import BatchSummary

__all__ = ["main"]

DEFAULT_MODEL = "openai/gpt-4o-mini"
MOCK_MODEL = "mock/echo"
# 128 + SIGPIPE: what a shell reports for a tool whose reader went away (`... | head`).
EXIT_BROKEN_PIPE = 141


def _without_key(argv: Sequence[str]) -> list[str]:
    """The command line without ``--api-key`` and its value (it is printed back)."""
    shown: list[str] = []
    skip_next = False
    for word in argv:
        if skip_next:
            skip_next = False
        elif word == "--api-key":
            skip_next = True
        elif not word.startswith("--api-key="):
            shown.append(word)
    return shown


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

        async with MockRoutmy(flavor=getattr(args, "mock_flavor", None) or "routmy") as mock:
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
    if args.api == "responses":
        return await _respond(args)
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


async def _respond(args: argparse.Namespace) -> int:
    """``chat --api responses``: the same question through the Responses API."""
    model = _model(args, DEFAULT_MODEL)
    extra: dict[str, Any] = {}
    if args.system:
        extra["instructions"] = args.system
    if args.json:
        extra["text"] = {"format": {"type": "json_object"}}
    async with _client_for(args) as client:
        if args.no_stream:
            response = await client.responses.create(model=model, input=args.prompt, **extra)
            _out(response.output_text)
            return 0
        printed = False
        try:
            async with client.responses.stream(model=model, input=args.prompt, **extra) as stream:
                async for piece in stream.text_deltas():
                    _out(piece, end="")
                    printed = True
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


# -- batch ------------------------------------------------------------------------------------

EXIT_FAILED_LINES = 3
EXIT_BUDGET = 4
EXIT_INPUT_GREW = 5
_PROGRESS_EVERY = 5.0


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


class _BatchSignals:
    """SIGINT/SIGTERM during a batch: the first stops new starts (a grace period for the
    requests in flight), the second cancels them; the run then ends without a torn line."""

    def __init__(self, stop: Any, grace: float):
        self.stop = stop
        self.grace = grace
        self.signal: int | None = None
        self.installed: list[int] = []

    def __call__(self, number: int) -> None:
        name = signal.Signals(number).name
        if self.signal is None:
            self.signal = number
            _err(
                f"\nroutmy batch: {name}: no new requests start; those in flight get up to "
                f"{self.grace:g} s to finish (again to stop at once)"
            )
        else:
            _err(f"\nroutmy batch: {name} again: cancelling the requests in flight")
        self.stop.request()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(number, self, number)
                self.installed.append(number)
        except NotImplementedError:  # pragma: no cover - Windows: Ctrl-C stops at once
            pass

    def remove(self, loop: asyncio.AbstractEventLoop) -> None:
        for number in self.installed:
            loop.remove_signal_handler(number)


def _progress_for(args: argparse.Namespace) -> Any:
    """A tqdm bar with the ``progress`` extra, else a line on stderr every few seconds."""
    if args.no_progress:
        return None
    try:
        import tqdm  # noqa: F401 - only asking whether the extra is installed
    except ImportError:
        last = [0.0]  # the first result is reported at once

        def report(summary: Any) -> None:
            now = time.monotonic()
            if now - last[0] >= _PROGRESS_EVERY:
                last[0] = now
                _err(summary.progress_line())

        return report
    return True


def _write_summary_json(target: str, data: dict[str, Any]) -> None:
    encoded = msgspec.json.format(msgspec.json.encode(data), indent=2).decode()
    if target == "-":
        _out(encoded)
    else:
        Path(target).write_text(encoded + "\n")


async def _batch(args: argparse.Namespace) -> int:
    from ._batchfile import BatchFileError, BatchStop, run_batch_file

    if args.dry_run:
        return await _batch_dry_run(args)
    loop = asyncio.get_running_loop()
    signals = _BatchSignals(BatchStop(), args.grace)
    signals.install(loop)
    try:
        async with _client_for(args) as client:
            summary = await run_batch_file(
                client,
                args.input,
                args.output,
                errors_file=args.errors,
                endpoint=args.endpoint,
                concurrency=args.concurrency,
                max_concurrency=args.max_concurrency,
                requests_per_minute=args.rpm,
                tokens_per_minute=args.tpm,
                max_cost=args.max_cost,
                max_units=args.max_units,
                default_output_tokens=args.default_output_tokens,
                retry_failed=args.retry_failed,
                skip_invalid=args.skip_invalid,
                progress=_progress_for(args),
                stop=signals.stop,
                grace_period=args.grace,
            )
    except BatchFileError as error:
        if error.summary is not None:  # the run had started: what it did is written
            _out(error.summary.format())
            if args.summary_json:
                _write_summary_json(args.summary_json, error.summary.to_dict())
        _err(f"error: {error}")  # the first invalid lines are in the message
        return 1
    finally:
        signals.remove(loop)
    _out(summary.format())
    if args.summary_json:
        _write_summary_json(args.summary_json, summary.to_dict())
    return _batch_exit_code(summary, args, signals.signal)


async def _batch_dry_run(args: argparse.Namespace) -> int:
    from ._batchfile import check_batch_file

    check = await check_batch_file(
        args.input,
        endpoint=args.endpoint,
        output_file=args.output,
        errors_file=args.errors,
        retry_failed=args.retry_failed,
        # --mock serves on 127.0.0.1: not rout.my's URL, as for a run.
        base_url="http://127.0.0.1/v1" if args.mock else args.base_url,
    )
    _out(check.format())
    if args.summary_json:
        _write_summary_json(args.summary_json, check.to_dict())
    return 1 if check.invalid else 0


def _batch_exit_code(summary: BatchSummary, args: argparse.Namespace, received: int | None) -> int:
    """The documented exit code of a run that ended; an interruption also says how to resume."""
    if summary.stop_reason == "interrupted":
        shown = _without_key(args.argv)
        again = shlex.join(["routmy", *shown])
        if len(shown) != len(args.argv):
            again += "  # with your key again: --api-key ... or ROUTMY_API_KEY"
        _err(f"interrupted: run the same command again to resume:\n  {again}")
        return 128 + (received or signal.SIGINT)
    if summary.stop_reason == "budget":
        return EXIT_BUDGET
    if summary.stop_reason == "fatal_error":
        return 1
    if summary.failed:
        return EXIT_FAILED_LINES
    # Lines appended during the run were not sent: a script must not take this for done.
    return EXIT_INPUT_GREW if summary.input_grown else 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds (>= 0), got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected seconds (>= 0), got {text!r}")
    return value


def _connection_options() -> argparse.ArgumentParser:
    """Where requests go: a parent parser, so every command that sends shares these options."""
    connection = argparse.ArgumentParser(add_help=False)
    connection.add_argument("--base-url", default=None, help="default: $ROUTMY_BASE_URL")
    connection.add_argument("--api-key", default=None, help="default: $ROUTMY_API_KEY")
    connection.add_argument(
        "--mock", action="store_true", help="run against an embedded MockRoutmy (no key)"
    )
    connection.add_argument(
        "--mock-flavor",
        choices=["routmy", "openrouter"],
        default=None,
        help="with --mock: answer as rout.my (the default: no usage.cost) or as OpenRouter "
        "(prices and usage.cost in dollars, which --max-cost needs)",
    )
    return connection


def _add_batch(commands: Any) -> None:
    batch = commands.add_parser(
        "batch",
        parents=[_connection_options()],
        help="run an OpenAI Batch-format JSONL file (resumable: run it again to go on)",
        description="Send every request of an OpenAI Batch-format JSONL file and write each "
        "result as an OpenAI Batch output line as it ends. Running the same command again "
        "skips the lines already done and retries the failed ones. The run sends exactly "
        "the bytes it validated: lines appended meanwhile wait for the next run (so does a "
        "last line with no newline that is not valid JSON: a line still being written), "
        "and an input truncated or replaced during the run stops it (exit 1). Exit codes: "
        "0 done, 1 an error, 2 a usage error, 3 some lines failed, 4 stopped at "
        "--max-cost or --max-units, 5 the input grew during the run or its last line was "
        "still being written (run again for the rest), 130/143 interrupted.",
    )
    batch.add_argument("input", help="JSONL lines {custom_id, method, url, body}")
    batch.add_argument(
        "-o", "--output", default=None, help="where results go (required unless --dry-run)"
    )
    batch.add_argument("--errors", default=None, help="write failures here instead")
    batch.add_argument(
        "--endpoint", default=None, help="the url of lines without one (/v1/chat/completions)"
    )
    _add_batch_limits(batch)
    _add_batch_run_options(batch)


def _add_batch_limits(batch: argparse.ArgumentParser) -> None:
    """How fast and how far a run may go: concurrency, rates and a cost cap."""
    batch.add_argument(
        "--concurrency",
        type=_concurrency,
        default=16,
        help="requests in flight (default 16), or 'auto': a level that starts at 4, grows "
        "while requests succeed and backs off on 429s, 503s and timeouts, shown in the "
        "progress output and the summary",
    )
    batch.add_argument(
        "--max-concurrency",
        type=_positive_int,
        default=None,
        metavar="N",
        help="the ceiling of --concurrency auto (default 64)",
    )
    batch.add_argument("--rpm", type=_positive_float, default=None, help="requests per minute")
    batch.add_argument("--tpm", type=_positive_float, default=None, help="tokens per minute")
    batch.add_argument(
        "--max-cost",
        type=_positive_float,
        default=None,
        metavar="USD",
        help="what the output may cost, earlier runs' answers included: each attempt "
        "reserves its worst case (its prompt, bounded, plus its max_tokens, at the model's "
        "price from the server's /v1/models pricing) before it is sent, and settles to its "
        "usage (its usage.cost where reported); the run stops when the next line does not "
        "fit what is left (exit 4). Refused (exit 1) where it cannot be counted: against a "
        "rout.my URL (no prices: use --max-units) before anything is read, and at a line "
        "whose model has no price, none of its requests sent",
    )
    batch.add_argument(
        "--max-units",
        type=_positive_float,
        default=None,
        metavar="UNITS",
        help="what the output may use in quota units (tokens times the model's "
        "token_multiplier from /v1/models, what rout.my counts), earlier runs' answers "
        "included; run as --max-cost is",
    )
    batch.add_argument(
        "--default-output-tokens",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --max-cost/--max-units: the output cap reserved for a line without "
        "max_tokens (without it such a line stops the run, never counted as free)",
    )


def _add_batch_run_options(batch: argparse.ArgumentParser) -> None:
    """Which lines run, what is only checked, and what the run reports."""
    batch.add_argument(
        "--retry-failed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="send lines whose earlier result failed again (default: yes)",
    )
    batch.add_argument(
        "--skip-invalid", action="store_true", help="run the valid lines of an invalid file"
    )
    batch.add_argument(
        "--dry-run",
        action="store_true",
        help="only validate (for --base-url: against rout.my, a /v1/responses line with "
        "previous_response_id is refused, its /v1/responses being stateless): counts and a "
        "token estimate",
    )
    batch.add_argument(
        "--summary-json", default=None, metavar="FILE", help="also write the summary as JSON"
    )
    batch.add_argument(
        "--grace",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="after Ctrl-C, how long requests in flight may finish (default 30)",
    )
    batch.add_argument("--no-progress", action="store_true", help="no progress bar or lines")


def _concurrency(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return _positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a positive integer or 'auto', got {text!r}"
        ) from None


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
    chat.add_argument(
        "--api",
        choices=["chat", "responses"],
        default="chat",
        help="chat completions (default) or the Responses API",
    )

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

    _add_batch(commands)
    commands.add_parser("demo", help="every feature end to end against an embedded mock")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code (errors print one line, exit 1).

    A reader that closes stdout early (``routmy chat ... | head``) ends the command quietly
    with 141, the code a shell shows for a tool stopped by SIGPIPE.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "batch":
        if not args.output and not args.dry_run:
            parser.error("batch: -o/--output is required (or --dry-run to only validate)")
        if args.mock_flavor and not args.mock:
            parser.error("batch: --mock-flavor goes with --mock")
        args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command == "demo":
        from ._demo import run_demo

        runner = run_demo()
    else:
        commands = {"chat": _chat, "models": _models, "embed": _embed, "image": _image}
        runner = {**commands, "batch": _batch}[args.command](args)
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
