"""The Ray Data steps in this process (no Ray needed): rows in, columns out, against
MockRoutmy. A step owns its own event loop in a thread, so each call runs in a worker
thread here while the mock keeps serving on the test's loop."""

from __future__ import annotations

import asyncio
import gc
import json
import pickle
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from routmy_async import AutoConcurrency, BadRequestError, ContentParseError, RoutmyError
from routmy_async.integrations.ray import _runtime as _ray_runtime
from routmy_async.integrations.ray._batches import Batch, plain
from routmy_async.integrations.ray._coordinator import CoordinatorCore
from routmy_async.integrations.ray._grants import Settings
from routmy_async.integrations.ray._limit import ClusterRateLimit
from routmy_async.integrations.ray._runtime import Runtime
from routmy_async.integrations.ray._step import ChatStep, EmbeddingStep
from routmy_async.testing import MockRoutmy, RecordedRequest, Reply
from routmy_async.testing._replies import embedding_vector

KEY = "sk-step-test-4f1c9a7e2b"


def refused(message: str, **headers: str) -> Reply:
    body = json.dumps({"error": {"message": message}}).encode()
    return Reply(status=400, headers={"Content-Type": "application/json", **headers}, body=body)


def refuse_marked_rows(request: RecordedRequest) -> Reply | None:
    """Rows that fail on purpose: a prompt with FAIL is refused (400), one with ECHO-KEY is
    refused with the caller's Authorization header (its key) in the message, and an
    embeddings input with FAIL fails its whole request."""
    if request.path.endswith("/embeddings"):
        if any("FAIL" in text for text in request.json["input"]):
            return refused("chunk refused")
    elif request.path.endswith("/chat/completions"):
        text = str(request.json["messages"][-1].get("content", ""))
        if "ECHO-KEY" in text:
            return refused(f"not allowed for Bearer {KEY}")  # recorded headers hide the key
        if "FAIL" in text:
            return refused("row refused", **{"x-request-id": "req-refused"})
    return None


def row_mock(**options: Any) -> MockRoutmy:
    mock = MockRoutmy(api_key=KEY, **options)
    mock.reply_with(refuse_marked_rows)
    return mock


@pytest_asyncio.fixture
async def rows_mock(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MockRoutmy]:
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    server = row_mock()
    await server.start()
    try:
        yield server
    finally:
        await server.close()


class Order(msgspec.Struct):
    id: str
    status: str


def messages(*texts: str) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": text}] for text in texts]


async def call(step: Any, batch: Any) -> Any:
    return await asyncio.to_thread(step, batch)


async def closed(step: Any) -> None:
    await asyncio.to_thread(step.close)


async def test_rows_keep_their_order_and_get_every_column(rows_mock: MockRoutmy) -> None:
    """Each row's answer lands in its own row, with usage and request id; the cost column is
    empty, as rout.my reports no cost (a router that does fills it: next test)."""
    step = ChatStep(model="mock/echo", base_url=rows_mock.base_url, max_in_flight=4)
    texts = [f"question {index}" for index in range(12)]
    out = await call(step, {"id": list(range(12)), "messages": messages(*texts)})
    await closed(step)
    assert out["id"] == list(range(12))
    assert out["content"] == texts
    assert out["finish_reason"] == ["stop"] * 12
    assert out["error"] == [""] * 12
    assert all(isinstance(n, int) and n > 0 for n in out["prompt_tokens"])
    assert all(isinstance(n, int) for n in out["completion_tokens"])
    assert out["cost"] == [None] * 12, out["cost"]
    assert len(set(out["request_id"])) == 12
    assert "parsed" not in out


async def test_a_router_that_reports_cost_fills_the_cost_column(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    async with row_mock(flavor="openrouter") as server:
        step = ChatStep(model="mock/echo", base_url=server.base_url)
        out = await call(step, {"id": [0, 1], "messages": messages("a", "b")})
        await closed(step)
    assert all(isinstance(cost, float) and cost > 0 for cost in out["cost"]), out["cost"]


async def test_failed_rows_are_recorded_and_the_others_kept(rows_mock: MockRoutmy) -> None:
    """A refused row, empty messages and messages that are not JSON each get an error; the
    rows around them still get their answers."""
    step = ChatStep(model="mock/echo", base_url=rows_mock.base_url)
    column: list[Any] = messages("fine 0", "FAIL here", "fine 2")
    column += [[], "{not json", json.dumps(messages("fine 5")[0])]
    out = await call(step, {"messages": column})
    await closed(step)
    assert out["content"] == ["fine 0", None, "fine 2", None, None, "fine 5"]
    assert out["error"][0] == out["error"][2] == out["error"][5] == ""
    assert out["error"][1].startswith("BadRequestError: ")
    assert "row refused" in out["error"][1]
    assert "non-empty list" in out["error"][3]
    assert "not JSON" in out["error"][4]
    assert out["prompt_tokens"][1] is None
    assert out["request_id"][1] == "req-refused"  # a refused request keeps its id


async def test_on_error_raise_fails_the_batch(rows_mock: MockRoutmy) -> None:
    """With on_error="raise" a refused row raises, and a bad row raises before anything is
    sent."""
    step = ChatStep(model="mock/echo", base_url=rows_mock.base_url, on_error="raise")
    with pytest.raises(ValueError, match="non-empty list"):
        await call(step, {"messages": [*messages("fine"), []]})
    assert rows_mock.requests == []
    with pytest.raises(BadRequestError, match="row refused"):
        await call(step, {"messages": messages("fine", "FAIL")})
    await closed(step)


async def test_a_prompt_column_with_a_system_prompt(rows_mock: MockRoutmy) -> None:
    """A prompt column becomes a user message after the system prompt; other create
    parameters go into every request."""
    step = ChatStep(
        model="mock/echo",
        base_url=rows_mock.base_url,
        prompt_column="question",
        system_prompt="Answer briefly.",
        temperature=0.2,
        max_tokens=32,
        output_prefix="answer_",
    )
    out = await call(step, {"question": ["one", "two", ""]})
    await closed(step)
    assert out["answer_content"] == ["one", "two", None]
    assert "non-empty text" in out["answer_error"][2]
    sent = rows_mock.requests[0].json
    assert sent["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert sent["temperature"] == 0.2
    assert sent["max_tokens"] == 32


async def test_a_response_format_fills_the_parsed_column(rows_mock: MockRoutmy) -> None:
    """With a Struct response_format every row gets ``parsed`` as plain JSON values."""
    step = ChatStep(model="mock/echo", base_url=rows_mock.base_url, response_format=Order)
    out = await call(step, {"messages": messages("order A-1 shipped", "FAIL")})
    await closed(step)
    assert out["parsed"][0] == {"id": "A-1", "status": "shipped"}
    assert out["parsed"][1] is None


async def test_a_dict_response_format_is_parsed_into_json_values(rows_mock: MockRoutmy) -> None:
    """A dict response_format gets ``parsed`` too (as ``parse()`` does), as JSON text since
    the dict says nothing of its values' types; content that is not JSON fails its row."""
    step = ChatStep(
        model="mock/echo", base_url=rows_mock.base_url, response_format={"type": "json_object"}
    )
    out = await call(step, {"messages": messages("hello")})
    assert out["parsed"] == ['{"echo":"hello"}']
    rows_mock.reply_json(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "no"}}]}
    )
    out = await call(step, {"messages": messages("again")})
    assert out["parsed"] == [None]
    assert out["error"][0].startswith("ContentParseError: ")
    await closed(step)
    strict = ChatStep(
        model="mock/echo",
        base_url=rows_mock.base_url,
        response_format={"type": "json_object"},
        on_error="raise",
    )
    rows_mock.reply_json(
        {"choices": [{"index": 0, "message": {"role": "assistant", "content": "no"}}]}
    )
    with pytest.raises(ContentParseError):
        await call(strict, {"messages": messages("again")})
    await closed(strict)


async def test_the_key_never_appears_in_an_error(rows_mock: MockRoutmy) -> None:
    """An error that echoes the Authorization header shows it redacted."""
    step = ChatStep(model="mock/echo", base_url=rows_mock.base_url)
    out = await call(step, {"messages": messages("ECHO-KEY please")})
    await closed(step)
    assert "[REDACTED]" in out["error"][0]
    assert KEY not in out["error"][0]
    assert KEY not in repr(step)


async def test_the_key_can_come_from_a_file(
    rows_mock: MockRoutmy, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``<variable>_FILE`` names a file holding the key (a mounted secret)."""
    secret = tmp_path / "key"
    secret.write_text(KEY + "\n")
    monkeypatch.delenv("ROUTMY_API_KEY")
    monkeypatch.setenv("MY_KEY_FILE", str(secret))
    step = ChatStep(model="mock/echo", base_url=rows_mock.base_url, api_key_env="MY_KEY")
    out = await call(step, {"messages": messages("hello")})
    await closed(step)
    assert out["content"] == ["hello"]


def test_a_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Without the variable (or with an unreadable file) the step refuses to start."""
    monkeypatch.delenv("ROUTMY_API_KEY", raising=False)
    monkeypatch.delenv("ROUTMY_API_KEY_FILE", raising=False)
    with pytest.raises(RoutmyError, match="ROUTMY_API_KEY_FILE"):
        ChatStep(model="m")
    monkeypatch.setenv("ROUTMY_API_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(RoutmyError, match="cannot be read"):
        ChatStep(model="m")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    monkeypatch.setenv("ROUTMY_API_KEY_FILE", str(empty))
    with pytest.raises(RoutmyError, match="no API key"):
        EmbeddingStep(model="m")


class FakeRay:
    """What the key check asks of Ray: whether it is connected, and the runtime env."""

    def __init__(self, env_vars: dict[str, str], *, connected: bool = True):
        self.env_vars = env_vars
        self.connected = connected
        self.asked = 0

    def is_initialized(self) -> bool:
        return self.connected

    def get_runtime_context(self) -> Any:
        # The real one starts a local Ray when none is connected: counted either way.
        self.asked += 1
        assert self.connected, "asked for a runtime context while not connected"
        return SimpleNamespace(runtime_env={"env_vars": self.env_vars})


def test_a_key_in_a_runtime_env_is_pointed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key given as ``runtime_env={"env_vars": {"ROUTMY_API_KEY": ...}}`` works, with one
    warning (naming the variable, never the value) that Ray logs such values in the clear."""
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    fake_ray = FakeRay({"ROUTMY_API_KEY": KEY})
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    monkeypatch.setattr(_ray_runtime, "_warned", set())
    with pytest.warns(UserWarning, match="runtime_env") as caught:
        first, second = ChatStep(model="m"), EmbeddingStep(model="m")
    first.close()
    second.close()
    assert len(caught) == 1
    text = str(caught[0].message)
    assert "ROUTMY_API_KEY_FILE" in text
    assert KEY not in text
    assert first.client.is_closed


@pytest.mark.parametrize("connected", [True, False])
def test_a_key_from_the_node_environment_is_not_warned_about(
    monkeypatch: pytest.MonkeyPatch, connected: bool
) -> None:
    """A runtime env that carries only the key file's path gives no warning (warnings are
    errors in this suite), and a process not connected to Ray never asks it (which would
    start one)."""
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    fake_ray = FakeRay({"ROUTMY_API_KEY_FILE": "/k", "ROUTMY_API_KEY": KEY}, connected=connected)
    if connected:
        fake_ray.env_vars = {"ROUTMY_API_KEY_FILE": "/k"}
    monkeypatch.setitem(sys.modules, "ray", fake_ray)
    monkeypatch.setattr(_ray_runtime, "_warned", set())
    step = ChatStep(model="m")
    step.close()
    assert step.client.is_closed
    assert fake_ray.asked == (1 if connected else 0)


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"api_key": KEY}, TypeError),
        ({"default_headers": {"Authorization": "Bearer x"}}, ValueError),
        ({"extra_headers": {"X-Api-Key": "x"}}, ValueError),
        ({"default_headers": ["x"]}, TypeError),
        ({"stream": True}, ValueError),
        ({"model": ""}, ValueError),
        ({"max_in_flight": 0}, ValueError),
        ({"on_error": "ignore"}, ValueError),
        ({"output_prefix": 1}, TypeError),
        ({"system_prompt": 1}, TypeError),
    ],
)
def test_bad_options_are_refused(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], error: type[Exception]
) -> None:
    """Credentials among the arguments (they would travel through Ray), streaming and
    invalid values are refused when the step is made."""
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    with pytest.raises(error) as raised:
        ChatStep(**{"model": "m", **options})
    assert KEY not in str(raised.value)


def test_bad_embedding_options_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """``inputs_per_request`` must be a positive int."""
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    with pytest.raises(ValueError, match="inputs_per_request"):
        EmbeddingStep(model="m", inputs_per_request=0)


def test_a_step_is_never_pickled(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pickling an instance (which holds a client and its key) is refused."""
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    step = ChatStep(model="m", max_in_flight=3)
    try:
        with pytest.raises(TypeError, match="never pickled"):
            pickle.dumps(step)
        assert repr(step) == "ChatStep(model='m', max_in_flight=3)"
    finally:
        step.close()


def test_closing_closes_the_client_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``close()`` closes the client; again is harmless; the step then refuses batches."""
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    step = ChatStep(model="m")
    client = step.client
    step.close()
    step.close()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        step({"messages": messages("x")})


def test_a_collected_step_closes_its_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """When Ray drops the instance (a graceful actor exit), its client is closed."""
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    step = EmbeddingStep(model="m")
    client = step.client
    del step
    gc.collect()
    assert client.is_closed


async def test_a_step_closes_as_soon_as_its_last_reference_goes(rows_mock: MockRoutmy) -> None:
    """After a batch with failed rows, dropping the step closes its client at once, without
    the garbage collector: no reference cycle keeps it alive (Ray drops its actors' steps
    while it can still carry their last calls, and not later)."""
    step = ChatStep(model="mock/echo", base_url=rows_mock.base_url)
    done: list[Any] = []
    # A thread of our own, joined: an executor's worker may hold a call's arguments for a
    # moment after its result is delivered.
    batch = {"messages": [*messages("fine", "FAIL"), [], "{x"]}
    worker = threading.Thread(target=lambda run=step: done.append(run(batch)))
    worker.start()
    await asyncio.to_thread(worker.join)
    assert done[0]["error"][0] == ""
    client = step.client
    gc.disable()
    try:
        del step
        assert client.is_closed
    finally:
        gc.enable()


def test_a_runtime_closed_from_its_own_loop_still_closes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Collected on its loop's thread, a step closes in a task and then stops the loop."""
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    step = ChatStep(model="m")
    runtime: Runtime = step._runtime
    client = step.client

    async def close_here() -> None:
        runtime.close()

    runtime.run(close_here())
    runtime._loop._thread.join(5)
    assert client.is_closed
    assert runtime._loop.loop.is_closed()
    step.close()


class _Budget:
    """A BudgetSource without Ray: the coordinator runs in this process."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.core = CoordinatorCore(settings)

    def rate_limit(self) -> ClusterRateLimit:
        return ClusterRateLimit(self.core, self.settings)

    def client_spend_limit(self) -> None:
        return None

    def __repr__(self) -> str:
        return "_Budget()"


async def test_a_step_with_a_budget_joins_and_leaves_it(rows_mock: MockRoutmy) -> None:
    """The step's client spends the budget, gives back what it held after each batch, and
    leaves the budget when closed."""
    budget = _Budget(Settings(requests=600, window=60.0, grant_seconds=2.0))
    step = ChatStep(model="mock/echo", base_url=rows_mock.base_url, budget=budget)
    assert "budget=_Budget()" in repr(step)
    out = await call(step, {"messages": messages("a", "b", "c")})
    assert out["content"] == ["a", "b", "c"]
    assert await call(step, {"messages": []}) == {
        "messages": [],
        **{name: [] for name in ("content", "finish_reason", "prompt_tokens")},
        **{name: [] for name in ("completion_tokens", "cost", "request_id", "error")},
    }
    await closed(step)
    stats = await budget.core.stats()
    assert stats["joined"] == stats["left"] == 1
    assert sum(stats["spent_by_member"].values()) == 3


async def test_actors_far_below_the_limit_never_wait_for_each_other(rows_mock: MockRoutmy) -> None:
    """Two steps (two actors) taking turns with small batches under a limit they never
    approach: the budget grants about what the batches need, so neither step waits for
    capacity the other was handed and did not use."""
    # One in-process coordinator for two steps on two loops: its pause watch belongs to the
    # first loop, so the second step's watch logs a warning (in Ray it is an actor of its
    # own); pauses play no part here.
    budget = _Budget(Settings(requests=1_000_000, window=60.0, grant_seconds=2.0))
    steps = [ChatStep(model="mock/echo", base_url=rows_mock.base_url, budget=budget) for _ in "ab"]
    started = time.monotonic()
    for round_ in range(4):
        for step in steps:
            texts = [f"{round_}-{index}" for index in range(20)]
            out = await call(step, {"messages": messages(*texts)})
            assert out["content"] == texts
    elapsed = time.monotonic() - started
    for step in steps:
        await closed(step)
    stats = await budget.core.stats()
    assert sum(stats["spent_by_member"].values()) == 160
    # A batch's grants are sized to its rows, not to a share of two seconds of the limit
    # (about 16,000 requests here, which held the other step's next grant back a second).
    assert stats["granted_requests"] <= 2 * 160
    assert elapsed < 4.0


async def test_embeddings_fill_a_vector_column(rows_mock: MockRoutmy) -> None:
    """Every text gets its vector in its own row, requests of ``inputs_per_request``."""
    step = EmbeddingStep(
        model="mock/embed", base_url=rows_mock.base_url, inputs_per_request=3, dimensions=8
    )
    texts = [f"text {index}" for index in range(7)]
    out = await call(step, {"text": texts})
    await closed(step)
    assert out["error"] == [""] * 7
    for text, vector in zip(texts, out["embedding"], strict=True):
        assert vector == pytest.approx(embedding_vector(text, 8))
    assert len(rows_mock.requests) == 3


async def test_a_failed_embedding_request_fails_only_its_rows(rows_mock: MockRoutmy) -> None:
    """A refused request errors its own rows; bad inputs error alone; the rest get vectors."""
    step = EmbeddingStep(model="mock/embed", base_url=rows_mock.base_url, inputs_per_request=2)
    out = await call(step, {"text": ["a", "FAIL", "c", "d", "", None]})
    await closed(step)
    assert out["embedding"][0] is None and out["embedding"][1] is None
    assert out["embedding"][2] is not None and out["embedding"][3] is not None
    assert "chunk refused" in out["error"][0] == out["error"][1] is not None
    assert out["error"][2:4] == ["", ""]
    assert "non-empty text" in out["error"][4]
    assert "non-empty text" in out["error"][5]


async def test_embeddings_raise_when_asked(rows_mock: MockRoutmy) -> None:
    """With on_error="raise" a bad input or a refused request fails the batch."""
    step = EmbeddingStep(model="mock/embed", base_url=rows_mock.base_url, on_error="raise")
    with pytest.raises(ValueError, match="non-empty text"):
        await call(step, {"text": ["a", ""]})
    with pytest.raises(BadRequestError):
        await call(step, {"text": ["a", "FAIL"]})
    assert await call(step, {"text": []}) == {"text": [], "embedding": [], "error": []}
    await closed(step)


async def test_a_short_answer_fails_its_rows(rows_mock: MockRoutmy) -> None:
    """An answer with fewer vectors than inputs is an error for those rows, not a shift."""
    rows_mock.reply_json(
        {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [1.0]}]}
    )
    step = EmbeddingStep(model="mock/embed", base_url=rows_mock.base_url)
    out = await call(step, {"text": ["a", "b"]})
    await closed(step)
    assert out["embedding"] == [None, None]
    assert "1 vectors came back for 2 inputs" in out["error"][0]


def test_batches_of_an_unknown_kind_are_refused() -> None:
    """A batch must be columns; a missing column names the ones there are."""
    with pytest.raises(TypeError, match="batch_format"):
        Batch([1, 2])
    with pytest.raises(KeyError, match="'a'"):
        Batch({"a": [1]}).column("b")


def test_plain_values() -> None:
    """numpy-like values become Python, and null struct fields go when asked."""

    class Array:
        def __init__(self, items: list[Any]):
            self.items = items

        def tolist(self) -> list[Any]:
            return self.items

    value = Array([{"role": "user", "content": "x", "name": None}, (1, 2)])
    assert plain(value, drop_none=True) == [{"role": "user", "content": "x"}, [1, 2]]
    assert plain(value) == [{"role": "user", "content": "x", "name": None}, [1, 2]]
    sentinel = object()
    assert plain(sentinel) is sentinel


# -- the batch formats Ray Data hands over (its own dependencies) ----------------------


@pytest.fixture
def numpy() -> Iterator[Any]:
    yield pytest.importorskip("numpy")


async def test_numpy_batches(rows_mock: MockRoutmy, numpy: Any) -> None:
    """A dict of numpy columns (Ray's default) gets its new columns as typed Arrow arrays
    (Ray takes them as they are), messages as plain lists Ray can turn back into Arrow."""
    column = numpy.empty(2, dtype=object)
    for index, text in enumerate(["one", "two"]):
        column[index] = numpy.array([{"role": "user", "content": text, "name": None}], dtype=object)
    chat = ChatStep(model="mock/echo", base_url=rows_mock.base_url)
    out = await call(chat, {"id": numpy.arange(2), "messages": column})
    by_prompt = ChatStep(model="mock/echo", base_url=rows_mock.base_url, prompt_column="q")
    prompts = await call(by_prompt, {"q": numpy.array(["numpy text"])})
    await closed(by_prompt)
    assert prompts["content"].to_pylist() == ["numpy text"]
    await closed(chat)
    assert out["content"].to_pylist() == ["one", "two"]
    assert str(out["prompt_tokens"].type) == "int64"
    assert out["messages"][0] == [{"role": "user", "content": "one", "name": None}]
    embed = EmbeddingStep(model="mock/embed", base_url=rows_mock.base_url, inputs_per_request=1)
    vectors = await call(embed, {"text": numpy.array(["a", "FAIL"])})
    await closed(embed)
    assert str(vectors["embedding"].type) == "list<item: float>"
    assert vectors["embedding"][1].as_py() is None


async def test_pandas_batches(rows_mock: MockRoutmy) -> None:
    """A pandas DataFrame gets its new columns in place."""
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame({"question": ["one", "two"]})
    chat = ChatStep(model="mock/echo", base_url=rows_mock.base_url, prompt_column="question")
    out = await call(chat, frame)
    await closed(chat)
    assert list(out["content"]) == ["one", "two"]
    embed = EmbeddingStep(model="mock/embed", base_url=rows_mock.base_url, input_column="question")
    vectors = await call(embed, pandas.DataFrame({"question": ["one"]}))
    await closed(embed)
    assert len(vectors["embedding"][0]) == 8


async def test_pyarrow_batches(rows_mock: MockRoutmy) -> None:
    """A pyarrow Table gets typed columns: strings, int64, float64, list<float32>, and a
    struct for ``parsed``."""
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"messages": messages("order B-2 lost", "FAIL"), "content": ["x", "y"]})
    chat = ChatStep(model="mock/echo", base_url=rows_mock.base_url, response_format=Order)
    out = await call(chat, table)
    await closed(chat)
    assert out.column_names == [
        "messages",
        "content",
        "finish_reason",
        "prompt_tokens",
        "completion_tokens",
        "cost",
        "request_id",
        "error",
        "parsed",
    ]
    assert str(out.schema.field("prompt_tokens").type) == "int64"
    assert str(out.schema.field("cost").type) == "double"
    assert out.column("parsed").to_pylist() == [{"id": "B-2", "status": "lost"}, None]
    assert out.column("content").to_pylist()[1] is None  # replaced, not appended twice
    embed = EmbeddingStep(model="mock/embed", base_url=rows_mock.base_url)
    vectors = await call(embed, pa.table({"text": ["a"]}))
    await closed(embed)
    assert str(vectors.schema.field("embedding").type) == "list<item: float>"


def test_a_json_column_is_text_in_every_batch() -> None:
    """A JSON column is written as JSON text whatever its values, never typed by them."""
    pa = pytest.importorskip("pyarrow")
    batch = Batch(pa.table({"x": [1, 2, 3]}))
    out = batch.extended({"parsed": ("json", [{"a": 1}, {"a": "text"}, None])})
    assert out.column("parsed").to_pylist() == ['{"a":1}', '{"a":"text"}', None]
    assert str(out.schema.field("parsed").type) == "string"


async def test_an_answer_cut_by_a_provider_failure_fails_its_row(rows_mock: MockRoutmy) -> None:
    """finish_reason "error" (a provider that failed mid-answer) or an error object beside
    the choices: the content is cut, so the row fails instead of looking answered."""
    cut = {
        "id": "c1",
        "object": "chat.completion",
        "created": 1,
        "model": "mock/echo",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "The capital of Fra"},
                "finish_reason": "error",
            }
        ],
    }
    beside = {**cut, "error": {"message": "upstream died", "code": 502}}
    beside["choices"] = [{**cut["choices"][0], "finish_reason": "stop"}]  # type: ignore[index]
    rows_mock.reply_json(cut)
    rows_mock.reply_json(beside)
    step = ChatStep(model="mock/echo", base_url=rows_mock.base_url, max_in_flight=1)
    out = await call(step, {"messages": messages("first", "second")})
    await closed(step)
    assert all("provider failed mid-answer" in error for error in out["error"]), out["error"]


async def test_max_in_flight_auto_finds_the_cap_and_keeps_its_level(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``max_in_flight="auto"``: against a cap of 4 the actor's requests stay within its
    ceiling, every row is answered, and the level learnt by one batch is where the next one
    starts."""
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    async with MockRoutmy(api_key=KEY, latency=0.02, max_in_flight=4) as mock:
        step = ChatStep(
            model="mock/echo",
            base_url=mock.base_url,
            max_in_flight="auto",
            max_concurrency=12,
            max_retries=100,
        )
        texts = [f"question {index}" for index in range(60)]
        first = await call(step, {"messages": messages(*texts)})
        auto = step._max_in_flight
        assert isinstance(auto, AutoConcurrency)
        losses, level = auto.losses, auto.level
        second = await call(step, {"messages": messages(*texts)})
        await closed(step)
    assert first["content"] == second["content"] == texts
    assert first["error"] == second["error"] == [""] * 60
    assert losses >= 1 and 1 <= level <= 12
    assert auto.peak_in_flight <= 12 and auto.in_flight == 0
    assert "AutoConcurrency" in repr(step)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_in_flight": "Auto"}, "max_in_flight must be a whole number >= 1 or 'auto'"),
        ({"max_in_flight": "auto", "max_concurrency": 0}, "max_concurrency must be"),
        ({"max_in_flight": 8, "max_concurrency": 16}, "with a fixed max_in_flight=8"),
    ],
)
def test_bad_auto_options_are_refused(
    monkeypatch: pytest.MonkeyPatch, options: dict[str, Any], message: str
) -> None:
    """A mistyped 'auto' or a ceiling that cannot apply is refused when the step is made."""
    monkeypatch.setenv("ROUTMY_API_KEY", KEY)
    with pytest.raises(ValueError, match=message):
        ChatStep(model="m", **options)
    with pytest.raises(ValueError, match=message):
        EmbeddingStep(model="m", **options)
