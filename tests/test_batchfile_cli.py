"""``routmy batch``: in-process for every exit path, and as a real subprocess against a
MockRoutmy for what only a process shows: kill -9 and resume, SIGINT, the lock."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from routmy_async import AsyncRoutmy, run_batch_file
from routmy_async._cli import _batch, _parser, main
from routmy_async.testing import MockRoutmy

ROOT = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ROUTMY_")}
WAIT = 30.0  # the longest any condition below may take (it normally takes milliseconds)


def chat_line(custom_id: str, model: str = "mock/echo") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": f"say {custom_id}"}]},
    }


def write_requests(path: Path, count: int, **line: Any) -> Path:
    with path.open("w") as out:
        for i in range(count):
            out.write(json.dumps(chat_line(f"q{i:03d}", **line)) + "\n")
    return path


def whole_results(path: Path) -> list[dict[str, Any]]:
    """Every line of a results file; a torn last line (from a kill -9) is left out."""
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    return [json.loads(raw) for raw in lines[:-1]]


def assert_every_id_done_once(path: Path, count: int) -> None:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    results = [json.loads(raw) for raw in data.splitlines()]
    assert sorted(r["custom_id"] for r in results) == [f"q{i:03d}" for i in range(count)]
    assert all(r["error"] is None and r["response"]["status_code"] == 200 for r in results)


def lock_exists(target: Path) -> bool:
    return Path(f"{target}.lock").exists()


async def until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


# -- in process --------------------------------------------------------------------------------


def test_batch_with_the_embedded_mock_and_a_json_summary(tmp_path, capsys):
    """routmy batch --mock (a rout.my-like server: no usage.cost): exit 0, the text summary
    on stdout saying the cost is unknown (not $0), the JSON one in a file."""
    source = write_requests(tmp_path / "in.jsonl", 12)
    target = tmp_path / "out.jsonl"
    report = tmp_path / "summary.json"
    args = ["batch", str(source), "-o", str(target), "--mock", "--no-progress", "--grace", "5"]
    assert main([*args, "--summary-json", str(report), "--concurrency", "3"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"ok +12\n", out) and "$0.0000" not in out
    assert re.search(r"tokens: [\d,]+ \(prompt .*\); cost: unknown \(no answer reported", out)
    summary = json.loads(report.read_text())
    assert summary["ok"] == 12 and summary["complete"] and summary["cost"] == 0
    assert summary["answers_without_cost"] == 12 and summary["cost_unknown"]
    assert_every_id_done_once(target, 12)
    assert main([*args, "--summary-json", "-"]) == 0
    assert '"skipped": 12' in capsys.readouterr().out


def test_dry_run_prints_counts_and_invalid_lines(tmp_path, capsys):
    """--dry-run: counts and the estimate, exit 0; an invalid file lists lines, exit 1."""
    source = write_requests(tmp_path / "in.jsonl", 3)
    assert main(["batch", str(source), "--dry-run", "--summary-json", "-"]) == 0
    out = capsys.readouterr().out
    assert "3 lines, 3 valid, 0 invalid" in out and "estimated tokens: ~" in out
    assert '"to_run": 3' in out
    with source.open("a") as more:
        more.write("not json\n" + json.dumps(chat_line("q000")) + "\n")
    assert main(["batch", str(source), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "line 4: invalid JSON" in out
    assert "line 5: duplicate custom_id 'q000' (first on line 1)" in out


def test_output_is_required_unless_dry_run(tmp_path, capsys):
    """Without -o a run is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as caught:
        main(["batch", str(tmp_path / "in.jsonl"), "--mock"])
    assert caught.value.code == 2 and "-o/--output is required" in capsys.readouterr().err


def test_an_invalid_file_exits_1_with_line_numbers(tmp_path, capsys):
    """Invalid lines: one error line, then each problem by line number; nothing runs."""
    source = tmp_path / "in.jsonl"
    source.write_text(
        json.dumps(chat_line("a")) + '\n{"custom_id": "b", "url": "/v1/embeddings"}\n'
    )
    assert main(["batch", str(source), "-o", str(tmp_path / "out.jsonl"), "--mock"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "  line 2: missing body" in err
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.filterwarnings("ignore:a request to .* sets no max_tokens:UserWarning")
def test_failed_lines_exit_3_and_the_budget_exits_4(tmp_path, capsys):
    """Lines that failed: exit 3; a --max-cost that stops the run against a mock that
    lists prices (--mock-flavor openrouter), or a --max-units against one as rout.my: exit 4."""
    locked = write_requests(tmp_path / "locked.jsonl", 2, model="mock/locked")
    args = ["--mock", "--no-progress"]
    assert main(["batch", str(locked), "-o", str(tmp_path / "a.jsonl"), *args]) == 3
    assert "403 Forbidden: 2" in capsys.readouterr().out
    source = write_requests(tmp_path / "in.jsonl", 30)
    target = str(tmp_path / "b.jsonl")
    priced = [*args, "--mock-flavor", "openrouter", "--max-cost", "0.0001"]
    priced += ["--default-output-tokens", "16"]
    assert main(["batch", str(source), "-o", target, *priced]) == 4
    assert "budget is reached" in capsys.readouterr().out
    units = [*args, "--max-units", "100", "--default-output-tokens", "16"]
    assert main(["batch", str(source), "-o", str(tmp_path / "c.jsonl"), *units]) == 4
    out = capsys.readouterr().out
    assert "budget is reached" in out and "of 100 allowed" in out


def test_mock_flavor_needs_mock(tmp_path, capsys):
    """--mock-flavor without --mock is a usage error (exit 2)."""
    with pytest.raises(SystemExit) as caught:
        main(["batch", "in.jsonl", "-o", str(tmp_path / "o"), "--mock-flavor", "openrouter"])
    assert caught.value.code == 2 and "--mock-flavor goes with --mock" in capsys.readouterr().err


def test_progress_lines_without_tqdm(tmp_path, capsys, monkeypatch):
    """Without the progress extra, a progress line goes to stderr every few seconds."""
    monkeypatch.setitem(sys.modules, "tqdm", None)
    source = write_requests(tmp_path / "in.jsonl", 5)
    assert main(["batch", str(source), "-o", str(tmp_path / "out.jsonl"), "--mock"]) == 0
    err = capsys.readouterr().err
    assert "batch: 1/5 done" in err and "batch: 2/5" not in err


def parsed(*argv: str) -> Any:
    args = _parser().parse_args(["batch", *argv])
    args.argv = ["batch", *argv]
    return args


async def test_a_refused_key_exits_1(mock, tmp_path, capsys):
    """A 401 stops the run: exit 1 and the reason in the summary."""
    source = write_requests(tmp_path / "in.jsonl", 4)
    args = parsed(
        str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", mock.base_url,
        "--api-key", "sk-wrong", "--no-progress",
    )  # fmt: skip
    assert await _batch(args) == 1
    assert "stopped: the server refused the request (401" in capsys.readouterr().out


async def test_sigint_in_process_waits_for_the_requests_in_flight(mock, tmp_path, capsys):
    """SIGINT: no new starts, the requests in flight finish and are written, exit 130 and
    the command that resumes."""
    source = write_requests(tmp_path / "in.jsonl", 30)
    target = tmp_path / "out.jsonl"
    mock.latency = 0.2
    args = parsed(
        str(source), "-o", str(target), "--base-url", mock.base_url,
        "--api-key", mock.api_key, "--no-progress", "--concurrency", "3",
    )  # fmt: skip

    async def interrupt() -> None:
        await until(lambda: len(whole_results(target)) >= 1)
        os.kill(os.getpid(), signal.SIGINT)

    task = asyncio.ensure_future(interrupt())
    assert await _batch(args) == 130
    await task
    captured = capsys.readouterr()
    assert "SIGINT: no new requests start" in captured.err
    assert f"routmy batch {source} -o {target}" in captured.err
    assert "stopped: interrupted" in captured.out
    results = whole_results(target)
    assert 3 <= len(results) < 30 and all(r["error"] is None for r in results)


async def test_a_second_sigint_cancels_at_once(mock, tmp_path, capsys):
    """SIGINT twice: the requests in flight are cancelled at once, exit 130."""
    source = write_requests(tmp_path / "in.jsonl", 10)
    mock.latency = 30.0
    args = parsed(
        str(source), "-o", str(tmp_path / "out.jsonl"), "--base-url", mock.base_url,
        "--api-key", mock.api_key, "--no-progress", "--concurrency", "2",
    )  # fmt: skip

    async def interrupt_twice() -> None:
        await until(lambda: mock.in_flight == 2)
        os.kill(os.getpid(), signal.SIGINT)
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    task = asyncio.ensure_future(interrupt_twice())
    began = time.monotonic()
    assert await _batch(args) == 130
    await task
    assert time.monotonic() - began < WAIT / 2
    captured = capsys.readouterr()
    assert "SIGINT again: cancelling" in captured.err
    assert re.search(r"cut off +2 +in flight", captured.out)


# -- as a subprocess ----------------------------------------------------------------------------


async def spawn(mock: MockRoutmy, *argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-W", "error", "-m", "routmy_async", "batch", *argv,
        "--base-url", mock.base_url, "--api-key", mock.api_key, "--no-progress",
        cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_kill_9_mid_run_then_resume_does_every_id_exactly_once(mock, tmp_path):
    """A run killed with SIGKILL leaves whole lines (at most a torn last one); the same
    command again skips what is done and ends with every id done exactly once."""
    source = write_requests(tmp_path / "in.jsonl", 150)
    target = tmp_path / "out.jsonl"
    mock.latency = 0.02
    process = await spawn(mock, str(source), "-o", str(target), "--concurrency", "8")
    await until(lambda: len(whole_results(target)) >= 20)
    process.kill()
    await finish(process)
    assert process.returncode == -signal.SIGKILL
    done = {r["custom_id"] for r in whole_results(target)}
    assert 20 <= len(done) < 150
    assert lock_exists(target)  # left behind, but no longer locked
    mock.latency = 0.0
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        summary = await run_batch_file(client, source, target, concurrency=8)
    assert summary.skipped == len(done) and summary.ok == 150 - len(done)
    assert_every_id_done_once(target, 150)
    assert not lock_exists(target)


async def test_sigint_subprocess_grace_then_resume(mock, tmp_path):
    """SIGINT to the process: in-flight requests finish within the grace period, their
    lines are written, exit 130 with the resume command; the same command resumes."""
    source = write_requests(tmp_path / "in.jsonl", 40)
    target = tmp_path / "out.jsonl"
    mock.latency = 0.3
    process = await spawn(mock, str(source), "-o", str(target), "--concurrency", "4")
    await until(lambda: len(whole_results(target)) >= 4 and mock.in_flight == 4)
    process.send_signal(signal.SIGINT)
    code, out, err = await finish(process)
    assert code == 130, err
    assert "run the same command again to resume" in err and "stopped: interrupted" in out
    results = whole_results(target)
    assert target.read_bytes().endswith(b"\n") and len(results) >= 8
    assert all(r["error"] is None for r in results)
    mock.latency = 0.0
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        summary = await run_batch_file(client, source, target, concurrency=8)
    assert summary.skipped == len(results) and summary.complete
    assert_every_id_done_once(target, 40)


async def test_a_second_process_on_the_same_output_is_refused(mock, tmp_path):
    """While one run writes an output, a second one exits 1 naming the first one's pid;
    SIGTERM stops the first (exit 143)."""
    source = write_requests(tmp_path / "in.jsonl", 10)
    target = tmp_path / "out.jsonl"
    mock.latency = 0.5
    first = await spawn(mock, str(source), "-o", str(target), "--concurrency", "1")
    await until(lambda: mock.in_flight == 1)
    code, _, err = await finish(await spawn(mock, str(source), "-o", str(target)))
    assert code == 1
    assert f"being written by another batch run (pid {first.pid}" in err
    first.send_signal(signal.SIGTERM)
    code, _, err = await finish(first)
    assert code == 143 and "SIGTERM" in err


async def test_an_invalid_file_in_a_subprocess_sends_nothing(mock, tmp_path):
    """An invalid file: exit 1, the problems by line number, no request."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(chat_line("a")) + "\n{oops\n" + json.dumps(chat_line("a")) + "\n")
    code, _, err = await finish(await spawn(mock, str(bad), "-o", str(tmp_path / "x.jsonl")))
    assert code == 1 and mock.requests == []
    assert "line 2: invalid JSON" in err and "line 3: duplicate custom_id 'a'" in err


@pytest.mark.parametrize(
    "option", [["--max-cost", "-1"], ["--max-cost", "lots"], ["--grace", "-1"], ["--grace", "x"]]
)
def test_bad_option_values_are_usage_errors(option, tmp_path, capsys):
    """A negative or non-numeric budget or grace period: exit 2 naming the value."""
    with pytest.raises(SystemExit) as caught:
        main(["batch", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "out.jsonl"), *option])
    assert caught.value.code == 2 and repr(option[1]) in capsys.readouterr().err


def test_a_missing_input_file_is_one_error_line(tmp_path, capsys):
    """No such input: exit 1 with one line."""
    missing = tmp_path / "missing.jsonl"
    assert main(["batch", str(missing), "-o", str(tmp_path / "out.jsonl"), "--mock"]) == 1
    assert capsys.readouterr().err == f"error: {missing}: no such input file\n"


def test_previous_response_id_to_routmy_is_refused_with_its_line_number(tmp_path):
    """rout.my's /v1/responses is stateless: a line with previous_response_id would lose its
    conversation silently. routmy batch against a rout.my URL refuses it at validation,
    naming the line and why, in --dry-run too; nothing is sent."""
    source = tmp_path / "in.jsonl"
    lines = [
        {"custom_id": "a", "url": "/v1/responses", "body": {"model": "m/x", "input": "hi"}},
        {
            "custom_id": "b",
            "url": "/v1/responses",
            "body": {"model": "m/x", "input": "and then?", "previous_response_id": "resp_1"},
        },
    ]
    source.write_text("".join(json.dumps(line) + "\n" for line in lines))
    target = tmp_path / "out.jsonl"
    command = [sys.executable, "-W", "error", "-m", "routmy_async", "batch", str(source)]
    dry = subprocess.run(
        [*command, "--dry-run"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=WAIT
    )
    assert dry.returncode == 1, dry.stderr
    assert re.search(r"line 2: previous_response_id .*stateless.* input", dry.stdout)
    run = subprocess.run(
        [*command, "-o", str(target), "--base-url", "https://api.rout.my/v1", "--api-key",
         "sk_test", "--no-progress"],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=WAIT,
    )  # fmt: skip
    assert run.returncode == 1
    assert "line 2: previous_response_id" in run.stderr and "nothing was sent" in run.stderr
    assert not target.exists() or target.read_bytes() == b""
