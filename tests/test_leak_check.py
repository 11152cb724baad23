"""assert_no_open_connections and the two counts it reads, against MockRoutmy."""

from __future__ import annotations

import aiohttp
import pytest

from routmy_async import AsyncRoutmy
from routmy_async.testing import MockRoutmy, assert_no_open_connections

ASK = [{"role": "user", "content": "ping"}]


async def test_an_open_stream_fails_the_check_with_both_counts(mock: MockRoutmy):
    """A stream left open holds one connection on both counts, and the check names them."""
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        mock.reply_default(chunk_delay=0.2)  # the stream stays open between its chunks
        stream = await client.chat.completions.create(model="mock/echo", messages=ASK, stream=True)
        assert (client.connections_in_use, client.connections_checked_out) == (1, 1)
        message = "1 connection\\(s\\) still checked out of the pool and 1 in use"
        with pytest.raises(AssertionError, match=message):
            assert_no_open_connections(client)
        await stream.close()
        assert (client.connections_in_use, client.connections_checked_out) == (0, 0)
        assert_no_open_connections(client)


async def test_idle_keep_alive_connections_pass_the_check(mock: MockRoutmy):
    """Before the first request and after finished ones (their connection kept alive in the
    pool) nothing is checked out."""
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        assert client.connections_checked_out == 0
        assert_no_open_connections(client)
        await client.models.list()
        await client.chat.completions.create(model="mock/echo", messages=ASK)
        assert mock.connections_seen == 1  # one connection, reused and still open
        assert_no_open_connections(client)


async def test_a_borrowed_session_is_checked_by_aiohttps_count(mock: MockRoutmy):
    """With session= the client keeps no slots of its own, yet an open stream still fails the
    check: aiohttp's count sees its connection."""
    async with (
        aiohttp.ClientSession() as session,
        AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, session=session) as client,
    ):
        mock.reply_default(chunk_delay=0.2)  # the stream stays open between its chunks
        stream = await client.chat.completions.create(model="mock/echo", messages=ASK, stream=True)
        assert (client.connections_in_use, client.connections_checked_out) == (0, 1)
        with pytest.raises(AssertionError, match="1 connection\\(s\\) still checked out"):
            assert_no_open_connections(client)
        await stream.close()
        assert_no_open_connections(client)


async def test_a_derived_client_sees_its_parents_pool(mock: MockRoutmy):
    """A with_options client shares the pool, so it reports the parent's open stream."""
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        derived = client.with_options(timeout=5)
        mock.reply_default(chunk_delay=0.2)  # the stream stays open between its chunks
        stream = await client.chat.completions.create(model="mock/echo", messages=ASK, stream=True)
        with pytest.raises(AssertionError, match="still checked out"):
            assert_no_open_connections(derived)
        await stream.close()
        assert_no_open_connections(derived)
