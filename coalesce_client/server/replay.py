"""What the middleware answers from a snapshot: replays, 304s, and the cache status header.

Rules of this module (docs/architecture.md, the server face):

* Every waiter gets its own fresh ``web.Response``: its own headers (a copy), the shared body
  bytes. A replay (a hit, a waiter's copy) keeps the stored ``Date`` and carries ``Age``, its
  current age (RFC 9111 §4.2.3, §5.1), in place of any the handler set; the handler's own
  answer to its own caller (a miss) gets none.
* A response is stored as it will be sent, as far as it can be replayed: its cookies as
  ``Set-Cookie`` (aiohttp adds them only when it prepares the response), without what aiohttp
  computes anew for every response (``Content-Length``, ``Server``).
* A 304 from storage carries the stored response's ``not_modified_headers`` and its ``Age``.
* The cache status header names the caller's own status; it is never set on a response already
  on its way (prepared).
* A replay is the middleware's hot path, measured in instructions (docs/architecture.md): the
  ``Replayer`` methods are the middleware's own (a base class: no call, no lookup is added).
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import hdrs, web
from multidict import CIMultiDict, istr

from ..core.records import CacheStatus
from ..spec.conditional import not_modified_headers
from ..spec.freshness import age_header
from ..spec.snapshot import Snapshot
from ..storage.base import Clock

__all__ = ["Replayer", "headers_of", "response_of"]

_R = TypeVar("_R", bound=web.StreamResponse)
_HEADER_VALUES: dict[CacheStatus, str] = {
    "hit": "HIT",
    "miss": "MISS",
    "coalesced": "COALESCED",
    "stale": "STALE",
    "revalidated": "REVALIDATED",
    "bypass": "BYPASS",
}
# Recomputed by aiohttp for every response it sends; never replayed from a snapshot. Date is
# replayed: it says when the origin made the response, and a replay's age is counted from it
# (RFC 9111 §4.2.3; aiohttp adds a Date only to a response without one).
_NOT_REPLAYED = frozenset({"content-length", "server"})


class Replayer:
    """The middleware's answers from snapshots (module rules); ``CoalesceMiddleware`` is one."""

    __slots__ = ("_clock", "_header")

    def __init__(self, clock: Clock, cache_status_header: str | None) -> None:
        self._clock = clock  # the core's: a replay's Age is counted on it
        # An istr: a CIMultiDict takes it as its own identity; a str would be folded on every
        # replay (as Age's, hdrs.AGE).
        self._header = None if cache_status_header is None else istr(cache_status_header)

    def _replay(self, snap: Snapshot, status: CacheStatus) -> web.Response:
        """A fresh response for one more request: its own headers (a copy), the shared body."""
        # web.Response copies the headers it is given into its own CIMultiDict: given the
        # snapshot's pairs, that is the only copy (building one here too cost 0.1 µs a hit).
        resp = web.Response(
            status=snap.status, reason=snap.reason, body=snap.body, headers=snap.headers
        )
        headers = resp.headers
        if status != "miss":  # from a stored or shared snapshot (RFC 9111 §5.1)
            headers[hdrs.AGE] = age_header(snap.age(self._clock()))
        if self._header is not None:
            headers[self._header] = _HEADER_VALUES[status]
        return resp

    def _not_modified(self, snap: Snapshot) -> web.Response:
        """The 304 a fresh stored response answers a request it is not modified for, a hit."""
        resp = web.Response(
            status=304, reason="Not Modified", headers=not_modified_headers(snap.headers)
        )
        resp.headers[hdrs.AGE] = age_header(snap.age(self._clock()))
        return self._labelled(resp, "hit")

    def _labelled(self, resp: _R, status: CacheStatus) -> _R:
        """``resp`` with the cache status header, unless it is already on its way."""
        if self._header is not None and not resp.prepared:
            resp.headers[self._header] = _HEADER_VALUES[status]
        return resp


def headers_of(resp: web.StreamResponse) -> tuple[tuple[str, str], ...]:
    """The headers a response will be sent with, as far as they can be replayed (module rules)."""
    headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in _NOT_REPLAYED]
    headers.extend(("Set-Cookie", morsel.OutputString()) for morsel in resp.cookies.values())
    return tuple(headers)


def response_of(snap: Snapshot) -> web.Response:
    """A fresh response from a snapshot: its own headers object, the shared body bytes."""
    return web.Response(
        status=snap.status, reason=snap.reason, body=snap.body, headers=CIMultiDict(snap.headers)
    )
