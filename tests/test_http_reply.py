"""http_reply_for: what an app answers its own caller when a call to the router failed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routmy_async import (
    APICertificateError,
    APIConnectionError,
    APIProxyError,
    APIResponseValidationError,
    APIStatusError,
    APIStreamError,
    APITimeoutError,
    BadRequestError,
    ContentParseError,
    HTTPReply,
    RateLimitError,
    http_reply_for,
)


def status_error(status: int, headers: dict[str, str] | None = None) -> APIStatusError:
    return APIStatusError(
        f"router said {status}", status_code=status, headers=headers or {}, request_id="req-1"
    )


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (RateLimitError("slow", status_code=429), 429, "rate_limited"),
        (BadRequestError("bad", status_code=400), 400, "refused_by_upstream"),
        (status_error(403), 403, "refused_by_upstream"),
        (status_error(413), 413, "refused_by_upstream"),
        (status_error(408), 504, "upstream_timeout"),  # the router timed out: not the caller
        (status_error(504), 504, "upstream_timeout"),
        (status_error(405), 502, "upstream_failed"),  # how the app spoke to the router
        (status_error(431), 502, "upstream_failed"),
        (status_error(401), 502, "upstream_refused_the_service"),
        (status_error(402), 502, "upstream_refused_the_service"),
        (status_error(500), 502, "upstream_failed"),
        (status_error(503), 502, "upstream_failed"),
        (status_error(503, {"retry-after": "3"}), 503, "upstream_unavailable"),
        (APITimeoutError("read timed out"), 504, "upstream_timeout"),
        (APIConnectionError("reset by peer"), 502, "upstream_unreachable"),
        (APICertificateError("expired"), 502, "upstream_unreachable"),
        (
            APIProxyError("proxy.corp refused", proxy="http://proxy.corp:3128"),
            502,
            "upstream_unreachable",
        ),
        (
            APIConnectionError(
                "POST http://x/v1: the client was closed while this request was in flight"
            ),
            503,
            "shutting_down",
        ),
        (APIStreamError("provider died", code=502), 502, "upstream_failed"),
        (
            APIResponseValidationError("bad json", body=b"{", status_code=200),
            502,
            "upstream_bad_answer",
        ),
        (ContentParseError("does not fit", content="x"), 502, "upstream_bad_answer"),
        (RuntimeError("boom"), 500, "internal_error"),
    ],
)
def test_each_failure_gets_the_status_that_says_what_happened(error, status, kind):
    reply = http_reply_for(error)
    assert isinstance(reply, HTTPReply)
    assert (reply.status_code, reply.content["error"]["type"]) == (status, kind)
    assert json.loads(reply.body()) == reply.content


def test_a_refusal_carries_the_routers_reason_and_request_id():
    reply = http_reply_for(BadRequestError("model not found", status_code=400, request_id="r-9"))
    assert reply.content["error"] == {
        "message": "model not found",
        "type": "refused_by_upstream",
        "upstream_status": 400,
        "request_id": "r-9",
    }


def test_connection_errors_do_not_name_hosts_or_proxies():
    error = APIProxyError(
        "the proxy http://proxy.corp:3128 refused CONNECT api.rout.my",
        proxy="http://proxy.corp:3128",
    )
    message = http_reply_for(error).content["error"]["message"]
    assert "proxy.corp" not in message and "rout.my" not in message


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, "7"),
        ({"retry-after": "0.2"}, "1"),  # rounded up: a wait cut short fails again
        ({"retry-after-ms": "1500"}, "2"),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "99999999999999999999"}, "86400"),  # no wait longer than a day
        ({}, None),
    ],
)
def test_a_rate_limit_passes_the_wait_on(headers, expected):
    reply = http_reply_for(RateLimitError("slow", status_code=429, headers=headers))
    assert reply.status_code == 429
    assert reply.headers.get("Retry-After") == expected


@given(
    status=st.integers(min_value=100, max_value=599),
    retry_after=st.one_of(st.none(), st.text(max_size=12), st.floats(allow_nan=True).map(str)),
)
def test_any_status_error_gets_an_http_error_status_and_a_json_body(status, retry_after):
    headers = {} if retry_after is None else {"retry-after": retry_after}
    reply = http_reply_for(status_error(status, headers))
    assert 400 <= reply.status_code <= 599
    assert reply.content["error"]["upstream_status"] == status
    json.loads(reply.body())
    wait = reply.headers.get("Retry-After")
    assert wait is None or (wait.isdigit() and reply.status_code in (429, 503))
