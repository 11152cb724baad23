"""Status codes and bodies map to the right typed error, in one place."""

from __future__ import annotations

import pytest

from routmy_async import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)
from routmy_async._exceptions import status_error


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (402, PaymentRequiredError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (405, APIStatusError),
        (409, ConflictError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (499, APIStatusError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
    ],
)
def test_status_maps_to_class(status, cls):
    """Each documented status gives its class; others give APIStatusError."""
    error = status_error(status, b"", {})
    assert type(error) is cls and error.status_code == status


def test_service_error_body_with_string_code():
    """rout.my's body: message, type and a string code are all kept."""
    body = (
        b'{"error": {"message": "Invalid request body", "type": "invalid_request_error", '
        b'"code": "Bad Request"}}'
    )
    error = status_error(400, body, {"x-request-id": "req-1"})
    assert error.message == "Invalid request body"
    assert error.type == "invalid_request_error" and error.code == "Bad Request"
    assert error.request_id == "req-1"
    assert error.body == {
        "error": {
            "message": "Invalid request body",
            "type": "invalid_request_error",
            "code": "Bad Request",
        }
    }
    assert str(error) == "400 [Bad Request] Invalid request body (request id req-1)"


def test_numeric_code_metadata_and_error_id():
    """A numeric code, metadata and error_id (as the request id) are kept."""
    body = (
        b'{"error": {"message": "upstream", "code": 502, "metadata": {"provider": "x"}, '
        b'"error_id": "e-9"}}'
    )
    error = status_error(502, body, {})
    assert error.code == 502 and error.metadata == {"provider": "x"}
    assert error.request_id == "e-9"


def test_html_body_still_gives_the_status_class():
    """An HTML error page maps by status and its text appears in the message."""
    error = status_error(
        503, b"<html><body>Service Unavailable</body></html>", {}, reason="Service Unavailable"
    )
    assert isinstance(error, InternalServerError)
    assert "Service Unavailable" in error.message
    assert error.body.startswith("<html>")


def test_empty_body_uses_reason():
    """An empty body falls back to the HTTP reason phrase."""
    error = status_error(429, b"", {}, reason="Too Many Requests")
    assert isinstance(error, RateLimitError) and error.message == "Too Many Requests"


def test_flat_error_string_shape():
    """{"error": "text"} bodies (another router shape) keep the text."""
    error = status_error(400, b'{"error": "bad thing", "code": 7}', {})
    assert error.message == "bad thing" and error.code == 7


def test_non_dict_json_body():
    """A JSON body that is not an object still maps to the class."""
    error = status_error(500, b"[1, 2]", {}, reason="Internal Server Error")
    assert isinstance(error, InternalServerError) and error.message == "Internal Server Error"
