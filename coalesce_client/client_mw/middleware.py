"""client_middleware: coalescing and caching as an aiohttp client middleware (aiohttp >= 3.12).

The third face (docs/architecture.md): ``aiohttp.ClientSession(middlewares=[mw])``, or per
request ``session.get(url, middlewares=(mw,))``. Rules of this module:

* The key is the request as aiohttp will send it (``ClientRequest``): the method, the URL, the
  credential headers and ``key_headers`` among the headers really sent (the session's ``Cookie``
  and ``Authorization`` from ``auth=`` included), an explicit ``Host``, the proxy, and the
  body's bytes. A body not in memory (a stream, a file) bypasses; so do ``Range`` and the
  preconditions of ``spec/requests.py``, as in both other faces.
* A GET or HEAD with only ``If-None-Match`` / ``If-Modified-Since`` is answered from a fresh
  stored response (RFC 9111 §4.3.2: a 304 when not modified), else it goes out alone; never a
  flight. The caller's own ``Cache-Control`` is honoured as by ``CoalescingSession``.
* aiohttp runs the middleware once per redirect hop: each hop is its own request, stored by its
  own status (RFC 9111 §3: a 301 or 308 is cacheable by default, a 302 only when it says so).
* Every caller gets its own ``aiohttp.ClientResponse`` (``compat.replayed``), hits, followers
  and stale answers alike, with ``Age`` when it was replayed from a shared response; the flight's
  leader gets the origin's answer, read; a body over ``max_body_size`` is shared as it streams
  (issue 24), each caller reading its own reader of the spool or of the stored entry. A bypass
  reaches its caller live and streamed. ``info.cache_info`` says where each came from.
* Invalidation (RFC 9111 §4.4, ``spec/invalidation.py``): a non-error response to an unsafe
  request that reached the origin drops what is stored for its URL, its ``Location`` and its
  ``Content-Location`` on the same origin.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable

from aiohttp import ClientRequest, ClientResponse
from multidict import CIMultiDict
from yarl import URL

from ..client.body import ReaderStream
from ..client.call import Identity, url_key, url_parts
from ..client.send import snapshot_of
from ..core import calllog
from ..core.calllog import log_answer
from ..core.coalescer import Coalescer, Fronted
from ..core.keys import KeyMemo
from ..core.policy import CachePolicy
from ..core.records import Answer, CacheStatus, Call, Setup
from ..metrics.base import Metrics, recorder_of
from ..options import check_flag
from ..spec.conditional import answers_not_modified, not_modified_snapshot, validators_of
from ..spec.decisions.reasons import CacheReason
from ..spec.freshness import age_header
from ..spec.invalidation import SAFE_METHODS, Origin, invalidates, invalidation_targets
from ..spec.requests import (
    UNSHARED_HEADERS,
    VALIDATED_METHODS,
    VALIDATION_HEADERS,
    asked_by,
    bypass_reason,
)
from ..spec.snapshot import Snapshot
from ..spec.vary import Header
from ..storage.base import Clock, Storage, wall_clock
from ..storage.memory import MemoryStorage
from .compat import body_bytes, replayed, require_middlewares
from .info import ATTRIBUTE, Served
from .send import ChainSend, Handler, Passing

__all__ = ["ClientMiddleware", "client_middleware"]

_OWN = frozenset({"miss", "bypass"})  # the origin's own answer to this caller: no Age added
_GATEWAY_TIMEOUT = (504, "Gateway Timeout")  # only-if-cached, nothing usable (RFC 9111 §5.2.1.7)
# A request with If-None-Match or If-Modified-Since that nothing fresh stored answers, or on a
# method those are not for: the origin's answer is its own.
_CONDITIONAL = Call(None, reason="conditional request")


class ClientMiddleware(Fronted):
    """An aiohttp client middleware that coalesces and caches requests (module rules).

    ``client_middleware`` is this class. The options mean what ``CoalescingSession``'s mean.

    >>> import aiohttp
    >>> async def fetch(url: str) -> bytes:  # aiohttp >= 3.12
    ...     async with client_middleware(ttl=60) as mw:
    ...         async with aiohttp.ClientSession(middlewares=[mw]) as session:
    ...             async with session.get(url) as resp:
    ...                 return await resp.read()

    Raises:
        RuntimeError: an aiohttp older than 3.12 (no client middlewares), naming the version.
        ValueError: an option out of its domain (naming it).
    """

    __slots__ = ("_core", "_keys", "_memo", "policy")

    def __init__(
        self,
        ttl: float = 60,
        storage: Storage | None = None,
        key_headers: Iterable[str] = ("Accept",),
        policy: CachePolicy | None = None,
        wait_timeout: float | None = None,
        *,
        shared: bool = False,
        clock: Clock = wall_clock,
        metrics: Metrics | Iterable[Metrics] | None = None,
    ) -> None:
        require_middlewares()
        shared = check_flag(shared, "shared")
        setup = Setup.of(policy=policy, ttl=ttl, clock=clock, wait_timeout=wait_timeout)
        if storage is None:
            storage = MemoryStorage(clock=clock)
        self._core = Coalescer(
            storage,
            dataclasses.replace(setup, shared_cache=shared),
            recorder_of(metrics, "client-middleware"),
        )
        self.policy = self._core.policy
        self._keys = self.policy.key_maker(namespace="", key_headers=key_headers)
        self._memo: KeyMemo[str] = KeyMemo()  # request parts -> key, see _key()

    async def __call__(self, req: ClientRequest, handler: Handler) -> ClientResponse:
        core = self._core
        headers = req.headers

        def header(name: str) -> str | None:  # what the request sends, for Vary and the key
            values = headers.getall(name, None)
            return None if values is None else ", ".join(values)

        if req.method not in self.policy.methods:
            return await self._through(req, handler, Call(None, reason="method not cached"))
        key = self._key(req, header)
        if isinstance(key, Call):  # a bypass, and why
            return await self._through(req, handler, key)
        wanted, refresh, no_store = None, False, False
        if "cache-control" in headers or "pragma" in headers:
            asked = asked_by(header)  # the caller's own directives (RFC 9111 §5.2.1)
            if asked is not None:
                wanted, refresh, no_store = asked.wanted, asked.refresh, asked.no_store
        if "if-none-match" in headers or "if-modified-since" in headers:
            snap = None if refresh else await core.fresh(key, header, wanted)
            if snap is None:
                return await self._through(req, handler, _CONDITIONAL)
            if answers_not_modified(snap, validators_of(header)):
                snap = not_modified_snapshot(snap)
            return self._replay(req, snap, "hit")
        if not refresh:
            snap = core.peek(key, header, wanted)
            if snap is not None:  # the hot path: a hit answered without awaiting anything
                if calllog.on is not False and calllog.debugging():
                    log_answer(Answer(snap, "hit"), req.method, _url(req.url), key, 0.0)
                return self._replay(req, snap, "hit")
        if no_store:  # RFC 9111 §5.2.1.5: nothing of it is stored
            return await self._through(req, handler, Call(None, reason="request no-store"))
        ident = Identity(key, req.url, header, url_key=url_key(self._keys, req.url))
        url_ttl = bool(self.policy.url_ttl)
        call = ident.call(ttl=None, refresh=refresh, wanted=wanted, url_ttl=url_ttl)
        return await self._through(req, handler, call)

    def _key(self, req: ClientRequest, header: Header) -> str | Call:
        """The request's key, or the ``Call`` of a bypass, with its reason (module rules)."""
        names = req.headers.keys()
        if not names.isdisjoint(UNSHARED_HEADERS):
            return Call(None, reason=bypass_reason(req.headers.__contains__))
        if req.method not in VALIDATED_METHODS and not names.isdisjoint(VALIDATION_HEADERS):
            return _CONDITIONAL
        body = body_bytes(req)
        if body is None:
            return Call(None, reason="request body")  # a stream, a file: nothing to key it by
        # Remembered by every part it is built from (a body's bytes never: not held here).
        parts = None if body else (req.method, req.url, tuple(req.headers.items()), req.proxy)
        if parts is not None:
            known = self._memo.get(parts)
            if known is not None:
                return known
        extra = [f"host:{header('host')}"]
        if req.proxy is not None:
            extra.append(f"proxy:{req.proxy}")
        digest = b"data:" + hashlib.sha256(body).digest() if body else None
        key = self._keys.request_key(
            req.method, url_parts(req.url), header, body_digest=digest, extra=extra
        )
        return key if parts is None else self._memo.remember(parts, key)

    async def _through(self, req: ClientRequest, handler: Handler, call: Call) -> ClientResponse:
        """A request not answered from storage: its flight, or on its own for a bypass."""
        core = self._core
        kind = Passing if call.key is None else ChainSend
        send = kind(req, handler, self.policy, self._replay, core.clock)
        started = (
            core.clock() if calllog.on is not False and calllog.debugging() else 0.0
        )  # the DEBUG record's, or 0.0
        try:
            answer = await core.fetch(call, send)
        except BaseException:
            send.drop()  # gave up: a response kept for us, now or later, is closed
            raise
        if answer.status == "stale":
            send.drop()  # a background refresh may use it: what it keeps is nobody's
        resp = self._answer(req, send, answer)
        if started:
            wait = core.clock() - started
            log_answer(answer, req.method, _url(req.url), call.key, wait)
        if req.method not in SAFE_METHODS and answer.status in _OWN:
            await self._invalidate_after(req.url, resp)
        return resp

    def _answer(self, req: ClientRequest, send: ChainSend, answer: Answer) -> ClientResponse:
        """What this caller gets of its flight's answer: a replay, or its own live response."""
        if answer.snapshot is not None:
            return self._replay(req, answer.snapshot, answer.status, answer.reason)
        live = send.response
        if live is None:
            resp = replayed(req, _GATEWAY_TIMEOUT, CIMultiDict({"Content-Length": "0"}), b"")
            head = (("Content-Length", "0"),)
            snap = Snapshot(*_GATEWAY_TIMEOUT, head, str(req.url), req.method, b"")
            setattr(resp, ATTRIBUTE, Served(snap, "miss", 0.0, answer.reason))
            return resp
        snap = snapshot_of(live, b"", send.times)
        setattr(live, ATTRIBUTE, Served(snap, answer.status, self._core.clock(), answer.reason))
        return live

    def _replay(
        self,
        req: ClientRequest,
        snap: Snapshot,
        status: CacheStatus,
        reason: CacheReason | None = None,
    ) -> ClientResponse:
        """A ``ClientResponse`` of its own for this caller, over a snapshot (module rules)."""
        now = self._core.clock()
        headers = CIMultiDict(snap.headers)
        if status not in _OWN:  # RFC 9111 §5.1: its current age, in place of the origin's
            headers["Age"] = age_header(snap.age(now))
        stream = snap.stream  # a body shared as it streams: this caller's own reader of it
        content = None if stream is None else ReaderStream(stream.reader())
        resp = replayed(req, (snap.status, snap.reason), headers, snap.body, content)
        setattr(resp, ATTRIBUTE, Served(snap, status, now, reason))
        return resp

    async def _invalidate_after(self, url: URL, resp: ClientResponse) -> None:
        """The module rules' invalidation, for the response ``resp`` to a request to ``url``."""
        if not invalidates(resp.method, resp.status):
            return
        base = resp.url

        def origin(target: URL) -> Origin:
            return Origin(target.scheme, target.host, target.port)

        resolve = lambda ref: base.join(URL(ref))  # noqa: E731
        for target in (url, *invalidation_targets(resp.headers.get, resolve, origin, origin(url))):
            await self._core.invalidate_url(url_key(self._keys, target))

    async def invalidate(self, url: str | URL) -> None:
        """Drop every stored response for ``url`` (an absolute URL): every method, Vary variant
        and credential partition; done by itself after a successful unsafe request."""
        await self._core.invalidate_url(url_key(self._keys, URL(url)))

    async def clear(self) -> None:
        """Remove every stored response."""
        await self._core.clear()

    async def close(self) -> None:
        """Wait for background refreshes and writes, then close the storage."""
        await self._core.drain()
        await self._core.storage.close()

    async def __aenter__(self) -> ClientMiddleware:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _url(url: URL) -> str:
    """A request's URL without its query (the DEBUG record's)."""
    return str(url.with_query(None).with_fragment(None))


# The factory name of the public API: ``client_middleware(ttl=60, ...)`` builds one.
client_middleware = ClientMiddleware
