"""Batch files against MockRoutmy: the output format, resume, validation, budget, stops,
the lock, torn lines, a full disk and a file full of injected faults."""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import re
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
    RoutmyError,
    check_batch_file,
    run_batch_file,
)
from routmy_async._batchfile import _files, _run
from routmy_async._batchfile._files import FileLock
from routmy_async._http._ratelimit import estimate_tokens
from routmy_async.testing import MockRoutmy, assert_no_open_connections

CHAT = "/v1/chat/completions"
COST_PER_LINE = 5e-6  # the mock's cost of "say N" (3 prompt + 2 completion tokens)


def chat_line(custom_id: str, text: str | None = None, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
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


def read_results(path: Path) -> list[dict[str, Any]]:
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "the file must end with a whole line"
    return [json.loads(raw) for raw in data.splitlines()]


def ok_ids(results: list[dict[str, Any]]) -> list[str]:
    return [
        r["custom_id"]
        for r in results
        if r["error"] is None and r["response"] and r["response"]["status_code"] == 200
    ]


async def until(condition: Any) -> None:
    """Wait for ``condition()``, for at most 30 s (it normally takes milliseconds)."""
    deadline = time.monotonic() + 30.0
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


@pytest_asyncio.fixture
async def client(mock: MockRoutmy) -> AsyncIterator[AsyncRoutmy]:
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as c:
        yield c


@pytest_asyncio.fixture
async def priced() -> AsyncIterator[MockRoutmy]:
    """A server that reports usage.cost in dollars, as OpenRouter does (rout.my does not)."""
    async with MockRoutmy(flavor="openrouter") as server:
        yield server


@pytest_asyncio.fixture
async def priced_client(priced: MockRoutmy) -> AsyncIterator[AsyncRoutmy]:
    async with AsyncRoutmy(api_key=priced.api_key, base_url=priced.base_url, max_retries=0) as c:
        yield c


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return write_lines(tmp_path / "in.jsonl", [chat_line(f"q{i}") for i in range(20)])


async def test_results_are_openai_batch_output_lines(priced_client, tmp_path):
    """Every line: id, custom_id, response {status_code, request_id, body}, error null; the
    body is the server's answer; the summary adds up tokens and (from a server that reports
    it) cost."""
    client = priced_client
    items = [chat_line(f"q{i}", max_tokens=5) for i in range(6)]
    items.append(
        {"custom_id": "e", "url": "/v1/embeddings", "body": {"model": "mock/embed", "input": "x"}}
    )
    source = write_lines(tmp_path / "in.jsonl", items)
    summary = await run_batch_file(client, source, tmp_path / "out.jsonl", concurrency=3)
    results = read_results(tmp_path / "out.jsonl")
    assert sorted(r["custom_id"] for r in results) == sorted(i["custom_id"] for i in items)
    ids = [r["id"] for r in results]
    assert len(set(ids)) == 7 and all(i.startswith("batch_req_") for i in ids)
    for result in results:
        assert list(result) == ["id", "custom_id", "response", "error"]
        assert result["error"] is None
        response = result["response"]
        assert list(response) == ["status_code", "request_id", "body"]
        assert response["status_code"] == 200 and response["request_id"].startswith("req-mock-")
        body = response["body"]
        if result["custom_id"] == "e":
            assert body["object"] == "list" and len(body["data"]) == 1
        else:
            assert body["object"] == "chat.completion"
            assert body["choices"][0]["message"]["content"] == f"say {result['custom_id']}"
    bodies = [r["response"]["body"] for r in results]
    assert summary.ok == 7 and summary.failed == 0 and summary.complete
    assert summary.total_tokens == sum(b["usage"]["total_tokens"] for b in bodies)
    assert summary.prompt_tokens == sum(b["usage"]["prompt_tokens"] for b in bodies)
    assert summary.cost == pytest.approx(sum(b["usage"]["cost"] for b in bodies))
    assert summary.costed == 7 and summary.throughput > 0
    assert not (tmp_path / "out.jsonl.lock").exists()


async def test_failures_carry_error_and_the_servers_answer(client, mock, tmp_path):
    """A 400 is written as OpenAI writes it: its status, request id and error body in
    response, error null; a reset has response null and an error."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line("bad"), chat_line("cut")])
    mock.reply_error(400, "no such thing", code="bad_thing")
    mock.reply_default(reset_after=20)
    summary = await run_batch_file(client, source, tmp_path / "out.jsonl", concurrency=1)
    bad, cut = read_results(tmp_path / "out.jsonl")
    assert bad["custom_id"] == "bad" and bad["error"] is None
    assert bad["response"]["body"]["error"]["message"] == "no such thing"
    assert bad["response"]["status_code"] == 400
    assert bad["response"]["request_id"] == "req-mock-1"
    assert bad["response"]["body"]["error"]["code"] == "bad_thing"
    assert cut["response"] is None and cut["error"]["code"] == "connection_error"
    assert summary.failures == {"400 bad_thing": 1, "connection_error": 1}
    assert summary.failed == 2 and summary.ok == 0 and summary.complete


async def test_an_errors_file_takes_the_failures(client, mock, source, tmp_path):
    """With errors_file, failures go there and the output holds only successes."""
    mock.reply_error(503, "busy", times=2)
    summary = await run_batch_file(
        client, source, tmp_path / "out.jsonl", errors_file=tmp_path / "err.jsonl", concurrency=1
    )
    assert len(ok_ids(read_results(tmp_path / "out.jsonl"))) == 18
    failed = read_results(tmp_path / "err.jsonl")
    assert [r["custom_id"] for r in failed] == ["q0", "q1"]
    assert summary.failures == {"503": 2} and "err.jsonl" in summary.format()


async def test_a_second_run_skips_done_retries_failed_and_leaves_one_line_per_id(
    client, mock, source, tmp_path
):
    """Failed lines are sent again; superseded failure lines are dropped at the end."""
    target = tmp_path / "out.jsonl"
    mock.reply_error(500, "boom", times=3)
    first = await run_batch_file(client, source, target, concurrency=1)
    assert first.failed == 3 and first.ok == 17
    sent = len(mock.requests)
    second = await run_batch_file(client, source, target, concurrency=4)
    assert len(mock.requests) - sent == 3
    assert second.skipped == 17 and second.ok == 3 and second.compacted == 3
    results = read_results(target)
    assert sorted(ok_ids(results)) == sorted(f"q{i}" for i in range(20))
    assert len(results) == 20
    third = await run_batch_file(client, source, target)
    assert third.skipped == 20 and third.started == 0 and len(mock.requests) - sent == 3


async def test_no_retry_failed_keeps_the_failures(client, mock, source, tmp_path):
    """retry_failed=False leaves failed lines alone and counts them."""
    target = tmp_path / "out.jsonl"
    mock.reply_error(500, "boom", times=2)
    await run_batch_file(client, source, target, concurrency=1)
    sent = len(mock.requests)
    again = await run_batch_file(client, source, target, retry_failed=False)
    assert again.skipped_failed == 2 and again.started == 0 and len(mock.requests) == sent
    assert "kept failed" in again.format()
    check = await check_batch_file(source, output_file=target, retry_failed=False)
    assert (check.done, check.failed_before, check.to_run) == (18, 2, 0)


BAD_FILE = [
    chat_line("a"),
    '{"custom_id": "b", "body": ',
    {"custom_id": "c", "url": "/v1/unknown", "body": {}},
    chat_line("a"),
    "",
    {"url": CHAT, "body": {}},
    chat_line("d", temperature="hot"),
    chat_line("e"),
    chat_line("e"),
]


async def test_validation_reports_every_problem_by_line_and_sends_nothing(client, mock, tmp_path):
    """Invalid JSON, an unknown url, duplicates, a missing custom_id, a bad body: each with
    its line number, before the first request; no output is created."""
    source = write_lines(tmp_path / "in.jsonl", BAD_FILE)
    with pytest.raises(BatchFileError) as caught:
        await run_batch_file(client, source, tmp_path / "out.jsonl")
    problems = caught.value.problems
    assert [number for number, _ in problems] == [2, 3, 4, 6, 7, 9]
    text = dict(problems)
    assert text[2].startswith("invalid JSON")
    assert text[3].startswith("unknown url '/v1/unknown'")
    assert text[4] == "duplicate custom_id 'a' (first on line 1)"
    assert text[6] == "missing custom_id"
    assert text[7].startswith("body: temperature must be a number")
    assert text[9] == "duplicate custom_id 'e' (first on line 8)"
    assert "6 invalid line(s); nothing was sent" in str(caught.value)
    assert mock.requests == [] and not (tmp_path / "out.jsonl").exists()
    assert not (tmp_path / "out.jsonl.lock").exists()
    check = await check_batch_file(source)
    assert (check.lines, check.valid, check.invalid, check.to_run) == (8, 2, 6, 2)
    assert check.problems == problems and check.endpoints == {CHAT: 2}


async def test_skip_invalid_runs_the_valid_lines_once(client, mock, tmp_path):
    """With skip_invalid the valid lines run; a later duplicate is skipped, not sent."""
    source = write_lines(tmp_path / "in.jsonl", BAD_FILE)
    summary = await run_batch_file(client, source, tmp_path / "out.jsonl", skip_invalid=True)
    assert sorted(ok_ids(read_results(tmp_path / "out.jsonl"))) == ["a", "e"]
    assert re.search(r"invalid +6 +skipped, not sent", summary.format())
    assert summary.invalid == 6 and summary.ok == 2 and len(mock.requests) == 2


async def test_a_check_counts_what_a_run_would_send_and_estimates_tokens(client, tmp_path):
    """check_batch_file: counts per endpoint, done and to-run, the token estimate; it never
    repairs or locks the output."""
    items = [chat_line(f"q{i}", max_tokens=10 + i) for i in range(5)]
    items.append(
        {"custom_id": "v", "url": "/v1/embeddings", "body": {"model": "m", "input": ["ab", "c"]}}
    )
    source = write_lines(tmp_path / "in.jsonl", items)
    check = await check_batch_file(source)
    assert check.endpoints == {CHAT: 5, "/v1/embeddings": 1}
    assert check.estimated_tokens == sum(estimate_tokens(i["body"]) for i in items)
    assert "estimated tokens: ~" in check.format() and check.to_dict()["to_run"] == 6
    target = tmp_path / "out.jsonl"
    await run_batch_file(client, write_lines(tmp_path / "two.jsonl", items[:2]), target)
    with target.open("ab") as out:
        out.write(b'{"custom_id": "q4", "resp')
    size = target.stat().st_size
    check = await check_batch_file(source, output_file=target)
    assert (check.done, check.to_run) == (2, 4)
    assert check.estimated_tokens == sum(estimate_tokens(i["body"]) for i in items[2:])
    assert target.stat().st_size == size


async def test_the_budget_stops_new_starts_and_says_so(priced_client, tmp_path):
    """max_cost, against a server that lists prices and reports usage.cost: each line
    reserves its worst case (its prompt, bounded, and its max_tokens) before it is sent; the
    run stops when the next one does not fit what is left, having spent no more than the
    budget; the lines refused are not started (no line written), and a run with a bigger
    budget does the rest."""
    client = priced_client
    lines = [chat_line(f"{i:02d}", max_tokens=2) for i in range(40)]
    source = write_lines(tmp_path / "in.jsonl", lines)
    budget = 10 * COST_PER_LINE
    summary = await run_batch_file(
        client, source, tmp_path / "out.jsonl", concurrency=4, max_cost=budget
    )
    assert summary.stop_reason == "budget" and not summary.complete
    assert summary.spend is not None and summary.spend.dollars is not None
    dollars = summary.spend.dollars
    assert dollars.spent <= budget and dollars.reserved == 0
    assert summary.cost == pytest.approx(float(dollars.spent))  # the costs reported
    assert summary.ok >= 1 and summary.failed == 0
    assert summary.not_started == 40 - summary.ok
    assert len(read_results(tmp_path / "out.jsonl")) == summary.ok
    assert "budget is reached" in summary.format()
    rest = await run_batch_file(client, source, tmp_path / "out.jsonl", max_cost=1.0)
    assert rest.stop_reason is None and rest.ok == 40 - summary.ok
    assert len(set(ok_ids(read_results(tmp_path / "out.jsonl")))) == 40


async def test_a_stop_lets_the_requests_in_flight_finish(mock, client, source, tmp_path):
    """The first stop request starts nothing new; what was in flight finishes and is
    written; the next run does the rest."""
    mock.latency = 0.1
    stop = BatchStop()

    def on_result(summary: BatchSummary) -> None:
        if summary.done == 1:
            stop.request()

    summary = await run_batch_file(
        client, source, tmp_path / "out.jsonl", concurrency=4, stop=stop, progress=on_result
    )
    assert summary.stop_reason == "interrupted" and summary.started == 4
    assert summary.ok == 4 and summary.cancelled == 0 and summary.not_started == 16
    assert len(read_results(tmp_path / "out.jsonl")) == 4
    mock.latency = 0.0
    rest = await run_batch_file(client, source, tmp_path / "out.jsonl", concurrency=4)
    assert rest.ok == 16 and rest.skipped == 4


async def test_a_second_stop_cancels_at_once_without_a_torn_line(mock, client, source, tmp_path):
    """Stop twice: the requests in flight are cancelled, every written line is whole."""
    mock.latency = 30.0
    stop = BatchStop()

    async def stop_twice() -> None:
        await until(lambda: mock.in_flight == 4)
        stop.request()
        stop.request()

    task = asyncio.ensure_future(stop_twice())
    began = time.monotonic()
    summary = await run_batch_file(
        client, source, tmp_path / "out.jsonl", concurrency=4, stop=stop, grace_period=30
    )
    await task
    assert time.monotonic() - began < 10
    assert summary.stop_reason == "interrupted" and summary.cancelled == 4 and summary.ok == 0
    assert read_results(tmp_path / "out.jsonl") == []
    assert_no_open_connections(client)
    assert not (tmp_path / "out.jsonl.lock").exists()


async def test_the_grace_period_ends_in_a_cancel(mock, client, source, tmp_path):
    """A request still in flight when the grace period ends is cut off and counted."""
    mock.latency = 30.0
    stop = BatchStop()

    async def stop_once() -> None:
        await until(lambda: mock.in_flight == 2)
        stop.request()

    task = asyncio.ensure_future(stop_once())
    summary = await run_batch_file(
        client, source, tmp_path / "out.jsonl", concurrency=2, stop=stop, grace_period=0.2
    )
    await task
    assert summary.cancelled == 2 and summary.stop_reason == "interrupted"
    assert "cut off" in summary.format()


async def test_a_stop_before_the_requests_sends_nothing(client, mock, tmp_path):
    """A stop requested during validation ends the run before any request."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line(f"q{i}") for i in range(5000)])
    stop = BatchStop()
    stop.request()
    summary = await run_batch_file(client, source, tmp_path / "out.jsonl", stop=stop)
    assert summary.stop_reason == "interrupted" and summary.started == 0
    small = write_lines(tmp_path / "small.jsonl", [chat_line("x")])
    summary = await run_batch_file(client, small, tmp_path / "out.jsonl", stop=stop)
    assert summary.stop_reason == "interrupted" and summary.to_run == 1 and mock.requests == []


async def test_cancelling_the_caller_leaves_whole_lines_and_no_lock(mock, client, source, tmp_path):
    """Cancelling the task of a run cancels its requests; the lock goes, lines stay whole."""
    mock.latency = 0.05
    target = tmp_path / "out.jsonl"
    task = asyncio.ensure_future(run_batch_file(client, source, target, concurrency=2))
    await until(lambda: os.path.exists(target) and read_results(target))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not (tmp_path / "out.jsonl.lock").exists()
    done = ok_ids(read_results(tmp_path / "out.jsonl"))
    mock.latency = 0.0
    rest = await run_batch_file(client, source, tmp_path / "out.jsonl")
    assert rest.skipped == len(done) and rest.ok == 20 - len(done)


async def test_a_second_run_on_the_same_output_is_refused(client, source, tmp_path):
    """While a lock is held the run is refused with the holder's pid; a lock file (or a
    half-written compaction) left by a dead run does not block."""
    target = tmp_path / "out.jsonl"
    lock = FileLock(target)
    lock.acquire()
    try:
        with pytest.raises(
            BatchFileError, match=rf"being written by another batch run \(pid {os.getpid()}"
        ):
            await run_batch_file(client, source, target)
    finally:
        lock.release()
    assert not (tmp_path / "out.jsonl.lock").exists()
    (tmp_path / "out.jsonl.lock").write_text("999999\n")  # left behind by a kill -9
    (tmp_path / "out.jsonl.compacting").write_text("half a copy")  # so is this
    summary = await run_batch_file(client, source, target)
    assert summary.ok == 20 and not (tmp_path / "out.jsonl.lock").exists()
    assert not (tmp_path / "out.jsonl.compacting").exists()


async def test_a_torn_last_line_is_cut_and_its_request_sent_again(client, mock, source, tmp_path):
    """A line without its newline (a crash mid-write) is never a result: a run cuts it off
    and sends that request again; every id ends with one line."""
    target = tmp_path / "out.jsonl"
    await run_batch_file(client, write_lines(tmp_path / "part.jsonl", [chat_line("q0")]), target)
    whole = target.read_bytes()
    torn = whole.replace(b'"q0"', b'"q1"')[: len(whole) // 2]
    target.write_bytes(whole + torn)
    summary = await run_batch_file(client, source, target)
    assert summary.skipped == 1 and summary.ok == 19
    results = read_results(target)
    assert sorted(ok_ids(results)) == sorted(f"q{i}" for i in range(20)) and len(results) == 20


async def test_unreadable_lines_are_ignored_then_dropped(client, source, tmp_path):
    """Garbage glued into the middle of an output is skipped on resume and compacted out."""
    target = tmp_path / "out.jsonl"
    await run_batch_file(client, write_lines(tmp_path / "part.jsonl", [chat_line("q0")]), target)
    with target.open("ab") as out:
        out.write(b"\x00\x00garbage\n")
    summary = await run_batch_file(client, source, target)
    assert summary.ok == 19 and summary.compacted == 1
    assert len(read_results(target)) == 20


async def test_a_full_disk_stops_the_run_at_a_whole_line(client, source, tmp_path, monkeypatch):
    """A write that fails halfway is cut back to the last whole line and reported; the
    next run resumes from there."""
    target = tmp_path / "out.jsonl"
    real_write = _files._write
    calls = {"lines": 0, "full": False}

    def flaky_write(fd: int, data: Any) -> int:
        if calls["full"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        if bytes(data).startswith(b'{"id":'):  # a result line (not the lock's pid)
            calls["lines"] += 1
            if calls["lines"] == 5:  # the fifth result: a part of it, then the disk is full
                calls["full"] = True
                return real_write(fd, bytes(data)[:10])
        return real_write(fd, data)

    monkeypatch.setattr(_files, "_write", flaky_write)
    with pytest.raises(BatchFileError, match="No space left on device") as caught:
        await run_batch_file(client, source, target, concurrency=2)
    monkeypatch.undo()
    assert caught.value.summary is not None and caught.value.summary.ok == 4
    assert len(read_results(target)) == 4
    assert not (tmp_path / "out.jsonl.lock").exists()
    rest = await run_batch_file(client, source, target)
    assert rest.ok == 16 and len(read_results(target)) == 20


async def test_a_thousand_lines_with_429s_5xx_and_resets_are_all_accounted_for(mock, tmp_path):
    """Faults injected all through a 1,000-line run: every line ends with exactly one
    result; a second run retries the failures; then every id is done exactly once."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line(f"q{i:04d}") for i in range(1000)])
    target = tmp_path / "out.jsonl"
    faults = 0

    def inject(summary: BatchSummary) -> None:
        nonlocal faults
        if summary.done % 6 == 0 and summary.done < 960:
            kind = (summary.done // 6) % 4
            faults += 1
            if kind == 0:
                mock.reply_error(429, "slow down", headers={"retry-after-ms": "5"})
            elif kind == 1:
                mock.reply_error(503, "upstream busy", headers={"retry-after-ms": "5"})
            elif kind == 2:
                mock.reply_error(500, "upstream failed", code=500, headers={"retry-after-ms": "5"})
            else:
                mock.reply_default(reset_after=30)

    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=1) as client:
        first = await run_batch_file(client, source, target, concurrency=16, progress=inject)
        results = read_results(target)
        assert faults > 100 and first.complete
        assert sorted(r["custom_id"] for r in results) == [f"q{i:04d}" for i in range(1000)]
        assert first.ok + first.failed == 1000 == len(results)
        assert first.ok == len(ok_ids(results)) and first.ok > 900
        second = await run_batch_file(client, source, target, concurrency=16)
        assert second.skipped == first.ok and second.ok + second.failed == first.failed
    results = read_results(target)
    assert sorted(r["custom_id"] for r in results) == [f"q{i:04d}" for i in range(1000)]
    assert len(ok_ids(results)) == 1000 - second.failed


async def test_an_endpoint_for_the_whole_file_and_fields_named_like_options(client, mock, tmp_path):
    """Lines without method/url use the file's endpoint; body fields called 'timeout' or
    'max_retries' are sent as fields."""
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            {"custom_id": "v", "body": {"model": "mock/embed", "input": ["a", "b"]}},
            {"custom_id": "w", "body": {"model": "mock/embed", "input": "c", "timeout": 7}},
        ],
    )
    summary = await run_batch_file(
        client, source, tmp_path / "out.jsonl", endpoint="/v1/embeddings", concurrency=1
    )
    assert summary.ok == 2
    assert mock.requests[1].path == "/v1/embeddings" and mock.requests[1].json["timeout"] == 7


async def test_images_run_too(client, tmp_path):
    """An images line is sent with images.generate; its answer body is written whole; an
    answer without a cost is counted apart."""
    source = write_lines(
        tmp_path / "in.jsonl",
        [
            {
                "custom_id": "i",
                "url": "/v1/images/generations",
                "body": {"model": "mock/image", "prompt": "a cube"},
            }
        ],
    )
    summary = await run_batch_file(client, source, tmp_path / "out.jsonl")
    (result,) = read_results(tmp_path / "out.jsonl")
    assert summary.ok == 1 and result["response"]["body"]["data"][0]["b64_json"]
    assert summary.costed == 0 and "cost: unknown (no answer reported" in summary.format()


async def test_a_refused_key_stops_new_starts(mock, source, tmp_path):
    """A 401 means every request would fail: new starts stop and the summary says why."""
    async with AsyncRoutmy(api_key="sk-wrong", base_url=mock.base_url, max_retries=0) as client:
        summary = await run_batch_file(client, source, tmp_path / "out.jsonl", concurrency=2)
    assert summary.stop_reason == "fatal_error" and "401" in (summary.stop_detail or "")
    assert summary.started <= 3 and summary.failures.get("401 Unauthorized", 0) >= 1


async def test_progress_shows_a_bar_or_log_lines(
    client, source, tmp_path, capsys, caplog, monkeypatch
):
    """progress=True: a tqdm bar with failures, tokens and cost (unknown, against a
    rout.my-like server: not $0); without tqdm, log lines."""
    await run_batch_file(client, source, tmp_path / "a.jsonl", progress=True)
    err = capsys.readouterr().err
    assert "20/20" in err and "cost=unknown" in err and "cost=$" not in err
    monkeypatch.setitem(sys.modules, "tqdm", None)
    with caplog.at_level(logging.INFO, logger="routmy_async"):
        await run_batch_file(client, source, tmp_path / "b.jsonl", progress=True)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("batch: ")]
    assert "1/20 done" in lines[0] and "20/20 done" in lines[-1] and len(lines) < 20


async def test_bad_options_fail_before_anything_is_read(client, source, tmp_path, monkeypatch):
    """Each bad argument raises naming itself; nothing is locked or created."""
    target = tmp_path / "out.jsonl"
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"concurrency": 0}, ValueError, "concurrency"),
        ({"requests_per_minute": -1}, ValueError, "requests_per_minute"),
        ({"max_cost": -1}, ValueError, "max_cost"),
        ({"grace_period": float("nan")}, ValueError, "grace_period"),
        ({"stop": object()}, TypeError, "BatchStop"),
        ({"endpoint": "/v1/nope"}, ValueError, "unknown endpoint"),
        ({"errors_file": target}, BatchFileError, "must not be the output"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            await run_batch_file(client, source, target, **kwargs)
    with pytest.raises(BatchFileError, match="no such input file"):
        await run_batch_file(client, tmp_path / "missing.jsonl", target)
    with pytest.raises(BatchFileError, match="cannot also be an output"):
        await run_batch_file(client, source, source)
    monkeypatch.delenv("ROUTMY_API_KEY", raising=False)
    async with AsyncRoutmy(base_url="http://127.0.0.1:9/v1") as keyless:
        assert not keyless.api_key_set
        with pytest.raises(RoutmyError, match="no API key"):
            await run_batch_file(keyless, source, target)
    assert list(tmp_path.iterdir()) == [source]


async def test_a_bom_blank_lines_and_a_file_changed_under_the_run(
    client, mock, tmp_path, monkeypatch
):
    """A UTF-8 BOM and blank lines are fine; a line appended after the check is not sent
    (it was not validated): the summary says the input grew, and the run is not complete."""
    source = tmp_path / "in.jsonl"
    body = "\n".join(json.dumps(chat_line(f"q{i}")) for i in range(3))
    source.write_bytes(b"\xef\xbb\xbf" + body.encode() + b"\n\n  \n")
    from routmy_async._batchfile._validate import check_input as real_check

    def check_then_change(*args: Any, **kwargs: Any) -> Any:
        check = real_check(*args, **kwargs)
        with source.open("a") as more:
            more.write("{broken\n")
        return check

    monkeypatch.setattr(_run, "check_input", check_then_change)
    summary = await run_batch_file(client, source, tmp_path / "out.jsonl")
    assert summary.ok == 3 and summary.invalid == 0 and len(mock.requests) == 3
    assert summary.input_grown == len("{broken\n") and not summary.complete
    assert "the input grew by 8 bytes during the run" in summary.format()


async def test_duplicates_of_done_and_of_invalid_lines(client, tmp_path):
    """A later duplicate of a done line is reported; a copy that is invalid anyway is
    reported once, for what is wrong with it; the counts leave both out."""
    target = tmp_path / "out.jsonl"
    await run_batch_file(client, write_lines(tmp_path / "one.jsonl", [chat_line("a")]), target)
    source = write_lines(
        tmp_path / "in.jsonl",
        [chat_line("a"), chat_line("b"), chat_line("a"), chat_line("b", temperature="x")],
    )
    check = await check_batch_file(source, output_file=target)
    assert check.problems[0] == (3, "duplicate custom_id 'a' (first on line 1)")
    assert check.problems[1][0] == 4 and "temperature" in check.problems[1][1]
    assert (check.valid, check.done, check.to_run, check.invalid) == (2, 1, 1, 2)


async def test_a_stop_while_the_files_are_read_ends_before_any_request(client, mock, tmp_path):
    """A stop requested while a large output is read back ends the run there; one requested
    while the run starts ends it before any request."""
    target = tmp_path / "out.jsonl"
    with target.open("w") as out:
        for i in range(5000):
            out.write(json.dumps({"custom_id": f"q{i}", "response": None, "error": {}}) + "\n")
    source = write_lines(tmp_path / "in.jsonl", [chat_line("x")])
    early = BatchStop()
    early.request()
    summary = await run_batch_file(client, source, target, stop=early)
    assert summary.stop_reason == "interrupted" and summary.to_run == 0
    stop = BatchStop()
    run = asyncio.ensure_future(run_batch_file(client, source, target, stop=stop))
    await until(lambda: bool(stop._listeners))
    stop.request()
    summary = await run
    assert summary.stop_reason == "interrupted" and summary.started == 0
    assert summary.throughput == 0.0 and mock.requests == []


async def test_a_stop_during_compaction_leaves_the_file_as_it_was(
    client, mock, source, tmp_path, monkeypatch
):
    """Compaction that is stopped keeps the file unchanged (still correct, not compact)."""
    target = tmp_path / "out.jsonl"
    mock.reply_error(500, "boom")
    await run_batch_file(client, source, target, concurrency=1)

    def stopped(*args: Any, **kwargs: Any) -> int:
        raise _files.Stopped

    monkeypatch.setattr(_run, "compact_file", stopped)
    summary = await run_batch_file(client, source, target)
    assert summary.ok == 1 and summary.compacted == 0
    assert len(read_results(target)) == 21


def test_compaction_keeps_the_file_when_nothing_goes_or_when_stopped(tmp_path):
    """compact_file rewrites only when a line is dropped, and not at all once stopped."""
    target = tmp_path / "out.jsonl"
    data = b"".join(
        json.dumps({"custom_id": f"q{i}", "response": None, "error": {"code": "x"}}).encode()
        + b"\n"
        for i in range(3)
    )
    target.write_bytes(data)
    kept = _files.compact_file(
        target, keep_from=len(data), drop=lambda value: False, should_stop=lambda: False
    )
    assert kept == 0 and target.read_bytes() == data
    with pytest.raises(_files.Stopped):
        _files.compact_file(target, keep_from=len(data), drop=bool, should_stop=lambda: True)
    assert target.read_bytes() == data and list(tmp_path.iterdir()) == [target]


def test_the_lock_is_taken_again_when_its_file_is_swapped_under_it(tmp_path, monkeypatch):
    """Taking a lock whose file the last holder just removed (or replaced) retries on the
    file the path names now; releasing twice is harmless."""
    target = tmp_path / "out.jsonl"
    real_try = _files._try_lock
    moves = iter(["unlink", "replace"])

    def racing(fd: int) -> bool:
        move = next(moves, None)
        lock_file = tmp_path / "out.jsonl.lock"
        if move is not None:
            lock_file.unlink()
        if move == "replace":
            lock_file.write_text("")
        return real_try(fd)

    monkeypatch.setattr(_files, "_try_lock", racing)
    lock = FileLock(target)
    lock.acquire()
    assert (tmp_path / "out.jsonl.lock").read_text() == f"{os.getpid()}\n"
    lock.release()
    lock.release()
    assert not (tmp_path / "out.jsonl.lock").exists()
    appender = _files.Appender(target)
    appender.close()
    appender.close()


def test_a_short_write_is_completed():
    """A write() that takes only part of a line is followed by the rest."""
    import tempfile

    with tempfile.TemporaryDirectory() as directory:
        target = Path(directory) / "out.jsonl"
        appender = _files.Appender(target)
        real_write = _files._write
        try:
            _files._write = lambda fd, data: real_write(fd, bytes(data)[:7])
            appender.write(b'{"custom_id": "a", "error": null}\n')
        finally:
            _files._write = real_write
            appender.close()
        assert target.read_bytes() == b'{"custom_id": "a", "error": null}\n'


def test_a_stop_between_the_two_validation_passes(tmp_path):
    """The duplicate pass also stops on request; a BOM does not hide the first line's id."""
    from routmy_async._batchfile._validate import check_input

    path = tmp_path / "in.jsonl"
    lines = [json.dumps(chat_line(f"q{i}")) for i in range(4100)]
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join([*lines, lines[0]]).encode() + b"\n")
    source = _files.InputFile(path)
    options: dict[str, Any] = {"endpoint": None, "resume": None, "retry_failed": True}
    check = check_input(source, should_stop=lambda: False, **options)
    assert check.problems == [(4101, "duplicate custom_id 'q0' (first on line 1)")]
    calls = iter([False])  # the first pass asks once (at line 4096), the second pass stops
    try:
        with pytest.raises(_files.Stopped):
            check_input(source, should_stop=lambda: next(calls, True), **options)
    finally:
        source.close()


async def test_responses_lines_count_input_and_output_tokens(client, tmp_path):
    """A /v1/responses line is sent with responses.create; its input and output tokens are
    the prompt and completion of the summary."""
    source = write_lines(
        tmp_path / "in.jsonl",
        [{"custom_id": "r", "url": "/v1/responses", "body": {"model": "mock/echo", "input": "hi"}}],
    )
    summary = await run_batch_file(client, source, tmp_path / "out.jsonl")
    (result,) = read_results(tmp_path / "out.jsonl")
    usage = result["response"]["body"]["usage"]
    assert summary.ok == 1 and result["response"]["body"]["object"] == "response"
    assert (summary.prompt_tokens, summary.completion_tokens) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )


async def test_a_stop_from_a_signal_handler_keeps_its_grace_period(tmp_path):
    """The stop is requested outside any task (a signal handler): the grace still applies."""
    import json as _json
    import os as _os
    import signal as _signal
    import time as _time

    from routmy_async import AsyncRoutmy, BatchStop, run_batch_file
    from routmy_async.testing import MockRoutmy

    source = tmp_path / "in.jsonl"
    source.write_text(
        "".join(
            _json.dumps(
                {
                    "custom_id": f"r{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": "mock/echo", "messages": [{"role": "user", "content": "x"}]},
                }
            )
            + "\n"
            for i in range(8)
        )
    )
    stop = BatchStop()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(_signal.SIGUSR1, stop.request)
    try:
        async with MockRoutmy(latency=30) as mock:
            async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
                loop.call_later(0.3, _os.kill, _os.getpid(), _signal.SIGUSR1)
                started = _time.monotonic()
                summary = await run_batch_file(
                    client, source, tmp_path / "out.jsonl", stop=stop, grace_period=0.5
                )
        assert _time.monotonic() - started < 10  # not the 30 s the requests would take
        assert summary.stop_reason == "interrupted"
    finally:
        loop.remove_signal_handler(_signal.SIGUSR1)


@pytest.mark.filterwarnings("ignore:a request to .* sets no max_tokens:UserWarning")
async def test_the_budget_holds_when_large_lines_follow_small_ones(priced_client, tmp_path):
    """max_cost reserves for each request in flight by its own size: small answers first
    do not let a crowd of large requests start at once (the mean of the small ones would;
    the output cost 6.8 times the limit)."""
    words = " ".join(f"word{i % 10}" for i in range(400))
    lines = [chat_line(f"s{i}", "hi") for i in range(20)]
    lines += [chat_line(f"L{i}", words) for i in range(30)]
    source = write_lines(tmp_path / "in.jsonl", lines)
    budget = 0.003  # the mock: 1e-6 a token; a large line costs 800 tokens (echoed)
    summary = await run_batch_file(
        priced_client,
        source,
        tmp_path / "out.jsonl",
        concurrency=16,
        max_cost=budget,
        default_output_tokens=256,  # the lines set no max_tokens
    )
    assert summary.stop_reason == "budget"
    assert summary.cost_total <= budget
    assert summary.ok >= 21  # the small lines, and large ones while the budget allowed
