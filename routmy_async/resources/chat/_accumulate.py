"""Streamed chunks in, one ``ChatCompletion`` out (pure: no I/O).

Pieces are appended to lists and joined once at the end, so a long stream costs linear time.
The rules for tool-call fragments follow what OpenAI-compatible routers really send:

* fragments merge by ``index``; the first call may start at index 1;
* ``id`` and ``function.name`` come on the first fragment only, or repeated on every fragment:
  a repeat equal to what is known is not appended again;
* some servers give every parallel call ``index: 0`` and tell them apart by ``id`` only: a
  fragment whose ``id`` differs from the call open at its index starts a new call;
* a fragment without ``index`` belongs to the call with its ``id``, else to the last call;
* ``tool_calls: []`` deltas change nothing.

Which call each fragment went to is recorded on its chunk, so ``events()`` names exactly the
call the final message shows, even when chunks are accumulated ahead of the reader.

``reasoning_details`` merge by their own ``index``: text-like fields are concatenated, the
others keep their latest value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar, overload

from ...types.chat import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    Choice,
    ChoiceDelta,
    ChoiceLogprobs,
    ChunkChoice,
    Function,
    ImageOutput,
    TokenLogprob,
    ToolCall,
    ToolCallDelta,
    Usage,
)

__all__ = ["ChoiceState", "CompletionAccumulator", "ToolCallState"]

ChatCompletionT = TypeVar("ChatCompletionT", bound=ChatCompletion)

_CONCATENATED_DETAIL_FIELDS = frozenset({"text", "summary", "data", "signature"})


class ToolCallState:
    """A tool call being assembled from fragments."""

    __slots__ = ("arguments", "done", "id", "index", "name", "type")

    def __init__(self, index: int) -> None:
        self.index = index
        self.id = ""
        self.type = "function"
        self.name = ""
        self.arguments: list[str] = []
        self.done = False

    def to_tool_call(self) -> ToolCall:
        return ToolCall(
            id=self.id,
            type=self.type,
            function=Function(name=self.name, arguments="".join(self.arguments)),
            index=self.index,
        )


def _call_index(call: ToolCallState) -> int:
    return call.index


class ChoiceState:
    """Everything seen so far for one choice."""

    __slots__ = (
        "content",
        "finish_reason",
        "images",
        "index",
        "last_tool_call",
        "logprobs_content",
        "logprobs_refusal",
        "native_finish_reason",
        "reasoning",
        "reasoning_details",
        "refusal",
        "role",
        "tool_calls",
        "tool_calls_at",
    )

    def __init__(self, index: int) -> None:
        self.index = index
        self.role = "assistant"
        self.content: list[str] = []
        self.refusal: list[str] = []
        self.reasoning: list[str] = []
        self.reasoning_details: dict[int, dict[str, Any]] = {}
        # Every call in the order it opened, and the call open at each wire index.
        self.tool_calls: list[ToolCallState] = []
        self.tool_calls_at: dict[int, ToolCallState] = {}
        self.last_tool_call: ToolCallState | None = None
        self.images: list[ImageOutput] = []
        self.logprobs_content: list[TokenLogprob] | None = None
        self.logprobs_refusal: list[TokenLogprob] | None = None
        self.finish_reason: str | None = None
        self.native_finish_reason: str | None = None

    def tool_call_for(self, fragment: ToolCallDelta) -> ToolCallState:
        """Find (or open) the call a fragment belongs to."""
        index = fragment.index
        call: ToolCallState | None
        if index is None:
            if fragment.id:
                call = next((c for c in self.tool_calls if c.id == fragment.id), None)
                if call is None:
                    index = max((c.index for c in self.tool_calls), default=-1) + 1
            else:
                call = self.last_tool_call
                if call is None:
                    index = 0
        else:
            call = self.tool_calls_at.get(index)
            if call is not None and fragment.id and call.id and fragment.id != call.id:
                # Another parallel call at the same index: one seen before (fragments of
                # calls sharing an index may interleave, each repeating its id) or a new one.
                call = next((c for c in self.tool_calls if c.id == fragment.id), None)
        if call is None:
            assert index is not None
            call = ToolCallState(index)
            self.tool_calls.append(call)
        if index is not None:
            self.tool_calls_at[index] = call  # where id-less fragments at this index go
        self.last_tool_call = call
        return call

    def call_now_for(self, fragment: ToolCallDelta) -> ToolCallState | None:
        """The call a fragment belongs to as the calls stand now (no change made): by its id,
        else the call open at its index, else the last one."""
        if fragment.id:
            return next((c for c in self.tool_calls if c.id == fragment.id), None)
        if fragment.index is not None:
            return self.tool_calls_at.get(fragment.index)
        return self.last_tool_call

    def ordered_tool_calls(self) -> list[ToolCallState]:
        """The calls by index; calls sharing an index keep the order they opened in."""
        return sorted(self.tool_calls, key=_call_index)

    def merge_reasoning_detail(self, detail: dict[str, Any], position: int) -> None:
        key = detail.get("index")
        if not isinstance(key, int):
            key = position
        known = self.reasoning_details.get(key)
        if known is None:
            self.reasoning_details[key] = dict(detail)
            return
        for name, value in detail.items():
            previous = known.get(name)
            if (
                name in _CONCATENATED_DETAIL_FIELDS
                and isinstance(value, str)
                and isinstance(previous, str)
            ):
                known[name] = previous + value
            elif value is not None or name not in known:
                known[name] = value

    def to_choice(self) -> Choice:
        tool_calls = (
            [call.to_tool_call() for call in self.ordered_tool_calls()] if self.tool_calls else None
        )
        logprobs = None
        if self.logprobs_content is not None or self.logprobs_refusal is not None:
            logprobs = ChoiceLogprobs(content=self.logprobs_content, refusal=self.logprobs_refusal)
        message = ChatCompletionMessage(
            role=self.role,
            content="".join(self.content) if self.content else None,
            refusal="".join(self.refusal) if self.refusal else None,
            tool_calls=tool_calls,
            images=list(self.images) if self.images else None,
            reasoning="".join(self.reasoning) if self.reasoning else None,
            reasoning_details=(
                [self.reasoning_details[key] for key in sorted(self.reasoning_details)]
                if self.reasoning_details
                else None
            ),
        )
        return Choice(
            index=self.index,
            message=message,
            finish_reason=self.finish_reason,
            native_finish_reason=self.native_finish_reason,
            logprobs=logprobs,
        )


class CompletionAccumulator:
    """Feed it every chunk with :meth:`add`; :meth:`completion` builds the ``ChatCompletion``."""

    __slots__ = (
        "choices",
        "chunk_count",
        "created",
        "id",
        "model",
        "provider",
        "service_tier",
        "system_fingerprint",
        "targets",
        "usage",
    )

    def __init__(self) -> None:
        #: Which call each tool-call fragment went to, by chunk and choice, recorded only once
        #: someone reads it (``ChatCompletionStream.events()`` sets it to ``{}``): the key is
        #: the chunk's ``id()``, the chunk itself is kept beside it so that a reused id cannot
        #: be mistaken for it. ``None``: nobody asks, nothing is recorded.
        self.targets: (
            dict[int, tuple[ChatCompletionChunk, dict[int, list[ToolCallState]]]] | None
        ) = None
        self.id = ""
        self.created = 0
        self.model = ""
        self.system_fingerprint: str | None = None
        self.service_tier: str | None = None
        self.provider: str | None = None
        self.usage: Usage | None = None
        self.choices: dict[int, ChoiceState] = {}
        self.chunk_count = 0

    def add(self, chunk: ChatCompletionChunk) -> None:
        """Merge one chunk into what is known."""
        self.add_all((chunk,))

    def add_all(self, chunks: Iterable[ChatCompletionChunk]) -> None:
        """Merge chunks in order (one call per network read keeps the per-chunk cost low).

        The common chunk carries one text delta; it takes the first few checks only, and
        everything rarer (reasoning, refusals, images, logprobs, metadata) is looked at once
        a cheap test says it is there.
        """
        states = self.choices
        recorded = self.targets
        count = 0
        for chunk in chunks:
            count += 1
            if not self.id:
                self._first(chunk)
            if chunk.usage is not None:
                self.usage = chunk.usage
            if (
                chunk.provider is not None
                or chunk.system_fingerprint is not None
                or chunk.service_tier is not None
            ):
                self._metadata(chunk)
            for choice in chunk.choices:
                state = states.get(choice.index)
                if state is None:
                    state = states[choice.index] = ChoiceState(choice.index)
                delta = choice.delta
                content = delta.content
                if content:
                    state.content.append(content)
                if delta.tool_calls:
                    if recorded is None:
                        self._tool_fragments(state, delta.tool_calls)
                    else:
                        # One fragment at a time: each leaves the call it went to as the
                        # choice's last one (the merge itself stays free of recording).
                        targets: list[ToolCallState] = []
                        for fragment in delta.tool_calls:
                            self._tool_fragments(state, [fragment])
                            assert state.last_tool_call is not None
                            targets.append(state.last_tool_call)
                        entry = recorded.get(id(chunk))
                        if entry is None or entry[0] is not chunk:
                            entry = recorded[id(chunk)] = (chunk, {})
                        entry[1][choice.index] = targets
                if (
                    delta.reasoning is not None
                    or delta.reasoning_content is not None
                    or delta.refusal is not None
                    or delta.reasoning_details is not None
                    or delta.images is not None
                    or delta.role is not None
                ):
                    self._rare_delta(state, delta)
                if (
                    choice.finish_reason is not None
                    or choice.logprobs is not None
                    or choice.native_finish_reason is not None
                ):
                    self._choice_end(state, choice)
        self.chunk_count += count

    def _first(self, chunk: ChatCompletionChunk) -> None:
        if chunk.id:
            self.id = chunk.id
            self.created = chunk.created
            self.model = chunk.model
        elif not self.model and chunk.model:
            self.model = chunk.model

    def _metadata(self, chunk: ChatCompletionChunk) -> None:
        if chunk.system_fingerprint is not None:
            self.system_fingerprint = chunk.system_fingerprint
        if chunk.provider is not None:
            self.provider = chunk.provider
        if chunk.service_tier is not None:
            self.service_tier = chunk.service_tier

    @staticmethod
    def _tool_fragments(state: ChoiceState, fragments: list[ToolCallDelta]) -> None:
        """Merge a delta's fragments (each leaves its call as ``state.last_tool_call``)."""
        calls_at = state.tool_calls_at
        for fragment in fragments:
            function = fragment.function
            index = fragment.index
            # The common fragment: more argument text for a call already opened by index.
            if (
                index is not None
                and function is not None
                and fragment.id is None
                and function.name is None
                and index in calls_at
            ):
                call = state.last_tool_call = calls_at[index]
                if function.arguments:
                    call.arguments.append(function.arguments)
                continue
            call = state.tool_call_for(fragment)
            if fragment.id and fragment.id != call.id:
                call.id = fragment.id
            if fragment.type:
                call.type = fragment.type
            if function is not None:
                if function.name and function.name != call.name:
                    # Some servers stream the name in pieces; others repeat it whole.
                    call.name = (
                        function.name
                        if not call.name or function.name.startswith(call.name)
                        else call.name + function.name
                    )
                if function.arguments:
                    call.arguments.append(function.arguments)

    @staticmethod
    def _rare_delta(state: ChoiceState, delta: ChoiceDelta) -> None:
        if delta.reasoning:
            state.reasoning.append(delta.reasoning)
        elif delta.reasoning_content:
            state.reasoning.append(delta.reasoning_content)
        if delta.refusal:
            state.refusal.append(delta.refusal)
        if delta.reasoning_details:
            for position, detail in enumerate(delta.reasoning_details):
                state.merge_reasoning_detail(detail, position)
        if delta.images:
            state.images.extend(delta.images)
        if delta.role:
            state.role = delta.role

    @staticmethod
    def _choice_end(state: ChoiceState, choice: ChunkChoice) -> None:
        logprobs = choice.logprobs
        if logprobs is not None:
            if logprobs.content is not None:
                if state.logprobs_content is None:
                    state.logprobs_content = []
                state.logprobs_content.extend(logprobs.content)
            if logprobs.refusal is not None:
                if state.logprobs_refusal is None:
                    state.logprobs_refusal = []
                state.logprobs_refusal.extend(logprobs.refusal)
        if choice.finish_reason is not None:
            state.finish_reason = choice.finish_reason
        if choice.native_finish_reason is not None:
            state.native_finish_reason = choice.native_finish_reason

    @property
    def finished(self) -> bool:
        """Whether every choice seen has a ``finish_reason`` (and at least one was seen)."""
        return bool(self.choices) and all(
            state.finish_reason is not None for state in self.choices.values()
        )

    @overload
    def completion(self) -> ChatCompletion: ...

    @overload
    def completion(self, cls: type[ChatCompletionT]) -> ChatCompletionT: ...

    def completion(self, cls: type[ChatCompletion] = ChatCompletion) -> ChatCompletion:
        """Build the ``ChatCompletion`` (or the subclass ``cls``) from everything added so far."""
        return cls(
            id=self.id,
            created=self.created,
            model=self.model,
            choices=[self.choices[key].to_choice() for key in sorted(self.choices)],
            usage=self.usage,
            system_fingerprint=self.system_fingerprint,
            service_tier=self.service_tier,
            provider=self.provider,
        )
