"""One parser reads every error body: status errors, stream error frames, Responses errors."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routmy_async import APIStreamError
from routmy_async._exceptions import ErrorBody, parse_error_body, status_error, stream_error

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# Bodies that look like error bodies, with each field of any JSON type, so the shapes are hit.
FIELD_NAMES = st.sampled_from(["message", "code", "type", "param", "metadata", "error_id", "x"])
ERRORISH = st.recursive(
    JSON_SCALARS,
    lambda inner: st.dictionaries(FIELD_NAMES | st.just("error"), inner, max_size=6),
    max_leaves=12,
)


def assert_typed(parsed: ErrorBody) -> None:
    assert isinstance(parsed, ErrorBody)
    assert parsed.message is None or (isinstance(parsed.message, str) and parsed.message)
    assert parsed.code is None or type(parsed.code) in (int, str)
    assert parsed.type is None or isinstance(parsed.type, str)
    assert parsed.param is None or isinstance(parsed.param, str)
    assert parsed.error_id is None or isinstance(parsed.error_id, str)
    assert isinstance(parsed.names_error, bool) and isinstance(parsed.text, str)
    assert isinstance(parsed.stated_message("default"), str)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_any_bytes_give_a_typed_result(body):
    """Any bytes (not JSON, cut UTF-8, empty) parse into typed fields, never an exception."""
    parsed = parse_error_body(body)
    assert_typed(parsed)
    assert parsed.text == body.decode("utf-8", "replace")


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES | ERRORISH)
def test_any_json_gives_the_same_typed_result_as_its_bytes(value):
    """A decoded JSON value and its encoded bytes read alike, with typed fields only."""
    from_value = parse_error_body(value)
    from_bytes = parse_error_body(msgspec.json.encode(value))
    assert_typed(from_value)
    assert_typed(from_bytes)
    fields = ("message", "code", "type", "param", "error_id", "names_error")
    assert [getattr(from_value, f) for f in fields] == [getattr(from_bytes, f) for f in fields]


@settings(max_examples=200, deadline=None)
@given(ERRORISH, st.integers(min_value=400, max_value=599))
def test_a_status_error_always_has_a_message_and_typed_fields(value, status):
    """Any JSON body makes a status error with a message and a code of the documented type."""
    error = status_error(status, msgspec.json.encode(value), {}, reason="Oops")
    assert isinstance(error.message, str) and error.message
    assert error.code is None or type(error.code) in (int, str)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"error": {"message": "m", "code": 5, "type": "t", "param": "p", "metadata": [1]}}',
         {"message": "m", "code": 5, "type": "t", "param": "p", "metadata": [1],
          "names_error": True}),
        (b'{"error": "quota spent", "code": "q", "type": "t"}',
         {"message": "quota spent", "code": "q", "type": "t", "metadata": None,
          "names_error": True}),
        (b'{"message": "flat", "code": 429}',
         {"message": "flat", "code": 429, "names_error": False}),
        (b'{"error": {"code": 502}, "message": "outer", "error_id": 7}',
         {"message": "outer", "code": 502, "error_id": "7"}),
        (b'{"error": {"message": "inner"}, "message": "outer", "code": "c"}',
         {"message": "inner", "code": "c"}),
        (b'{"error": null, "n": 1}', {"message": None, "names_error": False}),
        (b'{"error": {}}', {"names_error": False}),
        (b'{"message": 5, "code": true, "type": 1}', {"message": None, "code": None, "type": None}),
        (b"", {"decoded": None, "message": None}),
        (b"<html>Bad Gateway</html>", {"decoded": "<html>Bad Gateway</html>", "message": None}),
    ],
)  # fmt: skip
def test_each_known_shape(body: bytes, expected: dict[str, Any]):
    """Each documented shape puts its fields where they belong; a field of the wrong JSON type
    reads as absent; the error object wins over top-level fields, which fill its gaps."""
    parsed = parse_error_body(body)
    assert {name: getattr(parsed, name) for name in expected} == expected


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"error": {"message": "busy"}}', "busy"),
        (b'{"error": {"code": 1}}', "the server reported an error"),
        (b"upstream   exploded\n", "upstream exploded"),
        (b'"a json string"', "a json string"),
        (b'{"message": 5}', '{"message": 5}'),
        (b"x" * 1000, "x" * 300),
        (b"", "the server reported an error"),
    ],
)
def test_a_stream_error_message(body, message):
    """A stream error says the server's message; else an excerpt of a body that names no error
    object; else that the server reported an error."""
    error = stream_error(body, request_id="req-1")
    assert isinstance(error, APIStreamError)
    assert error.message == message and error.request_id == "req-1"
