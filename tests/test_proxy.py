"""Proxies: ``proxy=`` and the ``*_PROXY`` / ``NO_PROXY`` variables, through a real forward
proxy on 127.0.0.1 (written here: CONNECT tunnels for https, absolute-form requests for http,
optional Basic auth), with an https target verified inside the tunnel by the test CA.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from typing import Any

import aiohttp
import pytest

from routmy_async import (
    APICertificateError,
    APIConnectionError,
    APIProxyError,
    AsyncRoutmy,
    RoutmyError,
)
from routmy_async._http._tls import session_proxy_supported
from routmy_async.testing import MockRoutmy
from tests._tls_helpers import TLSMock, client_context, server_context, write_ca_bundle

KEY = "sk-proxy-suite-SECRET-0123456789"
MESSAGES = [{"role": "user", "content": "through the proxy"}]
USER, PASSWORD = "proxy-user", "pr0xy-PASS-w0rd"
#: A host no resolver knows: a request for it can only arrive through the proxy.
PROXIED_HOST = "api.rout.test"

requires_session_proxy = pytest.mark.skipif(
    not session_proxy_supported(aiohttp.__version__),
    reason="a proxy for a whole aiohttp session needs aiohttp 3.11+",
)


class ForwardProxy:
    """A small HTTP forward proxy on 127.0.0.1.

    ``CONNECT host:port`` opens a tunnel; any other request (absolute-form, for http targets)
    is sent on to its host, and the connection then carries bytes both ways. Every upstream
    host is reached at ``routes[host]`` when given (so ``api.rout.test`` can be served by a
    loopback mock), else at the name itself. With ``auth``, a request without the right
    ``Proxy-Authorization: Basic`` gets ``407`` (asking for ``challenge``); with ``refuse``,
    every request gets that status and reason (a policy's ``403``, a ``502``).
    """

    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        routes: dict[str, tuple[str, int]] | None = None,
        refuse: tuple[int, str] | None = None,
        challenge: str = 'Basic realm="test"',
    ):
        self._refuse = refuse
        self._challenge = challenge
        self._auth = (
            "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode() if auth else None
        )
        self._routes = routes or {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connects: list[str] = []  # CONNECT targets
        self.forwarded: list[str] = []  # request lines of plain http requests
        self.refused = 0
        self.credentials_seen: list[str | None] = []

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def url_with(self, user: str, password: str) -> str:
        return self.url.replace("http://", f"http://{user}:{password}@", 1)

    async def __aenter__(self) -> ForwardProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _upstream(self, host: str, port: int) -> tuple[str, int]:
        return self._routes.get(host, (host, port))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, OSError):
            pass
        except asyncio.CancelledError:
            # Cancelled by __aexit__: end quietly (Python 3.11's start_server logs a
            # cancelled connection handler as an error).
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        credential = headers.get("proxy-authorization")
        self.credentials_seen.append(credential)
        if self._auth is not None and credential != self._auth:
            self.refused += 1
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                + f"Proxy-Authenticate: {self._challenge}\r\n".encode()
                + b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            return
        if self._refuse is not None:
            self.refused += 1
            status, reason = self._refuse
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            await writer.drain()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            self.connects.append(target)
            up_reader, up_writer = await asyncio.open_connection(*self._upstream(host, int(port)))
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            await self._pipe(reader, writer, up_reader, up_writer)
            return
        # An http target: absolute-form "POST http://host:port/path HTTP/1.1".
        self.forwarded.append(f"{method} {target}")
        rest = target.split("://", 1)[1]
        authority, _, path = rest.partition("/")
        host, _, port = authority.rpartition(":")
        up_reader, up_writer = await asyncio.open_connection(*self._upstream(host, int(port)))
        kept = [line for line in lines[1:] if not line.lower().startswith("proxy-")]
        up_writer.write(("\r\n".join([f"{method} /{path} HTTP/1.1", *kept])).encode("latin-1"))
        await self._pipe(reader, writer, up_reader, up_writer)

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
    ) -> None:
        async def copy(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(copy(reader, up_writer), copy(up_reader, writer))
        finally:
            up_writer.close()


def routes_to(mock: TLSMock) -> dict[str, tuple[str, int]]:
    return {PROXIED_HOST: ("127.0.0.1", mock.tls_port)}


@requires_session_proxy
async def test_https_through_a_proxy_tunnels_with_connect_and_verifies_upstream(tmp_path):
    """An https base URL through proxy= goes in a CONNECT tunnel; TLS runs inside it and the
    upstream certificate is verified against verify='ca-bundle.pem' for the real host name.
    Completions and streams work, and one tunnel carries them all (keep-alive)."""
    ca_path = write_ca_bundle(tmp_path)
    async with TLSMock(api_key=KEY) as mock, ForwardProxy(routes=routes_to(mock)) as proxy:
        async with AsyncRoutmy(
            api_key=KEY,
            base_url=f"https://{PROXIED_HOST}/v1",
            proxy=proxy.url,
            verify=str(ca_path),
            max_retries=0,
        ) as client:
            completion = await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
            async with client.chat.completions.stream(model="mock/echo", messages=MESSAGES) as s:
                final = await s.until_done()
            models = await client.models.list()
    assert completion.choices[0].message.content == "through the proxy"
    assert final.choices[0].message.content == "through the proxy"
    assert models.data
    assert proxy.connects == [f"{PROXIED_HOST}:443"]
    assert len(mock.requests) == 3


@requires_session_proxy
async def test_the_upstream_certificate_is_checked_inside_the_tunnel():
    """Through the proxy, a certificate the client does not trust (here: for the right name
    but from an unknown CA) raises APICertificateError naming the real host, not the proxy."""
    import trustme

    stranger = trustme.CA().issue_cert(PROXIED_HOST)
    async with (
        TLSMock(api_key=KEY, context=server_context(stranger)) as mock,
        ForwardProxy(routes=routes_to(mock)) as proxy,
    ):
        async with AsyncRoutmy(
            api_key=KEY,
            base_url=f"https://{PROXIED_HOST}/v1",
            proxy=proxy.url,
            verify=client_context(),
            max_retries=0,
        ) as client:
            with pytest.raises(APICertificateError) as info:
                await client.models.list()
    assert info.value.host == PROXIED_HOST
    assert "not signed by a certificate authority this client trusts" in str(info.value)
    assert proxy.connects == [f"{PROXIED_HOST}:443"]
    assert mock.requests == []


@requires_session_proxy
async def test_an_authenticated_proxy_gets_the_credentials_from_the_url():
    """proxy='http://user:password@host:port' answers the proxy's Basic auth challenge with
    those credentials, on the CONNECT only (the upstream never sees them)."""
    async with (
        TLSMock(api_key=KEY) as mock,
        ForwardProxy(auth=(USER, PASSWORD), routes=routes_to(mock)) as proxy,
    ):
        async with AsyncRoutmy(
            api_key=KEY,
            base_url=f"https://{PROXIED_HOST}/v1",
            proxy=proxy.url_with(USER, PASSWORD),
            verify=client_context(),
            max_retries=0,
        ) as client:
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert proxy.credentials_seen == [f"Basic {token}"]
    assert proxy.refused == 0
    assert not any("proxy" in name.lower() for name in mock.requests[0].headers)


def error_chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


@requires_session_proxy
@pytest.mark.parametrize("source", ["argument", "environment"])
async def test_proxy_credentials_are_redacted_like_the_key(monkeypatch, caplog, source):
    """A proxy refusing the credentials (407) gives an APIConnectionError; neither the
    password, nor user:password, nor the Basic token appears in the error, its causes, its
    repr or the debug log, whether the proxy came from proxy= or from HTTPS_PROXY."""
    wrong = "wr0ng-PASS-w0rd"
    token = base64.b64encode(f"{USER}:{wrong}".encode()).decode()
    failures: list[BaseException] = []
    with caplog.at_level(logging.DEBUG, logger="routmy_async"):
        async with (
            TLSMock(api_key=KEY) as mock,
            ForwardProxy(auth=(USER, PASSWORD), routes=routes_to(mock)) as proxy,
        ):
            options: dict[str, Any] = {}
            if source == "argument":
                options["proxy"] = proxy.url_with(USER, wrong)
            else:
                monkeypatch.setenv("HTTPS_PROXY", proxy.url_with(USER, wrong))
                monkeypatch.delenv("NO_PROXY", raising=False)
                monkeypatch.delenv("no_proxy", raising=False)
            client = AsyncRoutmy(
                api_key=KEY,
                base_url=f"https://{PROXIED_HOST}/v1",
                verify=client_context(),
                max_retries=1,
                **options,
            )
            async with client:
                for call in (client.models.list, client.chat.completions.create):
                    try:
                        if call is client.models.list:
                            await client.models.list()
                        else:
                            await client.chat.completions.create(
                                model="mock/echo", messages=MESSAGES
                            )
                    except RoutmyError as error:
                        failures.append(error)
            assert proxy.refused >= 2
    assert len(failures) == 2
    assert all(isinstance(f, APIConnectionError) for f in failures)
    assert "407" in str(failures[0])
    secrets = [wrong, f"{USER}:{wrong}", token, KEY]
    for failure in failures:
        for link in error_chain(failure):
            text = f"{link!s} {link!r} {link.args!r} {vars(link)!r}"
            assert not any(secret in text for secret in secrets), (type(link), text)
    logged = " ".join(record.getMessage() for record in caplog.records)
    assert not any(secret in logged for secret in secrets)


@requires_session_proxy
async def test_https_proxy_variable_is_used_and_no_proxy_bypasses_it(monkeypatch):
    """HTTPS_PROXY sends an https client through the proxy by default; NO_PROXY naming the
    host bypasses it; trust_env=False ignores the variables."""
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with TLSMock(api_key=KEY) as mock, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)

        async def call(**options: Any) -> None:
            async with AsyncRoutmy(
                api_key=KEY,
                base_url=mock.url_for("localhost"),
                verify=client_context(),
                max_retries=0,
                **options,
            ) as client:
                await client.models.list()

        await call()
        assert proxy.connects == [f"localhost:{mock.tls_port}"]
        monkeypatch.setenv("NO_PROXY", "example.org, localhost")
        await call()
        monkeypatch.setenv("NO_PROXY", f"example.org, localhost:{mock.tls_port}")
        await call()  # an entry with the port matches too, as with urllib
        monkeypatch.delenv("NO_PROXY")
        await call(trust_env=False)
        assert proxy.connects == [f"localhost:{mock.tls_port}"]  # neither went through it
        assert len(mock.requests) == 4


@requires_session_proxy
async def test_http_proxy_variable_forwards_plain_http(monkeypatch):
    """HTTP_PROXY applies to an http base URL (the proxy forwards the absolute-form request,
    no CONNECT), a scheme-less value means http://, and NO_PROXY bypasses it."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with MockRoutmy(api_key=KEY) as mock, ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url.removeprefix("http://"))
        async with AsyncRoutmy(api_key=KEY, base_url=mock.base_url, max_retries=0) as client:
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        assert proxy.connects == []
        assert proxy.forwarded == [f"POST {mock.base_url}/chat/completions"]
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with AsyncRoutmy(api_key=KEY, base_url=mock.base_url, max_retries=0) as client:
            await client.models.list()
        assert len(proxy.forwarded) == 1
        assert len(mock.requests) == 2


@requires_session_proxy
async def test_all_proxy_is_the_fallback_and_an_unsupported_scheme_is_ignored(monkeypatch, caplog):
    """ALL_PROXY applies when no scheme-specific variable is set; a proxy variable this client
    cannot use (socks5://) is ignored with a warning that shows no credentials."""
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with TLSMock(api_key=KEY) as mock, ForwardProxy() as proxy:
        monkeypatch.setenv("ALL_PROXY", proxy.url)
        async with AsyncRoutmy(
            api_key=KEY, base_url=mock.base_url, verify=client_context(), max_retries=0
        ) as client:
            await client.models.list()
        assert proxy.connects == [f"127.0.0.1:{mock.tls_port}"]
        monkeypatch.setenv("ALL_PROXY", f"socks5://{USER}:{PASSWORD}@127.0.0.1:1080")
        with caplog.at_level(logging.WARNING, logger="routmy_async"):
            async with AsyncRoutmy(
                api_key=KEY, base_url=mock.base_url, verify=client_context(), max_retries=0
            ) as client:
                await client.models.list()
        assert len(proxy.connects) == 1
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "only http:// proxies" in warning and PASSWORD not in warning


@pytest.mark.parametrize(
    ("proxy", "error", "match"),
    [
        (5, TypeError, "proxy must be a URL"),
        (f"socks5://{USER}:{PASSWORD}@127.0.0.1:1080", ValueError, "http://"),
        ("https://proxy.example:443", ValueError, "http://"),
        ("http://", ValueError, "http://"),
    ],
)
def test_a_wrong_proxy_is_refused_at_construction(proxy, error, match):
    """proxy= must be an http:// URL with a host; the error never shows its password."""
    with pytest.raises(error, match=match) as info:
        AsyncRoutmy(api_key=KEY, proxy=proxy)
    assert PASSWORD not in str(info.value)


def test_a_proxy_without_a_scheme_means_http_and_its_password_stays_hidden():
    client = AsyncRoutmy(api_key=KEY, proxy=f"{USER}:{PASSWORD}@127.0.0.1:3128")
    assert PASSWORD not in repr(client)
    with pytest.raises(ValueError, match="http://") as info:
        AsyncRoutmy(api_key=KEY, proxy=f"{USER}:{PASSWORD}@")
    assert PASSWORD not in str(info.value)


async def test_proxy_settings_cannot_go_with_a_borrowed_session():
    """proxy= and trust_env= belong to a borrowed session= (which the user configures)."""
    async with aiohttp.ClientSession() as session:
        for options in ({"proxy": "http://127.0.0.1:3128"}, {"trust_env": False}):
            with pytest.raises(ValueError, match="borrowed session"):
                AsyncRoutmy(api_key=KEY, session=session, **options)
        with pytest.raises(TypeError, match="trust_env"):
            AsyncRoutmy(api_key=KEY, trust_env="no")  # type: ignore[arg-type]


# -- a proxy that refuses ---------------------------------------------------------------------


@requires_session_proxy
@pytest.mark.parametrize("given", ["wrong", "missing"])
async def test_a_proxy_asking_for_credentials_raises_a_proxy_error_never_retried(given):
    """A 407 to the CONNECT is an APIProxyError (an APIConnectionError) that says the proxy,
    not rout.my, refused; names the proxy without its credentials; says what to fix (wrong
    credentials, or where to put missing ones); and is not retried."""
    async with (
        TLSMock(api_key=KEY) as mock,
        ForwardProxy(auth=(USER, PASSWORD), routes=routes_to(mock)) as proxy,
    ):
        proxy_url = proxy.url_with(USER, "wr0ng") if given == "wrong" else proxy.url
        async with AsyncRoutmy(
            api_key=KEY,
            base_url=f"https://{PROXIED_HOST}/v1",
            proxy=proxy_url,
            verify=client_context(),
            max_retries=2,
        ) as client:
            with pytest.raises(APIProxyError) as info:
                await client.models.list()
        assert proxy.refused == 1  # a 407 is not asked again
        assert mock.requests == []
        shown = proxy.url
    error = info.value
    assert isinstance(error, APIConnectionError)
    assert error.status_code == 407
    assert error.proxy == shown  # http://127.0.0.1:<port>, no credentials
    text = str(error)
    assert f"the proxy {shown} refused the request with 407" in text
    assert "not rout.my" in text
    assert "wr0ng" not in text and USER not in text
    if given == "wrong":
        assert "refused the credentials in the proxy URL" in text
    else:
        authority = shown.removeprefix("http://")
        assert f"proxy='http://USER:PASSWORD@{authority}'" in text


@requires_session_proxy
async def test_a_proxy_asking_for_another_scheme_says_the_client_cannot_do_it():
    """A proxy that wants Negotiate (Kerberos) gets no credentials from a URL: the error says
    which scheme it asked for instead of pointing at the password."""
    async with (
        TLSMock(api_key=KEY) as mock,
        ForwardProxy(auth=(USER, PASSWORD), routes=routes_to(mock), challenge="Negotiate") as proxy,
    ):
        async with AsyncRoutmy(
            api_key=KEY,
            base_url=f"https://{PROXIED_HOST}/v1",
            proxy=proxy.url_with(USER, PASSWORD + "x"),
            verify=client_context(),
            max_retries=0,
        ) as client:
            with pytest.raises(APIProxyError, match="asks for Negotiate authentication"):
                await client.models.list()


@requires_session_proxy
async def test_plain_http_through_a_proxy_asking_for_credentials_is_a_proxy_error(monkeypatch):
    """Over plain-http proxying (no CONNECT: the proxy answers the forwarded request itself),
    a 407 is the same APIProxyError, never an APIStatusError from rout.my, and not retried."""
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    async with MockRoutmy(api_key=KEY) as mock, ForwardProxy(auth=(USER, PASSWORD)) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url_with(USER, "wr0ng"))
        async with AsyncRoutmy(api_key=KEY, base_url=mock.base_url, max_retries=2) as client:
            with pytest.raises(APIProxyError) as info:
                await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        assert proxy.refused == 1
        assert mock.requests == []
        assert info.value.status_code == 407 and info.value.proxy == proxy.url
    assert "refused the credentials in the proxy URL" in str(info.value)
    assert "wr0ng" not in repr(info.value)


@requires_session_proxy
async def test_a_proxy_policy_refusal_is_not_retried_and_a_bad_gateway_is():
    """A 403 to the CONNECT (the proxy's policy) names the host it would not tunnel to and
    NO_PROXY, and is not retried; a 502 (the proxy could not reach the host) is retried like
    any connection failure, then raised as an APIProxyError too."""
    async with ForwardProxy(refuse=(403, "Forbidden")) as proxy:
        async with AsyncRoutmy(
            api_key=KEY, base_url=f"https://{PROXIED_HOST}/v1", proxy=proxy.url, max_retries=2
        ) as client:
            with pytest.raises(APIProxyError) as info:
                await client.models.list()
        assert proxy.refused == 1
    assert info.value.status_code == 403 and info.value.reason == "Forbidden"
    assert f"does not allow {PROXIED_HOST}:443" in str(info.value)
    assert "NO_PROXY" in str(info.value)

    async with ForwardProxy(refuse=(502, "Bad Gateway")) as proxy:
        async with AsyncRoutmy(
            api_key=KEY,
            base_url=f"https://{PROXIED_HOST}/v1",
            proxy=proxy.url,
            max_retries=1,
            timeout=5,
        ) as client:
            with pytest.raises(APIProxyError, match=f"could not reach {PROXIED_HOST}:443"):
                await client.models.list()
        assert proxy.refused == 2


@requires_session_proxy
async def test_a_proxy_that_cannot_be_reached_is_named_without_its_credentials():
    """Nothing listening at the proxy's address: the error says it was the proxy that could
    not be reached, and shows no credentials."""
    async with ForwardProxy() as proxy:
        dead = proxy.url
    async with AsyncRoutmy(
        api_key=KEY,
        base_url=f"https://{PROXIED_HOST}/v1",
        proxy=dead.replace("http://", f"http://{USER}:{PASSWORD}@"),
        max_retries=0,
    ) as client:
        with pytest.raises(APIConnectionError) as info:
            await client.models.list()
    assert f"could not connect to the proxy {dead}" in str(info.value)
    assert PASSWORD not in f"{info.value!s} {info.value!r}"
