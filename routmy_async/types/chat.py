"""Chat Completions response types: ``ChatCompletion`` and the streamed ``ChatCompletionChunk``.

Every field is optional with a default, so a router that leaves one out still decodes; fields
the API documents but these Structs do not declare stay reachable through ``.raw``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Generator
from pathlib import Path
from typing import Any

import anyio
import msgspec

from ._base import ResponseObject, TopLevelResponse, transcript_of

__all__ = [
    "AwaitableChatCompletion",
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionMessage",
    "Choice",
    "ChoiceDelta",
    "ChoiceLogprobs",
    "ChunkChoice",
    "CompletionTokensDetails",
    "Function",
    "FunctionDelta",
    "ImageOutput",
    "ImageURL",
    "PromptTokensDetails",
    "StreamErrorBody",
    "TokenLogprob",
    "ToolCall",
    "ToolCallDelta",
    "TopLogprob",
    "Usage",
]


def decode_data_url(url: str) -> bytes:
    """Decode a ``data:[<mime>][;base64],<payload>`` URL into bytes.

    :raises ValueError: the URL is remote (``https://...``) or not a well-formed data URL.
    """
    if not url.startswith("data:"):
        raise ValueError(
            f"the image is a remote URL ({url[:80]!r}), not inline data: fetch it yourself"
        )
    header, sep, payload = url.partition(",")
    if not sep:
        raise ValueError("malformed data: URL (no comma before the payload)")
    if header.endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"malformed base64 in data: URL: {exc}") from None
    from urllib.parse import unquote_to_bytes

    return unquote_to_bytes(payload)


async def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` in a worker thread so the event loop never blocks on disk."""
    target = Path(path)
    await anyio.Path(target).write_bytes(data)
    return target


class ImageURL(ResponseObject, frozen=True):
    """The URL of an image: a ``data:`` URL with the bytes inline, or a remote URL."""

    url: str = ""
    detail: str | None = None


class ImageOutput(ResponseObject, frozen=True):
    """An image the model generated (``message.images[i]``)."""

    type: str = "image_url"
    image_url: ImageURL = msgspec.field(default_factory=ImageURL)
    index: int | None = None

    @property
    def mime_type(self) -> str | None:
        """The MIME type named in a ``data:`` URL, or ``None`` for a remote URL."""
        url = self.image_url.url
        if not url.startswith("data:"):
            return None
        return url[5:].split(",", 1)[0].split(";", 1)[0] or None

    def data(self) -> bytes:
        """Return the image's bytes, decoded from its ``data:`` URL.

        :raises ValueError: the image is a remote URL (it is never fetched silently).
        """
        return decode_data_url(self.image_url.url)

    async def save(self, path: str | Path) -> Path:
        """Write the image's bytes to ``path`` without blocking the event loop.

        :raises ValueError: the image is a remote URL.
        """
        return await write_bytes(path, self.data())


class Function(ResponseObject, frozen=True):
    """The function a tool call invokes; ``arguments`` is the JSON text the model wrote."""

    name: str = ""
    arguments: str = ""


class ToolCall(ResponseObject, frozen=True):
    """A tool call requested by the model.

    ``index`` is the position the server gave the call's stream fragments; it belongs to the
    response only and is never sent back (see :meth:`to_param`).
    """

    id: str = ""
    type: str = "function"
    function: Function = msgspec.field(default_factory=Function)
    index: int | None = None

    def to_param(self) -> dict[str, Any]:
        """Return the call as the API takes it back inside an assistant message."""
        return {
            "id": self.id,
            "type": self.type or "function",
            "function": {"name": self.function.name, "arguments": self.function.arguments},
        }


class TopLogprob(ResponseObject, frozen=True):
    """One of the most likely tokens at a position."""

    token: str = ""
    logprob: float = 0.0
    bytes: list[int] | None = None


class TokenLogprob(ResponseObject, frozen=True):
    """The log probability of a generated token."""

    token: str = ""
    logprob: float = 0.0
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(ResponseObject, frozen=True):
    """Log probabilities of a choice's content and refusal tokens."""

    content: list[TokenLogprob] | None = None
    refusal: list[TokenLogprob] | None = None


class ChatCompletionMessage(ResponseObject, frozen=True):
    """The assistant's message.

    ``reasoning_details`` are kept exactly as the server sent them (plain dicts), because a tool
    loop must send them back unchanged on the next turn. ``reasoning`` is filled from
    ``reasoning_content`` for servers that use that name.
    """

    role: str = "assistant"
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None
    images: list[ImageOutput] | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    reasoning_details: list[dict[str, Any]] | None = None
    annotations: list[dict[str, Any]] | None = None
    audio: dict[str, Any] | None = None
    function_call: dict[str, Any] | None = None
    name: str | None = None
    parsed: Any = None

    def __post_init__(self) -> None:
        if self.reasoning is None and self.reasoning_content is not None:
            msgspec.structs.force_setattr(self, "reasoning", self.reasoning_content)

    def to_param(self) -> dict[str, Any]:
        """Return the message as a request message, ready to append to ``messages``.

        Only what the API takes back for an assistant turn is kept: ``role`` (always),
        ``content`` (``null`` when there is none), ``tool_calls`` with ``type`` and without
        their stream ``index``, a refusal, the reasoning text, and ``reasoning_details``
        unchanged. Response-only fields (``parsed``, ``annotations``, ``images``, ``null``
        values) are left out. A message appended as is to ``messages`` is sent as exactly this.
        """
        param: dict[str, Any] = {"role": self.role or "assistant", "content": self.content}
        if self.tool_calls:
            param["tool_calls"] = [call.to_param() for call in self.tool_calls]
        if self.refusal is not None:
            param["refusal"] = self.refusal
        if self.reasoning is not None:
            param["reasoning"] = self.reasoning
        if self.reasoning_details is not None:
            param["reasoning_details"] = self.reasoning_details
        if self.name is not None:
            param["name"] = self.name
        if self.audio is not None and isinstance(self.audio.get("id"), str):
            # The API takes an earlier audio answer back by its id alone.
            param["audio"] = {"id": self.audio["id"]}
        return param


class PromptTokensDetails(ResponseObject, frozen=True):
    """Breakdown of the prompt tokens."""

    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    audio_tokens: int | None = None
    image_tokens: int | None = None


class CompletionTokensDetails(ResponseObject, frozen=True):
    """Breakdown of the completion tokens."""

    reasoning_tokens: int | None = None
    image_tokens: int | None = None
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class Usage(ResponseObject, frozen=True):
    """Token counts (and, where the router reports it, the ``cost``) of a request."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | None = None
    completion_tokens_details: CompletionTokensDetails | None = None
    cost: float | None = None
    cost_details: dict[str, Any] | None = None
    is_byok: bool | None = None


class Choice(ResponseObject, frozen=True):
    """One of the completion's choices."""

    index: int = 0
    message: ChatCompletionMessage = msgspec.field(default_factory=ChatCompletionMessage)
    finish_reason: str | None = None
    native_finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(TopLevelResponse, frozen=True):
    """A whole chat completion (``object: "chat.completion"``)."""

    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice] = []
    usage: Usage | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    provider: str | None = None

    @property
    def transcript(self) -> list[Any] | None:
        """After ``run_tools``: every message of the conversation, tool results included."""
        return transcript_of(self)


class AwaitableChatCompletion(ChatCompletion, frozen=True):
    """A ``ChatCompletion`` that may also be awaited, so ``stream.get_final_completion()``
    works both ways: as in openai-python (``await stream.get_final_completion()``) and as a
    plain call once the stream was read to its end."""

    def __await__(self) -> Generator[Any, None, AwaitableChatCompletion]:
        return self._itself().__await__()

    async def _itself(self) -> AwaitableChatCompletion:
        return self


class FunctionDelta(ResponseObject, frozen=True):
    """A fragment of a tool call's function: the name on the first, argument text after."""

    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(ResponseObject, frozen=True):
    """A fragment of a tool call, keyed by ``index``."""

    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: FunctionDelta | None = None


class ChoiceDelta(ResponseObject, frozen=True):
    """What one chunk adds to a choice."""

    role: str | None = None
    content: str | None = None
    refusal: str | None = None
    reasoning: str | None = None
    reasoning_content: str | None = None
    reasoning_details: list[dict[str, Any]] | None = None
    tool_calls: list[ToolCallDelta] | None = None
    images: list[ImageOutput] | None = None


class ChunkChoice(ResponseObject, frozen=True):
    """A choice inside a streamed chunk."""

    index: int = 0
    delta: ChoiceDelta = msgspec.field(default_factory=ChoiceDelta)
    finish_reason: str | None = None
    native_finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class StreamErrorBody(ResponseObject, frozen=True):
    """The ``error`` object of an error frame inside a stream."""

    message: str = ""
    code: int | str | None = None
    type: str | None = None
    metadata: Any = None


class ChatCompletionChunk(TopLevelResponse, frozen=True):
    """One streamed event (``object: "chat.completion.chunk"``)."""

    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[ChunkChoice] = []
    usage: Usage | None = None
    error: StreamErrorBody | None = None
    system_fingerprint: str | None = None
    service_tier: str | None = None
    provider: str | None = None
