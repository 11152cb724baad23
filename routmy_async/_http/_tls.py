"""A client's TLS and proxy settings: checked when it is built, resolved at its first request.

Pure: no aiohttp here. ``_transport`` asks :class:`ConnectSettings` once, when it creates the
pool, for the ``ssl`` value of the connector and the proxy of the session, so that building a
client stays free of SSL work and a request never pays for either.

- ``verify``: ``True`` (the system's CA store, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set),
  ``False`` (no checks), a CA bundle file or a directory of hashed CA files (as with
  ``openssl rehash``), or an ``ssl.SSLContext`` used as it is.
- ``cert``: a client certificate for mutual TLS, one PEM file holding the certificate and its
  key, or a ``(certificate, key)`` pair of files.
- ``proxy``: an ``http://[user:password@]host:port`` forward proxy; https goes through it in a
  ``CONNECT`` tunnel, and the upstream certificate is verified as without a proxy. Without
  one, ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` and ``NO_PROXY`` apply (read the way
  ``urllib`` and aiohttp read them) unless ``trust_env=False``.

Also here, the two version rules that keep closed TLS connections really closed:
:func:`cleanup_closed_needed` (aiohttp's ``enable_cleanup_closed``) and, before Python 3.11,
:func:`close_transport_when_lost` (asyncio-level: it wraps any protocol factory).
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import ssl
import sys
from collections.abc import Callable, Mapping
from typing import TypeAlias, TypeVar
from urllib.parse import unquote, urlsplit
from urllib.request import getproxies, proxy_bypass

from .._exceptions import RoutmyError

__all__ = [
    "MARKS_LOST_TLS_OPEN",
    "CertTypes",
    "ConnectSettings",
    "VerifyTypes",
    "certificate_reason",
    "check_cert",
    "check_proxy",
    "check_verify",
    "cleanup_closed_needed",
    "close_transport_when_lost",
    "known_proxy_secrets",
    "proxy_secrets",
    "session_proxy_supported",
]

logger = logging.getLogger("routmy_async")

_P = TypeVar("_P", bound=asyncio.BaseProtocol)

StrPath: TypeAlias = str | os.PathLike[str]
#: What ``verify=`` takes.
VerifyTypes: TypeAlias = bool | str | os.PathLike[str] | ssl.SSLContext
#: What ``cert=`` takes: one PEM file with the certificate and key, or a (certificate, key) pair.
CertTypes: TypeAlias = str | os.PathLike[str] | tuple[StrPath, StrPath]

# OpenSSL's X509_V_ERR_* codes (x509_vfy.h) that a user can act on, in words.
_NOT_YET_VALID = 9
_EXPIRED = 10
_SELF_SIGNED = frozenset({18, 19})  # the certificate, or a CA in its chain, signs itself
_UNKNOWN_ISSUER = frozenset({2, 20, 21})
_REVOKED = 23
_WRONG_HOST = frozenset({62, 63, 64})  # host name, e-mail, IP address mismatch


def check_verify(verify: object) -> None:
    """Check the type of ``verify=`` without touching a file (construction does no I/O).

    :raises TypeError: not a bool, a path or an ``ssl.SSLContext``.
    :raises ValueError: an empty path.
    """
    if isinstance(verify, (bool, ssl.SSLContext)):
        return
    if isinstance(verify, (str, os.PathLike)):
        if not os.fspath(verify):
            raise ValueError("verify= is an empty path: pass a CA bundle file, True or False")
        return
    raise TypeError(
        "verify must be True, False, a path to a CA bundle or an ssl.SSLContext, "
        f"not {type(verify).__name__}"
    )


def check_cert(cert: object) -> tuple[str, str | None] | None:
    """Check ``cert=`` and return ``(certificate file, key file or None)``; no file is read.

    :raises TypeError: neither a path nor a pair of paths.
    """
    if cert is None:
        return None
    if isinstance(cert, (str, os.PathLike)):
        return os.fspath(cert), None
    if (
        isinstance(cert, (tuple, list))
        and len(cert) == 2
        and all(isinstance(part, (str, os.PathLike)) for part in cert)
    ):
        return os.fspath(cert[0]), os.fspath(cert[1])
    raise TypeError(
        "cert must be a path to a PEM file with the certificate and its key, or a "
        f"(certificate, key) pair of paths, not {cert!r}"
    )


def check_proxy(proxy: object) -> str | None:
    """Check ``proxy=``: an ``http://`` URL with a host (credentials allowed).

    :raises TypeError: not a string.
    :raises ValueError: another scheme, or no host.
    """
    if proxy is None:
        return None
    if not isinstance(proxy, str):
        raise TypeError(f"proxy must be a URL string such as 'http://host:3128', not {proxy!r}")
    if "://" not in proxy:
        proxy = "http://" + proxy  # "host:3128" means an http proxy, as in the environment
    parts = urlsplit(proxy)
    if parts.scheme != "http" or not parts.hostname:
        shown = _without_userinfo(proxy)
        raise ValueError(
            "proxy must be an http:// URL (an HTTP forward proxy: https requests go through "
            f"it in a CONNECT tunnel), not {shown!r}"
        )
    return proxy


def proxy_secrets(url: str) -> list[str]:
    """The credentials of a proxy URL, in every form they may show up in: as written in the
    URL, decoded, and as the ``Proxy-Authorization: Basic`` token."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return []
    userinfo = parts.netloc.rpartition("@")[0]
    user = unquote(parts.username or "")
    password = unquote(parts.password or "")
    plain = f"{user}:{password}"
    try:
        encoded = plain.encode("latin-1")  # aiohttp's BasicAuth default
    except UnicodeEncodeError:
        encoded = plain.encode()
    token = base64.b64encode(encoded).decode("ascii")
    found = [userinfo, plain, token, password, parts.password or ""]
    return [secret for secret in found if secret]


def known_proxy_secrets(proxy: str | None, *, trust_env: bool) -> list[str]:
    """The credentials of ``proxy``, else (``trust_env``) of every proxy the environment names
    (``HTTPS_PROXY``, ...), whichever host it serves: known from the client's start, though
    the pool picks the environment's proxy only when it is made (``client.redact()`` may run
    before the first request)."""
    if proxy is not None:
        return proxy_secrets(proxy)
    found: list[str] = []
    for scheme, url in getproxies().items() if trust_env else ():
        if scheme != "no" and url:
            found.extend(proxy_secrets(url if "://" in url else "http://" + url))
    return found


def _without_userinfo(url: str) -> str:
    if "://" not in url and "@" in url:
        return "***@" + url.rpartition("@")[2]  # no scheme: urlsplit finds no netloc
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2]).geturl()


def cleanup_closed_needed(
    aiohttp_says: bool | None, version: tuple[int, ...] = tuple(sys.version_info[:3])
) -> bool:
    """Whether the connector must abort closed TLS transports itself (``enable_cleanup_closed``).

    Before CPython 3.12.8 and in 3.13.0, asyncio could keep the socket of a TLS connection open
    after closing it when the peer never completed the TLS shutdown (python/cpython#118960):
    aiohttp's option aborts those. aiohttp 3.11+ knows which Pythons are fixed, warns with a
    ``DeprecationWarning`` when the option is set on them, and says so in
    ``aiohttp.connector.NEEDS_CLEANUP_CLOSED``: that answer wins. Older aiohttp has no flag
    (and no warning); then the Python version decides.
    """
    if aiohttp_says is not None:
        return aiohttp_says
    return version < (3, 12, 8) or (3, 13, 0) <= version < (3, 13, 1)


#: CPython before 3.11 leaves a TLS transport marked open when its peer ends the connection.
MARKS_LOST_TLS_OPEN = sys.version_info < (3, 11)


def close_transport_when_lost(factory: Callable[[], _P]) -> Callable[[], _P]:
    """Wrap a protocol factory so that each protocol closes its transport once the connection
    is lost.

    Before 3.11, asyncio's TLS transport is marked closed only by its own ``close()``: when
    the server ends a connection (an idle keep-alive one, a reset), the transport is collected
    still "open" and warns ``ResourceWarning: unclosed transport`` although its socket is
    gone (python/cpython#90476). Closing it after ``connection_lost`` only marks it closed.
    """

    def make() -> _P:
        protocol = factory()
        lost = protocol.connection_lost

        def connection_lost(exc: Exception | None) -> None:
            transport = getattr(protocol, "transport", None)
            lost(exc)
            if transport is not None and not transport.is_closing():
                transport.close()

        # An instance attribute: asyncio calls protocol.connection_lost(exc).
        protocol.connection_lost = connection_lost  # type: ignore[method-assign]
        return protocol

    return make


def session_proxy_supported(aiohttp_version: str) -> bool:
    """Whether ``aiohttp.ClientSession`` takes a ``proxy=`` for all its requests (3.11+)."""
    numbers: list[int] = []
    for part in aiohttp_version.split(".")[:2]:
        digits = "".join(ch for ch in part if ch.isdigit())
        numbers.append(int(digits or 0))
    return tuple(numbers) >= (3, 11)


def certificate_reason(code: int | None, message: str | None, host: str) -> str:
    """Why a certificate was refused, in words a user can act on (from OpenSSL's verify code)."""
    if code == _EXPIRED:
        return "the certificate has expired"
    if code == _NOT_YET_VALID:
        return "the certificate is not valid yet (or this machine's clock is wrong)"
    if code in _WRONG_HOST:
        return f"the certificate is for another host, not {host} (wrong host)"
    if code in _SELF_SIGNED or code in _UNKNOWN_ISSUER:
        return (
            "the certificate is not signed by a certificate authority this client trusts "
            "(self-signed, or signed by a private or proxy CA)"
        )
    if code == _REVOKED:
        return "the certificate has been revoked"
    return message or "the certificate failed verification"


class ConnectSettings:
    """The TLS and proxy settings of one pool, resolved once, when the pool is created.

    :param verify: see the module docstring (checked with :func:`check_verify`).
    :param cert: ``(certificate file, key file or None)`` from :func:`check_cert`.
    :param proxy: the proxy URL from :func:`check_proxy`, or ``None`` for the environment's.
    :param trust_env: whether ``*_PROXY`` / ``NO_PROXY`` apply when ``proxy`` is ``None``.
    :param target: the base URL the pool talks to (its scheme and host choose the proxy).
    """

    __slots__ = ("cert", "proxy", "target", "trust_env", "verify")

    def __init__(
        self,
        *,
        verify: VerifyTypes,
        cert: tuple[str, str | None] | None,
        proxy: str | None,
        trust_env: bool,
        target: str,
    ):
        self.verify = verify
        self.cert = cert
        self.proxy = proxy
        self.trust_env = trust_env
        self.target = target

    @property
    def is_tls(self) -> bool:
        """Whether the pool talks https (plain http needs no SSL context at all)."""
        return urlsplit(self.target).scheme == "https"

    def ssl_context(self, environ: Mapping[str, str] = os.environ) -> ssl.SSLContext | bool:
        """The connector's ``ssl=``: a context, or ``True``/``False`` for aiohttp's shared ones.

        Only ``True`` with no client certificate and no ``SSL_CERT_*`` variable takes
        aiohttp's shared default context (made once per process); everything else builds
        one context here, once per pool.

        :raises RoutmyError: a CA bundle or a certificate file cannot be loaded.
        """
        verify, cert = self.verify, self.cert
        if isinstance(verify, ssl.SSLContext):
            return verify
        env_file = environ.get("SSL_CERT_FILE") or None
        env_dir = environ.get("SSL_CERT_DIR") or None
        if cert is None and (verify is False or (verify is True and not (env_file or env_dir))):
            return verify
        if verify is False:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            if verify is True:
                cafile, capath = env_file, env_dir
                source = "SSL_CERT_FILE / SSL_CERT_DIR" if env_file or env_dir else ""
            else:
                path = os.fspath(verify)
                is_dir = os.path.isdir(path)
                cafile, capath = (None, path) if is_dir else (path, None)
                source = f"verify={path!r}"
            try:
                context = ssl.create_default_context(cafile=cafile, capath=capath)
            except (OSError, ssl.SSLError) as exc:
                raise RoutmyError(
                    f"{source}: the CA certificates could not be loaded ({exc}); point it at a "
                    "PEM bundle of the certificate authorities to trust"
                ) from exc
        if cert is not None:
            certfile, keyfile = cert
            try:
                context.load_cert_chain(certfile, keyfile)
            except (OSError, ssl.SSLError) as exc:
                raise RoutmyError(
                    f"cert={(certfile, keyfile) if keyfile else certfile!r}: the client "
                    f"certificate could not be loaded ({exc}); pass one PEM file with the "
                    "certificate and its unencrypted key, or a (certificate, key) pair (for a "
                    "key with a password, build an ssl.SSLContext and pass it as verify=)"
                ) from exc
        # What aiohttp's own contexts offer: the pool speaks HTTP/1.1 only.
        context.set_alpn_protocols(["http/1.1"])
        return context

    def proxy_url(self) -> str | None:
        """The proxy for the target: ``proxy=``, else the environment's (unless ``NO_PROXY``
        names the host or ``trust_env=False``), else ``None``."""
        if self.proxy is not None:
            return self.proxy
        if not self.trust_env:
            return None
        parts = urlsplit(self.target)
        proxies = getproxies()
        found = proxies.get(parts.scheme) or proxies.get("all")
        if not found or not parts.hostname:
            return None
        # host:port, so that a NO_PROXY entry naming a port matches (as urllib's does).
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if proxy_bypass(parts.hostname) or proxy_bypass(f"{parts.hostname}:{port}"):
            return None
        if "://" not in found:
            found = "http://" + found  # "host:3128" means an http proxy, as in curl
        scheme = urlsplit(found).scheme
        if scheme != "http" or not urlsplit(found).hostname:
            logger.warning(
                "ignoring the %s proxy from the environment (%s): only http:// proxies are "
                "supported",
                parts.scheme,
                _without_userinfo(found),
            )
            return None
        return found
