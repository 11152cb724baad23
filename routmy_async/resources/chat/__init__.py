"""``client.chat.completions``: the resource, its stream, the accumulator of chunks and
``to_sse``."""

from typing import TYPE_CHECKING as _TYPE_CHECKING

from ..._lazy import lazy_names as _lazy_names
from ._completions import Chat, Completions

if _TYPE_CHECKING:
    from ._stream import ChatCompletionStreamManager

# The stream classes load with the first stream: a process that only sends plain requests does
# not hold their modules in memory.
__getattr__, __dir__ = _lazy_names(__name__, globals(), {"ChatCompletionStreamManager": "._stream"})

__all__ = ["Chat", "ChatCompletionStreamManager", "Completions"]
