"""The SDK's small value classes are declared Structs: their behaviour pinned here."""

from __future__ import annotations

import pickle

import pytest

from routmy_async import Call, StreamSummary
from routmy_async._http._ratelimit import RateLimitHeaders, parse_rate_limit_headers
from routmy_async._streaming._sse import WireEvent


def test_a_call_is_equal_only_to_itself_and_keeps_its_own_state():
    """Two calls with the same fields are two calls: a hook can key a dict by one; each
    starts with its own empty ``state`` and its own start time."""
    first, second = Call("chat", model="m"), Call("chat", model="m")
    assert first != second and {first: 1, second: 2}[first] == 1
    first.state["span"] = 1
    assert second.state == {} and first.started <= second.started
    assert repr(first) == "<Call chat m stream=False>"
    with pytest.raises(TypeError):
        Call("chat", "m")  # type: ignore[call-arg]  # everything after the operation is keyword-only


def test_a_stream_summary_is_a_frozen_value():
    """A summary cannot be changed, compares by value and reports the cost of its usage."""
    summary = StreamSummary(outcome="done", duration=1.5, time_to_first_event=0.1, chunks=3)
    assert summary == StreamSummary(outcome="done", duration=1.5, time_to_first_event=0.1, chunks=3)
    with pytest.raises(AttributeError):
        summary.chunks = 4  # type: ignore[misc]
    assert summary.cost is None and repr(summary) == "<StreamSummary done chunks=3 duration=1.500s>"


def test_a_server_sent_event_compares_by_value_and_is_not_hashable():
    """Events compare by their four fields; being mutable, they are not hashable."""
    event = WireEvent(b"x", "ping", "7", 1500)
    assert event == WireEvent(data=b"x", event="ping", id="7", retry=1500)
    assert event != WireEvent(b"x") and event.text == "x"
    with pytest.raises(TypeError):
        hash(event)
    assert pickle.loads(pickle.dumps(event)) == event


def test_rate_limit_headers_show_only_what_was_sent():
    """Absent headers are None and left out of the repr; two parses of one answer are equal."""
    headers = {"x-ratelimit-remaining-requests": "9", "x-ratelimit-reset-tokens": "1m30s"}
    parsed = parse_rate_limit_headers(headers)
    assert parsed == parse_rate_limit_headers(headers)
    assert parsed.remaining_requests == 9.0 and parsed.reset_tokens == 90.0
    assert parsed.limit_tokens is None
    assert repr(parsed) == "RateLimitHeaders(remaining_requests=9.0, reset_tokens=90.0)"
    assert RateLimitHeaders() == parse_rate_limit_headers({})
