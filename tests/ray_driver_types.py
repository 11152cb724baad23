"""Types of tests/ray_driver_script.py that live in a module of their own, as the step's
error advises: the script ships it to the workers with ``runtime_env={"py_modules": [...]}``.
"""

from __future__ import annotations

import msgspec


class Loose(msgspec.Struct):
    """A value with no single Arrow type: a JSON-text column."""

    v: int | str | None


class Typed(msgspec.Struct):
    """Nullable fields, all null in some batches: a struct column all the same."""

    v: int | None
    tags: list[str] | None
