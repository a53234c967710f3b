"""The middleware's answers from storage alone: to ``Range`` / ``If-Range`` requests from a
complete stored response (RFC 9110 §14, RFC 9111 §3.3-3.4; the rules are ``spec/ranges.py``'s),
and to conditional requests (RFC 9111 §4.3.2, ``spec/conditional.py``).

Rules of this module (docs/architecture.md, the server face):

* A GET or HEAD with ``If-None-Match``, ``If-Modified-Since``, ``Range`` or ``If-Range`` (and
  none of the headers that make a request bypass: a credential not keyed, ``If-Match``,
  ``If-Unmodified-Since``) reads what is stored for its key (the request's key: ``Range`` is
  not part of it) as any request does (fresh, the client's own ``Cache-Control`` when
  ``request_cache_control=True``, Vary: ``Coalescer.stored``), and
  ``spec/ranges.range_answer`` says what it answers: a 304, a 206, a 416 or the whole stored
  response, a hit (``HIT``). When it says None (nothing fresh stored, or not a 200 to range)
  the handler runs for this request alone, a bypass (``"range request"``, ``"conditional
  request"``): never a flight, and the handler's 206 is never stored.
* The answer is replayed as any hit is (``Replayer._replay``): a body in memory sliced; a
  streamed stored body (``Snapshot.stream``) through a reader over the range only
  (``spec/ranges.py``'s ``RangeOfBody``, written by ``streamed.py``), never the whole body. A
  stored body that turns out short resets the connection: never a short body presented as
  complete.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from ..core.coalescer import Coalescer
from ..spec.conditional import validators_of
from ..spec.ranges import range_answer, range_request_of
from ..spec.requests import Wanted
from .replay import Replayer

__all__ = ["RangeReplies"]


class RangeReplies(Replayer):
    """The middleware's range answers (module rules); ``CoalesceMiddleware`` is one."""

    __slots__ = ()
    _core: Coalescer

    async def _from_storage(
        self,
        request: web.Request,
        key: str,
        header: Callable[[str], str | None],
        wanted: Wanted | None,
    ) -> web.StreamResponse | None:
        """The answer from storage to ``request`` (module rules), counted as a hit; None when
        the handler must answer it alone (not counted)."""
        core = self._core
        stored = await core.stored(key, header, wanted)
        asked = validators_of(header), range_request_of(header)
        answer = None if stored is None else range_answer(stored, request.method, *asked)
        if answer is None:
            return None
        core.count_hit()
        return self._replay(answer, "hit")  # a streamed body's range too (streamed.py)
