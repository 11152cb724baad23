"""Which event loop the suite runs on: asyncio's by default, uvloop's when CI asks for it
(``ROUTMY_TEST_LOOP=uvloop``), so a green uvloop job really ran on uvloop."""

from __future__ import annotations

import asyncio
import os


async def test_the_suite_runs_on_the_loop_it_was_asked_for():
    loop = asyncio.get_running_loop()
    if os.environ.get("ROUTMY_TEST_LOOP") == "uvloop":
        import uvloop

        assert isinstance(loop, uvloop.Loop), type(loop)
    else:
        assert type(loop).__module__.startswith("asyncio"), type(loop)
