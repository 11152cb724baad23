"""`import routmy_async` loads only what every user needs; features load on first use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
    """Embeddings, images, batching, batch files, the Responses API, the CLI, the demo and
    the mock load only when used."""
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
        "routmy_async._batchfile",
        "routmy_async.resources.responses._stream",
        "routmy_async.types.responses",
        "routmy_async.types.response_events",
        "routmy_async.resources.responses",
        "routmy_async._spend",
        "routmy_async._http._spend_gate",
    }
    assert not lazy & set(loaded["before"]), sorted(lazy & set(loaded["before"]))
    assert {"routmy_async.resources.embeddings", "routmy_async.resources.images"} <= set(
        loaded["after"]
    )
    assert not loaded["tqdm"]
    assert "routmy_async._spend" not in loaded["after"], "a client without a spend limit"


MSGSPEC_ONLY = """
import asyncio, json, sys
import msgspec
import routmy_async
from routmy_async import AsyncRoutmy, function_tool
from routmy_async.testing import MockRoutmy

loaded_at_import = sorted(m for m in sys.modules if m.startswith("routmy_async"))


class Order(msgspec.Struct):
    id: str
    status: str


def get_order(order_id: str, count: int = 1) -> Order:
    return Order(id=order_id, status="shipped")


async def main():
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            ask = [{"role": "user", "content": "Order A-1 has shipped"}]
            parsed = await client.chat.completions.parse(
                model="mock/echo", messages=ask, response_format=Order
            )
            assert isinstance(parsed.choices[0].message.parsed, Order)
            parsed.to_dict(), parsed.to_json()
            async with client.chat.completions.stream(
                model="mock/echo", messages=ask, response_format=Order
            ) as stream:
                await stream.until_done()
            await client.chat.completions.run_tools(
                model="mock/echo", messages=ask, tools=[get_order, function_tool(Order)]
            )
            stream = await client.chat.completions.create(
                model="mock/echo", messages=ask, stream=True
            )
            frames = [frame async for frame in stream.to_sse()]
            assert frames[-1] == b"data: [DONE]\\n\\n"


asyncio.run(main())
print(json.dumps({
    "at_import": loaded_at_import,
    "third_party": sorted(
        m for m in ("pydantic", "pydantic_core", "starlette", "fastapi") if m in sys.modules
    ),
    "pydantic_helper": "routmy_async._pydantic" in sys.modules,
}))
"""


def test_msgspec_users_never_load_pydantic_or_starlette():
    """Structs for parse, stream-parse and tools, to_dict/to_json and to_sse() import neither
    Pydantic nor Starlette, and `import routmy_async` loads neither new helper module."""
    result = subprocess.run(
        [sys.executable, "-c", MSGSPEC_ONLY],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = json.loads(result.stdout)
    assert loaded["third_party"] == []
    assert not loaded["pydantic_helper"]
    assert not {"routmy_async._pydantic", "routmy_async.resources.chat._sse_out"} & set(
        loaded["at_import"]
    )


def test_a_pydantic_type_is_what_loads_pydantic_support():
    """The probe above can see imports: the same program with a BaseModel loads the helper."""
    probe = (
        "import sys, routmy_async, pydantic\n"
        "from routmy_async import function_tool\n"
        "assert 'routmy_async._pydantic' not in sys.modules\n"
        "class Item(pydantic.BaseModel):\n"
        "    name: str\n"
        "function_tool(Item)\n"
        "print('routmy_async._pydantic' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "True"


def test_lazy_names_load_on_first_use_and_are_listed():
    """Names loaded on first use are the real objects, in dir() and __all__ alike."""
    import routmy_async
    import routmy_async.types as types_module
    from routmy_async._batchfile import BatchSummary
    from routmy_async.resources.responses._stream import ResponseStream
    from routmy_async.types.responses import Response

    assert routmy_async.BatchSummary is BatchSummary
    assert routmy_async.ResponseStream is ResponseStream
    assert types_module.Response is Response
    assert {"BatchSummary", "ResponseStream", "run_batch_file"} <= set(dir(routmy_async))
    assert "Response" in dir(types_module)
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        routmy_async.Nope  # noqa: B018
