"""The only module that talks to aiohttp: the pool, sending, retries, timeouts, error mapping.

Every aiohttp, asyncio and OS exception is translated here into a ``RoutmyError`` subclass,
with ``raise ... from exc`` so the cause stays visible in tracebacks.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NoReturn

import aiohttp
import anyio
import msgspec
from yarl import URL

from .. import _hooks
from .._concurrency import attempt_lost
from .._config import Timeout
from .._exceptions import (
    APICertificateError,
    APIConnectionError,
    APIProxyError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    RoutmyError,
    answer_error,
    status_error,
)
from .._hooks import Call, HookSet
from . import _retry
from ._admission import Admission
from ._aiohttp_compat import (
    abort_tls_connections,
    acquired_count,
    close_connector_now,
    closes_tls_by_abort,
    needs_cleanup_closed_flag,
    wrap_protocol_factory,
)
from ._body_end import BodyEnds
from ._ratelimit import RateLimit, batch_limits_running, parse_rate_limit_headers
from ._redact import REDACTED, SECRET_HEADERS, Redactor
from ._tls import (
    MARKS_LOST_TLS_OPEN,
    ConnectSettings,
    VerifyTypes,
    certificate_reason,
    cleanup_closed_needed,
    close_transport_when_lost,
    known_proxy_secrets,
    proxy_secrets,
    session_proxy_supported,
)

if TYPE_CHECKING:
    from ._spend_gate import SpendGate

__all__ = [
    "TRANSPORT_ERRORS",
    "RawResponse",
    "Transport",
    "logger",
    "map_transport_error",
    "proxy_error",
]

logger = logging.getLogger("routmy_async")

_DEBUG = logging.DEBUG
_TIMEOUT_CACHE_SIZE = 64
# What one attempt ends with: (whole answer, open stream response, failure to retry after, the
# failure's headers); either an answer or a failure.
_Outcome = tuple[
    "RawResponse | None", "aiohttp.ClientResponse | None", "BaseException | None", Mapping[str, str]
]
_NO_HEADERS: Mapping[str, str] = {}


class RawResponse(msgspec.Struct, frozen=True, eq=False, gc=False):
    """A whole non-streamed answer: status, headers and body bytes (and the ``x-request-id``
    of the headers)."""

    status: int
    headers: Mapping[str, str]
    body: bytes
    request_id: str | None = None


def _shown_proxy(proxy: str | None) -> URL | None:
    """The proxy as an error may show it: its URL without the credentials."""
    return None if proxy is None else URL(proxy).with_user(None)


def _the_proxy(shown: URL | None) -> str:
    return f"the proxy {shown}" if shown is not None else "the HTTP proxy"


def proxy_error(
    status: int,
    reason: str | None,
    headers: Mapping[str, str] | None,
    *,
    proxy: str | None,
    method: str,
    url: str,
) -> APIProxyError:
    """The error for a proxy that refused a request (a ``CONNECT``, or a forwarded http one).

    It says that the proxy answered (not rout.my), names the proxy without its credentials,
    and says what to change: credentials for a 407, the proxy's policy for a 403.
    """
    shown = _shown_proxy(proxy)
    target = URL(url)
    where = f"{target.host}:{target.port}" if target.host else url
    reason = reason or ""
    said = f"{status} {reason}".strip()
    text = f"{method} {url}: {_the_proxy(shown)} refused the request with {said}"
    text += " (the proxy answered, not rout.my)"
    if status == 407:
        asked = (headers or {}).get("Proxy-Authenticate", "")
        has_credentials = proxy is not None and URL(proxy).user is not None
        if asked and "basic" not in asked.lower():
            scheme = asked.split()[0]
            text += (
                f". It asks for {scheme} authentication, which this client cannot do: ask for "
                "a proxy that takes Basic credentials, or pass your own aiohttp session= "
                "configured for it"
            )
        elif has_credentials:
            text += (
                ". It refused the credentials in the proxy URL: check the user and password "
                "(percent-encode characters such as '@', ':' or '/' in them)"
            )
        else:
            text += (
                ". It asks for credentials: put them in the proxy URL, "
                f"proxy='http://USER:PASSWORD@{shown.authority if shown else 'host:port'}'"
                " (or in the HTTPS_PROXY / HTTP_PROXY variable)"
            )
    elif status == 403:
        text += (
            f". Its policy does not allow {where}: ask its administrator to allow it, or "
            f"add the host to NO_PROXY if it can be reached without the proxy"
        )
    elif status in (502, 503, 504):
        text += f": it could not reach {where}"
    return APIProxyError(
        text,
        method=method,
        url=url,
        proxy=None if shown is None else str(shown),
        status_code=status,
        reason=reason,
    )


def map_transport_error(
    exc: BaseException,
    *,
    method: str,
    url: str,
    phase: str = "request",
    proxy: str | None = None,
) -> APIConnectionError:
    """Translate an aiohttp/asyncio/OS failure into ``APITimeoutError``/``APIConnectionError``.

    :param proxy: the proxy the request went through, if any (named in a proxy's refusal).
    """
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        # The proxy answered the CONNECT with something else than 200: say it was the proxy.
        return proxy_error(
            exc.status, exc.message, exc.headers, proxy=proxy, method=method, url=url
        )
    if isinstance(exc, aiohttp.ClientProxyConnectionError):
        return APIConnectionError(
            f"{method} {url}: could not connect to {_the_proxy(_shown_proxy(proxy))} "
            f"({exc.os_error or exc})",
            method=method,
            url=url,
        )
    if isinstance(exc, asyncio.TimeoutError):
        return _timeout_error(exc, method=method, url=url, phase=phase)
    if isinstance(exc, (aiohttp.ClientConnectorCertificateError, ssl.SSLCertVerificationError)):
        return _certificate_error(exc, method=method, url=url)
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return APIConnectionError(
            f"{method} {url}: could not resolve the host ({exc.os_error or exc})",
            method=method,
            url=url,
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        return APIConnectionError(
            f"{method} {url}: could not connect ({exc.os_error or exc})", method=method, url=url
        )
    kind = type(exc).__name__
    detail = str(exc) or kind
    return APIConnectionError(
        f"{method} {url}: connection failed during the {phase} ({kind}: {detail})",
        method=method,
        url=url,
    )


def _timeout_error(exc: BaseException, *, method: str, url: str, phase: str) -> APITimeoutError:
    # Say which limit ran out: aiohttp raises a type per limit, a bare TimeoutError for the
    # total.
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        which = "the connect timeout ran out"
    elif isinstance(exc, aiohttp.SocketTimeoutError):
        which = "no data arrived within the read timeout"
    elif isinstance(exc, aiohttp.ServerTimeoutError):
        which = str(exc) or "a server timeout ran out"
    else:
        which = "the total timeout ran out"
    return APITimeoutError(f"{method} {url}: {phase} timed out: {which}", method=method, url=url)


def _certificate_error(exc: BaseException, *, method: str, url: str) -> APICertificateError:
    # Say whose certificate and why, and the one fix most users need (a CA bundle): the raw
    # ssl text ("unable to get local issuer certificate") tells neither.
    cause: BaseException | None
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cause, host, port = exc.certificate_error, exc.host, exc.port
    else:
        cause, host, port = exc, URL(url).host or url, URL(url).port
    reason = certificate_reason(
        getattr(cause, "verify_code", None), getattr(cause, "verify_message", None), host
    )
    return APICertificateError(
        f"{method} {url}: the TLS certificate of {host}:{port} was refused: {reason}. If a "
        "private or corporate CA (or a TLS-inspecting proxy) signs it, trust that CA with "
        "AsyncRoutmy(verify='/path/to/ca-bundle.pem') or the SSL_CERT_FILE variable",
        method=method,
        url=url,
        host=host,
        reason=reason,
    )


TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


class Transport(Admission):
    """Owns (or borrows) one pooled ``aiohttp.ClientSession`` and sends requests through it.

    The session is created on first use, inside the running loop, because aiohttp binds it to
    the loop it is created in. Clients made with ``with_options`` share one ``Transport``.
    """

    def __init__(
        self,
        *,
        max_connections: int,
        session: aiohttp.ClientSession | None,
        verify: VerifyTypes,
        secret: str | None,
        rate_limit: RateLimit | None = None,
        cert: tuple[str, str | None] | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
        target: str = "https://",
    ):
        super().__init__(max_connections=max_connections, rate_limit=rate_limit)
        #: The client's hooks (shared by ``with_options`` clients), or None: no cost at all.
        self.hooks: HookSet | None = None
        self.spend: SpendGate | None = None  #: the spend limit, also the first hook
        self._combined: tuple[HookSet, HookSet] | None = None
        # Open streams' answers, so that close() can fail their readers (weakly held: a
        # dropped stream must not be kept alive by its pool).
        self._responses: weakref.WeakSet[aiohttp.ClientResponse] = weakref.WeakSet()
        # Whole answers whose body is being read right now (close() fails those reads too).
        self._reading: set[aiohttp.ClientResponse] = set()
        #: Streams whose answer is whole hand their response here until its body ends.
        self.body_ends = BodyEnds()
        self._session = session
        self._owns_session = session is None
        # TLS and proxy settings, resolved when the pool is made (never here, never per request).
        self._connect = ConnectSettings(
            verify=verify, cert=cert, proxy=proxy, trust_env=trust_env, target=target
        )
        self.redactor = Redactor(secret)
        #: The proxy requests go through (its URL, credentials included: never shown), once
        #: the pool is made; ``None`` without one.
        self.proxy: str | None = None
        for credential in known_proxy_secrets(proxy, trust_env=trust_env):
            self.redactor.add(credential)
        # Clients using this pool, and whether the client that created it is still one of
        # them: the pool outlives a collected owner while derived clients use it.
        self._clients = 0
        self._owner_alive = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client_timeouts: dict[tuple[Timeout, bool], aiohttp.ClientTimeout] = {}
        # The last Timeout each kind of request used, with its aiohttp form: calls with the
        # client's own timeout find it by identity, without hashing the Timeout.
        self._last_whole: tuple[Timeout | None, aiohttp.ClientTimeout | None] = (None, None)
        self._last_stream: tuple[Timeout | None, aiohttp.ClientTimeout | None] = (None, None)

    @property
    def session(self) -> aiohttp.ClientSession:
        """The pooled session, created on first use, with the client's one SSL context and
        its proxy (both resolved here, once).

        :raises RoutmyError: a CA bundle or client certificate cannot be loaded, or a proxy
            applies and the installed aiohttp cannot use one for a whole session.
        """
        session = self._session
        if session is None:
            settings = self._connect
            # Before anything is made: a bundle that fails to load leaves no half-made pool.
            tls = settings.is_tls
            ssl_setting = settings.ssl_context() if tls else True
            extra: dict[str, Any] = {}
            proxy = settings.proxy_url()
            if proxy is not None:
                if not session_proxy_supported(aiohttp.__version__):
                    explicit = settings.proxy is not None
                    raise RoutmyError(
                        f"{'proxy=' if explicit else 'a *_PROXY environment variable'} needs "
                        f"aiohttp 3.11 or later (installed: {aiohttp.__version__}): upgrade "
                        + ("aiohttp" if explicit else "it, or pass trust_env=False to ignore it")
                    )
                for credential in proxy_secrets(proxy):
                    self.redactor.add(credential)
                extra["proxy"] = proxy
                self.proxy = proxy
            self._loop = asyncio.get_running_loop()
            self._counts_slots = True
            connector = aiohttp.TCPConnector(
                limit=0,  # the slots above are the limit
                limit_per_host=0,
                ssl=ssl_setting,
                # Aborted TLS connections must really close their sockets: see _tls.
                enable_cleanup_closed=tls and cleanup_closed_needed(needs_cleanup_closed_flag()),
            )
            if tls and MARKS_LOST_TLS_OPEN:  # pragma: no cover - Python < 3.11
                # Connections the server ends must not warn as unclosed when collected.
                wrap_protocol_factory(connector, close_transport_when_lost)
            session = self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                raise_for_status=False,
                # The proxy is looked up above, once: aiohttp's trust_env would look it up on
                # every request (in a thread) and also read ~/.netrc into auth we never want.
                trust_env=False,
                **extra,
            )
        return session

    @property
    def has_session(self) -> bool:
        return self._session is not None

    def acquired_connections(self) -> int:
        """How many pooled connections are checked out right now (0 when idle)."""
        session = self._session
        return 0 if session is None else acquired_count(session.connector)

    def attach(self) -> None:
        """Count one more client using this pool."""
        self._clients += 1

    def detach(self, *, owner: bool) -> bool:
        """Count one client fewer; return whether the pool is now unused (owner gone too)."""
        self._clients -= 1
        if owner:
            self._owner_alive = False
        return self._clients <= 0 and not self._owner_alive

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        # Whole answers whose body has not ended: nobody reads them, nothing to fail.
        self.body_ends.drop_all()
        # Closing the pool alone would leave a reader waiting for bytes that never come
        # (aiohttp drops the payload without waking it): fail every open answer first, and
        # wake the requests waiting for a connection, so each raises "client was closed".
        for response in [*self._responses, *self._reading]:
            if not response.closed:
                response.content.set_exception(self._closed_error(response.method, response.url))
                response.close()  # nothing of it is left for the collector to warn about
        waiters, self._slot_waiters = self._slot_waiters, deque()
        for waiter in waiters:
            if not waiter.done():
                # Each is handed a slot, as free_slot() would: it wakes, sees the client
                # closed and gives the slot back (or, cancelled meanwhile, passes it on).
                self.connections_in_use += 1
                waiter.set_result(None)
        if self._closing is not None:
            self._closing.set()  # and those waiting for their turn in the budget
        session = self._session
        if session is not None and self._owns_session:
            connector = session.connector
            if connector is not None and not closes_tls_by_abort(connector):
                # aiohttp before 3.12 closes TLS connections politely and never waits: a server
                # that does not answer the close_notify keeps each socket open (for good on
                # Python 3.10). Abort them, as later aiohttp does.
                abort_tls_connections(connector)
            # Shielded: a cancelled close must still release every socket.
            with anyio.CancelScope(shield=True):
                await session.close()

    def close_on_collect(self) -> bool:
        """Release sockets synchronously when the owner is garbage-collected unclosed.

        Returns whether there was anything open. Never schedules work on a closed loop.
        """
        if self.closed:
            return False
        self.closed = True
        self.body_ends.drop_all()  # no timer left to fire on a collected pool
        session = self._session
        if session is None or not self._owns_session or session.closed:
            return False
        connector = session.connector
        session.detach()
        if connector is not None:
            # Nobody will wait for a TLS shutdown of a collected client: its TLS connections
            # are aborted, so their sockets close now (aiohttp 3.12+).
            close_connector_now(connector)
        return True

    def client_timeout(self, timeout: Timeout, stream: bool) -> aiohttp.ClientTimeout:
        key = (timeout, stream)
        value = self._client_timeouts.get(key)
        if value is None:
            if len(self._client_timeouts) >= _TIMEOUT_CACHE_SIZE:
                # Callers passing a new float each time must not grow the cache forever.
                self._client_timeouts.clear()
            read = timeout.read
            if stream and timeout.idle is not None:
                read = timeout.idle if read is None else min(read, timeout.idle)
            value = self._client_timeouts[key] = aiohttp.ClientTimeout(
                total=timeout.total, sock_connect=timeout.connect, sock_read=read
            )
        return value

    def _fail(self, exc: BaseException, method: str, url: URL, phase: str) -> NoReturn:
        raise map_transport_error(
            exc, method=method, url=str(url), phase=phase, proxy=self.proxy
        ) from exc

    async def request(
        self,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        params: Mapping[str, str] | None,
        timeout: Timeout,  # noqa: ASYNC109 - handed to aiohttp, which enforces it per phase
        max_retries: int,
        stream: bool = False,
        tokens: int = 0,
        call: Call | None = None,
    ) -> tuple[RawResponse | None, aiohttp.ClientResponse | None]:
        """Send with retries. Returns the whole answer, or the open response when ``stream``.

        This is the retry loop: each attempt (:meth:`_attempt`) ends the request or hands
        back the failure to retry after; between two come the delay, ``on_retry``, the sleep.

        :param call: the operation, when hooks observe it (see ``_hooks``).
        :raises APIStatusError: a non-2xx answer once retries are spent (or not allowed).
        :raises APIConnectionError: the connection failed once retries are spent.
        """
        hooks = call.hooks if call is not None else None
        # The estimate the budget holds for this request: 0 once it is given back unspent.
        reserved = [tokens]
        try:
            if self.closed:
                raise RuntimeError(
                    "the client is closed: create a new AsyncRoutmy to send requests"
                )
            session = self.session
            if self._loop is not None and asyncio.get_running_loop() is not self._loop:
                # aiohttp binds a pool to the loop that created it; using it from another
                # loop fails deep inside asyncio with errors that do not say why.
                raise RuntimeError(
                    "this client's connection pool belongs to another event loop (a client "
                    "was used across asyncio.run() calls or test loops): create the client "
                    "inside the loop that uses it"
                )
            last_timeout, client_timeout = self._last_stream if stream else self._last_whole
            if last_timeout is not timeout or client_timeout is None:
                client_timeout = self._remember_timeout(timeout, stream)
            attempt = 0
            while True:
                raw, response, failure, retry_headers = await self._attempt(
                    session,
                    method,
                    url,
                    headers=headers,
                    body=body,
                    params=params,
                    timeout=timeout,
                    client_timeout=client_timeout,
                    stream=stream,
                    reserved=reserved,
                    attempt=attempt,
                    last=attempt >= max_retries,
                    call=call if hooks is not None else None,
                    hooks=hooks,
                )
                if failure is None:
                    return raw, response
                attempt += 1
                await self._before_retry(
                    failure, attempt - 1, retry_headers, hooks, call, method, url
                )
        except BaseException as error:
            if isinstance(error, RoutmyError):
                # The one place a request's errors leave the transport: no key goes with them.
                self.redactor.scrub(error)
            if reserved[0]:
                self.settle_tokens(tokens, 0)  # nothing was generated: give the estimate back
            if call is not None:
                call.failed(error)
            raise

    def _remember_timeout(self, timeout: Timeout, stream: bool) -> aiohttp.ClientTimeout:
        """The aiohttp form of ``timeout``, kept as the last one of its kind: calls with the
        client's own timeout then find it by identity, without hashing the Timeout."""
        client_timeout = self.client_timeout(timeout, stream)
        if stream:
            self._last_stream = (timeout, client_timeout)
        else:
            self._last_whole = (timeout, client_timeout)
        return client_timeout

    async def _before_retry(
        self,
        failure: BaseException,
        attempt: int,
        retry_headers: Mapping[str, str],
        hooks: HookSet | None,
        call: Call | None,
        method: str,
        url: URL,
    ) -> None:
        """Between a failed attempt and its retry: the delay, told to the hooks and slept,
        and, when an adaptive level admitted the request (``concurrency="auto"``), the
        failure told to it: a 429 whose retry succeeds is a loss signal all the same, and the
        retry then waits (after the delay) for the level to admit it again."""
        delay = _retry.retry_delay(attempt, retry_headers, now=time.time())
        if hooks is not None:
            self._tell_retry(hooks, call, failure, attempt, delay, method, url)
        lost = attempt_lost.get()
        readmit = None if lost is None else lost(failure)
        await anyio.sleep(delay)
        if readmit is not None:
            await readmit()

    def _tell_retry(
        self,
        hooks: HookSet,
        call: Call | None,
        failure: BaseException,
        attempt: int,
        delay: float,
        method: str,
        url: URL,
    ) -> None:
        """``on_retry``: the failure as ours (a transport error mapped), without the key."""
        if not isinstance(failure, RoutmyError):
            failure = map_transport_error(failure, method=method, url=str(url), proxy=self.proxy)
        self.redactor.scrub(failure)  # hooks never see the key either
        reason = (
            f"status {failure.status_code}"
            if isinstance(failure, APIStatusError)
            else type(failure).__name__
        )
        hooks.emit("on_retry", call, attempt=attempt, reason=reason, wait=delay, error=failure)

    def active_hooks(self) -> HookSet | None:
        """The hooks to run: this client's, then the global ones (``instrument()``)."""
        mine = self.hooks
        if mine is not None and not mine:
            mine = None  # hooks that override nothing: no Call, no events
        everyone = _hooks.global_hooks()
        if everyone is None:
            return mine
        if mine is None:
            return everyone
        if self._combined is None or self._combined[0] is not everyone:
            self._combined = (everyone, mine + everyone)
        return self._combined[1]

    def safe_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        """Request headers as hooks may see them: credentials redacted."""
        return {
            name: REDACTED if name.lower() in SECRET_HEADERS else self.redactor.text(value)
            for name, value in headers.items()
        }

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: URL,
        *,
        headers: Mapping[str, str],
        body: bytes | None,
        params: Mapping[str, str] | None,
        timeout: Timeout,  # noqa: ASYNC109 - its pool part bounds the wait for a slot
        client_timeout: aiohttp.ClientTimeout,
        stream: bool,
        reserved: list[int],
        attempt: int,
        last: bool,
        call: Call | None,
        hooks: HookSet | None,
    ) -> _Outcome:
        """One attempt: a turn in the budget and a slot, the request, its answer classified.

        Returns ``(whole answer, open stream response, None, {})`` for an answer, or
        ``(None, None, failure, headers)`` for a failure worth another attempt (the headers
        may say when); raises the failure when it is not, or when this attempt is the
        ``last``. Every attempt, retries included, takes its turn in the budget, then a slot,
        then (with a spend limit) its reservation, just before it is sent.
        """
        release: Callable[[], None] | None
        if (
            self.rate_limit.quiet
            and not batch_limits_running.count
            and self.connections_in_use < self._max_connections
            and self._counts_slots
        ):
            # No budget applies and the pool has room: the slot is a count's step.
            self.connections_in_use += 1
            release = self.free_slot
        else:
            try:
                release = await self._begin(timeout, method, url, reserved[0] if not attempt else 0)
            except BaseException:
                if not attempt:
                    reserved[0] = 0  # given back to the budget while it waited (or never held)
                raise
        if self.closed:
            if release is not None:
                release()
            raise self._closed_error(method, url)
        started = time.monotonic()
        if hooks is not None and hooks.wants("on_request"):  # a spend limit's gate wants it
            release = await self._tell_request(
                hooks, call, attempt, method, url, headers, release, timeout
            )
        try:
            response = await session.request(
                method,
                url,
                headers=headers,
                data=body,
                params=params,
                timeout=client_timeout,
                allow_redirects=False,
                # A borrowed session made with raise_for_status=True must not turn a 401
                # into a ClientResponseError (retried as a connection error).
                raise_for_status=False,
            )
        except BaseException as exc:
            if release is not None:
                release()
            return self._unanswered(exc, method, url, attempt, last, started)
        # The slot is free again when the connection goes back to aiohttp. A whole answer's
        # body is read right here, so it is freed right here.
        free = release
        if stream:
            free = None
            self._hold_for_stream(response, release)
        status = response.status
        if "x-ratelimit-remaining-requests" in response.headers:
            self._learn_limits(response.headers)
        if hooks is not None:
            hooks.emit(
                "on_response",
                call,
                attempt=attempt,
                status=status,
                headers=response.headers,
                elapsed=time.monotonic() - started,
            )
        if not 200 <= status < 300:
            try:
                error = await self._status_error(response)
            finally:
                if free is not None:
                    free()
            return self._refused(error, response, method, url, attempt, last, started)
        if stream and "json" not in response.headers.get("Content-Type", ""):
            if logger.isEnabledFor(_DEBUG):
                self._log(method, url, status, attempt, started, "stream open")
            return None, response, None, _NO_HEADERS
        reading = self._reading
        reading.add(response)
        try:
            data = await response.read()
        except BaseException as exc:
            reading.discard(response)
            response.close()
            if free is not None:
                free()
            return self._cut_off(exc, method, url, status, attempt, last, started)
        reading.discard(response)
        response.release()
        if free is not None:
            free()
        # A router may answer 200 with only an error object: an error all the same (a byte
        # search keeps the common answer free of work; a large one is searched at its two
        # ends).
        if (
            b'"error"' in data
            if len(data) <= 8192
            else b'"error"' in data[:4096] or b'"error"' in data[-4096:]
        ):
            body_error = answer_error(status, data, response.headers)
            if body_error is not None:
                return self._refused(body_error, response, method, url, attempt, last, started)
        if logger.isEnabledFor(_DEBUG):
            self._log(method, url, status, attempt, started, "")
        if stream:
            # A JSON answer where an event stream was asked for.
            raise APIResponseValidationError(
                "expected an event stream, got Content-Type "
                f"{response.headers.get('Content-Type')!r}",
                body=data,
                status_code=status,
                request_id=response.headers.get("x-request-id"),
            )
        headers = response.headers
        answer = RawResponse(status, headers, data, headers.get("x-request-id"))
        return answer, None, None, _NO_HEADERS

    async def _admit_spend(
        self,
        call: Call | None,
        attempt: int,
        release: Callable[[], None] | None,
        timeout: Timeout,  # noqa: ASYNC109 - its pool part bounds the wait for a slot again
        method: str,
        url: URL,
    ) -> Callable[[], None] | None:
        """The spend limit's reservation for this attempt, after its turn and its slot and
        before anything is sent; returns the slot's release (a slot given up while the
        models list was read is taken again).

        :raises SpendLimitError: the attempt does not fit the limit, or cannot be priced
            (its slot freed).
        """
        gate = self.spend
        assert gate is not None and call is not None  # a spend limit makes every call a Call
        try:
            if gate.needs_models(call):
                # The models list is read through this pool: the slot must not wait on it.
                if release is not None:
                    release()
                release = None
                await gate.load_models(call)
                release = await self._take_slot(timeout, method, url)
            if gate.needs_room(call):
                await gate.make_room(call)  # a cluster's share: no await after it, to admit
            gate.admit(call, attempt)
        except BaseException:
            if release is not None:
                release()
            raise
        return release

    async def _tell_request(
        self,
        hooks: HookSet,
        call: Call | None,
        attempt: int,
        method: str,
        url: URL,
        headers: Mapping[str, str],
        release: Callable[[], None] | None,
        timeout: Timeout,  # noqa: ASYNC109 - its pool part bounds the wait for a slot again
    ) -> Callable[[], None] | None:
        """``on_request``, with the request's headers as hooks may see them; first the spend
        limit's reservation, which may refuse the attempt. Returns the slot's release."""
        if self.spend is not None:
            release = await self._admit_spend(call, attempt, release, timeout, method, url)
        hooks.emit(
            "on_request",
            call,
            attempt=attempt,
            method=method,
            url=str(url),
            headers=self.safe_headers(headers),
        )
        return release

    def _hold_for_stream(
        self, response: aiohttp.ClientResponse, release: Callable[[], None] | None
    ) -> None:
        """A stream's connection may go back by any path (read to its end, closed,
        collected), so aiohttp tells us when, and its slot is freed then; close() fails its
        reader meanwhile."""
        self._responses.add(response)
        if release is not None:
            connection = response.connection
            if connection is None:
                release()
            else:
                connection.add_callback(release)

    def _cut_off(
        self,
        exc: BaseException,
        method: str,
        url: URL,
        status: int,
        attempt: int,
        last: bool,
        started: float,
    ) -> _Outcome:
        """A whole answer's body was cut off: the failure to retry after, or raised."""
        if not isinstance(exc, TRANSPORT_ERRORS):
            raise exc
        if last:
            self._fail(exc, method, url, "body read")
        self._log(method, url, status, attempt, started, "body cut off")
        return None, None, exc, _NO_HEADERS

    def _unanswered(
        self,
        exc: BaseException,
        method: str,
        url: URL,
        attempt: int,
        last: bool,
        started: float,
    ) -> _Outcome:
        """No answer came: the failure to retry after, or raised as ours."""
        if self.closed and isinstance(exc, Exception):
            # close() pulled the pool from under the request: whatever aiohttp raised for
            # that (a transport error, a RuntimeError, an AttributeError on the connector it
            # dropped, as aiohttp 3.10 does), the caller hears why.
            raise self._closed_error(method, url) from exc
        if not isinstance(exc, TRANSPORT_ERRORS):
            raise exc
        # A certificate, or a proxy's 407 or 403, does not get better by asking again.
        if last or not _retryable(exc):
            self._log(method, url, None, attempt, started, repr(exc))
            self._fail(exc, method, url, "connect" if _is_connect(exc) else "request")
        self._log(method, url, None, attempt, started, f"retrying after {exc!r}")
        return None, None, exc, _NO_HEADERS

    def _refused(
        self,
        error: APIStatusError,
        response: aiohttp.ClientResponse,
        method: str,
        url: URL,
        attempt: int,
        last: bool,
        started: float,
    ) -> _Outcome:
        """An error answer (a status, or a 2xx error body): the failure to retry after, or
        raised."""
        status = response.status
        if status == 407 and self.proxy is not None:
            # The proxy of a plain-http request wants (other) credentials.
            self._log(method, url, status, attempt, started, "proxy refused")
            raise proxy_error(
                status,
                response.reason,
                response.headers,
                proxy=self.proxy,
                method=method,
                url=str(url),
            ) from error
        self._log(method, url, status, attempt, started, error.message)
        if error.status_code == 429:
            self._pause_for(error.headers, attempt)
        headers = response.headers
        if (
            last
            or not _retry.should_retry_status(error.status_code, headers)
            or _retry.retry_after_too_long(headers, now=time.time())
        ):
            raise error
        return None, None, error, headers

    def _learn_limits(self, headers: Mapping[str, str]) -> None:
        """The server says the request quota is spent until a reset: hold new starts until
        then instead of running into 429s (waits longer than we sleep silently excepted)."""
        limits = parse_rate_limit_headers(headers)
        reset = limits.reset_requests
        if limits.remaining_requests == 0 and reset and reset <= _retry.MAX_RETRY_AFTER:
            self.rate_limit.pause(reset)

    def _pause_for(self, headers: Mapping[str, str], attempt: int) -> None:
        """A 429: the quota is shared, so hold every new start of the client, not just this
        request's retry (whether or not it is retried). A wait longer than we would sleep
        silently pauses nobody: each request then gets its error at once."""
        asked = _retry.retry_after_seconds(headers, now=time.time())
        if asked is None:
            self.rate_limit.pause(_retry.backoff_delay(attempt))
        elif asked <= _retry.MAX_RETRY_AFTER:
            self.rate_limit.pause(asked)

    async def _status_error(self, response: aiohttp.ClientResponse) -> APIStatusError:
        reading = self._reading
        reading.add(response)  # close() fails this read too
        try:
            data = await response.read()
        except BaseException as exc:
            reading.discard(response)
            response.close()
            if not isinstance(exc, TRANSPORT_ERRORS):
                raise
            data = b""
        else:
            reading.discard(response)
            response.release()
        return status_error(response.status, data, response.headers, reason=response.reason)

    def _log(
        self,
        method: str,
        url: URL,
        status: int | None,
        attempt: int,
        started: float,
        note: str,
    ) -> None:
        if logger.isEnabledFor(_DEBUG):
            logger.debug(
                "%s %s -> %s (attempt %d, %.1f ms) %s",
                method,
                url.path,
                status if status is not None else "no response",
                attempt + 1,
                (time.monotonic() - started) * 1000.0,
                self.redactor.text(note),
            )


def _retryable(exc: BaseException) -> bool:
    """Whether a failure to get an answer is worth another attempt."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return False
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        # The proxy's own status says it: a 502 may pass, a 407 or a 403 will not.
        return _retry.should_retry_status(exc.status, exc.headers or {})
    return True


def _is_connect(exc: BaseException) -> bool:
    return isinstance(exc, (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError))
