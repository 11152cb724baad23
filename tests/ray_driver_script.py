"""A user's Ray Data driver script, run by tests/test_ray_driver.py as ``python
ray_driver_script.py OUT_DIR``: its types live in ``__main__`` (with postponed annotations),
as they do in a script or a notebook, and Ray sends them to the actors by value. The types of
the batch-schema scenarios come from tests/ray_driver_types.py, shipped with ``py_modules``.

A local server answers each prompt ``ANSWER:<json>`` with ``<json>`` as the content, so the
answers of different batches can disagree on purpose. What each scenario gave (rows read back
from Parquet, or the error it raised) is written as JSON to ``OUT_DIR/results.json``.
"""

from __future__ import annotations

import asyncio
import enum
import json
import os
import shutil
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any

import msgspec
import pyarrow.parquet
import pydantic
from aiohttp import web

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import ray
    import ray.data

import ray_driver_types
from ray_driver_types import Loose, Typed

from routmy_async import SpendLimit
from routmy_async.integrations.ray import ChatStep, ClusterBudget
from routmy_async.testing import MockRoutmy

ROWS = 40
BATCH = 5


class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"


class Line(msgspec.Struct):
    sku: str
    size: Size


class Order(msgspec.Struct, kw_only=True):
    """An order."""

    id: str
    lines: list[Line]
    note: str | None = None


class Flat(msgspec.Struct):
    """Fields of builtin types only: the copy in the actor asks for ``{}`` and parses ``{}``."""

    id: str


class ModelLine(pydantic.BaseModel):
    sku: str
    size: Size


class ModelOrder(pydantic.BaseModel):
    """An order, as a Pydantic model."""

    id: str
    lines: list[ModelLine]
    note: str | None = None


class Scripted(MockRoutmy):
    """Answers ``ANSWER:<json>`` with ``<json>``; a prompt with ``TOOL`` gets a tool call."""

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        text = str(body["messages"][-1]["content"])
        message: dict[str, Any] = {"role": "assistant", "content": text.partition("ANSWER:")[2]}
        return web.json_response(
            {
                "id": "chatcmpl-scripted",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
            }
        )


def loose(index: int) -> dict[str, Any]:
    return {"v": index if (index // BATCH) % 2 else f"text {index}"}


def typed(index: int) -> dict[str, Any]:
    if (index // BATCH) % 2:
        return {"v": index, "tags": ["a", str(index)]}
    return {"v": None, "tags": None}


def order(index: int) -> dict[str, Any]:
    return {"id": f"A-{index}", "lines": [{"sku": f"s{index}", "size": "large"}], "note": None}


def items() -> list[dict[str, Any]]:
    return [
        {
            "id": index,
            "loose_q": "ANSWER:" + json.dumps(loose(index)),
            "typed_q": "ANSWER:" + json.dumps(typed(index)),
            "order_q": "ANSWER:" + json.dumps(order(index)),
        }
        for index in range(ROWS)
    ]


def step(base_url: str, column: str, response_format: Any, prefix: str, **extra: Any) -> Any:
    return {
        "fn_constructor_kwargs": {
            "model": "mock/scripted",
            "base_url": base_url,
            "prompt_column": column,
            "response_format": response_format,
            "output_prefix": prefix,
            "max_in_flight": 4,
            **extra,
        },
        "compute": ray.data.ActorPoolStrategy(size=1),
        "num_cpus": 0.25,
        "batch_size": BATCH,
    }


def read_back(folder: Path) -> dict[str, Any]:
    table = pyarrow.parquet.read_table(str(folder))
    rows = sorted(table.to_pylist(), key=lambda row: row["id"])
    return {"schema": {field.name: str(field.type) for field in table.schema}, "rows": rows}


def disagreeing_batches(base_url: str, out: Path, batch_format: str | None) -> dict[str, Any]:
    """Batches whose answers differ in type, written to Parquet and read back as one."""
    options: dict[str, Any] = {} if batch_format is None else {"batch_format": batch_format}
    dataset = (
        ray.data.from_items(items())
        .map_batches(ChatStep, **step(base_url, "loose_q", Loose, "loose_"), **options)
        .map_batches(ChatStep, **step(base_url, "typed_q", Typed, "typed_"), **options)
    )
    folder = out / f"parquet-{batch_format or 'default'}"
    dataset.write_parquet(str(folder))
    return read_back(folder)


def parsed_into(base_url: str, out: Path, response_format: Any, name: str) -> dict[str, Any]:
    dataset = ray.data.from_items(items()).map_batches(
        ChatStep, **step(base_url, "order_q", response_format, ""), batch_format="pyarrow"
    )
    folder = out / name
    dataset.write_parquet(str(folder))
    return read_back(folder)


def ship(line: Line) -> str:
    """A function tool whose parameter is a Struct of this script."""
    return line.sku


def as_tool(base_url: str, out: Path, tool: Any) -> dict[str, Any]:
    options = step(base_url, "order_q", None, "", tools=[tool])
    dataset = ray.data.from_items(items()).map_batches(ChatStep, **options)
    folder = out / "tool"
    dataset.write_parquet(str(folder))
    return read_back(folder)


def within_spend_limit(base_url: str, out: Path) -> dict[str, Any]:
    """Two actors under one ClusterBudget spend limit that cannot answer every row (each
    answer uses 5 units, each worst case about 60), written to Parquet and read back."""
    budget = ClusterBudget(name="driver-spend", spend_limit=SpendLimit(max_units=150))
    options = step(base_url, "loose_q", None, "", budget=budget, max_tokens=20)
    options["fn_constructor_kwargs"]["model"] = "mock/echo"  # listed with token_multiplier 1
    options["compute"] = ray.data.ActorPoolStrategy(size=2)
    dataset = ray.data.from_items(items()).map_batches(ChatStep, **options)
    folder = out / "spend"
    dataset.write_parquet(str(folder))
    result = read_back(folder)
    result["spend"] = {name: str(value) for name, value in budget.stats()["spend"].items()}
    return result


def attempt(work: Any, *args: Any) -> Any:
    try:
        return work(*args)
    except Exception as exc:
        return {"raised": f"{type(exc).__name__}: {exc}"}


def main(out: Path) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = Scripted()
    asyncio.run_coroutine_threadsafe(server.start(), loop).result()
    os.environ["ROUTMY_API_KEY"] = server.api_key  # before Ray starts: workers inherit it
    temp_dir = tempfile.mkdtemp(prefix="ray-")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        _node_ip_address="127.0.0.1",
        _temp_dir=temp_dir,  # short: Ray's Unix socket paths have a length limit
        runtime_env={"py_modules": [ray_driver_types]},
    )
    ray.data.DataContext.get_current().enable_progress_bars = False
    base_url = server.base_url
    results = {
        "default": attempt(disagreeing_batches, base_url, out, None),
        "numpy": attempt(disagreeing_batches, base_url, out, "numpy"),
        "pandas": attempt(disagreeing_batches, base_url, out, "pandas"),
        "pyarrow": attempt(disagreeing_batches, base_url, out, "pyarrow"),
        "struct": attempt(parsed_into, base_url, out, Order, "struct"),
        "flat": attempt(parsed_into, base_url, out, Flat, "flat"),
        "model": attempt(parsed_into, base_url, out, ModelOrder, "model"),
        "tool": attempt(as_tool, base_url, out, Order),
        "function_tool": attempt(as_tool, base_url, out, ship),
        "spend": attempt(within_spend_limit, base_url, out),
    }
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
    asyncio.run_coroutine_threadsafe(server.close(), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    (out / "results.json").write_text(json.dumps(results))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
