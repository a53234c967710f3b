"""The real requests behind a ``CoalescingSession`` call, and the response each caller gets.

Rules of this module (the client face's half of the pipeline; ``call.py`` says who may share,
this says how a response is fetched and handed back):

* ``Outgoing`` is one call's request as aiohttp will send it, split into what may be shared
  (``kwargs``) and what is its caller's alone (``own``: ``call.CALLER_ALONE``).
* ``SharedRequest`` is the ``send`` of a flight: one real request with the session's timeout and
  no status check (each caller applies its own), timed around (RFC 9111 §4.2.3: its request and
  response times date the response), read only up to ``max_body_size``. A body over the limit
  (its ``Content-Length``, or the bytes read crossing it) is shared as it streams (issue 24):
  what was read goes into a ``core/spool.py`` ``Spool`` and a pump reads the rest into it at the
  origin's pace (``pump.py``), and the snapshot's ``stream`` is that spool; anything else is a
  complete ``Snapshot``. The user's ``should_store`` sees the response each caller would (a
  streamed body's ``content`` is a reader of the spool, which a filter cannot read whole).
  A response without a body (HEAD, 204, 304: RFC 9110 §6.4.1) is never spooled, whatever its
  ``Content-Length`` says.
* ``Passing`` is the ``send`` of a call that takes no part: aiohttp's own request with the call's
  own options, its body streamed as aiohttp streams it.
* The caller's response: a ``CachedResponse`` over the shared snapshot (its own reader of a
  streamed body), or a 504 for an ``only-if-cached`` call with nothing usable stored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, NamedTuple

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from ..core.policy import CachePolicy
from ..core.records import Answer, Fetched
from ..core.slots import FetchedShell, SnapshotShell
from ..core.spool import Spool
from ..spec.decisions.reasons import CacheReason
from ..spec.snapshot import Headers, Snapshot
from .body import announced_length, read_within
from .pump import start_pump
from .response import CachedResponse, LiveResponse

__all__ = ["Outgoing", "Passing", "SharedRequest", "Times", "received", "snapshot_of"]


class Times(NamedTuple):
    """When a real request was sent and when its response's head arrived, on the session's clock:
    RFC 9111 §4.2.3's ``request_time`` and ``response_time``, which date the response."""

    request_time: float
    response_time: float


_NOT_SENT = Times(0.0, 0.0)
_BODILESS = frozenset({204, 304})  # with HEAD, a response without a body (RFC 9110 §6.4.1)


class Outgoing(NamedTuple):
    """One call's request as aiohttp will send it (module rules). A NamedTuple: built for every
    call that is not a hit, where a frozen dataclass costs three times as much to build."""

    session: aiohttp.ClientSession
    method: str  # upper case
    url: str | URL  # as the caller gave it (aiohttp joins a relative one to its base URL), or
    # the absolute URL the call's checks built from it (calls.py)
    kwargs: dict[str, Any]  # aiohttp's options, without the caller's own
    own: Mapping[str, Any]  # CALLER_ALONE: timeout, raise_for_status
    checks: Any  # raise_for_status for its caller's response: the call's, else the session's

    def alone(self) -> dict[str, Any]:
        """aiohttp's options for a request of the caller's own: its own options applied too."""
        return {**self.kwargs, **self.own} if self.own else self.kwargs


class SharedRequest:
    """The real request behind a flight, and what its own caller gets (module rules). Built for
    every call that is not a hit (a burst's followers each build one, and most never send it):
    positional, and what it reads of the policy read only when it sends."""

    __slots__ = ("_clock", "_out", "_policy")

    def __init__(self, out: Outgoing, policy: CachePolicy, clock: Callable[[], float]) -> None:
        self._out = out  # sent without its caller's own options (each applies its own)
        self._policy = policy  # read when it sends: max_body_size, should_store
        self._clock = clock

    async def __call__(self, conditional: Headers = (), detached: bool = False) -> Fetched:
        out = self._out
        kwargs = out.kwargs
        if conditional:  # a revalidation: the caller's request, made conditional
            headers = CIMultiDict(kwargs.get("headers") or ())
            for name, value in conditional:
                headers[name] = value
            kwargs = {**kwargs, "headers": headers}
        sent = self._clock()
        resp = await out.session.request(out.method, out.url, raise_for_status=False, **kwargs)
        times = Times(sent, self._clock())  # its head is here: the response_time
        policy = self._policy
        snap = await received(resp, policy.max_body_size, times, out.session)
        should_store = policy.should_store
        verdict = should_store is None or should_store(CachedResponse(snap, "miss"))
        fetched = FetchedShell()  # Fetched(snap, bool(verdict)), faster (core/slots.py)
        fetched.snapshot, fetched.withheld = snap, "streamed"
        fetched.storable = bool(verdict)  # the filter sees what every caller would
        fetched.__class__ = Fetched
        return fetched  # type: ignore[no-any-return]

    def drop(self) -> None:
        """Its caller gave up: nothing is kept for a caller alone (a large body is shared as it
        streams, and its pump stops when nobody holds it: ``pump.py``)."""

    def caller_response(self, answer: Answer, url: URL, now: float) -> CachedResponse:
        """What this caller gets of its flight's answer (module rules)."""
        if answer.snapshot is not None:
            resp = CachedResponse(answer.snapshot, answer.status, url, None, now)  # positional
        else:  # only-if-cached, nothing usable stored (RFC 9111 §5.2.1.7)
            gateway_timeout = Snapshot(
                504, "Gateway Timeout", (("Content-Length", "0"),), str(url), self._out.method, b""
            )
            resp = CachedResponse(gateway_timeout, "miss", request_url=url)
        if answer.reason is not None:  # else None already
            resp.cache_reason = answer.reason
        return resp


class Passing:
    """The request of a call that takes no part, streamed as aiohttp streams it."""

    __slots__ = ("_clock", "_out", "response", "times")

    def __init__(self, out: Outgoing, clock: Callable[[], float]) -> None:
        self._out = out
        self._clock = clock
        self.response: aiohttp.ClientResponse | None = None
        self.times = _NOT_SENT

    async def __call__(self, conditional: Headers = (), detached: bool = False) -> Fetched:
        sent = self._clock()  # never conditional: a call that takes no part revalidates nothing
        out = self._out
        self.response = await out.session.request(out.method, out.url, **out.alone())
        self.times = Times(sent, self._clock())
        return Fetched(None)

    def live(self, reason: CacheReason | None) -> LiveResponse:
        assert self.response is not None  # __call__ ran
        live = self.response
        passed = LiveResponse(live, snapshot_of(live, b"", self.times), "bypass")
        passed.cache_reason = reason
        return passed


async def received(
    resp: aiohttp.ClientResponse, limit: int, times: Times, session: aiohttp.ClientSession
) -> Snapshot:
    """The response of a flight's real request as every caller will read it: its body whole up
    to ``limit``, else shared as it streams (module rules; both client faces)."""
    try:
        bodiless = resp.method == "HEAD" or resp.status in _BODILESS
        length = None if bodiless else announced_length(resp)
        whole = bodiless or (length is not None and length <= limit)  # as read_within reads it
        body = await (resp.read() if whole else read_within(resp, limit))
    except BaseException:
        resp.close()  # a truncated or cancelled read: nobody gets a short body
        raise
    if body is not None and len(body) <= limit:
        resp.release()
        return snapshot_of(resp, body, times)
    spool = Spool(limit, announced_length(resp))  # over the limit: shared as it streams
    spool.append(body or b"")
    start_pump(resp, spool, session)
    return replace(snapshot_of(resp, b"", times), stream=spool)


def snapshot_of(resp: aiohttp.ClientResponse, body: bytes, times: Times) -> Snapshot:
    """The response as received, with the times its age is computed from (a redirect's are those
    of the whole request: aiohttp does not say when each hop arrived). Built on every miss: in
    its shell (``core/slots.py``), as ``Snapshot(...)`` builds it."""
    snap = SnapshotShell()
    snap.status = resp.status
    snap.reason = resp.reason or ""
    snap.headers = tuple(resp.headers.items())
    snap.url = str(resp.url)
    snap.method = resp.method
    snap.body = body
    snap.stored_at = snap.expires_at = 0.0
    history = resp.history
    snap.history = tuple(snapshot_of(h, b"", times) for h in history) if history else ()
    snap.request_time, snap.response_time = times
    snap.stream = snap._initial_age = snap.replay_form = None
    snap.__class__ = Snapshot
    return snap  # type: ignore[no-any-return]
