"""The command line: chat, models, embed, image, demo, and errors as one line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from routmy_async._cli import main


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
    ]:
        assert title in result.stdout
    assert "PermissionDeniedError" in result.stdout and "attempt 2" in result.stdout
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
