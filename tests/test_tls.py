"""Trust configuration and certificate errors, against loopback HTTPS servers.

``verify=`` takes True, False, a CA bundle (file or hashed directory) or an ``ssl.SSLContext``;
``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` apply by default; ``cert=`` gives a client certificate
for mutual TLS. Certificates come from a CA made at test time (``tests/_tls_helpers.py``).
"""

from __future__ import annotations

import logging
import os
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme

from routmy_async import (
    APICertificateError,
    APIConnectionError,
    AsyncRoutmy,
    RoutmyError,
)
from routmy_async._http._tls import (
    certificate_reason,
    check_proxy,
    cleanup_closed_needed,
    proxy_secrets,
    session_proxy_supported,
)
from routmy_async._http._transport import map_transport_error
from tests._tls_helpers import (
    TLSMock,
    ca,
    client_cert,
    expired_cert,
    server_context,
    write_ca_bundle,
)

KEY = "sk-tls-suite-SECRET-0123456789"
MESSAGES = [{"role": "user", "content": "over tls"}]


@pytest.fixture
def no_cert_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)


async def one_call(base_url: str, **options: Any) -> str | None:
    options.setdefault("max_retries", 0)
    async with AsyncRoutmy(api_key=KEY, base_url=base_url, **options) as client:
        completion = await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
    return completion.choices[0].message.content


@pytest.mark.parametrize("form", ["str", "path"])
async def test_verify_takes_a_ca_bundle_file(tmp_path, no_cert_env, form):
    """verify= a CA bundle (str or Path) trusts that CA; the default store does not."""
    bundle = write_ca_bundle(tmp_path)
    async with TLSMock(api_key=KEY) as mock:
        assert await one_call(mock.base_url, verify=str(bundle) if form == "str" else bundle)
        with pytest.raises(APICertificateError):
            await one_call(mock.base_url)


def hashed_ca_directory(tmp_path: Path) -> Path:
    """The test CA in a directory named by its subject hash, as ``openssl rehash`` does."""
    bundle = write_ca_bundle(tmp_path)
    digest = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(bundle)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    directory = tmp_path / "certs"
    directory.mkdir()
    shutil.copy(bundle, directory / f"{digest}.0")
    return directory


needs_openssl = pytest.mark.skipif(
    shutil.which("openssl") is None, reason="the openssl command names hashed CA files"
)


@needs_openssl
async def test_verify_takes_a_directory_of_hashed_cas(tmp_path, no_cert_env):
    """verify= a directory of hashed CA files (capath) trusts them."""
    async with TLSMock(api_key=KEY) as mock:
        assert await one_call(mock.base_url, verify=str(hashed_ca_directory(tmp_path)))


async def test_ssl_cert_file_is_honoured_by_default(tmp_path, monkeypatch, no_cert_env):
    """With verify=True, SSL_CERT_FILE names the CAs to trust (read at the first request)."""
    async with TLSMock(api_key=KEY) as mock:
        monkeypatch.setenv("SSL_CERT_FILE", str(write_ca_bundle(tmp_path)))
        assert await one_call(mock.base_url)


@needs_openssl
async def test_ssl_cert_dir_is_honoured_by_default(tmp_path, monkeypatch, no_cert_env):
    """With verify=True, SSL_CERT_DIR names a directory of hashed CAs to trust."""
    async with TLSMock(api_key=KEY) as mock:
        monkeypatch.setenv("SSL_CERT_DIR", str(hashed_ca_directory(tmp_path)))
        assert await one_call(mock.base_url)


async def test_verify_takes_an_ssl_context(no_cert_env):
    """verify= an ssl.SSLContext is used as it is."""

    class Watched(ssl.SSLContext):
        """Notes each connection it secures (asyncio's TLS layer calls wrap_bio on it)."""

        wrapped = 0

        def wrap_bio(self, *args: Any, **kwargs: Any) -> ssl.SSLObject:
            type(self).wrapped += 1
            return super().wrap_bio(*args, **kwargs)

    context = Watched(ssl.PROTOCOL_TLS_CLIENT)
    ca().configure_trust(context)
    async with TLSMock(api_key=KEY) as mock:
        async with AsyncRoutmy(
            api_key=KEY, base_url=mock.base_url, verify=context, max_retries=0
        ) as client:
            await client.models.list()
            await client.models.list()
    assert Watched.wrapped == 1  # this very context secured the one pooled connection


async def test_verify_false_skips_the_checks_and_warns(caplog, no_cert_env):
    """verify=False talks to a server whose certificate nobody trusts, and logs a warning;
    so does an SSLContext that checks nothing."""
    stranger = trustme.CA().issue_cert("127.0.0.1")
    unchecked = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    unchecked.check_hostname = False
    unchecked.verify_mode = ssl.CERT_NONE
    with caplog.at_level(logging.WARNING, logger="routmy_async"):
        async with TLSMock(api_key=KEY, context=server_context(stranger)) as mock:
            assert await one_call(mock.base_url, verify=False)
            assert await one_call(mock.base_url, verify=unchecked)
    assert sum("verification is OFF" in r.getMessage() for r in caplog.records) == 2


def untrusted_cert() -> trustme.LeafCert:
    return trustme.CA().issue_cert("127.0.0.1", "localhost")


def other_host_cert() -> trustme.LeafCert:
    return ca().issue_cert("other.example")


@pytest.mark.parametrize(
    ("make_cert", "reason"),
    [
        (
            untrusted_cert,
            "the certificate is not signed by a certificate authority this client trusts "
            "(self-signed, or signed by a private or proxy CA)",
        ),
        (expired_cert, "the certificate has expired"),
        (other_host_cert, "the certificate is for another host, not localhost (wrong host)"),
    ],
    ids=["untrusted", "expired", "wrong-host"],
)
async def test_certificate_errors_say_what_happened(tmp_path, no_cert_env, make_cert, reason):
    """An untrusted, expired or wrong-host certificate raises APICertificateError (an
    APIConnectionError) naming the host and the reason, pointing at verify= with a CA bundle,
    with no raw ssl error text and no key."""
    bundle = write_ca_bundle(tmp_path)
    async with TLSMock(api_key=KEY, context=server_context(make_cert())) as mock:
        with pytest.raises(APICertificateError) as info:
            await one_call(mock.url_for("localhost"), verify=bundle)
    error = info.value
    message = str(error)
    assert isinstance(error, APIConnectionError)
    assert error.host == "localhost" and error.reason == reason
    assert f"localhost:{mock.tls_port}" in message and reason in message
    assert "verify='/path/to/ca-bundle.pem'" in message and "SSL_CERT_FILE" in message
    assert "CERTIFICATE_VERIFY_FAILED" not in message and KEY not in message
    assert mock.requests == []


async def test_certificate_errors_are_never_retried(no_cert_env):
    """Retrying cannot fix a certificate: one handshake, however many retries are allowed."""
    handshakes: list[str | None] = []
    context = server_context(untrusted_cert())
    context.sni_callback = lambda _obj, name, _ctx: handshakes.append(name)
    async with TLSMock(api_key=KEY, context=context) as mock:
        with pytest.raises(APICertificateError):
            await one_call(mock.url_for("localhost"), max_retries=1)
    assert handshakes == ["localhost"]


@pytest.fixture
def client_files(tmp_path: Path) -> dict[str, Path]:
    leaf = client_cert()
    files = {
        "cert": tmp_path / "client.crt",
        "key": tmp_path / "client.key",
        "both": tmp_path / "client.pem",
    }
    leaf.cert_chain_pems[0].write_to_path(str(files["cert"]))
    leaf.private_key_pem.write_to_path(str(files["key"]))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(files["both"]))
    return files


@pytest.mark.parametrize("form", ["pair", "one-file", "unverified-server"])
async def test_mutual_tls_with_a_client_certificate(tmp_path, client_files, no_cert_env, form):
    """A server that requires client certificates accepts cert=(certificate, key) or one PEM
    file holding both (also with verify=False); without cert= the connection fails."""
    bundle = write_ca_bundle(tmp_path)
    cert: Any = (
        (client_files["cert"], str(client_files["key"]))
        if form != "one-file"
        else client_files["both"]
    )
    verify: Any = False if form == "unverified-server" else bundle
    async with TLSMock(api_key=KEY, context=server_context(require_client_cert=True)) as mock:
        assert await one_call(mock.base_url, verify=verify, cert=cert) == "over tls"
        with pytest.raises(APIConnectionError):
            await one_call(mock.base_url, verify=verify)


async def test_the_ssl_context_is_built_once_per_client_at_the_first_request(
    tmp_path, monkeypatch, no_cert_env
):
    """Building clients does no SSL work; the first request builds the one context, which
    every later request and every with_options client reuses."""
    bundle = write_ca_bundle(tmp_path)
    built: list[Any] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        built.append(kwargs)
        return real(*args, **kwargs)

    async with TLSMock(api_key=KEY) as mock:
        monkeypatch.setattr(ssl, "create_default_context", counting)
        clients = [
            AsyncRoutmy(api_key=KEY, base_url=mock.base_url, verify=bundle) for _ in range(3)
        ]
        assert built == []
        client = clients[0]
        async with client:
            for _ in range(3):
                await client.models.list()
            derived = client.with_options(timeout=5)
            await derived.chat.completions.create(model="mock/echo", messages=MESSAGES)
            assert len(built) == 1 and built[0]["cafile"] == str(bundle)
            await derived.close()
        for other in clients[1:]:
            await other.close()
        assert len(built) == 1 and mock.connections_seen == 1


async def test_plain_http_builds_no_ssl_context(monkeypatch, tmp_path):
    """An http base URL never loads a CA bundle, even a missing one."""
    from routmy_async.testing import MockRoutmy

    async with MockRoutmy(api_key=KEY) as mock:
        assert await one_call(mock.base_url, verify=str(tmp_path / "missing.pem"))


@pytest.mark.parametrize("where", ["verify", "SSL_CERT_FILE", "cert", "garbage"])
async def test_files_that_cannot_be_loaded_fail_the_first_request_clearly(
    tmp_path, monkeypatch, no_cert_env, where
):
    """A missing or unreadable CA bundle or client certificate is a RoutmyError at the first
    request naming the setting (never at construction, never a raw ssl error); the client
    keeps saying so."""
    missing = str(tmp_path / "missing.pem")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    options: dict[str, Any] = {}
    if where == "verify":
        options["verify"] = missing
    elif where == "SSL_CERT_FILE":
        monkeypatch.setenv("SSL_CERT_FILE", missing)
    elif where == "cert":
        options["cert"] = (missing, missing)
    else:
        options["verify"] = str(garbage)
    client = AsyncRoutmy(api_key=KEY, base_url="https://127.0.0.1:9/v1", **options)
    async with client:
        for _ in range(2):
            with pytest.raises(RoutmyError) as info:
                await client.models.list()
            assert not isinstance(info.value, APIConnectionError)
            assert (where if where != "garbage" else "verify=") in str(info.value)
            assert "could not be loaded" in str(info.value)
        assert not client._transport.has_session


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"verify": 1}, TypeError, "verify must be True, False, a path"),
        ({"verify": ""}, ValueError, "empty path"),
        ({"cert": 5}, TypeError, "cert must be a path"),
        ({"cert": ("only-one",)}, TypeError, "cert must be a path"),
        ({"verify": ssl.create_default_context(), "cert": "c.pem"}, ValueError, "load_cert_chain"),
    ],
)
def test_wrong_tls_settings_are_refused_at_construction(options, error, match):
    """Wrong types or combinations for verify= and cert= raise at once, naming them."""
    with pytest.raises(error, match=match):
        AsyncRoutmy(api_key=KEY, **options)


async def test_tls_settings_cannot_go_with_a_borrowed_session():
    """cert= belongs to a borrowed session's connector, like verify=."""
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ValueError, match="borrowed session"):
            AsyncRoutmy(api_key=KEY, session=session, cert="client.pem")


async def test_an_unusable_proxy_on_an_old_aiohttp_says_what_to_do(monkeypatch):
    """Where aiohttp cannot set a proxy for a whole session (before 3.11), a proxy that
    applies fails the first request with a message naming its source and the fixes."""
    import routmy_async._http._transport as transport_module

    monkeypatch.setattr(transport_module, "session_proxy_supported", lambda version: False)
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    attempts: list[tuple[dict[str, Any], str]] = [
        ({"proxy": "http://127.0.0.1:3128"}, "proxy= needs aiohttp 3.11 or later"),
        ({}, "a *_PROXY environment variable needs aiohttp 3.11 or later"),
    ]
    for options, source in attempts:
        async with AsyncRoutmy(api_key=KEY, base_url="https://127.0.0.1:9/v1", **options) as client:
            with pytest.raises(RoutmyError, match=r"needs aiohttp 3\.11") as info:
                await client.models.list()
        assert source in str(info.value)
        assert ("trust_env=False" in str(info.value)) is ("proxy" not in options)


# -- the pure parts --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (10, "has expired"),
        (9, "not valid yet"),
        (62, "for another host, not h.example"),
        (64, "for another host"),
        (18, "not signed by a certificate authority"),
        (19, "not signed by a certificate authority"),
        (20, "not signed by a certificate authority"),
        (23, "revoked"),
        (50, "OpenSSL's own words"),
        (None, "OpenSSL's own words"),
    ],
)
def test_certificate_reasons_are_in_words(code, words):
    """Each OpenSSL verify code a user can act on has its sentence; others keep OpenSSL's."""
    assert words in certificate_reason(code, "OpenSSL's own words", "h.example")
    assert certificate_reason(None, None, "h") == "the certificate failed verification"


def test_a_raw_certificate_error_is_mapped_too():
    """An ssl.SSLCertVerificationError reaching the boundary bare becomes APICertificateError
    for the request's host."""
    raw = ssl.SSLCertVerificationError(1, "certificate verify failed")
    raw.verify_code = 10
    raw.verify_message = "certificate has expired"
    error = map_transport_error(raw, method="GET", url="https://api.rout.test:8443/v1/models")
    assert isinstance(error, APICertificateError)
    assert error.host == "api.rout.test" and "api.rout.test:8443" in str(error)
    assert error.reason == "the certificate has expired"


@pytest.mark.parametrize(
    ("version", "aiohttp_says", "needed"),
    [
        ((3, 10, 13), None, True),
        ((3, 11, 7), None, True),
        ((3, 12, 7), None, True),
        ((3, 12, 8), None, False),
        ((3, 13, 0), None, True),
        ((3, 13, 1), None, False),
        ((3, 14, 0), None, False),
        ((3, 12, 7), False, False),  # aiohttp 3.11.0 drew the line at 3.12.7: it decides
        ((3, 13, 5), True, True),
    ],
)
def test_cleanup_closed_follows_aiohttp_else_the_python_version(version, aiohttp_says, needed):
    """aiohttp's own NEEDS_CLEANUP_CLOSED decides when it has one (so it never warns);
    without it (aiohttp < 3.11), Pythons before 3.12.8 and 3.13.0 need the cleanup."""
    assert cleanup_closed_needed(aiohttp_says, version) is needed


@pytest.mark.parametrize(
    ("version", "supported"),
    [("3.10.10", False), ("3.11.0", True), ("3.14.5", True), ("4.0.0a1", True), ("3", False)],
)
def test_session_proxy_support_by_aiohttp_version(version, supported):
    """A session-wide proxy= exists from aiohttp 3.11 on."""
    assert session_proxy_supported(version) is supported


def test_proxy_secrets_cover_every_form_of_the_credentials():
    """The userinfo as written, decoded, the password alone and the Basic token are all
    secrets; a proxy without credentials has none."""
    secrets = proxy_secrets("http://us%40er:p%3Ass@proxy.example:3128")
    assert "us%40er:p%3Ass" in secrets and "us@er:p:ss" in secrets
    assert "p:ss" in secrets and "p%3Ass" in secrets
    assert "dXNAZXI6cDpzcw==" in secrets  # base64("us@er:p:ss")
    assert proxy_secrets("http://proxy.example:3128") == []
    assert "dXNlcjrp" in proxy_secrets("http://user:\u00e9@p:1")  # latin-1, as aiohttp
    assert "dXNlcjrimIM=" in proxy_secrets("http://user:\u2603@p:1")  # beyond latin-1: UTF-8


def test_check_proxy_hides_credentials_in_its_error():
    """A refused proxy URL is shown without its userinfo."""
    with pytest.raises(ValueError) as info:
        check_proxy("socks5://user:hunter22@proxy.example:1080")
    assert "hunter22" not in str(info.value) and "***@proxy.example:1080" in str(info.value)
    assert check_proxy(None) is None


def test_env_proxy_values_are_resolved_once_at_the_first_request(monkeypatch):
    """Proxy variables are read when the pool is made, not when the client is built."""
    from routmy_async._http._tls import ConnectSettings

    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    settings = ConnectSettings(
        verify=True, cert=None, proxy=None, trust_env=True, target="https://api.rout.test/v1"
    )
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert settings.proxy_url() == "http://proxy.example:3128"
    monkeypatch.setenv("HTTPS_PROXY", "http://")  # no host: not a proxy
    assert settings.proxy_url() is None
    monkeypatch.delenv("HTTPS_PROXY")
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    monkeypatch.delenv("all_proxy", raising=False)
    assert settings.proxy_url() is None
    assert os.environ.get("HTTPS_PROXY") is None


def test_a_lost_connection_closes_its_transport():
    """Wrapped protocols close their transport after connection_lost (what Python 3.10's
    TLS transport needs to count as closed), once, and only while it is still open."""
    import asyncio

    from routmy_async._http._tls import close_transport_when_lost

    class Transport:
        closed = 0

        def is_closing(self) -> bool:
            return self.closed > 0

        def close(self) -> None:
            self.closed += 1

    class Protocol(asyncio.Protocol):
        def __init__(self) -> None:
            self.transport: Any = Transport()
            self.lost: list[Exception | None] = []

        def connection_lost(self, exc: Exception | None) -> None:
            self.lost.append(exc)
            self.transport = None  # as aiohttp's protocol does

    make = close_transport_when_lost(Protocol)
    protocol = make()
    transport = protocol.transport
    protocol.connection_lost(None)
    assert protocol.lost == [None] and transport.closed == 1
    again = make()
    again.transport.closed = 1  # already closing: left alone
    kept = again.transport
    again.connection_lost(OSError("reset"))
    assert kept.closed == 1 and isinstance(again.lost[0], OSError)
