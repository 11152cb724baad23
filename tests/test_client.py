"""AsyncRoutmy: configuration, the key, lifecycle, with_options and the pool it owns."""

from __future__ import annotations

import asyncio
import gc
import logging
import warnings

import aiohttp
import pytest

from routmy_async import AsyncRoutmy, RoutmyError, Timeout
from routmy_async.testing import MockRoutmy
from tests.conftest import eventually

MESSAGES = [{"role": "user", "content": "hi"}]


def test_config_from_environment(monkeypatch):
    """ROUTMY_API_KEY and ROUTMY_BASE_URL are read when no argument is given."""
    monkeypatch.setenv("ROUTMY_API_KEY", "sk-env-secret")
    monkeypatch.setenv("ROUTMY_BASE_URL", "http://127.0.0.1:9/v1/")
    client = AsyncRoutmy()
    assert client.base_url == "http://127.0.0.1:9/v1"
    assert client.api_key_set


async def test_arguments_beat_environment_and_default_base_url(monkeypatch):
    """Arguments win over the environment; the default base URL is rout.my's."""
    monkeypatch.setenv("ROUTMY_API_KEY", "sk-env")
    monkeypatch.delenv("ROUTMY_BASE_URL", raising=False)
    assert AsyncRoutmy(api_key="sk-arg").base_url == "https://api.rout.my/v1"
    async with (  # the key sent is the argument's: a server taking only that one answers
        MockRoutmy(api_key="sk-arg") as mock,
        AsyncRoutmy(api_key="sk-arg", base_url=mock.base_url, max_retries=0) as client,
    ):
        await client.models.list()


async def test_missing_key_is_a_clear_error_before_sending(monkeypatch, mock):
    """No key anywhere: RoutmyError naming ROUTMY_API_KEY, and nothing reaches the server."""
    monkeypatch.delenv("ROUTMY_API_KEY", raising=False)
    async with AsyncRoutmy(base_url=mock.base_url) as client:
        with pytest.raises(RoutmyError, match="ROUTMY_API_KEY"):
            await client.chat.completions.create(model="p/m", messages=MESSAGES)
    assert mock.requests == []


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"base_url": "ftp://x"}, ValueError, "base_url"),
        ({"base_url": 5}, TypeError, "base_url"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_connections": 0}, ValueError, "max_connections"),
        ({"timeout": -3}, ValueError, "timeout"),
        ({"timeout": "soon"}, TypeError, "timeout"),
        ({"default_headers": {"X-A": "b\r\nEvil: 1"}}, ValueError, "CR, LF"),
        ({"session": object()}, TypeError, "session"),
        ({"verify": 1}, TypeError, "verify"),
        ({"api_key": ""}, TypeError, "api_key"),
        ({"api_key": "sk\nx"}, ValueError, "api_key"),
    ],
)
def test_bad_constructor_arguments_name_the_problem(kwargs, exc, match):
    """Each wrong constructor argument raises with its name in the message."""
    with pytest.raises(exc, match=match):
        AsyncRoutmy(**{"api_key": "sk-x", **kwargs})


def test_timeout_forms():
    """A number bounds each wait (as in openai-python); a Timeout is kept; None: no limits."""
    assert AsyncRoutmy(api_key="k", timeout=30).timeout == Timeout(
        connect=10.0, read=30.0, total=None, pool=30.0
    )
    custom = Timeout(connect=1, read=2, total=3, stream_idle=4)
    assert AsyncRoutmy(api_key="k", timeout=custom).timeout is custom
    assert AsyncRoutmy(api_key="k", timeout=None).timeout.total is None
    assert custom.idle == 4 and Timeout(read=7).idle == 7
    with pytest.raises(ValueError, match="stream_idle"):
        Timeout(stream_idle=0)
    assert "stream_idle=4" in repr(custom)


def test_construction_does_no_io_and_no_ssl_work(monkeypatch):
    """Building a client creates no session, no connector and no SSL context (the official
    SDK builds one per client); all of that waits for the first request."""
    import ssl

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("built at construction")

    monkeypatch.setattr(ssl, "create_default_context", forbidden)
    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", forbidden)
    monkeypatch.setattr(aiohttp, "ClientSession", forbidden)
    monkeypatch.setattr(aiohttp, "TCPConnector", forbidden)
    clients = [AsyncRoutmy(api_key="sk-x") for _ in range(10)]
    assert not any(client._transport.has_session for client in clients)


def test_key_never_in_repr(monkeypatch):
    """repr shows whether a key is set, never the key."""
    client = AsyncRoutmy(api_key="sk-very-secret-value")
    assert "sk-very-secret-value" not in repr(client)
    assert "api_key=<set>" in repr(client)
    monkeypatch.delenv("ROUTMY_API_KEY", raising=False)
    assert "api_key=<missing>" in repr(AsyncRoutmy())


async def test_use_after_close_raises(mock):
    """A closed client refuses requests with a RuntimeError that says so."""
    client = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url)
    await client.close()
    assert client.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.chat.completions.create(model="p/m", messages=MESSAGES)
    await client.close()  # twice is fine


async def test_entering_twice_raises(mock):
    """async with on an open client is an error."""
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        with pytest.raises(RuntimeError, match="entered twice"):
            await client.__aenter__()


async def test_the_pool_connects_lazily_and_closes_with_the_client(mock):
    """Nothing connects before the first request, and close() closes the kept-alive
    connection."""
    client = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url)
    await asyncio.sleep(0.05)
    assert mock.open_connections == 0
    await client.models.list()
    await client.models.list()
    assert mock.open_connections == 1  # kept alive between the requests and after them
    await client.close()
    assert await eventually(lambda: mock.open_connections == 0)


async def test_borrowed_session_is_never_closed(mock):
    """A session= passed in stays open after the client closes."""
    async with aiohttp.ClientSession() as session:
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, session=session
        ) as client:
            await client.models.list()
        assert not session.closed


async def test_unclosed_client_warns_when_collected(mock):
    """A client dropped without close() warns with ResourceWarning and frees its sockets."""
    # Garbage left by earlier tests is theirs to answer for: collect it first, so the
    # collection below finds only this client.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    client = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url)
    await client.models.list()
    with pytest.warns(ResourceWarning, match="unclosed"):
        del client
        gc.collect()


async def test_with_options_shares_the_pool_and_overrides(mock):
    """with_options keeps the pool, changes settings, and closing it leaves the pool open."""
    async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
        await client.models.list()
        fast = client.with_options(timeout=5, max_retries=0, default_headers={"X-Team": "a"})
        assert fast.rate_limit is client.rate_limit  # one pool, one budget
        assert fast.max_retries == 0 and fast.timeout.read == 5
        assert client.max_retries == 2
        await fast.models.list()
        assert mock.requests[-1].headers["X-Team"] == "a"
        assert "X-Team" not in mock.requests[0].headers
        assert mock.connections_seen == 1
        await fast.close()
        await client.models.list()
        with pytest.raises(RuntimeError):
            await fast.models.list()
    with pytest.raises(RuntimeError):
        client.with_options(max_retries=1)


def test_with_options_rejects_bad_values():
    """with_options checks its arguments like the constructor."""
    client = AsyncRoutmy(api_key="k")
    with pytest.raises(ValueError, match="max_retries"):
        client.with_options(max_retries=-2)


def test_tls_off_and_plain_http_log_warnings(caplog):
    """verify=False and a non-loopback http:// base URL each log a warning."""
    with caplog.at_level(logging.WARNING, logger="routmy_async"):
        AsyncRoutmy(api_key="k", verify=False)
        AsyncRoutmy(api_key="k", base_url="http://example.com/v1")
        AsyncRoutmy(api_key="k", base_url="http://127.0.0.1:1/v1")
    messages = [r.getMessage() for r in caplog.records]
    assert any("verification is OFF" in m for m in messages)
    assert sum("clear text" in m for m in messages) == 1


async def test_default_query_and_headers_are_sent(mock):
    """default_query and default_headers reach the server on every request."""
    async with AsyncRoutmy(
        api_key=mock.api_key,
        base_url=mock.base_url,
        default_query={"team": "x"},
        default_headers={"X-App": "t"},
    ) as client:
        await client.models.list(extra_query={"page": "2"}, extra_headers={"X-Call": "1"})
    request = mock.requests[0]
    assert request.query == {"team": "x", "page": "2"}
    assert request.headers["X-App"] == "t" and request.headers["X-Call"] == "1"
    assert request.headers["Authorization"] == "Bearer [REDACTED]"


async def test_models_list_rejects_unknown_arguments(client):
    """models.list() takes only per-call options."""
    with pytest.raises(TypeError, match="unexpected"):
        await client.models.list(limit=3)


async def test_pool_is_bounded_by_max_connections():
    """No more than max_connections requests reach the server at once."""
    import asyncio

    async with MockRoutmy(latency=0.05) as mock:
        async with AsyncRoutmy(
            api_key=mock.api_key, base_url=mock.base_url, max_connections=3
        ) as client:
            await asyncio.gather(*(client.models.list() for _ in range(12)))
        assert mock.peak_in_flight == 3
        assert mock.connections_seen == 3


def test_using_a_client_from_another_loop_is_a_clear_error():
    """A client whose pool was made in one event loop refuses to run in another, saying why."""
    import asyncio

    async def scenario() -> tuple[AsyncRoutmy, str]:
        async with MockRoutmy() as mock:
            client = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url)
            await client.models.list()
            return client, mock.base_url

    client, _ = asyncio.run(scenario())

    async def second() -> None:
        with pytest.raises(RuntimeError, match="another event loop"):
            await client.models.list()

    asyncio.run(second())
    with pytest.warns(ResourceWarning):
        client.__del__()


async def test_redact_hides_every_secret_the_client_knows():
    """Text a user's code builds loses the key, a key in default_headers and proxy credentials."""
    async with AsyncRoutmy(
        api_key="sk-main-123456",
        base_url="http://127.0.0.1:9/v1",
        default_headers={"x-api-key": "sk-other-654321"},
        proxy="http://user:proxy-pass-777@127.0.0.1:3128",
    ) as client:
        text = client.redact(
            "tried sk-main-123456 then sk-other-654321 via proxy-pass-777; model provider/m"
        )
    assert text == "tried [REDACTED] then [REDACTED] via [REDACTED]; model provider/m"
