"""One call, for every endpoint: a resource says what to send and how to read the answer;
the :class:`Pipeline` runs the rest of the call's life, the same way for all of them.

1. :meth:`Pipeline.prepare`: the body encoded and the token estimate made (only when a
   tokens-per-minute budget will use it), into a :class:`CallSpec`; no I/O, so a
   ``stream()`` manager or a batch's dry run can make one long before it is sent.
2. The per-call options resolved once (headers with the key, query, ``Timeout``, retries):
   :meth:`Pipeline.build_request` stops there, still without I/O.
3. The hooks' :class:`Call` (none, and no work at all, without hooks).
4. The transport: a turn in the budget, a pool slot, the request and its retries.
5. A whole answer decoded (:meth:`Pipeline.send`), or a stream opened
   (:meth:`Pipeline.open_stream`), which settles and reports its own end.
6. The token estimate settled with the answer's usage, the finalizer (structured output),
   then ``on_success``; a failure at any step after 3 reports ``on_error`` (once).

The plain call is two coroutines deep above the transport (the resource method and
:meth:`Pipeline.send`), with no object made that it does not use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from urllib.parse import urlsplit

import msgspec
from yarl import URL

from . import _hooks
from ._checks import check_count
from ._config import Timeout, check_headers, coerce_timeout
from ._exceptions import APIResponseValidationError, APIStatusError, RoutmyError
from ._hooks import Call
from ._http._ratelimit import batch_limits_running
from ._http._redact import REDACTED, SECRET_HEADERS
from ._streaming._context import StreamContext
from .types._base import TopLevelResponse, attach_answer

if TYPE_CHECKING:
    from ._http._transport import RawResponse, Transport
    from ._spend import SpendLimit

__all__ = ["CallSpec", "Pipeline", "Request", "Undecodable"]

T = TypeVar("T")


def _unencodable(value: Any) -> Any:
    raise TypeError(f"a value of type {type(value).__name__} cannot be sent as JSON")


_encode = msgspec.json.Encoder(enc_hook=_unencodable).encode


def encode_body(body: Mapping[str, Any]) -> bytes:
    """Encode a request body with msgspec.

    :raises TypeError: a field holds a value JSON cannot carry; the message names the field.
    """
    try:
        return _encode(body)
    except (TypeError, msgspec.EncodeError, OverflowError) as exc:
        for name, value in body.items():
            try:
                _encode(value)
            except (TypeError, msgspec.EncodeError, OverflowError):
                raise TypeError(
                    f"request field {name!r} cannot be encoded as JSON: {exc}"
                ) from None
        raise TypeError(f"the request body cannot be encoded as JSON: {exc}") from None


S = TypeVar("S")

_URL_CACHE_SIZE = 256
_NO_OPTIONS: Mapping[str, Any] = {}


class Undecodable(Exception):
    """Raised by a decoder: the 2xx answer does not make a result, for the reason given
    (reported as ``APIResponseValidationError`` with exactly that text)."""


class CallSpec(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """What a resource asks for: the request, and how its answer becomes the result.

    Made by :meth:`Pipeline.prepare`; see there for the fields.
    """

    operation: str
    method: str
    path: str
    body: bytes | None
    fields: dict[str, Any] | None
    options: Mapping[str, Any]
    model: str | None
    stream: bool
    tokens: int
    decode: Callable[[bytes], T] | None
    what: str
    finalize: Callable[[T], T] | None
    recover: Callable[[APIStatusError], T | None] | None


class Request(msgspec.Struct, frozen=True, kw_only=True):
    """A request ready to send, built without I/O: exactly what goes on the wire."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None
    query: Mapping[str, str] | None
    timeout: Timeout
    max_retries: int

    def __repr__(self) -> str:
        # The key travels in a header: never shown.
        shown = {
            name: REDACTED if name.lower() in SECRET_HEADERS else value
            for name, value in self.headers.items()
        }
        size = "no body" if self.body is None else f"{len(self.body)} bytes"
        return f"<Request {self.method} {self.url} headers={shown} {size}>"


class Pipeline:
    """One client's settings and the call path every resource uses.

    Clients made by ``with_options`` get their own (:meth:`derive`) over the same transport.

    :ivar closed: set when the client that owns it closes; the transport's own ``closed``
        covers the pool's owner closing under a derived client.
    """

    __slots__ = (
        "_headers",
        "_server",
        "_stream_headers",
        "_urls",
        "api_key",
        "base_url",
        "closed",
        "default_headers",
        "default_query",
        "max_retries",
        "spend_limits",
        "timeout",
        "transport",
    )

    def __init__(
        self,
        transport: Transport,
        *,
        base_url: str,
        api_key: str | None,
        timeout: Timeout,
        max_retries: int,
        default_headers: dict[str, str],
        default_query: dict[str, str],
        user_agent: str,
        spend_limits: tuple[SpendLimit, ...] = (),
    ):
        self.transport = transport
        #: The spend limits every attempt of this client reserves in (its parents' first).
        self.spend_limits = spend_limits
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.default_headers = default_headers
        self.default_query = default_query
        self.closed = False
        parts = urlsplit(base_url)
        self._server = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        self._urls: dict[str, URL] = {}
        redactor = transport.redactor
        redactor.add(api_key)
        redactor.add_from_headers(default_headers)
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "User-Agent": user_agent,
        }
        if api_key is not None:
            headers["Authorization"] = f"Bearer {api_key}"
        headers.update(default_headers)
        self._headers = headers
        self._stream_headers = {**headers, "Accept": "text/event-stream"}

    def derive(self, **changes: Any) -> Pipeline:
        """A pipeline over the same transport with some settings changed (``api_key``,
        ``timeout``, ``max_retries``, ``default_headers``, ``default_query``,
        ``spend_limits``), checked by the caller."""
        settings: dict[str, Any] = {
            "base_url": self.base_url,
            "api_key": self.api_key,
            "timeout": self.timeout,
            "max_retries": self.max_retries,
            "default_headers": self.default_headers,
            "default_query": self.default_query,
            "user_agent": self._headers["User-Agent"],
            "spend_limits": self.spend_limits,
        }
        settings.update(changes)
        return Pipeline(self.transport, **settings)

    # -- what to send ---------------------------------------------------------------------

    def prepare(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        fields: dict[str, Any] | None = None,
        options: Mapping[str, Any] = _NO_OPTIONS,
        model: str | None = None,
        stream: bool = False,
        estimate: Callable[[dict[str, Any]], int] | None = None,
        decode: Callable[[bytes], T] | None = None,
        what: str = "JSON",
        finalize: Callable[[T], T] | None = None,
        recover: Callable[[APIStatusError], T | None] | None = None,
    ) -> CallSpec[T]:
        """A checked request, ready to send (no I/O).

        :param operation: the hooks' name for it (``"chat"``, ``"embeddings"``, ...).
        :param fields: the body's fields (JSON-encoded here; hooks see them as they are).
        :param options: the per-call options (``extra_headers``, ``extra_query``,
            ``timeout``, ``max_retries``), resolved when it is sent.
        :param estimate: counts the request's tokens from its fields, for a budget.
        :param decode: turns a whole answer's body into the result; may raise
            :class:`Undecodable`, or a msgspec error.
        :param what: the answer's name in the error of one that does not decode.
        :param finalize: turns the result into the one returned (structured output).
        :param recover: an error answer that is an answer all the same: its result, or
            ``None`` to raise the error.
        :raises TypeError: a field cannot be encoded as JSON.
        """
        tokens = 0
        if estimate is not None and fields is not None:
            transport = self.transport
            if transport.rate_limit.limits_tokens or (
                batch_limits_running.count and transport.wants_tokens()
            ):
                tokens = estimate(fields)
        body = encode_body(fields) if fields is not None else None
        return CallSpec(
            operation=operation,
            method=method,
            path=path,
            body=body,
            fields=fields,
            options=options,
            model=model,
            stream=stream,
            tokens=tokens,
            decode=decode,
            what=what,
            finalize=finalize,
            recover=recover,
        )

    def build_request(self, spec: CallSpec[Any]) -> Request:
        """The request ``spec`` sends, every option resolved, with no I/O.

        :raises RoutmyError: no API key is configured.
        :raises RuntimeError: the client is closed.
        :raises TypeError: an option has the wrong type. :raises ValueError: a wrong value.
        """
        headers, query, timeout, max_retries = self._resolve(spec.options, spec.stream)
        return Request(
            method=spec.method,
            url=str(self._url(spec.path)),
            headers=headers,
            body=spec.body,
            query=query,
            timeout=timeout,
            max_retries=max_retries,
        )

    def _resolve(
        self, options: Mapping[str, Any], stream: bool
    ) -> tuple[dict[str, str], dict[str, str] | None, Timeout, int]:
        """The options of one call: ``(headers, query, timeout, max_retries)``."""
        if self.closed or self.transport.closed:
            raise RuntimeError(
                "this AsyncRoutmy client is closed; create a new one to send more requests"
            )
        if self.api_key is None:
            raise RoutmyError(
                "no API key: pass AsyncRoutmy(api_key=...) or set the ROUTMY_API_KEY "
                "environment variable"
            )
        headers = self._stream_headers if stream else self._headers
        query: dict[str, str] | None = self.default_query or None
        if not options:  # the common call: the client's own settings
            return headers, query, self.timeout, self.max_retries
        extra_headers = options.get("extra_headers")
        if extra_headers:
            checked = check_headers(extra_headers, name="extra_headers")
            self.transport.redactor.add_from_headers(checked)
            headers = {**headers, **checked}
        extra_query = options.get("extra_query")
        if extra_query:
            query = {**self.default_query, **check_headers(extra_query, name="extra_query")}
        timeout = self.timeout
        if "timeout" in options:
            timeout = coerce_timeout(options["timeout"])
        max_retries = options.get("max_retries", self.max_retries)
        if max_retries.__class__ is not int or max_retries < 0:  # the common case: no call
            check_count("max_retries", max_retries, 0)
        return headers, query, timeout, max_retries

    def _url(self, path: str) -> URL:
        key = self.base_url + path
        urls = self._urls
        url = urls.get(key)
        if url is None:
            if len(urls) >= _URL_CACHE_SIZE:
                urls.clear()  # raw requests to /items/{id} must not grow the cache forever
            url = urls[key] = URL(key)
        return url

    def _call(self, spec: CallSpec[Any]) -> Call | None:
        """The :class:`Call` that hooks follow, or ``None`` when no hook is active."""
        hooks = self.transport.active_hooks()
        if hooks is None:
            return None
        host, port = self._server
        call = Call(
            spec.operation,
            model=spec.model,
            stream=spec.stream,
            body=spec.fields,
            server_address=host,
            server_port=port,
            hooks=hooks,
        )
        if self.spend_limits:
            gate = self.transport.spend
            assert gate is not None  # a client with a spend limit put its gate there
            gate.begin(call, self.spend_limits, spec.method, spec.path)
        return call

    # -- sending ----------------------------------------------------------------------------

    async def send(self, spec: CallSpec[T]) -> T:
        """Send ``spec`` and return its decoded, settled and finalized result.

        :raises APIStatusError: the server answered with an error.
        :raises APIConnectionError: the connection failed or timed out.
        :raises APIResponseValidationError: the answer does not decode.
        """
        headers, query, timeout, max_retries = self._resolve(spec.options, False)
        transport = self.transport
        call = (
            None if transport.hooks is None and _hooks.global_hook_set is None else self._call(spec)
        )
        try:
            raw, _ = await transport.request(
                spec.method,
                self._url(spec.path),
                headers=headers,
                body=spec.body,
                params=query,
                timeout=timeout,
                max_retries=max_retries,
                tokens=spec.tokens,
                call=call,
            )
        except APIStatusError as error:
            # The call ended with on_error already; a recovered answer is returned all the
            # same (a failed Responses object), settled and finalized as any other.
            recovered = spec.recover(error) if spec.recover is not None else None
            if recovered is None:
                raise
            result: T = recovered
        else:
            assert raw is not None and spec.decode is not None
            result = self._decode(raw, spec.decode, spec.what, call)
        if spec.tokens:
            usage = getattr(result, "usage", None)
            transport.settle_tokens(spec.tokens, usage.total_tokens if usage is not None else None)
        finalize = spec.finalize
        if finalize is not None:
            try:
                result = finalize(result)
            except BaseException as error:  # content that does not fit: the call failed
                if call is not None:
                    call.failed(error)
                raise
        if call is not None:
            call.succeeded(result)
        return result

    async def open_stream(self, spec: CallSpec[Any], make: Callable[[StreamContext], S]) -> S:
        """Send ``spec`` and hand its open answer to ``make`` (a stream class): the stream
        settles the tokens and reports the call's end itself.

        :raises APIResponseValidationError: the answer is not an event stream.
        """
        headers, query, timeout, max_retries = self._resolve(spec.options, True)
        transport = self.transport
        call = (
            None if transport.hooks is None and _hooks.global_hook_set is None else self._call(spec)
        )
        url = self._url(spec.path)
        _, response = await transport.request(
            spec.method,
            url,
            headers=headers,
            body=spec.body,
            params=query,
            timeout=timeout,
            max_retries=max_retries,
            stream=True,
            tokens=spec.tokens,
            call=call,
        )
        assert response is not None
        return make(
            StreamContext(
                response=response,
                transport=transport,
                idle_timeout=timeout.idle,
                method=spec.method,
                url=str(url),
                tokens=spec.tokens,
                call=call,
                finalize=spec.finalize,
            )
        )

    # -- reading ----------------------------------------------------------------------------

    def _decode(
        self, raw: RawResponse, decode: Callable[[bytes], T], what: str, call: Call | None
    ) -> T:
        try:
            value = decode(raw.body)
        except msgspec.ValidationError as exc:
            problem = f"the {what} response has an unexpected shape: {exc}"
        except msgspec.DecodeError as exc:
            problem = (
                f"the {what} response is not valid JSON ({exc}); "
                f"Content-Type {raw.headers.get('Content-Type', '(none)')!r}, "
                f"{len(raw.body)} bytes"
            )
        except Undecodable as exc:
            problem = str(exc)
        else:
            if isinstance(value, TopLevelResponse):
                attach_answer(
                    value, raw.body, raw.request_id, status=raw.status, headers=raw.headers
                )
            return value
        error = APIResponseValidationError(
            problem, body=raw.body, status_code=raw.status, request_id=raw.request_id
        )
        self.transport.redactor.scrub(error)  # the body may hold the key: not in the error
        if call is not None:
            call.failed(error)
        raise error
