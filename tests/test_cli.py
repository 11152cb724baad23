"""The command line: chat, models, embed, image, demo, and errors as one line."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys

import pytest

from routmy_async._cli import main
from routmy_async.testing import MockRoutmy


def test_chat_streams_against_the_mock(capsys):
    """chat --mock streams the echo to stdout."""
    assert main(["chat", "hello from the terminal", "--mock"]) == 0
    assert capsys.readouterr().out == "hello from the terminal\n"


def test_chat_no_stream_json_and_system(capsys):
    """--no-stream --json asks for a JSON object and prints it."""
    assert main(["chat", "hi", "--mock", "--no-stream", "--json", "--system", "be brief"]) == 0
    assert capsys.readouterr().out.strip() == '{"echo": "hi"}'


def test_models_table_and_json(capsys):
    """models prints a table, or the raw JSON with --json."""
    assert main(["models", "--mock"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[0] == "MODEL" and any(
        "mock/locked" in row and row.endswith("no") for row in table
    )
    assert main(["models", "--mock", "--json"]) == 0
    assert '"mock/echo"' in capsys.readouterr().out


def test_embed_and_image(capsys, tmp_path):
    """embed prints vectors; image saves a PNG."""
    assert main(["embed", "a", "b", "--mock"]) == 0
    assert capsys.readouterr().out.count("dims") == 2
    target = tmp_path / "out.png"
    assert main(["image", "cube", "--mock", "-o", str(target)]) == 0
    assert target.read_bytes().startswith(b"\x89PNG")


def test_errors_are_one_line(capsys, monkeypatch):
    """A failure prints one error line (no traceback) and exits 1."""
    monkeypatch.delenv("ROUTMY_API_KEY", raising=False)
    assert main(["chat", "hi", "--base-url", "http://127.0.0.1:9/v1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: RoutmyError: no API key") and err.count("\n") == 1
    assert main(["chat", "hi", "--mock", "-m", "mock/locked", "--no-stream"]) == 1
    assert capsys.readouterr().err.startswith("error: 403 [Forbidden] Model mock/locked")


def test_demo_runs_every_section():
    """python -m routmy_async demo exits 0 and shows every labelled feature."""
    result = subprocess.run(
        [sys.executable, "-W", "error", "-m", "routmy_async", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    for title in [
        "Plain chat",
        "Streaming",
        "Tool calling",
        "Structured output",
        "Vision input",
        "Image output",
        "Reasoning",
        "Models",
        "Many requests",
        "Embeddings",
        "An error, and a retry",
        "Batch files",
    ]:
        assert title in result.stdout
    assert "PermissionDeniedError" in result.stdout and "attempt 2" in result.stdout
    # The partial-output step: a typed partial, a complete object, an eager failure.
    assert "Structured output as it streams" in result.stdout
    assert "partial=PartialShipment(id='S-42', carrier=None" in result.stdout
    assert "partial=Shipment(id='S-42', carrier='dhl', days=3)" in result.stdout
    assert "FieldValidationError: carrier must be one of" in result.stdout
    # The budget step: auto answers every task against a cap it is not told; the spend limit
    # refuses the rest before sending, and never lets the units spent pass it.
    assert 'concurrency="auto": 80 of 80 answered' in result.stdout
    spent = re.search(r"quota units: spent (\d+) of 250, reserved 0", result.stdout)
    assert spent is not None and 0 < int(spent[1]) <= 250
    assert re.search(r"spend limit: \d+ answered, [1-9]\d* refused before sending", result.stdout)
    assert result.stderr == ""


@pytest.mark.parametrize("args", [["--help"], ["chat", "--help"]])
def test_help(args, capsys):
    """--help works for the tool and its commands."""
    with pytest.raises(SystemExit) as info:
        main(args)
    assert info.value.code == 0 and "usage" in capsys.readouterr().out


async def test_demo_in_process(capsys):
    """The demo coroutine itself returns 0 (in-process, so coverage sees it)."""
    from routmy_async._demo import run_demo

    assert await run_demo() == 0
    assert "Done: every feature ran" in capsys.readouterr().out


def test_standalone_mock_main_in_process(capsys):
    """The mock's command line starts, prints its URL and stops after --seconds."""
    from routmy_async.testing.__main__ import main as mock_main

    assert mock_main(["--port", "0", "--seconds", "0.05"]) == 0
    assert "ROUTMY_BASE_URL=http://127.0.0.1:" in capsys.readouterr().out


def _run_into_a_closing_reader(
    argv: list[str], keep: int, unbuffered: bool
) -> tuple[bytes, str, int]:
    """Run ``python -m routmy_async ARGV`` into a pipe whose reader keeps ``keep`` bytes
    and then closes it (as ``| head -c KEEP`` does); return (kept, stderr, exit code)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    process = subprocess.Popen(
        [sys.executable, "-W", "error", "-m", "routmy_async", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None and process.stderr is not None
    try:
        kept = process.stdout.read(keep)
        process.stdout.close()  # the reader goes away
        stderr = process.stderr.read().decode()
        returncode = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stderr.close()
    return kept, stderr, returncode


# More than a pipe buffer holds, so the writer must meet the closed end.
LONG_PROMPT = "word " * 20000


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_chat_into_a_reader_that_stops_early_exits_quietly(unbuffered):
    """`routmy chat ... | head -c 16`: no traceback, no "Exception ignored", exit 141."""
    kept, stderr, returncode = _run_into_a_closing_reader(
        ["chat", "--mock", LONG_PROMPT], 16, unbuffered
    )
    assert kept == b"word word word w"
    assert stderr == "", stderr
    assert returncode == 141


def test_chat_no_stream_into_a_closed_pipe_exits_quietly():
    """The whole-answer path meets the closed pipe the same quiet way.

    (With PYTHONUNBUFFERED, CPython drops the unwritten part of a single large write without
    an error, so only the usual buffered stdout is checked here.)
    """
    kept, stderr, returncode = _run_into_a_closing_reader(
        ["chat", "--mock", "--no-stream", LONG_PROMPT], 1, unbuffered=False
    )
    assert (kept, stderr, returncode) == (b"w", "", 141)


class _ClosedStdout(io.StringIO):
    """A stdout with no file descriptor whose reader is gone."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("stdout_kind", ["pipe", "no-descriptor"])
def test_broken_stdout_in_process_returns_141(stdout_kind, capsys, monkeypatch):
    """In process too: a closed stdout gives 141 and nothing on stderr; after it, stdout
    takes writes silently (it now points at devnull), so the flush at exit cannot fail."""
    if stdout_kind == "pipe":
        read_end, write_end = os.pipe()
        os.close(read_end)
        stdout: io.TextIOBase = io.TextIOWrapper(io.FileIO(write_end, "w"), encoding="utf-8")
    else:
        stdout = _ClosedStdout()
    monkeypatch.setattr(sys, "stdout", stdout)
    try:
        assert main(["chat", "hello", "--mock"]) == 141
        if stdout_kind == "pipe":
            stdout.write("more")
            stdout.flush()  # devnull now: no BrokenPipeError
    finally:
        monkeypatch.undo()
        stdout.close()
    assert capsys.readouterr().err == ""


def test_image_n_writes_numbered_files(capsys, tmp_path):
    """image -n 2 -o out/x.png writes out/x-0.png and out/x-1.png (creating out/)."""
    target = tmp_path / "out" / "x.png"
    assert main(["image", "cube", "--mock", "-n", "2", "-o", str(target)]) == 0
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["x-0.png", "x-1.png"]
    assert all((tmp_path / "out" / name).read_bytes().startswith(b"\x89PNG") for name in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    out = capsys.readouterr().out
    assert str(tmp_path / "out" / "x-0.png") in out and str(tmp_path / "out" / "x-1.png") in out
    # One image: exactly the -o path.
    single = tmp_path / "one" / "y.png"
    assert main(["image", "cube", "--mock", "--n", "1", "-o", str(single)]) == 0
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["y.png"]


@pytest.mark.parametrize("count", ["0", "-1", "two"])
def test_image_n_must_be_a_positive_int(count, capsys):
    """-n takes a positive integer; anything else is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as info:
        main(["image", "cube", "--mock", "-n", count])
    assert info.value.code == 2 and "expected a positive integer" in capsys.readouterr().err


async def test_stream_error_prints_code_message_and_request_id(capsys):
    """An error frame mid-stream prints one line with its code, message and request id."""
    base = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "mock/echo"}
    async with MockRoutmy() as mock:
        argv = ["chat", "hi", "-m", "mock/echo", "--base-url", mock.base_url]
        argv += ["--api-key", mock.api_key]
        mock.reply_stream(
            [
                {**base, "choices": [{"index": 0, "delta": {"content": "Hel"}}]},
                {"error": {"message": "Provider failed", "code": 502}},
            ],
            done=False,
        )
        assert await asyncio.to_thread(main, argv) == 1
        captured = capsys.readouterr()
        assert captured.out == "Hel\n"
        assert captured.err == "error: stream error 502 Provider failed (request id req-mock-1)\n"

        mock.reply_stream(
            [
                {**base, "choices": [{"index": 0, "delta": {"content": "x"}}]},
                {"error": {"message": "quota", "code": "rate_limited"}},
            ],
            done=False,
        )
        assert await asyncio.to_thread(main, argv) == 1
        err = capsys.readouterr().err
        assert err == "error: stream error [rate_limited] quota (request id req-mock-2)\n"

        # No code and no request id: the message alone.
        mock.reply_stream(
            [{"error": {"message": "boom"}}], done=False, headers={"x-request-id": ""}
        )
        assert await asyncio.to_thread(main, argv) == 1
        assert capsys.readouterr() == ("", "error: stream error boom\n")
