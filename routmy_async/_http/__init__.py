"""The wire: the only code that touches aiohttp (the transport, TLS, the end of a body, and
aiohttp's private internals in one place), with the pure policies it applies (retry, the rate
budget, redaction)."""
