"""Ray Data steps: callable classes for ``Dataset.map_batches`` that call the model per row.

Ray Data builds one instance per actor (``compute=ActorPoolStrategy(size=N)``) and calls it
once per batch. Each instance owns an event loop in a thread of its own and one
``AsyncRoutmy`` built on that loop, inside the actor: the client (and its key) is never
pickled, and every batch runs through ``create_many`` on the same pool of connections.

Why a loop in a thread rather than Ray's async actors: it behaves the same on every Ray
version (an async ``__call__`` needs a recent Ray Data and must be an async generator there),
and the loop's life is ours so the client can be closed on it at shutdown. The cost is one
thread hop per batch.

The loop, the client and the key are ``_runtime``'s. Closing: ``weakref.finalize``
closes the client and stops the loop when the instance is collected, or at interpreter exit.
On a graceful actor exit Ray Data (2.55 on) drops the instance in ``__ray_shutdown__``,
while Ray can still carry the budget's last calls; nothing may keep it alive past that (see
``_drop_tracebacks``). ``ray.kill`` (a dataset cut short by ``take(n)`` or a failure) runs no
Python code at all; the process ends and the OS closes its sockets.
"""

from __future__ import annotations

import typing
import warnings
import weakref
from collections.abc import Awaitable, Mapping
from typing import Any, Literal, TypeVar, cast

import msgspec

from ..._auto_concurrency import AutoConcurrency, auto_concurrency_for
from ..._batch import collect_in_order, run_many
from ..._checks import check_count
from ..._client import AsyncRoutmy
from ..._config import Timeout
from ..._deprecation import RoutmyDeprecationWarning
from ..._exceptions import ContentParseError, RoutmyError
from ..._spend import SpendLimit
from ..._structured import parse_completion
from ...types._base import _plain_value
from ...types.chat import ChatCompletion
from ._batches import Batch, plain
from ._limit import ClusterRateLimit
from ._runtime import BudgetSource, Runtime, check_headers, read_api_key
from ._schema import Shape, broken_type, fits, parsed_shape

__all__ = ["ChatStep", "EmbeddingStep"]

T = TypeVar("T")
OnError = Literal["record", "raise"]


class _Step:
    """What both steps share: options, the runtime, batches in and out, failed rows."""

    def __init__(
        self,
        *,
        model: str,
        max_in_flight: int | str,
        max_concurrency: int | None,
        max_retries: int,
        on_error: OnError,
        budget: BudgetSource | None,
        base_url: str | None,
        timeout: float | Timeout | None,
        api_key_env: str,
        default_headers: Mapping[str, str] | None,
        output_prefix: str,
        params: dict[str, Any],
    ):
        if not isinstance(model, str) or not model:
            raise ValueError(f"model must be a non-empty string, not {model!r}")
        # One adaptive level per actor, kept from batch to batch: what one batch learnt of
        # the quota, the next starts from.
        auto = auto_concurrency_for(max_in_flight, max_concurrency, name="max_in_flight")
        if auto is None:
            check_count("max_in_flight", max_in_flight, 1)
        if on_error not in ("record", "raise"):
            raise ValueError(f"on_error must be 'record' or 'raise', not {on_error!r}")
        if not isinstance(output_prefix, str):
            raise TypeError("output_prefix must be a string")
        if "api_key" in params:
            raise TypeError(
                "api_key is not an option: arguments travel through Ray in the clear; set "
                f"{api_key_env} in the environment of the Ray nodes instead"
            )
        if params.get("stream"):
            raise ValueError("a Ray Data step does not stream: leave stream out")
        check_headers("default_headers", default_headers)
        check_headers("extra_headers", params.get("extra_headers"))
        self._model = model
        self._max_in_flight: int | AutoConcurrency = (
            cast(int, max_in_flight) if auto is None else auto
        )
        self._record = on_error == "record"
        self._prefix = output_prefix
        self._params = params
        self._budget = budget
        key = read_api_key(api_key_env)
        options: dict[str, Any] = {"max_retries": max_retries}
        if timeout is not None:
            options["timeout"] = timeout
        if default_headers is not None:
            options["default_headers"] = dict(default_headers)

        def make_client(limit: ClusterRateLimit | None, spend: SpendLimit | None) -> AsyncRoutmy:
            return AsyncRoutmy(
                api_key=key, base_url=base_url, rate_limit=limit, spend_limit=spend, **options
            )

        self._runtime = Runtime(make_client, budget)
        self._finalizer = weakref.finalize(self, self._runtime.close)

    def close(self) -> None:
        """Close the client and give back the budget held (also done when the instance is
        collected or the process exits)."""
        self._finalizer()

    @property
    def client(self) -> AsyncRoutmy:
        """This actor's client."""
        return self._runtime.client

    def _redacted(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        return self.client.redact(text)

    async def _with_budget(self, count: int, work: Awaitable[T]) -> T:
        limit = self._runtime.limit
        if limit is not None:
            await limit.start()
            limit.expect(count)
        try:
            return await work
        finally:
            if limit is not None:
                await limit.release()

    def __reduce__(self) -> Any:
        raise TypeError(
            f"a {type(self).__name__} lives in one actor and is never pickled: pass the class "
            "and fn_constructor_kwargs to map_batches"
        )

    def __repr__(self) -> str:
        budget = f", budget={self._budget!r}" if self._budget is not None else ""
        return (
            f"{type(self).__name__}(model={self._model!r}, "
            f"max_in_flight={self._max_in_flight}{budget})"
        )


class ChatStep(_Step):
    """A Ray Data step that asks the model once per row.

    Use it as ``ds.map_batches(ChatStep, fn_constructor_kwargs={...},
    compute=ray.data.ActorPoolStrategy(size=N), batch_format="pyarrow")``. It adds the
    columns ``content``, ``finish_reason``, ``prompt_tokens``, ``completion_tokens``,
    ``cost``, ``request_id`` and ``error`` (``""`` when the row worked), plus ``parsed``
    with a ``response_format``, in the rows' order. A failed row gets its ``error`` and nulls,
    and never costs the other rows of its batch their answers (with ``on_error="record"``).

    :param model: the model id.
    :param messages_column: the column of chat messages (a list of message dicts, or its
        JSON text); ignored when ``prompt_column`` is given.
    :param prompt_column: a column of user prompts (text) to use instead of messages.
    :param system_prompt: a system message put first in every row's messages.
    :param response_format: a msgspec Struct, a Pydantic model or a dict; adds ``parsed``.
    :param max_in_flight: requests in flight per actor (``create_many``'s concurrency; 16), not
        to be confused with ``map_batches(concurrency=...)``, Ray's number of actors; or
        ``"auto"``: a level per actor that finds what the server takes (see
        :class:`~routmy_async.AutoConcurrency`), kept from one batch to the next.
    :param max_concurrency: the ceiling of ``max_in_flight="auto"`` (default 64).
    :param concurrency: the old name of ``max_in_flight`` (deprecated: it warns).
    :param max_retries: retries per request (the client's).
    :param on_error: ``"record"`` puts a failed row's error in ``error``; ``"raise"`` fails
        the batch (and so the Ray task) with the first error.
    :param budget: a ``ClusterBudget`` shared by every actor.
    :param base_url: the API's URL (else ``ROUTMY_BASE_URL``, then rout.my's).
    :param timeout: seconds or a ``Timeout``.
    :param api_key_env: the environment variable holding the key (``<name>_FILE`` may name
        a file holding it instead).
    :param default_headers: headers sent with every request (never a credential).
    :param output_prefix: put before every output column's name.
    :param params: any other ``create`` keyword (``temperature``, ``max_tokens``, ...).
    :raises RoutmyError: no key in the environment.
    :raises ValueError: an option is invalid (a credential among the arguments, ``stream``).
    """

    def __init__(
        self,
        *,
        model: str,
        messages_column: str = "messages",
        prompt_column: str | None = None,
        system_prompt: str | None = None,
        response_format: Any = None,
        max_in_flight: int | Literal["auto"] | None = None,
        max_concurrency: int | None = None,
        concurrency: int | None = None,
        max_retries: int = 2,
        on_error: OnError = "record",
        budget: BudgetSource | None = None,
        base_url: str | None = None,
        timeout: float | Timeout | None = None,
        api_key_env: str = "ROUTMY_API_KEY",
        default_headers: Mapping[str, str] | None = None,
        output_prefix: str = "",
        **params: Any,
    ):
        if system_prompt is not None and not isinstance(system_prompt, str):
            raise TypeError("system_prompt must be a string or None")
        self._column = prompt_column if prompt_column is not None else messages_column
        self._prompts = prompt_column is not None
        self._system = system_prompt
        self._parsed = response_format is not None
        check_portable(response_format, params.get("tools"))
        # Fixed here, before the first batch: every batch's ``parsed`` gets the same type.
        self._parsed_shape = parsed_shape(response_format)
        self._tools = bool(params.get("tools"))
        if response_format is not None:
            params["response_format"] = response_format
        super().__init__(
            model=model,
            max_in_flight=_renamed(max_in_flight, concurrency, 16),
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            on_error=on_error,
            budget=budget,
            base_url=base_url,
            timeout=timeout,
            api_key_env=api_key_env,
            default_headers=default_headers,
            output_prefix=output_prefix,
            params=params,
        )

    def _messages(self, value: Any) -> list[Any]:
        if self._prompts:
            prompt = plain(value)
            if not isinstance(prompt, str) or not prompt:
                raise ValueError(f"the prompt must be non-empty text, not {prompt!r}")
            messages: list[Any] = [{"role": "user", "content": prompt}]
        else:
            if isinstance(value, (str, bytes)):
                try:
                    value = msgspec.json.decode(value)
                except msgspec.DecodeError:
                    raise ValueError("the messages are text but not JSON") from None
            messages = plain(value, drop_none=True)
            if not isinstance(messages, list) or not messages:
                raise ValueError("the messages must be a non-empty list of message dicts")
        if self._system is not None:
            messages.insert(0, {"role": "system", "content": self._system})
        return messages

    def __call__(self, batch: Any) -> Any:
        """Answer every row of ``batch``; return it with the output columns added."""
        rows = Batch(batch)
        values = rows.column(self._column)
        requests: list[dict[str, Any]] = []
        indexes: list[int] = []
        results: list[Any] = [None] * rows.rows
        for index, value in enumerate(values):
            try:
                messages = self._messages(value)
            except ValueError as exc:
                if not self._record:
                    raise
                results[index] = exc
                continue
            requests.append({"model": self._model, "messages": messages, **self._params})
            indexes.append(index)
        completions = self._runtime.run(self._run(requests))
        for index, result in zip(indexes, completions, strict=True):
            results[index] = self._parse(result)
        if any(_is_array(value) for value in values):
            # Ray hands a list-of-structs column over as arrays of dicts, and cannot turn
            # them back into Arrow: give it the same values as plain lists.
            rows.replace(self._column, [plain(value) for value in values])
        columns = self._columns(results)
        _drop_tracebacks(results)
        return rows.extended(columns)

    def _parse(self, result: Any) -> Any:
        # ``create`` parses a Struct or Pydantic format itself; a dict format is decoded as
        # ``parse()`` does, into plain JSON values, and content that is not JSON fails the row.
        if not isinstance(result, ChatCompletion) or not isinstance(
            self._params.get("response_format"), Mapping
        ):
            return result
        try:
            return parse_completion(result, None)
        except ContentParseError as exc:
            if not self._record:
                raise
            return exc

    async def _run(self, requests: list[dict[str, Any]]) -> list[Any]:
        if not requests:
            return []
        return await self._with_budget(
            len(requests),
            self.client.chat.completions.create_many(
                requests, concurrency=self._max_in_flight, return_exceptions=self._record
            ),
        )

    def _columns(self, results: list[Any]) -> dict[str, tuple[Shape, list[Any]]]:
        names: list[tuple[str, Shape]] = [
            ("content", "str"),
            ("finish_reason", "str"),
            ("prompt_tokens", "int"),
            ("completion_tokens", "int"),
            ("cost", "float"),
            ("request_id", "str"),
            ("error", "str"),
        ]
        if self._tools:
            names.append(("tool_calls", "json"))
        if self._parsed:
            names.append(("parsed", self._parsed_shape))
        columns: dict[str, list[Any]] = {name: [] for name, _ in names}
        for result in results:
            row = self._row(result)
            for name, _ in names:
                columns[name].append(row.get(name))
        return {self._prefix + name: (shape, columns[name]) for name, shape in names}

    def _row(self, result: Any) -> dict[str, Any]:
        if isinstance(result, BaseException):
            return {
                "error": self._redacted(result),
                "request_id": getattr(result, "request_id", None),
            }
        row: dict[str, Any] = {"request_id": result.request_id, "error": ""}
        usage = result.usage
        if usage is not None:
            row["prompt_tokens"] = usage.prompt_tokens
            row["completion_tokens"] = usage.completion_tokens
            row["cost"] = usage.cost
        if not result.choices:
            # Usage and an id, but no answer: a row that looked answered would be wrong.
            return self._failed(row, "the response has no choices")
        choice = result.choices[0]
        message = choice.message
        row["content"] = message.content
        row["finish_reason"] = choice.finish_reason
        if self._tools and message.tool_calls:
            row["tool_calls"] = [call.to_param() for call in message.tool_calls]
        if message.content is None and not message.tool_calls:
            # A refusal or a filtered answer: nothing in the row is the answer.
            if message.refusal:
                return self._failed(row, f"the model refused: {message.refusal}")
            return self._failed(
                row, f"the answer has no content (finish_reason {choice.finish_reason!r})"
            )
        if choice.finish_reason == "error" or getattr(result, "error", None) is not None:
            # A provider that failed mid-answer: what content came is cut, not the answer.
            return self._failed(
                row,
                "the provider failed mid-answer (finish_reason 'error' or an error in the "
                "body); the content is cut",
            )
        if self._parsed:
            parsed = message.parsed
            value = None if parsed is None else msgspec.to_builtins(parsed, enc_hook=_plain_value)
            if value is None or not fits(value, self._parsed_shape):
                # ``create`` raises when the content does not parse, so this is a value the
                # column cannot hold as it is: its row fails rather than Arrow reshaping it.
                return self._failed(row, "the parsed answer is null or does not fit its column")
            else:
                row["parsed"] = value
        return row

    def _failed(self, row: dict[str, Any], problem: str) -> dict[str, Any]:
        error = RoutmyError(problem)
        if not self._record:
            raise error
        row["error"] = f"RoutmyError: {problem}"
        return row


def _drop_tracebacks(results: list[Any]) -> None:
    """Forget the tracebacks of a batch's failures once their text is taken.

    A traceback holds the frames it went through, and the frame of ``__call__`` holds the
    list of results holding the exception: a cycle with the step inside, which only the
    garbage collector would free. Ray closes an actor's step when its last reference goes
    (``__ray_shutdown__``), while Ray can still carry the budget's last call; a step kept
    alive by a cycle would be closed at interpreter exit instead, too late for that.
    """
    seen: set[int] = set()
    errors = [result for result in results if isinstance(result, BaseException)]
    while errors:
        error = errors.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        error.__traceback__ = None  # and those of the errors it came from
        errors.extend(link for link in (error.__cause__, error.__context__) if link is not None)


def _renamed(max_in_flight: int | str | None, concurrency: int | None, default: int) -> int | str:
    if concurrency is None:
        return default if max_in_flight is None else max_in_flight
    if max_in_flight is not None:
        raise TypeError("give max_in_flight or its old name concurrency, not both")
    # stacklevel 3: the caller of ChatStep(...) or EmbeddingStep(...), past __init__. Called
    # by Ray in an actor, that caller is Ray's code, whose DeprecationWarnings Python's
    # default filters hide: RoutmyDeprecationWarning is shown wherever it comes from.
    warnings.warn(
        "concurrency= is deprecated since 0.2 and will be removed in 1.0; use max_in_flight= "
        "(requests in flight per actor), which Ray's map_batches(concurrency=...), its number "
        "of actors, no longer shadows",
        RoutmyDeprecationWarning,
        stacklevel=3,
    )
    return concurrency


def check_portable(response_format: Any, tools: Any) -> None:
    """Refuse a ``response_format`` or tool type that reached this process without its fields.

    :raises TypeError: naming the type, why, and what to do instead.
    """
    targets: list[Any] = [response_format]
    if tools is not None and not isinstance(tools, (str, bytes, Mapping)):
        targets.extend(getattr(tool, "arguments_type", tool) for tool in tools)
    for target in list(targets):
        if callable(target) and not isinstance(target, type):
            targets.extend(_hints_of(target))
    for target in targets:
        name = broken_type(target)
        if name is not None:
            raise TypeError(
                f"the msgspec Struct {name!r} reached this Ray worker without its fields: it "
                "was defined in the driver script or a notebook (__main__), and Ray rebuilds "
                "such classes from their source in a way msgspec Structs do not survive. "
                "Define it in a module the workers can import (next to the script, shipped "
                "with runtime_env={'py_modules': [...]} or {'working_dir': ...}), or use a "
                "Pydantic model"
            )


def _hints_of(function: Any) -> list[Any]:
    """A function tool's annotated types, for ``broken_type`` to look into."""
    try:
        hints = typing.get_type_hints(function)
    except NameError as exc:
        # Postponed annotations naming classes of the driver script, which Ray did not send.
        raise TypeError(
            f"the tool {getattr(function, '__name__', function)!r} reached this Ray worker "
            f"without the types its annotations name ({exc}): it was defined in the driver "
            "script or a notebook (__main__). Define it and its types in a module the "
            "workers can import (shipped with runtime_env={'py_modules': [...]})"
        ) from None
    except Exception:
        return []  # not ours to judge: the tool's own checks say what is wrong
    return list(hints.values())


def _is_vector(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(type(item) in (int, float) for item in value)
    )


def _is_array(value: Any) -> bool:
    return hasattr(value, "tolist") and not isinstance(value, (str, bytes, list))


class EmbeddingStep(_Step):
    """A Ray Data step that embeds one text column into a vector column.

    Rows are sent ``inputs_per_request`` at a time, ``max_in_flight`` requests at once per
    actor. It adds ``embedding`` (a list of float32 per row, null when it failed) and
    ``error`` (``""`` when the row worked); a failed request fails only its own rows.

    :param model: the embedding model id.
    :param input_column: the column of texts.
    :param output_column: the name of the vector column.
    :param inputs_per_request: texts per request.
    :param params: any other ``embeddings.create`` keyword (``dimensions``,
        ``encoding_format="base64"``, ...).

    The other options are ``ChatStep``'s.
    """

    def __init__(
        self,
        *,
        model: str,
        input_column: str = "text",
        output_column: str = "embedding",
        inputs_per_request: int = 100,
        max_in_flight: int | Literal["auto"] | None = None,
        max_concurrency: int | None = None,
        concurrency: int | None = None,
        max_retries: int = 2,
        on_error: OnError = "record",
        budget: BudgetSource | None = None,
        base_url: str | None = None,
        timeout: float | Timeout | None = None,
        api_key_env: str = "ROUTMY_API_KEY",
        default_headers: Mapping[str, str] | None = None,
        output_prefix: str = "",
        **params: Any,
    ):
        check_count("inputs_per_request", inputs_per_request, 1)
        self._column = input_column
        self._output = output_column
        self._per_request = inputs_per_request
        super().__init__(
            model=model,
            max_in_flight=_renamed(max_in_flight, concurrency, 4),
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            on_error=on_error,
            budget=budget,
            base_url=base_url,
            timeout=timeout,
            api_key_env=api_key_env,
            default_headers=default_headers,
            output_prefix=output_prefix,
            params=params,
        )

    def __call__(self, batch: Any) -> Any:
        """Embed every row of ``batch``; return it with ``embedding`` and ``error`` added."""
        rows = Batch(batch)
        vectors: list[Any] = [None] * rows.rows
        errors: list[str] = [""] * rows.rows
        texts: list[tuple[int, str]] = []
        for index, value in enumerate(rows.column(self._column)):
            text = plain(value)
            if isinstance(text, str) and text:
                texts.append((index, text))
                continue
            problem = ValueError(f"the input must be non-empty text, not {text!r}")
            if not self._record:
                raise problem
            errors[index] = self._redacted(problem)
        chunks = [
            texts[start : start + self._per_request]
            for start in range(0, len(texts), self._per_request)
        ]
        requests = [
            {"model": self._model, "input": [text for _, text in chunk], **self._params}
            for chunk in chunks
        ]
        answers = self._runtime.run(self._run(requests))
        for chunk, answer in zip(chunks, answers, strict=True):
            if not isinstance(answer, BaseException):
                found = answer.vectors()
                if len(found) == len(chunk) and all(_is_vector(vector) for vector in found):
                    for (index, _), vector in zip(chunk, found, strict=True):
                        vectors[index] = vector
                    continue
                answer = RoutmyError(
                    f"{len(found)} vectors came back for {len(chunk)} inputs"
                    if len(found) != len(chunk)
                    else "an empty vector came back"
                )
            error = self._redacted(answer)
            for index, _ in chunk:
                errors[index] = error
        _drop_tracebacks(answers)
        return rows.extended(
            {
                self._prefix + self._output: ("vector", vectors),
                self._prefix + "error": ("str", errors),
            }
        )

    async def _run(self, requests: list[dict[str, Any]]) -> list[Any]:
        if not requests:
            return []
        iterator = run_many(
            self.client.embeddings.create,
            requests,
            concurrency=self._max_in_flight,
            requests_per_minute=None,
            tokens_per_minute=None,
            progress=None,
            stop_on_error=not self._record,
        )
        return await self._with_budget(
            len(requests), collect_in_order(iterator, return_exceptions=self._record)
        )
