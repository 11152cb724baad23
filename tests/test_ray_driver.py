"""The Ray Data step as a user runs it: ``python script.py``, types defined in the script
(``__main__``), batches whose answers disagree, written to Parquet and read back as one.

tests/ray_driver_script.py runs once, in a subprocess with a Ray of its own, and reports
what every scenario gave; each test here checks one of them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    pytest.importorskip("ray.data")
    pytest.importorskip("pydantic")

SCRIPT = Path(__file__).resolve().parent / "ray_driver_script.py"
ROWS = 40
BATCH = 5

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("driver")
    done = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    loaded: dict[str, Any] = json.loads((out / "results.json").read_text())
    return loaded


def loose(index: int) -> Any:
    return {"v": index if (index // BATCH) % 2 else f"text {index}"}


def typed(index: int) -> Any:
    if (index // BATCH) % 2:
        return {"v": index, "tags": ["a", str(index)]}
    return {"v": None, "tags": None}


@pytest.mark.parametrize("batch_format", ["default", "numpy", "pandas", "pyarrow"])
def test_disagreeing_batches_make_one_parquet_dataset(
    results: dict[str, Any], batch_format: str
) -> None:
    """Answers of different types in different batches are written with one schema per
    column: a type with no single Arrow type (``int | str``) as JSON text, a struct with
    nullable fields as the same struct in every batch, all null or not."""
    result = results[batch_format]
    assert "raised" not in result, result
    schema = result["schema"]
    assert schema["loose_parsed"] == "string"
    assert schema["typed_parsed"] == "struct<v: int64, tags: list<element: string>>"
    assert schema["typed_prompt_tokens"] == "int64"
    rows = result["rows"]
    assert [row["id"] for row in rows] == list(range(ROWS))
    for row in rows:
        index = row["id"]
        assert row["loose_error"] == "" and row["typed_error"] == ""
        assert json.loads(row["loose_parsed"]) == loose(index)
        assert row["typed_parsed"] == typed(index)


@pytest.mark.parametrize(("scenario", "name"), [("struct", "Order"), ("flat", "Flat")])
def test_a_struct_from_the_script_is_refused_not_emptied(
    results: dict[str, Any], scenario: str, name: str
) -> None:
    """A msgspec Struct defined in the driver script reaches the actors without its fields:
    the step refuses it with an error saying why and what to do, instead of asking for
    ``{}`` and writing ``{}`` into every row (or failing each row on a nested type's name)."""
    result = results[scenario]
    assert "raised" in result, result["rows"][:2]
    assert f"'{name}'" in result["raised"]
    assert "without its fields" in result["raised"]
    assert "py_modules" in result["raised"]


def test_a_struct_tool_from_the_script_is_refused(results: dict[str, Any]) -> None:
    """The same for a Struct given as a tool."""
    result = results["tool"]
    assert "raised" in result, result["rows"][:2]
    assert "without its fields" in result["raised"]


def test_a_function_tool_on_types_of_the_script_is_refused(results: dict[str, Any]) -> None:
    """A function tool whose annotations name the script's types is refused at the start,
    not failed row by row."""
    result = results["function_tool"]
    assert "raised" in result, result["rows"][:2]
    assert "the tool 'ship'" in result["raised"]
    assert "py_modules" in result["raised"]


def test_a_pydantic_model_from_the_script_parses_every_row(results: dict[str, Any]) -> None:
    """A Pydantic model (with a nested model and an Enum) defined in the script survives the
    trip: every row's ``parsed`` is its own order, typed as a struct."""
    result = results["model"]
    assert "raised" not in result, result
    assert result["schema"]["parsed"] == (
        "struct<id: string, lines: list<element: struct<sku: string, size: string>>, note: string>"
    )
    for row in result["rows"]:
        index = row["id"]
        assert row["error"] == ""
        assert row["parsed"] == {
            "id": f"A-{index}",
            "lines": [{"sku": f"s{index}", "size": "large"}],
            "note": None,
        }


def test_a_cluster_spend_limit_fails_the_rows_it_refuses(results: dict[str, Any]) -> None:
    """Under a ClusterBudget spend limit too small for every row, the answered rows used at
    most the limit, and every other row is written with a SpendLimitError in ``error`` and
    no answer (never an empty success)."""
    result = results["spend"]
    assert "raised" not in result, result
    rows = result["rows"]
    assert [row["id"] for row in rows] == list(range(ROWS))
    answered = [row for row in rows if row["error"] == ""]
    refused = [row for row in rows if row["error"] != ""]
    assert answered and refused
    for row in refused:
        assert row["error"].startswith("SpendLimitError: spend limit: refused a request")
        assert row["content"] is None and row["prompt_tokens"] is None
    used = sum(row["prompt_tokens"] + row["completion_tokens"] for row in answered)
    assert used <= 150
    assert result["spend"]["limit"] == "150"
