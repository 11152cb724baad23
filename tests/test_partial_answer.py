"""The pure core under the streams' partials: PartialAnswer, its views, json_text."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routmy_async import FieldValidationError, InvalidJSONError
from routmy_async._partial_stream import PartialAnswer, json_text, partial_format

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)
_WRAPPINGS = st.sampled_from(
    ["{}", "  {}\n", "\ufeff{}", "```json\n{}\n```", "```\n{}\n```\nmore text", "\n```JSON\n{}```"]
)


@given(value=_JSON, wrapping=_WRAPPINGS)
def test_json_text_finds_the_json_in_any_wrapping(value, wrapping):
    """A BOM, whitespace or a Markdown fence around any JSON value: json_text gives text that
    decodes to the value, as the incremental parser reads it."""
    text = wrapping.replace("{}", json.dumps(value))
    assert json.loads(json_text(text)) == value
    answer = PartialAnswer()
    for char in text:
        answer.add(char)
    answer.end()  # a number ending the text is complete only at the end
    assert answer.value() == value


def test_json_text_leaves_other_text_alone():
    """Text that is not fenced comes back as it is (the decoder then says what is wrong)."""
    assert json_text('{"a": 1}') == '{"a": 1}'
    assert json_text("not json") == "not json"
    assert json_text("```json") == "```json"


def test_nothing_is_parsed_until_read():
    """Adding deltas parses nothing: text that is not JSON raises only when a value is read,
    and only from the delta that broke it on."""
    answer = PartialAnswer()
    views = [answer.add(piece) for piece in ['{"a": ', "1}", " x"]]
    assert views[1].snapshot() == '{"a": 1}'
    with pytest.raises(InvalidJSONError):
        views[2].parsed()
    with pytest.raises(InvalidJSONError):
        views[2].parsed()  # the answer stays broken from there on
    assert views[0].parsed() == {}  # an older view: its own text, which is fine
    assert views[1].parsed() == {"a": 1}


def test_eager_raises_from_add_and_stays_broken():
    """An eager answer checks each delta as it is added; after a failure every read of a
    later view raises the same error."""
    schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0}}}
    found = partial_format({"type": "json_schema", "schema": schema}, None, validate="eager")
    assert found is not None
    answer = found.answer()
    first = answer.add('{"n": ')
    with pytest.raises(FieldValidationError) as caught:
        answer.add("-3}")
    assert caught.value.path == ("n",)
    with pytest.raises(FieldValidationError):
        answer.value()
    assert first.parsed() == {}


def test_partial_format_refuses_bad_validate_values():
    """validate must be 'final' or 'eager'; 'eager' needs a JSON format; a text format
    follows nothing."""
    with pytest.raises(TypeError):
        partial_format({"type": "json_object"}, None, validate=True)
    with pytest.raises(ValueError, match="'final' or 'eager'"):
        partial_format({"type": "json_object"}, None, validate="lazy")
    with pytest.raises(ValueError, match="response_format"):
        partial_format({"type": "text"}, None, validate="eager")
    assert partial_format({"type": "text"}, None, validate="final") is None
    assert partial_format(None, None, validate="final") is None


def test_a_number_ending_the_answer_shows_once_it_ends():
    """A bare number is held back while digits may follow; the answer's end completes it,
    and an eager check runs on it then."""
    answer = PartialAnswer()
    view = answer.add("12")
    assert view.parsed() is None
    answer.end()
    assert view.parsed() == 12
    found = partial_format(
        {"type": "json_schema", "schema": {"type": "integer", "maximum": 10}},
        None,
        validate="eager",
    )
    assert found is not None
    eager = found.answer()
    eager.add("12")
    with pytest.raises(FieldValidationError, match="<= 10"):
        eager.end()
