"""Backoff, jitter and the server's Retry-After headers (pure)."""

from __future__ import annotations

import email.utils

from routmy_async._http import _retry


def test_retryable_statuses_and_x_should_retry_override():
    """408/409/429/5xx retry, 4xx do not, and x-should-retry wins either way."""
    for status in (408, 409, 429, 500, 502, 503, 504):
        assert _retry.should_retry_status(status, {})
    for status in (400, 401, 403, 404, 405, 422):
        assert not _retry.should_retry_status(status, {})
    assert _retry.should_retry_status(400, {"x-should-retry": "true"})
    assert not _retry.should_retry_status(503, {"x-should-retry": "false"})


def test_backoff_grows_and_is_capped_with_equal_jitter():
    """Delays double per attempt, stay within [base/2, base] and never pass the cap."""
    low = [_retry.backoff_delay(a, rand=lambda: 0.0) for a in range(8)]
    high = [_retry.backoff_delay(a, rand=lambda: 1.0) for a in range(8)]
    assert low[:4] == [0.25, 0.5, 1.0, 2.0]
    assert high[:4] == [0.5, 1.0, 2.0, 4.0]
    assert max(high) == _retry.MAX_DELAY


def test_retry_after_seconds_ms_and_http_date():
    """retry-after-ms beats Retry-After; seconds and HTTP dates both parse."""
    now = 1_700_000_000.0
    assert _retry.retry_after_seconds({"retry-after-ms": "250"}, now=now) == 0.25
    assert _retry.retry_after_seconds({"retry-after": "3"}, now=now) == 3.0
    date = email.utils.formatdate(now + 5, usegmt=True)
    assert _retry.retry_after_seconds({"retry-after": date}, now=now) == 5.0
    assert _retry.retry_after_seconds({"retry-after": "nonsense"}, now=now) is None
    assert _retry.retry_after_seconds({"retry-after-ms": "x", "retry-after": "-1"}, now=now) is None
    assert _retry.retry_after_seconds({}, now=now) is None


def test_retry_delay_uses_server_wait_and_refuses_too_long():
    """A server's wait is used (plus small jitter); past the cap the caller gives up."""
    assert _retry.retry_delay(0, {"retry-after": "2"}, now=0, rand=lambda: 0.0) == 2.0
    assert _retry.retry_delay(0, {"retry-after": "2"}, now=0, rand=lambda: 1.0) == 2.2
    assert _retry.retry_delay(3, {}, now=0, rand=lambda: 1.0) == 4.0
    assert _retry.retry_after_too_long({"retry-after": "3600"}, now=0)
    assert not _retry.retry_after_too_long({"retry-after": "30"}, now=0)


def test_jitter_spreads_a_storm():
    """A hundred clients retrying at once do not come back at the same instant."""
    delays = {round(_retry.backoff_delay(2), 3) for _ in range(100)}
    assert len(delays) > 50
