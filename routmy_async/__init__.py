"""routmy_async: the asyncio-first Python SDK for rout.my, an OpenAI-compatible LLM router."""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from ._client import AsyncRoutmy, __version__
from ._config import NOT_GIVEN, NotGiven, Timeout
from ._exceptions import (
    APICertificateError,
    APIConnectionError,
    APIProxyError,
    APIResponseValidationError,
    APIStatusError,
    APIStreamError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentParseError,
    FieldValidationError,
    InternalServerError,
    InvalidJSONError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    RoutmyError,
    SpendLimitError,
    UnprocessableEntityError,
)
from ._hooks import Call, Hooks, StreamSummary
from ._http._ratelimit import RateLimit
from ._lazy import lazy_names as _lazy_names

if _TYPE_CHECKING:
    from ._auto_concurrency import AutoConcurrency
    from ._batchfile import (
        BatchCheck,
        BatchFileError,
        BatchStop,
        BatchSummary,
        check_batch_file,
        run_batch_file,
    )
    from ._content import image_part, text_part
    from ._http_reply import HTTPReply, http_reply_for
    from ._spend import Price, SpendLimit, SpendSnapshot, SpendTotals
    from ._streaming._raw import RawStream, ServerSentEvent
    from ._tools import FunctionTool, function_tool
    from .resources.chat._stream import ChatCompletionStream
    from .resources.responses._stream import ResponseStream

# Loaded on first use: a program that never streams, runs a batch file, defines a tool,
# builds a content part or sets a spend limit does not pay for their modules (time and
# memory at import, and the memory of a process that only sends plain requests).
_LAZY = {
    "AutoConcurrency": "._auto_concurrency",
    "BatchCheck": "._batchfile",
    "BatchFileError": "._batchfile",
    "BatchStop": "._batchfile",
    "BatchSummary": "._batchfile",
    "check_batch_file": "._batchfile",
    "run_batch_file": "._batchfile",
    "ResponseStream": ".resources.responses._stream",
    "HTTPReply": "._http_reply",
    "http_reply_for": "._http_reply",
    "ChatCompletionStream": ".resources.chat._stream",
    "RawStream": "._streaming._raw",
    "ServerSentEvent": "._streaming._raw",
    "FunctionTool": "._tools",
    "function_tool": "._tools",
    "image_part": "._content",
    "Price": "._spend",
    "SpendLimit": "._spend",
    "SpendSnapshot": "._spend",
    "SpendTotals": "._spend",
    "text_part": "._content",
}


__getattr__, __dir__ = _lazy_names(__name__, globals(), _LAZY)


__all__ = [
    "NOT_GIVEN",
    "APICertificateError",
    "APIConnectionError",
    "APIProxyError",
    "APIResponseValidationError",
    "APIStatusError",
    "APIStreamError",
    "APITimeoutError",
    "AsyncRoutmy",
    "AuthenticationError",
    "AutoConcurrency",
    "BadRequestError",
    "BatchCheck",
    "BatchFileError",
    "BatchStop",
    "BatchSummary",
    "Call",
    "ChatCompletionStream",
    "ConflictError",
    "ContentParseError",
    "FieldValidationError",
    "FunctionTool",
    "HTTPReply",
    "Hooks",
    "InternalServerError",
    "InvalidJSONError",
    "NotFoundError",
    "NotGiven",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "Price",
    "RateLimit",
    "RateLimitError",
    "RawStream",
    "ResponseStream",
    "RoutmyError",
    "ServerSentEvent",
    "SpendLimit",
    "SpendLimitError",
    "SpendSnapshot",
    "SpendTotals",
    "StreamSummary",
    "Timeout",
    "UnprocessableEntityError",
    "__version__",
    "check_batch_file",
    "function_tool",
    "http_reply_for",
    "image_part",
    "run_batch_file",
    "text_part",
]
