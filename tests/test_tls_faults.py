"""The fault suite over TLS: the same guarantees as over plain HTTP, on a loopback HTTPS server.

Certificates come from a CA made at test time (``tests/_tls_helpers.py``). Cuts are sampled
over the byte offsets (every offset is the plain suite's job; here each cut also costs a TLS
handshake), in three ways a TLS connection ends: a reset, a clean TLS close (close_notify,
then FIN), and a FIN with no close_notify (a truncation). Cuts inside the TLS records
themselves use a server built on ``ssl.MemoryBIO``, which controls the encrypted bytes.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time
import warnings
from typing import Any

import aiohttp
import pytest

from routmy_async import (
    APIConnectionError,
    APIResponseValidationError,
    APITimeoutError,
    AsyncRoutmy,
    RoutmyError,
    Timeout,
)
from routmy_async.testing import assert_no_open_connections
from tests._tls_helpers import (
    RecordLayerServer,
    TLSMock,
    TLSRawServer,
    abort_connection,
    client_context,
)
from tests.conftest import FAULT_FIGURES, RawServer, http_response, read_request
from tests.test_faults import (
    FULL_RESPONSE,
    FULL_STREAM,
    KEY,
    MESSAGES,
    complete_response,
    complete_stream,
)

MODES = ["rst", "fin", "truncate"]


def tls_client(base_url: str, **options: Any) -> AsyncRoutmy:
    options.setdefault("max_retries", 0)
    return AsyncRoutmy(api_key=KEY, base_url=base_url, verify=client_context(), **options)


def sampled_offsets(payload: bytes) -> list[int]:
    """Every 3rd byte through the head and the start of the body, then every 13th, and the
    last few bytes (where a complete answer turns into a cut one)."""
    head = payload.index(b"\r\n\r\n") + 4
    offsets = set(range(0, head + 24, 3)) | set(range(head + 24, len(payload), 13))
    offsets |= {len(payload) - 2, len(payload) - 1, len(payload)}
    return sorted(offsets)


def tls_cut_server(payload: bytes, offsets: list[int], mode: str) -> TLSRawServer:
    """Answer request i over TLS with the first offsets[i] bytes of payload, then end the
    connection the ``mode`` way."""
    served = iter(offsets)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        offset = next(served)
        writer.write(payload[:offset])
        await writer.drain()
        if offset >= len(payload):
            return
        if mode == "fin":
            writer.close()  # close_notify, then FIN
        else:
            abort_connection(writer, reset=mode == "rst")

    return TLSRawServer(handler)


def check_outcomes(outcomes: dict[str, int], count: int) -> None:
    # Only cuts after the last byte an answer needs may complete.
    assert outcomes["complete"] >= 1 and outcomes["error"] >= count - 4, outcomes


async def run_cuts(client: AsyncRoutmy, call: Any, expected: str, count: int) -> dict[str, int]:
    outcomes = {"error": 0, "complete": 0}
    for _ in range(count):
        try:
            content = await call(client)
        except RoutmyError as error:
            assert isinstance(error, (APIConnectionError, APIResponseValidationError)), error
            assert KEY not in str(error)
            outcomes["error"] += 1
        else:
            assert content == expected
            outcomes["complete"] += 1
    return outcomes


CASES = [
    ("response", FULL_RESPONSE, complete_response, "The whole answer, ünïcode ☃."),
    ("stream", FULL_STREAM, complete_stream, "The whole stream ☃."),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("kind", "payload", "call", "expected"), CASES, ids=["response", "stream"])
async def test_tls_cut_at_sampled_offsets(kind, payload, call, expected, mode):
    """Over TLS, an answer cut at any sampled byte (reset, clean close, or truncated without
    close_notify) gives a typed error or the complete answer, never less, and no connection
    stays checked out."""
    offsets = sampled_offsets(payload)
    async with tls_cut_server(payload, offsets, mode) as server:
        async with tls_client(server.base_url) as client:
            outcomes = await run_cuts(client, call, expected, len(offsets))
            assert_no_open_connections(client)
    check_outcomes(outcomes, len(offsets))
    FAULT_FIGURES[f"TLS {kind} cut offsets ({mode})"] = (
        f"{len(offsets)} of {len(payload)} bytes: {outcomes}"
    )


@pytest.mark.parametrize("reset", [True, False], ids=["rst", "fin-no-close-notify"])
@pytest.mark.parametrize(("kind", "payload", "call", "expected"), CASES, ids=["response", "stream"])
async def test_tls_cut_inside_records(kind, payload, call, expected, reset):
    """An answer sent as four TLS records and cut at sampled ciphertext offsets (inside a
    record, or between two) gives a typed error or the complete answer, never less."""
    async with RecordLayerServer(payload, reset=reset) as server:
        async with tls_client(server.base_url) as probe:
            # A first whole answer measures the ciphertext (a client of its own: the cuts
            # below must each get a new connection).
            assert await call(probe) == expected
        size = server.ciphertext_sizes[0]
        offsets = sorted(set(range(0, size, 17)) | {size - 1, size})
        server.offsets.extend(offsets)
        async with tls_client(server.base_url) as client:
            outcomes = await run_cuts(client, call, expected, len(offsets))
            assert_no_open_connections(client)
    check_outcomes(outcomes, len(offsets))
    FAULT_FIGURES[f"TLS {kind} cuts inside records ({'RST' if reset else 'FIN'})"] = (
        f"{len(offsets)} of {size} ciphertext bytes: {outcomes}"
    )


@pytest.mark.parametrize(
    ("payload", "stream", "error"),
    [
        (
            http_response(b"<html>hi</html>", content_type="text/html"),
            False,
            APIResponseValidationError,
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", False, APIConnectionError),
        (b"NOT HTTP AT ALL\r\n\r\n", False, APIConnectionError),
        (http_response(b"", content_type="text/event-stream"), True, APIConnectionError),
        (
            http_response(b"data: {\n\n", content_type="text/event-stream"),
            True,
            APIResponseValidationError,
        ),
    ],
    ids=["html", "short-body", "garbage", "stream-empty", "stream-bad-json"],
)
async def test_tls_bad_bodies_are_typed(payload, stream, error):
    """Malformed answers over TLS raise the same typed errors as over plain HTTP."""

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(payload)
        await writer.drain()

    async with TLSRawServer(handler) as server:
        async with tls_client(server.base_url) as client:
            with pytest.raises(error):
                if stream:
                    async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as s:
                        await s.until_done()
                else:
                    await client.chat.completions.create(model="p/m", messages=MESSAGES)
            assert_no_open_connections(client)


async def test_tls_stall_before_the_handshake_is_bounded_by_the_connect_timeout():
    """A server that accepts TCP and never answers the TLS ClientHello is cut off by the
    connect timeout with APITimeoutError, and the client closes the half-open connection."""
    client_left = asyncio.Event()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The ClientHello arrives and no answer ever goes back; wait for the client to leave.
        while await reader.read(65536):
            pass
        client_left.set()

    async with RawServer(silent) as server:
        base_url = server.base_url.replace("http://", "https://", 1)
        async with tls_client(base_url, timeout=Timeout(connect=0.3, read=30)) as client:
            started = time.monotonic()
            with pytest.raises(APITimeoutError, match="connect timeout"):
                await client.models.list()
            elapsed = time.monotonic() - started
            assert_no_open_connections(client)
            # Closed by the client itself, before the client is closed.
            await asyncio.wait_for(client_left.wait(), 2)
        assert server.connections == 1
    assert 0.25 < elapsed < 2.0
    FAULT_FIGURES["TLS stall before the handshake"] = f"cut off after {elapsed * 1000:.0f} ms"


async def test_tls_stall_after_headers_hits_the_read_timeout():
    """Over TLS, a body that stops after the headers is ended by the read timeout."""
    async with TLSMock(api_key=KEY) as mock:
        mock.reply_default(stall_after=20, stall_for=30)
        async with tls_client(mock.base_url, timeout=Timeout(read=0.3)) as client:
            started = time.monotonic()
            with pytest.raises(APITimeoutError, match="read timeout"):
                await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
            assert time.monotonic() - started < 3
            assert_no_open_connections(client)


async def test_tls_stall_mid_stream_hits_the_idle_timeout():
    """Over TLS, a stream that goes quiet after its first events is ended by its idle
    timeout with APITimeoutError, after the events that did arrive."""
    async with TLSMock(api_key=KEY, stream_piece=2) as mock:
        mock.reply_default(stall_after=700, stall_for=30)
        async with tls_client(mock.base_url, timeout=Timeout(read=30, stream_idle=0.3)) as client:
            seen = 0
            with pytest.raises(APITimeoutError):
                async with client.chat.completions.stream(
                    model="mock/echo", messages=[{"role": "user", "content": "a long echo " * 9}]
                ) as stream:
                    async for _ in stream:
                        seen += 1
            assert seen >= 1
            assert_no_open_connections(client)


async def long_stream(client: AsyncRoutmy) -> Any:
    return await client.chat.completions.create(
        model="mock/echo", messages=[{"role": "user", "content": "stream me " * 20}], stream=True
    )


async def test_tls_stream_read_to_the_end_reuses_its_connection():
    """A stream read to its end returns its TLS connection to the pool: the next requests
    reuse it (one handshake for all)."""
    async with TLSMock(api_key=KEY) as mock:
        async with tls_client(mock.base_url) as client:
            for _ in range(3):
                stream = await long_stream(client)
                async with stream:
                    await stream.until_done()
                await client.models.list()
            assert_no_open_connections(client)
        assert mock.connections_seen == 1


@pytest.mark.parametrize("how", ["break", "exception", "cancel", "close"])
async def test_tls_stream_left_early_closes_its_connection(how):
    """break, an exception in the loop, a cancelled task or close() from outside releases a
    half-read TLS stream at once; the connection is closed (not reused) and the next request
    works on a new one."""
    async with TLSMock(api_key=KEY, stream_piece=1) as mock:
        mock.reply_default(chunk_delay=0.02)  # still sending when the stream is left
        async with tls_client(mock.base_url) as client:
            stream = await long_stream(client)
            if how == "break":
                async with stream:
                    async for _ in stream:
                        break
            elif how == "exception":
                with pytest.raises(KeyError):
                    async with stream:
                        async for _ in stream:
                            raise KeyError("boom")
            elif how == "cancel":
                started = asyncio.Event()

                async def consume() -> None:
                    async with stream:
                        async for _ in stream:
                            started.set()
                            await asyncio.sleep(30)

                task = asyncio.ensure_future(consume())
                await started.wait()
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                async for _ in stream:
                    break
                await stream.close()
            assert_no_open_connections(client)
            await client.models.list()
        assert mock.connections_seen == 2


def open_sockets(port: int) -> dict[str, int]:
    """Sockets this process still holds open on either end of a connection to ``port``: what
    a leaked TLS connection leaves behind, whatever the TLS layer above it believes. Read from
    the kernel (the process's descriptors and its TCP table), so it sees asyncio's and uvloop's
    transports alike."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed since the listing
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = {"client": 0, "server": 0}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)
                for row in rows:
                    fields = row.split()
                    local_port = int(fields[1].rsplit(":", 1)[1], 16)
                    remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                    listening = fields[3] == "0A"
                    if fields[9] not in inodes or listening:
                        continue
                    if remote_port == port:
                        found["client"] += 1
                    elif local_port == port:
                        found["server"] += 1
        except FileNotFoundError:  # no IPv6 here
            continue
    return found


async def test_tls_soak_leaves_nothing_open():
    """Hundreds of mixed TLS requests and streams (complete, broken off, cancelled, failed)
    end with no acquired connection, no task destroyed while pending, no ResourceWarning,
    and, once the client is closed, no TLS socket left open on either side."""
    problems: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: problems.append(context))
    counts = {"complete": 0, "stream": 0, "broken": 0, "cancelled": 0, "failed": 0}
    unraisable: list[Any] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        async with TLSMock(api_key=KEY, stream_piece=4) as mock:
            client = tls_client(mock.base_url, max_connections=32)
            async with client:

                async def one(number: int) -> None:
                    kind = number % 5
                    messages = [{"role": "user", "content": f"soak message {number} " * 3}]
                    if kind == 0:
                        await client.chat.completions.create(model="mock/echo", messages=messages)
                        counts["complete"] += 1
                    elif kind == 1:
                        async with client.chat.completions.stream(
                            model="mock/echo", messages=messages
                        ) as s:
                            await s.until_done()
                        counts["stream"] += 1
                    elif kind == 2:
                        async with client.chat.completions.stream(
                            model="mock/echo", messages=messages
                        ) as s:
                            async for _ in s:
                                break
                        counts["broken"] += 1
                    elif kind == 3:
                        task = asyncio.ensure_future(
                            client.chat.completions.create(
                                model="mock/echo", messages=messages, stream=True
                            )
                        )
                        await asyncio.sleep(0)
                        task.cancel()
                        try:
                            stream = await task
                        except asyncio.CancelledError:
                            pass
                        else:
                            await stream.close()
                        counts["cancelled"] += 1
                    else:
                        try:
                            await client.chat.completions.create(
                                model="mock/locked", messages=messages
                            )
                        except RoutmyError:
                            counts["failed"] += 1

                numbers = iter(range(500))

                async def worker() -> None:
                    for number in numbers:
                        await one(number)

                await asyncio.gather(*(worker() for _ in range(48)))
                for _ in range(50):
                    if client.connections_checked_out == 0:
                        break
                    await asyncio.sleep(0.02)
                assert_no_open_connections(client)
            # Closed: every TLS socket of the client is gone at once, and the server's
            # ends follow as soon as it reads the close.
            assert open_sockets(mock.tls_port)["client"] == 0
            for _ in range(50):
                if open_sockets(mock.tls_port)["server"] == 0:
                    break
                await asyncio.sleep(0.02)
            assert open_sockets(mock.tls_port) == {"client": 0, "server": 0}
            seen = mock.connections_seen
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
    finally:
        sys.unraisablehook = previous_hook
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert unraisable == []
    assert problems == []
    assert sum(counts.values()) == 500
    FAULT_FIGURES["TLS soak"] = (
        f"500 operations at up to 48 in flight over {seen} TLS connections {counts}"
    )


def test_cleanup_of_closed_tls_connections_follows_the_python_version():
    """enable_cleanup_closed is on for https pools exactly where aiohttp (or, without its
    flag, the Python version) says asyncio can leave an aborted TLS socket open, off for
    plain http, and never triggers aiohttp's DeprecationWarning (warnings are errors)."""
    from routmy_async._http._tls import cleanup_closed_needed

    expected = cleanup_closed_needed(getattr(aiohttp.connector, "NEEDS_CLEANUP_CLOSED", None))

    async def pools() -> tuple[bool, bool]:
        https = AsyncRoutmy(api_key=KEY, base_url="https://127.0.0.1:9/v1")
        http = AsyncRoutmy(api_key=KEY, base_url="http://127.0.0.1:9/v1")
        try:
            connectors: list[Any] = [c._transport.session.connector for c in (https, http)]
            return (
                not connectors[0]._cleanup_closed_disabled,
                not connectors[1]._cleanup_closed_disabled,
            )
        finally:
            await https.close()
            await http.close()

    https_on, http_on = asyncio.run(pools())
    assert https_on is expected
    assert http_on is False
    FAULT_FIGURES["enable_cleanup_closed"] = (
        f"{'on' if https_on else 'off'} for https on Python "
        f"{'.'.join(map(str, sys.version_info[:3]))}, aiohttp {aiohttp.__version__}"
    )


async def test_tls_connection_closed_early_is_really_closed_when_the_server_never_ends_tls():
    """A stream left early closes its TLS connection; when the server never answers the
    close_notify, the socket is still closed within a few seconds (aiohttp's cleanup of
    closed TLS transports, on the Pythons that need it), while the client stays open."""
    from routmy_async._http._tls import cleanup_closed_needed

    if not cleanup_closed_needed(getattr(aiohttp.connector, "NEEDS_CLEANUP_CLOSED", None)):
        pytest.skip("enable_cleanup_closed is off here: aiohttp says this Python is fixed")
    first_event = FULL_STREAM[: FULL_STREAM.index(b"\n\n") + 2]  # head, chunk size, one event
    async with RecordLayerServer(first_event, reset=False, records=1, hold=30) as server:
        async with tls_client(server.base_url) as client:
            port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
            async with client.chat.completions.stream(model="p/m", messages=MESSAGES) as stream:
                async for _ in stream:
                    break
            assert_no_open_connections(client)
            started = time.monotonic()
            for _ in range(100):
                if not open_sockets(port)["client"]:
                    break
                await asyncio.sleep(0.05)
            closed_after = time.monotonic() - started
            assert open_sockets(port)["client"] == 0
    assert closed_after < 3.5
    FAULT_FIGURES["TLS socket of a stream left early, server silent"] = (
        f"closed after {closed_after:.1f} s (enable_cleanup_closed)"
    )


@pytest.mark.parametrize("aiohttp_close", ["native", "polite"])
async def test_closing_the_client_closes_every_tls_socket_at_once(aiohttp_close):
    """close() ends every TLS connection of the pool at once, pooled or in use, even when
    the server never answers the TLS close_notify, also with an aiohttp whose connector
    closes TLS politely and does not wait (before 3.12: "polite", simulated here)."""
    import inspect

    if aiohttp_close == "polite" and "abort_ssl" not in str(
        inspect.signature(aiohttp.TCPConnector.close)
    ):
        pytest.skip("this aiohttp closes TLS politely itself: the native case covers it")
    first_event = FULL_STREAM[: FULL_STREAM.index(b"\n\n") + 2]
    async with (
        RecordLayerServer(FULL_RESPONSE, reset=False, records=1, hold=30) as pooled_server,
        RecordLayerServer(first_event, reset=False, records=1, hold=30) as stream_server,
    ):
        ports = [
            int(server.base_url.rsplit(":", 1)[1].split("/")[0])
            for server in (pooled_server, stream_server)
        ]
        pooled = tls_client(pooled_server.base_url)
        streaming = tls_client(stream_server.base_url)
        assert await complete_response(pooled)  # its connection stays in the pool
        stream = await streaming.chat.completions.create(
            model="p/m", messages=MESSAGES, stream=True
        )
        async for _ in stream:
            break  # in use: half read
        if aiohttp_close == "polite":
            for client in (pooled, streaming):
                connector: Any = client._transport.session.connector

                def polite(connector: Any = connector) -> Any:
                    connector._close(abort_ssl=False)  # close_notify sent, nothing awaited
                    return asyncio.sleep(0)

                connector.close = polite
        assert [open_sockets(port)["client"] for port in ports] == [1, 1]
        await pooled.close()
        await streaming.close()
        assert [open_sockets(port)["client"] for port in ports] == [0, 0]
        with pytest.raises(APIConnectionError, match="client was closed"):
            async for _ in stream:
                pass
