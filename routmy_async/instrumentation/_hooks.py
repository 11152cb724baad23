"""OpenTelemetryHooks: one CLIENT span and a few histogram records per GenAI call."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from opentelemetry import metrics, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from .._exceptions import APIStatusError
from .._hooks import Call, Hooks, StreamSummary
from ..types.responses import Response
from . import _messages, _semconv

_SCOPE = "routmy_async"
_CONTENT_SWITCH = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
_SPAN_KEY = "otel.span"
_ATTRIBUTES_KEY = "otel.attributes"


class OpenTelemetryHooks(Hooks):
    """Hooks that turn calls into GenAI spans and metrics.

    :param tracer_provider: defaults to the global one.
    :param meter_provider: defaults to the global one.
    :param capture_content: record the messages sent and the answer (off unless asked for,
        here or with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``).

    Which version of the GenAI conventions they follow is read from
    ``OTEL_SEMCONV_STABILITY_OPT_IN`` when they are made: with ``gen_ai_latest_experimental``
    in it, the latest (see the module's docstring).
    """

    def __init__(
        self,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
        capture_content: bool | None = None,
    ):
        from .. import __version__

        self._latest = _semconv.latest_experimental()
        self._tracer = trace.get_tracer(_SCOPE, __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter(_SCOPE, __version__, meter_provider=meter_provider)
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(_semconv.DURATION_BUCKETS),
        )
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Measures number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(
                _semconv.TOKEN_BUCKETS if self._latest else _semconv.SHIPPED_TOKEN_BUCKETS
            ),
        )
        self._first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to the first chunk of a streamed answer",
            explicit_bucket_boundaries_advisory=list(_semconv.DURATION_BUCKETS),
        )
        if capture_content is None:
            capture_content = os.environ.get(_CONTENT_SWITCH, "").strip().lower() == "true"
        self.capture_content = capture_content

    # -- span life -------------------------------------------------------------------------

    def _start(self, call: Call) -> Span | None:
        span: Span | None = call.state.get(_SPAN_KEY)
        if span is not None or call.state.get(_ATTRIBUTES_KEY) is not None:
            return span
        operation = _semconv.OPERATIONS.get(call.operation)
        if operation is None:
            call.state[_ATTRIBUTES_KEY] = {}  # models, raw requests: no GenAI span
            return None
        attributes: dict[str, Any] = {"gen_ai.operation.name": operation}
        if self._latest:
            # The service this client talks to; where rout.my routes the model is ours to name.
            attributes["gen_ai.provider.name"] = _semconv.router_provider_name(call.server_address)
            provider = _semconv.model_provider(call.model)
            if provider is not None:
                attributes["routmy.model.provider"] = provider
        else:
            attributes["gen_ai.provider.name"] = _semconv.legacy_provider_name(call.model)
        if call.model:
            attributes["gen_ai.request.model"] = call.model
        if call.server_address:
            attributes["server.address"] = call.server_address
        if call.server_port:
            attributes["server.port"] = call.server_port
        call.state[_ATTRIBUTES_KEY] = dict(attributes)  # the metrics' attributes
        body = call.body or {}
        for field, name in _semconv.REQUEST_ATTRIBUTES:
            value = body.get(field)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[name] = value
        stop = body.get("stop")
        if isinstance(stop, str):
            attributes["gen_ai.request.stop_sequences"] = (stop,)
        elif isinstance(stop, Sequence) and all(isinstance(item, str) for item in stop):
            attributes["gen_ai.request.stop_sequences"] = tuple(stop)
        if self.capture_content:
            attributes.update(self._request_content(call.operation, body))
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
        usage: Any = None,
        detail: str = "",
        cancelled: bool = False,
    ) -> None:
        """End the call's span and record its metrics, once.

        ``usage`` is for a call that failed with its usage known but no result (a stream
        that ended in ``response.failed``); a result brings its own.
        """
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
        if result is not None:
            usage = getattr(result, "usage", None)
        if span is not None:
            if result is not None:
                span.set_attributes(self._response_attributes(result))
            elif usage is not None:
                span.set_attributes(_usage_attributes(usage))
            if call.units is not None:  # counted by a spend limit, every attempt summed
                span.set_attribute("routmy.usage.units", float(call.units))
            if error is not None:
                span.set_attribute("error.type", error)
                span.set_status(Status(StatusCode.ERROR, detail or error))
            elif cancelled:
                span.set_attribute("routmy.cancelled", True)
            span.end()
        self._duration.record(time.monotonic() - call.started, metric_attributes)
        if usage is not None:
            # The conventions give gen_ai.client.token.usage no error.type: tokens are tokens.
            token_attributes = {k: v for k, v in metric_attributes.items() if k != "error.type"}
            for kind, count in (("input", _input_tokens(usage)), ("output", _output_tokens(usage))):
                if isinstance(count, int):
                    self._tokens.record(count, {**token_attributes, "gen_ai.token.type": kind})

    def _request_content(self, operation: str, body: Mapping[str, Any]) -> dict[str, str]:
        """The captured request: instructions apart, and the messages in parts, with the
        opt-in; the request's own shapes without it."""
        attributes: dict[str, str] = {}
        if self._latest:
            instructions = _messages.system_instructions(operation, body)
            if instructions is not None:
                attributes["gen_ai.system_instructions"] = _messages.to_json(instructions)
            content = _messages.input_messages(operation, body)
        else:
            content = _messages.request_content(operation, body)
        if content is not None:
            attributes["gen_ai.input.messages"] = _messages.to_json(content)
        return attributes

    def _response_attributes(self, result: Any) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        response_id = getattr(result, "id", None)
        if isinstance(response_id, str) and response_id:
            attributes["gen_ai.response.id"] = response_id
        model = getattr(result, "model", None)
        if isinstance(model, str) and model:
            attributes["gen_ai.response.model"] = model
        if isinstance(result, Response):
            reason = _semconv.responses_finish_reason(result)
            if reason is not None:
                attributes["gen_ai.response.finish_reasons"] = (reason,)
        choices = getattr(result, "choices", None)
        if isinstance(choices, list):
            reasons = [c.finish_reason for c in choices if getattr(c, "finish_reason", None)]
            if reasons:
                attributes["gen_ai.response.finish_reasons"] = tuple(reasons)
        if self.capture_content:
            if self._latest:
                reason = attributes.get("gen_ai.response.finish_reasons", (None,))[0]
                content = _messages.output_messages(result, reason)
            else:
                content = _messages.answer_content(result)
            if content is not None:
                attributes["gen_ai.output.messages"] = _messages.to_json(content)
        attributes.update(_usage_attributes(getattr(result, "usage", None)))
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
        self._end(
            call,
            # A 200 Response whose status is "failed" is returned to the caller, yet its call
            # failed: its id, model and usage are still the answer's.
            result=_failed_response(error),
            error=_semconv.error_type(error),
            detail=str(error),
        )

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
        self._end(
            call,
            result=summary.result,  # a response.failed's Response: its id, model and usage
            usage=summary.usage,  # ... or the usage alone: the tokens were spent
            error=_semconv.error_type(error) if error is not None else summary.outcome,
            detail=str(error) if error is not None else summary.outcome,
        )


def _failed_response(error: BaseException) -> Response | None:
    """The Response a 2xx answer held when the server failed it (``status: "failed"``)."""
    if not isinstance(error, APIStatusError) or not 200 <= error.http_status < 300:
        return None
    body = error.body
    if not isinstance(body, dict) or body.get("object") != "response":
        return None
    try:
        return _decode_response(msgspec.json.encode(body))
    except (msgspec.MsgspecError, TypeError):
        return None


_decode_response = msgspec.json.Decoder(Response).decode


def _usage_attributes(usage: Any) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
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


def _input_tokens(usage: Any) -> Any:
    """Chat's ``prompt_tokens``, else the Responses API's ``input_tokens``."""
    count = getattr(usage, "prompt_tokens", None)
    return count if count is not None else getattr(usage, "input_tokens", None)


def _output_tokens(usage: Any) -> Any:
    count = getattr(usage, "completion_tokens", None)
    return count if count is not None else getattr(usage, "output_tokens", None)
