"""coalesce_middleware: stampede protection for aiohttp.web servers (go-chi/stampede's job).

The server face (docs/architecture.md): it turns a request into a key and a ``send`` that runs
the handler once (``send.py``), and replays the outcome to every waiter (``replay.py``); what it
needs of aiohttp beyond its public API is in ``compat.py``. Rules of this module:

* This is a shared cache (RFC 9111 §3): a response with ``Set-Cookie``, ``Cache-Control: private``
  or ``no-store`` is never shared or stored; the waiters run the handler themselves and the key
  goes straight through for ``pass_ttl`` (Varnish's hit-for-miss), so the route is not serialized.
* These requests bypass it (never lead nor join a flight): those carrying any of the policy's
  ``credential_headers`` not in ``key_headers``; ``If-Match`` and ``If-Unmodified-Since``
  requests (``spec/requests.py``, as the client face); GET and HEAD requests with a body (the
  key does not read bodies).
* A GET or HEAD with ``If-None-Match`` or ``If-Modified-Since`` (and none of the above) is
  answered from a fresh stored response (RFC 9111 §4.3.2, ``spec/conditional.py``): a 304 with
  the stored validators, ``Date``, ``Age`` and the cache status ``HIT`` when its validator matches
  a 2xx, else the full stored response; the handler does not run. Nothing fresh stored: a bypass.
  It never leads nor joins a flight: what its handler run answers (a 304 perhaps) is its own.
  So is one with ``Range`` or ``If-Range``: a 206, a 416 or the whole from a complete stored 200
  (``ranges.py``, RFC 9110 §14). Every storage answers them (``Coalescer.stored``).
* With ``request_cache_control=True``, the client's own ``Cache-Control`` (``spec/requests.py``,
  ``asked_by``) limits what a stored response may answer it, and ``no-cache`` or ``max-age=0``
  send it to the handler; its ``no-store`` is not honoured (off by default, as in nginx and
  Varnish: a client must not switch off the protection).
* A handler that reads a request header must have it in the key (``key_headers``, ``key_func``)
  or declare it in the response's ``Vary``: a request header nobody keyed on is where web cache
  poisoning comes in. A response that varies serves only requests with the same values.
* Every waiter gets its own fresh ``web.Response`` (no headers object is shared), or a fresh
  equivalent of the ``web.HTTPException`` the handler raised. Any other exception is logged once
  for the run (with its traceback) and becomes a 500 for each waiter; nothing from a failed run
  is stored. The cache status header is on every response this middleware answers, errors
  included: the caller's own status (``MISS`` for the run's own caller, ``COALESCED`` for a
  waiter, ``BYPASS``).
* Invalidation (RFC 9111 §4.4, ``spec/invalidation.py``): when the handler itself answered an
  unsafe request (a method outside GET, HEAD, OPTIONS, TRACE) with a status below 400, returned
  or raised (a ``303 See Other``), every stored response for the request's URL is dropped, and
  for its ``Location`` and ``Content-Location`` on the same origin; before the response goes
  out, so the client's next request finds nothing stale.
* With ``debug_header=True``, a response that was neither stored nor served from storage says
  why in ``X-Cache-Reason`` (a code of ``spec/decisions/reasons.py``); off by default: it tells
  clients about the backend.
* The hot path (a stored hit: ``__call__`` down to ``peek``, ``_key``, ``_replay``) is measured
  in instructions: nothing is added to it, and everything else leaves it by one call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from aiohttp import web
from multidict import CIMultiDict, istr
from yarl import URL

from ..core import calllog
from ..core.calllog import log_answer
from ..core.coalescer import Coalescer, Fronted
from ..core.keys import KeyMemo
from ..core.policy import CachePolicy
from ..core.records import Answer, Call, Setup
from ..metrics.base import Metrics, recorder_of
from ..options import (
    Seconds,
    check_callable,
    check_flag,
    check_header_name,
    check_header_names,
    check_string,
)
from ..spec.invalidation import SAFE_METHODS, invalidates, invalidation_targets
from ..spec.requests import (
    PRECONDITION_HEADERS,
    UNSHARED_HEADERS,
    VALIDATED_METHODS,
    VALIDATION_HEADERS,
    Wanted,
    asked_by,
)
from ..storage.base import Clock, Storage, wall_clock
from ..storage.memory import MemoryStorage
from .audit import audit_of
from .compat import fresh_exception, request_line
from .parts import base_of, forwarded_value, origin_of, url_of, url_parts, why_bypass
from .ranges import RangeReplies
from .send import Handler, HandlerSend

__all__ = ["CoalesceMiddleware", "coalesce_middleware"]

# Answers from storage even when the caller's own run answered (a 304, a 503): the stored one.
_FROM_STORAGE = frozenset({"stale", "revalidated"})
# aiohttp's own answer to a handler that raised (web_protocol.handle_error, plain text).
_ERROR_500 = "500 Internal Server Error\n\nServer got itself in trouble"
_REASON_HEADER = istr("X-Cache-Reason")  # with debug_header=True (module rules)
_BODY_HEADERS = (istr("content-length"), istr("transfer-encoding"))


class CoalesceMiddleware(RangeReplies, Fronted):
    """An aiohttp.web middleware that runs a handler once for concurrent identical requests.

    ``coalesce_middleware`` is this class. Use it on a whole application
    (``web.Application(middlewares=[mw])``), on a sub-application mounted with
    ``app.add_subapp()``, or on chosen routes: ``app.router.add_get("/slow", mw.decorate(slow))``.

    >>> from aiohttp import web
    >>> app = web.Application(middlewares=[coalesce_middleware(ttl=5, key_headers=["Accept"])])

    Raises:
        ValueError: an option out of its domain (naming it): ``audit`` other than True, False
            or ``"strict"``, a header name that is no header name, a ``metrics`` that is no sink.
    """

    __middleware_version__ = 1  # a new-style aiohttp middleware (no deprecation warning)

    __slots__ = (
        "_audit",
        "_bypass_headers",
        "_conditional_bypass",
        "_core",
        "_credentials",
        "_debug_header",
        "_forwarded",
        "_key_func",
        "_key_names",
        "_keys",
        "_line_keyed",
        "_memo",
        "_plain",
        "_plain_names",
        "_request_cache_control",
        "policy",
    )

    def __init__(
        self,
        *,
        ttl: Seconds = 5,
        storage: Storage | None = None,
        key_headers: Iterable[str] = (),
        policy: CachePolicy | None = None,
        wait_timeout: Seconds | None = None,
        key_func: Callable[[web.Request], str | None] | None = None,
        cache_status_header: str | None = "X-Cache",
        request_cache_control: bool = False,
        namespace: str = "",
        audit: bool | str = False,
        clock: Clock = wall_clock,
        debug_header: bool = False,
        metrics: Metrics | Iterable[Metrics] | None = None,
    ) -> None:
        check_callable(key_func, "key_func", none_ok=True)
        self._debug_header = check_flag(debug_header, "debug_header")
        if cache_status_header is not None:
            check_header_name(cache_status_header, "cache_status_header")
        check_string(namespace, "namespace")
        # Off by default, as in nginx and Varnish: a client must not switch off the protection.
        self._request_cache_control = check_flag(request_cache_control, "request_cache_control")
        self._core = Coalescer(
            MemoryStorage(clock=clock) if storage is None else storage,
            Setup.of(
                policy=policy, ttl=ttl, clock=clock, wait_timeout=wait_timeout, shared_cache=True
            ),
            recorder_of(metrics, "server"),
        )
        policy = self.policy = self._core.policy
        names = check_header_names(key_headers, "key_headers")
        # The forwarding headers split the key too, read only when a request has one (module
        # rules): a request without any keeps the key it would have without them.
        forwarded = tuple(h for h in policy.forwarded_headers if h not in names)
        self._keys = policy.key_maker(namespace=namespace, key_headers=names + forwarded)
        self._forwarded = tuple(map(istr, forwarded))
        # Credentials the user did not make part of the key (such requests are not ours to
        # share), then the headers of partial and conditional requests. A request with any of
        # them leaves the hot path; of those, a request with only validation or range headers
        # may still be answered from storage (_conditional).
        credentials = tuple(h for h in policy.credential_headers if h not in names)
        self._credentials = credentials
        # As istr: a CIMultiDict finds an istr without folding it (0.4 k instructions a hit).
        self._conditional_bypass = tuple(map(istr, credentials + PRECONDITION_HEADERS))
        self._bypass_headers = tuple(map(istr, credentials + UNSHARED_HEADERS + VALIDATION_HEADERS))
        # RFC 9112 §6.3: without Content-Length or Transfer-Encoding, no body (but a CONNECT's).
        self._plain = self._bypass_headers + _BODY_HEADERS + self._forwarded
        self._plain_names: KeyMemo[bool] = KeyMemo()  # header names -> none of _plain's
        super().__init__(clock, cache_status_header)
        # The headers a keyed request's key reads: a credential header not in key_headers is
        # absent from every request that gets as far as a key (it bypasses), so it is not read.
        self._key_names = tuple(
            h for h in self._keys.header_names if h not in credentials and h not in forwarded
        )
        self._key_func = key_func
        self._line_keyed = key_func is None and not self._key_names  # see __call__
        self._memo: KeyMemo[str] = KeyMemo()  # request parts -> key, see _key()
        self._audit = audit_of(audit, self._keys.header_names, key_func)

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
        key = url_key = None
        headers = request.headers

        def header(name: str) -> str | None:  # the request's values, for Vary
            return ", ".join(headers.getall(name)) if name in headers else None

        wanted: Wanted | None = None
        refresh = False
        # _plain's scan (0.2 k instructions a name), remembered by the header names as sent.
        names = tuple(headers)
        plain = self._plain_names.get(names)
        if plain is None:
            plain = self._plain_names.remember(names, headers.keys().isdisjoint(self._plain))
        if request.method in self.policy.methods and (
            (plain and request.method != "CONNECT")
            or (not request.body_exists and headers.keys().isdisjoint(self._bypass_headers))
        ):
            # A route keyed on its request line alone: _key's memo without _key's call (1.3 k).
            key = self._memo.get(request_line(request)) if plain and self._line_keyed else None
            if key is None:
                key = self._key(request, plain)
            if self._request_cache_control and ("cache-control" in headers or "pragma" in headers):
                asked = asked_by(header)
                if asked is not None:
                    wanted, refresh = asked.wanted, asked.refresh
            if not refresh:
                snap = self._core.peek(key, header, wanted)
                if snap is not None:  # the hot path: a hit answered without awaiting
                    if calllog.on is not False and calllog.debugging():
                        log_answer(Answer(snap, "hit"), request.method, url_of(request), key, 0.0)
                    return self._replay(snap, "hit", self._core.peeked_at)
            url_key = self._url_key(request, request.rel_url)
        elif (
            request.method in VALIDATED_METHODS
            and request.method in self.policy.methods
            and not request.body_exists
            and headers.keys().isdisjoint(self._conditional_bypass)
        ):
            validated = await self._conditional(request, header)
            if validated is not None:
                return validated
        call = Call(
            key,
            header=header,
            url=request.host.lower() + request.raw_path if self.policy.url_ttl else None,
            url_key=url_key,
            refresh=refresh,
            wanted=wanted,
            reason=None if key is not None else why_bypass(request, self.policy, self._credentials),
        )
        return await self._through(request, handler, call)

    async def _through(
        self, request: web.Request, handler: Handler, call: Call
    ) -> web.StreamResponse:
        """A request not answered from storage: the handler's run, its own or the one it joins
        (a flight, or on its own for a bypass), answered to this caller (module rules)."""
        core = self._core
        send = HandlerSend(request, handler, core, self._audit, call.key is not None)
        own = send.own
        started = (
            core.clock() if calllog.on is not False and calllog.debugging() else 0.0
        )  # the DEBUG record's, or 0.0
        try:
            answer = await core.fetch(call, send)
        except web.HTTPException as exc:
            if own.ran and request.method not in SAFE_METHODS:
                await self._invalidate_after(request, exc.status, exc.headers)
            # Shared through the flight: each caller, the leader too, raises its own copy.
            raise self._labelled(fresh_exception(exc), own.status(call.key)) from None
        except Exception:
            # Logged once, by the run that failed (HandlerSend); each caller gets aiohttp's 500.
            return self._labelled(web.Response(status=500, text=_ERROR_500), own.status(call.key))
        resp = own.response
        if own.ran and request.method not in SAFE_METHODS:
            if resp is not None:
                await self._invalidate_after(request, resp.status, resp.headers)
            elif answer.snapshot is not None:
                snap = answer.snapshot
                await self._invalidate_after(request, snap.status, CIMultiDict(snap.headers))
        if resp is None or answer.status in _FROM_STORAGE:
            if answer.snapshot is None:  # only-if-cached, nothing usable stored (§5.2.1.7)
                resp = self._labelled(web.Response(status=504, reason="Gateway Timeout"), "miss")
            else:
                resp = self._replay(answer.snapshot, answer.status)
        else:
            resp = self._labelled(resp, answer.status)
        if self._debug_header and answer.reason is not None and not resp.prepared:
            resp.headers[_REASON_HEADER] = answer.reason
        if started:
            wait = core.clock() - started
            log_answer(answer, request.method, url_of(request), call.key, wait)
        if isinstance(resp, web.HTTPException):  # before StreamResponse: it is one in 3.x
            core.count_error()
            raise resp
        return resp

    async def _conditional(
        self, request: web.Request, header: Callable[[str], str | None]
    ) -> web.StreamResponse | None:
        """The answer to a request with ``If-None-Match``, ``If-Modified-Since``, ``Range`` or
        ``If-Range`` from a fresh stored response (``ranges.py``: a 304, a 206, a 416 or the full
        response, a hit), or None: it goes through as a bypass. Never a flight: the handler's
        answer to a conditional or range request is its own."""
        wanted = None
        if self._request_cache_control and (
            "cache-control" in request.headers or "pragma" in request.headers
        ):
            asked = asked_by(header)
            if asked is not None:
                if asked.refresh:
                    return None
                wanted = asked.wanted
        return await self._from_storage(request, self._key(request), header, wanted)

    def _url_key(self, request: web.Request, url: URL) -> str:
        """The URL key (``spec/invalidation.py``) of ``url``, a path and query on the request's
        origin, built from the parts ``_key`` keys; remembered, as keys are (a hit through
        ``fetch``, on a disk storage, would hash it every time)."""
        parts = ("url", request.scheme, request.host, url.raw_path_qs)
        known = self._memo.get(parts)
        if known is not None:
            return known
        return self._memo.remember(
            parts,
            self._keys.url_key_of(url_parts(request, url)),
        )

    async def _invalidate_after(
        self, request: web.Request, status: int, headers: CIMultiDict[str] | Mapping[str, str]
    ) -> None:
        """The module rules' invalidation, for a response the handler gave to ``request``."""
        if not invalidates(request.method, status):
            return
        await self._core.invalidate_url(self._url_key(request, request.rel_url))
        base = base_of(request)
        resolve = lambda ref: base.join(URL(ref))  # noqa: E731
        for target in invalidation_targets(headers.get, resolve, origin_of, origin_of(base)):
            await self._core.invalidate_url(self._url_key(request, target))

    def _key(self, request: web.Request, plain: bool = False) -> str:
        """The request's key, remembered; ``plain``: no forwarding header is in the request."""
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
        sent: tuple[str | None, ...] = ()  # the forwarding headers, when the request has one
        if not plain and not headers.keys().isdisjoint(self._forwarded):
            sent = tuple(forwarded_value(request, h) for h in self._forwarded)
        # Everything the key is made of, as the request carries it (see KeyMemo).
        parts: tuple[object, ...] = request_line(request)
        if values or extra or sent:
            parts += (values, extra, sent)
        key = self._memo.get(parts)
        if key is None:
            url = request.rel_url
            lookup = dict(zip(self._key_names, values, strict=True))  # the others: absent
            if sent:
                lookup.update(zip(self._forwarded, sent, strict=True))
            key = self._memo.remember(
                parts,
                self._keys.request_key(
                    request.method,
                    url_parts(request, url),
                    lookup.get,
                    extra=extra,
                ),
            )
        return key

    def __repr__(self) -> str:
        s = self._core.stats
        return (
            f"<CoalesceMiddleware ttl={self._core.ttl} "
            f"storage={type(self._core.storage).__name__} requests={s.requests} hits={s.hits}>"
        )


# The factory name of the public API: ``coalesce_middleware(ttl=5, ...)`` builds one.
coalesce_middleware = CoalesceMiddleware
