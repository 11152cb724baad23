"""The public functions: :func:`run_batch_file` and :func:`check_batch_file`.

Light on purpose: ``import routmy_async`` loads this module, and the machinery (``_run``,
``_batch``, the resources) loads on the first call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from ._control import BatchStop
from ._summary import BatchCheck, BatchSummary

if TYPE_CHECKING:
    from .._auto_concurrency import AutoConcurrency
    from .._client import AsyncRoutmy

__all__ = ["check_batch_file", "run_batch_file"]

PathLike = str | os.PathLike[str]


async def run_batch_file(
    client: AsyncRoutmy,
    input_file: PathLike,
    output_file: PathLike,
    *,
    errors_file: PathLike | None = None,
    endpoint: str | None = None,
    concurrency: int | Literal["auto"] | AutoConcurrency = 16,
    max_concurrency: int | None = None,
    requests_per_minute: float | None = None,
    tokens_per_minute: float | None = None,
    max_cost: float | None = None,
    max_units: float | None = None,
    default_output_tokens: int | None = None,
    retry_failed: bool = True,
    skip_invalid: bool = False,
    progress: bool | Callable[[BatchSummary], None] | None = None,
    stop: BatchStop | None = None,
    grace_period: float = 30.0,
) -> BatchSummary:
    """Run every request of an OpenAI Batch-format JSONL file; write each result as it ends.

    Input lines are ``{"custom_id", "method", "url", "body"}`` (``method``/``url`` may be left
    out when ``endpoint`` is given); output lines are OpenAI Batch output lines
    (``{"id", "custom_id", "response": {"status_code", "request_id", "body"}, "error"}``),
    failures included, as OpenAI writes them: a 4xx/5xx answer in ``response`` with
    ``"error": null``; ``error`` for a failure without one (a timeout, a reset) or a 2xx that
    is a failure (an error body, a Responses object that did not complete).

    Running it again over the same output resumes: ids with a successful line are skipped,
    failed ones are sent again (unless ``retry_failed=False``). A Responses answer is a
    result only when its ``status`` is ``completed`` or ``incomplete``. The whole input is
    validated before the first request; an invalid file sends nothing, and the run sends
    exactly the bytes it validated (lines appended meanwhile wait for the next run). Requests
    go through the client's limiter, rate budget and retries, like ``create_many``.

    :param client: the client that sends the requests.
    :param input_file: the requests (JSONL, read as a stream).
    :param output_file: where results go (appended; created if missing). ``OUTPUT.lock``
        keeps a second run from writing there at the same time.
    :param errors_file: failures go here instead of ``output_file``, as OpenAI does.
    :param endpoint: the URL of lines without one (``"/v1/chat/completions"``,
        ``"/v1/embeddings"``, ``"/v1/images/generations"``).
    :param concurrency: the most requests in flight, or ``"auto"``: a level that finds what
        the server takes (from 4, growing while requests succeed, cut on a 429, a 503 or a
        timeout; see :class:`AutoConcurrency`), shown in the progress output and the
        summary (``summary.auto_concurrency``).
    :param max_concurrency: the ceiling of ``concurrency="auto"`` (default 64).
    :param requests_per_minute: spaces the starts (within the client's own ``rate_limit``).
    :param tokens_per_minute: a token budget for the batch (estimated, then corrected by
        each answer's usage).
    :param max_cost: what the output may cost in USD, its earlier runs' answers included:
        a :class:`SpendLimit` ``max_dollars``. Each attempt reserves its worst case (its
        prompt, bounded, plus its output cap, at the model's price from the server's
        ``/v1/models`` ``pricing``) before it is sent and settles to its ``usage`` (its
        ``usage.cost`` where the server reports one); a line that does not fit waits for the
        lines in flight, and the run stops when it still does not. Refused
        (``BatchFileError``) where it cannot be counted: against a rout.my URL, which lists
        no prices (before anything is read), over an output holding answers the models
        list cannot price (before anything is sent), and at a line whose model has no price
        (none of its requests sent).
    :param max_units: what the output may use in quota units (tokens times the model's
        ``token_multiplier``, what rout.my counts), its earlier answers included: a
        :class:`SpendLimit` ``max_units``, run as ``max_cost`` is. Both may be given.
    :param default_output_tokens: the output cap a budget reserves for a line without
        ``max_tokens`` (``max_completion_tokens``, ``max_output_tokens``); without it such
        a line stops a budgeted run (never counted as free).
    :param retry_failed: send the lines whose earlier result is a failure again.
    :param skip_invalid: run the valid lines of a file with invalid ones (else nothing runs).
    :param progress: ``True`` for a tqdm bar (the ``progress`` extra) or a log line every few
        seconds; a callable gets the live :class:`BatchSummary` after every result.
    :param stop: a :class:`BatchStop` to stop the run from a signal handler or another task.
    :param grace_period: seconds the requests in flight get to finish after a stop request.
    :returns: what the run did; ``summary.stop_reason`` says why it ended early, if it did.
    :raises BatchFileError: invalid lines (the message names the first ones, ``.problems``
        has them all up to 100), an output in use by another run, a budget that cannot
        be counted, an input truncated, rewritten or replaced during the run, or a result
        that could not be written (``.summary`` has what the run did, once it had started).
    :raises ValueError: a bad option (before anything is read).
    """
    from ._run import BatchRun

    run = BatchRun(
        client,
        input_file,
        output_file,
        errors_file=errors_file,
        endpoint=endpoint,
        concurrency=concurrency,
        max_concurrency=max_concurrency,
        requests_per_minute=requests_per_minute,
        tokens_per_minute=tokens_per_minute,
        max_cost=max_cost,
        max_units=max_units,
        default_output_tokens=default_output_tokens,
        retry_failed=retry_failed,
        skip_invalid=skip_invalid,
        progress=progress,
        stop=stop,
        grace_period=grace_period,
    )
    return await run.run()


async def check_batch_file(
    input_file: PathLike,
    *,
    endpoint: str | None = None,
    output_file: PathLike | None = None,
    errors_file: PathLike | None = None,
    retry_failed: bool = True,
    base_url: str | None = None,
) -> BatchCheck:
    """Validate a batch file without sending anything (``routmy batch --dry-run``).

    Every line is checked as :func:`run_batch_file` checks it; with ``output_file`` (and
    ``errors_file``) the result also counts what is already done and what a run would send,
    with an estimate of its tokens. Nothing is written, and no lock is taken.

    ``base_url`` is the server a run would send to (default: ``ROUTMY_BASE_URL``, then
    ``https://api.rout.my/v1``, as a client's): against rout.my, whose ``/v1/responses``
    keeps no state, a Responses line with ``previous_response_id`` is refused, as a run
    refuses it.

    :returns: counts, the first problems with their line numbers, the token estimate.
    """
    from ._run import check_only

    return await check_only(
        input_file,
        endpoint=endpoint,
        output_file=output_file,
        errors_file=errors_file,
        retry_failed=retry_failed,
        base_url=base_url,
    )
