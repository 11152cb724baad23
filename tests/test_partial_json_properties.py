"""Any JSON text, split anywhere: every partial agrees with the final value, and the last one
equals json.loads."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from routmy_async._exceptions import InvalidJSONError
from routmy_async._partial_json import PartialJSON

# Every code point, lone surrogates included: json.dumps writes them as \\uXXXX escapes
# (ensure_ascii) or as they are, and json.loads reads both back.
any_text = st.text(st.characters(codec=None, categories=None, exclude_categories=()), max_size=12)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | any_text
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(any_text, children, max_size=5)
    ),
    max_leaves=25,
)
dump_options = st.fixed_dictionaries(
    {
        "ensure_ascii": st.booleans(),
        "indent": st.none() | st.integers(min_value=0, max_value=2),
        "separators": st.sampled_from([None, (",", ":"), (" , ", " : ")]),
    }
)
# What models put around JSON: nothing, a BOM, whitespace, a Markdown fence.
wrappers = st.sampled_from(
    [("", ""), ("\ufeff", ""), (" \n\t", "\r\n "), ("```json\n", "\n```"), ("```\n", "```\nok")]
)


def consistent(shown: Any, later: Any, *, growing: list[int]) -> bool:
    """Whether ``later`` keeps everything ``shown`` showed: same scalars, keys in the same
    order, items in place, and a string only ever extended (counted in ``growing``)."""
    if isinstance(shown, dict):
        if not isinstance(later, dict) or list(later)[: len(shown)] != list(shown):
            return False
        return all(consistent(shown[key], later[key], growing=growing) for key in shown)
    if isinstance(shown, list):
        if not isinstance(later, list) or len(later) < len(shown):
            return False
        return all(consistent(a, b, growing=growing) for a, b in zip(shown, later, strict=False))
    if isinstance(shown, str) and isinstance(later, str) and shown != later:
        growing.append(1)
        return later.startswith(shown)
    return type(shown) is type(later) and shown == later


@given(value=json_values, options=dump_options, wrapper=wrappers, data=st.data())
def test_every_partial_agrees_with_the_final_value(value, options, wrapper, data):
    """At any split (inside strings, escapes, surrogate pairs, numbers, literals, whitespace,
    fences), nothing shown is taken back but a string in progress, and the end is json.loads."""
    body = json.dumps(value, **options)
    text = wrapper[0] + body + wrapper[1]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=40)))
    final = json.loads(body)
    parser = PartialJSON()
    previous: Any = None
    for start, stop in zip([0, *cuts], [*cuts, len(text)], strict=True):
        parser.feed(text[start:stop])
        if not parser.started:
            continue
        partial = parser.snapshot()
        growing: list[int] = []
        assert consistent(partial, final, growing=growing)
        assert len(growing) <= 1  # only the string in progress may be unfinished
        if previous is not None:
            assert consistent(previous, partial, growing=[])
        previous = partial
    assert parser.finish() == final
    assert parser.value == final


@given(value=json_values, options=dump_options)
def test_one_character_at_a_time_gives_json_loads(value, options):
    """The finest split of all: every delta a single character."""
    text = json.dumps(value, **options)
    parser = PartialJSON()
    for char in text:
        parser.feed(char)
    assert parser.finish() == json.loads(text)


@given(value=json_values, data=st.data())
def test_a_damaged_text_fails_where_json_loads_fails(value, data):
    """Drop one character: if json.loads rejects the result, so does the parser, and if it
    accepts it, the parser gives the same value."""
    text = json.dumps(value)
    cut = data.draw(st.integers(0, len(text) - 1))
    damaged = text[:cut] + text[cut + 1 :]
    try:
        expected: Any = json.loads(damaged)
    except ValueError as error:
        expected = error
    parser = PartialJSON()
    try:
        for char in damaged:
            parser.feed(char)
        got: Any = parser.finish()
    except InvalidJSONError as error:
        got = error
    if isinstance(expected, ValueError):
        assert isinstance(got, InvalidJSONError), damaged
    else:
        assert got == expected


# Objects as a model writes them for a response_format: plain keys (some longer than the
# length up to which a cut member is read again whole), numbers, literals, plain strings, and
# nested objects and arrays, so the one-match member path and its carry meet every split.
plain_keys = st.text(st.sampled_from("abcxyz_é 1"), min_size=0, max_size=80)
plain_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.sampled_from('ab "\\\n\u00e9\ud83d'), max_size=6)
)
plain_objects = st.recursive(
    plain_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(plain_keys, children, max_size=4)
    ),
    max_leaves=16,
)


class _Silent:
    """A listener that does nothing: with one, the parser reads every member token by token
    (the one-match member path is for parsers without a listener), the reference here."""

    def opened(self, key: Any, container: Any) -> None:
        pass

    def completed(self, key: Any, value: Any) -> None:
        pass


def _fed(text: str, cuts: list[int], parser: PartialJSON) -> list[Any]:
    """The partial value after each delta of ``text`` cut at ``cuts`` (deep copies)."""
    values = []
    for start, stop in zip([0, *cuts], [*cuts, len(text)], strict=True):
        parser.feed(text[start:stop])
        values.append(parser.snapshot())
    return values


def _cuts(data: Any, text: str, most: int) -> list[int]:
    drawn = data.draw(st.lists(st.integers(1, max(len(text) - 1, 1)), max_size=most))
    return sorted({cut for cut in drawn if 0 < cut < len(text)})


@given(value=plain_objects, options=dump_options, data=st.data())
def test_a_member_read_in_one_match_shows_what_token_by_token_shows(value, options, data):
    """After every delta, the parser that reads a usual member in one match (or carries it
    whole to the next delta) shows exactly what the token-by-token reading shows, and that is
    the value of the text so far fed at once: it depends on the text, not on its cuts."""
    text = json.dumps(value, **options)
    cuts = _cuts(data, text, 30)
    fast = _fed(text, cuts, PartialJSON())
    assert fast == _fed(text, cuts, PartialJSON(listener=_Silent()))
    for cut, shown in zip(cuts, fast, strict=False):
        whole = PartialJSON()
        whole.feed(text[:cut])
        assert shown == whole.snapshot(), (text[:cut],)


def _fails_at(text: str, cuts: list[int], parser: PartialJSON) -> tuple[int, int | None]:
    """Which delta raised (its end; past the text: ``finish``), and the offset named."""
    fed = 0
    try:
        for start, stop in zip([0, *cuts], [*cuts, len(text)], strict=True):
            fed = stop
            parser.feed(text[start:stop])
        fed = len(text) + 1
        parser.finish()
    except InvalidJSONError as error:
        return fed, error.offset
    return -1, None


@given(value=plain_objects, data=st.data())
def test_an_error_comes_with_the_delta_that_brings_it(value, data):
    """Damage a text (drop, double or replace a character): the error is raised by the same
    delta, naming the same offset, as the token-by-token reading raises it: a member carried
    to the next delta never puts an error off."""
    text = json.dumps(value)
    at = data.draw(st.integers(0, len(text) - 1))
    damage = data.draw(st.sampled_from(["", text[at] * 2, "x", "1", "}", ",", ".", "e", "t"]))
    damaged = text[:at] + damage + text[at + 1 :]
    for cuts in (list(range(1, len(damaged))), _cuts(data, damaged, 20)):
        expected = _fails_at(damaged, cuts, PartialJSON(listener=_Silent()))
        assert _fails_at(damaged, cuts, PartialJSON()) == expected, (damaged, cuts)


def _char_by_char(text: str) -> list[Any]:
    """The reference reading: one character a delta, a listener heard (so no step reads more
    than one token, and no shortcut across '{"', '}, {"' or ', "' can fire); the value after
    each character, and ``finish``'s (or the error's offset) at the end."""
    parser = PartialJSON(listener=_Silent())
    shown = [parser.snapshot()]
    for char in text:
        parser.feed(char)
        shown.append(parser.snapshot())
    return shown


@given(value=plain_objects, options=dump_options, data=st.data())
def test_the_shortcuts_across_structure_show_what_one_character_at_a_time_shows(
    value, options, data
):
    """Deltas cut anywhere, read with and without a listener (the one-match member path and
    the shortcuts across '{"', '["', '}, {"', '}, "' and ', "'): after every delta the value
    shown is the one the reference shows after the same characters."""
    text = json.dumps(value, **options)
    reference = _char_by_char(text)
    cuts = _cuts(data, text, 30)
    for parser in (PartialJSON(), PartialJSON(listener=_Silent())):
        shown = _fed(text, cuts, parser)
        assert shown == [reference[stop] for stop in [*cuts, len(text)]], (text, cuts)
        assert parser.finish() == json.loads(text)


@given(value=plain_objects, data=st.data())
def test_the_shortcuts_raise_where_one_character_at_a_time_raises(value, data):
    """A damaged text read in deltas cut anywhere, with or without a listener: the error
    names the offset the reference names, and comes with the delta holding that character
    (or with ``finish`` when the reference's comes there)."""
    text = json.dumps(value)
    at = data.draw(st.integers(0, len(text) - 1))
    damage = data.draw(st.sampled_from(["", "x", "{", "}", "]", ",", ":", '"', " {", "[{"]))
    damaged = text[:at] + damage + text[at + 1 :]
    one_by_one = list(range(1, len(damaged)))
    reference_fed, offset = _fails_at(damaged, one_by_one, PartialJSON(listener=_Silent()))
    cuts = _cuts(data, damaged, 20)
    if offset is None:
        expected: tuple[int, int | None] = (-1, None)
    elif reference_fed > len(damaged):
        expected = (reference_fed, offset)
    else:
        expected = (min(stop for stop in [*cuts, len(damaged)] if stop >= reference_fed), offset)
    for parser in (PartialJSON(), PartialJSON(listener=_Silent())):
        assert _fails_at(damaged, cuts, parser) == expected, (damaged, cuts)
