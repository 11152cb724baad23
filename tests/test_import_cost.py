"""`import routmy_async` loads only what every user needs; features load on first use."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
import routmy_async
before = sorted(m for m in sys.modules if m.startswith("routmy_async"))
client = routmy_async.AsyncRoutmy(api_key="k")
client.embeddings, client.images
after = sorted(m for m in sys.modules if m.startswith("routmy_async"))
print(json.dumps({"before": before, "after": after, "tqdm": "tqdm" in sys.modules,
                  "testing": "routmy_async.testing" in before}))
"""


def test_unused_features_are_not_imported():
    """Embeddings, images, batching, the CLI, the demo and the mock load only when used."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = json.loads(result.stdout)
    lazy = {
        "routmy_async.resources.embeddings",
        "routmy_async.resources.images",
        "routmy_async._batch",
        "routmy_async._cli",
        "routmy_async._demo",
        "routmy_async.testing",
    }
    assert not lazy & set(loaded["before"])
    assert {"routmy_async.resources.embeddings", "routmy_async.resources.images"} <= set(
        loaded["after"]
    )
    assert not loaded["tqdm"]
