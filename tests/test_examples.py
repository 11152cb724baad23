"""Every example runs against MockRoutmy with no change (smoke tests, in subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
ENV = {k: v for k, v in os.environ.items() if not k.startswith("ROUTMY_")}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "error", *args],
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


def test_batch_example_is_resumable(tmp_path):
    """batch.py writes one JSONL line per prompt, failures included, and skips done lines."""
    source = tmp_path / "in.jsonl"
    target = tmp_path / "out.jsonl"
    source.write_text("".join(json.dumps({"id": i, "prompt": f"p{i}"}) + "\n" for i in range(5)))
    first = run("batch.py", str(source), str(target))
    assert first.returncode == 0, first.stderr
    assert "5 written, 0 skipped" in first.stdout
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert sorted(line["id"] for line in lines) == list(range(5))
    assert all(line["answer"] == f"p{line['id']}" for line in lines)
    with source.open("a") as more:
        more.write(json.dumps({"id": 5, "prompt": "p5"}) + "\n")
    second = run("batch.py", str(source), str(target))
    assert "1 written, 5 skipped" in second.stdout
