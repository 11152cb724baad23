"""The reaches into aiohttp's internals (``_aiohttp_compat``), each run against a real
connector: CI runs this file on the lowest aiohttp the package allows and the newest, so an
upgrade that renames one of them fails here, by name, not deep inside a fault test."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from routmy_async._http import _aiohttp_compat as compat
from tests._tls_helpers import TLSMock, client_context


async def _open_stream(session: aiohttp.ClientSession, url: str) -> aiohttp.ClientResponse:
    response = await session.post(
        url + "/chat/completions",
        json={
            "model": "mock/echo",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
        },
        headers={"Authorization": "Bearer sk-mock-key"},
    )
    assert response.status == 200
    return response


async def test_acquired_count_follows_a_checked_out_connection():
    async with TLSMock() as mock:
        connector = aiohttp.TCPConnector(ssl=client_context())
        async with aiohttp.ClientSession(connector=connector) as session:
            assert compat.acquired_count(connector) == 0
            mock.reply_default(stall_after=60, stall_for=30)  # the body stays open
            response = await _open_stream(session, mock.base_url)
            assert compat.acquired_count(connector) == 1
            response.close()
            assert compat.acquired_count(connector) == 0
    assert compat.acquired_count(None) == 0


async def test_abort_tls_connections_aborts_checked_out_and_pooled_ones():
    async with TLSMock() as mock:
        connector = aiohttp.TCPConnector(ssl=client_context())
        async with aiohttp.ClientSession(connector=connector) as session:
            mock.reply_default(stall_after=60, stall_for=30)
            held = await _open_stream(session, mock.base_url)
            pooled = await _open_stream(session, mock.base_url)  # a second connection
            await pooled.read()
            pooled.release()  # back in the pool, still open
            transports = [
                conn.transport
                for conn in (held.connection,)
                if conn is not None and conn.transport is not None
            ]
            assert compat.abort_tls_connections(connector) == 2
            assert transports and all(t.is_closing() for t in transports)
            held.close()


async def test_closes_tls_by_abort_answers_for_the_installed_aiohttp():
    connector = aiohttp.TCPConnector()
    try:
        expected = tuple(int(p) for p in aiohttp.__version__.split(".")[:2]) >= (3, 12)
        assert compat.closes_tls_by_abort(connector) is expected
    finally:
        await connector.close()


def test_needs_cleanup_closed_flag_is_aiohttps_own_or_none():
    flag = compat.needs_cleanup_closed_flag()
    if tuple(int(p) for p in aiohttp.__version__.split(".")[:2]) >= (3, 11):
        assert isinstance(flag, bool)
    else:
        assert flag is None


async def test_close_connector_now_closes_a_live_connector_and_skips_a_closed_loop():
    async with TLSMock() as mock:
        connector = aiohttp.TCPConnector(ssl=client_context())
        session = aiohttp.ClientSession(connector=connector)
        response = await _open_stream(session, mock.base_url)
        await response.read()
        response.release()
        session.detach()  # as a collected client's transport does
        assert compat.close_connector_now(connector) is True
        assert connector.closed
        await asyncio.sleep(0)  # let the aborted transports finish closing


async def test_wrap_protocol_factory_wraps_every_new_connection():
    made: list[Any] = []

    def wrap(factory: Any) -> Any:
        def make() -> Any:
            protocol = factory()
            made.append(protocol)
            return protocol

        return make

    async with TLSMock() as mock:
        connector = aiohttp.TCPConnector(ssl=client_context())
        assert compat.wrap_protocol_factory(connector, wrap) is True
        async with aiohttp.ClientSession(connector=connector) as session:
            response = await _open_stream(session, mock.base_url)
            await response.read()
            response.release()
    assert len(made) == 1


@pytest.mark.parametrize("name", compat.__all__)
def test_every_compat_function_is_tested_here(name):
    """A new reach into aiohttp goes into the module and gets its test in this file."""
    import inspect
    import sys

    source = inspect.getsource(sys.modules[__name__])
    assert f"compat.{name}(" in source
