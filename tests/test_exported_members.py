"""The public namespaces export exactly their __all__, sorted, and nothing is missing."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize(
    "module_name", ["routmy_async", "routmy_async.types", "routmy_async.testing"]
)
def test_all_is_sorted_and_complete(module_name):
    """__all__ is sorted, every name in it exists, and every public name is in it."""
    module = importlib.import_module(module_name)
    exported = module.__all__
    # isort-style order, as ruff keeps it: CONSTANTS, then Classes, then functions.
    assert exported == sorted(
        exported, key=lambda n: (0 if n.isupper() else 1 if n[0].isupper() else 2, n)
    )
    for name in exported:
        assert hasattr(module, name), name
    public = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, type(importlib))
    }
    assert public - set(exported) == set()


def test_contract_names_exist():
    """Every name API.md promises is importable."""
    import routmy_async
    import routmy_async.types as types

    for name in [
        "AsyncRoutmy",
        "Timeout",
        "RoutmyError",
        "APIConnectionError",
        "APITimeoutError",
        "APIStatusError",
        "BadRequestError",
        "AuthenticationError",
        "PaymentRequiredError",
        "PermissionDeniedError",
        "NotFoundError",
        "ConflictError",
        "UnprocessableEntityError",
        "RateLimitError",
        "InternalServerError",
        "APIStreamError",
        "APIResponseValidationError",
        "function_tool",
        "image_part",
        "text_part",
        "ChatCompletionStream",
    ]:
        assert hasattr(routmy_async, name), name
    for name in [
        "ChatCompletion",
        "Choice",
        "ChatCompletionMessage",
        "ToolCall",
        "Usage",
        "ChatCompletionChunk",
        "Model",
    ]:
        assert hasattr(types, name), name
    assert issubclass(routmy_async.APITimeoutError, routmy_async.APIConnectionError)
    assert issubclass(routmy_async.RateLimitError, routmy_async.APIStatusError)
