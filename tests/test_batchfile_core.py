"""Batch files, the pure core: fingerprint sets, line checks, output lines, reading back."""

from __future__ import annotations

import json
from array import array
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routmy_async import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    BatchCheck,
    BatchStop,
    BatchSummary,
    RateLimitError,
)
from routmy_async._batchfile._idset import (
    FingerprintCollector,
    FingerprintSet,
    fingerprint,
    short_fingerprint,
)
from routmy_async._batchfile._lines import (
    ENDPOINTS,
    LineError,
    call_kwargs,
    check_body,
    decode_input,
    describe_failure,
    endpoint_for,
    failure_line,
    read_output_line,
    request_of,
    success_line,
    usage_of,
)
from routmy_async._batchfile._resume import ResumeState
from routmy_async._batchfile._summary import (
    MAX_PROBLEMS,
    finish,
    format_money,
    record_failure,
    record_ok,
    start_requests,
)
from routmy_async._exceptions import InternalServerError, status_error
from routmy_async.types import ChatCompletion, CreateEmbeddingResponse
from routmy_async.types._base import attach_answer

CHAT = ENDPOINTS["/chat/completions"]
EMBED = ENDPOINTS["/embeddings"]
IMAGES = ENDPOINTS["/images/generations"]
RESPONSES = ENDPOINTS["/responses"]


def chat_body(**extra: Any) -> dict[str, Any]:
    return {"model": "mock/echo", "messages": [{"role": "user", "content": "hi"}], **extra}


def line(**fields: Any) -> bytes:
    return json.dumps(fields).encode() + b"\n"


# -- fingerprint sets ------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    added=st.lists(st.text(max_size=12), max_size=300),
    probes=st.lists(st.text(max_size=12), max_size=50),
)
def test_a_fingerprint_set_answers_like_a_set_of_the_ids(added, probes):
    """Membership and size match a Python set of the same ids (64-bit fingerprints)."""
    collector = FingerprintCollector()
    for text in added:
        collector.add(fingerprint(text))
    assert collector.count == len(added)
    frozen = collector.freeze()
    assert len(frozen) == len(set(added)) and frozen.nbytes == 8 * len(set(added))
    for text in [*added, *probes]:
        assert (fingerprint(text) in frozen) == (text in added)
    assert sorted(frozen) == sorted({fingerprint(text) for text in added})
    assert collector.count == 0 and list(collector) == []


@settings(max_examples=150, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=200))
def test_repeated_finds_exactly_the_values_added_more_than_once(values):
    """repeated() of a 32-bit collector is the set of values seen twice or more."""
    collector = FingerprintCollector(bits=32)
    for value in values:
        collector.add(value)
    assert collector.repeated() == {v for v in values if values.count(v) > 1}
    assert sorted(collector) == sorted(values)


def test_freeze_without_leaves_the_other_set_out():
    """freeze(without=...) builds the difference; an empty set contains nothing."""
    done = FingerprintCollector()
    failed = FingerprintCollector()
    for value in (1, 2, 3):
        done.add(value << 56 | value)
    for value in (2, 3, 4, 4):
        failed.add(value << 56 | value)
    ok = done.freeze()
    rest = failed.freeze(without=ok)
    assert list(rest) == [4 << 56 | 4]
    empty = FingerprintSet.empty()
    assert len(empty) == 0 and 5 not in empty and "x" not in ok
    assert short_fingerprint("abc") == fingerprint("abc") & 0xFFFFFFFF
    with pytest.raises(ValueError, match="64 or 32"):
        FingerprintCollector(bits=16)


# -- input lines -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "default", "message"),
    [
        (b'{"custom_id": "a", ', None, "invalid JSON"),
        (b"[1, 2]", None, "not a JSON object"),
        (line(url="/v1/chat/completions", body=chat_body()), None, "missing custom_id"),
        (line(custom_id=7, url="/v1/embeddings", body={}), None, "custom_id must be a non-empty"),
        (line(custom_id="", body={}), CHAT, "custom_id must be a non-empty"),
        (line(custom_id="a", method="GET", body=chat_body()), CHAT, "method must be POST"),
        (line(custom_id="a", body=chat_body()), None, "missing url"),
        (line(custom_id="a", url=5, body=chat_body()), None, "url must be a string"),
        (line(custom_id="a", url="/v1/files", body=chat_body()), None, "unknown url '/v1/files'"),
        (line(custom_id="a", url="/v1/embeddings", body={}), CHAT, "differs from the endpoint"),
        (line(custom_id="a", url="/v1/chat/completions"), None, "missing body"),
        (line(custom_id="a", body=[1]), CHAT, "body must be a JSON object, not list"),
    ],
)
def test_a_bad_envelope_is_named(raw, default, message):
    """Each envelope problem raises LineError with a message that says which."""
    with pytest.raises(LineError, match=message):
        request_of(decode_input(raw), default)


@pytest.mark.parametrize(
    ("endpoint", "body", "message"),
    [
        (CHAT, chat_body(stream=True), "stream is not supported"),
        (CHAT, {"messages": [{"role": "user", "content": "x"}]}, "no 'model'"),
        (CHAT, chat_body(temperature="hot"), "temperature must be a number"),
        (CHAT, chat_body(messages=[]), "messages must not be empty"),
        (CHAT, chat_body(messages=[{"content": "x"}]), "has no 'role'"),
        (CHAT, chat_body(max_tokens=-1), "must not be negative"),
        (CHAT, chat_body(model=""), "model must not be empty"),
        (EMBED, {"model": "m", "input": []}, "input must not be empty"),
        (EMBED, {"model": "m", "input": "x", "dimensions": 0}, "dimensions"),
        (IMAGES, {"model": "m", "prompt": " "}, "prompt must not be empty"),
        (IMAGES, {"model": "m"}, "no 'prompt'"),
        (RESPONSES, {"input": "hi"}, "no 'model'"),
        (RESPONSES, {"model": "", "input": "hi"}, "model must not be empty"),
    ],
)
def test_the_sdks_own_checks_reject_a_bad_body(endpoint, body, message):
    """check_body runs the SDK method's checks and reports the first failure."""
    with pytest.raises(LineError, match=message):
        check_body(endpoint, body)


def test_good_lines_pass_and_urls_are_normalised():
    """'/v1/x', '/x', 'v1/x/' all name the same endpoint; method is case-insensitive."""
    for url in ("/v1/chat/completions", "/chat/completions", "v1/chat/completions/"):
        parsed = decode_input(line(custom_id="c", method="post", url=url, body=chat_body()))
        custom_id, endpoint, body = request_of(parsed, None)
        assert (custom_id, endpoint, body) == ("c", CHAT, chat_body())
        check_body(endpoint, body)
    assert endpoint_for("/v1/embeddings") is EMBED
    check_body(EMBED, {"model": "m", "input": ["a", "b"], "encoding_format": "base64"})
    check_body(IMAGES, {"model": "m", "prompt": "a lighthouse", "n": 2})
    with pytest.raises(ValueError, match="unknown endpoint"):
        endpoint_for("/v1/nope")
    with pytest.raises(TypeError, match="endpoint must be a string"):
        endpoint_for(3)  # type: ignore[arg-type]
    for number in range(300):  # spellings are remembered up to a bound, then looked up
        with pytest.raises(ValueError, match="unknown endpoint"):
            endpoint_for(f"/v1/unknown-{number}")


def test_whatever_stops_the_sdk_before_it_sends_refuses_the_line(monkeypatch):
    """An error other than TypeError/ValueError in the SDK's preparation refuses the line
    (the real call would fail the same way, at every run), naming the error."""
    from routmy_async.resources.chat import _completions as chat

    def broken(params: Any) -> None:
        raise KeyError("role")

    monkeypatch.setattr(chat, "check_params", broken)
    with pytest.raises(LineError, match=r"body: the SDK cannot send it \(KeyError: 'role'\)"):
        check_body(CHAT, chat_body(temperature=0.5))


def test_the_check_builds_the_request_the_method_would_send():
    """check_body returns the request the SDK would send, built without I/O: the endpoint's
    method and URL, the body's bytes as the call encodes them, the key kept out of its repr."""
    body = chat_body(temperature=0.5, timeout=3)
    request = check_body(CHAT, body)
    assert request.method == "POST"
    assert request.url.endswith("/v1/chat/completions")
    assert request.body is not None
    assert msgspec.json.decode(request.body) == body  # 'timeout' is a field, sent as written
    assert request.headers["Authorization"] == "Bearer dry-run"
    assert "dry-run" not in repr(request) and "chat/completions" in repr(request)
    embed = check_body(EMBED, {"model": "m", "input": "x", "dimensions": 8})
    assert embed.url.endswith("/v1/embeddings") and embed.body is not None
    assert msgspec.json.decode(embed.body) == {"model": "m", "input": "x", "dimensions": 8}


def test_body_fields_named_like_options_are_sent_as_fields():
    """A body's 'timeout' or 'max_retries' goes through extra_body, so it is sent as written."""
    body = chat_body(temperature=0.5)
    assert call_kwargs(body) is body
    kwargs = call_kwargs(chat_body(timeout=3, max_retries=9))
    assert kwargs["extra_body"] == {"timeout": 3, "max_retries": 9}
    assert "timeout" not in kwargs and kwargs["model"] == "mock/echo"
    check_body(CHAT, chat_body(timeout="not a number", extra_headers=1))


# -- output lines ------------------------------------------------------------------------------


def completion_from(body: bytes, request_id: str | None = "req-1") -> ChatCompletion:
    completion = msgspec.json.decode(body, type=ChatCompletion)
    attach_answer(completion, body, request_id)
    return completion


ANSWER = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "a\nb"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5, "cost": 0.25},
    "extra": {"kept": True},
}


def test_a_success_line_is_an_openai_batch_output_line():
    """id, custom_id, response {status_code, request_id, body}, error null; the body is the
    server's JSON, even pretty-printed, on one line."""
    pretty = json.dumps(ANSWER, indent=2).encode()
    raw = success_line("batch_req_1", "q-1", completion_from(pretty))
    assert raw.endswith(b"\n") and raw.count(b"\n") == 1
    decoded = json.loads(raw)
    assert list(decoded) == ["id", "custom_id", "response", "error"]
    assert decoded["id"] == "batch_req_1" and decoded["custom_id"] == "q-1"
    assert decoded["error"] is None
    assert decoded["response"] == {"status_code": 200, "request_id": "req-1", "body": ANSWER}
    seen = read_output_line(raw)
    assert seen == ("q-1", True, 0.25, "m", 3, 2)  # the usage a budget counts on resume


def test_a_success_line_without_the_raw_bytes_encodes_raw():
    """An answer built without its bytes is written from .raw."""
    completion = msgspec.json.decode(json.dumps(ANSWER).encode(), type=ChatCompletion)
    decoded = json.loads(success_line("i", "c", completion))
    assert decoded["response"]["body"]["choices"][0]["message"]["content"] == "a\nb"
    assert decoded["response"]["request_id"] is None


def status(code: int, body: Any, **headers: str) -> Exception:
    return status_error(code, json.dumps(body).encode(), headers)


@pytest.mark.parametrize(
    ("error", "code", "response", "outcome"),
    [
        (
            status(
                429, {"error": {"message": "slow", "code": "rate_limited"}}, **{"x-request-id": "r"}
            ),
            "rate_limited",
            {
                "status_code": 429,
                "request_id": "r",
                "body": {"error": {"message": "slow", "code": "rate_limited"}},
            },
            "429 rate_limited",
        ),
        (
            status(503, {"error": {"message": "busy", "type": "server_error"}}),
            "server_error",
            {
                "status_code": 503,
                "request_id": None,
                "body": {"error": {"message": "busy", "type": "server_error"}},
            },
            "503",
        ),
        (
            status(502, {"error": {"message": "up", "code": 502}}),
            "502",
            {
                "status_code": 502,
                "request_id": None,
                "body": {"error": {"message": "up", "code": 502}},
            },
            "502",
        ),
        (
            InternalServerError("x", status_code=500, body="<html>"),
            "http_500",
            {"status_code": 500, "request_id": None, "body": "<html>"},
            "500",
        ),
        (
            APIResponseValidationError("bad shape", body=b'{"choices": 1}', request_id="q"),
            "invalid_response",
            {"status_code": 200, "request_id": "q", "body": {"choices": 1}},
            "200 invalid_response",
        ),
        (
            APIResponseValidationError("not json", body=b"<html"),
            "invalid_response",
            {"status_code": 200, "request_id": None, "body": "<html"},
            "200 invalid_response",
        ),
        (APITimeoutError("read timed out"), "timeout", None, "timeout"),
        (APIConnectionError("reset"), "connection_error", None, "connection_error"),
        (TypeError("temperature must be a number"), "invalid_request", None, "invalid_request"),
        (RuntimeError("odd"), "error", None, "RuntimeError"),
    ],
)
def test_a_failure_line_is_written_as_openai_writes_it(error, code, response, outcome):
    """A 4xx/5xx answer: its status, request id and body in response and error null (as
    OpenAI writes it); error {code, message} only without such an answer (a reset, a 2xx
    that does not decode); the outcome names status and code for the summary."""
    raw, named = failure_line("batch_req_2", "q-2", error)
    decoded = json.loads(raw)
    assert list(decoded) == ["id", "custom_id", "response", "error"]
    assert decoded["response"] == response
    if response is not None and response["status_code"] >= 400:
        assert decoded["error"] is None
    else:
        assert decoded["error"]["code"] == code and decoded["error"]["message"]
    assert named == outcome == describe_failure(error)[3]
    seen = read_output_line(raw)
    assert seen is not None and seen[:3] == ("q-2", False, None)


def test_a_2xx_error_body_keeps_its_error():
    """A 200 whose body is an error (the transport raises it as a status error) is written
    with an error object, so no reader takes it for a result."""
    error = status(200, {"error": {"message": "provider down", "code": 502}})
    decoded = json.loads(failure_line("i", "q", error)[0])
    assert decoded["response"]["status_code"] == 200
    assert decoded["error"] == {"code": "502", "message": "provider down"}
    seen = read_output_line(failure_line("i", "q", error)[0])
    assert seen is not None and seen[:3] == ("q", False, None)


def test_usage_of_reads_structs_dicts_and_absences():
    """Tokens and cost from a usage Struct, from a raw dict, or zeros when there is none."""
    assert usage_of(completion_from(json.dumps(ANSWER).encode())) == (3, 2, 5, 0.25)
    vectors = msgspec.json.decode(
        b'{"data": [], "usage": {"prompt_tokens": 4, "total_tokens": 4}}',
        type=CreateEmbeddingResponse,
    )
    assert usage_of(vectors) == (4, 0, 4, None)
    no_usage = completion_from(json.dumps({**ANSWER, "usage": None}).encode())
    assert usage_of(no_usage) == (0, 0, 0, None)

    class Untyped:
        raw: Any = {"usage": {"prompt_tokens": 2, "completion_tokens": True, "cost": "1"}}

    assert usage_of(Untyped()) == (2, 0, 2, None)
    Untyped.raw = {"usage": {"total_tokens": 9, "cost": 0.5}}
    assert usage_of(Untyped()) == (0, 0, 9, 0.5)
    Untyped.raw = ["not a dict"]
    assert usage_of(Untyped()) == (0, 0, 0, None)


@pytest.mark.parametrize(
    ("raw", "seen"),
    [
        (line(custom_id="a", response={"status_code": 200}, error=None), ("a", True)),
        (line(custom_id="a", response={"status_code": 500}, error=None), ("a", False)),
        (line(custom_id="a", response=None, error={"code": "x"}), ("a", False)),
        (line(custom_id="a", response={"status_code": 200}, error={"code": "x"}), ("a", False)),
        (line(custom_id="a", response={"status_code": True}), ("a", False)),
        (line(custom_id="a"), ("a", False)),
        (line(custom_id="a", response={"status_code": 200, "body": "text"}), ("a", True)),
        (
            line(custom_id="a", response={"status_code": 200, "body": {"usage": {"cost": 0.5}}}),
            ("a", True, 0.5),
        ),
        (
            line(custom_id="a", response={"status_code": 200, "body": {"usage": {"cost": True}}}),
            ("a", True),
        ),
        *(
            (
                line(
                    custom_id="a",
                    response={"status_code": 200, "body": {"object": "response", "status": s}},
                    error=None,
                ),
                ("a", s in ("completed", "incomplete")),
            )
            for s in ("completed", "incomplete", "failed", "cancelled", "queued", "in_progress")
        ),
        (line(response={"status_code": 200}), None),
        (b'{"custom_id": "a", "response": {"status_co', None),
        (b'{"custom_id": "a"}{"custom_id": "b"}\n', None),
        (b"\x00\x00\x00\n", None),
        (b"\n", None),
    ],
)
def test_reading_an_output_line_back(raw, seen):
    """Success is no error and a 2xx response, and for a Responses body a completed or
    incomplete status (a line an older version wrote for a failed response is a failure
    now); the cost is the body's usage.cost; a torn, glued or foreign line is no result."""
    read = read_output_line(raw)
    assert (read if read is None else read[: len(seen)]) == seen


# -- reading a whole output back -----------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(
    results=st.lists(st.tuples(st.sampled_from("abcdefgh"), st.booleans()), max_size=40),
    cut=st.integers(min_value=1, max_value=60),
)
def test_resume_state_from_any_output_and_a_torn_tail(results, cut):
    """Done ids are those with a successful line; failed ids have failure lines only; a
    torn last line (any prefix) is never a result."""
    lines = [
        success_line(f"r{n}", cid, completion_from(json.dumps(ANSWER).encode()))
        if ok
        else failure_line(f"r{n}", cid, APIConnectionError("x"))[0]
        for n, (cid, ok) in enumerate(results)
    ]
    torn = failure_line("t", "z", APIConnectionError("y"))[0][:cut].rstrip(b"\n")
    state = ResumeState()
    scan = state.begin(pytest.importorskip("pathlib").Path("out.jsonl"))
    for raw in [*lines, torn]:
        if raw.endswith(b"\n"):
            state.feed(scan, raw)
    resume = state.finish()
    ok_ids = {cid for cid, ok in results if ok}
    failed_ids = {cid for cid, ok in results if not ok} - ok_ids
    for cid in "abcdefghz":
        assert (fingerprint(cid) in resume.ok) == (cid in ok_ids)
        assert (fingerprint(cid) in resume.failed) == (cid in failed_ids)
    assert resume.stale == sum(1 for cid, ok in results if not ok and cid in ok_ids)
    assert scan.lines == len(lines) and scan.unreadable == 0
    assert scan.size == sum(len(raw) for raw in lines)
    assert resume.empty == (not results)


# -- summaries, checks, stops ----------------------------------------------------------------


def test_money_and_summary_forms():
    """Money keeps small amounts readable; the summary's text and JSON carry every count."""
    assert format_money(0) == "$0.0000" and format_money(0.000123) == "$0.000123"
    assert format_money(1234.5) == "$1,234.5000"
    summary = BatchSummary("in.jsonl", "out.jsonl", "err.jsonl", max_cost=1.0)
    summary.to_run = 10
    summary.lines = 12
    summary.skipped = 2
    summary.started = 6
    start_requests(summary)
    record_ok(summary, 3, 2, 5, 0.1)
    record_ok(summary, 3, 2, 5, None)
    record_failure(summary, "429 rate_limited")
    record_failure(summary, "429 rate_limited")
    assert summary.in_flight == 2 and summary.done == 4
    assert "4/10 done" in summary.progress_line()
    summary.stop_reason = "budget"
    finish(summary)
    data = summary.to_dict()
    assert data["failures"] == {"429 rate_limited": 2} and data["cancelled"] == 2
    assert data["not_started"] == 4 and data["answers_without_cost"] == 1
    assert data["complete"] is False and data["total_tokens"] == 10
    text = summary.format()
    for piece in ("err.jsonl", "429 rate_limited: 2", "budget is reached", "$1.0000 allowed"):
        assert piece in text
    assert "BatchSummary(ok=2" in repr(summary)
    for reason, words in (
        ("interrupted", "run again to resume"),
        ("fatal_error", "no key"),
        (None, "retry the failed"),
    ):
        summary.stop_reason = reason
        summary.stop_detail = "no key"
        summary.compacted = 3
        assert words in summary.format() and "3 superseded" in summary.format()


def test_a_check_keeps_the_first_problems_and_counts_all():
    """At most MAX_PROBLEMS problems are kept; the text shows 20 and how many more."""
    check = BatchCheck("in.jsonl")
    for number in range(1, MAX_PROBLEMS + 11):
        check.add_problem(number, "bad")
    assert check.invalid == MAX_PROBLEMS + 10 and len(check.problems) == MAX_PROBLEMS
    text = check.format_problems()
    assert text[0] == "line 1: bad" and text[-1] == f"... and {MAX_PROBLEMS - 10:,} more"
    check.done, check.failed_before = 1, 2
    assert "already done: 1; failed before: 2" in check.format()
    assert check.to_dict()["invalid"] == MAX_PROBLEMS + 10
    assert "BatchCheck(lines=0" in repr(check)


def test_a_stop_escalates_and_tells_its_listeners():
    """The first request is graceful, the second (or immediate=True) is at once."""
    stop = BatchStop()
    heard: list[bool] = []
    forget = stop.add_listener(heard.append)
    assert not stop.requested and repr(stop) == "BatchStop(not requested)"
    stop.request()
    assert stop.requested and not stop.immediate
    stop.request()
    assert stop.immediate and heard == [False, True]
    forget()
    stop.request()
    assert heard == [False, True] and repr(stop) == "BatchStop(immediate)"
    fresh = BatchStop()
    fresh.request(immediate=True)
    assert fresh.immediate


def test_rate_limit_error_is_a_status_error_outcome():
    """A 429 built by hand names its status and code."""
    error = RateLimitError("slow", status_code=429, code="quota")
    assert describe_failure(error)[3] == "429 quota"


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c", "d", "", None, 5]), st.booleans()),
        max_size=25,
    )
)
def test_validation_matches_a_plain_reading_of_the_rules(rows):
    """Problems land on exactly the lines a naive reader finds bad: a missing or non-string
    id, a bad body, or a later copy of an id (each line reported once)."""
    import tempfile
    from pathlib import Path

    from routmy_async._batchfile._files import InputFile
    from routmy_async._batchfile._validate import check_input

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "in.jsonl"
        with path.open("w") as out:
            for custom_id, good in rows:
                body = chat_body() if good else chat_body(temperature="hot")
                out.write(json.dumps({"custom_id": custom_id, "body": body}) + "\n")
        source = InputFile(path)
        skipped = array("Q")
        try:
            check = check_input(
                source,
                endpoint=CHAT,
                resume=None,
                retry_failed=True,
                bad_lines=skipped,
                should_stop=lambda: False,
            )
        finally:
            source.close()
    seen: set[str] = set()
    bad: list[int] = []
    for number, (custom_id, good) in enumerate(rows, 1):
        usable = isinstance(custom_id, str) and custom_id
        if not usable or not good or custom_id in seen:
            bad.append(number)
        if usable:
            seen.add(custom_id)
    assert [number for number, _ in check.problems] == bad
    assert list(skipped) == bad
    assert check.valid == check.to_run == len(rows) - len(bad) and check.invalid == len(bad)
