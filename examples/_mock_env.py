"""Shared by the examples: run against ROUTMY_BASE_URL, or start a MockRoutmy when unset.

Every example runs with no change against the real service (set ROUTMY_API_KEY and, if you
like, ROUTMY_BASE_URL and ROUTMY_MODEL) or, with nothing set, against an embedded mock.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from routmy_async import AsyncRoutmy
from routmy_async.testing import MockRoutmy


@asynccontextmanager
async def routmy_client(**options: Any) -> AsyncIterator[AsyncRoutmy]:
    """A client for the real service when ROUTMY_API_KEY is set, else for a local mock."""
    if os.environ.get("ROUTMY_API_KEY"):
        async with AsyncRoutmy(**options) as client:
            yield client
        return
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, **options) as client:
            yield client


def model(default: str = "mock/echo") -> str:
    """The model to use: ROUTMY_MODEL, else the mock's echo model."""
    return os.environ.get("ROUTMY_MODEL", default)
