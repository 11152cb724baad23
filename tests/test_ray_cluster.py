"""The Ray Data steps on a real local Ray (``ray.init(num_cpus=2)``), against a MockRoutmy
running in this process on 127.0.0.1 that the actors reach by URL.

Skipped when Ray is not installed (``pip install -e '.[dev,ray]'``). Ray starts once for the
module; every pipeline uses 2 actors or more.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    ray = pytest.importorskip("ray")
    ray_data = pytest.importorskip("ray.data")

from routmy_async import SpendLimit
from routmy_async.integrations.ray import ChatStep, ClusterBudget, EmbeddingStep
from routmy_async.testing import MockRoutmy
from routmy_async.testing._replies import embedding_vector

pytestmark = [
    # Starting Ray on a 2-core machine takes a while; the module's first test pays for it.
    pytest.mark.timeout(300),
    # Ray Data's own DataContext warns about its own deprecated fields.
    pytest.mark.filterwarnings(r"ignore::DeprecationWarning:ray\."),
    # Older Rays leave their own log files open in the driver.
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <_io\.FileIO name='[^']*/logs/"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

KEY = "sk-ray-cluster-test-93b1e07c55"
ROWS = 48
ORDER_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "Order",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {"id": {"type": "string"}, "status": {"type": "string"}},
            "required": ["id", "status"],
            "additionalProperties": False,
        },
    },
}


class ClusterMock(MockRoutmy):
    """The mock with failing rows (FAIL, ECHO-KEY), each chat request's arrival time and
    peer (one connection per actor when its max_in_flight is 1), and an optional 429 storm."""

    def __init__(self) -> None:
        super().__init__(api_key=KEY, latency=0.0)
        self.arrivals: list[tuple[float, Any]] = []
        self.storm_at: float | None = None
        self.storm = False

    def reset(self, *, latency: float = 0.0, storm: bool = False) -> None:
        self.clear()
        self.request_times.clear()
        self.arrivals.clear()
        self.latency = latency
        self.storm = storm
        self.storm_at = None

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        now = time.monotonic()
        self.arrivals.append(
            (now, request.transport and request.transport.get_extra_info("peername"))
        )
        if self.storm and self.storm_at is None:
            recent = {peer for at, peer in self.arrivals if now - at < 0.5}
            if len(recent) >= 2:  # both actors are sending: now one of them gets a 429
                self.storm_at = now
                return web.json_response(
                    {"error": {"message": "slow down"}},
                    status=429,
                    headers={"Retry-After": "1.5"},
                )
        body = await request.json()
        text = str(body["messages"][-1].get("content", ""))
        if "ECHO-KEY" in text:
            message = f"not allowed for {request.headers.get('Authorization')}"
            return web.json_response({"error": {"message": message}}, status=400)
        if "FAIL" in text:
            return web.json_response({"error": {"message": "row refused"}}, status=400)
        return await super()._chat(request)

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if any("FAIL" in text for text in body["input"]):
            return web.json_response({"error": {"message": "chunk refused"}}, status=400)
        return await super()._embeddings(request)


@pytest.fixture(scope="module")
def temp_dir() -> Iterator[Path]:
    # Short: Ray puts Unix sockets under it, and their paths have a length limit.
    path = Path(tempfile.mkdtemp(prefix="ray-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster(temp_dir: Path) -> Iterator[None]:
    """A local Ray on loopback; its processes inherit the key from this environment."""
    previous = os.environ.get("ROUTMY_API_KEY")
    os.environ["ROUTMY_API_KEY"] = KEY
    try:
        ray.init(
            address="local",
            num_cpus=2,
            include_dashboard=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
            _temp_dir=str(temp_dir),
        )
        context = ray_data.DataContext.get_current()
        context.enable_progress_bars = False
        yield
    finally:
        ray.shutdown()
        if previous is None:
            os.environ.pop("ROUTMY_API_KEY", None)
        else:
            os.environ["ROUTMY_API_KEY"] = previous


@pytest.fixture(scope="module")
def mock() -> Iterator[ClusterMock]:
    """The mock on its own loop in a thread: the test thread blocks in Ray meanwhile."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = ClusterMock()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result()
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()


def rows_by_id(dataset: Any) -> list[dict[str, Any]]:
    return sorted(dataset.take_all(), key=lambda row: row["id"])


def prompt(index: int) -> str:
    if index in (5, 17):
        return f"FAIL row {index}"
    if index == 30:
        return "ECHO-KEY row"
    return f"row {index}"


def stages(mock: MockRoutmy, budget: ClusterBudget) -> list[dict[str, Any]]:
    """The main pipeline's stages: chat (numpy batches), a typed chat and embeddings
    (pyarrow batches, which keep nullable ints as ints downstream), every one spending the
    same budget and writing its own columns."""
    common = {"base_url": mock.base_url, "budget": budget}
    return [
        {
            "fn_constructor_kwargs": {"model": "mock/echo", "max_in_flight": 4, **common},
            "compute": ray_data.ActorPoolStrategy(size=2),
            "batch_size": 8,
        },
        {
            "fn_constructor_kwargs": {
                "model": "mock/echo",
                "prompt_column": "order",
                "response_format": ORDER_SCHEMA,
                "output_prefix": "typed_",
                **common,
            },
            "compute": ray_data.ActorPoolStrategy(size=1),
            "batch_size": 16,
            "batch_format": "pyarrow",
        },
        {
            "fn_constructor_kwargs": {
                "model": "mock/embed",
                "inputs_per_request": 4,
                "dimensions": 8,
                "output_prefix": "text_",
                **common,
            },
            "compute": ray_data.ActorPoolStrategy(size=1),
            "batch_size": 16,
            "batch_format": "pyarrow",
        },
    ]


@pytest.fixture(scope="module")
def pipeline(
    cluster: None, mock: ClusterMock
) -> tuple[list[dict[str, Any]], ClusterBudget, list[Any]]:
    mock.reset()
    budget = ClusterBudget(requests_per_minute=100_000, name="main")
    items = [
        {
            "id": index,
            "messages": [] if index == 41 else [{"role": "user", "content": prompt(index)}],
            "order": f"order A-{index} shipped",
            "text": "FAIL" if index == 9 else f"text {index}",
        }
        for index in range(ROWS)
    ]
    chat, typed, embed = stages(mock, budget)
    dataset = (
        ray_data.from_items(items)
        .map_batches(ChatStep, num_cpus=0.25, **chat)
        .map_batches(ChatStep, num_cpus=0.25, **typed)
        .map_batches(EmbeddingStep, num_cpus=0.25, **embed)
    )
    return rows_by_id(dataset), budget, [chat, typed, embed]


def test_every_row_gets_its_own_answer(pipeline: Any) -> None:
    """Through 2 actors and batches of 8, each row's content is its own prompt's answer."""
    rows, _, _ = pipeline
    assert [row["id"] for row in rows] == list(range(ROWS))
    good = [row for row in rows if row["error"] == ""]
    assert len(good) == ROWS - 4
    for row in good:
        assert row["content"] == f"row {row['id']}"
        assert row["finish_reason"] == "stop"
        assert isinstance(row["prompt_tokens"], int)
        assert row["prompt_tokens"] > 0
        assert row["request_id"].startswith("req-mock-")


def test_failed_rows_are_recorded_and_the_rest_kept(pipeline: Any) -> None:
    """Refused rows and an empty message list carry their error; their batches' other rows
    are answered."""
    rows, _, _ = pipeline
    for index in (5, 17):
        assert rows[index]["error"].startswith("BadRequestError:")
        assert rows[index]["content"] is None
        assert rows[index + 1]["error"] == ""
    assert "non-empty list" in rows[41]["error"]
    assert rows[40]["content"] == "row 40"


def test_the_parsed_column(pipeline: Any) -> None:
    """The typed step's ``parsed`` holds each row's own object (as JSON text: a dict
    response_format says nothing of the values' types)."""
    rows, _, _ = pipeline
    for row in rows:
        assert json.loads(row["typed_parsed"]) == {"id": f"A-{row['id']}", "status": "shipped"}
        assert row["typed_error"] == ""


def test_the_embedding_column(pipeline: Any) -> None:
    """Each row's vector is its own text's; the refused request fails only its 4 rows."""
    rows, _, _ = pipeline
    failed = [row["id"] for row in rows if row["text_embedding"] is None]
    assert len(failed) == 4  # the request holding "FAIL"
    assert 9 in failed
    for row in rows:
        if row["id"] in failed:
            assert "chunk refused" in row["text_error"]
        else:
            assert row["text_embedding"] == pytest.approx(embedding_vector(row["text"], 8))
            assert row["text_error"] == ""


def test_the_key_never_leaves_the_environment(pipeline: Any, temp_dir: Path) -> None:
    """Not in what the steps are given (the pickled constructor arguments), not in an error
    that echoed it, not in any of Ray's log files."""
    rows, budget, stage_options = pipeline
    for options in stage_options:
        assert KEY.encode() not in ray.cloudpickle.dumps(options["fn_constructor_kwargs"])
    assert KEY.encode() not in ray.cloudpickle.dumps(budget)
    assert "[REDACTED]" in rows[30]["error"]
    assert all(KEY not in str(row) for row in rows)
    for path in temp_dir.rglob("*"):
        if path.is_file() and not path.is_socket():
            assert KEY.encode() not in path.read_bytes(), path


def test_every_actor_closed_its_client(pipeline: Any) -> None:
    """All 4 actors joined the budget when their client was built and left it after closing
    their client, when Ray Data let them go."""
    _, budget, _ = pipeline
    deadline = time.monotonic() + 60
    stats = budget.stats()
    while stats["left"] < stats["joined"] and time.monotonic() < deadline:
        time.sleep(0.2)
        stats = budget.stats()
    assert stats["joined"] == 4
    assert stats["left"] == 4


def test_the_cluster_budget_holds_across_actors(cluster: None, mock: ClusterMock) -> None:
    """With 12 requests per 1.5 s for the cluster and 2 actors, the server never sees more
    than 12 in any 1.5 s, and both actors spent the budget."""
    mock.reset()
    budget = ClusterBudget(requests_per_minute=12, window=1.5, grant_seconds=0.3, name="tight")
    items = [
        {"id": index, "messages": [{"role": "user", "content": f"row {index}"}]}
        for index in range(36)
    ]
    dataset = ray_data.from_items(items).map_batches(
        ChatStep,
        fn_constructor_kwargs={
            "model": "mock/echo",
            "base_url": mock.base_url,
            "budget": budget,
            "max_in_flight": 3,
        },
        compute=ray_data.ActorPoolStrategy(size=2),
        batch_size=6,
        num_cpus=0.25,
    )
    rows = rows_by_id(dataset)
    assert [row["content"] for row in rows] == [f"row {index}" for index in range(36)]
    times = sorted(mock.request_times)
    busiest = max(sum(1 for later in times if start <= later < start + 1.5) for start in times)
    assert busiest <= 12
    spent = budget.stats()["spent_by_member"]
    assert len([member for member, count in spent.items() if count > 0]) >= 2


def test_the_budget_survives_its_coordinators_death(cluster: None, mock: ClusterMock) -> None:
    """The coordinator is killed mid-run: Ray restarts it, the steps get their grants from
    the new one, every row is answered, and the server still never sees more than the
    limit in any window (the new coordinator assumes the lost one's grants spent)."""
    mock.reset(latency=0.02)
    budget = ClusterBudget(requests_per_minute=12, window=1.5, grant_seconds=0.3, name="phoenix")
    items = [
        {"id": index, "messages": [{"role": "user", "content": f"row {index}"}]}
        for index in range(48)
    ]
    dataset = ray_data.from_items(items).map_batches(
        ChatStep,
        fn_constructor_kwargs={
            "model": "mock/echo",
            "base_url": mock.base_url,
            "budget": budget,
            "max_in_flight": 3,
        },
        compute=ray_data.ActorPoolStrategy(size=2),
        batch_size=6,
        num_cpus=0.25,
    )
    killed: list[int] = []

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 120
        while len(mock.request_times) < 12 and time.monotonic() < deadline:
            time.sleep(0.05)
        killed.append(len(mock.request_times))
        ray.kill(ray.get_actor(budget.name, namespace=budget.namespace), no_restart=False)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    rows = rows_by_id(dataset)
    killer.join()
    assert killed and killed[0] < 48  # it died with rows still to answer
    assert [row["error"] for row in rows] == [""] * 48
    assert [row["content"] for row in rows] == [f"row {index}" for index in range(48)]
    times = sorted(mock.request_times)
    busiest = max(sum(1 for later in times if start <= later < start + 1.5) for start in times)
    assert busiest <= 12
    assert budget.stats()["restarted"] is True


def test_the_spend_limit_holds_across_actors_and_a_coordinator_death(
    cluster: None, mock: ClusterMock
) -> None:
    """Two actors share a spend limit of 400 quota units that cannot answer all 120 rows,
    and the coordinator is killed mid-run: what the answers used stays within the limit,
    every other row fails with a SpendLimitError naming the cluster's limit (nothing sent
    for it), and the restarted coordinator still counts what was spent before its death."""
    mock.reset(latency=0.02)
    budget = ClusterBudget(name="spend", spend_limit=SpendLimit(max_units=400))
    items = [{"id": index, "prompt": f"row {index}"} for index in range(120)]
    dataset = ray_data.from_items(items).map_batches(
        ChatStep,
        fn_constructor_kwargs={
            "model": "mock/echo",
            "base_url": mock.base_url,
            "budget": budget,
            "prompt_column": "prompt",
            "max_tokens": 40,
            "max_in_flight": 3,
        },
        compute=ray_data.ActorPoolStrategy(size=2),
        batch_size=10,
        num_cpus=0.25,
    )
    killed: list[int] = []

    def kill_when_busy() -> None:
        deadline = time.monotonic() + 120
        while len(mock.request_times) < 20 and time.monotonic() < deadline:
            time.sleep(0.02)
        killed.append(len(mock.request_times))
        ray.kill(ray.get_actor(budget.name, namespace=budget.namespace), no_restart=False)

    killer = threading.Thread(target=kill_when_busy)
    killer.start()
    rows = rows_by_id(dataset)
    killer.join()
    assert killed and killed[0] >= 20
    answered = [row for row in rows if not row["error"]]
    refused = [row for row in rows if row["error"]]
    assert answered and refused
    assert all(
        row["error"].startswith("SpendLimitError: spend limit: refused a request to 'mock/echo'")
        and row["content"] is None
        for row in refused
    )
    sent = [request for request in mock.requests if request.path.endswith("/chat/completions")]
    assert len(sent) == len(answered)  # a refused row sent nothing
    used = sum(row["prompt_tokens"] + row["completion_tokens"] for row in answered)  # x1
    assert used <= 400
    stats = budget.stats()
    assert stats["restarted"] is True
    spend = stats["spend"]
    assert spend["limit"] == 400
    assert used <= spend["spent"] + spend["held"] <= 400


def test_a_429_pauses_every_actor(cluster: None, mock: ClusterMock) -> None:
    """While both actors send, a 429 with Retry-After: 1.5 to one of them stops both: the
    server sees nothing from anyone until the pause is nearly over."""
    mock.reset(latency=0.05, storm=True)
    budget = ClusterBudget(name="storm")  # no limits: only the shared pause
    items = [
        {"id": index, "messages": [{"role": "user", "content": f"row {index}"}]}
        for index in range(80)
    ]
    dataset = ray_data.from_items(items).map_batches(
        ChatStep,
        fn_constructor_kwargs={
            "model": "mock/echo",
            "base_url": mock.base_url,
            "budget": budget,
            "max_in_flight": 1,
        },
        compute=ray_data.ActorPoolStrategy(size=2),
        batch_size=4,
        num_cpus=0.25,
    )
    rows = rows_by_id(dataset)
    assert all(row["error"] == "" for row in rows)
    storm = mock.storm_at
    assert storm is not None
    during = [at - storm for at, _ in mock.arrivals if storm + 0.25 < at < storm + 1.4]
    assert during == []
    assert budget.stats()["pauses"] >= 1


def test_the_example_pipeline(cluster: None, mock: ClusterMock, tmp_path: Path) -> None:
    """examples/ray_pipeline.py reads a JSONL file, answers every row through 2 actors and
    writes JSON Lines (its Parquet output runs in tests/test_examples.py)."""
    path = Path(__file__).resolve().parent.parent / "examples" / "ray_pipeline.py"
    spec = importlib.util.spec_from_file_location("ray_pipeline_example", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    mock.reset()
    source = tmp_path / "questions.jsonl"
    example.write_sample(source, 12)
    target = tmp_path / "answers"
    summary = example.run(
        source, target, model="mock/echo", base_url=mock.base_url, actors=2, output="json"
    )
    assert summary.startswith("12 rows answered, 0 failed")
    written = [
        json.loads(line)
        for file in sorted(target.glob("*.json"))
        for line in file.read_text().splitlines()
    ]
    assert sorted((row["id"], row["content"]) for row in written) == [
        (index, f"One fact about {index}?") for index in range(12)
    ]
    assert all(row["error"] == "" and row["prompt_tokens"] > 0 for row in written)
