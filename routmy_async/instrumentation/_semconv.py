"""The GenAI semantic conventions as this package applies them: which version, and the values
that do not depend on it (operation names, request attributes, ``error.type``, finish reasons).

Two versions, chosen once per :class:`~routmy_async.instrumentation.OpenTelemetryHooks` (so
once per :func:`~routmy_async.instrumentation.instrument`), from the conventions' own switch:
https://github.com/open-telemetry/semantic-conventions/blob/v1.41.0/docs/gen-ai/README.md —
instrumentations that emitted an older version keep it by default, and emit the latest one
instead when ``OTEL_SEMCONV_STABILITY_OPT_IN`` (a comma-separated list) holds
``gen_ai_latest_experimental``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from .._exceptions import APIStatusError, APIStreamError
from ..types.responses import Response, ResponseFunctionToolCall

OPT_IN_VARIABLE = "OTEL_SEMCONV_STABILITY_OPT_IN"
LATEST_EXPERIMENTAL = "gen_ai_latest_experimental"

# Our operation names -> the GenAI convention's ``gen_ai.operation.name``. The Responses API
# is ``chat``: the conventions have no other name for it.
OPERATIONS = {
    "chat": "chat",
    "responses": "chat",
    "embeddings": "embeddings",
    "images": "generate_content",
}

# Request fields -> span attributes, where given (numbers only).
REQUEST_ATTRIBUTES = (
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

# The explicit bucket boundaries the conventions advise (gen-ai-metrics.md, unchanged from
# v1.36.0 to v1.41.0). The default mode keeps the token boundaries this package shipped
# first, which stop at 4 Mi: changing a histogram's boundaries breaks its dashboards.
DURATION_BUCKETS = (
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
TOKEN_BUCKETS = (
    1,
    4,
    16,
    64,
    256,
    1024,
    4096,
    16384,
    65536,
    262144,
    1048576,
    4194304,
    16777216,
    67108864,
)
SHIPPED_TOKEN_BUCKETS = TOKEN_BUCKETS[:12]

# rout.my's own hosts; any other server speaks the OpenAI API on someone else's behalf.
_ROUTMY_DOMAIN = "rout.my"
ROUTMY_PROVIDER = "routmy"
# The conventions' name for the OpenAI API "flavour" of telemetry, which v1.41.0 asks for
# when the instrumentation knows no better (gen-ai-spans.md, note on gen_ai.provider.name):
# the server's address says which service it really was.
OPENAI_COMPATIBLE_PROVIDER = "openai"


def latest_experimental(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether ``OTEL_SEMCONV_STABILITY_OPT_IN`` asks for the latest GenAI conventions."""
    values = environ.get(OPT_IN_VARIABLE, "")
    return LATEST_EXPERIMENTAL in {value.strip().lower() for value in values.split(",")}


def model_provider(model: str | None) -> str | None:
    """The provider prefix of a ``provider/model-id`` (where rout.my routes it), if any."""
    if model and "/" in model:
        prefix = model.split("/", 1)[0]
        return prefix or None
    return None


def legacy_provider_name(model: str | None) -> str:
    """``gen_ai.provider.name`` as the default mode sets it: the model's provider prefix,
    else the router."""
    return model_provider(model) or ROUTMY_PROVIDER


def router_provider_name(host: str | None) -> str:
    """``gen_ai.provider.name`` with the opt-in: the service the client talks to."""
    if host:
        host = host.lower().rstrip(".")
        if host == _ROUTMY_DOMAIN or host.endswith("." + _ROUTMY_DOMAIN):
            return ROUTMY_PROVIDER
    return OPENAI_COMPATIBLE_PROVIDER


def error_type(error: BaseException) -> str:
    """``error.type`` for a failed call, the same for a stream as for a plain call.

    A non-2xx answer is its status (``"429"``). An error the server put inside a 2xx answer
    — an error body, a failed Response, a stream's error frame or ``response.failed`` — is
    the server's ``code`` (``"502"``, ``"server_error"``), or ``_OTHER`` (the conventions'
    fallback) when it gave none. Anything else is the exception's class name
    (``APIConnectionError``, ``APITimeoutError``, ``APIResponseValidationError``).
    """
    status = getattr(error, "status_code", None)
    if isinstance(status, int) and not 200 <= status < 300:
        return str(status)
    if isinstance(error, (APIStatusError, APIStreamError)):
        code = error.code
        return str(code) if code is not None and code != "" else "_OTHER"
    return type(error).__name__


# An incomplete response's reason, in chat's finish_reason words.
_INCOMPLETE_REASONS = {"max_output_tokens": "length", "max_tokens": "length"}


def responses_finish_reason(response: Response) -> str | None:
    """A Responses ``status`` as a chat ``finish_reason``: ``completed`` is ``stop``
    (``tool_calls`` when the output holds a ``function_call``), ``incomplete`` its reason
    (``max_output_tokens`` as ``length``), ``failed`` is ``error``."""
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
