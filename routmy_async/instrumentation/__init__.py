"""OpenTelemetry for routmy_async, following the GenAI semantic conventions (extra ``otel``).

::

    from routmy_async.instrumentation import instrument
    instrument()                      # every client: spans and metrics through the global providers

    # or for one client:
    from routmy_async.instrumentation import OpenTelemetryHooks
    client = AsyncRoutmy(hooks=[OpenTelemetryHooks()])

A CLIENT span per chat, Responses, embeddings or image call, named ``{operation} {model}``
(``chat provider/model-id``), carries the request parameters, the response id, model, finish
reasons and token usage, ``server.address``/``server.port`` and, on failure, ``error.type``:
a non-2xx answer's status, the server's ``code`` for an error inside a 2xx answer (a body, a
failed Response, a stream's error frame; ``_OTHER`` without one), else the exception's class
name, the same for a stream as for a plain call.

Two versions of the GenAI conventions, chosen when the hooks are made: by default what this
package has always recorded (v1.37.0's names; ``gen_ai.provider.name`` is the model id's
provider prefix; captured messages in the API's own JSON); with
``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``, v1.41.0: ``gen_ai.provider.name``
is the router (``routmy`` for rout.my, ``openai`` for another OpenAI-compatible server), the
model's provider prefix ``routmy.model.provider``, Responses ``instructions`` are
``gen_ai.system_instructions``, captured messages are role and ``parts``, and the token-usage
buckets go up to 64 Mi as the conventions list them. The observability guide has the table.

A Responses API call (``client.responses``) is a ``chat`` operation: the convention has no
other name for it. ``max_output_tokens`` is ``gen_ai.request.max_tokens``; the usage's
``input_tokens``/``output_tokens`` are the token counts; ``gen_ai.response.finish_reasons`` is
the response's ``status`` in chat's words: ``completed`` is ``stop`` (``tool_calls`` when the
output holds a ``function_call``), ``incomplete`` is its ``incomplete_details.reason`` with
``max_output_tokens`` as ``length`` (``content_filter`` as is), ``failed`` is ``error`` and
``cancelled`` is ``cancelled``. A failed Response (returned, with a 200) still records its id,
model and usage. Captured content by default: ``instructions`` (a ``system`` message) and
``input`` (a string as one ``user`` message) are ``gen_ai.input.messages``; the output text
(and function calls, as ``tool_calls``) is ``gen_ai.output.messages``.
Under a client's ``spend_limit``, ``routmy.usage.units`` is the quota units the limit counted
for the call (attempts summed), beside ``routmy.usage.cost`` (a cost the server reported).
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

from ._hooks import OpenTelemetryHooks
from ._install import instrument, uninstrument

__all__ = ["OpenTelemetryHooks", "instrument", "uninstrument"]
