"""Structured output and the tool loop of the Responses API.

``text_format=Struct`` is sent as the flat ``text.format`` of the Responses API
(``{"type": "json_schema", "name", "schema", "strict"}``, the same strict schema chat's
``response_format`` uses) and the answer's text is decoded into ``response.output_parsed``.
The tool loop runs ``function_call`` items with the executor of chat's ``run_tools`` (the
same concurrency, argument decoding and error texts) and answers them with
``function_call_output`` items.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Protocol

import msgspec

from ..._config import is_routmy_url
from ..._exceptions import ContentParseError
from ..._partial_stream import json_text
from ..._structured import response_format_for
from ..._tools import FunctionTool, _check_rounds, _run_calls, _tool_map
from ...types._base import set_output_parsed, set_transcript
from ...types.chat import Function, ToolCall
from ...types.responses import (
    Response,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
)
from ._params import check_input

__all__ = [
    "ResponsesLike",
    "TextFormatFinalizer",
    "apply_text_format",
    "parse_response",
    "run_tools",
    "text_format_for",
]


class ResponsesLike(Protocol):
    """What the tool loop uses of ``client.responses``: a Protocol, so that this module sits
    below the resource whose ``run_tools`` calls it (no import circle)."""

    @property
    def create(self) -> Callable[..., Awaitable[Any]]: ...


_LOOP_MODES = ("input", "previous_response_id")


def text_format_for(struct_type: type[msgspec.Struct]) -> dict[str, Any]:
    """The ``text.format`` asking for JSON that decodes into ``struct_type`` (a Struct or a
    Pydantic model)."""
    json_schema = response_format_for(struct_type)["json_schema"]
    return {"type": "json_schema", **json_schema}


def apply_text_format(
    params: dict[str, Any], text_format: type[msgspec.Struct] | Mapping[str, Any]
) -> Callable[[Response], Response]:
    """Put ``text_format`` into ``params["text"]``; return the step that parses the answer.

    :raises TypeError: ``text_format`` is neither a Struct type nor a dict, or ``text`` is not
        a dict.
    """
    from ..._pydantic import is_model_type

    target: type[Any] | None
    if (isinstance(text_format, type) and issubclass(text_format, msgspec.Struct)) or is_model_type(
        text_format
    ):
        form = text_format_for(text_format)  # type: ignore[arg-type]
        target = text_format  # type: ignore[assignment]
    elif isinstance(text_format, Mapping):
        form = dict(text_format)
        target = None
    else:
        raise TypeError(
            "text_format must be a msgspec.Struct type, a Pydantic model or a dict, not "
            f"{text_format!r:.80}"
        )
    text = params.get("text")
    if text is not None and not isinstance(text, Mapping):
        raise TypeError(f"text must be a dict such as {{'verbosity': 'low'}}, not {text!r:.80}")
    params["text"] = {**(text or {}), "format": form}
    return TextFormatFinalizer(target)


class TextFormatFinalizer:
    """Parses a response's text into ``target`` (plain JSON when ``None``) as
    ``output_parsed``; a stream reads ``target`` to give typed partials."""

    __slots__ = ("target",)

    def __init__(self, target: type[Any] | None) -> None:
        self.target = target

    def __call__(self, response: Response) -> Response:
        return parse_response(response, self.target)


def parse_response(response: Response, target: type[Any] | None) -> Response:
    """Decode the response's answer into ``target`` (plain JSON when ``None``) as
    ``output_parsed``: the text of its last message (the whole ``output_text`` when it has
    one message; an earlier message is a preamble or a first try, kept in ``output``).

    :raises ContentParseError: the model refused, the response failed or is incomplete, it
        has no text, or the text does not fit.
    """
    text = response.output_text
    reason = response.incomplete_details.reason if response.incomplete_details else None
    for item in response.output:
        if isinstance(item, ResponseOutputMessage):
            for part in item.content:
                if isinstance(part, ResponseOutputRefusal):
                    raise ContentParseError(
                        f"the model refused: {part.refusal}",
                        content=text or None,
                        finish_reason=response.status,
                        refusal=part.refusal,
                    )
    if response.status == "incomplete":
        raise ContentParseError(
            f"the response is incomplete ({reason or 'no reason given'}) and its JSON may be "
            "cut off; raise max_output_tokens",
            content=text or None,
            finish_reason=reason or response.status,
        )
    if response.status == "failed":
        message = response.error.message if response.error else "no error given"
        raise ContentParseError(
            f"the response failed: {message}", content=text or None, finish_reason="failed"
        )
    if not any(isinstance(item, ResponseOutputMessage) for item in response.output):
        raise ContentParseError(
            "the response has no message to parse", content=None, finish_reason=response.status
        )
    # The last message's text is the answer (an earlier one is a preamble or a first try);
    # the JSON inside a Markdown fence, as the stream's partials read it.
    json = json_text(_answer_text(response))
    if target is not None and not issubclass(target, msgspec.Struct):
        set_output_parsed(response, _validate_with_pydantic(response, json, target))
        return response
    try:
        parsed = msgspec.json.decode(json, type=target if target is not None else Any)
    except msgspec.ValidationError as exc:
        raise ContentParseError(
            f"the answer does not fit {getattr(target, '__name__', 'JSON')}: {exc}",
            content=text,
            finish_reason=response.status,
        ) from None
    except msgspec.DecodeError as exc:
        raise ContentParseError(
            f"the answer is not valid JSON: {exc}", content=text, finish_reason=response.status
        ) from None
    set_output_parsed(response, parsed)
    return response


def _answer_text(response: Response) -> str:
    """The text of the last message that has any (its ``output_text`` parts joined): what
    ``output_parsed`` decodes. With one message, ``output_text``."""
    messages = [item for item in response.output if isinstance(item, ResponseOutputMessage)]
    for message in reversed(messages):
        text = "".join(
            part.text for part in message.content if isinstance(part, ResponseOutputText)
        )
        if text:
            return text
    return ""


def _validate_with_pydantic(response: Response, json: str, model: type[Any]) -> Any:
    from ..._pydantic import describe_error, validation_error

    try:
        return model.model_validate_json(json)
    except validation_error() as exc:
        bad_json, problem = describe_error(exc)
        what = "is not valid JSON" if bad_json else f"does not fit {model.__name__}"
        raise ContentParseError(
            f"the answer {what}: {problem}",
            content=response.output_text,
            finish_reason=response.status,
        ) from None


async def run_tools(
    self: ResponsesLike,
    *,
    model: str,
    input: Any,
    tools: Iterable[Any],
    max_rounds: int,
    continue_with: str,
    params: dict[str, Any],
    base_url: str,
) -> Response:
    """The loop behind ``responses.run_tools`` (see its docstring); ``base_url`` is the
    server's, which says whether it stores responses."""
    _check_rounds(max_rounds)
    _check_loop_mode(continue_with, base_url, params)
    tool_map = _tool_map(tools)
    params["tools"] = [tool.responses_param for tool in tool_map.values()]
    items = check_input(input)
    transcript: list[Any] = (
        [{"role": "user", "content": items}] if isinstance(items, str) else list(items)
    )
    next_input: list[Any] = list(transcript)
    for round_number in range(max_rounds):
        response: Response = await self.create(model=model, input=next_input, **params)
        transcript.extend(item.to_param() for item in response.output)
        calls = response.function_calls
        if not calls or round_number == max_rounds - 1:
            # The calls of the last allowed answer are not run: the model would never see
            # their results. The response keeps them; the transcript ends with them.
            set_transcript(response, transcript)
            return response
        outputs = await _answer_calls(tool_map, calls)
        transcript.extend(outputs)
        if continue_with == "previous_response_id":
            params["previous_response_id"] = response.id
            next_input = outputs
        else:
            next_input = list(transcript)
    raise AssertionError("unreachable: the last round returns")  # pragma: no cover


def _check_loop_mode(continue_with: str, base_url: str, params: Mapping[str, Any]) -> None:
    """Refuse a ``continue_with`` that could not carry the conversation, before any round."""
    if continue_with not in _LOOP_MODES:
        raise ValueError(
            f"continue_with must be 'input' or 'previous_response_id', not {continue_with!r}"
        )
    if continue_with == "previous_response_id" and is_routmy_url(base_url):
        # rout.my accepts previous_response_id and ignores it: each round would reach the
        # model with only the new tool outputs, the conversation before them lost.
        raise ValueError(
            "continue_with='previous_response_id' needs a server that stores responses, and "
            "rout.my's /v1/responses is stateless (it accepts previous_response_id and ignores "
            "it, so the model would see only the latest tool outputs): use "
            "continue_with='input' (the default), which resends the conversation each round"
        )
    if continue_with == "previous_response_id" and params.get("store") is False:
        # Found out at the second round, after the model and the tools have run.
        raise ValueError(
            "continue_with='previous_response_id' needs stored responses: drop store=False, "
            "or use continue_with='input' (resends the items, works without storage)"
        )


async def _answer_calls(
    tool_map: Mapping[str, FunctionTool], calls: list[ResponseFunctionToolCall]
) -> list[dict[str, Any]]:
    """Run the answer's ``function_call`` items with chat's executor; their output items."""
    results = await _run_calls(
        tool_map,
        [
            ToolCall(id=call.call_id, function=Function(name=call.name, arguments=call.arguments))
            for call in calls
        ],
    )
    return [
        {"type": "function_call_output", "call_id": call.call_id, "output": text}
        for call, (text, _) in zip(calls, results, strict=True)
    ]
