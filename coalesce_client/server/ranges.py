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
* A body in memory is replayed as any hit is (``Replayer._replay``), sliced; a streamed stored
  body (``Snapshot.stream``) is written through a reader over the range only, never the whole
  body. A stored body that turns out short resets the connection after what was sent (its
  ``Content-Length`` was announced): never a short body presented as complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from aiohttp import web

from ..core.coalescer import Coalescer
from ..spec.conditional import validators_of
from ..spec.ranges import range_answer, range_request_of
from ..spec.requests import Wanted
from ..spec.snapshot import Snapshot, TruncatedBodyError
from .replay import Replayer

__all__ = ["RangeReplies"]

_CHUNK = 64 * 1024  # what one write of a streamed body takes from its reader


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
        if answer.stream is None:
            return self._replay(answer, "hit")
        return await self._streamed(request, answer)

    async def _streamed(self, request: web.Request, snap: Snapshot) -> web.StreamResponse:
        """Write a streamed body through one reader (module rules): the replay's own status and
        headers (``Age``, the cache status), then the bytes as they are read."""
        stream = snap.stream
        assert stream is not None and stream.length is not None
        # A copy without the stream: the replay's memo (its template) is the copy's, never the
        # stored snapshot's.
        head = self._replay(replace(snap, stream=None), "hit")
        resp = web.StreamResponse(status=head.status, reason=head.reason, headers=head.headers)
        resp.content_length = stream.length
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        reader = stream.reader()
        try:
            while chunk := await reader.read(_CHUNK):
                await resp.write(chunk)
        except TruncatedBodyError:
            # Reset the connection: the client sees a body shorter than its Content-Length.
            # aiohttp's own end of the response then finds the connection gone, and says nothing.
            if request.transport is not None:
                request.transport.abort()
            return resp
        finally:
            reader.close()
        await resp.write_eof()
        return resp
