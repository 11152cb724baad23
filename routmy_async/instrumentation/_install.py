"""instrument() and uninstrument(): one OpenTelemetryHooks among the global hooks."""

from __future__ import annotations

from opentelemetry import metrics, trace

from .. import _hooks
from ._hooks import OpenTelemetryHooks

_installed: OpenTelemetryHooks | None = None


def instrument(
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
    *,
    capture_content: bool | None = None,
) -> OpenTelemetryHooks:
    """Trace and measure every call of every client (until :func:`uninstrument`).

    Calling it again replaces the providers. Returns the hooks it installed, which read
    ``OTEL_SEMCONV_STABILITY_OPT_IN`` now: set it before this call to follow the latest GenAI
    conventions (``gen_ai_latest_experimental``).
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
