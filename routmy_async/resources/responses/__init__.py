"""``client.responses``: the resource, its parameters and their checks, its stream, the
accumulator of events and the tool loop."""

from ._responses import Responses

__all__ = ["Responses"]
