"""The end of a streamed body whose answer is already whole.

A stream ends at its terminal event (``data: [DONE]``, ``response.completed``), but its
HTTP/1.1 connection can go back to the pool only once the body has ended too, and a server
may hold the body open after that event. The reader is not made to wait for it: the stream
hands the response over here, and

- aiohttp itself releases the connection to the pool the moment the body's end arrives
  (``ClientResponse`` registers its own end-of-body callback when the response starts), so
  nothing has to read the rest: the protocol keeps receiving until the end, or until its
  buffer fills (a server that keeps talking), when it stops reading;
- a timer closes the connection if the end has not come within ``END_SECONDS``: a half-read
  connection cannot be reused, and must not hold its pool slot for ever. A connection cut
  after the terminal event never reaches the end either (aiohttp has no callback for that):
  the stream's own short wait at its end (``EventStream._await_body_end``) drops it at once
  when the cut comes then, the timer otherwise;
- the transport's ``close()`` closes whatever is still waiting, at once.

No task is involved: a callback and a timer per waiting body, both gone when it ends, so
closing a client leaves nothing running and nothing for the collector to warn about.
"""

from __future__ import annotations

import asyncio
import functools

import aiohttp

__all__ = ["END_SECONDS", "BodyEnds"]

# How long the body of a whole answer may stay open before its connection is dropped.
END_SECONDS = 1.0


class BodyEnds:
    """The bodies of whole answers still waiting for their end, for one transport."""

    __slots__ = ("_waiting",)

    def __init__(self) -> None:
        self._waiting: dict[aiohttp.ClientResponse, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def hand_over(self, response: aiohttp.ClientResponse) -> None:
        """Take ``response``, whose answer is whole but whose body has not ended: its
        connection goes back to the pool when the body ends, or is closed after
        ``END_SECONDS``."""
        loop = asyncio.get_running_loop()
        self._waiting[response] = loop.call_later(END_SECONDS, self.drop, response)
        response.content.on_eof(functools.partial(self._ended, response))

    def _ended(self, response: aiohttp.ClientResponse) -> None:
        # aiohttp released the connection just before this callback (its own was registered
        # first). Releasing it here again would set an exception on the body from inside
        # aiohttp's loop over the end-of-body callbacks.
        timer = self._waiting.pop(response, None)
        if timer is not None:
            timer.cancel()

    def drop(self, response: aiohttp.ClientResponse) -> None:
        """Close the connection of ``response`` if it is still waiting for its body's end
        (its time ran out, or the connection failed)."""
        timer = self._waiting.pop(response, None)
        if timer is not None:
            timer.cancel()
            response.close()

    def drop_all(self) -> None:
        """Close every connection still waiting for its body's end (the client is closing)."""
        for response in list(self._waiting):
            self.drop(response)
