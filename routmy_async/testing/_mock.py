"""``MockRoutmy``: a real HTTP server on 127.0.0.1 (or any host) that speaks the rout.my API.

It answers deterministically by default (see ``_replies``), plays scripted replies queued
for the next requests, injects faults (statuses, error frames, resets, stalls, slow chunks,
keep-alive comments, raw bytes) and records every request it receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from aiohttp import web

from . import _replies
from ._quota import Quota as _Quota
from ._quota import retry_after_headers

__all__ = ["MockRoutmy", "RecordedRequest", "Reply"]

DEFAULT_KEY = "sk-mock-key"
"""The API key a ``MockRoutmy()`` accepts when none is given."""
# What resolve_models appends to the model an answer names.
_RESOLVED_SUFFIX = "-2026-01-01"
_STORED_RESPONSES = 1000  # responses kept for previous_response_id (the "openrouter" flavor)

Flavor = Literal["routmy", "openrouter"]
FLAVORS: tuple[Flavor, ...] = ("routmy", "openrouter")


@dataclass
class RecordedRequest:
    """A request the mock received. ``headers`` has the key redacted."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None


@dataclass
class Reply:
    """A scripted answer for one request. Build them with the ``MockRoutmy.reply_*`` methods.

    ``body`` is either whole bytes (a JSON answer) or, with ``chunks``, a list of SSE frames.
    """

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    chunks: list[bytes] | None = None
    raw: bytes | None = None
    stall_before_headers: float = 0.0
    chunk_delay: float = 0.0
    write_size: int | None = None
    reset_after: int | None = None
    stall_after: int | None = None
    stall_for: float = 3600.0
    comments_before: int = 0
    comment_interval: float | None = None
    comments_forever: bool = False
    path: str | None = None

    @property
    def scripted(self) -> bool:
        """Whether the reply carries its own answer (else the default answer gets its faults)."""
        return self.body is not None or self.chunks is not None or self.raw is not None


class _Rejected(Exception):
    """Raised by an answer builder to answer with an error response instead."""

    def __init__(self, response: web.Response):
        super().__init__(response.status)
        self.response = response


def _error_body(message: str, type_: str, code: Any) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "code": code}}).encode()


def sse_frame(payload: Any, *, named: bool = False) -> bytes:
    """One SSE event: ``data: <json>`` and the blank line; ``[DONE]`` for the string "[DONE]".

    ``named=True`` adds the ``event: <type>`` line a Responses stream carries, from the
    payload's ``type``.
    """
    if payload == "[DONE]":
        return b"data: [DONE]\n\n"
    if isinstance(payload, (bytes, bytearray)):
        return bytes(payload)
    data = b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"
    if named and isinstance(payload, dict) and isinstance(payload.get("type"), str):
        return f"event: {payload['type']}\n".encode() + data
    return data


def _models_list(
    models: Sequence[Mapping[str, Any]] | None, flavor: Flavor
) -> list[dict[str, Any]]:
    """The models list entries: those given, or the defaults with the fields ``flavor``'s
    server sends (rout.my's items carry no prices or context lengths)."""
    if models is not None:
        return [dict(m) for m in models]
    if flavor == "routmy":
        return [
            {k: v for k, v in m.items() if k in _replies.ROUTMY_MODEL_FIELDS}
            for m in _replies.DEFAULT_MODELS
        ]
    return [dict(m) for m in _replies.DEFAULT_MODELS]


class MockRoutmy:
    """A local rout.my for tests, demos and examples.

    ``async with MockRoutmy() as mock:`` then ``AsyncRoutmy(api_key=mock.api_key,
    base_url=mock.base_url)``.

    Every API route, the models list included, checks the key (``401`` with the service's
    error body); a scripted reply (``reply_json``, ``reply_error``, ...) is played as given,
    before that check, and a fault-only one (``reply_default``) shapes the default answer.

    :param api_key: the key requests must carry (``Authorization: Bearer ...``). ``None``
        accepts any non-empty Bearer key (``mock.any_key`` is then true), so
        ``AsyncRoutmy(base_url=mock.base_url)`` works with whatever ``ROUTMY_API_KEY`` holds;
        a request with no key at all is still a 401. ``mock.api_key`` stays a key the mock
        accepts (``DEFAULT_KEY`` then), so code passing it along keeps working.
    :param host: the address to listen on (loopback by default); an IPv6 address such as
        ``"::1"`` gives ``http://[::1]:<port>/v1``.
    :param port: 0 picks a free port.
    :param models: the models list entries (default: a few ``mock/...`` models).
    :param strict_models: answer 404 ``model_not_found`` for models not in the list.
    :param latency: seconds to wait before every answer.
    :param max_in_flight: a quota mode: at most this many API requests are answered at once;
        one more is refused at once with a ``429`` carrying ``Retry-After`` (whole seconds)
        and ``retry-after-ms`` (``quota_retry_after``).
    :param requests_per_minute: a quota mode: at most this many API requests are admitted in
        any ``quota_window`` seconds; one more gets a ``429`` whose ``Retry-After`` and
        ``retry-after-ms`` say when the window has room again.
    :param quota_window: the length of the ``requests_per_minute`` window (60 seconds; a test
        may shorten it, the quota then counts per shorter window).
    :param quota_retry_after: the wait a ``max_in_flight`` refusal asks for (default:
        ``latency / max_in_flight``, at least 10 ms: how often a slot frees when K answers
        take one latency each).
    :param latency_per_in_flight: latency that grows with load: an admitted request waits
        this many seconds more for each other request being answered when it arrives.
    :param stream_piece: characters of text per streamed chunk.
    :param flavor: which server to answer as. ``"routmy"`` (the default) answers as rout.my
        documents: ``usage`` holds token counts and no ``cost``, ``/v1/models`` items carry
        ``id``, ``owned_by``, ``token_multiplier`` and ``is_available`` and no ``pricing``,
        and ``/v1/responses`` is stateless (``previous_response_id`` is accepted and ignored).
        ``"openrouter"`` answers as other routers do: ``usage.cost`` in dollars, prices,
        context lengths and architectures in the models list, and stored responses that a
        ``previous_response_id`` continues (an unknown id is a 400). A test of a feature that
        needs those says so by asking for this flavor.
    :param resolve_models: answer as a router that resolves the model asked for to an id
        its models list does not have: a chat completion, a Responses object and an
        embeddings list name ``<model>-2026-01-01`` (a dated snapshot, as OpenAI names its
        answers) instead of the model the request named.
    """

    def __init__(
        self,
        *,
        api_key: str | None = DEFAULT_KEY,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[Mapping[str, Any]] | None = None,
        strict_models: bool = False,
        latency: float = 0.0,
        stream_piece: int = 8,
        flavor: Flavor = "routmy",
        max_in_flight: int | None = None,
        requests_per_minute: int | None = None,
        quota_window: float = 60.0,
        quota_retry_after: float | None = None,
        latency_per_in_flight: float = 0.0,
        resolve_models: bool = False,
    ):
        if flavor not in FLAVORS:
            raise ValueError(
                f"flavor must be one of {', '.join(map(repr, FLAVORS))}, not {flavor!r}"
            )
        self.flavor: Flavor = flavor
        self.any_key = api_key is None
        self.api_key: str = DEFAULT_KEY if api_key is None else api_key
        self.host = host
        self.port = port
        self.models = _models_list(models, flavor)
        self.strict_models = strict_models
        self.latency = latency
        self.quota = _Quota(
            max_in_flight=max_in_flight,
            requests_per_minute=requests_per_minute,
            window=quota_window,
            retry_after=quota_retry_after,
            latency=latency,
            latency_per_in_flight=latency_per_in_flight,
        )
        self.stream_piece = stream_piece
        self.resolve_models = resolve_models
        self.requests: list[RecordedRequest] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self.disconnects = 0
        self.request_times: list[float] = []
        # Connections seen so far (weakly held, so a long soak keeps no dead connection alive).
        self._connections_held: weakref.WeakSet[Any] = weakref.WeakSet()
        self._peers_seen: set[Any] = set()
        self._connections = 0
        self._replies: deque[Reply] = deque()
        self._responder: Callable[[RecordedRequest], Reply | None] | None = None
        self._serial = 0
        self._runner: web.AppRunner | None = None
        self._handlers: set[asyncio.Task[Any]] = set()
        # Items of each stored response, for requests continuing it by previous_response_id.
        self._stored_responses: dict[str, list[Any]] = {}

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1`` (an IPv6 host in brackets: ``http://[::1]:<port>/v1``)."""
        if self._runner is None:
            raise RuntimeError("the mock is not started: use `async with MockRoutmy() as mock:`")
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"http://{host}:{self.port}/v1"

    @property
    def quota_rejections(self) -> int:
        """How many requests the quota modes refused with a 429."""
        return self.quota.rejections

    @property
    def connections_seen(self) -> int:
        """How many distinct TCP connections have sent requests (keep-alive reuse keeps it low)."""
        return self._connections

    @property
    def open_connections(self) -> int:
        """How many TCP connections from clients are open right now, idle keep-alive ones
        included: 0 once every client has closed its pool.

        The server learns of a close when the client's FIN arrives, a moment after
        ``close()`` returns, so wait for it (poll with a short sleep) rather than reading it
        at once.
        """
        runner = self._runner
        server = None if runner is None else runner.server
        return 0 if server is None else len(server.connections)

    async def start(self) -> MockRoutmy:
        """Start listening (``async with`` does this); returns the mock."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_post("/v1/images/generations", self._images)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        self._runner = web.AppRunner(
            app, access_log=None, handle_signals=False, shutdown_timeout=0.1
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        addresses = self._runner.addresses
        if addresses and self.port == 0:
            # The port the OS picked; (host, port) or IPv6's (host, port, flowinfo, scope_id).
            self.port = addresses[0][1]
        return self

    async def close(self) -> None:
        """Stop the server and drop its connections."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> MockRoutmy:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- scripting ----------------------------------------------------------------------

    def enqueue(self, reply: Reply) -> Reply:
        """Queue a reply for the next request (to ``reply.path`` if set, else any path)."""
        self._replies.append(reply)
        return reply

    def reply_json(
        self,
        body: Any,
        *,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        path: str | None = None,
        **faults: Any,
    ) -> Reply:
        """Queue a JSON answer (a dict, or bytes sent exactly as given)."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.enqueue(
            Reply(
                status=status,
                headers={"Content-Type": "application/json", **(headers or {})},
                body=data,
                path=path,
                **faults,
            )
        )

    def reply_error(
        self,
        status: int,
        message: str = "mock error",
        *,
        type: str = "invalid_request_error",
        code: Any = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        path: str | None = None,
        times: int = 1,
    ) -> None:
        """Queue ``times`` error answers with the service's error body (or ``body`` as given)."""
        data = body if body is not None else _error_body(message, type, code)
        for _ in range(times):
            self.enqueue(
                Reply(
                    status=status,
                    headers={"Content-Type": "application/json", **(headers or {})},
                    body=data,
                    path=path,
                )
            )

    def reply_stream(
        self,
        chunks: Iterable[Any],
        *,
        done: bool = True,
        named: bool = False,
        headers: Mapping[str, str] | None = None,
        path: str | None = None,
        **faults: Any,
    ) -> Reply:
        """Queue an SSE stream: dicts become ``data:`` frames, bytes are written as given.

        ``named=True`` gives each dict frame an ``event: <type>`` line (a Responses stream;
        pass ``done=False`` too, as the Responses API sends no ``[DONE]``).
        """
        frames = [sse_frame(chunk, named=named) for chunk in chunks]
        if done:
            frames.append(b"data: [DONE]\n\n")
        return self.enqueue(
            Reply(
                headers={"Content-Type": "text/event-stream", **(headers or {})},
                chunks=frames,
                path=path,
                **faults,
            )
        )

    def reply_raw(self, data: bytes, *, path: str | None = None) -> Reply:
        """Queue raw bytes written straight to the socket (status line included), then close."""
        return self.enqueue(Reply(raw=data, path=path))

    def reply_default(self, *, path: str | None = None, **faults: Any) -> Reply:
        """Queue the default answer, with faults (``reset_after``, ``stall_after``, ...)."""
        return self.enqueue(Reply(path=path, **faults))

    def reply_with(self, responder: Callable[[RecordedRequest], Reply | None] | None) -> None:
        """Answer by the request: queued replies still come first, and every other request
        goes to ``responder``.

        It gets the :class:`RecordedRequest` (``json`` is the decoded body) and returns a
        :class:`Reply`, or ``None`` for the default answer. A reply with a body of its own is
        sent as it is, before the key is checked, as queued replies are; one with faults only
        shapes the default answer. ``reply_with(None)`` removes the responder. Useful when
        requests arrive in no set order, such as concurrent rows of which some must fail::

            refused = Reply(
                status=400,
                headers={"Content-Type": "application/json"},
                body=b'{"error": {"message": "row refused"}}',
            )
            mock.reply_with(
                lambda request: refused if "FAIL" in str(request.json["messages"]) else None
            )

        :param responder: called once per request, on the server's event loop; it must not
            block.
        """
        self._responder = responder

    def clear(self) -> None:
        """Forget queued replies and recorded requests."""
        self._replies.clear()
        self.requests.clear()

    # -- handlers -----------------------------------------------------------------------

    def _take_reply(self, path: str) -> Reply | None:
        for reply in self._replies:
            if reply.path is None or path.endswith(reply.path):
                self._replies.remove(reply)
                return reply
        return None

    async def _record(self, request: web.Request) -> RecordedRequest:
        body = await request.read()
        headers = {
            key: ("Bearer [REDACTED]" if key.lower() == "authorization" else value)
            for key, value in request.headers.items()
        }
        decoded: Any = None
        if body:
            try:
                decoded = json.loads(body)
            except ValueError:
                decoded = None
        record = RecordedRequest(
            request.method, request.path, dict(request.query), headers, body, decoded
        )
        self.requests.append(record)
        self.request_times.append(time.monotonic())
        transport = request.transport
        if transport is not None:
            try:
                seen = transport in self._connections_held
                if not seen:
                    self._connections_held.add(transport)
            except TypeError:
                # uvloop's TLS transports cannot be weakly held: the client's address and
                # port name the connection instead (a port the kernel reuses later could
                # undercount by one).
                peer = transport.get_extra_info("peername")
                seen = peer in self._peers_seen
                self._peers_seen.add(peer)
            if not seen:
                self._connections += 1
        return record

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.any_key:
            scheme, _, token = header.partition(" ")
            return scheme.lower() == "bearer" and bool(token.strip())
        return header == f"Bearer {self.api_key}"

    def _unauthorized(self) -> web.Response:
        return web.Response(
            status=401,
            body=_error_body("Invalid API key", "authentication_error", "Unauthorized"),
            content_type="application/json",
        )

    @contextlib.contextmanager
    def _counted(self) -> Iterator[None]:
        """Count the request in flight until the handler is done, whatever way it ends."""
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            yield
        finally:
            self.in_flight -= 1

    async def _enter(self, request: web.Request) -> RecordedRequest | None:
        """Read and record the request; ``None`` when the client left before its body ended."""
        try:
            return await self._record(request)
        except ConnectionError:
            # Hung up, or sent less than its Content-Length: nobody is left to answer.
            self.disconnects += 1
            return None

    async def _not_found(self, request: web.Request) -> web.StreamResponse:
        with self._counted():
            if await self._enter(request) is None:
                return web.Response(status=400)
            if request.path.rstrip("/") in (
                "/v1/models",
                "/v1/chat/completions",
                "/v1/responses",
                "/v1/embeddings",
                "/v1/images/generations",
            ):
                return web.Response(
                    status=405,
                    body=_error_body("Method not allowed", "invalid_request_error", 405),
                    content_type="application/json",
                )
            return web.Response(
                status=404,
                body=_error_body(f"No route {request.path}", "not_found_error", "Not Found"),
                content_type="application/json",
            )

    async def _models(self, request: web.Request) -> web.StreamResponse:
        # The models list is not metered: a client reads it to price its requests.
        return await self._answer(request, self._models_answer, metered=False)

    def _models_answer(self, body: Any) -> dict[str, Any]:
        del body  # a GET: the answer depends only on the configured models
        entries = [{"object": "model", "created": 1700000000, **model} for model in self.models]
        return {"object": "list", "data": entries}

    def _check_chat_body(self, body: Any) -> web.Response | None:
        if not isinstance(body, dict):
            return self._bad_request("Invalid request body")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return self._bad_request("Invalid request body: 'model' is required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return self._bad_request("Invalid request body: 'messages' is required")
        return self._check_model(model)

    def _check_model(self, model: str) -> web.Response | None:
        entry = next((m for m in self.models if m.get("id") == model), None)
        if entry is None and self.strict_models:
            return web.Response(
                status=404,
                body=_error_body(
                    f"Model {model} not found", "invalid_request_error", "model_not_found"
                ),
                content_type="application/json",
            )
        if entry is not None and entry.get("is_available") is False:
            return web.Response(
                status=403,
                body=_error_body(
                    f"Model {model} is not available for this key",
                    "permission_error",
                    "Forbidden",
                ),
                content_type="application/json",
            )
        return None

    @staticmethod
    def _bad_request(message: str) -> web.Response:
        return web.Response(
            status=400,
            body=_error_body(message, "invalid_request_error", "Bad Request"),
            content_type="application/json",
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self._chat_answer)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self._responses_answer, done=False)

    def _responses_answer(self, body: Any) -> dict[str, Any] | list[Any]:
        if not isinstance(body, dict):
            raise _Rejected(self._bad_request("Invalid request body"))
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise _Rejected(self._bad_request("Invalid request body: 'model' is required"))
        problem = self._check_model(model)
        if problem is not None:
            raise _Rejected(problem)
        earlier: list[Any] = []
        previous = body.get("previous_response_id")
        stateful = self.flavor != "routmy"  # rout.my's /v1/responses keeps nothing
        if previous is not None and stateful:
            if previous not in self._stored_responses:
                raise _Rejected(
                    web.Response(
                        status=400,
                        body=_error_body(
                            f"Previous response with id '{previous}' not found.",
                            "invalid_request_error",
                            "previous_response_not_found",
                        ),
                        content_type="application/json",
                    )
                )
            earlier = self._stored_responses[previous]
        self._serial += 1
        response = _replies.response_object(
            body, created=int(time.time()), serial=self._serial, earlier=earlier, cost=stateful
        )
        self._resolve(response)
        if stateful and body.get("store", True) is not False:
            given = body.get("input")
            items = [{"role": "user", "content": given}] if isinstance(given, str) else given
            self._stored_responses[response["id"]] = [
                *earlier,
                *(items if isinstance(items, list) else []),
                *response["output"],
            ]
            if len(self._stored_responses) > _STORED_RESPONSES:
                # A long-running mock keeps the most recent conversations only.
                del self._stored_responses[next(iter(self._stored_responses))]
        if body.get("stream"):
            events = _replies.response_events(response, piece=self.stream_piece)
            return [sse_frame(event, named=True) for event in events]
        return response

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, self._embeddings_answer)

    def _embeddings_answer(self, body: Any) -> dict[str, Any]:
        return self._resolve(_replies.embeddings_answer(body, cost=self.flavor != "routmy"))

    def _resolve(self, answer: dict[str, Any]) -> dict[str, Any]:
        """With ``resolve_models``, the answer names the model's dated snapshot."""
        model = answer.get("model")
        if self.resolve_models and isinstance(model, str):
            answer["model"] = f"{model}{_RESOLVED_SUFFIX}"
        return answer

    async def _images(self, request: web.Request) -> web.StreamResponse:
        return await self._answer(request, _replies.images_answer)

    def _chat_answer(self, body: Any) -> dict[str, Any] | list[dict[str, Any]]:
        problem = self._check_chat_body(body)
        if problem is not None:
            raise _Rejected(problem)
        self._serial += 1
        created = int(time.time())
        cost = self.flavor != "routmy"
        if body.get("stream"):
            chunks = _replies.chat_chunks(
                body, created=created, serial=self._serial, piece=self.stream_piece, cost=cost
            )
            return [self._resolve(chunk) for chunk in chunks]
        answer = _replies.chat_completion(body, created=created, serial=self._serial, cost=cost)
        return self._resolve(answer)

    async def _answer(
        self,
        request: web.Request,
        build: Callable[[Any], dict[str, Any] | list[Any]],
        *,
        done: bool = True,
        metered: bool = True,
    ) -> web.StreamResponse:
        """The shared path of the API routes: script, key, quota, body check, answer, faults.

        ``build`` turns the request body into a JSON answer (a dict) or stream chunks (a
        list of dicts, or of frames as bytes); it raises ``_Rejected`` (or ``ValueError`` for
        a malformed body) to refuse. A stream ends with ``data: [DONE]`` when ``done``. A
        ``metered`` route counts in the quota modes (a scripted reply never does).
        """
        with self._counted():
            record = await self._enter(request)
            if record is None:
                return web.Response(status=400)
            # Under a quota mode the latency is spent admitted, in flight: that is what the
            # in-flight cap counts.
            admit = metered and self.quota.active
            if self.latency and not admit:
                await asyncio.sleep(self.latency)
            reply = self._take_reply(request.path)
            if reply is None and self._responder is not None:
                chosen = self._responder(record)
                # A copy: the default answer is filled into it below, and a responder may
                # hand out one Reply for many requests.
                reply = None if chosen is None else replace(chosen)
            if reply is not None and reply.scripted:
                if self.latency and admit:
                    await asyncio.sleep(self.latency)
                return await self._play(request, reply)
            if not self._authorized(request):
                return self._unauthorized()
            if not admit:
                return await self._answer_with(request, record, build, reply, done=done)
            wait = self.quota.try_admit()
            if wait is not None:
                return web.Response(
                    status=429,
                    body=_error_body(
                        "Rate limit exceeded", "rate_limit_error", "Too Many Requests"
                    ),
                    content_type="application/json",
                    headers=retry_after_headers(wait),
                )
            try:
                delay = self.latency + self.quota.load_delay()
                if delay:
                    await asyncio.sleep(delay)
                return await self._answer_with(request, record, build, reply, done=done)
            finally:
                self.quota.leave()

    async def _answer_with(
        self,
        request: web.Request,
        record: RecordedRequest,
        build: Callable[[Any], dict[str, Any] | list[Any]],
        reply: Reply | None,
        *,
        done: bool,
    ) -> web.StreamResponse:
        """Build the default answer from the body, shaped by a fault-only ``reply``, and play it."""
        try:
            answer = build(record.json)
        except _Rejected as rejected:
            return rejected.response
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            return self._bad_request(f"Invalid request body: {exc}")
        # A reply queued with faults only (reset_after=, stall_after=, ...) shapes how
        # the default answer is delivered.
        scripted = reply or Reply()
        if isinstance(answer, list):
            scripted.headers = {"Content-Type": "text/event-stream", **scripted.headers}
            scripted.chunks = [sse_frame(chunk) for chunk in answer]
            if done:
                scripted.chunks.append(b"data: [DONE]\n\n")
            if reply is None:
                scripted.comments_before = 1
        else:
            scripted.headers = {"Content-Type": "application/json", **scripted.headers}
            scripted.body = json.dumps(answer).encode()
        return await self._play(request, scripted)

    # -- playing a reply ----------------------------------------------------------------

    async def _play(self, request: web.Request, reply: Reply) -> web.StreamResponse:
        transport = request.transport
        if reply.stall_before_headers:
            await asyncio.sleep(reply.stall_before_headers)
        if reply.raw is not None:
            if transport is not None:
                transport.write(reply.raw)
                transport.close()
            return web.Response()
        headers = {"x-request-id": f"req-mock-{len(self.requests)}", **reply.headers}
        if (
            reply.chunks is None
            and reply.reset_after is None
            and reply.stall_after is None
            and (not reply.write_size)
        ):
            return web.Response(status=reply.status, body=reply.body or b"", headers=headers)
        response = web.StreamResponse(status=reply.status, headers=headers)
        if reply.chunks is None:
            response.content_length = len(reply.body or b"")
        written = 0
        try:
            await response.prepare(request)
            for _ in range(reply.comments_before):
                await response.write(b": OPENROUTER PROCESSING\n\n")
            pieces = reply.chunks if reply.chunks is not None else [reply.body or b""]
            for number, piece in enumerate(pieces):
                if number and reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
                if reply.comment_interval:
                    await asyncio.sleep(reply.comment_interval)
                    await response.write(b": OPENROUTER PROCESSING\n\n")
                step = reply.write_size or len(piece) or 1
                for start in range(0, len(piece), step):
                    part = piece[start : start + step]
                    limit = (
                        reply.reset_after if reply.reset_after is not None else reply.stall_after
                    )
                    if limit is not None and written + len(part) >= limit:
                        await response.write(part[: max(0, limit - written)])
                        if reply.reset_after is not None:
                            if transport is not None:
                                transport.abort()
                            return response
                        await asyncio.sleep(reply.stall_for)
                        return response
                    await response.write(part)
                    written += len(part)
            while reply.comments_forever:
                await asyncio.sleep(reply.comment_interval or 0.05)
                await response.write(b": OPENROUTER PROCESSING\n\n")
            await response.write_eof()
        except (ConnectionResetError, ConnectionError):
            self.disconnects += 1
        except asyncio.CancelledError:
            self.disconnects += 1
            raise
        return response
