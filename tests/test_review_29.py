"""What a cold review of issue 29 (a spend limit; concurrency="auto") found, each as a user
meets it: a worker pool against MockRoutmy answering as rout.my does, with the server's own
count of what it answered as the truth; a request carrying two output caps; a batch file
killed (``kill -9``) in the middle of a budgeted run and run again."""

from __future__ import annotations

import asyncio
import json
import random
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from routmy_async import (
    AsyncRoutmy,
    AutoConcurrency,
    Call,
    Hooks,
    RateLimitError,
    SpendLimit,
    SpendLimitError,
    run_batch_file,
)
from routmy_async.testing import MockRoutmy, Reply

MULTIPLIERS: dict[str, Decimal] = {
    "mock/echo": Decimal(1),
    "mock/reasoner": Decimal(2),
    "mock/embed": Decimal("0.1"),
}
FAILED = {"Content-Type": "application/json"}


def client_for(mock: MockRoutmy, limit: SpendLimit, **options: Any) -> AsyncRoutmy:
    return AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, spend_limit=limit, **options)


async def test_a_request_with_two_output_caps_reserves_the_larger():
    """``max_tokens=50_000`` beside ``max_completion_tokens=5``: which one the provider
    behind the router obeys is not the client's to know, so the reservation covers the
    larger and a limit of 10,000 refuses it before it is sent (it reserved 5 and sent it)."""
    async with MockRoutmy() as mock, client_for(mock, SpendLimit(max_units=10_000)) as client:
        messages = [{"role": "user", "content": "hi"}]
        for caps in (
            {"max_tokens": 50_000, "max_completion_tokens": 5},
            {"max_completion_tokens": 5, "extra_body": {"max_tokens": 50_000}},
        ):
            with pytest.raises(SpendLimitError) as refused:
                await client.chat.completions.create(model="mock/echo", messages=messages, **caps)
            assert refused.value.estimate is not None and refused.value.estimate > 50_000
        assert not [r for r in mock.requests if r.path.endswith("/chat/completions")]
        answer = await client.chat.completions.create(
            model="mock/echo", messages=messages, max_tokens=5, max_completion_tokens=7
        )
        assert answer.usage is not None


async def _job(client: AsyncRoutmy, kind: int, words: str, model: str) -> None:
    """One job of the pool: a chat answer (one or two choices), a stream with and without
    its usage chunk, or embeddings."""
    if kind == 4:
        await client.embeddings.create(model="mock/embed", input=[words, words])
        return
    options: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": words}],
        "max_tokens": 100,
    }
    if kind in (2, 3):
        if kind == 2:
            options["stream_options"] = {"include_usage": True}
        async with await client.chat.completions.create(stream=True, **options) as stream:
            async for _ in stream:
                pass
        return
    if kind == 1:
        options["n"] = 2
    await client.chat.completions.create(**options)


async def test_a_pool_of_256_workers_never_makes_the_server_answer_past_the_limit():
    """256 workers, 1,200 jobs (chat, n=2, streams with and without usage, embeddings), the
    server failing one attempt in ten with a 500 and one in ten with a 429, and a worker in
    five giving up on its job after 10-30 ms (``asyncio.wait_for``): what the server
    answered, priced by the server's own usage and multipliers, stays within the limit, and
    the client's ``spent`` is never below it."""
    rng = random.Random(29)
    answered: list[Decimal] = []

    def responder(request: Any) -> Reply | None:
        if request.path.endswith("/models"):
            return None
        draw = rng.random()
        if draw < 0.1:
            return Reply(status=500, headers=FAILED, body=b'{"error": {"message": "boom"}}')
        if draw < 0.2:
            headers = {**FAILED, "retry-after-ms": "5"}
            return Reply(status=429, headers=headers, body=b'{"error": {"message": "slow"}}')
        body = request.json
        answered.append(MULTIPLIERS[body["model"]] * _tokens_answered(body))
        return None

    limit = SpendLimit(max_units=20_000)
    seen = SeenUnits()
    async with (
        MockRoutmy(latency=0.02) as mock,
        client_for(mock, limit, max_retries=2, hooks=[seen]) as client,
    ):
        mock.reply_with(responder)
        jobs: asyncio.Queue[int] = asyncio.Queue()
        for index in range(1_200):
            jobs.put_nowait(index)
        outcomes: dict[str, int] = {}

        async def worker() -> None:
            while not jobs.empty():
                index = jobs.get_nowait()
                words = " ".join(["word"] * rng.randint(1, 30))
                model = rng.choice(["mock/echo", "mock/reasoner"])
                patience = rng.choice([0.01, 0.03, 30, 30, 30])
                try:
                    await asyncio.wait_for(_job(client, index % 5, words, model), patience)
                    outcome = "answered"
                except SpendLimitError:
                    outcome = "refused"
                except asyncio.TimeoutError:  # not the builtin on Python 3.10
                    outcome = "gave up"
                except Exception as error:  # a 500 or 429 past the retries
                    outcome = type(error).__name__
                outcomes[outcome] = outcomes.get(outcome, 0) + 1

        await asyncio.gather(*(worker() for _ in range(256)))
        await asyncio.sleep(0.1)  # the answers of the jobs given up reach the responder
        spend = client.spend
    assert spend is not None and spend.units is not None
    assert outcomes["answered"] > 50 and outcomes["refused"] > 50 and outcomes["gave up"] > 50
    assert sum(answered) <= spend.units.limit
    assert sum(answered) <= spend.units.spent <= spend.units.limit
    assert spend.units.reserved == 0
    # Hooks see each call's units, attempts summed: together, what the limit counted.
    assert sum(seen.units) == spend.units.spent


class SeenUnits(Hooks):
    """The units of every call as its hooks see them at its end."""

    def __init__(self) -> None:
        self.units: list[Decimal] = []

    def _seen(self, call: Call) -> None:
        if call.units is not None:
            self.units.append(call.units)

    def on_success(self, call: Call, **_: Any) -> None:
        self._seen(call)

    def on_error(self, call: Call, **_: Any) -> None:
        self._seen(call)

    def on_stream_end(self, call: Call, summary: Any) -> None:
        self._seen(call)


def _tokens_answered(body: dict[str, Any]) -> int:
    """What the mock's usage counts for a body it answers with its default answer (an echo
    of the last user message: its words; the prompt: each message's words plus one)."""
    if "input" in body:
        return sum(len(text.split()) or 1 for text in body["input"])
    words = len(body["messages"][-1]["content"].split())
    reasoning = 0
    if body["model"].endswith("reasoner"):
        reasoning = len(f"The user said {words} words; answering plainly.".split())
    return (words + 1) + (words + reasoning) * (body.get("n") or 1)


def _write_lines(path: Path, count: int) -> Path:
    with path.open("w") as lines:
        for index in range(count):
            body = {
                "model": "mock/echo",
                "messages": [{"role": "user", "content": f"q{index} a b c"}],
                "max_tokens": 8,
            }
            line = {"custom_id": f"q{index}", "url": "/v1/chat/completions", "body": body}
            lines.write(json.dumps(line) + "\n")
    return path


async def test_a_batch_run_again_counts_the_5xx_its_last_run_counted_in_full(tmp_path: Path):
    """A line the server failed with a 500 was counted in full by the run (the server may
    have done the work), but it left only a failure line, without usage: the next run over
    the same output starts from everything the last one counted (the run's journal beside
    the output), not from the answers alone; the answers' usage still counts."""
    source = _write_lines(tmp_path / "in.jsonl", 6)
    target = tmp_path / "out.jsonl"
    failing = Reply(status=500, headers=FAILED, body=b'{"error": {"message": "boom"}}')
    async with MockRoutmy() as mock:
        mock.reply_with(lambda request: failing if "q0 " in str(request.json) else None)
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as c:
            first = await run_batch_file(c, source, target, max_units=10_000)
            assert first.failed == 1 and first.ok == 5
            second = await run_batch_file(c, source, target, max_units=10_000)
    assert second.units_before == first.units_before + first.units
    written = [json.loads(line) for line in target.read_text().splitlines()]
    answers = sum(
        line["response"]["body"]["usage"]["total_tokens"]
        for line in written
        if line["response"]["status_code"] == 200
    )
    assert first.units > answers  # the 500 counted in full


async def test_a_journal_left_beside_a_deleted_output_is_ignored(tmp_path: Path):
    """Delete the output to start over: its ``.spend`` journal, left behind, does not eat
    the new output's budget."""
    source = _write_lines(tmp_path / "in.jsonl", 3)
    target = tmp_path / "out.jsonl"
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            first = await run_batch_file(client, source, target, max_units=1_000)
            assert (tmp_path / "out.jsonl.spend").exists()
            target.unlink()
            again = await run_batch_file(client, source, target, max_units=1_000)
    assert again.units_before == 0 and again.units == first.units and again.ok == 3


async def test_a_units_budget_on_routmy_stops_without_a_dollar_figure(tmp_path: Path):
    """rout.my reports no cost: the line saying why a --max-units run stopped names the
    units it counted, not a "$0.0000 reported" that reads as a price."""
    source = _write_lines(tmp_path / "in.jsonl", 30)
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            for _ in range(2):  # the second run sends nothing: the budget is already spent
                summary = await run_batch_file(
                    client, source, tmp_path / "out.jsonl", max_units=300
                )
                assert summary.stop_reason == "budget"
                ending = summary.format().splitlines()[-1]
                assert "quota units spent on this output" in ending
                assert "$" not in ending


async def test_auto_concurrency_answers_every_item_against_a_cap_of_eight():
    """create_many(concurrency="auto") against a server that answers 8 requests at once
    (a 429 with Retry-After beyond): every item is answered with the client's default
    retries, as a fixed concurrency of 8 answers them all, and the level stays within its
    ceiling."""
    async with MockRoutmy(max_in_flight=8, latency=0.05) as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            requests = [
                {
                    "model": "mock/echo",
                    "messages": [{"role": "user", "content": f"q {index}"}],
                    "max_tokens": 20,
                }
                for index in range(400)
            ]
            auto = AutoConcurrency(max_concurrency=32)
            results = await client.chat.completions.create_many(requests, concurrency=auto)
    assert auto.peak <= 32
    assert [r for r in results if isinstance(r, RateLimitError)] == []
    assert all(not isinstance(r, BaseException) for r in results)
    # It did probe above the cap (the 429s it met were retried, not lost), and found it.
    assert mock.quota_rejections > 0 and auto.losses > 0
    assert auto.level <= 9 and auto.parked == auto.in_flight == 0


async def test_routmy_batch_concurrency_auto_answers_every_line_against_a_cap_of_eight(
    tmp_path: Path,
):
    """``routmy batch --concurrency auto``, run as a user runs it (a process of its own)
    against a server that answers 8 requests at once: every line is answered with the
    default retries (exit 0, nothing in the errors file), as ``--concurrency 8`` does."""
    source = _write_lines(tmp_path / "in.jsonl", 400)
    target = tmp_path / "out.jsonl"
    async with MockRoutmy(max_in_flight=8, latency=0.05) as mock:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "routmy_async",
            "batch",
            str(source),
            "-o",
            str(target),
            "--base-url",
            mock.base_url,
            "--api-key",
            mock.api_key,
            "--concurrency",
            "auto",
            "--no-progress",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, (out + err).decode()
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(lines) == 400
    assert all(line["error"] is None for line in lines)
    assert mock.quota_rejections > 0  # it met the cap, and its 429s were retried, not lost
    assert "concurrency: auto, level" in out.decode()


async def test_a_budget_lowered_below_the_answers_stops_cleanly_and_forgets_nothing(
    tmp_path: Path,
):
    """Run again with a budget below what the output already used: the run stops at the
    budget (no SpendLimitError out of it), and a later run with room again still counts
    everything the first run counted, its 500 in full included."""
    source = _write_lines(tmp_path / "in.jsonl", 6)
    target = tmp_path / "out.jsonl"
    failing = Reply(status=500, headers=FAILED, body=b'{"error": {"message": "boom"}}')
    async with MockRoutmy() as mock:
        mock.reply_with(lambda request: failing if "q0 " in str(request.json) else None)
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, max_retries=0) as c:
            first = await run_batch_file(c, source, target, max_units=10_000)
            lowered = await run_batch_file(c, source, target, max_units=10)
            assert lowered.stop_reason == "budget" and lowered.units == 0
            again = await run_batch_file(c, source, target, max_units=10_000)
    assert again.units_before == first.units_before + first.units


async def test_the_mock_counts_every_choice_of_n_in_its_usage():
    """MockRoutmy answers ``n=2`` with two choices and a usage for both, streamed or not,
    and a spend limit settles to it: a budget tested against the mock sees what two
    answers use (it reported the tokens of one)."""
    limit = SpendLimit(max_units=10_000)
    async with MockRoutmy() as mock, client_for(mock, limit) as client:
        messages = [{"role": "user", "content": "one two three"}]
        one = await client.chat.completions.create(
            model="mock/echo", messages=messages, max_tokens=20
        )
        two = await client.chat.completions.create(
            model="mock/echo", messages=messages, max_tokens=20, n=2
        )
        assert one.usage is not None and two.usage is not None
        assert two.usage.completion_tokens == 2 * one.usage.completion_tokens
        assert two.usage.prompt_tokens == one.usage.prompt_tokens
        async with await client.chat.completions.create(
            model="mock/echo",
            messages=messages,
            max_tokens=20,
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        ) as stream:
            async for _ in stream:
                pass
        spend = client.spend
    assert spend is not None and spend.units is not None
    assert spend.units.spent == one.usage.total_tokens + 2 * two.usage.total_tokens


async def test_a_budgeted_run_resumes_when_the_server_answers_with_a_resolved_model(
    tmp_path: Path,
):
    """A request to ``mock/echo`` answered as ``mock/echo-2026-01-01`` (a dated snapshot, as
    OpenAI names its answers): the run counted it at ``mock/echo``'s multiplier; running
    again after a line was added must resume, not refuse the whole output."""
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "mock/echo-2026-01-01",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    resolved = Reply(headers=FAILED, body=json.dumps(answer).encode())
    source = _write_lines(tmp_path / "in.jsonl", 3)
    target = tmp_path / "out.jsonl"
    async with MockRoutmy() as mock:
        mock.reply_with(lambda request: None if request.path.endswith("/models") else resolved)
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            first = await run_batch_file(client, source, target, max_units=1_000)
            assert first.ok == 3
            _write_lines(tmp_path / "in.jsonl", 4)
            again = await run_batch_file(client, source, target, max_units=1_000)
    assert again.ok == 1 and again.units_before == first.units
