"""The pytest plugin: a ``routmy_mock`` fixture (needs pytest-asyncio) for users' own tests.

.. code-block:: python

    async def test_my_code(routmy_mock):
        client = AsyncRoutmy(api_key=routmy_mock.api_key, base_url=routmy_mock.base_url)
"""

from __future__ import annotations

from collections.abc import AsyncIterator

try:
    import pytest_asyncio
except ImportError:  # pragma: no cover - the fixture needs pytest-asyncio
    pytest_asyncio = None

from ._mock import MockRoutmy

if pytest_asyncio is not None:

    @pytest_asyncio.fixture
    async def routmy_mock() -> AsyncIterator[MockRoutmy]:
        """A started ``MockRoutmy`` on 127.0.0.1, closed after the test."""
        async with MockRoutmy() as mock:
            yield mock
