"""Every reach into aiohttp's private internals, in one place.

The transport needs a few things aiohttp has no public API for: how many pooled connections
are checked out, aborting TLS connections on an aiohttp that only closes them politely,
closing a connector synchronously when its client is collected unclosed, and wrapping the
connector's protocol factory on Python 3.10. Each is a private attribute that an aiohttp
upgrade may rename; here each has one function, and ``tests/test_aiohttp_compat.py`` runs
every one against a real connector on the lowest and the newest aiohttp CI installs.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import aiohttp

__all__ = [
    "abort_tls_connections",
    "acquired_count",
    "close_connector_now",
    "closes_tls_by_abort",
    "needs_cleanup_closed_flag",
    "wrap_protocol_factory",
]


def acquired_count(connector: aiohttp.BaseConnector | None) -> int:
    """How many of the connector's connections are checked out right now."""
    if connector is None:
        return 0
    acquired: Any = getattr(connector, "_acquired", ())
    return len(acquired)


def needs_cleanup_closed_flag() -> bool | None:
    """aiohttp's own word on whether ``enable_cleanup_closed`` is needed on this Python
    (``aiohttp.connector.NEEDS_CLEANUP_CLOSED``, 3.11+); ``None`` where it has none."""
    flag: bool | None = getattr(aiohttp.connector, "NEEDS_CLEANUP_CLOSED", None)
    return flag


def wrap_protocol_factory(
    connector: aiohttp.TCPConnector, wrap: Callable[[Callable[[], Any]], Callable[[], Any]]
) -> bool:
    """Replace the connector's protocol factory with ``wrap(factory)``; return whether there
    was one to wrap."""
    factory = getattr(connector, "_factory", None)
    if factory is None:
        return False
    connector._factory = wrap(factory)  # type: ignore[assignment]
    return True


def closes_tls_by_abort(connector: aiohttp.BaseConnector) -> bool:
    """Whether ``connector.close()`` aborts TLS connections itself (aiohttp 3.12+ has
    ``close(abort_ssl=...)``); before that it closes them politely and never waits."""
    return "abort_ssl" in inspect.signature(connector.close).parameters


def abort_tls_connections(connector: aiohttp.BaseConnector) -> int:
    """Abort every TLS connection of the connector, checked out or pooled; return how many.

    For aiohttp before 3.12: a server that never answers the close_notify would keep each
    socket open (for good on Python 3.10).
    """
    internals: Any = connector
    pooled = [proto for conns in internals._conns.values() for proto, _ in conns]
    aborted = 0
    for proto in [*internals._acquired, *pooled]:
        transport = proto.transport
        if transport is not None and transport.get_extra_info("sslcontext"):
            transport.abort()
            aborted += 1
    return aborted


def close_connector_now(connector: aiohttp.BaseConnector) -> bool:
    """Close the connector synchronously (its client was collected unclosed: nobody will
    await a close), aborting TLS connections where aiohttp can. Never schedules work on a
    closed loop; returns whether it closed anything."""
    internals: Any = connector
    loop: asyncio.AbstractEventLoop | None = getattr(internals, "_loop", None)
    if loop is None or loop.is_closed():
        return False
    try:
        internals._close(abort_ssl=True)
    except TypeError:  # pragma: no cover - aiohttp < 3.12: no abort_ssl
        internals._close()
    return True
