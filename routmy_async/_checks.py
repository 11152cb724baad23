"""Value checks shared by every params module and constructor: one test per kind of value, one
table form for the optional fields of a request, one wording per message.

Pure: no I/O, no imports from the rest of the package. A ``bool`` is never a number here,
though Python makes it an ``int``: ``max_tokens=True`` is a mistake, not ``1``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    # For the type checker only (annotations are not evaluated): narrows on both branches.
    from typing_extensions import TypeIs

__all__ = [
    "FieldCheck",
    "check_count",
    "field_checker",
    "is_boolean",
    "is_integer",
    "is_mapping",
    "is_mappings",
    "is_number",
    "is_string",
    "is_string_map",
    "is_strings",
]


def is_integer(value: object) -> TypeIs[int]:
    # The exact-type test first: the common value costs no isinstance call on the request path.
    return value.__class__ is int or (isinstance(value, int) and not isinstance(value, bool))


def is_number(value: object) -> TypeIs[int | float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_boolean(value: Any) -> bool:
    return isinstance(value, bool)


def is_string(value: Any) -> bool:
    return isinstance(value, str)


def is_mapping(value: Any) -> bool:
    return isinstance(value, Mapping)


def is_strings(value: Any) -> bool:
    """A list (or other sequence) of strings, but not a string itself."""
    return (
        isinstance(value, Sequence)
        and not isinstance(value, (str, bytes))
        and all(isinstance(item, str) for item in value)
    )


def is_mappings(value: Any) -> bool:
    """A list (or other sequence) of dicts."""
    return (
        isinstance(value, Sequence)
        and not isinstance(value, (str, bytes))
        and all(isinstance(item, Mapping) for item in value)
    )


def is_string_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(isinstance(key, str) for key in value)


def check_count(name: str, value: Any, minimum: int) -> None:
    """Check a count given to a constructor or a call (``max_retries``, ``concurrency``...).

    :raises ValueError: ``value`` is not an int of at least ``minimum``.
    """
    if (value.__class__ is not int and not is_integer(value)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, not {value!r}")


class FieldCheck(NamedTuple):
    """How one optional request field is checked."""

    test: Callable[[Any], bool]
    #: What the field must be, in words: ``"a number"``, ``"a list of strings"``.
    expected: str
    #: The least value a number may have, when there is one.
    minimum: int | None = None


def field_checker(table: Mapping[str, FieldCheck]) -> Callable[[Mapping[str, Any]], None]:
    """The check of a request's optional fields against ``table``, as one function: a request
    pays for one call, not a call and the table's lookup."""

    def check_fields(params: Mapping[str, Any]) -> None:
        """Check the fields the table knows; the others pass through unchecked (the router
        sends unknown fields upstream).

        :raises TypeError: a field has the wrong type.
        :raises ValueError: a number is below its minimum.
        """
        for name, value in params.items():
            check = table.get(name)
            if check is None:
                continue
            test, expected, minimum = check
            if not test(value):
                raise TypeError(f"{name} must be {expected}, not {value!r:.80}")
            if minimum is not None and value < minimum:
                if minimum == 0:
                    raise ValueError(f"{name} must not be negative, not {value!r}")
                raise ValueError(f"{name} must be at least {minimum}, not {value!r}")

    return check_fields
