"""Chunks in, one ChatCompletion out: text, tools, reasoning, images, usage, n > 1."""

from __future__ import annotations

from typing import Any

import msgspec

from routmy_async.resources.chat._accumulate import CompletionAccumulator
from routmy_async.types import ChatCompletionChunk

BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 5, "model": "p/m"}


def chunk(*choices: dict[str, Any], **top: Any) -> ChatCompletionChunk:
    return msgspec.convert({**BASE, "choices": list(choices), **top}, ChatCompletionChunk)


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "finish_reason": finish}


def run(*chunks: ChatCompletionChunk) -> CompletionAccumulator:
    acc = CompletionAccumulator()
    for item in chunks:
        acc.add(item)
    return acc


def test_text_refusal_and_role_are_joined():
    """Content and refusal pieces join in order; metadata comes from the first chunk."""
    acc = run(
        chunk(delta(role="assistant", content="")),
        chunk(delta(content="Hel")),
        chunk(delta(content="lo", refusal="no")),
        chunk(delta(finish="stop")),
    )
    done = acc.completion()
    assert done.id == "c1" and done.model == "p/m" and done.created == 5
    assert done.choices[0].message.content == "Hello"
    assert done.choices[0].message.refusal == "no"
    assert done.choices[0].finish_reason == "stop"
    assert acc.finished and acc.chunk_count == 4


def test_tool_calls_merge_by_index_starting_at_one_and_interleaved():
    """Parallel calls interleave by index, the first may be index 1, args join whole."""
    acc = run(
        chunk(
            delta(tool_calls=[{"index": 1, "id": "a", "function": {"name": "f", "arguments": ""}}])
        ),
        chunk(
            delta(tool_calls=[{"index": 2, "id": "b", "function": {"name": "g", "arguments": "{"}}])
        ),
        chunk(delta(tool_calls=[{"index": 1, "function": {"arguments": '{"x":'}}])),
        chunk(delta(tool_calls=[{"index": 2, "function": {"arguments": "}"}}])),
        chunk(delta(tool_calls=[{"index": 1, "function": {"arguments": "1}"}}])),
        chunk(delta(finish="tool_calls", tool_calls=[])),
    )
    calls = acc.completion().choices[0].message.tool_calls
    assert calls is not None
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("a", "f", '{"x":1}'),
        ("b", "g", "{}"),
    ]


def test_repeated_id_and_name_are_not_concatenated():
    """Servers that repeat id and name on every fragment do not double them."""
    fragment = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get"}}
    acc = run(
        chunk(delta(tool_calls=[{**fragment, "function": {"name": "get", "arguments": "{}"}}])),
        chunk(delta(tool_calls=[{**fragment, "function": {"name": "get", "arguments": ""}}])),
    )
    call = acc.completion().choices[0].message.tool_calls[0]  # type: ignore[index]
    assert (call.id, call.function.name, call.function.arguments) == ("call_1", "get", "{}")


def test_missing_index_falls_back_to_id_then_last_call():
    """Without index a fragment joins the call with its id, else the last call."""
    acc = run(
        chunk(delta(tool_calls=[{"id": "a", "function": {"name": "f", "arguments": "["}}])),
        chunk(delta(tool_calls=[{"id": "b", "function": {"name": "g", "arguments": "("}}])),
        chunk(delta(tool_calls=[{"function": {"arguments": ")"}}])),
        chunk(delta(tool_calls=[{"id": "a", "function": {"arguments": "]"}}])),
    )
    calls = acc.completion().choices[0].message.tool_calls
    assert [c.function.arguments for c in calls or []] == ["[]", "()"]


def test_streamed_name_pieces_are_joined():
    """A name sent in pieces is assembled once."""
    acc = run(
        chunk(delta(tool_calls=[{"index": 0, "function": {"name": "get_"}}])),
        chunk(delta(tool_calls=[{"index": 0, "function": {"name": "order"}}])),
    )
    assert acc.completion().choices[0].message.tool_calls[0].function.name == "get_order"  # type: ignore[index]


def test_reasoning_string_content_alias_and_details_by_index():
    """reasoning and reasoning_content accumulate; details merge text by their index."""
    acc = run(
        chunk(delta(reasoning="think ")),
        chunk(delta(reasoning_content="more")),
        chunk(delta(reasoning_details=[{"type": "reasoning.text", "text": "a", "index": 0}])),
        chunk(
            delta(
                reasoning_details=[
                    {"type": "reasoning.text", "text": "b", "index": 0, "signature": "s"}
                ]
            )
        ),
        chunk(
            delta(reasoning_details=[{"type": "reasoning.encrypted", "data": "xyz", "index": 1}])
        ),
    )
    message = acc.completion().choices[0].message
    assert message.reasoning == "think more"
    assert message.reasoning_details == [
        {"type": "reasoning.text", "text": "ab", "index": 0, "signature": "s"},
        {"type": "reasoning.encrypted", "data": "xyz", "index": 1},
    ]


def test_images_and_logprobs_accumulate():
    """Images are collected and logprobs content lists concatenate."""
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    lp = {"content": [{"token": "a", "logprob": -0.1, "top_logprobs": []}]}
    acc = run(
        chunk({**delta(images=[image]), "logprobs": lp}),
        chunk({**delta(content="a"), "logprobs": lp}),
    )
    choice = acc.completion().choices[0]
    assert choice.message.images is not None and len(choice.message.images) == 1
    assert choice.logprobs is not None and [t.token for t in choice.logprobs.content or []] == [
        "a",
        "a",
    ]


def test_usage_is_the_last_non_null_from_empty_choices_chunk():
    """usage on a choices: [] chunk wins; null usage on other chunks does not erase it."""
    usage = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7, "cost": 0.5}
    acc = run(
        chunk(delta(content="x"), usage=None),
        chunk(
            delta(finish="stop"),
            usage={"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        ),
        chunk(usage=usage),
        chunk(usage=None),
    )
    done = acc.completion()
    assert done.usage is not None and done.usage.total_tokens == 7 and done.usage.cost == 0.5


def test_choices_in_any_order_for_n_greater_than_one():
    """Choices arriving out of order are kept apart and sorted by index."""
    acc = run(
        chunk(delta(1, content="B")),
        chunk(delta(0, content="A")),
        chunk(delta(1, finish="stop", content="b")),
        chunk(delta(0, finish="length", content="a")),
    )
    done = acc.completion()
    assert [(c.index, c.message.content, c.finish_reason) for c in done.choices] == [
        (0, "Aa", "length"),
        (1, "Bb", "stop"),
    ]


def test_not_finished_until_every_choice_has_a_reason():
    """finished is false with no choices, or while one choice is still open."""
    assert not run().finished
    assert not run(chunk(delta(0, finish="stop")), chunk(delta(1, content="x"))).finished


def test_native_finish_reason_and_metadata_fields():
    """native_finish_reason, provider and system_fingerprint carry over."""
    acc = run(
        chunk(
            {**delta(finish="error"), "native_finish_reason": "SAFETY"},
            provider="x",
            system_fingerprint="fp",
            service_tier="default",
        ),
    )
    done = acc.completion()
    assert done.choices[0].native_finish_reason == "SAFETY"
    assert (done.provider, done.system_fingerprint, done.service_tier) == ("x", "fp", "default")


# -- property: the streaming path equals folding the chunks one at a time ------------------


class _SplitContent:
    """Stands in for ``response.content``: hands out the stream in the given reads."""

    def __init__(self, reads: list[bytes]):
        self._reads = list(reads)

    async def readany(self) -> bytes:
        return self._reads.pop(0) if self._reads else b""

    def at_eof(self) -> bool:
        return not self._reads


class _SplitResponse:
    status = 200
    headers = {"Content-Type": "text/event-stream"}

    def __init__(self, reads: list[bytes]):
        self.content = _SplitContent(reads)

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


def _chunk_dicts() -> Any:
    from hypothesis import strategies as st

    text = st.text(max_size=6)
    content = st.builds(lambda t: {"content": t}, text)
    reasoning = st.builds(lambda t: {"reasoning": t}, text)
    detail = st.builds(
        lambda t, i: {"reasoning_details": [{"type": "reasoning.text", "text": t, "index": i}]},
        text,
        st.integers(0, 1),
    )
    opening = st.builds(
        lambda i, name, share: {
            "tool_calls": [
                {
                    "index": 0 if share else i,
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
            ]
        },
        st.integers(0, 3),
        st.sampled_from(["a", "b_c"]),
        st.booleans(),
    )
    arguments = st.builds(
        lambda i, t: {"tool_calls": [{"index": i, "function": {"arguments": t}}]},
        st.none() | st.integers(0, 3),
        text,
    )
    deltas = st.lists(
        st.tuples(st.integers(0, 1), st.one_of(content, reasoning, detail, opening, arguments)),
        max_size=12,
    )
    return deltas


def test_any_split_of_any_valid_stream_accumulates_like_folding_each_chunk():
    import asyncio
    import itertools

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from routmy_async._http._redact import Redactor
    from routmy_async._streaming._context import StreamContext
    from routmy_async.resources.chat._stream import ChatCompletionStream

    class _Transport:
        redactor = Redactor(None)

    @settings(max_examples=150, deadline=None)
    @given(_chunk_dicts(), st.data())
    def check(deltas, data):
        frames = [
            {**BASE, "choices": [{"index": choice, "delta": fields}]} for choice, fields in deltas
        ]
        frames.append(
            {
                **BASE,
                "choices": [{"index": c, "delta": {}, "finish_reason": "stop"} for c in (0, 1)],
            }
        )
        frames.append({**BASE, "choices": [], "usage": {"prompt_tokens": 1, "total_tokens": 1}})
        stream_bytes = b"".join(b"data: " + msgspec.json.encode(f) + b"\n\n" for f in frames)
        stream_bytes += b"data: [DONE]\n\n"
        cuts = sorted(set(data.draw(st.lists(st.integers(1, len(stream_bytes) - 1), max_size=8))))
        bounds = [0, *cuts, len(stream_bytes)]
        reads = [stream_bytes[a:b] for a, b in itertools.pairwise(bounds)]

        folded = CompletionAccumulator()
        for frame in frames:
            folded.add(msgspec.convert(frame, ChatCompletionChunk))

        async def through_the_stream() -> Any:
            stream = ChatCompletionStream(
                StreamContext(
                    response=_SplitResponse(reads),  # type: ignore[arg-type]
                    transport=_Transport(),  # type: ignore[arg-type]
                )
            )
            return await stream.until_done()

        streamed = asyncio.run(through_the_stream())
        # Struct equality compares every field (to_dict would hide defaults).
        assert streamed == folded.completion(type(streamed))

    check()
