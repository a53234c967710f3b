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
* What its caller alone gets (``Own``): the handler's response untouched when it cannot be
  replayed from bytes (a prepared ``StreamResponse``, ``FileResponse``, a WebSocket, a body over
  ``max_body_size``), or when it is private (``Set-Cookie``, ``private``, ``no-store``: never
  shared, RFC 9111 §3); a ``web.HTTPException`` the handler raised is kept as a pristine copy
  for every caller to raise its own (``compat.fresh_exception``). Any other exception is logged
  once, here, with its traceback; nothing from a failed run is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from multidict import CIMultiDict

from ..core.policy import CachePolicy
from ..core.records import CacheStatus, Fetched
from ..spec.dates import format_http_date
from ..spec.snapshot import Headers, Snapshot
from ..storage.base import Clock
from .audit import Audit
from .compat import detach, fresh_exception
from .replay import headers_of, response_of

__all__ = ["Handler", "HandlerSend", "Own"]

log = logging.getLogger("coalesce_client")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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

    __slots__ = ("_audit", "_clock", "_handler", "_policy", "_request", "own")

    def __init__(
        self,
        request: web.Request,
        handler: Handler,
        policy: CachePolicy,
        clock: Clock,
        audit: Audit | None = None,
    ) -> None:
        self._request = request
        self._handler = handler
        self._policy = policy
        self._clock = clock  # the core's: it times the handler
        self._audit = audit  # the key audit (audit.py), None when off
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
        try:
            resp = await self._watched(request)
        except web.HTTPException as exc:
            # A pristine template, taken before aiohttp prepares and sends the exception for
            # anybody: every caller raises its own copy of it.
            template = fresh_exception(exc)
            if self._policy.is_private(headers_of(exc), exc.status) or self._unkeyed(request, exc):
                own.response = template  # its caller's alone; the others run the handler
                cookie = "Set-Cookie" in template.headers
                return Fetched(None, withheld="set-cookie" if cookie else "private")
            raise template from None
        except Exception:
            log.exception("Error handling request %s %s", request.method, request.rel_url)
            raise
        response_time = clock()
        own.response = resp
        if self._unkeyed(request, resp):  # audit="strict": its caller's alone
            return Fetched(None, withheld="unkeyed input")
        body = resp.body if type(resp) is web.Response and not resp.prepared else False
        if body is None:
            body = b""  # a 204, a redirect: nothing to read, everything to share
        if not isinstance(body, (bytes, bytearray)):
            return Fetched(None)  # streamed, a file, a WebSocket: its caller's alone
        headers = headers_of(resp)
        if "Date" not in resp.headers:  # what aiohttp would add: the replays keep this one
            headers = (("Date", format_http_date(response_time)), *headers)
        snap = Snapshot(
            status=resp.status,
            reason=resp.reason,
            headers=headers,
            url=str(request.rel_url),
            method=request.method,
            body=bytes(body),
            request_time=request_time,
            response_time=response_time,
        )
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

    def _unkeyed(self, request: web.Request, resp: web.StreamResponse) -> bool:
        """Whether the audit in ``"strict"`` mode keeps ``resp`` from being shared: its handler
        read an input that is neither keyed nor in its ``Vary`` (logged either way)."""
        audit = self._audit
        if audit is None:
            return False
        return audit.verdict(request, headers_of(resp)) is not None and audit.strict
