"""The stream mechanism, API-neutral: the SSE decoder (bytes -> events, pure), the base stream
with its one ``__anext__`` loop, the raw stream of any SSE endpoint, and the context a stream
is handed."""
