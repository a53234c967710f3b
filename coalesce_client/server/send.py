"""The handler runs behind a ``coalesce_middleware`` flight, and what each caller keeps of them.

Rules of this module (docs/architecture.md, the server face; the middleware's own rules are in
``middleware.py``):

* ``HandlerSend`` is the ``send`` of one request's flight: it runs the handler once and says what
  may be replayed to others; the core decides whether that is shared and stored. It is timed
  around the handler (RFC 9111 §4.2.3: the request and response times date the response). A
  response without a ``Date`` is stored with one (RFC 9110 §6.6.1: an origin with a clock sends
  it): when the handler returned.
* A revalidation (RFC 9111 §4.3.1) runs the handler on a copy of the request made conditional;
  a background one (stale-while-revalidate, ``detached``) on a copy cut off its caller's
  connection (``compat.detach``). A request whose connection is gone is run as it came.
* A keyed request's run is captured (``capture.py``): a response the handler prepares and writes
  (a ``StreamResponse``) goes into a spool, shared as a snapshot whose body streams
  (``Snapshot.stream``) from its headers on, replayed to every caller, its own included
  (``streamed.py``). A ``web.Response`` over ``max_body_size`` is shared the same way, its bytes
  in a spool at once; its own caller gets it untouched. Not captured: a bypass (nobody to share
  with), a background refresh (``detached``), a WebSocket (an ``Upgrade`` request: its
  connection is its own). A ``FileResponse`` stays its caller's alone: its file is on disk
  already, and aiohttp sends it with ``sendfile`` without reading it into memory; every caller's
  run costs an ``open`` and a ``stat``.
* What its caller alone gets (``Own``): the handler's response untouched when it cannot be
  replayed (a ``FileResponse``, a WebSocket, a stream not captured), or when it is private
  (``Set-Cookie``, ``private``, ``no-store``: never shared, RFC 9111 §3); a
  ``web.HTTPException`` the handler raised is kept as a pristine copy for every caller to raise
  its own (``compat.fresh_exception``). Any other exception is logged once, here (after the
  headers, in ``capture.py``), with its traceback; nothing from a failed run is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from aiohttp import hdrs, web
from multidict import CIMultiDict

from ..core.coalescer import Coalescer
from ..core.records import CacheStatus, Fetched
from ..core.spool import Spool
from ..spec.dates import format_http_date
from ..spec.snapshot import Headers, Snapshot
from .audit import Audit
from .capture import Capture, Head, run_captured
from .compat import detach, fresh_exception
from .replay import headers_of, response_of
from .streamed import StreamedReply

__all__ = ["Handler", "HandlerSend", "Own"]

log = logging.getLogger("coalesce_client")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Times(NamedTuple):
    """When the handler was called, and when its response (its headers) came back."""

    request: float
    response: float


class Own:
    """One caller's own outcome: whether its handler run happened, and what it answered."""

    __slots__ = ("ran", "response")

    def __init__(self) -> None:
        self.ran = False  # set by HandlerSend.run: this caller's own run (leader, or on its own)
        self.response: web.StreamResponse | None = None  # answered to this caller untouched

    def status(self, key: str | None) -> CacheStatus:
        """The status of a caller whose call raised: its own run's, or the run it joined."""
        if key is None:
            return "bypass"
        return "miss" if self.ran else "coalesced"


class HandlerSend:
    """The ``send`` of one request's flight (module rules); ``own`` is its caller's outcome."""

    __slots__ = ("_audit", "_clock", "_handler", "_policy", "_request", "_shared", "own")

    def __init__(
        self,
        request: web.Request,
        handler: Handler,
        core: Coalescer,
        audit: Audit | None = None,
        shared: bool = True,
    ) -> None:
        self._request = request
        self._handler = handler
        self._policy = core.policy
        self._clock = core.clock  # the core's: it times the handler
        self._audit = audit  # the key audit (audit.py), None when off
        # A keyed request (a flight's): its streamed responses are captured (module rules).
        self._shared = shared and hdrs.UPGRADE not in request.headers
        self.own = Own()

    async def __call__(self, conditional: Headers = (), detached: bool = False) -> Fetched:
        request = self._request
        if not (conditional or detached) or request.transport is None:
            # Its caller's connection is gone (nothing can be written on it any more), and
            # aiohttp 3.10 cannot copy such a request: the handler gets it as it came,
            # unconditional (a full response revalidates as well).
            return await self.run(request, self.own if not detached else Own())
        # A revalidation (RFC 9111 §4.3.1): the handler sees the request made conditional.
        headers = CIMultiDict(request.headers)
        for name, value in conditional:
            headers[name] = value
        again = request.clone(headers=headers)
        if detached:  # its caller was answered: its connection may serve another request now
            detach(again)
            return await self.run(again, Own())
        return await self.run(again, self.own)

    async def run(self, request: web.Request, own: Own) -> Fetched:
        """Run the handler once; keep this caller's own outcome in ``own``; say what may be
        replayed to others (the coalescer decides whether it is shared and stored)."""
        own.ran = True
        clock = self._clock
        request_time = clock()
        capture = None  # a background refresh (its own Own) keeps NoWriter: never captured
        if self._shared and own is self.own:
            capture = Capture(self._policy.max_body_size, request.method)
        resp: web.StreamResponse | None
        try:
            if capture is None:
                resp = await self._watched(request)
            else:
                resp = await run_captured(self._watched(request), request, capture)
        except web.HTTPException as exc:
            # A pristine template, taken before aiohttp prepares and sends the exception for
            # anybody: every caller raises its own copy of it.
            template = fresh_exception(exc)
            if self._policy.is_private(headers_of(exc), exc.status) or self._unkeyed(
                request, headers_of(exc)
            ):
                own.response = template  # its caller's alone; the others run the handler
                cookie = "Set-Cookie" in template.headers
                return Fetched(None, withheld="set-cookie" if cookie else "private")
            raise template from None
        except Exception:
            log.exception("Error handling request %s %s", request.method, request.rel_url)
            raise
        times = Times(request_time, clock())
        if resp is None:  # captured: its headers are out, its body streams into the spool
            assert capture is not None
            head = capture.head.result()
            return self._streamed(
                request, own, self._snapshot(request, head, times, capture.take())
            )
        own.response = resp
        if self._unkeyed(request, headers_of(resp)):  # audit="strict": its caller's alone
            return Fetched(None, withheld="unkeyed input")
        body = resp.body if type(resp) is web.Response and not resp.prepared else False
        if body is None:
            body = b""  # a 204, a redirect: nothing to read, everything to share
        if not isinstance(body, (bytes, bytearray)):
            return Fetched(None)  # streamed, a file, a WebSocket: its caller's alone
        head = Head(resp.status, resp.reason, headers_of(resp))
        if capture is None or len(body) <= self._policy.max_body_size:
            return self._fetched(self._snapshot(request, head, times, bytes(body)))
        # Over max_body_size: shared as a stream of the bytes at hand (module rules).
        spool = Spool(len(body), len(body))
        spool.append(bytes(body))
        spool.finish()
        length = (("Content-Length", str(len(body))),)
        head = Head(head.status, head.reason, head.headers + length)
        return self._fetched(self._snapshot(request, head, times, spool))

    def _snapshot(
        self, request: web.Request, head: Head, times: Times, body: bytes | Spool
    ) -> Snapshot:
        """The response to share: ``head`` and its body (bytes, or a spool: ``stream``)."""
        headers = head.headers
        # What aiohttp would add (it adds a Date to every response): the replays keep this one.
        if not any(k.lower() == "date" for k, _ in headers):
            headers = (("Date", format_http_date(times.response)), *headers)
        stream = body if isinstance(body, Spool) else None
        return Snapshot(
            status=head.status,
            reason=head.reason,
            headers=headers,
            url=str(request.rel_url),
            method=request.method,
            body=body if isinstance(body, bytes) else b"",
            request_time=times.request,
            response_time=times.response,
            stream=stream,
        )

    def _streamed(self, request: web.Request, own: Own, snap: Snapshot) -> Fetched:
        """What a captured run shares: its snapshot, or (audit="strict") nothing, its own
        caller then answered from the spool alone."""
        if self._unkeyed(request, snap.headers):
            own.response = StreamedReply(snap)
            return Fetched(None, withheld="unkeyed input")
        return self._fetched(snap)

    def _fetched(self, snap: Snapshot) -> Fetched:
        should_store = self._policy.should_store
        return Fetched(snap, should_store is None or bool(should_store(response_of(snap))))

    async def _watched(self, request: web.Request) -> web.StreamResponse:
        """The handler's run, its reads recorded when the key audit is on (``audit.py``)."""
        audit = self._audit
        if audit is None:
            return await self._handler(request)
        reads = audit.watch(request)
        try:
            return await self._handler(request)
        finally:
            audit.done(request, reads)

    def _unkeyed(self, request: web.Request, headers: Headers) -> bool:
        """Whether the audit in ``"strict"`` mode keeps a response with ``headers`` from being
        shared: its handler read an input that is neither keyed nor in its ``Vary`` (logged
        either way)."""
        audit = self._audit
        if audit is None:
            return False
        return audit.verdict(request, headers) is not None and audit.strict
