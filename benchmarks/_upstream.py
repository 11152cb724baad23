"""The fake upstream: a raw asyncio HTTP/1.1 keep-alive server writing prebuilt bytes.

Run in its own process by ``bench_clients.py``. Every answer is built once at start-up, so the
server does almost no work per request; its CPU share is measured and reported to prove it
is not the bottleneck.

Routes (the model name in the request body picks the stream):

* ``POST /v1/chat/completions`` without ``"stream": true``: a ~1 KB chat.completion.
* with ``"stream": true`` and model ``bench/text``: TEXT_CHUNKS content chunks, one write.
* model ``bench/paced``: PACED_CHUNKS chunks, one event per write, 1 ms apart.
* model ``bench/tools``: a tool call whose arguments arrive in TOOL_FRAGMENTS fragments.
* ``GET /v1/models``: MODEL_COUNT models with the router fields (``model_entry``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

TEXT_CHUNKS = 1000
PACED_CHUNKS = 200
TOOL_FRAGMENTS = 200
MODEL_COUNT = 300
WORDS = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit"]


def text_pieces(count: int) -> list[str]:
    return [f"{WORDS[i % len(WORDS)]}{i} " for i in range(count)]


def tool_arguments() -> str:
    value = {"query": "benchmark " * 40, "limit": 10, "filters": {"tags": WORDS * 6}}
    return json.dumps(value)


def tool_fragments() -> list[str]:
    text = tool_arguments()
    size = max(1, len(text) // TOOL_FRAGMENTS)
    pieces = [text[i : i + size] for i in range(0, len(text), size)]
    return pieces


COMPLETION_TEXT = ("This endpoint creates model responses from chat messages. " * 12).strip()


def completion_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1744000000,
            "model": "bench/completion",
            "provider": "bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": COMPLETION_TEXT},
                    "finish_reason": "stop",
                    "native_finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": 28,
                "completion_tokens": 120,
                "total_tokens": 148,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 0},
                "cost": 0.000148,
            },
        }
    ).encode()


def _frame(chunk: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def _base(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1744000000,
        "model": model,
    }


def text_frames(model: str, count: int) -> list[bytes]:
    base = _base(model)
    frames = [
        _frame({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
    ]
    for piece in text_pieces(count):
        frames.append(
            _frame(
                {
                    **base,
                    "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
                }
            )
        )
    frames.append(_frame({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    frames.append(
        _frame(
            {
                **base,
                "choices": [],
                "usage": {
                    "prompt_tokens": 5,
                    "completion_tokens": count,
                    "total_tokens": count + 5,
                },
            }
        )
    )
    frames.append(b"data: [DONE]\n\n")
    return frames


def tool_frames() -> list[bytes]:
    base = _base("bench/tools")
    frames = [
        _frame(
            {
                **base,
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "role": "assistant",
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_bench",
                                    "type": "function",
                                    "function": {"name": "search", "arguments": ""},
                                }
                            ],
                        },
                    }
                ],
            }
        )
    ]
    for piece in tool_fragments():
        frames.append(
            _frame(
                {
                    **base,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "tool_calls": [{"index": 0, "function": {"arguments": piece}}]
                            },
                        }
                    ],
                }
            )
        )
    frames.append(
        _frame({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]})
    )
    frames.append(b"data: [DONE]\n\n")
    return frames


PARAMETERS = [
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "tools",
    "tool_choice",
    "response_format",
    "structured_outputs",
    "reasoning",
]


def model_entry(i: int) -> dict[str, Any]:
    """One models-list entry with the router fields, shaped like OpenRouter's."""
    provider = f"provider{i % 17}"
    vision = i % 3 == 0
    context = 4096 * (1 + i % 32)
    return {
        "id": f"{provider}/model-{i}",
        "canonical_slug": f"{provider}/model-{i}-20250101",
        "object": "model",
        "created": 1700000000 + i,
        "owned_by": provider,
        "token_multiplier": 1 + (i % 4) * 0.5,
        "is_available": i % 10 != 0,
        "name": f"Provider {i % 17}: Model {i}",
        "description": (
            f"Model {i} by provider {i % 17}: a general-purpose instruction-tuned model with "
            "tool use and structured outputs, good at code, analysis and long documents."
        ),
        "context_length": context,
        "pricing": {
            "prompt": f"0.{(i % 50 + 1):07d}",
            "completion": f"0.{(i % 50 + 1) * 4:07d}",
            "request": "0",
            "image": "0.001445" if vision else "0",
            "web_search": "0",
            "internal_reasoning": "0",
            "input_cache_read": f"0.{(i % 50 + 1):08d}",
        },
        "architecture": {
            "modality": "text+image->text" if vision else "text->text",
            "input_modalities": ["text", "image"] if vision else ["text"],
            "output_modalities": ["text"],
            "tokenizer": "GPT",
            "instruct_type": None,
        },
        "top_provider": {
            "context_length": context,
            "max_completion_tokens": 16384,
            "is_moderated": i % 2 == 0,
        },
        "per_request_limits": None,
        "supported_parameters": PARAMETERS[: 6 + i % 7],
    }


def models_body() -> bytes:
    data = [model_entry(i) for i in range(MODEL_COUNT)]
    return json.dumps({"object": "list", "data": data}).encode()


def _head(content_type: str, length: int | None) -> bytes:
    if length is None:
        return (
            f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\nx-request-id: bench\r\n\r\n"
        ).encode()
    return (
        f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {length}\r\n"
        "x-request-id: bench\r\n\r\n"
    ).encode()


def _chunked(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class Upstream:
    def __init__(self) -> None:
        body = completion_body()
        self.completion = _head("application/json", len(body)) + body
        models = models_body()
        self.models = _head("application/json", len(models)) + models
        stream_head = _head("text/event-stream", None)
        self.text_stream = (
            stream_head + _chunked(b"".join(text_frames("bench/text", TEXT_CHUNKS))) + b"0\r\n\r\n"
        )
        self.tool_stream = stream_head + _chunked(b"".join(tool_frames())) + b"0\r\n\r\n"
        self.paced_head = stream_head
        self.paced_frames = [_chunked(frame) for frame in text_frames("bench/paced", PACED_CHUNKS)]

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                lower = head.lower()
                marker = lower.find(b"content-length:")
                if marker >= 0:
                    end = lower.find(b"\r\n", marker)
                    length = int(lower[marker + 15 : end])
                body = await reader.readexactly(length) if length else b""
                if head.startswith(b"GET /v1/models"):
                    writer.write(self.models)
                elif b'"stream":true' in body or b'"stream": true' in body:
                    if b"bench/paced" in body:
                        writer.write(self.paced_head)
                        for frame in self.paced_frames:
                            writer.write(frame)
                            await writer.drain()
                            await asyncio.sleep(0.001)
                        writer.write(b"0\r\n\r\n")
                    elif b"bench/tools" in body:
                        writer.write(self.tool_stream)
                    else:
                        writer.write(self.text_stream)
                else:
                    writer.write(self.completion)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()


async def main(port: int) -> None:
    upstream = Upstream()
    server = await asyncio.start_server(upstream.serve, "127.0.0.1", port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
