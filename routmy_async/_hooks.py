"""Hooks: a small, typed way to observe every call, attempt, retry, error and stream end.

Subclass :class:`Hooks`, override the methods you need, and pass instances to
``AsyncRoutmy(hooks=[...])`` (clients made by ``with_options`` inherit them). Every method is
called synchronously on the event loop, so keep them cheap; one that raises is logged once
and never breaks the request. A client with no hooks does no work for them at all: the
transport checks one attribute per request.

One :class:`Call` object follows an operation (a ``create``, a stream, an embeddings request)
from its first attempt to its end; ``call.state`` is a dict where a hook keeps what it needs
between events (a span, a start time).

How a call ends, exactly once each:

- a non-streamed call: ``on_success``, or ``on_error``;
- a stream that never opened (a status error, an answer that is not an event stream, a
  connection failure, a cancellation before the first byte of the stream): ``on_error``, and
  no ``on_stream_end``: it never started;
- a stream that opened: ``on_stream_end``, however it ended; when its outcome is ``error`` or
  ``broken``, ``on_error`` follows with the same error. A stream its reader left early
  (``cancelled``) is not a failure: no ``on_error``.

So a hook counting failures in ``on_error`` sees every failed call once, and a hook keeping
per-stream state sees every started stream end once in ``on_stream_end``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any, Literal

import msgspec

__all__ = ["Call", "HookSet", "Hooks", "StreamSummary", "global_hooks", "set_global_hooks"]

logger = logging.getLogger("routmy_async")

StreamOutcome = Literal["done", "error", "cancelled", "broken"]


class _Operation(msgspec.Struct, eq=False):
    # The one positional field of Call; the rest are keyword-only (see Call).
    operation: str


class Call(_Operation, kw_only=True, eq=False):
    """One operation as the hooks see it.

    Two calls are equal only when they are the same call (a hook may key a mapping by one).

    :ivar operation: ``"chat"``, ``"embeddings"``, ``"images"``, ``"models"``,
        ``"responses"`` or ``"request"`` (a raw ``client.get``/``post``).
    :ivar model: the requested model (``None`` where there is none).
    :ivar body: the request's body fields as sent (messages included: a hook that records
        content must be opted in by its user), or ``None``.
    :ivar stream: whether the answer is streamed.
    :ivar server_address: the host of the base URL; ``server_port`` its port.
    :ivar started: ``time.monotonic()`` at the start of the operation.
    :ivar state: free storage for hooks (keyed by anything they like).
    :ivar units: the quota units a client's spend limit counted for this call, every attempt
        summed, once they are settled (``None`` without a ``max_units`` limit, or before).
    :ivar dollars: the same in dollars, for a ``max_dollars`` limit.
    """

    model: str | None = None
    stream: bool = False
    server_address: str | None = None
    server_port: int | None = None
    body: Mapping[str, Any] | None = None
    # The hooks active when the call started see it through to its end, even if the global
    # set changes meanwhile (uninstrument() mid-call leaves no span open).
    hooks: HookSet | None = None
    started: float = msgspec.field(default_factory=time.monotonic)
    state: dict[Any, Any] = msgspec.field(default_factory=dict)
    units: Decimal | None = None
    dollars: Decimal | None = None

    def __repr__(self) -> str:
        return f"<Call {self.operation} {self.model or ''} stream={self.stream}>"

    def emit(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        """Tell this call's hooks (see :meth:`HookSet.emit`)."""
        if self.hooks is not None:
            self.hooks.emit(event, self, *args, **kwargs)

    def failed(self, error: BaseException) -> None:
        """The operation failed for good: ``on_error``, once."""
        if "_ended" not in self.state:
            self.state["_ended"] = True
            self.emit("on_error", error=error, elapsed=time.monotonic() - self.started)

    def succeeded(self, result: Any) -> None:
        """A non-streamed operation returned ``result``: ``on_success``, once."""
        if "_ended" not in self.state:
            self.state["_ended"] = True
            self.emit("on_success", result=result, elapsed=time.monotonic() - self.started)


class StreamSummary(msgspec.Struct, frozen=True, kw_only=True):
    """How a stream ended.

    :ivar outcome: ``"done"`` (its last event was handed to the reader), ``"error"`` (an
        error frame or a bad frame), ``"cancelled"`` (the reader was cancelled, or closed or
        left it before its last event was handed out, even if the whole body had arrived) or
        ``"broken"`` (the connection failed or ended too soon). ``error`` and ``broken`` are
        failures, also reported to ``on_error``.
    :ivar duration: seconds from the request to the end.
    :ivar time_to_first_event: seconds from the request to the first event, if any came.
    :ivar chunks: events handed to the reader (chunks, Responses events or raw events; not
        those that arrived in the same read but were never asked for).
    :ivar usage: the ``usage`` object, if the stream carried one.
    :ivar result: when the stream was done, its final object: the ``ChatCompletion`` of a
        chat stream, the ``Response`` of a Responses stream; for an ``error`` that was a
        ``response.failed`` event, the failed ``Response`` it carried (its id and usage);
        ``None`` for a raw stream (``client.stream_request``) and for any other outcome.
    :ivar error: what ended it, for ``error`` and ``broken`` (for ``cancelled``, the
        ``CancelledError`` of a cancelled task, or ``None``).
    """

    outcome: StreamOutcome
    duration: float
    time_to_first_event: float | None
    chunks: int
    usage: Any = None
    result: Any = None
    error: BaseException | None = None

    @property
    def cost(self) -> float | None:
        """The ``usage.cost`` rout.my reported, if any."""
        cost = getattr(self.usage, "cost", None)
        return cost if isinstance(cost, (int, float)) else None

    def __repr__(self) -> str:
        return f"<StreamSummary {self.outcome} chunks={self.chunks} duration={self.duration:.3f}s>"


class Hooks:
    """Override any of these; the defaults do nothing.

    ``headers`` never carry the key (``Authorization`` is shown as ``[REDACTED]``).
    """

    def on_request(
        self, call: Call, *, attempt: int, method: str, url: str, headers: Mapping[str, str]
    ) -> None:
        """An attempt is about to be sent (``attempt`` 0 is the first)."""

    def on_response(
        self, call: Call, *, attempt: int, status: int, headers: Mapping[str, str], elapsed: float
    ) -> None:
        """An attempt got its status and headers (``elapsed`` seconds after it was sent)."""

    def on_retry(
        self, call: Call, *, attempt: int, reason: str, wait: float, error: BaseException
    ) -> None:
        """Attempt ``attempt`` failed with ``error`` and will be retried after ``wait`` s."""

    def on_error(self, call: Call, *, error: BaseException, elapsed: float) -> None:
        """The operation failed for good (retries spent, or not retryable), once per call.

        For a stream: one that never opened (a status error, a wrong ``Content-Type``, a
        connection failure) ends here alone; one that opened and failed (outcome ``error``
        or ``broken``) comes here right after :meth:`on_stream_end`. A task cancelled during
        a non-streamed call, or before its stream opened, ends here with ``CancelledError``.
        """

    def on_success(self, call: Call, *, result: Any, elapsed: float) -> None:
        """A non-streamed operation returned ``result`` (the decoded object)."""

    def on_stream_end(self, call: Call, summary: StreamSummary) -> None:
        """A stream that opened ended, however it ended, once (see :class:`StreamSummary`).

        A stream that failed before it opened never comes here (only to :meth:`on_error`);
        a failed one (``error``, ``broken``) goes on to :meth:`on_error`.
        """


_METHODS = ("on_request", "on_response", "on_retry", "on_error", "on_success", "on_stream_end")


class HookSet:
    """Calls every hook of a list, logging a failing one once instead of raising.

    Only the methods a hook overrides are called: a ``Hooks()`` that overrides nothing costs
    nothing, and an event no hook listens to costs one dict lookup (``wants``).
    """

    __slots__ = ("_failed", "_listeners", "hooks")

    def __init__(self, hooks: Iterable[Hooks]):
        self.hooks = tuple(hooks)
        for hook in self.hooks:
            if not isinstance(hook, Hooks):
                raise TypeError(
                    f"hooks must be routmy_async.Hooks instances, not {type(hook).__name__}"
                )
        # Resolved once per hook set, not per event: the bound methods that do something.
        self._listeners: dict[str, tuple[tuple[Hooks, Callable[..., None]], ...]] = {}
        for name in _METHODS:
            listeners = tuple(
                (hook, getattr(hook, name))
                for hook in self.hooks
                if getattr(type(hook), name) is not getattr(Hooks, name)
                or name in vars(hook)  # a method set on the instance
            )
            if listeners:
                self._listeners[name] = listeners
        self._failed: set[tuple[int, str]] = set()

    def __add__(self, other: HookSet) -> HookSet:
        return HookSet((*self.hooks, *other.hooks))

    def __bool__(self) -> bool:
        """Whether any hook listens to anything (a set of do-nothing hooks is false)."""
        return bool(self._listeners)

    def wants(self, event: str) -> bool:
        """Whether any hook overrides ``event`` (so its arguments are worth building)."""
        return event in self._listeners

    def emit(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        """Call ``event`` (a :class:`Hooks` method name) on every hook that overrides it."""
        for hook, method in self._listeners.get(event, ()):
            try:
                method(*args, **kwargs)
            except Exception:
                key = (id(hook), event)
                if key not in self._failed:
                    self._failed.add(key)
                    logger.exception(
                        "routmy_async hook %s.%s raised (reported once; the request goes on)",
                        type(hook).__name__,
                        event,
                    )


#: The hooks every client runs (``routmy_async.instrumentation.instrument()`` sets them), or
#: None: read as a module attribute by the request path, which skips all hook work when this
#: and the client's own hooks are None.
global_hook_set: HookSet | None = None


def global_hooks() -> HookSet | None:
    """The hooks every client runs (``routmy_async.instrumentation.instrument()`` sets them)."""
    return global_hook_set


def set_global_hooks(hooks: Iterable[Hooks]) -> None:
    """Replace the hooks every client runs (an empty list: none)."""
    global global_hook_set
    hook_set = HookSet(hooks)
    global_hook_set = hook_set if hook_set else None


assert all(hasattr(Hooks, name) for name in _METHODS)
