"""One set of value checks: the same value gets the same verdict and words everywhere."""

from __future__ import annotations

import enum

import pytest

from routmy_async import AsyncRoutmy, RateLimit
from routmy_async._checks import check_count, is_integer, is_number
from routmy_async._params import CHAT_CHECKS, check_params
from routmy_async.resources.responses._params import RESPONSES_CHECKS, check_response_params


class Level(enum.IntEnum):
    LOW = 1


@pytest.mark.parametrize(
    ("value", "integer", "number"),
    [
        (0, True, True),
        (Level.LOW, True, True),
        (1.5, False, True),
        (True, False, False),
        (False, False, False),
        ("1", False, False),
        (None, False, False),
    ],
)
def test_a_bool_is_neither_an_int_nor_a_number(value, integer, number):
    """An int (or an int subclass) is an int; a float a number; a bool neither."""
    assert is_integer(value) is integer and is_number(value) is number


@pytest.mark.parametrize("value", [-1, True, 1.0, "2", None])
def test_check_count_names_the_field_and_its_minimum(value):
    """A count that is not an int of at least its minimum is a ValueError naming both."""
    with pytest.raises(ValueError, match=rf"^max_retries must be an int >= 0, not {value!r}$"):
        check_count("max_retries", value, 0)
    check_count("max_retries", 0, 0)  # the minimum itself passes


@pytest.mark.parametrize(
    ("params", "error", "message"),
    [
        ({"max_tokens": "5"}, TypeError, "max_tokens must be an int, not '5'"),
        ({"max_tokens": True}, TypeError, "max_tokens must be an int, not True"),
        ({"max_tokens": -1}, ValueError, "max_tokens must not be negative, not -1"),
        ({"n": 0}, ValueError, "n must be at least 1, not 0"),
        ({"temperature": "hot"}, TypeError, "temperature must be a number, not 'hot'"),
    ],
)
def test_chat_and_responses_share_the_checks_and_their_words(params, error, message):
    """A field both APIs take is refused by both with the same exception and message."""
    for check in (check_params, check_response_params):
        with pytest.raises(error) as info:
            check(params)
        assert str(info.value) == message


def test_responses_checks_extend_the_chat_checks():
    """Responses checks every chat field the same way, plus its own; chat leaves those alone."""
    assert all(RESPONSES_CHECKS[name] == check for name, check in CHAT_CHECKS.items())
    with pytest.raises(ValueError, match="max_tool_calls must not be negative"):
        check_response_params({"max_tool_calls": -1})
    check_params({"max_tool_calls": -1, "text": 5})  # unknown to chat: sent as given


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda: AsyncRoutmy(api_key="k", max_connections=0),
            "max_connections must be an int >= 1",
        ),
        (lambda: AsyncRoutmy(api_key="k", max_retries=True), "max_retries must be an int >= 0"),
        (lambda: RateLimit(requests_per_minute=True), "requests_per_minute must be a number"),
    ],
)
def test_constructors_use_the_same_checks(make, message):
    """Constructors refuse a bool or an out-of-range count with the shared wording."""
    with pytest.raises((TypeError, ValueError), match=message):
        make()
