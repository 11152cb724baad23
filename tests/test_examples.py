"""Every example runs against MockRoutmy with no change (smoke tests, in subprocesses)."""

from __future__ import annotations

import json
import os
import re
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


def test_batch_example_runs_and_resumes(tmp_path):
    """batch.py writes a sample, runs it into OpenAI Batch output lines, and a second run
    skips every line already done."""
    source = tmp_path / "in.jsonl"
    target = tmp_path / "out.jsonl"
    assert run("batch.py", "--sample", str(source)).returncode == 0
    first = run("batch.py", str(source), str(target), "5")
    assert first.returncode == 0, first.stderr
    assert re.search(r"ok +20\n", first.stdout) and "of $5.0000 allowed" in first.stdout
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert sorted(line["custom_id"] for line in lines) == sorted(f"fact-{i}" for i in range(20))
    assert all(line["response"]["status_code"] == 200 for line in lines)
    second = run("batch.py", str(source), str(target))
    assert second.returncode == 0, second.stderr
    assert re.search(r"skipped +20 +already done", second.stdout)
