"""``concurrency="auto"`` from the user's side: create_many and a worker pool against
MockRoutmy's quota modes on 127.0.0.1, its ceiling, bad values, and the 429 pause."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from routmy_async import (
    APITimeoutError,
    AsyncRoutmy,
    AutoConcurrency,
    BadRequestError,
    BatchSummary,
    InternalServerError,
    RateLimitError,
    run_batch_file,
)
from routmy_async._cli import main
from routmy_async._concurrency import outcome_of
from routmy_async.testing import MockRoutmy
from routmy_async.types import ChatCompletion

K = 8


def requests(count: int) -> list[dict[str, Any]]:
    return [
        {"model": "mock/echo", "messages": [{"role": "user", "content": f"q {i}"}]}
        for i in range(count)
    ]


def answered(results: list[Any]) -> int:
    return sum(isinstance(result, ChatCompletion) for result in results)


async def run_against_cap(concurrency: Any, count: int = 300) -> tuple[list[Any], MockRoutmy]:
    """``count`` requests through create_many against a mock that answers at most K at once."""
    async with MockRoutmy(latency=0.04, max_in_flight=K) as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_retries=100
        ) as client:
            results = await client.chat.completions.create_many(
                requests(count), concurrency=concurrency
            )
    return results, mock


async def test_auto_finishes_with_far_fewer_429s_than_a_fixed_2k():
    """Against a cap of K=8 the client does not know, ``auto`` answers all 300 requests with
    far fewer 429s than a fixed concurrency of 2K, and holds at most 64 in flight."""
    auto = AutoConcurrency(max_concurrency=64)
    auto_results, auto_mock = await run_against_cap(auto)
    _, fixed_mock = await run_against_cap(2 * K)
    assert answered(auto_results) == 300
    # The fixed pool keeps hitting the cap (a request may lose the race for a slot many
    # times in a row, so its count of answers is not compared).
    assert fixed_mock.quota_rejections >= 100
    assert auto_mock.quota_rejections * 4 <= fixed_mock.quota_rejections, (
        auto_mock.quota_rejections,
        fixed_mock.quota_rejections,
    )
    assert auto.losses >= 1 and auto.cuts >= 1  # it found the cap, and backed off
    assert 1 <= auto.level <= 2 * K
    assert auto.in_flight == 0 and auto.peak_in_flight <= 64


async def test_auto_never_exceeds_its_ceiling():
    """With no quota at the server, ``auto`` grows to ``max_concurrency`` and never past it,
    counted at the server."""
    async with MockRoutmy(latency=0.02) as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            results = await client.chat.completions.create_many(
                requests(200), concurrency="auto", max_concurrency=6
            )
        assert answered(results) == 200
        assert mock.peak_in_flight == 6


async def test_a_held_auto_level_is_readable_after_the_run_and_after_leaving_early():
    """An AutoConcurrency passed in shows its level after the run; a loop left early hands
    every slot back, so the same object can run the next batch."""
    auto = AutoConcurrency(max_concurrency=16)
    async with MockRoutmy(latency=0.01) as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            await client.chat.completions.create_many(requests(60), concurrency=auto)
            assert auto.level == auto.peak == 16 and auto.losses == 0
            iterator = client.chat.completions.create_many_iter(requests(60), concurrency=auto)
            async for _index, _result in iterator:
                break
            await iterator.aclose()
            assert auto.in_flight == 0
            results = await client.chat.completions.create_many(requests(5), concurrency=auto)
            assert answered(results) == 5


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": "Auto"}, "concurrency must be a whole number >= 1 or 'auto', not 'Auto'"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": -3}, "concurrency"),
        ({"concurrency": "auto", "max_concurrency": 0}, "max_concurrency must be"),
        ({"concurrency": "auto", "max_concurrency": -1}, "max_concurrency must be"),
        ({"concurrency": "auto", "max_concurrency": 2.5}, "max_concurrency must be"),
        ({"concurrency": 8, "max_concurrency": 32}, "with a fixed concurrency=8"),
    ],
)
async def test_bad_values_are_refused_before_anything_is_sent(options, message):
    """A mistyped 'auto', a level below 1, a ceiling below 1 or a ceiling beside a fixed
    number: a ValueError naming it, and no request reaches the server."""
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            with pytest.raises(ValueError, match=message):
                await client.chat.completions.create_many(requests(3), **options)
        assert mock.requests == []


def test_a_ceiling_below_the_start_is_refused():
    """initial above max_concurrency is an error; left out, the start fits the ceiling."""
    with pytest.raises(ValueError, match=r"initial \(8\) is above max_concurrency \(4\)"):
        AutoConcurrency(max_concurrency=4, initial=8)
    assert AutoConcurrency(max_concurrency=2).level == 2
    with pytest.raises(ValueError, match="backoff"):
        AutoConcurrency(backoff=1.5)


async def test_a_retried_429_cuts_the_level_once_and_the_pause_holds_every_start():
    """A 429 with retry-after-ms is a loss signal even when its retry succeeds: the level is
    cut once, and no request of the batch starts during the client-wide pause it asks."""
    auto = AutoConcurrency(max_concurrency=8, initial=1)
    async with MockRoutmy() as mock:
        mock.reply_error(429, "slow down", headers={"retry-after-ms": "300"})
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_retries=2
        ) as client:
            results = await client.chat.completions.create_many(requests(6), concurrency=auto)
        assert answered(results) == 6
        assert auto.losses == 1 and auto.cuts == 1
        # Nothing started between the 429 and its retry, 300 ms later.
        assert mock.request_times[1] - mock.request_times[0] >= 0.29
        assert len(mock.requests) == 7


async def test_a_worker_pool_holds_slots_of_the_level():
    """``async with auto.slot()`` in a pool of 100 tasks keeps the server's count in flight
    within the level, and the level finds a cap of 4 the pool does not know."""
    auto = AutoConcurrency(max_concurrency=32)
    async with MockRoutmy(latency=0.03, max_in_flight=4) as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_retries=100
        ) as client:

            async def work(index: int) -> str | None:
                async with auto.slot():
                    answer = await client.chat.completions.create(
                        model="mock/echo", messages=[{"role": "user", "content": str(index)}]
                    )
                return answer.choices[0].message.content

            answers = await asyncio.gather(*(work(index) for index in range(100)))
        assert answers == [str(index) for index in range(100)]
        assert auto.in_flight == 0 and auto.losses >= 1
        assert auto.level <= 8


async def ask_in_slot(client: AsyncRoutmy, auto: AutoConcurrency, index: int) -> str | None:
    async with auto.slot():
        answer = await client.chat.completions.create(
            model="mock/echo", messages=[{"role": "user", "content": str(index)}]
        )
    return answer.choices[0].message.content


async def test_a_retry_waits_for_a_freed_slot_before_any_new_start():
    """Against a cap of 2 with the level at 3: the refused request's one retry goes when an
    answer frees a slot, before the next request of the pool, so the server never refuses
    it twice and every request is answered with ``max_retries=1``."""
    auto = AutoConcurrency(max_concurrency=3, initial=3)
    async with MockRoutmy(latency=0.2, max_in_flight=2, quota_retry_after=0.01) as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_retries=1
        ) as client:
            answers = await asyncio.gather(*(ask_in_slot(client, auto, i) for i in range(6)))
    assert answers == [str(index) for index in range(6)]
    assert mock.quota_rejections == 1 and auto.losses == 1
    assert auto.parked == auto.in_flight == 0


async def test_a_request_given_up_while_its_retry_waits_leaves_the_level_clean():
    """A caller who cancels requests while one of them waits for a slot to retry in: the
    level holds no slot for it afterwards, and the next request may start at once."""
    auto = AutoConcurrency(max_concurrency=3, initial=3)
    async with MockRoutmy(latency=0.3, max_in_flight=2, quota_retry_after=0.01) as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_retries=1
        ) as client:
            tasks = [asyncio.create_task(ask_in_slot(client, auto, i)) for i in range(3)]
            for _ in range(100):
                await asyncio.sleep(0.01)
                if auto.parked:
                    break
            assert auto.parked == 1  # one of the three refused, waiting for a slot
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert auto.in_flight == auto.parked == auto.credits == 0
            assert auto.try_start() is not None  # nothing held back for the cancelled ones


async def test_a_task_that_outlives_its_slot_still_gets_its_answer():
    """A task started inside a slot carries the slot's listener; when its 429 is retried
    after the slot was handed back, the request goes on and the level is left alone."""
    auto = AutoConcurrency(max_concurrency=4)
    async with MockRoutmy() as mock:
        mock.reply_error(429, "slow down", headers={"retry-after-ms": "50"})
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_retries=2
        ) as client:
            async with auto.slot():
                task = asyncio.create_task(
                    client.chat.completions.create(
                        model="mock/echo", messages=[{"role": "user", "content": "late"}]
                    )
                )
            answer = await task
        assert answer.choices[0].message.content == "late"
        assert len(mock.requests) == 2
        assert auto.losses == 0 and auto.in_flight == 0


async def test_the_progress_output_names_the_level(caplog):
    """With progress on, the last line says where the level ended and how many cuts."""
    caplog.set_level(logging.INFO, logger="routmy_async")
    async with MockRoutmy(latency=0.01) as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            await client.chat.completions.create_many(
                requests(20), concurrency="auto", max_concurrency=4, progress=True
            )
    assert "concurrency auto ended at level 4 (peak 4, max 4; 0 loss signal(s), 0 cut(s))" in (
        caplog.text
    )


async def test_embed_many_takes_auto_too():
    """``embeddings.embed_many(concurrency="auto")`` runs its requests under the level and
    its ceiling; a mistyped value is refused before sending."""
    async with MockRoutmy(latency=0.01) as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            vectors = await client.embeddings.embed_many(
                model="mock/embed",
                inputs=[f"text {i}" for i in range(40)],
                batch_size=2,
                concurrency="auto",
                max_concurrency=3,
            )
            assert len(vectors) == 40
            assert mock.peak_in_flight == 3
            mistyped: Any = "Auto"
            with pytest.raises(ValueError, match="'Auto'"):
                await client.embeddings.embed_many(
                    model="mock/embed", inputs=["x"], concurrency=mistyped
                )
        assert len(mock.requests) == 20


def test_what_counts_as_a_loss():
    """429, 503 and timeouts are loss signals; other failures say nothing; an answer is a
    success."""
    assert outcome_of(RateLimitError("x", status_code=429, body=None)) == "loss"
    assert outcome_of(InternalServerError("x", status_code=503, body=None)) == "loss"
    assert outcome_of(APITimeoutError("timed out")) == "loss"
    assert outcome_of(TimeoutError()) == "loss"
    assert outcome_of(InternalServerError("x", status_code=500, body=None)) == "neutral"
    assert outcome_of(BadRequestError("x", status_code=400, body=None)) == "neutral"
    assert outcome_of(ConnectionResetError()) == "neutral"
    assert outcome_of(object()) == "success"


# -- batch files -------------------------------------------------------------------------------


def write_batch(path: Path, count: int) -> Path:
    with path.open("w") as out:
        for i in range(count):
            body = {"model": "mock/echo", "messages": [{"role": "user", "content": f"q {i}"}]}
            line = {"custom_id": f"q{i:03d}", "url": "/v1/chat/completions", "body": body}
            out.write(json.dumps(line) + "\n")
    return path


async def test_a_batch_file_with_auto_finds_the_cap_and_reports_its_level(tmp_path):
    """run_batch_file(concurrency="auto") against a cap of 4: every line answered, the live
    summary carries the level (progress callback, progress line), and the summary ends with
    it."""
    source = write_batch(tmp_path / "in.jsonl", 150)
    levels: list[int] = []

    def progress(summary: BatchSummary) -> None:
        assert summary.auto_concurrency is not None
        levels.append(summary.auto_concurrency.level)

    async with MockRoutmy(latency=0.03, max_in_flight=4) as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_retries=100
        ) as client:
            summary = await run_batch_file(
                client,
                source,
                tmp_path / "out.jsonl",
                concurrency="auto",
                max_concurrency=32,
                progress=progress,
            )
    assert summary.ok == 150 and summary.failed == 0
    auto = summary.auto_concurrency
    assert auto is not None and auto.losses >= 1 and auto.max_concurrency == 32
    assert len(levels) == 150 and max(levels) <= 32 and min(levels) >= 1
    assert f", level {auto.level}" in summary.progress_line()
    assert f"concurrency: auto, level {auto.level} at the end (peak {auto.peak} of max 32" in (
        summary.format()
    )
    assert summary.to_dict()["concurrency_auto"]["max_concurrency"] == 32


async def test_a_batch_file_refuses_bad_concurrency_before_reading(tmp_path):
    """A bad concurrency or ceiling is a ValueError before the output is even created."""
    source = write_batch(tmp_path / "in.jsonl", 3)
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            for options in (
                {"concurrency": "Auto"},
                {"concurrency": "auto", "max_concurrency": 0},
                {"concurrency": 4, "max_concurrency": 8},
            ):
                with pytest.raises(ValueError, match="concurrency"):
                    await run_batch_file(client, source, tmp_path / "out.jsonl", **options)
        assert mock.requests == []
    assert not (tmp_path / "out.jsonl").exists()


def test_routmy_batch_concurrency_auto(tmp_path, capsys):
    """``routmy batch --concurrency auto --max-concurrency 5``: the summary (text and JSON)
    says where the level ended, within the ceiling; ``--concurrency Auto`` is a usage
    error."""
    source = write_batch(tmp_path / "in.jsonl", 40)
    report = tmp_path / "summary.json"
    args = ["batch", str(source), "-o", str(tmp_path / "out.jsonl"), "--mock", "--no-progress"]
    assert (
        main(
            [
                *args,
                "--concurrency",
                "auto",
                "--max-concurrency",
                "5",
                "--summary-json",
                str(report),
            ]
        )
        == 0
    )
    assert re.search(
        r"concurrency: auto, level [1-5] at the end \(peak [1-5] of max 5;",
        (capsys.readouterr().out),
    )
    auto = json.loads(report.read_text())["concurrency_auto"]
    assert auto["max_concurrency"] == 5 and 1 <= auto["level"] <= auto["peak"] <= 5
    with pytest.raises(SystemExit) as caught:
        main([*args, "--concurrency", "Auto"])
    assert caught.value.code == 2
    assert "expected a positive integer or 'auto', got 'Auto'" in capsys.readouterr().err
