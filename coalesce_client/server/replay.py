"""What the middleware answers from a snapshot: replays, 304s, and the cache status header.

Rules of this module (docs/architecture.md, the server face):

* Every waiter gets its own fresh ``web.Response``: its own headers (a copy), the shared body
  bytes; of a snapshot whose body streams (``stream``), its own ``StreamedReply``
  (``streamed.py``), which reads the stream itself. A replay (a hit, a waiter's copy) keeps
  the stored ``Date`` and carries ``Age``, its current age (RFC 9111 §4.2.3, §5.1), in place
  of any the handler set; the handler's own answer to its own caller (a miss) gets none.
* A response is stored as it will be sent, as far as it can be replayed: its cookies as
  ``Set-Cookie`` (aiohttp adds them only when it prepares the response), without what aiohttp
  computes anew for every response (``Content-Length``, ``Server``).
* A 304 from storage carries the stored response's ``not_modified_headers`` and its ``Age``.
* The cache status header names the caller's own status; it is never set on a response already
  on its way (prepared).
* A replay is the middleware's hot path, measured in instructions (docs/architecture.md): the
  ``Replayer`` methods are the middleware's own (a base class: no call, no lookup is added). A
  snapshot replayed a second time gets a template (``compat.ResponseTemplate``, kept on the
  snapshot as its ``replay_form``, so it lives exactly as long as the stored response): every
  later replay is a copy of it with only ``Age`` and the cache status written, the ``Age`` text
  and the header block holding both kept while the age stays in the same whole second: a
  replay then copies that block, and writes no header. A snapshot replayed once (a disk or Redis
  read decodes a new one each time) pays nothing for it.
"""

from __future__ import annotations

from typing import TypeVar

from aiohttp import hdrs, web
from multidict import CIMultiDict, istr

from ..core.records import CacheStatus
from ..spec.cache_control import DELTA_SECONDS_MAX
from ..spec.freshness import age_header
from ..spec.snapshot import Snapshot
from ..storage.base import Clock
from .compat import ResponseTemplate, template_of
from .streamed import StreamedReply

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
# A snapshot's replay_form before it has a template: replayed once (the next replay makes one),
# or never to have one (a response whose state a template cannot share).
_ONCE = object()
_NEVER = object()


class _Form:
    """A snapshot's replay form (``Snapshot.replay_form``): its response template, and the text
    of its ``Age`` while the age stays within one whole second ``[low, high)``, with the header
    block (``ResponseTemplate.headers``) of each cache status replayed in that second."""

    __slots__ = ("age", "blocks", "high", "initial_age", "low", "response_time", "template")

    def __init__(self, snap: Snapshot, template: ResponseTemplate) -> None:
        self.template = template
        self.response_time = snap.response_time
        self.initial_age = snap.age(snap.response_time)  # the corrected initial age
        self.age = ""
        self.blocks: dict[CacheStatus, CIMultiDict[str]] = {}
        self.low = self.high = 0.0  # no age is within: the first copy computes its text

    def at(self, age: float) -> None:
        """The ``Age`` text of a replay ``age`` seconds old (``age_header``), and the second it
        holds for."""
        self.age = age_header(age)
        self.blocks = {}
        whole = float(int(self.age))
        # Only where age_header's text is int(age): not at 0 and below (a clock that went
        # back), nor at the cap.
        self.low, self.high = (whole, whole + 1.0) if 0.0 < age < DELTA_SECONDS_MAX else (0.0, 0.0)

    def block(self, header: istr | None, status: CacheStatus) -> CIMultiDict[str]:
        """The header block of a replay with this status in the current second (kept)."""
        block = self.blocks[status] = self.template.headers(
            self.age, header, _HEADER_VALUES[status]
        )
        return block


class Replayer:
    """The middleware's answers from snapshots (module rules); ``CoalesceMiddleware`` is one."""

    __slots__ = ("_clock", "_header")

    def __init__(self, clock: Clock, cache_status_header: str | None) -> None:
        self._clock = clock  # the core's: a replay's Age is counted on it
        # An istr: a CIMultiDict takes it as its own identity; a str would be folded on every
        # replay (as Age's, hdrs.AGE).
        self._header = None if cache_status_header is None else istr(cache_status_header)

    def _replay(
        self, snap: Snapshot, status: CacheStatus, now: float | None = None
    ) -> web.StreamResponse:
        """A fresh response for one more request: its own headers (a copy), the shared body;
        ``now``: the clock's reading when it was found (``Coalescer.peeked_at``), else read."""
        if now is None:
            now = self._clock()
        form = snap.replay_form
        if type(form) is _Form and status != "miss":  # the hot path: a copy of the template
            # snap.age(now) (RFC 9111 §4.2.3), inlined; its Age text is the same for a second.
            age = form.initial_age + (now - form.response_time)
            if not form.low <= age < form.high:
                form.at(age)
            block = form.blocks.get(status)
            if block is None:
                block = form.block(self._header, status)
            return form.template.copy(block)
        if snap.stream is not None:  # never a template: each reply reads the stream itself
            return self._stream_reply(snap, status)
        # web.Response copies the headers it is given into its own CIMultiDict: given the
        # snapshot's pairs, that is the only copy (building one here too cost 0.1 µs a hit).
        resp = web.Response(
            status=snap.status, reason=snap.reason, body=snap.body, headers=snap.headers
        )
        headers = resp.headers
        if status != "miss":  # from a stored or shared snapshot (RFC 9111 §5.1)
            if form is None:  # its first replay: one more, and it earns a template
                snap.keep_replay_form(_ONCE)
            elif form is _ONCE:  # taken before this caller's own headers are set
                template = template_of(resp)
                snap.keep_replay_form(_NEVER if template is None else _Form(snap, template))
            headers[hdrs.AGE] = age_header(snap.age(now))
        if self._header is not None:
            headers[self._header] = _HEADER_VALUES[status]
        return resp

    def _stream_reply(self, snap: Snapshot, status: CacheStatus) -> StreamedReply:
        """A reply of a snapshot whose body streams (``streamed.py``), its own reader of it."""
        resp = StreamedReply(snap)
        if status != "miss":  # from a stored or shared snapshot (RFC 9111 §5.1)
            resp.headers[hdrs.AGE] = age_header(snap.age(self._clock()))
        return self._labelled(resp, status)

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
