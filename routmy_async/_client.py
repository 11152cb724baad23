"""``AsyncRoutmy``: configuration, lifecycle, the resources, and raw requests (the call path
itself is ``_request.Pipeline``)."""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import ssl
import warnings
from collections.abc import Callable, Iterable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload
from urllib.parse import SplitResult, unquote, urlsplit

import aiohttp
import msgspec

from ._checks import check_count
from ._config import (
    DEFAULT_BASE_URL,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    NotGiven,
    Timeout,
    check_headers,
    coerce_timeout,
)
from ._exceptions import APIResponseValidationError
from ._hooks import Hooks, HookSet
from ._http._ratelimit import RateLimit
from ._http._tls import CertTypes, VerifyTypes, check_cert, check_proxy, check_verify
from ._http._transport import Transport, logger
from ._params import _OPTION_NAMES, RequestOptions, build_body
from ._request import CallSpec, Pipeline

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ._spend import SpendLimit, SpendSnapshot
    from ._streaming._raw import RawStream, RawStreamManager, ServerSentEvent
    from .resources.chat import Chat
    from .resources.embeddings import Embeddings
    from .resources.images import Images
    from .resources.models import Models
    from .resources.responses import Responses

__all__ = ["AsyncRoutmy"]

T = TypeVar("T")

__version__ = "0.1.0"
"""The version of routmy_async, as in its package metadata."""


_RESOURCE_NAMES = frozenset({"chat", "models", "embeddings", "images", "responses"})


class _State(enum.Enum):
    UNOPENED = "unopened"
    OPENED = "opened"
    CLOSED = "closed"


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_key(api_key: object) -> str:
    if not isinstance(api_key, str) or not api_key.strip():
        raise TypeError("api_key must be a non-empty string")
    if any(ch in api_key for ch in "\r\n\0"):
        raise ValueError("api_key contains CR, LF or NUL")
    return api_key


def _check_base_url(base_url: object) -> tuple[str, SplitResult]:
    """The base URL (``ROUTMY_BASE_URL`` or the default when ``None``) and its parts.

    :raises TypeError: not a string. :raises ValueError: not an http(s) URL.
    """
    if base_url is None:
        base_url = os.environ.get("ROUTMY_BASE_URL") or DEFAULT_BASE_URL
    if not isinstance(base_url, str):
        raise TypeError(f"base_url must be a string, not {type(base_url).__name__}")
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be an http(s) URL, not {base_url!r}")
    return base_url, parts


def _check_connection(
    *,
    session: object,
    verify: VerifyTypes,
    cert: CertTypes | None,
    proxy: str | None,
    trust_env: object,
    rate_limit: object,
    max_connections: int,
) -> tuple[tuple[str, str | None] | None, str | None]:
    """Check the pool's settings: ``(client certificate, proxy)`` as the transport takes them.

    :raises TypeError: a setting has the wrong type.
    :raises ValueError: a wrong value, or settings that a borrowed session cannot take.
    """
    check_count("max_connections", max_connections, 1)
    if session is not None and not isinstance(session, aiohttp.ClientSession):
        raise TypeError("session must be an aiohttp.ClientSession")
    check_verify(verify)
    client_cert = check_cert(cert)
    if isinstance(verify, ssl.SSLContext) and client_cert is not None:
        raise ValueError(
            "cert= cannot be added to your own ssl.SSLContext: load it there "
            "(context.load_cert_chain(certfile, keyfile)) and pass only verify=context"
        )
    proxy = check_proxy(proxy)
    if not isinstance(trust_env, bool):
        raise TypeError(f"trust_env must be a bool, not {type(trust_env).__name__}")
    if rate_limit is not None and not isinstance(rate_limit, RateLimit):
        raise TypeError(
            "rate_limit must be a routmy_async.RateLimit(requests_per_minute=..., "
            f"tokens_per_minute=...), not {type(rate_limit).__name__}"
        )
    if session is not None and (
        verify is not True
        or max_connections != DEFAULT_MAX_CONNECTIONS
        or client_cert is not None
        or proxy is not None
        or trust_env is not True
    ):
        # The pool size, TLS and proxy settings belong to the session and its connector,
        # which the user made: silently ignoring them would be worse than saying so.
        raise ValueError(
            "verify=, cert=, proxy=, trust_env= and max_connections= cannot apply to a "
            "borrowed session=: set them on the session and its connector "
            "(aiohttp.TCPConnector(limit=..., ssl=...), ClientSession(trust_env=...))"
        )
    return client_cert, proxy


def _key_from(api_key: str | None) -> str | None:
    """The key given, else ``ROUTMY_API_KEY``; an empty variable counts as no key."""
    if api_key is None:
        api_key = os.environ.get("ROUTMY_API_KEY") or None
    return _check_key(api_key) if api_key is not None else None


def _hook_set(hooks: Iterable[Hooks] | None) -> HookSet | None:
    """The hooks as one set, or None when there are none: the hot path tests it for None."""
    if hooks is None:
        return None
    hook_set = hooks if isinstance(hooks, HookSet) else HookSet(hooks)
    return hook_set if hook_set.hooks else None


def _check_spend_limit(spend_limit: object) -> None:
    if spend_limit is None:
        return
    # Imported here: a client without a spend limit does not load the ledger (import time).
    from ._spend import SpendLimit

    if not isinstance(spend_limit, SpendLimit):
        raise TypeError(
            "spend_limit must be a routmy_async.SpendLimit(max_units=..., max_dollars=...), "
            f"not {type(spend_limit).__name__}"
        )


def _check_settings(
    timeout: float | Timeout | None,
    max_retries: int,
    default_headers: Mapping[str, str] | None,
    default_query: Mapping[str, str] | None,
    spend_limit: object,
) -> tuple[Timeout, dict[str, str], dict[str, str]]:
    """The settings that are not the pool's, checked: the timeout, default headers and
    default query as the pipeline takes them.

    :raises TypeError: a setting has the wrong type. :raises ValueError: a wrong value.
    """
    check_count("max_retries", max_retries, 0)
    _check_spend_limit(spend_limit)
    return (
        coerce_timeout(timeout),
        check_headers(default_headers, name="default_headers"),
        check_headers(default_query, name="default_query"),
    )


def _observe(
    transport: Transport,
    pipeline: Pipeline,
    hooks: Iterable[Hooks] | None,
    limit: SpendLimit | None,
) -> None:
    """The client's hooks on the transport, and its spend limit (see :func:`_limit_spend`)."""
    transport.hooks = _hook_set(hooks)
    if limit is not None:
        _limit_spend(transport, pipeline, limit)


def _limit_spend(transport: Transport, pipeline: Pipeline, limit: SpendLimit) -> None:
    """Add ``limit`` to the pipeline's, and the pool's spend gate before its hooks if it has
    none yet (the first hook: the units it counts are on the ``Call`` when the others see
    it). The gate reads the models list through a pipeline of its own, which no client
    closes."""
    from ._http._spend_gate import SpendGate

    pipeline.spend_limits = (*pipeline.spend_limits, limit)
    if transport.spend is not None:
        return
    reader = pipeline.derive(spend_limits=())

    async def load_models() -> list[Mapping[str, Any]]:
        listed = await reader.send(
            reader.prepare("models", "GET", "/models", decode=msgspec.json.decode)
        )
        items = listed.get("data") if isinstance(listed, Mapping) else None
        return [item for item in items or () if isinstance(item, Mapping)]

    gate = SpendGate(load_models)
    transport.spend = gate
    transport.hooks = HookSet((gate, *(transport.hooks.hooks if transport.hooks else ())))


def _warn_if_insecure(verify: VerifyTypes, parts: SplitResult, base_url: str) -> None:
    if verify is False or (
        isinstance(verify, ssl.SSLContext) and verify.verify_mode == ssl.CERT_NONE
    ):
        logger.warning("TLS certificate verification is OFF for %s", base_url)
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        logger.warning("base_url %s is plain http: the API key travels in clear text", base_url)


class AsyncRoutmy:
    """An asyncio client for rout.my.

    :param api_key: the key; defaults to ``ROUTMY_API_KEY``. Checked at the first request.
    :param base_url: defaults to ``ROUTMY_BASE_URL``, then ``https://api.rout.my/v1``.
    :param timeout: total seconds, or a ``Timeout(connect=, read=, total=, stream_idle=)``.
    :param max_retries: retries after the first attempt, for retryable failures.
    :param default_headers: headers sent with every request.
    :param default_query: query parameters sent with every request.
    :param max_connections: the most connections in use at once (streams hold theirs until
        they end); a request waits for a free one, up to ``Timeout(pool=...)``.
    :param session: an ``aiohttp.ClientSession`` to borrow; it is never closed by the client.
    :param verify: ``True`` checks server certificates against the system's CAs, or those of
        ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set; a path to a CA bundle (or to a
        directory of hashed CA files) trusts those CAs instead, for a private CA or a
        TLS-inspecting proxy; an ``ssl.SSLContext`` is used as it is; ``False`` turns checking
        off (and logs a warning). Loaded once, at the first request.
    :param cert: a client certificate for mutual TLS: one PEM file holding the certificate
        and its key, or a ``(certificate, key)`` pair of files.
    :param proxy: an ``http://[user:password@]host:port`` forward proxy for every request
        (https goes through it in a CONNECT tunnel); its credentials are redacted like the key.
    :param trust_env: without ``proxy``, use ``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY``
        and honour ``NO_PROXY`` (read at the first request); ``False`` ignores them.
    :param rate_limit: a ``RateLimit(requests_per_minute=..., tokens_per_minute=...)`` that
        paces every request of this client and of the clients ``with_options`` derives from
        it (the same object given to several clients is one budget for all of them).
    :param hooks: :class:`Hooks` that observe every call, attempt, retry, error and stream
        end of this client and of the clients ``with_options`` derives from it.
    :param spend_limit: a :class:`SpendLimit` every attempt of this client (and of the
        clients ``with_options`` derives from it) reserves its worst case in before it is
        sent; the same object given to several clients is one limit for all of them.
    :raises TypeError: an argument has the wrong type.
    :raises ValueError: an argument has a wrong value (a negative retry count, a bad URL...).
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        timeout: float | Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = 2,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, str] | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        session: aiohttp.ClientSession | None = None,
        verify: VerifyTypes = True,
        cert: CertTypes | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
        rate_limit: RateLimit | None = None,
        hooks: Iterable[Hooks] | None = None,
        spend_limit: SpendLimit | None = None,
    ):
        api_key = _key_from(api_key)
        base_url, parts = _check_base_url(base_url)
        client_cert, proxy = _check_connection(
            session=session,
            verify=verify,
            cert=cert,
            proxy=proxy,
            trust_env=trust_env,
            rate_limit=rate_limit,
            max_connections=max_connections,
        )
        checked_timeout, checked_headers, checked_query = _check_settings(
            timeout, max_retries, default_headers, default_query, spend_limit
        )
        self.max_connections = max_connections
        self._transport = Transport(
            max_connections=max_connections,
            session=session,
            verify=verify,
            secret=api_key,
            rate_limit=rate_limit,
            cert=client_cert,
            proxy=proxy,
            trust_env=trust_env,
            target=base_url,
        )
        self._pipeline = Pipeline(
            self._transport,
            base_url=base_url.rstrip("/"),
            api_key=api_key,
            timeout=checked_timeout,
            max_retries=max_retries,
            default_headers=checked_headers,
            default_query=checked_query,
            user_agent=f"routmy-async/{__version__}",
        )
        _observe(self._transport, self._pipeline, hooks, spend_limit)
        self._owns_transport = True
        self._transport.attach()
        self._state = _State.UNOPENED
        _warn_if_insecure(verify, parts, self.base_url)

    # -- settings (kept by the pipeline every resource of this client sends through) -----

    @property
    def base_url(self) -> str:
        """The URL every path is joined to (no trailing ``/``)."""
        return self._pipeline.base_url

    @base_url.setter
    def base_url(self, value: str) -> None:
        self._pipeline.base_url = value

    @property
    def timeout(self) -> Timeout:
        """The client's default :class:`Timeout` (``timeout=`` of a call overrides it)."""
        return self._pipeline.timeout

    @timeout.setter
    def timeout(self, value: Timeout) -> None:
        self._pipeline.timeout = value

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt, for retryable failures (``max_retries=`` of a
        call overrides it)."""
        return self._pipeline.max_retries

    @max_retries.setter
    def max_retries(self, value: int) -> None:
        self._pipeline.max_retries = value

    @property
    def _api_key(self) -> str | None:
        return self._pipeline.api_key

    # -- resources ----------------------------------------------------------------------

    @cached_property
    def chat(self) -> Chat:
        """Chat Completions: ``client.chat.completions.create(...)``."""
        from .resources.chat import Chat

        return Chat(self._pipeline)

    @cached_property
    def responses(self) -> Responses:
        """The Responses API: ``await client.responses.create(model=..., input=...)``."""
        from .resources.responses import Responses

        return Responses(self._pipeline)

    @cached_property
    def models(self) -> Models:
        """The models list: ``await client.models.list()``."""
        from .resources.models import Models

        return Models(self._pipeline)

    @cached_property
    def embeddings(self) -> Embeddings:
        """Embeddings: ``await client.embeddings.create(model=..., input=...)``."""
        from .resources.embeddings import Embeddings

        return Embeddings(self._pipeline)

    @cached_property
    def images(self) -> Images:
        """Image generation: ``await client.images.generate(model=..., prompt=...)``."""
        from .resources.images import Images

        return Images(self._pipeline)

    # -- options ------------------------------------------------------------------------

    @property
    def hooks(self) -> tuple[Hooks, ...]:
        """The hooks of this client (shared with its ``with_options`` clients)."""
        hooks = self._transport.hooks
        if hooks is None:
            return ()
        gate = self._transport.spend
        return tuple(hook for hook in hooks.hooks if hook is not gate)

    @property
    def spend(self) -> SpendSnapshot | None:
        """Spent, reserved and left of the client's spend limit (``None`` without one); of a
        ``with_options`` client, the limit given to it, else its parent's."""
        limits = self._pipeline.spend_limits
        return limits[-1].spend if limits else None

    @property
    def connections_in_use(self) -> int:
        """Connections of the pool in use right now (streams hold theirs until they end)."""
        return self._transport.connections_in_use

    @property
    def connections_checked_out(self) -> int:
        """Connections aiohttp's pool has handed out and not yet taken back (0 before the first
        request and whenever nothing is in flight).

        :attr:`connections_in_use` counts this client's own slots; this counts the connector's
        side, so a response or stream that was never released shows here even if the slot
        was freed. With a borrowed ``session=`` it is that session's count, other users of
        the session included. :func:`routmy_async.testing.assert_no_open_connections` checks
        both in a test.
        """
        return self._transport.acquired_connections()

    def redact(self, text: str) -> str:
        """``text`` with every secret this client knows (the API key, the credentials of
        ``proxy=`` or of the environment's ``*_PROXY``, a key in ``default_headers``) replaced
        by ``[REDACTED]``.

        The SDK's own exceptions and log lines are already redacted; this is for text your
        code builds, such as an error message from a tool or a parser that saw a request,
        before it is logged or stored.

        :raises TypeError: ``text`` is not a string (an exception: pass ``str(error)``).
        """
        if not isinstance(text, str):
            # Else bytes or an exception fail deep inside with a riddle, or, on a client that
            # holds no secret yet, come back as they were, as if they had been cleaned.
            raise TypeError(f"redact() takes a str, not {type(text).__name__}")
        return self._transport.redactor.text(text)

    @property
    def rate_limit(self) -> RateLimit:
        """The budget every request of this client (and its ``with_options`` clients) shares."""
        return self._transport.rate_limit

    @property
    def api_key_set(self) -> bool:
        """Whether a key is configured (the key itself is never exposed)."""
        return self._pipeline.api_key is not None

    def with_options(
        self,
        *,
        api_key: str | NotGiven = NOT_GIVEN,
        timeout: float | Timeout | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | NotGiven = NOT_GIVEN,
        default_query: Mapping[str, str] | NotGiven = NOT_GIVEN,
        spend_limit: SpendLimit | None = None,
    ) -> AsyncRoutmy:
        """Return a client with other settings that shares this client's connection pool.

        ``api_key`` gives the new client its own key (one pool, a key per tenant); the key is
        redacted like the first. Headers and query parameters given here are added to this
        client's. The new client
        does not own the pool: closing it leaves the pool to this one. It keeps the pool
        alive for as long as it is referenced, even when this client is a temporary
        (``AsyncRoutmy().with_options(...)``): the pool then closes with the last client
        that uses it.

        ``spend_limit`` gives the new client a :class:`SpendLimit` of its own: its attempts
        reserve in it and in this client's (a job's budget inside a team's, say).
        """
        self._check_open()
        # Every value is checked before the clone exists: a half-made clone collected
        # after a bad argument must never touch the shared pool.
        changes: dict[str, Any] = {}
        settings = self._pipeline
        if not isinstance(api_key, NotGiven):
            changes["api_key"] = _check_key(api_key)
        if not isinstance(timeout, NotGiven):
            changes["timeout"] = coerce_timeout(timeout)
        if not isinstance(max_retries, NotGiven):
            check_count("max_retries", max_retries, 0)
            changes["max_retries"] = max_retries
        if not isinstance(default_headers, NotGiven):
            changes["default_headers"] = {
                **settings.default_headers,
                **check_headers(default_headers, name="default_headers"),
            }
        if not isinstance(default_query, NotGiven):
            changes["default_query"] = {
                **settings.default_query,
                **check_headers(default_query, name="default_query"),
            }
        _check_spend_limit(spend_limit)
        clone = object.__new__(AsyncRoutmy)
        # cached_property resources are bound to their client: leave them to be rebuilt.
        clone.__dict__.update({k: v for k, v in self.__dict__.items() if k not in _RESOURCE_NAMES})
        clone._pipeline = settings.derive(**changes)
        if spend_limit is not None:
            _limit_spend(clone._transport, clone._pipeline, spend_limit)
        clone._owns_transport = False
        clone._state = _State.UNOPENED
        clone._transport.attach()
        return clone

    def copy(self, **options: Any) -> AsyncRoutmy:
        """The same as :meth:`with_options` (openai-python's name)."""
        return self.with_options(**options)

    def __copy__(self) -> AsyncRoutmy:
        # A plain copy must be a client of its own standing (attached to the pool), or
        # collecting it would close the pool under the original.
        return self.with_options()

    def __deepcopy__(self, memo: dict[int, Any]) -> AsyncRoutmy:
        return self.with_options()

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """Whether ``close()`` has been called (on this client or the one owning its pool)."""
        return self._state is _State.CLOSED or self._transport.closed

    def _check_open(self) -> None:
        if self._state is _State.CLOSED or self._transport.closed:
            raise RuntimeError(
                "this AsyncRoutmy client is closed; create a new one to send more requests"
            )

    async def __aenter__(self) -> AsyncRoutmy:
        if self._state is _State.OPENED:
            raise RuntimeError("this AsyncRoutmy client is already open (entered twice)")
        self._check_open()
        self._state = _State.OPENED
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client and, if it owns it, its connection pool. Safe to call twice.

        A client made by ``with_options`` closes the pool only when it is the last client of
        a pool whose owner is gone.
        """
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._pipeline.closed = True
        if self._transport.detach(owner=self._owns_transport) or self._owns_transport:
            await self._transport.close()

    def __del__(self, _warn: Any = warnings.warn) -> None:
        transport = getattr(self, "_transport", None)
        if transport is None or getattr(self, "_state", _State.CLOSED) is _State.CLOSED:
            return
        if not transport.detach(owner=self._owns_transport):
            return  # other clients still use the pool
        if transport.close_on_collect():
            _warn(
                f"unclosed {self!r}: use `async with AsyncRoutmy() as client:` or "
                "`await client.close()`",
                ResourceWarning,
                source=self,
                stacklevel=2,
            )

    def __repr__(self) -> str:
        key = "set" if self._pipeline.api_key is not None else "missing"
        return (
            f"AsyncRoutmy(base_url={self.base_url!r}, api_key=<{key}>, "
            f"max_retries={self.max_retries}, timeout={self.timeout!r})"
        )

    # -- raw requests: endpoints the SDK does not model yet -----------------------------

    @overload
    async def get(
        self,
        path: str,
        *,
        cast_to: None = None,
        stream: Literal[False] = False,
        **options: Unpack[RequestOptions],
    ) -> Any: ...
    @overload
    async def get(
        self,
        path: str,
        *,
        cast_to: type[T],
        stream: Literal[False] = False,
        **options: Unpack[RequestOptions],
    ) -> T: ...
    @overload
    async def get(
        self,
        path: str,
        *,
        cast_to: None = None,
        stream: Literal[True],
        **options: Unpack[RequestOptions],
    ) -> RawStream[ServerSentEvent]: ...
    @overload
    async def get(
        self,
        path: str,
        *,
        cast_to: type[T],
        stream: Literal[True],
        **options: Unpack[RequestOptions],
    ) -> RawStream[T]: ...
    @overload
    async def get(
        self,
        path: str,
        *,
        cast_to: type[T] | None = None,
        stream: bool,
        **options: Unpack[RequestOptions],
    ) -> Any: ...
    async def get(
        self,
        path: str,
        *,
        cast_to: type[T] | None = None,
        stream: bool = False,
        **options: Unpack[RequestOptions],
    ) -> Any:
        """``GET`` any path under the base URL, with the client's key, retries, timeouts,
        budget, hooks and typed errors; return the decoded JSON, or a ``cast_to`` type.

        ``client.get("/credits")``; ``extra_query=`` for query parameters. With
        ``stream=True``, an open :class:`RawStream` of an SSE endpoint (see
        :meth:`stream_request`).
        """
        return await self.request("GET", path, cast_to=cast_to, stream=stream, **options)

    @overload
    async def post(
        self,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: None = None,
        stream: Literal[False] = False,
        **options: Unpack[RequestOptions],
    ) -> Any: ...
    @overload
    async def post(
        self,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: type[T],
        stream: Literal[False] = False,
        **options: Unpack[RequestOptions],
    ) -> T: ...
    @overload
    async def post(
        self,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: None = None,
        stream: Literal[True],
        **options: Unpack[RequestOptions],
    ) -> RawStream[ServerSentEvent]: ...
    @overload
    async def post(
        self,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: type[T],
        stream: Literal[True],
        **options: Unpack[RequestOptions],
    ) -> RawStream[T]: ...
    @overload
    async def post(
        self,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: type[T] | None = None,
        stream: bool,
        **options: Unpack[RequestOptions],
    ) -> Any: ...
    async def post(
        self,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: type[T] | None = None,
        stream: bool = False,
        **options: Unpack[RequestOptions],
    ) -> Any:
        """``POST`` a JSON ``body`` to any path under the base URL (see :meth:`get`).

        ``stream=True`` returns an open :class:`RawStream` (as openai-python's
        ``post(..., stream=True)``): ``async with await client.post(path, body=...,
        stream=True) as events:``.
        """
        return await self.request(
            "POST", path, body=body, cast_to=cast_to, stream=stream, **options
        )

    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: None = None,
        stream: Literal[False] = False,
        **options: Unpack[RequestOptions],
    ) -> Any: ...
    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: type[T],
        stream: Literal[False] = False,
        **options: Unpack[RequestOptions],
    ) -> T: ...
    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: None = None,
        stream: Literal[True],
        **options: Unpack[RequestOptions],
    ) -> RawStream[ServerSentEvent]: ...
    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: type[T],
        stream: Literal[True],
        **options: Unpack[RequestOptions],
    ) -> RawStream[T]: ...
    @overload
    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: type[T] | None = None,
        stream: bool,
        **options: Unpack[RequestOptions],
    ) -> Any: ...
    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: type[T] | None = None,
        stream: bool = False,
        **options: Unpack[RequestOptions],
    ) -> Any:
        """Send ``method`` to ``path`` (under the base URL) and decode the JSON answer.

        :param cast_to: a msgspec Struct (or any type msgspec decodes) to decode into;
            plain JSON values without it (``None`` for an empty answer). With ``stream``, the
            type each event's data is decoded into.
        :param stream: return an open :class:`RawStream` of an SSE endpoint instead (see
            :meth:`stream_request`).
        :raises ValueError: ``path`` is not a path under the base URL (it must start with
            ``/``; a full URL to another host would carry the key there).
        :raises APIResponseValidationError: the answer does not decode into ``cast_to``
            (with ``stream``: the answer is not an event stream).
        """
        if not isinstance(stream, bool):
            raise TypeError(f"stream must be a bool, not {stream!r}")
        method, payload, opts = _check_raw(method, path, body, options)
        if stream:
            return await self._open_raw_stream(method, path, payload, opts, cast_to)
        spec: CallSpec[Any] = self._pipeline.prepare(
            "request", method, path, fields=payload, options=opts, decode=_decoder_for(cast_to)
        )
        return await self._pipeline.send(spec)

    @overload
    def stream_request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: None = None,
        **options: Unpack[RequestOptions],
    ) -> RawStreamManager[ServerSentEvent]: ...
    @overload
    def stream_request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: type[T],
        **options: Unpack[RequestOptions],
    ) -> RawStreamManager[T]: ...
    def stream_request(
        self,
        method: str,
        path: str,
        *,
        body: Mapping[str, Any] | None = None,
        cast_to: type[T] | None = None,
        **options: Unpack[RequestOptions],
    ) -> RawStreamManager[Any]:
        """Stream the SSE answer of any endpoint under the base URL, as an async context
        manager: ``async with client.stream_request("POST", "/path", body={...}) as events:``
        then ``async for event in events:``.

        Each event is a :class:`ServerSentEvent` (``event``, ``data``, ``id``, ``retry``,
        ``.json()``), or with ``cast_to`` the data of each ``message`` event decoded into that
        type. The request is checked now and sent on entering the block (with the client's
        key, retries before the stream opens, timeouts, budget and hooks); leaving the block
        releases the connection.

        :raises ValueError: ``path`` is not a path under the base URL.
        """
        method, payload, opts = _check_raw(method, path, body, options)
        from ._streaming._raw import RawStreamManager  # loaded by the first raw stream

        return RawStreamManager(lambda: self._open_raw_stream(method, path, payload, opts, cast_to))

    async def _open_raw_stream(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        options: Mapping[str, Any],
        cast_to: type[T] | None,
    ) -> RawStream[Any]:
        from ._streaming._raw import RawStream  # loaded by the first raw stream

        spec: CallSpec[Any] = self._pipeline.prepare(
            "request", method, path, fields=payload, options=options, stream=True
        )
        try:
            return await self._pipeline.open_stream(
                spec, lambda context: RawStream(context, cast_to=cast_to)
            )
        except APIResponseValidationError as error:
            if error.message.startswith("expected an event stream"):
                # Say what to do instead: this endpoint answers in one piece.
                error.message += (
                    f": {method} {path} does not answer with an event stream; call it "
                    "without stream=True (client.request) if it answers JSON"
                )
                error.args = (error.message,)
            raise


def _check_raw(
    method: object, path: object, body: object, options: Mapping[str, Any]
) -> tuple[str, dict[str, Any] | None, dict[str, Any]]:
    """Check a raw request before anything is sent: ``(METHOD, body fields, options)``."""
    if not isinstance(method, str) or not method.isalpha():
        raise ValueError(f"method must be an HTTP method such as 'GET', not {method!r}")
    if not isinstance(path, str) or not path.startswith("/") or path.startswith("//"):
        raise ValueError(f"path must start with '/' and is joined to the base URL, not {path!r}")
    segments = unquote(path.split("?", 1)[0]).replace("\\", "/").split("/")
    if ".." in segments or "." in segments:
        # A gateway base URL (https://gw/routmy/v1) must not become a way to send the key
        # to its other services.
        raise ValueError(f"path must stay under the base URL: no '.' or '..' segments in {path!r}")
    opts: dict[str, Any] = dict(options)
    extra_body = opts.pop("extra_body", None)
    unknown = set(opts) - _OPTION_NAMES
    if unknown:
        raise TypeError(f"unexpected arguments: {sorted(unknown)}")
    payload: dict[str, Any] | None = None
    if body is not None or extra_body is not None:
        if body is not None and not isinstance(body, Mapping):
            raise TypeError(f"body must be a dict, not {type(body).__name__}")
        payload = build_body(dict(body or {}), extra_body)
    return method.upper(), payload, opts


_decoders: dict[Any, Callable[[bytes], Any]] = {}


def _decoder_for(cast_to: Any) -> Callable[[bytes], Any]:
    """A cached decoder for ``cast_to`` (plain JSON values for ``None``); an empty answer
    is ``None``."""
    decode = _decoders.get(cast_to)
    if decode is None:
        if len(_decoders) >= 128:
            _decoders.clear()
        decode_json = msgspec.json.Decoder(cast_to if cast_to is not None else Any).decode

        def decode(data: bytes) -> Any:
            return decode_json(data) if data.strip() else None

        _decoders[cast_to] = decode
    return decode


def _log_from_environment() -> None:
    """``ROUTMY_LOG=debug|info`` switches the ``routmy_async`` logger on, with a handler (as
    ``OPENAI_LOG`` does); the key stays redacted in every line."""
    level = os.environ.get("ROUTMY_LOG", "").strip().lower()
    if level not in ("debug", "info"):
        return
    routmy_logger = logging.getLogger("routmy_async")
    routmy_logger.setLevel(logging.DEBUG if level == "debug" else logging.INFO)
    if not any(isinstance(h, logging.StreamHandler) for h in routmy_logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("[%(asctime)s %(name)s %(levelname)s] %(message)s"))
        routmy_logger.addHandler(handler)


logging.getLogger("routmy_async").addHandler(logging.NullHandler())
_log_from_environment()
