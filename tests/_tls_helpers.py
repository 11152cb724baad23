"""TLS for the wire tests: a throwaway CA and certificates made at test time, TLS servers.

Nothing here is a committed key or certificate: ``trustme`` makes a fresh CA for each test run,
and every certificate the tests use is issued by it (or by a second, untrusted CA).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trustme
from aiohttp import web

from routmy_async.testing import MockRoutmy
from tests.conftest import Handler, RawServer

#: Names the server certificate covers: the loopback addresses, and a host that only the
#: test proxy can reach (so a request that arrives proves it went through the proxy).
SERVER_NAMES = ("127.0.0.1", "localhost", "api.rout.test")


@functools.cache
def ca() -> trustme.CA:
    """The test run's CA (ECDSA keys: handshakes stay cheap)."""
    return trustme.CA()


@functools.cache
def server_cert() -> trustme.LeafCert:
    return ca().issue_cert(*SERVER_NAMES)


@functools.cache
def client_cert() -> trustme.LeafCert:
    return ca().issue_cert("client@routmy.test")


def expired_cert() -> trustme.LeafCert:
    long_ago = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)
    return ca().issue_cert(
        *SERVER_NAMES, not_before=long_ago - datetime.timedelta(days=30), not_after=long_ago
    )


def server_context(
    cert: trustme.LeafCert | None = None, *, require_client_cert: bool = False
) -> ssl.SSLContext:
    """A server-side context presenting ``cert`` (the test CA's server certificate)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    (cert or server_cert()).configure_cert(context)
    if require_client_cert:
        ca().configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


@functools.cache
def client_context() -> ssl.SSLContext:
    """A client context trusting the test CA (shared: the fault suite builds no context per
    client, like a real application passing one ``verify=`` context)."""
    context = ssl.create_default_context()
    ca().configure_trust(context)
    return context


def write_ca_bundle(directory: Path) -> Path:
    """The test CA as a PEM bundle file, for ``verify=`` and ``SSL_CERT_FILE``."""
    path = directory / "ca-bundle.pem"
    ca().cert_pem.write_to_path(str(path))
    return path


class TLSRawServer(RawServer):
    """:class:`RawServer` behind TLS: the handler reads and writes plaintext."""

    def __init__(self, handler: Handler, *, context: ssl.SSLContext | None = None):
        super().__init__(handler)
        self._context = context or server_context()

    async def __aenter__(self) -> TLSRawServer:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=self._context, ssl_handshake_timeout=5
        )
        return self

    @property
    def base_url(self) -> str:
        return super().base_url.replace("http://", "https://", 1)


class TLSMock(MockRoutmy):
    """A :class:`MockRoutmy` answering over TLS (its plain-http site listens too, unused)."""

    def __init__(self, *, context: ssl.SSLContext | None = None, **options: Any):
        super().__init__(**options)
        self._tls_context = context or server_context()
        self.tls_port = 0

    async def start(self) -> TLSMock:
        await super().start()
        runner = self._runner
        assert runner is not None
        site = web.TCPSite(runner, self.host, 0, ssl_context=self._tls_context)
        await site.start()
        server: Any = site._server
        self.tls_port = server.sockets[0].getsockname()[1]
        return self

    async def __aenter__(self) -> TLSMock:
        return await self.start()

    @property
    def base_url(self) -> str:
        super().base_url  # noqa: B018 - raises when the mock is not started
        return f"https://{self.host}:{self.tls_port}/v1"

    def url_for(self, host: str) -> str:
        """The base URL under another name of this machine (``localhost``)."""
        return f"https://{host}:{self.tls_port}/v1"


class RecordLayerServer:
    """A TLS server written on ``ssl.MemoryBIO``, so a test controls the encrypted bytes:
    each answer goes out as several TLS records, cut at ``offsets[i]`` bytes of ciphertext
    (inside a record, or between two), then reset or closed without a TLS close_notify
    (after ``hold`` seconds of silence, if given)."""

    def __init__(self, payload: bytes, *, reset: bool, records: int = 4, hold: float = 0.0):
        self._payload = payload
        #: Seconds to keep the connection open after the answer, reading nothing: a server
        #: that never answers the client's TLS close_notify.
        self._hold = hold
        #: Where to cut each answer, in bytes of ciphertext; one is taken per connection
        #: (none left: the whole answer).
        self.offsets: list[int] = []
        self._reset = reset
        self._records = records
        self._context = server_context()
        # No TLS 1.3 session tickets: the ciphertext after the request is the answer alone.
        self._context.num_tickets = 0
        self.raw = RawServer(self._handle)
        self.ciphertext_sizes: list[int] = []

    async def __aenter__(self) -> RecordLayerServer:
        await self.raw.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.raw.__aexit__(*exc)

    @property
    def base_url(self) -> str:
        return self.raw.base_url.replace("http://", "https://", 1)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._answer(reader, writer)
        except asyncio.CancelledError:
            # Cancelled by __aexit__: end quietly (Python 3.11's start_server logs a
            # cancelled connection handler as an error).
            pass

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self._context.wrap_bio(incoming, outgoing, server_side=True)

        async def pump(step: Callable[[], Any]) -> Any:
            # Drive one SSLObject call: send what it wrote, feed it what it waits for.
            while True:
                try:
                    result = step()
                except ssl.SSLWantReadError:
                    if outgoing.pending:
                        writer.write(outgoing.read())
                        await writer.drain()
                    data = await reader.read(65536)
                    if not data:
                        raise ConnectionResetError("client went away") from None
                    incoming.write(data)
                else:
                    if outgoing.pending:
                        writer.write(outgoing.read())
                        await writer.drain()
                    return result

        await pump(tls.do_handshake)
        request = b""
        while b"\r\n\r\n" not in request:
            request += await pump(lambda: tls.read(65536))
        head, _, body = request.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        while len(body) < length:
            body += await pump(lambda: tls.read(65536))
        step = -(-len(self._payload) // self._records)
        for start in range(0, len(self._payload), step):
            tls.write(self._payload[start : start + step])  # one record per write
        ciphertext = outgoing.read()
        self.ciphertext_sizes.append(len(ciphertext))
        offset = min(self.offsets.pop(0) if self.offsets else len(ciphertext), len(ciphertext))
        writer.write(ciphertext[:offset])
        await writer.drain()
        if self._hold:
            await asyncio.sleep(self._hold)
        # The whole answer needs no close_notify (its length is known): a FIN ends it, as
        # an RST right behind the data could discard it before the client reads it.
        abort_connection(writer, reset=self._reset and offset < len(ciphertext))


def abort_connection(writer: asyncio.StreamWriter, *, reset: bool) -> None:
    """Drop the TCP connection under any TLS: an RST (SO_LINGER 0), or a FIN sent without
    a TLS close_notify (the truncation a TLS client must not take for a clean end)."""
    import socket
    import struct

    sock = writer.get_extra_info("socket")
    if reset and sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport: Any = writer.transport
    # Under asyncio's TLS transport, its own TCP transport: closing it sends no close_notify.
    raw = getattr(transport, "_ssl_protocol", None)
    inner = getattr(raw, "_transport", None) if raw is not None else None
    (inner or transport).abort() if reset else (inner or transport).close()
