"""The incremental JSON parser: partial values at every split, cut tokens, fences, errors."""

from __future__ import annotations

import json
from typing import Any

import pytest

from routmy_async._exceptions import ContentParseError, InvalidJSONError
from routmy_async._partial_json import Key, PartialJSON, Path


def feed_all(*deltas: str) -> PartialJSON:
    parser = PartialJSON()
    for delta in deltas:
        parser.feed(delta)
    return parser


def partials_at_every_split(text: str) -> list[Any]:
    """The partial value after each character of ``text`` fed one at a time."""
    parser = PartialJSON()
    partials = []
    for char in text:
        parser.feed(char)
        partials.append(parser.snapshot())
    return partials


def test_a_string_in_progress_shows_as_far_as_it_has_arrived():
    """A string value still arriving is shown decoded up to the last delta."""
    parser = feed_all('{"name": "Wid')
    assert parser.value == {"name": "Wid"}
    parser.feed('get", "note": "')
    assert parser.value == {"name": "Widget", "note": ""}


def test_a_key_shows_only_once_its_name_is_complete_and_its_value_has_begun():
    """A key being written, or one whose value has not begun, is absent."""
    assert feed_all('{"na').value == {}
    assert feed_all('{"name"').value == {}
    assert feed_all('{"name": ').value == {}
    assert feed_all('{"name": [').value == {"name": []}


def test_numbers_show_only_when_a_delimiter_ends_them():
    """12 may become 125 or 12.5: a number is absent until something follows it."""
    parser = feed_all('{"a": 12')
    assert parser.value == {}
    parser.feed("5")
    assert parser.value == {}
    parser.feed("}")
    assert parser.value == {"a": 125}
    assert parser.done


@pytest.mark.parametrize("text", ["-1.5e-3", "0", "-0", "1E+2", "12.0", "3e7", "-10"])
def test_a_number_split_anywhere_reads_as_json_loads_does(text):
    """'-', '1.', '1e' and '1e-' are incomplete, never errors; the whole gives the same value."""
    document = f"[{text}]"
    for cut in range(len(document) + 1):
        parser = feed_all(document[:cut], document[cut:])
        value = parser.finish()
        assert value == json.loads(document)
        assert type(value[0]) is type(json.loads(document)[0])


def test_a_top_level_number_completes_at_the_end_of_the_text():
    """A bare number has no delimiter after it: finish() completes it."""
    parser = feed_all("4", "2")
    assert parser.value is None
    assert parser.finish() == 42


@pytest.mark.parametrize("literal", ["true", "false", "null"])
def test_literals_split_anywhere_show_only_when_complete(literal):
    """A cut literal is absent, then appears whole."""
    for cut in range(1, len(literal)):
        parser = feed_all("[" + literal[:cut])
        assert parser.value == []
        parser.feed(literal[cut:] + "]")
        assert parser.value == [json.loads(literal)]


@pytest.mark.parametrize(
    "escaped", [r"\n", r"\"", r"\\", r"\/", r"\u00e9", r"\ud83d\ude00", r"\ud83d", r"\u2028"]
)
def test_escapes_split_anywhere_decode_as_json_loads_does(escaped):
    """An escape cut by a delta is held back, then decoded whole (a surrogate pair included)."""
    document = f'["a{escaped}b"]'
    expected = json.loads(document)
    for cut in range(len(document) + 1):
        parser = feed_all(document[:cut])
        shown = parser.value
        if shown:
            # What is shown of the string is a prefix of the final string.
            assert expected[0].startswith(shown[0])
        parser.feed(document[cut:])
        assert parser.finish() == expected


def test_an_escaped_backslash_before_u_is_not_a_surrogate_escape():
    """In "\\\\ud83d" the backslash is escaped: "ud83d" is plain text, shown at once."""
    parser = feed_all('["\\\\ud83d')
    assert parser.value == ["\\ud83d"]


def test_a_surrogate_pair_is_never_shown_as_a_lone_half():
    """The first half of a pair waits for the second, so the partial never holds it alone."""
    parser = feed_all('["x\\ud83d')
    assert parser.value == ["x"]
    parser.feed("\\ude00")
    assert parser.value == ["x\U0001f600"]


def test_the_value_is_one_live_object_grown_in_place():
    """value returns the same object every time; a kept reference shows later deltas."""
    parser = feed_all('{"items": [1, ')
    kept = parser.value
    parser.feed('2, {"a": "b"}]')
    assert parser.value is kept
    assert kept == {"items": [1, 2, {"a": "b"}]}


def test_snapshot_is_independent_of_later_deltas():
    """snapshot() is a deep copy that later deltas leave alone."""
    parser = feed_all('{"items": [1, ')
    frozen = parser.snapshot()
    parser.feed('2, "x"]}')
    assert frozen == {"items": [1]}


def test_a_string_in_a_list_is_replaced_not_appended_when_it_grows():
    """Reading the partial in the middle of a list item string, twice, leaves one item."""
    parser = feed_all('["ab')
    assert parser.value == ["ab"]
    parser.feed("cd")
    assert parser.value == ["abcd"]
    parser.feed('", [')
    assert parser.value == ["abcd", []]


@pytest.mark.parametrize("prefix", ["\ufeff", "  \n\t", "\ufeff\n "])
def test_a_leading_bom_and_whitespace_are_skipped(prefix):
    """An answer that starts with a byte order mark or whitespace parses as its JSON."""
    text = prefix + '{"a": 1}'
    for cut in range(len(text) + 1):
        assert feed_all(text[:cut], text[cut:]).finish() == {"a": 1}


def test_a_bom_after_the_start_is_an_error():
    """Only the very first character may be a byte order mark."""
    with pytest.raises(InvalidJSONError) as caught:
        feed_all(" \ufeff{}")
    assert caught.value.offset == 1


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"a": [1, "x"]}\n```',
        '```\n{"a": [1, "x"]}\n```\nThat is the order.',
        '  ```json  \r\n{"a": [1, "x"]}```',
        '```json {"a": [1, "x"]}```',  # the fence and the JSON on one line
        '```JSON{"a": [1, "x"]}\n```',
        '```{"a": [1, "x"]} ```',
    ],
)
def test_partials_read_inside_a_markdown_fence_at_every_split(text):
    """A fenced answer parses as its JSON; the closing fence ends it, prose after is ignored."""
    for cut in range(len(text) + 1):
        for second in range(cut, len(text) + 1):
            parser = feed_all(text[:cut], text[cut:second], text[second:])
            assert parser.finish() == {"a": [1, "x"]}
    assert partials_at_every_split(text)[text.index('"x"') + 2] == {"a": [1, "x"]}


def test_a_fence_that_is_not_closed_still_gives_the_value():
    """A model that stops before its closing fence still gave complete JSON."""
    assert feed_all('```json\n{"a": 1}\n').finish() == {"a": 1}


@pytest.mark.parametrize(
    ("text", "offset", "words"),
    [
        ('{"a" 1}', 5, "expected ':'"),
        ("[1,]", 3, "expected a value"),
        ('{"a": 1,}', 8, "expected a key"),
        ('{"a": 1]', 7, "expected ',' or '}'"),
        ("[1 2]", 3, "expected ',' or ']'"),
        ('["a\nb"]', 3, "control character"),
        ('["a\\xb"]', 3, "invalid escape"),
        ('["\\n\x01"]', 4, "control character"),
        ('["\\u12G4"]', 2, "invalid escape"),
        ("[01]", 1, "not a number"),
        ("[1.]", 1, "not a number"),
        ("[-]", 1, "not a number"),
        ("[1e+]", 1, "not a number"),
        ("[tru]", 1, "expected 'true'"),
        ("[nul1]", 1, "expected 'null'"),
        ("{} x", 3, "after the JSON value"),
        ("{}```", 2, "after the JSON value"),
        ("NaN", 0, "expected a value"),
        ("``x", 0, "expected '```'"),
    ],
)
def test_invalid_json_raises_a_typed_error_naming_the_offset(text, offset, words):
    """Text that cannot become JSON raises InvalidJSONError with the offending offset, whole
    or fed a character at a time."""
    for deltas in ([text], list(text)):
        with pytest.raises(InvalidJSONError) as caught:
            feed_all(*deltas).finish()
        assert caught.value.offset == offset
        assert words in str(caught.value)
        assert f"character {offset}" in str(caught.value)
        assert isinstance(caught.value, ContentParseError)


def test_the_error_is_raised_by_the_delta_that_brings_the_bad_text():
    """Nothing waits for the end: the delta holding the bad character raises."""
    parser = feed_all('{"a": [1, 2')
    with pytest.raises(InvalidJSONError):
        parser.feed("x")


def test_a_broken_parser_stays_broken():
    """After an error, every later feed and finish raises the same error."""
    parser = PartialJSON()
    with pytest.raises(InvalidJSONError) as first:
        parser.feed("[1,,")
    with pytest.raises(InvalidJSONError) as again:
        parser.feed("2]")
    assert again.value is first.value
    with pytest.raises(InvalidJSONError):
        parser.finish()


@pytest.mark.parametrize("text", ["", "  ", "{", '{"a": "b', "[1, 2", "```json\n", "tru"])
def test_finish_before_the_value_is_complete_raises(text):
    """An answer that ends early raises, naming the end as the offset."""
    with pytest.raises(InvalidJSONError) as caught:
        feed_all(text).finish()
    assert caught.value.offset == len(text)
    assert "ended" in str(caught.value)


def test_started_and_done_follow_the_value():
    """started turns true with the first character of the value, done with its last."""
    parser = feed_all("\ufeff  ")
    assert (parser.started, parser.done, parser.value) == (False, False, None)
    parser.feed('"a')
    assert (parser.started, parser.done) == (True, False)
    parser.feed('"')
    assert (parser.started, parser.done, parser.value) == (True, True, "a")


class Recorder:
    def __init__(self) -> None:
        self.parser = PartialJSON(listener=self)
        self.events: list[tuple[str, Key, Path, Any]] = []

    def opened(self, key: Key, container: dict[str, Any] | list[Any]) -> None:
        self.events.append(("opened", key, self.parser.path(), type(container).__name__))

    def completed(self, key: Key, value: Any) -> None:
        self.events.append(("completed", key, self.parser.path(), json.dumps(value)))


def test_the_listener_hears_each_container_open_and_each_value_complete_with_its_key():
    """The key is the value's place in the innermost open container (None at the root); a
    container completes after its items, once it is no longer open (path() is its parent's)."""
    recorder = Recorder()
    for char in '{"a": [1, {"b": "x"}], "c": null}':
        recorder.parser.feed(char)
    assert recorder.events == [
        ("opened", None, (), "dict"),
        ("opened", "a", ("a",), "list"),
        ("completed", 0, ("a", 0), "1"),
        ("opened", 1, ("a", 1), "dict"),
        ("completed", "b", ("a", 1, "b"), '"x"'),
        ("completed", 1, ("a", 1), '{"b": "x"}'),
        ("completed", "a", ("a",), '[1, {"b": "x"}]'),
        ("completed", "c", ("c",), "null"),
        ("completed", None, (), '{"a": [1, {"b": "x"}], "c": null}'),
    ]


def test_string_in_progress_names_its_key_and_what_arrived():
    """The key of the string being read and its text so far; None outside a string."""
    parser = feed_all('{"a": [1, "xy')
    assert parser.string_in_progress() == (1, "xy")
    parser.feed('z"')
    assert parser.string_in_progress() is None


def test_a_long_string_is_never_carried_whole_from_delta_to_delta():
    """Each delta of a long string is decoded once: the text carried over stays short, so the
    cost of a delta does not grow with the string."""
    parser = feed_all('{"text": "')
    for _ in range(2000):
        parser.feed("0123456789abcdef")
        assert len(parser._carry) == 0
    parser.feed("\\u00")
    assert parser._carry == "\\u00"
    parser.feed('e9"}')
    assert parser.finish() == {"text": "0123456789abcdef" * 2000 + "é"}
