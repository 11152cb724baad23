"""Test helpers: ``MockRoutmy``, a local rout.my on 127.0.0.1, and its pytest fixture.

The fixture ``routmy_mock`` (a started ``MockRoutmy``) is registered as a pytest plugin when
``pytest-asyncio`` is installed; ``assert_no_open_connections(client)`` checks that a client
gave back every pooled connection.
"""

from ._connections import assert_no_open_connections
from ._mock import DEFAULT_KEY, MockRoutmy, RecordedRequest, Reply, sse_frame
from ._replies import png_bytes

__all__ = [
    "DEFAULT_KEY",
    "MockRoutmy",
    "RecordedRequest",
    "Reply",
    "assert_no_open_connections",
    "png_bytes",
    "sse_frame",
]
