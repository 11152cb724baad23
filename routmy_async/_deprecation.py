"""The warning every rename and removal gives, visible by default.

Python's default filters show a ``DeprecationWarning`` only when it is attributed to
``__main__``: one raised where a framework calls our code (a Ray actor built from
``fn_constructor_kwargs``, a FastAPI dependency) would never be seen, and the old name would
stop working one day without a word. ``RoutmyDeprecationWarning`` is a ``DeprecationWarning``
(filters and ``pytest.warns(DeprecationWarning)`` catch it) that the package asks to be shown
once per place, wherever it comes from. Only this category is touched: a user's own
``warnings`` filters, installed later, still win.
"""

from __future__ import annotations

import warnings

__all__ = ["RoutmyDeprecationWarning"]


class RoutmyDeprecationWarning(DeprecationWarning):
    """A name of routmy_async that is renamed or going away (see the versioning policy)."""


warnings.filterwarnings("default", category=RoutmyDeprecationWarning)
