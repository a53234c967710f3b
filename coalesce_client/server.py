"""coalesce_middleware: stampede protection for aiohttp.web servers (go-chi/stampede's job).

The only module that touches ``aiohttp.web``. It turns a request into a key and a ``send`` that
runs the handler once, and replays the outcome to every waiter. Rules (DESIGN.md, Security):

* This is a shared cache (RFC 9111 §3): a response with ``Set-Cookie``, ``Cache-Control: private``
  or ``no-store`` is never shared or stored; the waiters run the handler themselves and the key
  goes straight through for ``pass_ttl`` (Varnish's hit-for-miss), so the route is not serialized.
* Requests carrying ``Authorization`` or ``Cookie`` bypass the middleware unless those headers are
  in ``key_headers``.
* Every waiter gets its own fresh ``web.Response`` (no headers object is shared), or a fresh
  equivalent of the ``web.HTTPException`` the handler raised. Any other exception reaches every
  waiter, and nothing from a failed run is stored.
* What cannot be replayed from bytes (a prepared ``StreamResponse``, ``FileResponse``, a
  WebSocket, a body over ``max_body_size``) goes to its own caller untouched and is not shared.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from .coalescer import Answer, CacheStatus, Coalescer, Fetched, Stats
from .keys import normalize_headers
from .policy import CachePolicy, parse_cache_control
from .snapshot import Snapshot
from .storage.base import Clock, Storage, wall_clock

__all__ = ["CoalesceMiddleware", "coalesce_middleware"]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_HEADER_VALUES: dict[CacheStatus, str] = {
    "hit": "HIT",
    "miss": "MISS",
    "coalesced": "COALESCED",
    "bypass": "BYPASS",
}
_MEMO_SIZE = 4096  # remembered keys and replay headers, each; cleared when full
# Recomputed by aiohttp for every response it sends; never replayed from a snapshot.
_NOT_REPLAYED = frozenset({"content-length", "date", "server"})


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
        "_auth_bypass",
        "_core",
        "_header",
        "_key_func",
        "_keys",
        "_memo",
        "_templates",
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
        namespace: str = "",
        clock: Clock = wall_clock,
    ) -> None:
        if key_func is not None and not callable(key_func):
            raise ValueError(f"key_func must be callable, got {key_func!r}")
        if cache_status_header is not None and (
            not isinstance(cache_status_header, str)
            or not cache_status_header
            or ":" in cache_status_header
        ):
            raise ValueError(
                f"cache_status_header must be a header name or None, got {cache_status_header!r}"
            )
        self._core = Coalescer(
            storage=storage,
            policy=policy,
            ttl=ttl,
            clock=clock,
            wait_timeout=wait_timeout,
            shared_cache=True,
            as_response=_response_of,  # what should_store sees
        )
        policy = self.policy = self._core.policy
        names = normalize_headers(key_headers, "key_headers")
        self._keys = policy.key_maker(namespace=namespace, key_headers=names)
        # Credentials the user did not make part of the key: such requests are not ours to share.
        self._auth_bypass = tuple(h for h in ("authorization", "cookie") if h not in names)
        self._key_func = key_func
        self._header = cache_status_header
        self._memo: dict[tuple[Any, ...], str] = {}  # request parts -> key, see _key()
        # id(snapshot) -> (snapshot, its headers as a CIMultiDict): copied per replay, built once.
        self._templates: dict[int, tuple[Snapshot, CIMultiDict[str]]] = {}

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
        if request.method in self.policy.methods:
            headers = request.headers
            for name in self._auth_bypass:
                if name in headers:
                    break
            else:
                key = self._key(request)
                snap = core.peek(key)
                if snap is not None:  # the hot path: a hit answered without awaiting anything
                    return self._replay(snap, "hit")

        async def send() -> Fetched:
            return await self._run(request, handler)

        answer = await (core.bypass(send) if key is None else core.fetch(key, send))
        return self._respond(answer)

    def _key(self, request: web.Request) -> str:
        extra: tuple[str, ...] = ()
        if self._key_func is not None:
            part = self._key_func(request)
            if part is not None:
                extra = (str(part),)
        headers = request.headers
        values = tuple(
            ", ".join(headers.getall(name)) if name in headers else None
            for name in self._keys.header_names
        )
        # Everything the key is made of, as the request carries it: building the digest is most of
        # what a hit costs, so a key seen before is looked up instead (bounded, cleared when full).
        memo_key = (request.method, request.scheme, request.host, request.raw_path, values, extra)
        key = self._memo.get(memo_key)
        if key is None:
            url = request.rel_url
            lookup = dict(zip(self._keys.header_names, values, strict=True))
            key = self._keys.make(
                request.method,
                request.scheme,
                request.host,
                None,
                url.raw_path,
                list(url.query.items()) if url.raw_query_string else (),
                lookup.get,
                extra=extra,
            )
            if len(self._memo) >= _MEMO_SIZE:
                self._memo.clear()
            self._memo[memo_key] = key
        return key

    async def _run(self, request: web.Request, handler: Handler) -> Fetched:
        """Run the handler once; say what of its outcome may be replayed and shared."""
        try:
            resp = await handler(request)
        except web.HTTPException as exc:
            # A pristine template, taken before aiohttp prepares and sends the exception for
            # anybody: every caller, the leader too, raises its own copy of it.
            return Fetched(None, _response_shareable(exc), _fresh_exception(exc))
        if (
            type(resp) is not web.Response
            or resp.prepared
            or not isinstance(resp.body, (bytes, bytearray))
        ):
            return Fetched(None, False, resp)  # streamed, a file, a WebSocket: its caller's alone
        body = bytes(resp.body)
        headers = tuple((k, v) for k, v in resp.headers.items() if k.lower() not in _NOT_REPLAYED)
        shareable = len(body) <= self.policy.max_body_size and _response_shareable(resp)
        snap = Snapshot(
            status=resp.status,
            reason=resp.reason,
            headers=headers,
            url=str(request.rel_url),
            method=request.method,
            body=body,
        )
        return Fetched(snap, shareable, resp)

    def _respond(self, answer: Answer) -> web.StreamResponse:
        original = answer.original
        own = answer.status in ("miss", "bypass")  # this caller's own run of the handler
        if isinstance(original, web.HTTPException):  # before StreamResponse: it is one in 3.x
            raise _fresh_exception(original)
        if own and isinstance(original, web.StreamResponse):
            resp = original  # untouched
        else:
            assert answer.snapshot is not None  # a hit or a shared outcome: always a snapshot
            return self._replay(answer.snapshot, answer.status)
        if self._header is not None and not resp.prepared:
            resp.headers[self._header] = _HEADER_VALUES[answer.status]
        return resp

    def _replay(self, snap: Snapshot, status: CacheStatus) -> web.Response:
        """A fresh response for one more request: its own headers (a copy), the shared body."""
        template = self._templates.get(id(snap))
        if template is None or template[0] is not snap:
            headers = CIMultiDict(snap.headers)
            if len(self._templates) >= _MEMO_SIZE:
                self._templates.clear()
            self._templates[id(snap)] = (snap, headers)
        else:
            headers = template[1]
        headers = headers.copy()
        if self._header is not None:
            headers[self._header] = _HEADER_VALUES[status]
        return web.Response(status=snap.status, reason=snap.reason, body=snap.body, headers=headers)

    def __repr__(self) -> str:
        s = self._core.stats
        return (
            f"<CoalesceMiddleware ttl={self._core.ttl} "
            f"storage={type(self._core.storage).__name__} requests={s.requests} hits={s.hits}>"
        )


# The factory name DESIGN.md gives it: ``coalesce_middleware(ttl=5, ...)`` builds one.
coalesce_middleware = CoalesceMiddleware


def _response_shareable(resp: web.StreamResponse) -> bool:
    """A shared cache must not hand one client's private answer to another (RFC 9111 §3)."""
    if resp.cookies or "Set-Cookie" in resp.headers:
        return False
    cc = parse_cache_control(", ".join(resp.headers.getall("Cache-Control", [])))
    return not (cc.private or cc.no_store)


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
