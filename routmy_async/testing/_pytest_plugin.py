"""The pytest plugin: a ``routmy_mock`` fixture (needs pytest-asyncio) for users' own tests.

.. code-block:: python

    async def test_my_code(routmy_mock):
        client = AsyncRoutmy(api_key=routmy_mock.api_key, base_url=routmy_mock.base_url)
"""

from __future__ import annotations

import importlib.util
from collections.abc import AsyncIterator

from ._mock import MockRoutmy

if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def routmy_mock() -> AsyncIterator[MockRoutmy]:
        """A started ``MockRoutmy`` on 127.0.0.1, closed after the test."""
        async with MockRoutmy() as mock:
            yield mock
