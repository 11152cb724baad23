"""routmy_async: the asyncio-first Python SDK for rout.my, an OpenAI-compatible LLM router."""

from ._client import AsyncRoutmy, __version__
from ._config import NOT_GIVEN, NotGiven, Timeout
from ._content import image_part, text_part
from ._exceptions import (
    APIConnectionError,
    APIResponseValidationError,
    APIStatusError,
    APIStreamError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ContentParseError,
    InternalServerError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    RoutmyError,
    UnprocessableEntityError,
)
from ._ratelimit import RateLimit
from ._streaming import ChatCompletionStream
from ._tools import FunctionTool, function_tool

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIResponseValidationError",
    "APIStatusError",
    "APIStreamError",
    "APITimeoutError",
    "AsyncRoutmy",
    "AuthenticationError",
    "BadRequestError",
    "ChatCompletionStream",
    "ConflictError",
    "ContentParseError",
    "FunctionTool",
    "InternalServerError",
    "NotFoundError",
    "NotGiven",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "RateLimit",
    "RateLimitError",
    "RoutmyError",
    "Timeout",
    "UnprocessableEntityError",
    "__version__",
    "function_tool",
    "image_part",
    "text_part",
]
