"""OpenTelemetry for routmy_async, following the GenAI semantic conventions (extra ``otel``).

::

    from routmy_async.instrumentation import instrument
    instrument()                      # every client: spans and metrics through the global providers

    # or for one client:
    from routmy_async.instrumentation import OpenTelemetryHooks
    client = AsyncRoutmy(hooks=[OpenTelemetryHooks()])

A CLIENT span per chat, Responses, embeddings or image call, named ``{operation} {model}``
(``chat provider/model-id``), carries the request parameters, the response id, model, finish
reasons and token usage, ``server.address``/``server.port`` and, on failure, ``error.type``.

A Responses API call (``client.responses``) is a ``chat`` operation: the convention has no
other name for it. ``max_output_tokens`` is ``gen_ai.request.max_tokens``; the usage's
``input_tokens``/``output_tokens`` are the token counts; ``gen_ai.response.finish_reasons`` is
the response's ``status`` in chat's words: ``completed`` is ``stop`` (``tool_calls`` when the
output holds a ``function_call``), ``incomplete`` is its ``incomplete_details.reason`` with
``max_output_tokens`` as ``length`` (``content_filter`` as is), ``failed`` is ``error`` and
``cancelled`` is ``cancelled``. Captured content: ``instructions`` (a ``system`` message) and
``input`` (a string as one ``user`` message) are ``gen_ai.input.messages``; the output text
(and function calls, as ``tool_calls``) is ``gen_ai.output.messages``.
Each retry is an event on the span. A streamed call's span lasts until the stream ends or is
closed and records the time to the first chunk, ``routmy.stream.chunks`` (handed to the
reader) and ``routmy.stream.outcome``. A call the caller stopped — a stream closed or left
before its end, a task cancelled (``CancelledError``) — is no error, as in OpenTelemetry's own
``use_span`` and openai-python's instrumentation: its span ends with status unset, no
``error.type``, and ``routmy.cancelled=true``. Each call ends exactly one span. Metrics: the
``gen_ai.client.operation.duration`` and ``gen_ai.client.token.usage`` histograms (and
``gen_ai.client.operation.time_to_first_chunk`` for streams). Message content is recorded
only when asked for (``capture_content=True`` or
``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``).

Only ``opentelemetry-api`` is needed; it is imported when this module is.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .. import _hooks
from .._hooks import Call, Hooks, StreamSummary
from ..types.responses import Response, ResponseFunctionToolCall

__all__ = ["OpenTelemetryHooks", "instrument", "uninstrument"]

_SCOPE = "routmy_async"
_CONTENT_SWITCH = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# Our operation names -> the GenAI convention's ``gen_ai.operation.name``.
_OPERATIONS = {
    "chat": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
    "images": "generate_content",
}
# Request fields -> span attributes, where given.
_REQUEST_ATTRIBUTES = (
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("top_k", "gen_ai.request.top_k"),
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("max_output_tokens", "gen_ai.request.max_tokens"),
    ("seed", "gen_ai.request.seed"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
    ("n", "gen_ai.request.choice.count"),
    ("dimensions", "gen_ai.embeddings.dimension.count"),
)
_DURATION_BUCKETS = (
    0.01,
    0.02,
    0.04,
    0.08,
    0.16,
    0.32,
    0.64,
    1.28,
    2.56,
    5.12,
    10.24,
    20.48,
    40.96,
    81.92,
)
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
_SPAN_KEY = "otel.span"
_ATTRIBUTES_KEY = "otel.attributes"


def _provider(model: str | None) -> str:
    """The GenAI provider: the part of a ``provider/model-id`` before the slash (rout.my
    routes to it), else the router itself."""
    if model and "/" in model:
        return model.split("/", 1)[0]
    return "routmy"


class OpenTelemetryHooks(Hooks):
    """Hooks that turn calls into GenAI spans and metrics.

    :param tracer_provider: defaults to the global one.
    :param meter_provider: defaults to the global one.
    :param capture_content: record the messages sent and the answer (off unless asked for,
        here or with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        capture_content: bool | None = None,
    ):
        from .. import __version__

        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(_TOKEN_BUCKETS),
        )
        self._first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to the first chunk of a streamed answer",
            explicit_bucket_boundaries_advisory=list(_DURATION_BUCKETS),
        )
        if capture_content is None:
            capture_content = os.environ.get(_CONTENT_SWITCH, "").strip().lower() == "true"
        self.capture_content = capture_content

    # -- span life -------------------------------------------------------------------------

    def _start(self, call: Call) -> Span | None:
        span: Span | None = call.state.get(_SPAN_KEY)
        if span is not None or call.state.get(_ATTRIBUTES_KEY) is not None:
            return span
        operation = _OPERATIONS.get(call.operation)
        if operation is None:
            call.state[_ATTRIBUTES_KEY] = {}  # models, raw requests: no GenAI span
            return None
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": _provider(call.model),
        }
        if call.model:
            attributes["gen_ai.request.model"] = call.model
        if call.server_address:
            attributes["server.address"] = call.server_address
        if call.server_port:
            attributes["server.port"] = call.server_port
        call.state[_ATTRIBUTES_KEY] = dict(attributes)  # the metrics' attributes
        body = call.body or {}
        for field, name in _REQUEST_ATTRIBUTES:
            value = body.get(field)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[name] = value
        stop = body.get("stop")
        if isinstance(stop, str):
            attributes["gen_ai.request.stop_sequences"] = (stop,)
        elif isinstance(stop, Sequence) and all(isinstance(item, str) for item in stop):
            attributes["gen_ai.request.stop_sequences"] = tuple(stop)
        if self.capture_content:
            content = (
                _responses_input(body) if call.operation == "responses" else body.get("messages")
            )
            if content is None:
                content = body.get("input")  # embeddings' input
            if content is not None:
                attributes["gen_ai.input.messages"] = _json(content)
        name = f"{operation} {call.model}" if call.model else operation
        span = self._tracer.start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
        call.state[_SPAN_KEY] = span
        return span

    def _end(
        self,
        call: Call,
        *,
        result: Any,
        error: str | None,
        detail: str = "",
        cancelled: bool = False,
    ) -> None:
        span: Span | None = call.state.pop(_SPAN_KEY, None)
        metric_attributes: dict[str, Any] | None = call.state.get(_ATTRIBUTES_KEY)
        if not metric_attributes:
            return
        # Ended once: the on_error after a failed stream's on_stream_end finds nothing to do.
        call.state[_ATTRIBUTES_KEY] = {}
        metric_attributes = dict(metric_attributes)
        response_model = getattr(result, "model", None) if result is not None else None
        if isinstance(response_model, str) and response_model:
            metric_attributes["gen_ai.response.model"] = response_model
        if error is not None:
            metric_attributes["error.type"] = error
        usage = getattr(result, "usage", None)
        if span is not None:
            if result is not None:
                span.set_attributes(self._response_attributes(result))
            if error is not None:
                span.set_attribute("error.type", error)
                span.set_status(Status(StatusCode.ERROR, detail or error))
            elif cancelled:
                span.set_attribute("routmy.cancelled", True)
            span.end()
        self._duration.record(time.monotonic() - call.started, metric_attributes)
        if usage is not None:
            for kind, count in (("input", _input_tokens(usage)), ("output", _output_tokens(usage))):
                if isinstance(count, int):
                    self._tokens.record(count, {**metric_attributes, "gen_ai.token.type": kind})

    def _response_attributes(self, result: Any) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        response_id = getattr(result, "id", None)
        if isinstance(response_id, str) and response_id:
            attributes["gen_ai.response.id"] = response_id
        model = getattr(result, "model", None)
        if isinstance(model, str) and model:
            attributes["gen_ai.response.model"] = model
        if isinstance(result, Response):
            reason = _finish_reason(result)
            if reason is not None:
                attributes["gen_ai.response.finish_reasons"] = (reason,)
            if self.capture_content:
                attributes["gen_ai.output.messages"] = _json([_output_message(result)])
        choices = getattr(result, "choices", None)
        if isinstance(choices, list):
            reasons = [c.finish_reason for c in choices if getattr(c, "finish_reason", None)]
            if reasons:
                attributes["gen_ai.response.finish_reasons"] = tuple(reasons)
            if self.capture_content:
                attributes["gen_ai.output.messages"] = _json(
                    [choice.message.to_param() for choice in choices]
                )
        usage = getattr(result, "usage", None)
        for count, name in (
            (_input_tokens(usage), "gen_ai.usage.input_tokens"),
            (_output_tokens(usage), "gen_ai.usage.output_tokens"),
        ):
            if isinstance(count, int):
                attributes[name] = count
        cost = getattr(usage, "cost", None)
        if isinstance(cost, (int, float)) and not isinstance(cost, bool):
            attributes["routmy.usage.cost"] = cost
        return attributes

    # -- hooks -----------------------------------------------------------------------------

    def on_request(
        self, call: Call, *, attempt: int, method: str, url: str, headers: Mapping[str, str]
    ) -> None:
        self._start(call)

    def on_retry(
        self, call: Call, *, attempt: int, reason: str, wait: float, error: BaseException
    ) -> None:
        span: Span | None = call.state.get(_SPAN_KEY)
        if span is not None:
            span.add_event(
                "gen_ai.client.retry",
                {
                    "routmy.attempt": attempt + 1,
                    "routmy.retry.reason": reason,
                    "routmy.retry.wait": wait,
                },
            )

    def on_success(self, call: Call, *, result: Any, elapsed: float) -> None:
        self._end(call, result=result, error=None)

    def on_error(self, call: Call, *, error: BaseException, elapsed: float) -> None:
        self._start(call)  # an error before the first attempt still gets its span
        if not isinstance(error, Exception):
            # CancelledError (the caller gave up), KeyboardInterrupt: not errors of the call.
            self._end(call, result=None, error=None, cancelled=True)
            return
        status = getattr(error, "status_code", None)
        code = getattr(error, "code", None)
        ok = isinstance(status, int) and 200 <= status < 300
        if ok and isinstance(code, (int, str)):
            kind = str(code)  # a 200 holding an error (a failed response): the error's code
        elif isinstance(status, int) and not ok:
            kind = str(status)
        else:
            kind = type(error).__name__  # a 200 that is not the answer: what was wrong
        self._end(call, result=None, error=kind, detail=str(error))

    def on_stream_end(self, call: Call, summary: StreamSummary) -> None:
        span: Span | None = call.state.get(_SPAN_KEY)
        metric_attributes = call.state.get(_ATTRIBUTES_KEY)
        if summary.time_to_first_event is not None:
            if span is not None:
                span.set_attribute(
                    "gen_ai.response.time_to_first_chunk", summary.time_to_first_event
                )
            if metric_attributes:
                self._first_chunk.record(summary.time_to_first_event, metric_attributes)
        if span is not None:
            span.set_attribute("routmy.stream.chunks", summary.chunks)
            span.set_attribute("routmy.stream.outcome", summary.outcome)
        if summary.outcome == "done":
            self._end(call, result=summary.result, error=None)
            return
        if summary.outcome == "cancelled":
            self._end(call, result=None, error=None, cancelled=True)
            return
        error = summary.error
        kind = type(error).__name__ if error is not None else summary.outcome
        self._end(call, result=None, error=kind, detail=str(error) if error else summary.outcome)


def _input_tokens(usage: Any) -> Any:
    """Chat's ``prompt_tokens``, else the Responses API's ``input_tokens``."""
    count = getattr(usage, "prompt_tokens", None)
    return count if count is not None else getattr(usage, "input_tokens", None)


def _output_tokens(usage: Any) -> Any:
    count = getattr(usage, "completion_tokens", None)
    return count if count is not None else getattr(usage, "output_tokens", None)


# An incomplete response's reason, in chat's finish_reason words.
_INCOMPLETE_REASONS = {"max_output_tokens": "length", "max_tokens": "length"}


def _finish_reason(response: Response) -> str | None:
    """A Responses ``status`` as a chat ``finish_reason`` (see the module docstring)."""
    status = response.status
    if status == "completed":
        calls = any(isinstance(item, ResponseFunctionToolCall) for item in response.output)
        return "tool_calls" if calls else "stop"
    if status == "incomplete":
        details = response.incomplete_details
        reason = details.reason if details is not None else None
        return _INCOMPLETE_REASONS.get(reason, reason) if reason else "incomplete"
    if status == "failed":
        return "error"
    if status == "cancelled":
        return "cancelled"
    return None  # queued or in progress (a background response): not finished


def _responses_input(body: Mapping[str, Any]) -> list[Any] | None:
    """A Responses request's ``instructions`` and ``input`` as a list of messages."""
    messages: list[Any] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        messages.append({"role": "system", "content": instructions})
    given = body.get("input")
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    elif isinstance(given, Sequence):
        messages.extend(given)
    return messages or None


def _output_message(response: Response) -> dict[str, Any]:
    """The output as one assistant message: its text, and its function calls."""
    message: dict[str, Any] = {"role": "assistant", "content": response.output_text}
    calls = [
        {
            "id": item.call_id,
            "type": "function",
            "function": {"name": item.name, "arguments": item.arguments},
        }
        for item in response.output
        if isinstance(item, ResponseFunctionToolCall)
    ]
    if calls:
        message["tool_calls"] = calls
    return message


def _json(value: Any) -> str:
    try:
        return msgspec.json.encode(value, enc_hook=_plain).decode()
    except (TypeError, msgspec.EncodeError):
        return str(value)


def _plain(value: Any) -> Any:
    to_param = getattr(value, "to_param", None)
    if callable(to_param):
        return to_param()
    raise TypeError(type(value).__name__)


_installed: OpenTelemetryHooks | None = None


def instrument(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    *,
    capture_content: bool | None = None,
) -> OpenTelemetryHooks:
    """Trace and measure every call of every client (until :func:`uninstrument`).

    Calling it again replaces the providers. Returns the hooks it installed.
    """
    global _installed
    hooks = OpenTelemetryHooks(
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
        capture_content=capture_content,
    )
    current = _hooks.global_hooks()
    others = [h for h in (current.hooks if current else ()) if h is not _installed]
    _hooks.set_global_hooks([*others, hooks])
    _installed = hooks
    return hooks


def uninstrument() -> None:
    """Stop what :func:`instrument` started (per-client hooks stay)."""
    global _installed
    current = _hooks.global_hooks()
    _hooks.set_global_hooks([h for h in (current.hooks if current else ()) if h is not _installed])
    _installed = None
