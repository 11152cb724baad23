"""Tools from typed Python functions, and the loop that runs the calls a model asks for.

A function's signature becomes a ``msgspec`` Struct (``defstruct``); that one type gives both
the JSON schema sent to the model and the decoder that checks the model's arguments, so the
two can never disagree. A function annotated with Pydantic types (a model, ``Field(...)``
constraints, ``AnyUrl``) becomes a ``TypedDict`` that Pydantic describes and validates the
same way, and a ``BaseModel`` is a tool as a Struct is; Pydantic is loaded only then.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import re
import sys
import typing
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Protocol

import anyio
import anyio.to_thread
import msgspec

from ._checks import check_count
from ._structured import strict_schema
from .types._base import set_transcript
from .types.chat import ChatCompletion, ToolCall
from .types.events import CompletionDoneEvent, StreamEvent, ToolResultEvent

if TYPE_CHECKING:
    from pydantic import BaseModel

__all__ = [
    "ChatCompletionsLike",
    "FunctionTool",
    "as_tool_param",
    "function_tool",
    "run_tools",
    "run_tools_stream",
]


class ChatCompletionsLike(Protocol):
    """What the tool loop and ``create_many`` use of ``client.chat.completions``: a Protocol,
    so that these modules sit below the resource whose methods call them (no import circle)."""

    @property
    def create(self) -> Callable[..., Awaitable[Any]]: ...

    @property
    def stream(self) -> Callable[..., Any]: ...


_PARAM_DOC = re.compile(r"^\s*:param\s+(?:[^:]*\s)?(\w+):\s*(.+)$")
_GOOGLE_ARG = re.compile(r"^\s{2,}(\w+)(?:\s*\([^)]*\))?:\s*(.+)$")
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _encode_other(value: Any) -> Any:
    # A Pydantic model (or dataclass) returned by a tool: its own JSON form.
    serializer = getattr(type(value), "__pydantic_serializer__", None)
    if serializer is None:
        raise NotImplementedError
    return serializer.to_python(value, mode="json")


_encode = msgspec.json.Encoder(enc_hook=_encode_other).encode


def _doc_parts(doc: str | None) -> tuple[str, dict[str, str]]:
    """The summary paragraph and per-parameter text of a reST or Google-style docstring."""
    if not doc:
        return "", {}
    text = inspect.cleandoc(doc)
    summary_lines = []
    for line in text.splitlines():
        if (
            not line.strip()
            or line.lstrip().startswith(":")
            or line.strip() in ("Args:", "Arguments:")
        ):
            break
        summary_lines.append(line.strip())
    params: dict[str, str] = {}
    in_args = False
    for line in doc.splitlines():
        match = _PARAM_DOC.match(line)
        if match:
            params[match.group(1)] = match.group(2).strip()
            continue
        if line.strip() in ("Args:", "Arguments:", "Parameters:"):
            in_args = True
            continue
        if in_args:
            google = _GOOGLE_ARG.match(line)
            if google:
                params[google.group(1)] = google.group(2).strip()
            elif line.strip() and not line.startswith((" ", "\t")):
                in_args = False
    return " ".join(summary_lines), params


class FunctionTool:
    """A tool the model can call: its definition, and how to run it.

    Build one with :func:`function_tool`. ``param`` is the definition sent in ``tools``.
    """

    def __init__(
        self,
        *,
        name: str,
        description: str,
        arguments_type: type[Any],
        call: Callable[[Any], Any],
        strict: bool,
        parameter_docs: Mapping[str, str],
    ):
        self.name = name
        self.description = description
        self.arguments_type = arguments_type
        self._call = call
        self.strict = strict
        if isinstance(arguments_type, type) and issubclass(arguments_type, msgspec.Struct):
            schema = msgspec.json.schema(arguments_type)
            self._decode: Callable[[str], Any] = msgspec.json.Decoder(arguments_type).decode
            self._invalid: type[Exception] = msgspec.MsgspecError
        else:
            # A Pydantic model, or the TypedDict of a function with Pydantic annotations. A
            # user's validator may raise anything: it is still the arguments that failed.
            from ._pydantic import argument_adapter

            schema, self._decode = argument_adapter(arguments_type)
            self._invalid = Exception
        schema = strict_schema(schema) if strict else _inline_root(schema)
        properties = schema.get("properties", {})
        for param_name, text in parameter_docs.items():
            prop = properties.get(param_name)
            # Never beside a "$ref": strict mode refuses siblings of a reference.
            if prop is not None and "description" not in prop and "$ref" not in prop:
                prop["description"] = text
        schema.pop("title", None)
        schema.pop("description", None)
        function: dict[str, Any] = {"name": name, "parameters": schema}
        if description:
            function["description"] = description
        if strict:
            function["strict"] = True
        self.param: dict[str, Any] = {"type": "function", "function": function}

    @property
    def responses_param(self) -> dict[str, Any]:
        """The definition in the Responses API's flat shape (``client.responses``).

        ``{"type": "function", "name", "description", "parameters", "strict"}``: ``strict``
        is always sent, because the Responses API takes a missing one as ``true``, which a
        schema with optional parameters would fail.
        """
        function = self.param["function"]
        param: dict[str, Any] = {"type": "function", "name": self.name}
        if "description" in function:
            param["description"] = function["description"]
        param["parameters"] = function["parameters"]
        param["strict"] = self.strict
        return param

    def decode_arguments(self, arguments: str) -> Any:
        """Decode the model's JSON arguments into the typed arguments: a Struct (msgspec), a
        model (a ``BaseModel`` tool) or a dict of validated parameters (Pydantic annotations).

        :raises TypeError: ``arguments`` is not JSON text (a dict the caller decoded, say).
        :raises msgspec.DecodeError: the arguments are not valid JSON or do not fit the types.
        :raises pydantic.ValidationError: the same, for a tool that Pydantic validates.
        """
        _check_arguments(self.name, arguments)
        return self._decode(arguments or "{}")

    def _describe_invalid(self, error: Exception) -> str:
        if isinstance(error, msgspec.MsgspecError):
            return str(error)
        from ._pydantic import describe_error, validation_error

        if isinstance(error, validation_error()):
            return describe_error(error)[1]
        return f"{type(error).__name__}: {error}"

    async def run(self, arguments: str) -> Any:
        """Decode ``arguments`` and call the tool (a sync function runs in a worker thread)."""
        return await self._call(self.decode_arguments(arguments))

    async def answer(self, arguments: str) -> tuple[str, bool]:
        """Run the tool as ``run_tools`` does, for a tool loop of your own: the text to send
        back to the model in the ``tool`` message, and whether it reports an error.

        Arguments that do not fit and an exception the tool raises become an ``Error: ...``
        text (the model can read it and try again) instead of an exception; a result that is
        not a string is sent as its JSON.

        :raises TypeError: ``arguments`` is not JSON text: a mistake in the calling code, not
            an answer for the model.
        """
        # Checked outside the try: a Pydantic tool takes any exception of its decoder for
        # bad arguments, and would send the caller's mistake to the model as an answer.
        _check_arguments(self.name, arguments)
        try:
            decoded = self.decode_arguments(arguments)
        except self._invalid as exc:
            return (
                f"Error: the arguments for {self.name} are not valid: "
                f"{self._describe_invalid(exc)}",
                True,
            )
        try:
            result = await self._call(decoded)
        except Exception as exc:
            return f"Error: {self.name} failed: {type(exc).__name__}: {exc}", True
        return _result_text(result), False

    def __repr__(self) -> str:
        return f"<FunctionTool {self.name}>"


def _inline_root(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    defs = schema.get("$defs", {})
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        root = dict(defs.get(ref[8:], {}))
        if len(defs) > 1:
            root["$defs"] = defs
        return root
    return schema


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(
            f"tool name {name!r} must be 1-64 characters of letters, digits, '_' or '-'"
        )
    return name


def function_tool(
    fn: Callable[..., Any] | type[msgspec.Struct] | type[BaseModel] | FunctionTool,
    *,
    name: str | None = None,
    description: str | None = None,
    strict: bool = False,
) -> FunctionTool:
    """Build a tool from a typed function (sync or async), a ``msgspec.Struct`` type or a
    Pydantic ``BaseModel`` type.

    The name comes from the function, the description from the docstring's summary, each
    parameter's text from ``:param x:`` or ``Args:`` lines, and the JSON schema from the
    annotations (str, int, float, bool, lists, dicts, ``Literal``, enums, optionals, Structs,
    defaults). Parameters without a default are required. A Struct or model tool's "result" is
    the decoded object itself: the model fills in a typed object. When an annotation holds a
    Pydantic type (a model, ``Annotated[int, Field(gt=0)]``, ``AnyUrl``), Pydantic builds
    the schema and validates the arguments; otherwise msgspec does.

    :param strict: send the strict form (every property required, no additional properties).
    :raises TypeError: ``fn`` is not callable, or a parameter has no or an unsupported annotation.
    :raises ValueError: the name is not a valid tool name.
    """
    if isinstance(fn, FunctionTool):
        return fn
    if isinstance(fn, type) and (
        issubclass(fn, msgspec.Struct) or ("pydantic" in sys.modules and _is_model_type(fn))
    ):
        return _object_tool(fn, name=name, description=description, strict=strict)
    if not callable(fn):
        raise TypeError(
            f"a tool must be a function or a msgspec.Struct or Pydantic model type, not {fn!r}"
        )
    tool_name = name or getattr(fn, "__name__", None)
    if not tool_name or tool_name == "<lambda>":
        raise ValueError("a lambda or nameless callable needs name=... to be a tool")
    layers = _layers(fn)
    parameters = _typed_parameters(fn, tool_name, layers)
    with_pydantic = "pydantic" in sys.modules and any(
        _uses_pydantic(annotation) for _, annotation, _ in parameters
    )
    arguments_type: type[Any]
    if with_pydantic:
        from ._pydantic import arguments_type as pydantic_arguments

        arguments_type = pydantic_arguments(tool_name, parameters, inspect.Parameter.empty)
    else:
        arguments_type = _struct_of(tool_name, parameters)
    summary, docs = _doc_parts(_docstring(layers))
    # Anything ``async def`` along the way (a decorator's target, a partial's function, an
    # ``async def __call__``) means calling returns a coroutine: call it on the event loop.
    on_loop = any(inspect.iscoroutinefunction(layer) for layer in layers)
    return FunctionTool(
        name=_check_name(tool_name),
        description=description if description is not None else summary,
        arguments_type=arguments_type,
        call=_caller(
            fn,
            [parameter[0] for parameter in parameters],
            with_pydantic=with_pydantic,
            on_loop=on_loop,
        ),
        strict=strict,
        parameter_docs=docs,
    )


def _object_tool(
    fn: type[msgspec.Struct] | type[BaseModel],
    *,
    name: str | None,
    description: str | None,
    strict: bool,
) -> FunctionTool:
    """A tool whose "result" is the decoded Struct or model itself: the model fills in a form."""
    summary, docs = _doc_parts(fn.__doc__)

    async def return_struct(arguments: Any) -> Any:
        return arguments

    if issubclass(fn, msgspec.Struct):
        _check_schema(fn, fn.__name__)
    return FunctionTool(
        name=_check_name(name or fn.__name__),
        description=description if description is not None else summary,
        arguments_type=fn,
        call=return_struct,
        strict=strict,
        parameter_docs=docs,
    )


def _typed_parameters(
    fn: Callable[..., Any], tool_name: str, layers: Sequence[Any]
) -> list[tuple[str, Any, Any]]:
    """Each parameter's name, resolved annotation and default; the model must be told them all."""
    signature = inspect.signature(fn)
    try:
        # With their Annotated extras: msgspec.Meta constraints and descriptions reach the
        # schema and the validation (msgspec ignores extras it does not know), and Pydantic
        # reads its own.
        hints = typing.get_type_hints(_annotated(layers), include_extras=True)
    except Exception as exc:
        raise TypeError(f"tool {tool_name!r}: cannot resolve its annotations ({exc})") from None
    parameters: list[tuple[str, Any, Any]] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(
                f"tool {tool_name!r}: *args/**kwargs ({param.name}) cannot be described"
            )
        if param.name not in hints:
            raise TypeError(f"tool {tool_name!r}: parameter {param.name!r} has no type annotation")
        parameters.append((param.name, hints[param.name], param.default))
    return parameters


def _caller(
    function: Callable[..., Any], names: list[str], *, with_pydantic: bool, on_loop: bool
) -> Callable[[Any], Awaitable[Any]]:
    """The coroutine that calls ``function`` with decoded arguments, whatever kind it is."""

    async def call(arguments: Any) -> Any:
        if with_pydantic:
            # Validated into a dict; a parameter the model left out takes its own default.
            kwargs = dict(arguments)
        else:
            kwargs = {field: getattr(arguments, field) for field in names}
        if on_loop:
            result = function(**kwargs)
        else:
            # A sync tool may block (disk, network): run it in a worker thread.
            result = await anyio.to_thread.run_sync(lambda: function(**kwargs))
        # A sync callable may still hand back a coroutine (or another awaitable).
        if inspect.isawaitable(result):
            result = await result
        return result

    return call


def _struct_of(tool_name: str, parameters: Sequence[tuple[str, Any, Any]]) -> type[Any]:
    """The msgspec Struct of a function's parameters: its schema and its decoder at once."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for param_name, annotation, default in parameters:
        try:
            msgspec.json.schema(annotation)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"tool {tool_name!r}: parameter {param_name!r} has an unsupported annotation "
                f"{annotation!r} ({exc})"
            ) from None
        if default is inspect.Parameter.empty:
            fields.append((param_name, annotation))
        else:
            fields.append((param_name, annotation, default))
    return msgspec.defstruct(f"{tool_name}_arguments", fields, kw_only=True)


def _is_model_type(value: Any) -> bool:
    from ._pydantic import is_model_type

    return is_model_type(value)


def _uses_pydantic(annotation: Any) -> bool:
    from ._pydantic import uses_pydantic

    return uses_pydantic(annotation)


def _layers(fn: Callable[..., Any]) -> list[Any]:
    """``fn`` and what it stands for: a partial's function, a decorator's ``__wrapped__``
    target, a callable object's ``__call__``, outermost first."""
    layers: list[Any] = [fn]
    current: Any = fn
    seen = {id(fn)}
    while len(layers) < 100:
        if isinstance(current, functools.partial):
            current = current.func
        elif getattr(current, "__wrapped__", None) is not None:
            current = current.__wrapped__
        elif (
            not isinstance(current, type)
            and not inspect.isroutine(current)
            and inspect.isfunction(inspect.getattr_static(type(current), "__call__", None))
        ):
            current = current.__call__
        else:
            return layers
        if id(current) in seen:
            return layers
        seen.add(id(current))
        layers.append(current)
    return layers


def _annotated(layers: Sequence[Any]) -> Any:
    """The layer whose annotations describe the parameters: the one ``inspect.signature``
    reads (it follows partials, ``__wrapped__`` and ``__call__`` until a ``__signature__``)."""
    for layer in layers:
        if inspect.isroutine(layer) and (
            getattr(layer, "__signature__", None) is not None
            or getattr(layer, "__wrapped__", None) is None
        ):
            return layer
    return layers[-1]


def _docstring(layers: Sequence[Any]) -> str | None:
    """The first docstring along the layers, skipping ``partial``'s own (which a partial has,
    and which ``functools.wraps`` copies onto a wrapper of one)."""
    for layer in layers:
        doc = getattr(layer, "__doc__", None)
        if isinstance(doc, str) and doc.strip() and doc != functools.partial.__doc__:
            return doc
    return None


def _check_schema(struct_type: type[msgspec.Struct], name: str) -> None:
    try:
        msgspec.json.schema(struct_type)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"tool {name!r}: unsupported field type ({exc})") from None


def as_tool_param(tool: Any) -> dict[str, Any]:
    """The wire form of a tool: a dict as is, a ``FunctionTool``, a function, a Struct type or
    a Pydantic model type."""
    if isinstance(tool, Mapping):
        return dict(tool)
    return function_tool(tool).param


def _check_arguments(name: str, arguments: object) -> None:
    # None stays "no arguments", as an empty text is (a delta's arguments may be None).
    if arguments is not None and not isinstance(arguments, (str, bytes, bytearray)):
        raise TypeError(
            f"the arguments for {name} must be the JSON text the model wrote (a str), not "
            f"{type(arguments).__name__}: pass tool_call.function.arguments as it came"
        )


def _result_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    try:
        return _encode(result).decode()
    except (TypeError, msgspec.EncodeError, OverflowError):
        return str(result)


async def _run_call(tools: Mapping[str, FunctionTool], call: ToolCall) -> tuple[str, bool]:
    tool = tools.get(call.function.name)
    if tool is None:
        return f"Error: there is no tool named {call.function.name!r}", True
    return await tool.answer(call.function.arguments)


async def _run_calls(
    tools: Mapping[str, FunctionTool], calls: Sequence[ToolCall]
) -> list[tuple[str, bool]]:
    """Run every call at once; results come back in the order of ``calls``."""
    results: list[tuple[str, bool]] = [("", False)] * len(calls)

    async def one(position: int, call: ToolCall) -> None:
        results[position] = await _run_call(tools, call)

    async with anyio.create_task_group() as group:
        for position, call in enumerate(calls):
            group.start_soon(one, position, call)
    return results


def _tool_map(tools: Iterable[Any]) -> dict[str, FunctionTool]:
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Iterable):
        raise TypeError("tools must be a list of functions, Struct types or FunctionTools")
    mapping: dict[str, FunctionTool] = {}
    for tool in tools:
        if isinstance(tool, Mapping):
            raise TypeError(
                "run_tools needs runnable tools (functions or function_tool(...)), not dicts"
            )
        built = function_tool(tool)
        if built.name in mapping:
            raise ValueError(f"two tools are named {built.name!r}")
        mapping[built.name] = built
    if not mapping:
        raise ValueError("tools must not be empty")
    return mapping


def _check_rounds(max_rounds: Any) -> None:
    check_count("max_rounds", max_rounds, 1)


def _tool_messages(
    calls: Sequence[ToolCall], results: Sequence[tuple[str, bool]]
) -> list[dict[str, Any]]:
    return [
        {"role": "tool", "tool_call_id": call.id, "name": call.function.name, "content": text}
        for call, (text, _) in zip(calls, results, strict=True)
    ]


async def _rounds(
    self: ChatCompletionsLike,
    *,
    model: str,
    messages: Iterable[Any],
    tools: Iterable[Any],
    max_rounds: int,
    streamed: bool,
    params: dict[str, Any],
) -> AsyncGenerator[StreamEvent | ToolResultEvent, None]:
    """The loop behind :func:`run_tools` and :func:`run_tools_stream`, one copy for both.

    Yields each round's stream events (``streamed`` only), a ``ToolResultEvent`` per call,
    and ends with one ``CompletionDoneEvent`` whose completion carries the transcript. The
    tool calls of the last allowed round are not run: the model would never see their results.
    """
    _check_rounds(max_rounds)
    tool_map = _tool_map(tools)
    params["tools"] = [tool.param for tool in tool_map.values()]
    transcript = list(messages)
    for round_number in range(max_rounds):
        if streamed:
            async with self.stream(model=model, messages=transcript, **params) as stream:
                async for event in stream.events():
                    if not isinstance(event, CompletionDoneEvent):
                        yield event
            completion = stream.get_final_completion()
        else:
            completion = await self.create(model=model, messages=transcript, **params)
        message = completion.choices[0].message if completion.choices else None
        if message is not None:
            transcript.append(message.to_param())
        last = round_number == max_rounds - 1
        if message is None or not message.tool_calls or last:
            set_transcript(completion, transcript)
            yield CompletionDoneEvent(completion=completion)
            return
        results = await _run_calls(tool_map, message.tool_calls)
        transcript.extend(_tool_messages(message.tool_calls, results))
        for call, (text, is_error) in zip(message.tool_calls, results, strict=True):
            yield ToolResultEvent(
                tool_call_id=call.id, name=call.function.name, result=text, is_error=is_error
            )


async def run_tools(
    self: ChatCompletionsLike,
    *,
    model: str,
    messages: Iterable[Any],
    tools: Iterable[Any],
    max_rounds: int = 8,
    **params: Any,
) -> ChatCompletion:
    """Call the model, run the tools it asks for, and repeat until it answers.

    Calls of one round run concurrently (sync functions in worker threads). Each round
    appends the assistant message (``reasoning_details`` unchanged) and one ``tool`` message
    per call; a failing tool or bad arguments become an error text for the model. Stops at an
    answer without tool calls or after ``max_rounds`` model calls; tool calls in that last
    answer are not run (the completion keeps them, the transcript ends with that message).

    :returns: the last ``ChatCompletion``; ``.transcript`` holds every message of the run.
    """
    final: ChatCompletion | None = None
    rounds = _rounds(
        self,
        model=model,
        messages=messages,
        tools=tools,
        max_rounds=max_rounds,
        streamed=False,
        params=params,
    )
    async with contextlib.aclosing(rounds):
        async for event in rounds:
            if isinstance(event, CompletionDoneEvent):
                final = event.completion
    assert final is not None
    return final


async def run_tools_stream(
    self: ChatCompletionsLike,
    *,
    model: str,
    messages: Iterable[Any],
    tools: Iterable[Any],
    max_rounds: int = 8,
    **params: Any,
) -> AsyncIterator[StreamEvent | ToolResultEvent]:
    """Like :func:`run_tools`, streaming: yields each round's stream events and each tool result.

    The last ``CompletionDoneEvent`` carries the final completion (with ``.transcript``); the
    transcript and the final completion are the same as :func:`run_tools` would give.
    """
    rounds = _rounds(
        self,
        model=model,
        messages=messages,
        tools=tools,
        max_rounds=max_rounds,
        streamed=True,
        params=params,
    )
    async with contextlib.aclosing(rounds):
        async for event in rounds:
            yield event
