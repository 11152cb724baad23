"""Captured content in the conventions' role-and-parts shape, part by part (pure conversions:
the wire-level tests in test_instrumentation_latest.py cover the common parts end to end)."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry")

import msgspec

from routmy_async.instrumentation import _messages
from routmy_async.types import ChatCompletion, Response


def test_chat_content_parts_map_to_the_conventions_parts():
    """Text, image URLs, audio and refusals get the schema's part types; an unknown part
    passes as it is (the schema's GenericPart); a message's name is kept."""
    unknown = {"type": "file", "file": {"file_id": "f1"}}
    messages = [
        {
            "role": "user",
            "name": "ada",
            "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "input_audio", "input_audio": {"data": "UklG", "format": "wav"}},
                unknown,
            ],
        },
        {"role": "assistant", "content": None, "refusal": "no", "reasoning": "thinking"},
        "not a message",
    ]
    assert _messages.input_messages("chat", {"messages": messages}) == [
        {
            "role": "user",
            "name": "ada",
            "parts": [
                {"type": "text", "content": "look"},
                {"type": "uri", "modality": "image", "uri": "data:image/png;base64,AAAA"},
                {"type": "blob", "modality": "audio", "content": "UklG", "mime_type": "audio/wav"},
                unknown,
            ],
        },
        {
            "role": "assistant",
            "parts": [
                {"type": "reasoning", "content": "thinking"},
                {"type": "refusal", "content": "no"},
            ],
        },
    ]


def test_responses_items_map_to_messages():
    """Input images by URL or file id, reasoning and other earlier output items sent back,
    and tool-call arguments that are not JSON (kept as text)."""
    items = [
        {
            "role": "user",
            "content": [
                {"type": "input_image", "image_url": "https://example.com/a.png"},
                {"type": "input_image", "file_id": "file_1"},
            ],
        },
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "I looked."}]},
        {"type": "web_search_call", "id": "ws_1", "status": "completed"},
        {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "not json"},
        7,
    ]
    assert _messages.input_messages("responses", {"input": items}) == [
        {
            "role": "user",
            "parts": [
                {"type": "uri", "modality": "image", "uri": "https://example.com/a.png"},
                {"type": "file", "modality": "image", "file_id": "file_1"},
            ],
        },
        {"role": "assistant", "parts": [{"type": "reasoning", "content": "I looked."}]},
        {
            "role": "assistant",
            "parts": [{"type": "web_search_call", "id": "ws_1", "status": "completed"}],
        },
        {
            "role": "assistant",
            "parts": [{"type": "tool_call", "id": "c1", "name": "f", "arguments": "not json"}],
        },
        {"role": "user", "parts": []},
    ]


def test_instructions_given_as_items_are_their_parts():
    """Instructions as a list of messages become their parts; empty or absent ones none."""
    body = {"instructions": [{"role": "developer", "content": "Be brief."}], "input": "x"}
    assert _messages.system_instructions("responses", body) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert _messages.system_instructions("responses", {"instructions": ""}) is None
    assert _messages.system_instructions("responses", {"input": "x"}) is None
    assert _messages.system_instructions("chat", {"instructions": "x"}) is None


def test_inputs_with_nothing_to_record_are_none():
    """No messages, token-id embeddings, a missing input: nothing is recorded."""
    assert _messages.input_messages("chat", {}) is None
    assert _messages.input_messages("embeddings", {"input": [[1, 2, 3]]}) is None
    assert _messages.input_messages("responses", {}) is None
    assert _messages.input_messages("images", {"prompt": "a cat"}) is None


def test_output_messages_carry_reasoning_and_finish_reasons():
    """A chat choice's reasoning is a part; a missing finish reason is "stop"; a Response's
    status in chat's words is its finish reason; anything else has no output messages."""
    completion = msgspec.convert(
        {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": "p/m",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "hi", "reasoning": "hmm"},
                    "finish_reason": None,
                }
            ],
        },
        ChatCompletion,
    )
    assert _messages.output_messages(completion) == [
        {
            "role": "assistant",
            "parts": [{"type": "reasoning", "content": "hmm"}, {"type": "text", "content": "hi"}],
            "finish_reason": "stop",
        }
    ]
    response = msgspec.json.decode(
        msgspec.json.encode(
            {
                "id": "r",
                "object": "response",
                "created_at": 1,
                "model": "p/m",
                "status": "incomplete",
                "output": [
                    {"type": "reasoning", "id": "rs", "summary": []},
                    {"type": "message", "id": "m", "role": "assistant", "content": []},
                ],
            }
        ),
        type=Response,
    )
    assert _messages.output_messages(response, "length") == [
        {"role": "assistant", "parts": [], "finish_reason": "length"}
    ]
    assert _messages.output_messages(object()) is None


def test_content_that_will_not_encode_is_recorded_as_text():
    """A value JSON cannot hold is recorded by its str, never dropped or raised."""
    assert _messages.to_json([{1j}]) == str([{1j}])
    assert _messages.to_json([{"role": "user", "content": "hi"}]) == (
        '[{"role":"user","content":"hi"}]'
    )
