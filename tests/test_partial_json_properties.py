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
