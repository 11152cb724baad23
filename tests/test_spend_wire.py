"""A spend limit on a real client against MockRoutmy on 127.0.0.1 (answering as rout.my does:
no cost in ``usage``, no prices in ``/v1/models``): each attempt reserves before it is sent,
refusals send nothing, settlements follow the answers."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from routmy_async import (
    AsyncRoutmy,
    Call,
    Hooks,
    Price,
    SpendLimit,
    SpendLimitError,
)
from routmy_async.testing import MockRoutmy

MESSAGES = [{"role": "user", "content": "hello there"}]
CHAT = "/v1/chat/completions"


def chat_sent(mock: MockRoutmy) -> int:
    return sum(1 for request in mock.requests if request.path.endswith("/chat/completions"))


def models_read(mock: MockRoutmy) -> int:
    return sum(1 for request in mock.requests if request.path.endswith("/models"))


def client_for(mock: MockRoutmy, limit: SpendLimit, **options: Any) -> AsyncRoutmy:
    return AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, spend_limit=limit, **options)


class Watch(Hooks):
    """Checks the limit at every attempt about to be sent, and keeps each call's units."""

    def __init__(self, limit: SpendLimit):
        self.limit = limit
        self.highest = Decimal(0)
        self.units: list[Decimal | None] = []

    def on_request(self, call: Call, **_: Any) -> None:
        totals = self.limit.spend.units
        assert totals is not None
        self.highest = max(self.highest, totals.spent + totals.reserved)

    def on_success(self, call: Call, **_: Any) -> None:
        if call.model is not None:  # not the models list the limit reads
            self.units.append(call.units)

    def on_stream_end(self, call: Call, summary: Any) -> None:
        self.units.append(call.units)


async def test_256_concurrent_requests_never_pass_the_limit():
    """256 requests at once under a limit that fits about twenty worst cases: the ones that
    fit are sent and answered, the others are refused with SpendLimitError before anything
    is sent, spent + reserved never passes the limit, and the models list is read once."""
    limit = SpendLimit(max_units=3_000)
    watch = Watch(limit)
    async with MockRoutmy(latency=0.05) as mock, client_for(mock, limit, hooks=[watch]) as client:

        async def one() -> Any:
            return await client.chat.completions.create(
                model="mock/echo", messages=MESSAGES, max_tokens=100
            )

        results = await asyncio.gather(*(one() for _ in range(256)), return_exceptions=True)
        answered = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, SpendLimitError)]
        assert len(answered) + len(refused) == 256
        assert 5 <= len(answered) < 256
        assert chat_sent(mock) == len(answered)  # none sent that did not fit
        assert models_read(mock) == 1
        assert watch.highest <= 3_000
        spend = client.spend
        assert spend is not None and spend.units is not None
        assert spend.units.reserved == 0
        assert spend.units.spent == sum(r.usage.total_tokens for r in answered)  # x1
        assert spend.refused == len(refused)
        error = refused[0]
        assert error.model == "mock/echo" and error.unit == "units" and error.missing is None
        assert error.limit == 3_000 and error.estimate > 100
        assert error.spent + error.reserved + error.estimate > error.limit


async def test_a_refused_request_fits_again_once_answers_settle():
    """Reservations are given back to real usage: requests one after another keep going
    long after the sum of their worst cases passed the limit."""
    limit = SpendLimit(max_units=300)
    async with MockRoutmy() as mock, client_for(mock, limit) as client:
        used = 0
        for _ in range(20):  # 20 worst cases of ~150 units: ten times the limit
            result = await client.chat.completions.create(
                model="mock/echo", messages=MESSAGES, max_tokens=100
            )
            assert result.usage is not None
            used += result.usage.total_tokens
        assert client.spend is not None and client.spend.units is not None
        assert client.spend.units.spent == used


async def test_an_unknown_model_is_refused_with_nothing_sent():
    """A model the models list does not have cannot be priced: refused, naming the model and
    what is missing, and no chat request reaches the server."""
    async with MockRoutmy() as mock, client_for(mock, SpendLimit(max_units=10**6)) as client:
        with pytest.raises(SpendLimitError) as caught:
            await client.chat.completions.create(
                model="nobody/knows", messages=MESSAGES, max_tokens=10
            )
        assert caught.value.model == "nobody/knows"
        assert caught.value.missing == "token_multiplier"
        assert "nobody/knows" in str(caught.value)
        assert chat_sent(mock) == 0


async def test_a_dollar_limit_without_prices_is_refused():
    """rout.my lists no prices: a dollar limit refuses a model nobody priced (fail closed)."""
    async with MockRoutmy() as mock, client_for(mock, SpendLimit(max_dollars=1)) as client:
        with pytest.raises(SpendLimitError) as caught:
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES, max_tokens=5)
        assert caught.value.missing == "price" and caught.value.unit == "dollars"
        assert chat_sent(mock) == 0


async def test_a_dollar_limit_with_the_users_prices():
    """Prices given per million tokens price the answer's usage exactly, with no models list
    read (nothing else is needed)."""
    limit = SpendLimit(max_dollars="0.01", prices={"mock/echo": Price("1", "2")})
    async with MockRoutmy() as mock, client_for(mock, limit) as client:
        result = await client.chat.completions.create(
            model="mock/echo", messages=MESSAGES, max_tokens=50
        )
        usage = result.usage
        assert usage is not None
        expected = (usage.prompt_tokens * 1 + usage.completion_tokens * 2) / Decimal(10**6)
        assert client.spend is not None and client.spend.dollars is not None
        assert client.spend.dollars.spent == expected
        assert models_read(mock) == 0


async def test_a_server_reported_cost_settles_a_dollar_limit():
    """A server that lists prices and reports usage.cost (the "openrouter" flavor): the
    reported cost is what the dollar limit counts."""
    async with (
        MockRoutmy(flavor="openrouter") as mock,
        client_for(mock, SpendLimit(max_dollars=1)) as client,
    ):
        result = await client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=MESSAGES, max_tokens=50
        )
        cost = result.usage.cost  # type: ignore[union-attr]
        assert client.spend is not None and client.spend.dollars is not None
        assert client.spend.dollars.spent == Decimal(str(cost))


async def test_each_retry_reserves_and_a_500_is_counted_in_full():
    """A 500 may come after the work was done: its attempt counts its whole reservation, and
    the retry reserves again; the call's units (hooks) sum both attempts."""
    limit = SpendLimit(max_units=10_000)
    watch = Watch(limit)
    async with MockRoutmy() as mock, client_for(mock, limit, hooks=[watch]) as client:
        mock.reply_error(500, "upstream failed", type="server_error", path=CHAT)
        with_retry = client.with_options(max_retries=1)
        result = await with_retry.chat.completions.create(
            model="mock/echo", messages=MESSAGES, max_tokens=100
        )
        assert chat_sent(mock) == 2
        spend = client.spend
        assert spend is not None and spend.units is not None
        worst = spend.units.spent - result.usage.total_tokens  # type: ignore[union-attr]
        assert worst > 100  # the first attempt's whole worst case
        assert watch.units == [spend.units.spent]


async def test_a_429_gives_its_reservation_back():
    """A 429 is refused before any work: its attempt counts nothing."""
    limit = SpendLimit(max_units=10_000)
    async with MockRoutmy() as mock, client_for(mock, limit, max_retries=1) as client:
        mock.reply_error(
            429, "slow down", type="rate_limit_error", headers={"Retry-After": "0"}, path=CHAT
        )
        result = await client.chat.completions.create(
            model="mock/echo", messages=MESSAGES, max_tokens=100
        )
        assert chat_sent(mock) == 2
        assert client.spend is not None and client.spend.units is not None
        assert client.spend.units.spent == result.usage.total_tokens  # type: ignore[union-attr]


async def test_a_cancelled_request_settles_in_full():
    """A request cancelled while the server works on it may be billed whole: its whole
    reservation is spent."""
    limit = SpendLimit(max_units=10_000)
    async with MockRoutmy() as mock, client_for(mock, limit) as client:
        mock.reply_default(path=CHAT, stall_before_headers=30)
        task = asyncio.create_task(
            client.chat.completions.create(model="mock/echo", messages=MESSAGES, max_tokens=100)
        )
        for _ in range(500):
            await asyncio.sleep(0.01)
            if chat_sent(mock):
                break
        totals = limit.spend.units
        assert totals is not None and totals.reserved > 100
        held = totals.reserved
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        after = limit.spend.units
        assert after is not None
        assert after.reserved == 0 and after.spent == held


async def test_a_stream_settles_from_its_usage_chunk_and_a_left_stream_in_full():
    """A stream read to its end counts its usage chunk (times the model's multiplier, 2 for
    mock/reasoner); a stream its reader leaves before its usage came counts its whole
    reservation."""
    limit = SpendLimit(max_units=10_000)
    watch = Watch(limit)
    async with MockRoutmy() as mock, client_for(mock, limit, hooks=[watch]) as client:
        stream = await client.chat.completions.create(
            model="mock/reasoner",
            messages=MESSAGES,
            max_tokens=100,
            stream=True,
            stream_options={"include_usage": True},
        )
        async with stream:
            chunks = [chunk async for chunk in stream]
        usage = chunks[-1].usage
        assert usage is not None
        totals = limit.spend.units
        assert totals is not None
        assert totals.spent == 2 * usage.total_tokens
        assert watch.units == [totals.spent]
        first = totals.spent
        mock.reply_default(path=CHAT, chunk_delay=0.5)  # left before its usage arrives
        left = await client.chat.completions.create(
            model="mock/reasoner", messages=MESSAGES, max_tokens=100, stream=True
        )
        async with left:
            async for _ in left:
                break
        totals = limit.spend.units
        assert totals is not None and totals.reserved == 0
        assert totals.spent - first > 2 * 100  # the whole worst case, times 2


async def test_no_max_tokens_uses_the_limits_default_and_warns_once():
    """Without max_tokens the reservation uses default_output_tokens: warned once, counted
    in the snapshot; without a default such a request is refused before it is sent."""
    limit = SpendLimit(max_units=10_000, default_output_tokens=500)
    async with MockRoutmy() as mock, client_for(mock, limit) as client:
        with pytest.warns(UserWarning, match="default_output_tokens=500"):
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        await client.chat.completions.create(model="mock/echo", messages=MESSAGES)  # no warning
        assert client.spend is not None and client.spend.defaulted_outputs == 2
    strict = SpendLimit(max_units=10_000)
    async with MockRoutmy() as mock, client_for(mock, strict) as client:
        with pytest.raises(SpendLimitError) as caught:
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES)
        assert caught.value.missing == "max_tokens"
        assert chat_sent(mock) == 0


async def test_one_limit_shared_by_several_clients_and_derived_ones():
    """The same SpendLimit given to two clients (and used through with_options) is one limit:
    every client's spend adds up in it."""
    limit = SpendLimit(max_units=10_000)
    async with (
        MockRoutmy() as mock,
        client_for(mock, limit) as first,
        client_for(mock, limit) as second,
    ):
        derived = first.with_options(timeout=30)
        for client in (first, second, derived):
            await client.chat.completions.create(
                model="mock/echo", messages=MESSAGES, max_tokens=10
            )
        totals = limit.spend.units
        assert totals is not None and totals.spent == 3 * 5  # 5 tokens an answer
        assert derived.spend == first.spend == second.spend == limit.spend
        assert first.hooks == ()  # the limit is no hook of the user's


async def test_a_client_without_a_limit_reports_none_and_a_wrong_type_is_refused():
    """client.spend is None without a limit; a spend_limit that is not a SpendLimit fails at
    construction, naming what to pass."""
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            assert client.spend is None
        with pytest.raises(TypeError, match="SpendLimit"):
            AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url, spend_limit=5)  # type: ignore[arg-type]


async def test_a_models_list_that_cannot_be_read_refuses_and_is_read_again_later():
    """The models list fails to load: the request is refused (fail closed), and the next
    request reads the list again."""
    async with MockRoutmy() as mock, client_for(mock, SpendLimit(max_units=10_000)) as client:
        mock.reply_error(404, "no list here", path="/v1/models")
        with pytest.raises(SpendLimitError) as caught:
            await client.chat.completions.create(model="mock/echo", messages=MESSAGES, max_tokens=5)
        assert caught.value.missing == "token_multiplier"
        assert chat_sent(mock) == 0
        await client.chat.completions.create(model="mock/echo", messages=MESSAGES, max_tokens=5)
        assert models_read(mock) == 2 and chat_sent(mock) == 1


async def test_embeddings_reserve_their_prompt_alone():
    """Embeddings generate nothing: their reservation is the prompt, settled to its usage
    times the model's multiplier (0.1 for mock/embed)."""
    limit = SpendLimit(max_units=10_000)
    async with MockRoutmy() as mock, client_for(mock, limit) as client:
        result = await client.embeddings.create(model="mock/embed", input="some words here")
        totals = limit.spend.units
        assert totals is not None and result.usage is not None
        assert totals.spent == Decimal(result.usage.total_tokens) / 10


async def test_opentelemetry_spans_carry_each_calls_units():
    """A span of a call under a units limit has routmy.usage.units: what the limit counted
    for it (the tokens times the model's multiplier, 2 for mock/reasoner)."""
    pytest.importorskip("opentelemetry.sdk")
    from ._otel_helpers import Telemetry

    telemetry = Telemetry()
    limit = SpendLimit(max_units=10_000)
    try:
        async with (
            MockRoutmy() as mock,
            client_for(mock, limit, hooks=[telemetry.hooks()]) as client,
        ):
            result = await client.chat.completions.create(
                model="mock/reasoner", messages=MESSAGES, max_tokens=100
            )
        assert result.usage is not None
        chat_spans = [
            span
            for span in telemetry.finished()
            if span.attributes.get("gen_ai.request.model") == "mock/reasoner"
        ]
        assert len(chat_spans) == 1
        assert chat_spans[0].attributes["routmy.usage.units"] == 2 * result.usage.total_tokens
    finally:
        telemetry.tracer_provider.shutdown()
        telemetry.meter_provider.shutdown()


async def test_create_many_uses_the_limit_to_its_end_and_refuses_the_rest():
    """create_many under a client's limit: an item refused while others are in flight waits
    for their settlements and goes on; once nothing fits, each item left is refused on its
    own with SpendLimitError (nothing sent), the list stays aligned with the input, and the
    finished results are kept."""
    limit = SpendLimit(max_units=2_000)
    async with MockRoutmy(latency=0.02) as mock, client_for(mock, limit) as client:
        requests = [
            {"model": "mock/echo", "messages": MESSAGES, "max_tokens": 100} for _ in range(600)
        ]
        results = await client.chat.completions.create_many(requests, concurrency=32)
        assert len(results) == 600
        answered = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, SpendLimitError)]
        assert len(answered) + len(refused) == 600
        assert chat_sent(mock) == len(answered)
        totals = limit.spend.units
        assert totals is not None and totals.reserved == 0 and totals.spent <= 2_000
        # Refusals only once what is left cannot hold one worst case (~150 units).
        assert refused and totals.left < 200
        assert len(answered) == totals.spent / 5  # 5 units an answer


async def test_a_derived_client_with_a_limit_of_its_own_reserves_in_both():
    """with_options(spend_limit=...) gives a job its own budget inside the client's: its
    attempts count in both, the parent's own calls only in the parent's, and the inner limit
    refuses while the outer still has room."""
    team = SpendLimit(max_units=100_000)
    job = SpendLimit(max_units=300)
    async with MockRoutmy() as mock, client_for(mock, team) as client:
        worker = client.with_options(spend_limit=job)
        await worker.chat.completions.create(model="mock/echo", messages=MESSAGES, max_tokens=100)
        await client.chat.completions.create(model="mock/echo", messages=MESSAGES, max_tokens=100)
        job_totals, team_totals = job.spend.units, team.spend.units
        assert job_totals is not None and team_totals is not None
        assert job_totals.spent == 5 and team_totals.spent == 10
        assert worker.spend == job.spend and client.spend == team.spend
        with pytest.raises(SpendLimitError) as caught:
            await worker.chat.completions.create(
                model="mock/echo", messages=MESSAGES, max_tokens=1_000
            )
        assert caught.value.limit == 300
        assert team.spend.units is not None and team.spend.units.reserved == 0
        assert chat_sent(mock) == 2


async def test_a_derived_limit_on_a_client_without_one():
    """A client with no limit of its own: a with_options client with one is limited, and the
    parent's calls are not."""
    job = SpendLimit(max_units=10)
    async with MockRoutmy() as mock:
        async with AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url) as client:
            worker = client.with_options(spend_limit=job)
            with pytest.raises(SpendLimitError):
                await worker.chat.completions.create(
                    model="mock/echo", messages=MESSAGES, max_tokens=100
                )
            await client.chat.completions.create(
                model="mock/echo", messages=MESSAGES, max_tokens=100
            )
            assert client.spend is None and chat_sent(mock) == 1
            with pytest.raises(TypeError, match="SpendLimit"):
                client.with_options(spend_limit=10)  # type: ignore[arg-type]
