"""coalesce_middleware: stampede protection for aiohttp.web servers (go-chi/stampede's job).

The only module that touches ``aiohttp.web``. It turns a request into a key and a ``send`` that
runs the handler once, and replays the outcome to every waiter. Rules (DESIGN.md, Security):

* This is a shared cache (RFC 9111 §3): a response with ``Set-Cookie``, ``Cache-Control: private``
  or ``no-store`` is never shared or stored; the waiters run the handler themselves and the key
  goes straight through for ``pass_ttl`` (Varnish's hit-for-miss), so the route is not serialized.
* These requests bypass it (never lead nor join a flight): those carrying any of the policy's
  ``credential_headers`` not in ``key_headers``; ``Range``, ``If-Match``, ``If-Unmodified-Since``
  and ``If-Range`` requests; GET and HEAD requests with a body (the key does not read bodies).
* A GET or HEAD with ``If-None-Match`` or ``If-Modified-Since`` (and none of the above) is
  answered from a fresh stored response (RFC 9111 §4.3.2, ``conditional.py``): a 304 with the
  stored validators, ``Date``, ``Age`` and the cache status ``HIT`` when its validator matches a
  2xx, else the full stored response; the handler does not run. Nothing fresh stored: a bypass.
  It never leads nor joins a flight: what its handler run answers (a 304 perhaps) is its own.
  Every storage answers it (``Coalescer.fresh``: ``peek``, else a storage read).
* A handler that reads a request header must have it in the key (``key_headers``, ``key_func``)
  or declare it in the response's ``Vary``: a request header nobody keyed on is where web cache
  poisoning comes in. A response that varies serves only requests with the same values.
* Every waiter gets its own fresh ``web.Response`` (no headers object is shared), or a fresh
  equivalent of the ``web.HTTPException`` the handler raised. Any other exception is logged once
  for the run (with its traceback) and becomes a 500 for each waiter; nothing from a failed run
  is stored. The cache status header is on every response this middleware answers, errors
  included: the caller's own status (``MISS`` for the run's own caller, ``COALESCED`` for a
  waiter, ``BYPASS``).
* Invalidation (RFC 9111 §4.4, ``url_index.py``): when the handler itself answered an unsafe
  request (a method outside GET, HEAD, OPTIONS, TRACE) with a status below 400, returned or
  raised (a ``303 See Other``), every stored response for the request's URL is dropped, and for
  its ``Location`` and ``Content-Location`` on the same origin; before the response goes out,
  so the client's next request finds nothing stale.
* A replay (a hit, a waiter's copy) keeps the stored ``Date`` and carries ``Age``, its current age
  (RFC 9111 §4.2.3, §5.1) in place of any the handler set. A response without a ``Date`` is
  stored with one (RFC 9110 §6.6.1: an origin with a clock sends it): when the handler returned.
* What cannot be replayed from bytes (a prepared ``StreamResponse``, ``FileResponse``, a
  WebSocket, a body over ``max_body_size``) goes to its own caller untouched and is not shared.
  A ``web.Response`` without a body (a 204, a redirect) is an ordinary shareable response.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NoReturn, TypeVar

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict, istr
from yarl import URL

from ..core.coalescer import Coalescer
from ..core.keys import KeyMemo, query_pairs
from ..core.policy import CachePolicy
from ..core.records import CacheStatus, Call, Fetched, Stats
from ..options import (
    check_callable,
    check_flag,
    check_header_name,
    check_header_names,
    check_string,
)
from ..spec.cache_control import request_directives
from ..spec.conditional import not_modified, not_modified_headers
from ..spec.dates import format_http_date
from ..spec.freshness import age_header
from ..spec.invalidation import SAFE_METHODS, invalidates
from ..spec.requests import Wanted
from ..spec.snapshot import Headers, Snapshot
from ..storage.base import Clock, Storage, wall_clock

__all__ = ["CoalesceMiddleware", "coalesce_middleware"]

log = logging.getLogger("coalesce_client")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_R = TypeVar("_R", bound=web.StreamResponse)
_HEADER_VALUES: dict[CacheStatus, str] = {
    "hit": "HIT",
    "miss": "MISS",
    "coalesced": "COALESCED",
    "stale": "STALE",
    "revalidated": "REVALIDATED",
    "bypass": "BYPASS",
}
# Answers from storage even when the caller's own run answered (a 304, a 503): the stored one.
_FROM_STORAGE = frozenset({"stale", "revalidated"})
# Requests whose answer is partial, or relative to what the client already has: never shared.
_PRECONDITION_HEADERS = ("range", "if-match", "if-unmodified-since", "if-range")
# Of those relative to what the client has, the two a stored response can answer (RFC 9111 §4.3.2).
_VALIDATION_HEADERS = ("if-none-match", "if-modified-since")
_NOT_MODIFIED_METHODS = frozenset({"GET", "HEAD"})  # RFC 9110 §15.4.5
# aiohttp's own answer to a handler that raised (web_protocol.handle_error, plain text).
_ERROR_500 = "500 Internal Server Error\n\nServer got itself in trouble"
# Recomputed by aiohttp for every response it sends; never replayed from a snapshot. Date is
# replayed: it says when the origin made the response, and a replay's age is counted from it
# (RFC 9111 §4.2.3; aiohttp adds a Date only to a response without one).
_NOT_REPLAYED = frozenset({"content-length", "server"})


class CoalesceMiddleware:
    """An aiohttp.web middleware that runs a handler once for concurrent identical requests.

    ``coalesce_middleware`` is this class. Use it on a whole application
    (``web.Application(middlewares=[mw])``), on a sub-application mounted with
    ``app.add_subapp()``, or on chosen routes: ``app.router.add_get("/slow", mw.decorate(slow))``.

    >>> from aiohttp import web
    >>> app = web.Application(middlewares=[coalesce_middleware(ttl=5, key_headers=["Accept"])])
    """

    __middleware_version__ = 1  # a new-style aiohttp middleware (no deprecation warning)

    __slots__ = (
        "_bypass_headers",
        "_clock",
        "_conditional_bypass",
        "_core",
        "_header",
        "_key_func",
        "_key_names",
        "_keys",
        "_memo",
        "_request_cache_control",
        "policy",
    )

    def __init__(
        self,
        *,
        ttl: float = 5,
        storage: Storage | None = None,
        key_headers: Iterable[str] = (),
        policy: CachePolicy | None = None,
        wait_timeout: float | None = None,
        key_func: Callable[[web.Request], str | None] | None = None,
        cache_status_header: str | None = "X-Cache",
        request_cache_control: bool = False,
        namespace: str = "",
        clock: Clock = wall_clock,
    ) -> None:
        check_callable(key_func, "key_func", none_ok=True)
        if cache_status_header is not None:
            check_header_name(cache_status_header, "cache_status_header")
        check_string(namespace, "namespace")
        # Off by default, as in nginx and Varnish: a client must not switch off the protection.
        self._request_cache_control = check_flag(request_cache_control, "request_cache_control")
        self._core = Coalescer(
            storage=storage,
            policy=policy,
            ttl=ttl,
            clock=clock,
            wait_timeout=wait_timeout,
            shared_cache=True,
        )
        policy = self.policy = self._core.policy
        names = check_header_names(key_headers, "key_headers")
        self._keys = policy.key_maker(namespace=namespace, key_headers=names)
        # Credentials the user did not make part of the key (such requests are not ours to
        # share), then the headers of partial and conditional requests. A request with any of
        # them leaves the hot path; of those, a request with only validation headers may still
        # be answered from storage (_conditional).
        credentials = tuple(h for h in policy.credential_headers if h not in names)
        self._conditional_bypass = credentials + _PRECONDITION_HEADERS
        self._bypass_headers = self._conditional_bypass + _VALIDATION_HEADERS
        self._clock = clock  # the core's: a replay's Age is counted on it
        # The headers a keyed request's key reads: a credential header not in key_headers is
        # absent from every request that gets as far as a key (it bypasses), so it is not read.
        self._key_names = tuple(h for h in self._keys.header_names if h not in credentials)
        self._key_func = key_func
        # An istr: a CIMultiDict takes it as its own identity; a str would be folded on every
        # replay (as Age's, hdrs.AGE).
        self._header = None if cache_status_header is None else istr(cache_status_header)
        self._memo: KeyMemo[str] = KeyMemo()  # request parts -> key, see _key()

    @property
    def stats(self) -> Stats:
        return self._core.stats

    @property
    def storage(self) -> Storage:
        return self._core.storage

    async def close(self) -> None:
        """Close the storage (call it from ``app.on_cleanup`` if the storage holds resources)."""
        await self._core.drain()
        await self._core.storage.close()

    def decorate(self, handler: Handler) -> Handler:
        """Apply the middleware to one handler: ``router.add_get("/slow", mw.decorate(slow))``."""

        async def wrapped(request: web.Request) -> web.StreamResponse:
            return await self(request, handler)

        return wrapped

    async def __call__(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        core = self._core
        key = None
        headers = request.headers

        def header(name: str) -> str | None:  # the request's values, for Vary
            return ", ".join(headers.getall(name)) if name in headers else None

        wanted: Wanted | None = None
        refresh = False
        # The bypass names in one C-level scan (a loop in Python cost 0.1 µs more per hit).
        if (
            request.method in self.policy.methods
            and not request.body_exists
            and headers.keys().isdisjoint(self._bypass_headers)
        ):
            key = self._key(request)
            if self._request_cache_control and ("cache-control" in headers or "pragma" in headers):
                wanted, refresh = _wanted(header)
            if not refresh:
                snap = core.peek(key, header, wanted)
                if snap is not None:  # the hot path: a hit answered without awaiting
                    return self._replay(snap, "hit")
        elif (
            request.method in _NOT_MODIFIED_METHODS
            and request.method in self.policy.methods
            and not request.body_exists
            and headers.keys().isdisjoint(self._conditional_bypass)
        ):
            validated = await self._conditional(request, header)
            if validated is not None:
                return validated
        own = _Own()

        async def send(conditional: Headers = (), detached: bool = False) -> Fetched:
            if not (conditional or detached) or request.transport is None:
                # Its caller's connection is gone (nothing can be written on it any more), and
                # aiohttp 3.10 cannot copy such a request: the handler gets it as it came,
                # unconditional (a full response revalidates as well).
                return await self._run(request, handler, own if not detached else _Own())
            # A revalidation (RFC 9111 §4.3.1): the handler sees the request made conditional.
            headers = CIMultiDict(request.headers)
            for name, value in conditional:
                headers[name] = value
            again = request.clone(headers=headers)
            if detached:  # its caller was answered: its connection may serve another request now
                again._payload_writer = _NoWriter()
                return await self._run(again, handler, _Own())
            return await self._run(again, handler, own)

        url_key = None if key is None else self._url_key(request, request.rel_url)
        try:
            call = Call(
                key,
                header=header,
                url=request.host.lower() + request.raw_path if self.policy.url_ttl else None,
                url_key=url_key,
                refresh=refresh,
                wanted=wanted,
            )
            answer = await core.fetch(call, send)
        except web.HTTPException as exc:
            if own.ran and request.method not in SAFE_METHODS:
                await self._invalidate_after(request, exc.status, exc.headers)
            # Shared through the flight: each caller, the leader too, raises its own copy.
            raise self._labelled(_fresh_exception(exc), own.status(key)) from None
        except Exception:
            # Logged once, by the run that failed (_run); each caller gets aiohttp's 500.
            return self._labelled(web.Response(status=500, text=_ERROR_500), own.status(key))
        resp = own.response
        if own.ran and request.method not in SAFE_METHODS:
            if resp is not None:
                await self._invalidate_after(request, resp.status, resp.headers)
            elif answer.snapshot is not None:
                snap = answer.snapshot
                await self._invalidate_after(request, snap.status, CIMultiDict(snap.headers))
        if resp is None or answer.status in _FROM_STORAGE:
            if answer.snapshot is None:  # only-if-cached, nothing usable stored (§5.2.1.7)
                return self._labelled(web.Response(status=504, reason="Gateway Timeout"), "miss")
            return self._replay(answer.snapshot, answer.status)
        if isinstance(resp, web.HTTPException):  # before StreamResponse: it is one in 3.x
            core.count_error()
            raise self._labelled(resp, answer.status)
        return self._labelled(resp, answer.status)

    async def _conditional(
        self, request: web.Request, header: Callable[[str], str | None]
    ) -> web.Response | None:
        """The answer to a request with ``If-None-Match`` or ``If-Modified-Since`` from a fresh
        stored response (a 304 or the full response, a hit), or None: it goes through as a
        bypass. Never a flight: the handler's answer to a conditional request is its own."""
        wanted = None
        if self._request_cache_control and (
            "cache-control" in request.headers or "pragma" in request.headers
        ):
            wanted, refresh = _wanted(header)
            if refresh:
                return None
        snap = await self._core.fresh(self._key(request), header, wanted)
        if snap is None:
            return None
        # A precondition is ignored when the response would not be a 2xx (RFC 9110 §13.2.1).
        if 200 <= snap.status < 300 and not_modified(
            snap.headers,
            header("if-none-match"),
            header("if-modified-since"),
            snap.response_time or None,
        ):
            resp = web.Response(
                status=304, reason="Not Modified", headers=not_modified_headers(snap.headers)
            )
            resp.headers[hdrs.AGE] = age_header(snap.age(self._clock()))
            return self._labelled(resp, "hit")
        return self._replay(snap, "hit")

    def _labelled(self, resp: _R, status: CacheStatus) -> _R:
        """``resp`` with the cache status header, unless it is already on its way."""
        if self._header is not None and not resp.prepared:
            resp.headers[self._header] = _HEADER_VALUES[status]
        return resp

    def _url_key(self, request: web.Request, url: URL) -> str:
        """The URL key (``url_index.py``) of ``url``, a path and query on the request's origin,
        built from the parts ``_key`` keys; remembered, as keys are (a hit through ``fetch``,
        on a disk storage, would hash it every time)."""
        parts = ("url", request.scheme, request.host, url.raw_path_qs)
        known = self._memo.get(parts)
        if known is not None:
            return known
        return self._memo.remember(
            parts,
            self._keys.url_key(
                scheme=request.scheme,
                host=request.host,
                port=None,
                path=url.raw_path,
                query=query_pairs(url.raw_query_string),
            ),
        )

    async def _invalidate_after(
        self, request: web.Request, status: int, headers: CIMultiDict[str] | Mapping[str, str]
    ) -> None:
        """The module rules' invalidation, for a response the handler gave to ``request``."""
        if not invalidates(request.method, status):
            return
        core = self._core
        await core.invalidate_url(self._url_key(request, request.rel_url))
        # Not request.url: aiohttp 3.10 builds it with the Host's port in the host, which newer
        # yarl refuses.
        base = URL(f"{request.scheme}://{request.host}").join(request.rel_url)
        for name in ("Location", "Content-Location"):
            value = headers.get(name)
            if not value:
                continue
            try:
                target = base.join(URL(value.strip()))
            except (TypeError, ValueError):
                continue  # not a URI reference: nothing to invalidate
            if target.origin() == base.origin():  # another origin's entries are not ours
                await core.invalidate_url(self._url_key(request, target))

    def _key(self, request: web.Request) -> str:
        extra: tuple[str, ...] = ()
        if self._key_func is not None:
            part = self._key_func(request)
            if part is not None:
                extra = (str(part),)
        headers = request.headers
        values: tuple[str | None, ...] = ()
        if self._key_names:  # a generator costs its frame even with no name to read
            values = tuple(
                ", ".join(headers.getall(h)) if h in headers else None for h in self._key_names
            )
        # Everything the key is made of, as the request carries it (see KeyMemo).
        parts = (request.method, request.scheme, request.host, request.raw_path, values, extra)
        key = self._memo.get(parts)
        if key is None:
            url = request.rel_url
            lookup = dict(zip(self._key_names, values, strict=True))  # the others: absent
            key = self._memo.remember(
                parts,
                self._keys.make(
                    method=request.method,
                    scheme=request.scheme,
                    host=request.host,
                    port=None,
                    path=url.raw_path,
                    # Raw, as sent: ?t=%FF and ?t=%FE decode alike but differ (DESIGN.md, Keys).
                    query=query_pairs(url.raw_query_string),
                    header=lookup.get,
                    extra=extra,
                ),
            )
        return key

    async def _run(self, request: web.Request, handler: Handler, own: _Own) -> Fetched:
        """Run the handler once; keep this caller's own outcome in ``own``; say what may be
        replayed to others (the coalescer decides whether it is shared and stored)."""
        own.ran = True
        clock = self._core.clock
        request_time = clock()
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            # A pristine template, taken before aiohttp prepares and sends the exception for
            # anybody: every caller raises its own copy of it.
            template = _fresh_exception(exc)
            if self.policy.is_private(_headers_of(exc), exc.status):
                own.response = template  # its caller's alone; the others run the handler
                return Fetched(None)
            raise template from None
        except Exception:
            log.exception("Error handling request %s %s", request.method, request.rel_url)
            raise
        response_time = clock()
        own.response = resp
        body = resp.body if type(resp) is web.Response and not resp.prepared else False
        if body is None:
            body = b""  # a 204, a redirect: nothing to read, everything to share
        if not isinstance(body, (bytes, bytearray)):
            return Fetched(None)  # streamed, a file, a WebSocket: its caller's alone
        headers = _headers_of(resp)
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
        should_store = self.policy.should_store
        return Fetched(snap, should_store is None or bool(should_store(_response_of(snap))))

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

    def __repr__(self) -> str:
        s = self._core.stats
        return (
            f"<CoalesceMiddleware ttl={self._core.ttl} "
            f"storage={type(self._core.storage).__name__} requests={s.requests} hits={s.hits}>"
        )


# The factory name DESIGN.md gives it: ``coalesce_middleware(ttl=5, ...)`` builds one.
coalesce_middleware = CoalesceMiddleware


def _wanted(header: Callable[[str], str | None]) -> tuple[Wanted | None, bool]:
    """What the client's own request directives ask (``request_cache_control=True``): what it
    accepts of a stored response, and whether it goes to the handler whatever is stored."""
    d = request_directives(header("cache-control"), header("pragma"))
    if d is None:
        return None, False
    refresh = d.no_cache or d.max_age == 0  # RFC 9111 §5.2.1.4, §5.2.1.1
    if d.max_age is None and d.min_fresh is None and not d.only_if_cached and d.max_stale is None:
        return None, refresh
    wanted = Wanted(
        max_age=d.max_age,
        min_fresh=d.min_fresh,
        only_if_cached=d.only_if_cached,
        max_stale=d.max_stale,
    )
    return wanted, refresh


class _NoWriter(AbstractStreamWriter):
    """The payload writer of a background refresh's request: a handler that streams (prepares its
    response itself) fails there, so that nothing reaches a connection that may be serving
    another request by then; its refresh is logged as failed. It has no transport at all."""

    def _refuse(self) -> NoReturn:
        raise RuntimeError(
            "a background refresh (stale-while-revalidate) cannot send a streamed response"
        )

    async def write(self, chunk: Any) -> None:
        self._refuse()

    async def write_eof(self, chunk: bytes = b"") -> None:
        self._refuse()

    async def drain(self) -> None:
        self._refuse()

    def enable_compression(self, encoding: str = "deflate", strategy: Any = None) -> None:
        self._refuse()

    def enable_chunking(self) -> None:
        self._refuse()

    async def write_headers(self, status_line: str, headers: Any) -> None:
        self._refuse()


class _Own:
    """One caller's own outcome: whether its handler run happened, and what it answered."""

    __slots__ = ("ran", "response")

    def __init__(self) -> None:
        self.ran = False  # set by _run: this caller's own run (leader, or on its own)
        self.response: web.StreamResponse | None = None  # answered to this caller untouched

    def status(self, key: str | None) -> CacheStatus:
        """The status of a caller whose call raised: its own run's, or the run it joined."""
        if key is None:
            return "bypass"
        return "miss" if self.ran else "coalesced"


def _headers_of(resp: web.StreamResponse) -> tuple[tuple[str, str], ...]:
    """The headers a response will be sent with, as far as they can be replayed: its cookies as
    ``Set-Cookie`` (aiohttp adds them only when it prepares the response), without those that
    aiohttp computes anew for every response."""
    headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in _NOT_REPLAYED]
    headers.extend(("Set-Cookie", morsel.OutputString()) for morsel in resp.cookies.values())
    return tuple(headers)


def _response_of(snap: Snapshot) -> web.Response:
    """A fresh response from a snapshot: its own headers object, the shared body bytes."""
    return web.Response(
        status=snap.status, reason=snap.reason, body=snap.body, headers=CIMultiDict(snap.headers)
    )


def _fresh_exception(exc: web.HTTPException) -> web.HTTPException:
    """An equivalent of ``exc`` that shares no mutable state with it, for one more waiter."""
    cls = type(exc)
    new = cls.__new__(cls)
    state = dict(vars(exc))
    for name, value in state.items():
        if isinstance(value, CIMultiDict):
            state[name] = CIMultiDict(value)
        elif isinstance(value, dict):
            state[name] = type(value)(value) if type(value) is dict else value.copy()
    new.__dict__.update(state)
    new.args = exc.args
    return new
