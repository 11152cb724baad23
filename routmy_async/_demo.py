"""``python -m routmy_async demo``: every feature, end to end, against an embedded MockRoutmy.

No key and no network: the mock listens on 127.0.0.1 and answers deterministically.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import msgspec

from ._auto_concurrency import AutoConcurrency
from ._client import AsyncRoutmy
from ._content import image_part, text_part
from ._exceptions import FieldValidationError, PermissionDeniedError, SpendLimitError
from ._spend import SpendLimit
from .testing import MockRoutmy, png_bytes
from .types import ContentDeltaEvent, ToolCallDoneEvent

__all__ = ["run_demo"]


def _say(text: str = "", end: str = "\n") -> None:
    sys.stdout.write(text + end)
    sys.stdout.flush()


def _section(number: int, title: str) -> None:
    _say(f"\n== {number}. {title} " + "=" * max(4, 60 - len(title)))


class Order(msgspec.Struct):
    """An order and its status."""

    id: str
    status: str
    items: list[str]


async def get_order_status(order_id: str) -> dict[str, str]:
    """Look up the status of an order.

    :param order_id: the order's id, such as "A-123".
    """
    return {"order_id": order_id, "status": "shipped", "carrier": "mock-post"}


def _item_line(item: dict[str, Any]) -> str:
    """One input item of a Responses tool loop, in a line."""
    kind = item.get("type") or item.get("role")
    if kind == "function_call":
        return f"function_call: {item['name']}({item['arguments']})"
    if kind == "function_call_output":
        return f"function_call_output: {item['output']}"
    if kind == "message":
        return f"message: {item['content'][0]['text']!r}"
    return f"{kind}: {item.get('content')!r}"


def ask(text: str) -> list[dict[str, object]]:
    return [{"role": "user", "content": text}]


@dataclass(frozen=True)
class _Stage:
    """What every demo step may use: the client, the mock behind it, and a folder for files."""

    client: AsyncRoutmy
    mock: MockRoutmy
    out_dir: Path


async def _batch_files(stage: _Stage) -> None:
    """An OpenAI Batch-format file: checked, run, stopped after 6 results, run again."""
    from ._batchfile import BatchStop, BatchSummary, check_batch_file, run_batch_file

    client, mock, out_dir = stage.client, stage.mock, stage.out_dir

    source = out_dir / "requests.jsonl"
    target = out_dir / "results.jsonl"
    lines = [
        {
            "custom_id": f"question-{i:02d}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "mock/echo", "messages": ask(f"question {i}"), "max_tokens": 32},
        }
        for i in range(24)
    ]
    source.write_bytes(b"".join(msgspec.json.encode(line) + b"\n" for line in lines))
    check = await check_batch_file(source)
    _say(
        f"{source.name}: {check.valid} valid lines, ~{check.estimated_tokens:,} tokens "
        "estimated (--dry-run)"
    )
    stop = BatchStop()

    def interrupt_at_6(summary: BatchSummary) -> None:
        if summary.done == 6:
            _say("  Ctrl-C after 6 results: no new starts, the requests in flight finish")
            stop.request()

    mock.latency = 0.02
    first = await run_batch_file(
        client, source, target, concurrency=4, stop=stop, progress=interrupt_at_6
    )
    mock.latency = 0.0
    _say(
        f"first run: {first.ok} results written, {first.not_started} not started "
        f"(stop_reason={first.stop_reason!r})"
    )
    second = await run_batch_file(client, source, target, concurrency=4)
    _say(f"second run (the same call): {second.skipped} skipped as done, {second.ok} written")
    result = msgspec.json.decode(target.read_bytes().split(b"\n", 1)[0])
    answer = result["response"]["body"]["choices"][0]["message"]["content"]
    _say(
        f"a result line: id={result['id'][:16]}..., custom_id={result['custom_id']}, "
        f"status_code={result['response']['status_code']}, answer={answer!r}"
    )
    for text in second.format().splitlines():
        _say(f"  {text}")


async def _plain_chat(stage: _Stage) -> None:
    completion = await stage.client.chat.completions.create(
        model="mock/echo", messages=ask("What does this endpoint do?"), max_tokens=64
    )
    usage = completion.usage
    _say(f"answer: {completion.choices[0].message.content!r}")
    _say(
        f"usage: {usage.total_tokens if usage else '?'} tokens, request id {completion.request_id}"
    )


async def _streaming(stage: _Stage) -> None:
    async with stage.client.chat.completions.stream(
        model="mock/echo", messages=ask("Streams arrive piece by piece, like this.")
    ) as stream:
        _say("deltas: ", end="")
        async for piece in stream.text_deltas():
            _say(piece + "|", end="")
        _say()
    final = stream.get_final_completion()
    _say(
        f"accumulated: {final.choices[0].message.content!r} "
        f"(finish_reason={final.choices[0].finish_reason})"
    )


async def _tool_loop(stage: _Stage) -> None:
    result = await stage.client.chat.completions.run_tools(
        model="mock/echo",
        messages=ask("What is the status of order A-123?"),
        tools=[get_order_status],
    )
    for message in result.transcript or []:
        role = message["role"] if isinstance(message, dict) else message.role
        detail = message.get("content") if isinstance(message, dict) else message
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if calls:
            detail = ", ".join(
                f"{c['function']['name']}({c['function']['arguments']})" for c in calls
            )
        _say(f"  {role:>9}: {detail}")


async def _streamed_tool_calls(stage: _Stage) -> None:
    async with stage.client.chat.completions.stream(
        model="mock/echo",
        messages=ask("Where is order B-7?"),
        tools=[get_order_status],
    ) as stream:
        async for event in stream.events():
            if isinstance(event, ToolCallDoneEvent):
                call = event.tool_call
                _say(f"tool call done: {call.function.name}({call.function.arguments})")


async def _structured_output(stage: _Stage) -> None:
    parsed = await stage.client.chat.completions.parse(
        model="mock/echo", messages=ask("Order C-9 with a lamp"), response_format=Order
    )
    _say(f"parsed: {parsed.choices[0].message.parsed!r}")


class Shipment(msgspec.Struct):
    """A shipment, for the partial-output step."""

    id: str
    carrier: Literal["dhl", "ups"]
    days: int


def _scripted_answer(text: str) -> list[dict[str, Any]]:
    """The chunks of a chat stream saying ``text`` in 9-character deltas (MockRoutmy streams
    exactly these)."""
    head = {"id": "demo", "object": "chat.completion.chunk", "created": 1, "model": "mock/echo"}
    pieces = [text[i : i + 9] for i in range(0, len(text), 9)]
    deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
    deltas += [{"content": piece} for piece in pieces]
    chunks = [{**head, "choices": [{"index": 0, "delta": d}]} for d in deltas]
    chunks.append({**head, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return chunks


async def _partial_output(stage: _Stage) -> None:
    stage.mock.reply_stream(_scripted_answer('{"id": "S-42", "carrier": "dhl", "days": 3}'))
    async with stage.client.chat.completions.stream(
        model="mock/echo", messages=ask("Track S-42"), response_format=Shipment
    ) as stream:
        async for event in stream.events():
            if isinstance(event, ContentDeltaEvent):
                _say(f"  {event.delta!r:<13} parsed={event.parsed}  partial={stream.partial!r}")
    # A carrier that does not exist: validate="eager" stops the stream at that field.
    stage.mock.reply_stream(_scripted_answer('{"id": "S-43", "carrier": "owl", "days": 9}'))
    try:
        async with stage.client.chat.completions.stream(
            model="mock/echo",
            messages=ask("Track S-43"),
            response_format=Shipment,
            validate="eager",
        ) as stream:
            async for _ in stream:
                pass
    except FieldValidationError as error:
        _say(f"eager validation: {type(error).__name__}: {error} (the stream is closed)")


async def _vision_input(stage: _Stage) -> None:
    picture = await image_part(png_bytes(4, 4, (200, 30, 30)), detail="low")
    seen = await stage.client.chat.completions.create(
        model="mock/vision",
        messages=[{"role": "user", "content": [text_part("Describe:"), picture]}],
    )
    _say(f"sent {picture['image_url']['url'][:40]}...; answer: {seen.choices[0].message.content!r}")


async def _image_output(stage: _Stage) -> None:
    drawn = await stage.client.chat.completions.create(
        model="mock/image",
        messages=ask("a square icon of a blue glass cube"),
        modalities=["image", "text"],
        image_config={"aspect_ratio": "1:1"},
    )
    images = drawn.choices[0].message.images or []
    path = await images[0].save(stage.out_dir / "cube.png")
    _say(
        f"{len(images)} image ({images[0].mime_type}) saved to {path} ({path.stat().st_size} bytes)"
    )


async def _reasoning(stage: _Stage) -> None:
    thought = await stage.client.chat.completions.create(
        model="mock/reasoner",
        messages=ask("Why is the sky blue?"),
        reasoning={"effort": "low"},
    )
    message = thought.choices[0].message
    _say(f"reasoning: {message.reasoning!r}")
    _say(f"reasoning_details: {message.reasoning_details}")
    async with stage.client.chat.completions.stream(
        model="mock/reasoner", messages=ask("Think out loud"), reasoning={}
    ) as stream:
        text = "".join([e.delta async for e in stream.events() if isinstance(e, ContentDeltaEvent)])
    streamed = stream.get_final_completion().choices[0].message
    _say(f"streamed reasoning: {streamed.reasoning!r}")
    _say(f"streamed answer: {text!r}")


async def _models(stage: _Stage) -> None:
    models = await stage.client.models.list()
    for model in models.data[:6]:
        _say(f"  {model.id:<28} x{model.token_multiplier:<4} available={model.is_available}")


async def _many_requests(stage: _Stage) -> None:
    mock = stage.mock

    def on_progress(done: int, total: int | None, failed: int) -> None:
        if done % 10 == 0 or done == total:
            _say(f"  progress: {done}/{total} done, {failed} failed")

    mock.reply_error(429, "rate limited", headers={"retry-after-ms": "50"})
    mock.latency = 0.02  # so requests overlap and the concurrency bound shows
    results = await stage.client.chat.completions.create_many(
        [{"model": "mock/echo", "messages": ask(f"question {i}")} for i in range(40)],
        concurrency=8,
        progress=on_progress,
    )
    mock.latency = 0.0
    answers = [r.choices[0].message.content for r in results if not isinstance(r, BaseException)]
    _say(f"{len(answers)} answers in input order; first {answers[0]!r}, last {answers[-1]!r}")
    _say(f"server saw at most {mock.peak_in_flight} requests in flight")


async def _within_a_budget(stage: _Stage) -> None:
    # A server of its own: it answers at most 6 requests at once (429 beyond), which the
    # client is not told; the spend limit counts rout.my's quota units from /v1/models.
    tasks = [
        {"model": "mock/echo", "messages": ask(f"task {i}"), "max_tokens": 8} for i in range(80)
    ]
    async with MockRoutmy(max_in_flight=6, latency=0.02) as capped:
        auto = AutoConcurrency(max_concurrency=32)
        async with AsyncRoutmy(api_key=capped.api_key, base_url=capped.base_url) as client:
            results = await client.chat.completions.create_many(tasks, concurrency=auto)
        answered = sum(not isinstance(result, BaseException) for result in results)
        _say(
            f'concurrency="auto": {answered} of {len(tasks)} answered; level {auto.level} at '
            f"the end (peak {auto.peak}, {auto.losses} loss signal(s)) against a cap of 6"
        )
        limit = SpendLimit(max_units=250)
        async with AsyncRoutmy(
            api_key=capped.api_key, base_url=capped.base_url, spend_limit=limit
        ) as client:
            results = await client.chat.completions.create_many(tasks, concurrency=4)
            spend = client.spend
    answered = sum(not isinstance(result, BaseException) for result in results)
    refused = sum(isinstance(result, SpendLimitError) for result in results)
    _say(f"spend limit: {answered} answered, {refused} refused before sending (SpendLimitError)")
    if spend is not None and spend.units is not None:
        units = spend.units
        _say(f"quota units: spent {units.spent} of {units.limit}, reserved {units.reserved}")


async def _embeddings_and_images(stage: _Stage) -> None:
    client = stage.client
    vectors = await client.embeddings.create(
        model="mock/embed", input=["cats", "dogs"], encoding_format="base64"
    )
    _say(
        f"{len(vectors.data)} vectors of {len(vectors.data[0].embedding)} floats "
        "(sent as base64, decoded for you)"
    )
    many = await client.embeddings.embed_many(
        model="mock/embed", inputs=[f"text {i}" for i in range(25)], batch_size=10
    )
    _say(f"embed_many: {len(many)} vectors from 3 requests")
    generated = await client.images.generate(model="mock/image", prompt="a lighthouse")
    saved = await generated.data[0].save(stage.out_dir / "lighthouse.png")
    _say(f"images.generate saved {saved}")


async def _error_and_retry(stage: _Stage) -> None:
    client = stage.client
    try:
        await client.chat.completions.create(model="mock/locked", messages=ask("hi"))
    except PermissionDeniedError as error:
        _say(f"typed error: {type(error).__name__}: {error}")
    stage.mock.reply_error(503, "upstream busy", headers={"retry-after-ms": "100"})
    with _sdk_log_to_stdout():
        retried = await client.chat.completions.create(model="mock/echo", messages=ask("retry me"))
    _say(f"after one retry: {retried.choices[0].message.content!r}")


@contextmanager
def _sdk_log_to_stdout() -> Iterator[None]:
    """Show the SDK's debug log (one line per attempt) while the block runs, then restore it."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("  log: %(message)s"))
    logger = logging.getLogger("routmy_async")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def _responses_api(stage: _Stage) -> None:
    client = stage.client
    response = await client.responses.create(
        model="mock/echo", input="Say hello through the Responses API."
    )
    _say(f"output_text: {response.output_text!r} ({response.status}, {response.id})")
    async with client.responses.stream(
        model="mock/reasoner", input="Stream this as events.", reasoning={}
    ) as events:
        kinds: dict[str, int] = {}
        async for streamed_event in events:
            kinds[streamed_event.type] = kinds.get(streamed_event.type, 0) + 1
        final_response = await events.get_final_response()
    _say("events: " + ", ".join(f"{kind} x{count}" for kind, count in kinds.items()))
    _say(f"final: {final_response.output_text!r}")
    order = await client.responses.parse(
        model="mock/echo", input="Order D-4 with a kettle", text_format=Order
    )
    _say(f"output_parsed: {order.output_parsed!r}")
    answered = await client.responses.run_tools(
        model="mock/echo",
        input="What is the status of order A-123?",
        tools=[get_order_status],
    )
    for item in answered.transcript or []:
        _say(f"  {_item_line(item)}")
    _say(f"answer: {answered.output_text!r}")


# The demo's sections, in the order they run and are numbered.
_STEPS: tuple[tuple[str, Callable[[_Stage], Awaitable[None]]], ...] = (
    ("Plain chat", _plain_chat),
    ("Streaming", _streaming),
    ("Tool calling with the run loop", _tool_loop),
    ("Tool calls, streamed as events", _streamed_tool_calls),
    ("Structured output", _structured_output),
    ("Structured output as it streams: partials, eager validation", _partial_output),
    ("Vision input", _vision_input),
    ("Image output (saved to a file)", _image_output),
    ("Reasoning", _reasoning),
    ("Models", _models),
    ("Many requests at once, with progress", _many_requests),
    ("A job within a budget: a spend limit and concurrency='auto'", _within_a_budget),
    ("Embeddings and image generation", _embeddings_and_images),
    ("An error, and a retry", _error_and_retry),
    ("The Responses API", _responses_api),
    ("Batch files: a run, an interruption, a resume", _batch_files),
)


async def run_demo() -> int:
    """Run the demo; return 0 when every step did what it should."""
    out_dir = Path(tempfile.mkdtemp(prefix="routmy-demo-"))
    async with MockRoutmy() as mock:
        _say(f"MockRoutmy listening on {mock.base_url} (no key, no network)")
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            stage = _Stage(client, mock, out_dir)
            for number, (title, step) in enumerate(_STEPS, start=1):
                _section(number, title)
                await step(stage)
        _say(f"\nDone: every feature ran against MockRoutmy; files in {out_dir}")
    return 0
