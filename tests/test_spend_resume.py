"""A budgeted batch file resumes when the router answers with a model id its models list
lacks (issue 29): the answers already in the output are priced by the model their request
named, as the run that sent them reserved and settled them; by the answer's own model only
when the input no longer has the request; and refused by name when neither is priced."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routmy_async import AsyncRoutmy, BatchFileError, run_batch_file
from routmy_async._batchfile._idset import fingerprint
from routmy_async._batchfile._requested import RequestModels, read_request_models
from routmy_async.testing import MockRoutmy

ROOT = Path(__file__).resolve().parent.parent
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ROUTMY_")}
WAIT = 60.0  # the longest any condition below may take (it normally takes milliseconds)
RESOLVED = "-2026-01-01"


def chat_line(custom_id: str, model: str = "mock/echo", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": f"say {custom_id}"}]}
        | body,
    }


def write_lines(path: Path, items: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def results(path: Path) -> list[dict[str, Any]]:
    """The whole lines of an output (a torn last one, from a kill -9, left out)."""
    if not path.exists():
        return []
    whole = path.read_bytes().split(b"\n")[:-1]
    return [json.loads(line) for line in whole if line.strip()]


def answered_units(path: Path) -> int:
    """Tokens of the output's answers: quota units for mock/echo (token_multiplier 1)."""
    return sum(
        line["response"]["body"]["usage"]["total_tokens"]
        for line in results(path)
        if line["error"] is None and line["response"]["status_code"] == 200
    )


# -- the pure part: which model each line named ---------------------------------------------


@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=8), st.sampled_from(["a/x", "b/y", "c/z"])),
        max_size=60,
    ),
    st.lists(st.text(min_size=1, max_size=8), max_size=10),
)
def test_request_models_gives_each_id_the_model_of_its_first_line(lines, others):
    """Every id added maps to the model of its first line; an id never added maps to
    nothing (fingerprints, so a look-up is one bisect)."""
    models = RequestModels()
    first: dict[str, str] = {}
    for custom_id, model in lines:
        models.add(custom_id, model)
        first.setdefault(custom_id, model)
    models.freeze()
    assert len(models) == len(lines)
    for custom_id, model in first.items():
        assert models.model_of(fingerprint(custom_id)) == model
    for other in others:
        if other not in first:
            assert models.model_of(fingerprint(other)) is None


def test_reading_an_input_passes_over_what_names_no_model(tmp_path):
    """Lines that are not JSON objects, lack an id or name no model are passed over; a BOM
    on the first line is not part of its id."""
    path = tmp_path / "in.jsonl"
    path.write_bytes(
        b"\xef\xbb\xbf"
        + json.dumps(chat_line("first", "a/x")).encode()
        + b"\nnot json\n[1]\n"
        + json.dumps({"custom_id": "no-body"}).encode()
        + b"\n"
        + json.dumps({"custom_id": "no-model", "body": {"messages": []}}).encode()
        + b"\n\n"
        + json.dumps(chat_line("last", "b/y")).encode()
    )
    models = read_request_models(path, should_stop=lambda: False)
    assert len(models) == 2
    assert models.model_of(fingerprint("first")) == "a/x"
    assert models.model_of(fingerprint("last")) == "b/y"
    assert models.model_of(fingerprint("no-model")) is None


# -- from the user's side ---------------------------------------------------------------------


async def test_the_mock_can_answer_with_a_resolved_model():
    """MockRoutmy(resolve_models=True) names ``<model>-2026-01-01`` in a chat completion, a
    chat stream, a Responses object and an embeddings list; its models list is unchanged."""
    async with MockRoutmy(resolve_models=True) as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            messages = [{"role": "user", "content": "hi"}]
            chat = await client.chat.completions.create(model="mock/echo", messages=messages)
            stream = await client.chat.completions.create(
                model="mock/echo", messages=messages, stream=True
            )
            chunks = [chunk async for chunk in stream]
            response = await client.responses.create(model="mock/echo", input="hi")
            vectors = await client.embeddings.create(model="mock/embed", input="hi")
            listed = await client.models.list()
    assert chat.model == response.model == "mock/echo" + RESOLVED
    assert {chunk.model for chunk in chunks} == {"mock/echo" + RESOLVED}
    assert vectors.model == "mock/embed" + RESOLVED
    assert not [model for model in listed.data if model.id.endswith(RESOLVED)]


async def test_an_answer_is_priced_by_its_request_model_not_by_the_one_it_names(tmp_path):
    """Answers named after a resolved id are counted at their request's multiplier
    (mock/reasoner: 2): the resumed run starts from what the first one counted."""
    source = write_lines(
        tmp_path / "in.jsonl",
        [chat_line(f"q{i}", "mock/reasoner", max_tokens=8) for i in range(3)],
    )
    target = tmp_path / "out.jsonl"
    async with MockRoutmy(resolve_models=True) as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            first = await run_batch_file(client, source, target, max_units=100_000)
            write_lines(
                source, [chat_line(f"q{i}", "mock/reasoner", max_tokens=8) for i in range(4)]
            )
            again = await run_batch_file(client, source, target, max_units=100_000)
    assert first.ok == 3 and again.ok == 1
    first_tokens = sum(
        line["response"]["body"]["usage"]["total_tokens"] for line in results(target)[:3]
    )
    assert again.units_before == first.units == 2 * first_tokens


async def test_an_answer_whose_request_is_gone_is_priced_by_its_own_model(tmp_path):
    """An answer whose line is no longer in the input is priced by the model the answer
    names; when that is a resolved id the list lacks, the run refuses by name and sends
    nothing (it is never counted as free)."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line("kept", max_tokens=8)])
    target = tmp_path / "out.jsonl"
    async with MockRoutmy(resolve_models=True) as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            await run_batch_file(client, source, target, max_units=100_000)
            write_lines(source, [chat_line("new", max_tokens=8)])  # "kept" is gone
            sent = len(mock.requests)
            with pytest.raises(BatchFileError) as refused:
                await run_batch_file(client, source, target, max_units=100_000)
            assert len(mock.requests) == sent + 1  # the models list only
    message = str(refused.value)
    assert f"1 answer(s) of 'mock/echo{RESOLVED}' already in {target}" in message
    assert "token_multiplier is unknown" in message and "nothing was sent" in message


async def test_an_answer_whose_request_model_is_unpriced_is_refused_by_that_name(tmp_path):
    """A request model the list does not have (it was listed when the first run sent it):
    the resumed run refuses naming the request's model, not the answer's, and sends
    nothing."""
    source = write_lines(tmp_path / "in.jsonl", [chat_line("a", "mock/old", max_tokens=8)])
    target = tmp_path / "out.jsonl"
    async with MockRoutmy(resolve_models=True) as mock:
        mock.models.append({"id": "mock/old", "token_multiplier": 1, "is_available": True})
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            await run_batch_file(client, source, target, max_units=100_000)
            mock.models.pop()  # the router retired it
            write_lines(source, [chat_line("a", "mock/old", max_tokens=8), chat_line("b")])
            with pytest.raises(BatchFileError, match=r"1 answer\(s\) of 'mock/old' already in"):
                await run_batch_file(client, source, target, max_units=100_000)
    assert [line["custom_id"] for line in results(target)] == ["a"]


# -- killed and restarted by a scheduler, against a mock in its own process -------------------


async def _start_mock_process() -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "routmy_async.testing", "--port", "0", "--latency", "0.05",
        "--resolve-models", "--api-key", "sk_mock",
        cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), WAIT)
    found = re.search(rb"listening on (\S+)", first)
    assert found is not None, first
    return process, found[1].decode()


async def _batch(base_url: str, *argv: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-W", "error", "-m", "routmy_async", "batch", *argv,
        "--base-url", base_url, "--api-key", "sk_mock", "--no-progress",
        cwd=ROOT, env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def test_a_scheduler_killing_and_restarting_a_budgeted_run_stays_within_its_units(
    tmp_path,
):
    """A scheduler loop runs ``routmy batch --max-units`` against ``python -m
    routmy_async.testing --resolve-models`` (another process), kills it with SIGKILL once a
    few more answers are written, and starts it again, until a run ends by itself: every
    restart resumes (none refuses the output for its resolved ids), and what the output's
    answers used stays within the units, as does what each run counted."""
    budget = 1_000  # a line uses 5 units and reserves ~37
    lines = [chat_line(f"q{i:03d}", max_tokens=2) for i in range(300)]
    source = write_lines(tmp_path / "in.jsonl", lines)
    target = tmp_path / "out.jsonl"
    argv = [str(source), "-o", str(target), "--max-units", str(budget), "--concurrency", "3"]
    server, base_url = await _start_mock_process()
    try:
        kills = 0
        while True:
            run = await _batch(base_url, *argv)
            written = len(results(target))
            deadline = time.monotonic() + WAIT
            while run.returncode is None and len(results(target)) < written + 4 and kills < 5:
                assert time.monotonic() < deadline, "the run wrote nothing"
                await asyncio.sleep(0.01)
            if run.returncode is None and kills < 5:
                run.send_signal(signal.SIGKILL)
                kills += 1
            out, err = await asyncio.wait_for(run.communicate(), WAIT)
            if run.returncode == -signal.SIGKILL:
                continue
            break
    finally:
        server.kill()
        await server.wait()
    assert kills == 5
    assert run.returncode == 4, err.decode()  # the budget is reached, not a refusal
    assert "budget is reached" in out.decode()
    counted = re.search(
        r"units: ([\d,]+) this run \+ ([\d,]+) before of ([\d,]+) allowed", out.decode()
    )
    assert counted is not None, out.decode()
    this_run, before, allowed = (int(group.replace(",", "")) for group in counted.groups())
    assert allowed == budget and answered_units(target) <= this_run + before <= budget
    models = {line["response"]["body"]["model"] for line in results(target)}
    assert models == {"mock/echo" + RESOLVED}
