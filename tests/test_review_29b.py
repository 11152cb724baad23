"""A second cold review of issue 29 (a spend limit; concurrency="auto"), each finding as a
user meets it against MockRoutmy: a raw call that names no model, a tool whose schema is
mostly property names, a budgeted batch file whose input was edited between runs, a wrong
key under a spend limit, and the adaptive level while the spend limit is what holds a batch
back."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from routmy_async import (
    AsyncRoutmy,
    AuthenticationError,
    AutoConcurrency,
    BatchFileError,
    SpendLimit,
    SpendLimitError,
    run_batch_file,
)
from routmy_async.testing import MockRoutmy, Reply
from tests.test_review_29 import MULTIPLIERS, client_for

JSON = {"Content-Type": "application/json"}


def sent_to(mock: MockRoutmy, path: str) -> int:
    return sum(1 for request in mock.requests if request.path.endswith(path))


def _completion(model: str, prompt_tokens: int, completion_tokens: int) -> Reply:
    answer = {
        "id": "chatcmpl-default",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }
    return Reply(headers=JSON, body=json.dumps(answer).encode())


# -- raw calls --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        # OpenRouter-style routers answer a request without a model with the account's
        # default model; ``models`` is their fallback list.
        {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 5},
        {"models": ["mock/echo"], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
        {"model": ["mock/echo"], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5},
    ],
    ids=["no-model", "models-fallback-list", "model-not-a-string"],
)
async def test_a_raw_chat_post_that_names_no_model_is_refused_before_it_is_sent(body):
    """A raw ``client.post("/chat/completions")`` whose body names no model (a router then
    picks one and bills it) cannot be priced: it is refused before it is sent, naming what
    is missing, never sent and counted as free."""
    limit = SpendLimit(max_units=10_000)
    async with MockRoutmy() as mock:
        answer = _completion("mock/reasoner", 9, 5)
        mock.reply_with(lambda request: answer if request.path.endswith("/completions") else None)
        async with client_for(mock, limit) as client:
            with pytest.raises(SpendLimitError) as refused:
                await client.post("/chat/completions", body=body)
            assert sent_to(mock, "/chat/completions") == 0
    assert refused.value.missing == "model"
    assert "model" in str(refused.value)


async def test_a_raw_models_read_is_still_sent_unpriced():
    """The fix above leaves the calls without a model that generate nothing alone: the
    models list, typed or raw."""
    limit = SpendLimit(max_units=10)
    async with MockRoutmy() as mock:
        async with client_for(mock, limit) as client:
            await client.models.list()
            listed = await client.get("/models")
    assert listed["data"]
    units = limit.spend.units
    assert units is not None and units.spent == 0


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (
            "/chat/completions",
            {
                "model": "mock/echo",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 500,
                "stream_options": {"include_usage": True},
            },
        ),
        ("/responses", {"model": "mock/echo", "input": "hi", "max_output_tokens": 500}),
    ],
    ids=["chat", "responses"],
)
async def test_a_raw_stream_settles_to_its_usage_as_the_typed_stream_does(path, body):
    """A raw stream of chat completions (asked for its usage) or of a Responses answer
    settles to the usage its last events carry, as the typed stream does: counting its
    whole reservation (500 output tokens for an answer of a few) would spend a budget a
    hundred times faster than the answers do, and report that as what they used."""
    typed_limit, raw_limit = SpendLimit(max_units=10_000), SpendLimit(max_units=10_000)
    async with MockRoutmy() as mock:
        async with client_for(mock, typed_limit) as typed, client_for(mock, raw_limit) as raw:
            if path == "/responses":
                async with typed.responses.stream(**body) as answer:
                    async for _ in answer:
                        pass
            else:
                stream = await typed.chat.completions.create(stream=True, **body)
                async for _ in stream:
                    pass
            async with raw.stream_request("POST", path, body={**body, "stream": True}) as events:
                frames = [event async for event in events]
    assert frames
    typed_units, raw_units = typed_limit.spend.units, raw_limit.spend.units
    assert typed_units is not None and raw_units is not None
    assert raw_units.spent == typed_units.spent < 50
    assert raw_units.reserved == 0


@pytest.mark.parametrize("operation", ["chat", "embeddings"])
async def test_a_model_given_in_extra_body_is_the_one_priced(operation):
    """``extra_body={"model": ...}`` overrides the typed ``model=`` in the body sent, so the
    server answers (and bills) that model: the limit prices the model sent, not the one
    the typed argument named (a 0.1x model there and a 2x one sent counted 20 times less
    than the server used)."""
    limit = SpendLimit(max_units=100_000)
    override = {"model": "mock/reasoner"}
    async with MockRoutmy() as mock:
        async with client_for(mock, limit) as client:
            if operation == "chat":
                answer: Any = await client.chat.completions.create(
                    model="mock/embed",
                    messages=[{"role": "user", "content": "hello there"}],
                    max_tokens=20,
                    extra_body=override,
                )
            else:
                answer = await client.embeddings.create(
                    model="mock/embed", input="hello there", extra_body=override
                )
        assert mock.requests[-1].json["model"] == "mock/reasoner"
    units = limit.spend.units
    assert units is not None
    assert units.spent == answer.usage.total_tokens * MULTIPLIERS["mock/reasoner"]


# -- the prompt bound -------------------------------------------------------------------------


async def test_a_tools_property_names_count_in_its_worst_case():
    """The prompt bound counts every string of the request in UTF-8 bytes; a tool's schema
    is mostly property names, which the model reads as much as the values: a reservation
    that left them out would be short of what such a request uses."""
    names = [f"shipping_address_line_{index:03d}_of_the_customer" for index in range(40)]
    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {"type": "object", "properties": {n: {"type": "integer"} for n in names}},
        },
    }
    limit = SpendLimit(max_units=1)  # refuses: the refusal tells the worst case
    async with MockRoutmy() as mock:
        async with client_for(mock, limit) as client:
            with pytest.raises(SpendLimitError) as refused:
                await client.chat.completions.create(
                    model="mock/echo",
                    messages=[{"role": "user", "content": "go"}],
                    tools=[tool],
                    max_tokens=1,
                )
    name_bytes = sum(len(name.encode()) for name in names)
    assert refused.value.estimate is not None
    assert refused.value.estimate > name_bytes


# -- a wrong key ------------------------------------------------------------------------------


async def test_a_wrong_key_under_a_spend_limit_is_reported_as_a_wrong_key():
    """A wrong key fails the first request with ``AuthenticationError`` with or without a
    spend limit: the models list the limit reads first answers 401, which says nothing
    about prices, and a user catching ``AuthenticationError`` must see it."""
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(
            api_key="sk-wrong", base_url=mock.base_url, spend_limit=SpendLimit(max_units=100)
        ) as client:
            with pytest.raises(AuthenticationError):
                await client.chat.completions.create(
                    model="mock/echo", messages=[{"role": "user", "content": "hi"}], max_tokens=5
                )
            assert sent_to(mock, "/chat/completions") == 0


async def test_a_budgeted_batch_with_a_wrong_key_says_so(tmp_path: Path):
    """``routmy batch --max-units`` with a wrong key stops on the 401, not with "the budget
    cannot be enforced ... run without the budget", which sends the user the wrong way."""
    source = _write_lines(tmp_path / "in.jsonl", 3, "mock/echo")
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key="sk-wrong", base_url=mock.base_url) as client:
            summary = await run_batch_file(client, source, tmp_path / "out.jsonl", max_units=500)
    assert summary.stop_reason == "fatal_error"
    assert "without the budget" not in (summary.stop_detail or "")
    assert "401" in (summary.stop_detail or "")


# -- batch files edited between budgeted runs -----------------------------------------------------


def _write_lines(path: Path, count: int, model: str | list[str], skip: int = -1) -> Path:
    models = [model] if isinstance(model, str) else model
    with path.open("w") as lines:
        for index in range(count):
            if index == skip:
                continue
            body = {
                "model": models[index % len(models)],
                "messages": [{"role": "user", "content": f"q{index} a b c"}],
                "max_tokens": 8,
            }
            line = {"custom_id": f"q{index}", "url": "/v1/chat/completions", "body": body}
            lines.write(json.dumps(line) + "\n")
    return path


def _billed(mock: MockRoutmy) -> Decimal:
    """What the mock answered, in quota units: every chat request it received was answered
    (and would be billed), at the multiplier of the model the request named."""
    from routmy_async.testing import _replies

    total = Decimal(0)
    for request in mock.requests:
        if request.path.endswith("/chat/completions"):
            usage = _replies.chat_completion(request.json, created=0, serial=0)["usage"]
            tokens = usage["prompt_tokens"] + usage["completion_tokens"]
            total += tokens * MULTIPLIERS[request.json["model"]]
    return total


async def test_a_cheaper_model_put_in_the_input_between_runs_does_not_grow_the_budget(
    tmp_path: Path,
):
    """The first run answers lines at ``mock/reasoner`` (2x) until the budget stops it; the
    user then edits the input, naming ``mock/embed`` (0.1x) on every line. The resume
    prices the output's answers by the lines' models, now 20 times cheaper, but what the
    server answered over both runs stays within the limit (the run's journal)."""
    source = _write_lines(tmp_path / "in.jsonl", 40, "mock/reasoner")
    target = tmp_path / "out.jsonl"
    async with MockRoutmy(resolve_models=True) as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            first = await run_batch_file(client, source, target, max_units=400, concurrency=4)
            assert first.stop_reason == "budget" and first.ok
            _write_lines(source, 40, "mock/embed")
            await run_batch_file(client, source, target, max_units=400, concurrency=4)
        assert _billed(mock) <= 400


async def test_a_budgeted_resume_names_the_line_it_could_not_price(tmp_path: Path):
    """Against a router that names its answers by a dated id, a done line removed from the
    input leaves its answer priced by that id, which the models list lacks: the run refuses
    (fail closed), and its message says why the user sees a model they never wrote."""
    source = _write_lines(tmp_path / "in.jsonl", 4, "mock/echo")
    target = tmp_path / "out.jsonl"
    async with MockRoutmy(resolve_models=True) as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            await run_batch_file(client, source, target, max_units=1_000)
            _write_lines(source, 6, "mock/echo", skip=1)
            with pytest.raises(BatchFileError) as refused:
                await run_batch_file(client, source, target, max_units=1_000)
    message = str(refused.value)
    assert "mock/echo-2026-01-01" in message
    assert "no longer in the input" in message


# -- concurrency="auto" with a spend limit ------------------------------------------------------


async def test_the_auto_level_does_not_grow_while_the_spend_limit_holds_the_batch_back():
    """A spend limit with room for a few reservations at a time keeps about that many
    requests on the wire; items waiting for room say nothing about the server, so the level
    (shown in the progress output and reused by the next batch) must not climb to the
    ceiling on their account."""
    requests = [
        {"model": "mock/echo", "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 20}
        for i in range(200)
    ]
    auto = AutoConcurrency(max_concurrency=64)
    async with MockRoutmy(latency=0.02) as mock:
        async with client_for(mock, SpendLimit(max_units=300)) as client:
            results = await client.chat.completions.create_many(requests, concurrency=auto)
        on_the_wire = mock.peak_in_flight
    assert any(isinstance(result, SpendLimitError) for result in results)
    assert on_the_wire <= 10
    # Grown only while at most twice the most requests started at once; a start that the
    # spend limit then refused before sending counts there, which is the slack above 2x.
    # Before the items waiting for room were kept out of the level's growth, it reached 51.
    assert auto.peak <= 3 * on_the_wire
