"""A leak check for tests: every connection of a client's pool is back where it belongs."""

from __future__ import annotations

from typing import Protocol

__all__ = ["PooledClient", "assert_no_open_connections"]


class PooledClient(Protocol):
    """What the check reads of a client (an ``AsyncRoutmy``): ``testing`` imports nothing of
    the SDK, so that a broken SDK cannot break the tools that test it."""

    @property
    def connections_in_use(self) -> int: ...

    @property
    def connections_checked_out(self) -> int: ...


def assert_no_open_connections(client: PooledClient) -> None:
    """Fail unless every pooled connection of ``client`` has been given back.

    Call it after the code under test is done with its responses and streams (a stream holds
    its connection until it ends, is closed or is left by ``break`` inside ``async with``).
    It checks both counts the client keeps: its own slots
    (:attr:`~routmy_async.AsyncRoutmy.connections_in_use`) and the connections aiohttp has
    handed out (:attr:`~routmy_async.AsyncRoutmy.connections_checked_out`). Idle keep-alive
    connections waiting in the pool are fine and are not counted.

    :param client: the client to check (a ``with_options`` client shares its parent's pool).
    :raises AssertionError: a connection is still in use, with both counts in the message.
        It is raised explicitly, so it works under ``python -O`` too.
    """
    in_use = client.connections_in_use
    checked_out = client.connections_checked_out
    if in_use or checked_out:
        raise AssertionError(
            f"{checked_out} connection(s) still checked out of the pool and {in_use} in use by "
            "the client's requests and streams: close every stream (or read it to its end) "
            "and every response before checking"
        )
