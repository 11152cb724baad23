"""Every example runs against MockRoutmy with no change (smoke tests, in subprocesses)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ROUTMY_")}


def run(*args: str, warnings: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", *warnings, *args],
        cwd=EXAMPLES,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("quickstart.py", "What does this endpoint do?"),
        ("streaming.py", "finish_reason=stop"),
        ("tools.py", "answer: Tool results"),
        ("structured_output.py", "Order(id='Z-42', status='shipped')"),
        ("vision.py", "[image image/png"),
        ("image_output.py", "image/png"),
        ("worker_pool.py", "50 jobs done by 8 workers"),
    ],
)
def test_example_runs(script, expected):
    """The example exits 0 and prints what it promises."""
    result = run(script)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_batch_example_runs_and_resumes(tmp_path):
    """batch.py writes a sample, runs it into OpenAI Batch output lines, and a second run
    skips every line already done; a budget in quota units too small for one request stops
    the run before it sends anything, and says so."""
    source = tmp_path / "in.jsonl"
    target = tmp_path / "out.jsonl"
    assert run("batch.py", "--sample", str(source)).returncode == 0
    refused = run("batch.py", str(source), str(tmp_path / "budget.jsonl"), "5")
    assert refused.returncode == 1 and "the budget is reached" in refused.stdout
    assert not (tmp_path / "budget.jsonl").read_text()
    first = run("batch.py", str(source), str(target))
    assert first.returncode == 0, first.stderr
    assert re.search(r"ok +20\n", first.stdout) and "cost: unknown" in first.stdout
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == sorted(f"fact-{i}" for i in range(20))
    assert all(line["response"]["status_code"] == 200 for line in lines)
    second = run("batch.py", str(source), str(target))
    assert second.returncode == 0, second.stderr
    assert re.search(r"skipped +20 +already done", second.stdout)


@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="needs the ray extra")
@pytest.mark.timeout(180)
def test_ray_pipeline_example_runs(tmp_path):
    """ray_pipeline.py, as a user runs it with no key: a sample JSONL file in, a local Ray
    and an embedded mock, every row answered into Parquet files."""
    source = tmp_path / "questions.jsonl"
    target = tmp_path / "answers"
    assert run("ray_pipeline.py", "--sample", str(source)).returncode == 0
    # Ray Data warns about its own deprecated settings.
    result = run(
        "ray_pipeline.py", str(source), str(target), warnings=("-W", "ignore::DeprecationWarning")
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "40 rows answered, 0 failed" in result.stdout
    parquet = pytest.importorskip("pyarrow.parquet")
    written = parquet.read_table(str(target), columns=["id", "content"]).to_pylist()
    assert sorted((row["id"], row["content"]) for row in written) == [
        (index, f"One fact about {index}?") for index in range(40)
    ]
