"""A ``CoalescingSession`` call with ``Range`` or ``If-Range``, answered from a complete stored
response (RFC 9110 §14, RFC 9111 §3.3-3.4; the rules are ``spec/ranges.py``'s).

Rules of this module (docs/architecture.md, the client face):

* A GET or HEAD whose identity has ``ranged`` (``call.py``: ``Range`` or ``If-Range`` and no
  precondition a cache does not evaluate) reads what is stored for its key (the request's key:
  ``Range`` is not part of it) as any call does (fresh, its own ``Cache-Control``, Vary:
  ``Coalescer.stored``), and ``spec/ranges.range_answer`` says what it answers: a 206, a 416,
  a 304 or the whole stored response, a hit. When it says None (nothing fresh stored, or not a
  200 to range) the call is its own request (``"range request"``): never a flight, and the
  origin's 206 is never stored (``Passing`` stores nothing).
* A body in memory is sliced (no copy of the rest); a streamed stored body (``Snapshot.stream``)
  is read through a reader over the range only (``CachedResponse`` reads the answer's
  ``RangeOfBody`` as any streamed body): ``content`` and ``read()`` never read the whole stored
  body. A stored body that turns out short raises aiohttp's own
  ``ClientPayloadError``, never a short body presented as complete.
"""

from __future__ import annotations

from ..core.coalescer import Coalescer
from ..spec.ranges import range_answer
from ..spec.requests import Wanted
from .call import Identity
from .response import CachedResponse

__all__ = ["ranged_hit"]


async def ranged_hit(
    core: Coalescer, method: str, ident: Identity, wanted: Wanted | None
) -> CachedResponse | None:
    """The answer from storage to a call with ``Range`` or ``If-Range`` (module rules), counted
    as a hit; None when the call must be its own request (not counted)."""
    assert ident.key is not None and ident.conditional is not None and ident.ranged is not None
    stored = await core.stored(ident.key, ident.header, wanted)
    asked = ident.conditional, ident.ranged
    answer = None if stored is None else range_answer(stored, method, *asked)
    if answer is None:
        return None
    core.count_hit()
    # A streamed body's range is a StreamedBody of its own (spec/ranges.py's RangeOfBody): the
    # response reads it as any streamed body, through its caller's own reader (body.py).
    return CachedResponse(answer, "hit", request_url=ident.url, now=core.clock())
