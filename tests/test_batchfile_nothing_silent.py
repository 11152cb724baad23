"""Batch files, nothing silent (issue 23): a cost limit that cannot be enforced is refused,
a run sends exactly what it validated, a stop erases no record, ``max_cost`` bounds what the
output costs, a Responses line is a result only when it completed, a rewrite keeps the
file's mode, owner and link, HTTP errors are written as OpenAI writes them, and an invalid
file's error names its lines."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from routmy_async import (
    AsyncRoutmy,
    BatchFileError,
    BatchStop,
    BatchSummary,
    check_batch_file,
    run_batch_file,
)
from routmy_async._cli import main
from routmy_async.testing import MockRoutmy

ROOT = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ROUTMY_")}
WAIT = 30.0  # the longest any condition below may take (it normally takes milliseconds)


def chat_line(custom_id: str, text: str | None = None, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {
            "model": "mock/echo",
            "messages": [{"role": "user", "content": text or f"say {custom_id}"}],
            **body,
        },
    }


def write_lines(path: Path, items: Iterable[Any]) -> Path:
    with path.open("w") as out:
        for item in items:
            out.write((item if isinstance(item, str) else json.dumps(item)) + "\n")
    return path


def results(path: Path) -> list[dict[str, Any]]:
    """The whole lines of an output (a torn last one, from a kill -9, left out)."""
    if not path.exists():
        return []
    return [json.loads(raw) for raw in path.read_bytes().split(b"\n")[:-1]]


def is_ok(result: dict[str, Any]) -> bool:
    response = result["response"]
    return result["error"] is None and response is not None and response["status_code"] == 200


def output_cost(path: Path) -> float:
    costs = [r["response"]["body"]["usage"].get("cost", 0.0) for r in results(path) if is_ok(r)]
    return float(sum(costs))


async def until(condition: Any) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


@pytest_asyncio.fixture
async def priced() -> AsyncIterator[MockRoutmy]:
    """A server that reports usage.cost in dollars, as OpenRouter does (rout.my does not)."""
    async with MockRoutmy(flavor="openrouter") as server:
        yield server


def client_for(mock: MockRoutmy, **options: Any) -> AsyncRoutmy:
    return AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0, **options)


async def spawn(mock: MockRoutmy, *argv: str) -> asyncio.subprocess.Process:
    """``routmy batch ...`` in its own process, as a user runs it, against ``mock``."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "-W", "error", "-m", "routmy_async", "batch", *argv,
        "--base-url", mock.base_url, "--api-key", mock.api_key, "--no-progress",
        cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    out, err = await asyncio.wait_for(process.communicate(), WAIT)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# -- 1. a cost limit that cannot be enforced is refused ----------------------------------------


async def test_max_cost_against_routmy_is_refused_before_anything_is_read(tmp_path):
    """rout.my reports no usage.cost: max_cost against it raises at once, naming why; no
    output is created and the key appears nowhere."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line("a")])
    target = tmp_path / "out.jsonl"
    key = "sk_secret_key_123"
    async with AsyncRoutmy(
        api_key=key, base_url="https://api.rout.my/v1", max_retries=0, timeout=2
    ) as client:
        with pytest.raises(BatchFileError) as caught:
            await run_batch_file(client, source, target, max_cost=5.0)
    message = str(caught.value)
    assert "max_cost cannot be enforced against https://api.rout.my/v1" in message
    assert "reports no usage.cost" in message and key not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]


def chats_sent(mock: MockRoutmy) -> int:
    """Requests that could cost something (the models list a budget reads is free)."""
    return sum(1 for request in mock.requests if not request.path.endswith("/models"))


async def test_cli_max_cost_against_a_server_without_prices_sends_nothing(mock, tmp_path):
    """routmy batch --max-cost against a server that lists no prices (the default mock, as
    rout.my): exit 1 naming the model and what is missing, before any request is sent, even
    at --concurrency 8; no line is written for it."""
    lines = [chat_line(f"q{i:02d}", max_tokens=5) for i in range(20)]
    source = write_lines(tmp_path / "in.jsonl", lines)
    target = tmp_path / "out.jsonl"
    argv = [str(source), "-o", str(target), "--max-cost", "5", "--concurrency", "8"]
    code, out, err = await finish(await spawn(mock, *argv))
    assert code == 1, err
    assert "error: the budget cannot be enforced" in err
    assert "'mock/echo' has no price" in err and mock.api_key not in err + out
    assert chats_sent(mock) == 0
    assert results(target) == []


@pytest.mark.filterwarnings("ignore:a request to .* sets no max_tokens:UserWarning")
def test_cli_mock_max_cost_stops_and_the_openrouter_flavor_counts(tmp_path, capsys):
    """--mock answers as rout.my (no prices): --max-cost stops with exit 1 before sending;
    --mock-flavor openrouter lists prices, so the same budget runs every line; a line
    without max_tokens needs --default-output-tokens."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line(f"q{i:02d}") for i in range(10)])
    target = tmp_path / "out.jsonl"
    args = ["batch", str(source), "-o", str(target), "--mock", "--no-progress"]
    budget = ["--max-cost", "5", "--default-output-tokens", "64"]
    assert main([*args, *budget, "--concurrency", "4"]) == 1
    out, err = capsys.readouterr()
    assert "has no price" in err and "(no request of it was sent)" in out
    assert results(target) == []
    priced = ["--mock-flavor", "openrouter", *budget]
    assert main(["batch", str(source), "-o", str(tmp_path / "b.jsonl"), *args[4:], *priced]) == 0
    out = capsys.readouterr().out
    assert "of $5.0000 allowed" in out and "reported no cost" not in out
    assert main([*args, "--mock-flavor", "openrouter", "--max-cost", "5"]) == 1
    assert "--default-output-tokens" in capsys.readouterr().err


async def test_a_line_without_a_price_stops_a_priced_run_before_it_is_sent(priced, tmp_path):
    """Against a server that prices chat but not images, the image line is refused before
    it is sent under max_cost (fail closed: never counted as free): a BatchFileError
    carrying the summary, the lines before it written, nothing started after it."""
    image = {
        "custom_id": "img",
        "url": "/v1/images/generations",
        "body": {"model": "mock/image", "prompt": "a cube"},
    }
    lines = [chat_line("a", max_tokens=5), chat_line("b", max_tokens=5), image]
    lines += [chat_line("c", max_tokens=5), chat_line("d", max_tokens=5)]
    source = write_lines(tmp_path / "in.jsonl", lines)
    target = tmp_path / "out.jsonl"
    async with client_for(priced) as client:
        with pytest.raises(BatchFileError, match=r"'mock/image' has no price") as caught:
            await run_batch_file(client, source, target, max_cost=1.0, concurrency=1)
    assert [r["custom_id"] for r in results(target)] == ["a", "b"]
    assert chats_sent(priced) == 2
    summary = caught.value.summary
    assert summary is not None and summary.stop_reason == "cost_unknown"
    assert summary.not_started == 3


async def test_an_outputs_earlier_answers_count_and_unpriceable_ones_are_refused(
    mock, priced, tmp_path
):
    """What an output's earlier answers used counts against the budget, priced by the
    models list where they reported no cost (written against rout.my); an answer of a model
    the list cannot price stops the run before it sends anything (a run with nothing left
    to send has nothing to refuse)."""
    source = write_lines(
        tmp_path / "in.jsonl", [chat_line(f"q{i}", max_tokens=5) for i in range(4)]
    )
    target = tmp_path / "out.jsonl"
    async with client_for(mock) as client:
        await run_batch_file(client, write_lines(tmp_path / "two.jsonl", [chat_line("q0")]), target)
    async with client_for(priced) as client:
        summary = await run_batch_file(client, source, target, max_cost=1.0)
        assert summary.ok == 3 and summary.spend is not None
        assert summary.spend.dollars is not None
        spent = float(summary.spend.dollars.spent)
        assert spent == pytest.approx(4 * 5e-6)  # q0 priced by the list, not counted free
    vision = [chat_line("v", max_tokens=5, model="mock/vision")]
    unpriced = tmp_path / "unpriced.jsonl"
    async with client_for(mock) as client:
        await run_batch_file(client, write_lines(tmp_path / "v.jsonl", vision), unpriced)
    async with client_for(priced) as client:
        sent = chats_sent(priced)
        with pytest.raises(BatchFileError, match=r"of 'mock/vision' already in .* price"):
            await run_batch_file(client, source, unpriced, max_cost=1.0)
        assert chats_sent(priced) == sent and len(results(unpriced)) == 1
        done = await run_batch_file(client, tmp_path / "v.jsonl", unpriced, max_cost=1.0)
    assert done.skipped == 1 and done.started == 0 and done.complete


# -- 2. the input is the input that was validated ---------------------------------------------

PAD = "x" * 40_000  # lines of 40 kB: the input spans two of the reader's 256 kB blocks

APPEND = """
import json, sys
line = lambda custom_id, **body: json.dumps({
    "custom_id": custom_id, "url": "/v1/chat/completions",
    "body": {"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}], **body},
})
with open(sys.argv[1], "a") as out:
    out.write(line("q00") + "\\n" + line("late", stream=True) + "\\n")
"""


def padded_input(path: Path, count: int = 12) -> Path:
    return write_lines(path, [chat_line(f"q{i:02d}", f"say q{i:02d} {PAD}") for i in range(count)])


def in_another_process(code: str, *args: str) -> None:
    """Run ``code`` in another process and wait for it (a writer outside this run)."""
    subprocess.run([sys.executable, "-c", code, *args], check=True, timeout=WAIT)


async def test_lines_another_process_appends_during_the_run_are_not_sent(mock, tmp_path):
    """Another process appends a duplicate id and a stream line while the run goes: neither
    is sent (they were not validated); every id is written once and the summary says the
    input grew, so the run is not complete; the next run validates them and refuses."""
    source = padded_input(tmp_path / "in.jsonl")
    target = tmp_path / "out.jsonl"

    def append_at_first_result(summary: BatchSummary) -> None:
        if summary.done == 1:
            in_another_process(APPEND, str(source))

    async with client_for(mock) as client:
        summary = await run_batch_file(
            client, source, target, concurrency=1, progress=append_at_first_result
        )
        assert summary.ok == 12 and summary.failed == 0 and len(mock.requests) == 12
        assert summary.input_grown > 0 and not summary.complete
        assert "the input grew by" in summary.format()
        ids = [r["custom_id"] for r in results(target)]
        assert sorted(ids) == [f"q{i:02d}" for i in range(12)]
        with pytest.raises(BatchFileError) as caught:
            await run_batch_file(client, source, target)
    assert "line 13: duplicate custom_id 'q00' (first on line 1)" in str(caught.value)
    assert "line 14: body: stream is not supported" in str(caught.value)


CUT = "import os, sys; os.truncate(sys.argv[1], 1000)"
REPLACE = """
import os, sys
with open(sys.argv[1] + ".new", "w") as out:
    out.write(open(sys.argv[1]).read())
os.replace(sys.argv[1] + ".new", sys.argv[1])
"""


REWRITE = """
import os, sys
with open(sys.argv[1], "r+b") as source:
    source.seek(os.path.getsize(sys.argv[1]) - 100)
    source.write(b"y")  # a byte of the last line's padding: the size stays, the bytes differ
"""
REMOVE = "import os, sys; os.unlink(sys.argv[1])"


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (CUT, "was cut"),
        (REPLACE, "was replaced by another file"),
        (REWRITE, "was rewritten (the bytes from offset"),
        (REMOVE, "was removed"),
    ],
    ids=["cut", "replaced", "rewritten", "removed"],
)
async def test_an_input_cut_or_replaced_during_the_run_stops_it(mock, tmp_path, change, said):
    """Another process truncates the input, renames a new file over it, rewrites a byte of
    it or removes it while the run goes: the run stops with a BatchFileError saying so (its
    summary attached), having sent no line it did not validate; what was sent is written."""
    source = padded_input(tmp_path / "in.jsonl")
    target = tmp_path / "out.jsonl"

    def change_at_first_result(summary: BatchSummary) -> None:
        if summary.done == 1:
            in_another_process(change, str(source))

    async with client_for(mock) as client:
        with pytest.raises(BatchFileError) as caught:
            await run_batch_file(
                client, source, target, concurrency=1, progress=change_at_first_result
            )
    message = str(caught.value)
    assert f"the input {said}" in message and "since it was validated" in message
    summary = caught.value.summary
    assert summary is not None and summary.stop_reason == "input_changed"
    assert 1 <= summary.ok < 12 and summary.ok == len(mock.requests) == len(results(target))


# -- 3. a stop must not erase a record ---------------------------------------------------------


async def test_an_early_stop_keeps_the_failure_line_of_an_id_it_did_not_send_again(mock, tmp_path):
    """A run that retries failed lines and is stopped by a 401 after the first one leaves
    every other id's failure line in place: the compaction drops only lines it superseded."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line(f"q{i}") for i in range(4)])
    target = tmp_path / "out.jsonl"
    mock.reply_error(500, "boom", times=4)
    async with client_for(mock) as client:
        first = await run_batch_file(client, source, target, concurrency=1)
    assert first.failed == 4
    async with AsyncRoutmy(api_key="sk-wrong", base_url=mock.base_url, max_retries=0) as client:
        second = await run_batch_file(client, source, target, concurrency=1)
    assert second.stop_reason == "fatal_error" and second.started == 1
    lines = results(target)
    assert sorted({r["custom_id"] for r in lines}) == ["q0", "q1", "q2", "q3"]
    assert [r["response"]["status_code"] for r in lines if r["custom_id"] == "q0"] == [401]


# -- 4. max_cost is what the output may cost ---------------------------------------------------


async def test_max_cost_bounds_the_output_across_a_kill_and_a_restart(priced, tmp_path):
    """routmy batch --max-cost killed with SIGKILL mid-run, then the same command again: the
    second run counts what the output already cost, so the output's cost stays within the
    budget; the summary says what was spent before and by this run (exit 4)."""
    # max_tokens: a line's reservation counts its output cap (256 without one).
    lines = [chat_line(f"q{i:02d}", max_tokens=2) for i in range(40)]
    source = write_lines(tmp_path / "in.jsonl", lines)
    target = tmp_path / "out.jsonl"
    per_line = 5e-6  # the mock's cost of "say qNN": 3 prompt and 2 completion tokens
    budget = 10 * per_line
    argv = [str(source), "-o", str(target), "--max-cost", f"{budget}", "--concurrency", "2"]
    priced.latency = 0.2  # ten lines take a second: the kill lands mid-run
    process = await spawn(priced, *argv)
    await until(lambda: len(results(target)) >= 3)
    process.kill()
    await finish(process)
    before = output_cost(target)
    assert before >= 3 * per_line - 1e-12
    priced.latency = 0.0
    code, out, err = await finish(await spawn(priced, *argv))
    assert code == 4, err
    assert output_cost(target) <= budget + per_line / 2
    assert "before = $" in out and "budget is reached" in out


async def test_a_budget_already_spent_sends_nothing(priced, tmp_path):
    """A second run with the same max_cost over an output that already cost it sends
    nothing and says so; cost_before and cost_total are in the JSON form."""
    lines = [chat_line(f"q{i:02d}", max_tokens=2) for i in range(30)]
    source = write_lines(tmp_path / "in.jsonl", lines)
    target = tmp_path / "out.jsonl"
    async with client_for(priced) as client:
        first = await run_batch_file(client, source, target, max_cost=5e-5, concurrency=1)
        sent = chats_sent(priced)
        second = await run_batch_file(client, source, target, max_cost=5e-5)
    assert first.stop_reason == second.stop_reason == "budget"
    assert chats_sent(priced) == sent and second.started == 0
    data = second.to_dict()
    assert data["cost"] == 0 and data["cost_before"] == pytest.approx(first.cost)
    assert data["cost_total"] == pytest.approx(first.cost)


# -- 5. a Responses line is ok only when its response completed --------------------------------


def response_body(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"resp_{status}",
        "object": "response",
        "created_at": 1,
        "status": status,
        "model": "mock/echo",
        "output": [],
        "usage": {"input_tokens": 1, "output_tokens": 1, "total_tokens": 2},
        **extra,
    }


async def test_responses_lines_are_results_only_when_completed_or_incomplete(mock, tmp_path):
    """completed and incomplete (its reason counted) are results; failed, cancelled, queued
    and in_progress are failures with an error, sent again by the next run."""
    states = ["completed", "incomplete", "failed", "cancelled", "queued", "in_progress"]
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            {"custom_id": s, "url": "/v1/responses", "body": {"model": "mock/echo", "input": "hi"}}
            for s in states
        ],
    )
    target = tmp_path / "out.jsonl"
    for state in states:
        extra: dict[str, Any] = {}
        if state == "incomplete":
            extra["incomplete_details"] = {"reason": "max_output_tokens"}
        if state == "failed":
            extra["error"] = {"code": "server_error", "message": "the model broke"}
        mock.reply_json(response_body(state, **extra), path="/v1/responses")
    async with client_for(mock) as client:
        first = await run_batch_file(client, source, target, concurrency=1)
        assert first.ok == 2 and first.failed == 4
        assert first.incomplete == {"max_output_tokens": 1}
        assert "1 incomplete (max_output_tokens: 1)" in first.format()
        assert first.failures == {
            "response failed (server_error)": 1,
            "response cancelled": 1,
            "response queued": 1,
            "response in_progress": 1,
        }
        written = {r["custom_id"]: r for r in results(target)}
        assert written["failed"]["error"] == {
            "code": "response_failed",
            "message": "the response failed: the model broke",
        }
        assert written["queued"]["response"]["body"]["status"] == "queued"
        second = await run_batch_file(client, source, target)
    assert second.skipped == 2 and second.ok == 4
    assert sorted(r.json["input"] for r in mock.requests[6:]) == ["hi"] * 4


# -- 6. rewriting the output keeps its mode, owner and link ------------------------------------


async def compacted_output(mock: MockRoutmy, source: Path, target: Path) -> BatchSummary:
    """A first run with two failures, then one that retries them: the compaction rewrites."""
    async with client_for(mock) as client:
        mock.reply_error(500, "boom", times=2)
        await run_batch_file(client, source, target, concurrency=1)
        return await run_batch_file(client, source, target)


async def test_compaction_keeps_the_outputs_mode_and_owner(mock, tmp_path):
    """A 0600 output is still 0600 after the compaction rewrote it, and (when the test can
    give it away) still belongs to its owner."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line(f"q{i}") for i in range(5)])
    target = tmp_path / "out.jsonl"
    target.touch(mode=0o600)
    os.chmod(target, 0o600)
    owner = (os.getuid(), os.getgid())
    if os.getuid() == 0:
        owner = (4242, 4243)
        os.chown(target, *owner)
    summary = await compacted_output(mock, source, target)
    assert summary.compacted == 2
    info = target.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert (info.st_uid, info.st_gid) == owner
    assert sorted(r["custom_id"] for r in results(target)) == [f"q{i}" for i in range(5)]


async def test_a_symlinked_output_is_compacted_where_it_points(mock, tmp_path):
    """The compaction rewrites the file a symlinked output points to; the link stays."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line(f"q{i}") for i in range(5)])
    real = tmp_path / "data" / "results.jsonl"
    real.parent.mkdir()
    real.touch()
    link = tmp_path / "out.jsonl"
    link.symlink_to(real)
    summary = await compacted_output(mock, source, link)
    assert summary.compacted == 2
    assert link.is_symlink() and link.resolve() == real
    assert len(results(real)) == 5 and all(is_ok(r) for r in results(real))
    assert sorted(p.name for p in real.parent.iterdir()) == ["results.jsonl"]


async def test_two_links_to_one_output_share_its_lock(mock, tmp_path):
    """A run writing through a symlink holds the lock of the file it points to: a second run
    on that file, by its own name, is refused while the first one goes."""
    from routmy_async._batchfile._files import FileLock

    source = write_lines(tmp_path / "in.jsonl", [chat_line("a")])
    real = tmp_path / "results.jsonl"
    link = tmp_path / "link.jsonl"
    link.symlink_to(real)
    lock = FileLock(real)
    lock.acquire()
    try:
        async with client_for(mock) as client:
            with pytest.raises(BatchFileError, match="being written by another batch run"):
                await run_batch_file(client, source, link)
    finally:
        lock.release()
    assert mock.requests == []


def test_compaction_leaves_a_file_it_cannot_give_back_alone(tmp_path, monkeypatch, caplog):
    """When the rewritten file could not keep its owner (or the file has other hard links),
    nothing is rewritten and a warning says why: superseded lines are only not compact."""
    from routmy_async._batchfile import _files

    target = tmp_path / "out.jsonl"
    data = b'{"custom_id": "a", "response": null, "error": {"code": "x"}}\n'
    target.write_bytes(data)
    os.link(target, tmp_path / "other-link.jsonl")
    dropped = _files.compact_file(
        target, keep_from=len(data), drop=lambda value: True, should_stop=lambda: False
    )
    assert dropped == 0 and target.read_bytes() == data
    assert "other hard links" in caplog.text
    os.unlink(tmp_path / "other-link.jsonl")

    if os.getuid() != 0:
        return  # only root can hand the file to another owner to begin with

    def refuse(*args: Any) -> None:
        raise PermissionError("not yours")

    os.chown(target, 4242, 4243)
    monkeypatch.setattr(os, "fchown", refuse)
    dropped = _files.compact_file(
        target, keep_from=len(data), drop=lambda value: True, should_stop=lambda: False
    )
    assert dropped == 0 and target.read_bytes() == data
    assert "could not keep its owner (uid 4242)" in caplog.text
    assert not (tmp_path / "out.jsonl.compacting").exists()


# -- 7. HTTP errors as OpenAI writes them; older outputs still resume --------------------------


async def test_an_http_error_is_written_with_error_null(mock, tmp_path):
    """A 429 answer: status, request id and body in response, error null, as OpenAI writes
    it; a reset (no answer) has an error and response null. Both are sent again."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line("busy"), chat_line("cut")])
    target = tmp_path / "out.jsonl"
    mock.reply_error(429, "slow down", code="rate_limit_exceeded")
    mock.reply_default(reset_after=20)
    async with client_for(mock) as client:
        first = await run_batch_file(client, source, target, concurrency=1)
        busy, cut = results(target)
        assert busy["error"] is None and busy["response"]["status_code"] == 429
        assert busy["response"]["request_id"] == "req-mock-1"
        assert busy["response"]["body"]["error"]["code"] == "rate_limit_exceeded"
        assert cut["response"] is None and cut["error"]["code"] == "connection_error"
        assert first.failures == {"429 rate_limit_exceeded": 1, "connection_error": 1}
        second = await run_batch_file(client, source, target)
    assert second.ok == 2 and second.compacted == 2 and all(is_ok(r) for r in results(target))


async def test_an_output_in_the_earlier_format_still_resumes(mock, tmp_path):
    """An output written before this change (a 400 with an error object, a failed
    Responses answer written as a result) resumes: ok lines are skipped, the others sent
    again, and their old lines dropped."""
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            chat_line("done"),
            chat_line("refused"),
            {
                "custom_id": "r",
                "url": "/v1/responses",
                "body": {"model": "mock/echo", "input": "x"},
            },
        ],
    )
    target = tmp_path / "out.jsonl"
    done = {"status_code": 200, "request_id": "q1", "body": {"object": "chat.completion"}}
    refused = {"status_code": 400, "request_id": "q2", "body": {"error": {"message": "no"}}}
    failed_response = {"status_code": 200, "request_id": "q3", "body": response_body("failed")}
    write_lines(
        target,
        [
            {"id": "batch_req_1", "custom_id": "done", "response": done, "error": None},
            {
                "id": "batch_req_2",
                "custom_id": "refused",
                "response": refused,
                "error": {"code": "invalid_request_error", "message": "no"},
            },
            {"id": "batch_req_3", "custom_id": "r", "response": failed_response, "error": None},
        ],
    )
    async with client_for(mock) as client:
        summary = await run_batch_file(client, source, target)
    assert summary.skipped == 1 and summary.ok == 2 and summary.compacted == 2
    assert [r.path for r in mock.requests] == ["/v1/chat/completions", "/v1/responses"] or [
        r.path for r in mock.requests
    ] == ["/v1/responses", "/v1/chat/completions"]
    lines = results(target)
    assert sorted(r["custom_id"] for r in lines) == ["done", "r", "refused"]
    assert all(is_ok(r) for r in lines)


# -- 8. the error names the first problems -----------------------------------------------------


async def test_an_invalid_files_error_message_names_its_first_lines(mock, tmp_path):
    """str(BatchFileError) lists the first ten problems with their line numbers, then how
    many more: a traceback is often all a user sees."""
    lines: list[Any] = [chat_line("a")] + ["{oops"] * 14
    source = write_lines(tmp_path / "in.jsonl", lines)
    async with client_for(mock) as client:
        with pytest.raises(BatchFileError) as caught:
            await run_batch_file(client, source, tmp_path / "out.jsonl")
    message = str(caught.value)
    assert "14 invalid line(s); nothing was sent" in message
    assert "\n  line 2: invalid JSON" in message and "\n  line 11: invalid JSON" in message
    assert "line 12:" not in message and "... and 4 more" in message
    assert mock.requests == []


# -- the validation hides no bad line ----------------------------------------------------------


async def test_a_body_the_sdk_cannot_prepare_is_refused_by_the_validation(mock, tmp_path):
    """A text part whose text is a number passes the SDK's field checks but breaks its token
    estimate: the dry run and the run refuse the line with its number, instead of the dry
    run crashing and every run writing the same failure."""
    bad = chat_line("b")
    bad["body"]["messages"] = [{"role": "user", "content": [{"type": "text", "text": 5}]}]
    source = write_lines(tmp_path / "in.jsonl", [chat_line("a"), bad])
    check = await check_batch_file(source)
    assert [number for number, _ in check.problems] == [2] and check.to_run == 1
    async with client_for(mock) as client:
        with pytest.raises(BatchFileError, match="line 2: body: "):
            await run_batch_file(client, source, tmp_path / "out.jsonl", tokens_per_minute=1e6)
    assert mock.requests == []


# -- other answers that must not pass for results ----------------------------------------------


async def test_a_chat_answer_cut_by_a_provider_error_is_a_failure(mock, tmp_path):
    """A 200 chat completion whose choice ended in finish_reason "error" (the provider
    failed mid-answer) is a failure with an error naming it, sent again by the next run."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line("cut"), chat_line("fine")])
    target = tmp_path / "out.jsonl"
    mock.reply_json(
        {
            "id": "chatcmpl-x",
            "object": "chat.completion",
            "created": 1,
            "model": "mock/echo",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "half an ans"},
                    "finish_reason": "error",
                }
            ],
            "error": {"message": "provider died", "code": 502},
        },
        path="/v1/chat/completions",
    )
    async with client_for(mock) as client:
        first = await run_batch_file(client, source, target, concurrency=1)
        assert first.ok == 1 and first.failures == {"finish_reason error": 1}
        cut = next(r for r in results(target) if r["custom_id"] == "cut")
        assert cut["response"]["status_code"] == 200
        assert cut["error"]["code"] == "finish_reason_error"
        assert "provider died" in cut["error"]["message"]
        second = await run_batch_file(client, source, target)
    assert second.skipped == 1 and second.ok == 1 and all(is_ok(r) for r in results(target))


def chat_answer(choices: list[Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "mock/echo",
        "choices": choices,
        "usage": {"prompt_tokens": 1, "completion_tokens": 0, "total_tokens": 1},
        **extra,
    }


STOPPED = {"index": 0, "message": {"role": "assistant", "content": "hm"}, "finish_reason": "stop"}


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (chat_answer([]), "no_choices"),
        (
            chat_answer([STOPPED], error={"message": "upstream died", "code": 502}),
            "error_in_answer",
        ),
    ],
    ids=["no-choices", "error-beside-choices"],
)
async def test_a_chat_answer_without_an_answer_is_a_failure(mock, tmp_path, answer, code):
    """A 200 chat completion with ``choices: []``, or with a top-level error object beside
    a choice that says "stop", is not a result: a failure line with an ``error`` (its 200
    kept in ``response``), sent again by the next run."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line("empty"), chat_line("fine")])
    target = tmp_path / "out.jsonl"
    mock.reply_json(answer, path="/v1/chat/completions")
    async with client_for(mock) as client:
        first = await run_batch_file(client, source, target, concurrency=1)
        assert first.ok == 1 and first.failed == 1
        empty = next(r for r in results(target) if r["custom_id"] == "empty")
        assert empty["response"]["status_code"] == 200
        assert empty["error"]["code"] == code
        second = await run_batch_file(client, source, target)
    assert second.skipped == 1 and second.ok == 1 and all(is_ok(r) for r in results(target))


async def test_an_error_body_with_a_200_keeps_its_status_and_gets_an_error(mock, tmp_path):
    """A 200 whose body is only {"error": {"code": 502}}: the line keeps the real status
    (200) in ``response`` and the failure in ``error``, as 2xx failures are written."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line("bad")])
    target = tmp_path / "out.jsonl"
    mock.reply_json({"error": {"message": "upstream", "code": 502}}, path="/v1/chat/completions")
    async with client_for(mock) as client:
        summary = await run_batch_file(client, source, target)
    assert summary.failed == 1
    (line,) = results(target)
    assert line["response"]["status_code"] == 200
    assert line["response"]["body"] == {"error": {"message": "upstream", "code": 502}}
    assert line["error"] is not None and "upstream" in line["error"]["message"]


async def test_a_last_line_still_being_written_waits_for_the_next_run(mock, tmp_path):
    """A writer appending a line in two write()s: the batch sees half a last line (no
    newline, not JSON). That line is not there yet (not sent, exit 5 as for appended
    lines), not a reason to refuse the whole file; once whole, the next run sends it. A
    last line without a newline that parses is a whole line (exit 0)."""
    source = tmp_path / "in.jsonl"
    last = json.dumps(chat_line("q3"))
    source.write_text("".join(json.dumps(chat_line(f"q{i}")) + "\n" for i in range(3)))
    with source.open("a") as writer:  # the first of the writer's two write()s
        writer.write(last[:40])
    target = tmp_path / "out.jsonl"
    argv = [str(source), "-o", str(target)]
    code, out, err = await finish(await spawn(mock, *argv))
    assert code == 5, err
    assert "the input grew by 40 bytes" in out
    assert sorted(r["custom_id"] for r in results(target)) == ["q0", "q1", "q2"]
    with source.open("a") as writer:  # its second write(), still without the newline
        writer.write(last[40:])
    code, out, err = await finish(await spawn(mock, *argv))
    assert code == 0, err
    assert sorted(r["custom_id"] for r in results(target)) == ["q0", "q1", "q2", "q3"]


async def test_cli_exits_5_when_the_input_grew_during_the_run(mock, tmp_path):
    """routmy batch while another process appends to the input: the lines validated are
    done, the summary says the input grew, and the exit code (5) says it is not finished;
    the same command again sends the new lines and exits 0."""
    source = padded_input(tmp_path / "in.jsonl")
    target = tmp_path / "out.jsonl"
    mock.latency = 0.3
    argv = [str(source), "-o", str(target), "--concurrency", "1"]
    process = await spawn(mock, *argv)
    await until(lambda: mock.in_flight == 1)
    with source.open("a") as more:  # another writer: this test stands in for it
        more.write(json.dumps(chat_line("late")) + "\n")
    code, out, err = await finish(process)
    assert code == 5, err
    assert "the input grew by" in out and len(results(target)) == 12
    mock.latency = 0.0
    code, out, err = await finish(await spawn(mock, *argv))
    assert code == 0, err
    assert [r["custom_id"] for r in results(target)][12:] == ["late"]


# -- 6. max_units: rout.my's own unit, across a kill and a restart ----------------------------


def output_units(path: Path) -> int:
    """Tokens of the output's answers: quota units for mock/echo (token_multiplier 1)."""
    return sum(r["response"]["body"]["usage"]["total_tokens"] for r in results(path) if is_ok(r))


async def test_max_units_bounds_the_output_across_a_kill_and_a_restart(mock, tmp_path):
    """routmy batch --max-units against a server that answers as rout.my (no prices, no
    cost), killed with SIGKILL mid-run, then run again: the second run counts the units the
    output's answers already used (tokens times token_multiplier) and, from the run's
    journal, the attempts in flight at the kill in full (the server answered them too), so
    what the server answered stays within the budget; the summary says what was counted
    before (exit 4)."""
    lines = [chat_line(f"q{i:02d}", max_tokens=2) for i in range(60)]
    source = write_lines(tmp_path / "in.jsonl", lines)
    target = tmp_path / "out.jsonl"
    budget = 150  # a line uses 5 units and reserves ~37: about 25 lines
    argv = [str(source), "-o", str(target), "--max-units", str(budget), "--concurrency", "2"]
    mock.latency = 0.2
    process = await spawn(mock, *argv)
    await until(lambda: len(results(target)) >= 3)
    # Into the next answers' 0.2 s, so that two attempts are in flight at the kill (the
    # workers start them as they write a line; on a busy machine that can lag the line).
    await asyncio.sleep(0.05)
    process.kill()
    await finish(process)
    before = output_units(target)
    assert before >= 15
    mock.latency = 0.0
    code, out, err = await finish(await spawn(mock, *argv))
    assert code == 4, err
    assert output_units(target) <= budget
    assert chats_sent(mock) * 5 <= budget  # every request the server answered: 5 units each
    counted = re.search(rf"\+ ([\d,]+) before of {budget} allowed", out)
    assert counted is not None and "budget is reached" in out
    assert int(counted[1].replace(",", "")) > before  # the two in flight at the kill, in full
    sent = chats_sent(mock)
    code, out, err = await finish(await spawn(mock, *argv))  # nothing fits: nothing sent
    assert code == 4, err
    assert "quota units: 0 this run" in out and chats_sent(mock) == sent


async def test_a_stopped_run_resumes_within_its_units(mock, tmp_path):
    """run_batch_file(max_units=...) stopped after a few results, then run again: the
    summary's units_before is what the first run used, and the two stay within the limit."""
    lines = [chat_line(f"q{i:02d}", max_tokens=2) for i in range(40)]
    source = write_lines(tmp_path / "in.jsonl", lines)
    target = tmp_path / "out.jsonl"
    stop = BatchStop()

    def after_three(summary: BatchSummary) -> None:
        if summary.done == 3:
            stop.request()

    async with client_for(mock) as client:
        first = await run_batch_file(
            client, source, target, max_units=100, progress=after_three, stop=stop
        )
        second = await run_batch_file(client, source, target, max_units=100)
    assert first.stop_reason == "interrupted" and first.units == output_units(target) - (
        second.units
    )
    assert second.units_before == first.units and second.stop_reason == "budget"
    assert first.units + second.units <= 100
    assert second.to_dict()["units_before"] == first.units
