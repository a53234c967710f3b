"""CoalescingSession: coalescing and caching for outbound aiohttp requests.

The only module that touches ``aiohttp.ClientSession``. It holds one (composition: aiohttp warns
against subclassing it), turns each call into a key and a ``send`` callable, and leaves every
decision to the framework-free ``Coalescer``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import aiohttp
from multidict import getversion
from yarl import URL

from ..core.coalescer import Coalescer
from ..core.keys import KeyMemo
from ..core.policy import CachePolicy
from ..core.records import Call, Stats
from ..options import check_flag, check_seconds_or_none, check_string
from ..spec.conditional import not_modified, not_modified_snapshot
from ..spec.invalidation import SAFE_METHODS, invalidates
from ..spec.requests import Wanted
from ..storage.base import Clock, Storage, wall_clock
from .call import (
    CALLER_ALONE,
    UNSET,
    Identity,
    check_base_url,
    check_call,
    identify,
    invalidated_urls,
    url_key,
    wait_bound,
)
from .response import CachedResponse, CallContext
from .send import Passing, SharedRequest, wanted_of

__all__ = ["CoalescingSession"]

_MEMO_KWARGS = frozenset({"allow_redirects"})  # options a remembered identity may include
_NO_OPTIONS: dict[str, Any] = {}  # a call with no options of its own (never written to)


class CoalescingSession:
    """An ``aiohttp.ClientSession`` wrapper that coalesces and caches requests.

    Concurrent identical requests share one real request; a response that the policy allows is
    then kept in ``storage`` and answered from there while it is fresh.

    Parameters:
        ttl: seconds a stored response stays fresh (capped by the origin's ``Cache-Control``);
            ``0`` coalesces only and stores nothing.
        storage: where responses are kept; a ``MemoryStorage()`` when None. ``DiskStorage`` keeps
            them across restarts, ``TieredStorage`` puts memory in front of it.
        key_headers: request header names (any iterable of strings, case-insensitive) whose
            values split the key, e.g. ``("Accept", "Accept-Language")``.
        policy: a ``CachePolicy``: which methods and statuses are stored, size limits, ...
        session: an existing ``aiohttp.ClientSession`` to wrap; it stays yours to close. Without
            it, one is built from ``client_session_kwargs`` and closed with this object.
        wait_timeout: seconds a caller waits for another caller's request in flight; past it, it
            sends its own (not stored). None: wait as long as the request takes.
        shared: a shared cache in the RFC 9111 sense, for gateways that serve many users from one
            session: a ``private`` (or ``Set-Cookie``, ``no-store``) response is neither stored
            nor shared with another caller, and ``s-maxage`` wins over ``max-age``.
        storage_owner: close ``storage`` when this session closes (False to share one storage).
        namespace: a prefix of every key, to keep several sessions apart in one storage.
        base_url: the base of relative URLs, as ``ClientSession(base_url=...)``. With
            ``session=``, name the base URL that session was built with: it cannot be read from
            a session, and relative URLs are refused without it.
        clock: wall-clock seconds (``time.time``); tests pass a fake one.
        client_session_kwargs: options for the ``aiohttp.ClientSession`` built when ``session``
            is None (``headers``, ``timeout``, ``connector``, ...).

    >>> import asyncio
    >>> async def main() -> None:
    ...     async with CoalescingSession(ttl=60) as s:
    ...         print(s.stats.requests)
    >>> asyncio.run(main())
    0

    Requests take aiohttp's own keyword arguments plus ``cache_ttl=`` (this call's TTL),
    ``refresh=True`` (go to the origin, conditionally if it can; still coalesce and store) and
    ``cache=False`` (a plain pass-through).
    """

    __slots__ = (
        "_base_url",
        "_checks",
        "_closed",
        "_core",
        "_keys",
        "_memo",
        "_owns_session",
        "_session",
        "_session_kwargs",
        "policy",
        "storage_owner",
    )

    def __init__(
        self,
        ttl: float = 60,
        storage: Storage | None = None,
        key_headers: Iterable[str] = ("Accept",),
        policy: CachePolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        wait_timeout: float | None = None,
        *,
        shared: bool = False,
        storage_owner: bool = True,
        namespace: str = "",
        base_url: str | URL | None = None,
        clock: Clock = wall_clock,
        **client_session_kwargs: Any,
    ) -> None:
        if session is not None:
            if not isinstance(session, aiohttp.ClientSession):
                raise ValueError(f"session must be an aiohttp.ClientSession, got {session!r}")
            if client_session_kwargs:
                names = ", ".join(sorted(client_session_kwargs))
                raise ValueError(
                    f"session was given, so ClientSession options ({names}) cannot be applied; "
                    "set them on the session you pass"
                )
        self.storage_owner = check_flag(storage_owner, "storage_owner")  # as connector_owner
        self._core = Coalescer(
            storage=storage,
            policy=policy,
            ttl=ttl,
            clock=clock,
            wait_timeout=wait_timeout,
            shared_cache=check_flag(shared, "shared"),
        )
        self.policy = self._core.policy
        self._keys = self.policy.key_maker(
            namespace=check_string(namespace, "namespace"), key_headers=key_headers
        )
        self._base_url = check_base_url(base_url)
        if base_url is not None and session is None:
            client_session_kwargs["base_url"] = base_url
        # Request parts of plain calls -> (absolute URL, key): see _request().
        self._memo: KeyMemo[Identity] = KeyMemo()
        self._session = session
        # The session's raise_for_status, read once: a session cannot change it.
        self._checks: Any = False if session is None else session.raise_for_status
        self._owns_session = session is None
        self._session_kwargs = client_session_kwargs
        self._closed = False

    # -- the aiohttp-shaped surface ---------------------------------------------------------------

    def request(self, method: str, url: str | URL, **kwargs: Any) -> CallContext:
        """Send a request like ``ClientSession.request``, coalesced and cached by the policy.

        Returns a coroutine that is also an async context manager, as aiohttp's own
        (``resp = await s.get(url)`` or ``async with s.get(url) as resp``); the response is a
        ``CachedResponse``, whose ``cache_status`` says where it came from. Extra options:
        ``cache_ttl=`` seconds this call's response stays fresh; ``refresh=True`` goes to the
        origin whatever is stored (a conditional request when the stored response has a
        validator; still coalesced and stored); ``cache=False`` is a plain pass-through.
        """
        return CallContext(self._request(method, url, kwargs))

    def get(self, url: str | URL, **kwargs: Any) -> CallContext:
        """GET ``url``, like ``ClientSession.get``; see ``request`` for the extra options."""
        return CallContext(self._request("GET", url, kwargs))

    def head(self, url: str | URL, **kwargs: Any) -> CallContext:
        """HEAD ``url`` (without following redirects, as aiohttp); see ``request``."""
        kwargs.setdefault("allow_redirects", False)  # as aiohttp does for HEAD
        return CallContext(self._request("HEAD", url, kwargs))

    def options(self, url: str | URL, **kwargs: Any) -> CallContext:
        """OPTIONS ``url``: passed through unless the policy lists OPTIONS; see ``request``."""
        return CallContext(self._request("OPTIONS", url, kwargs))

    def post(self, url: str | URL, **kwargs: Any) -> CallContext:
        """POST ``url``: passed through unless the policy lists POST; see ``request``."""
        return CallContext(self._request("POST", url, kwargs))

    def put(self, url: str | URL, **kwargs: Any) -> CallContext:
        """PUT ``url``: passed through unless the policy lists PUT; see ``request``."""
        return CallContext(self._request("PUT", url, kwargs))

    def patch(self, url: str | URL, **kwargs: Any) -> CallContext:
        """PATCH ``url``: passed through unless the policy lists PATCH; see ``request``."""
        return CallContext(self._request("PATCH", url, kwargs))

    def delete(self, url: str | URL, **kwargs: Any) -> CallContext:
        """DELETE ``url``: passed through unless the policy lists DELETE; see ``request``."""
        return CallContext(self._request("DELETE", url, kwargs))

    @property
    def stats(self) -> Stats:
        """Counters so far, as a frozen snapshot (DESIGN.md: what each one counts)."""
        return self._core.stats

    @property
    def storage(self) -> Storage:
        return self._core.storage

    @property
    def session(self) -> aiohttp.ClientSession:
        """The wrapped aiohttp session (built on first use when we own it)."""
        return self._client()

    @property
    def closed(self) -> bool:
        return self._closed

    async def invalidate(self, url: str | URL, params: Any = None) -> None:
        """Drop every stored response for ``url`` (``params=`` merged as aiohttp merges them):
        every method, Vary variant and credential partition, so that the next request of any
        caller goes upstream. The session does this by itself after a successful unsafe request
        (RFC 9111 §4.4); call it when the resource changed some other way.
        """
        await self._core.invalidate_url(url_key(self._keys, self._target(url, params)))

    async def clear(self) -> None:
        """Remove every stored response."""
        await self._core.clear()

    async def close(self) -> None:
        """Close the session we built (never one we were given) and, if we own it, the storage."""
        if self._closed:
            return
        self._closed = True
        await self._core.drain()  # background refreshes still use the session
        if self._owns_session and self._session is not None:
            await self._session.close()
        await self._core.drain()
        if self.storage_owner:
            await self._core.storage.close()

    async def __aenter__(self) -> CoalescingSession:
        self._client()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        s = self._core.stats
        return (
            f"<CoalescingSession ttl={self._core.ttl} storage={type(self._core.storage).__name__} "
            f"requests={s.requests} hits={s.hits} in_flight={len(self._core.flight)}"
            f"{' closed' if self._closed else ''}>"
        )

    # -- internals --------------------------------------------------------------------------------

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("CoalescingSession is closed")
        if self._session is None:
            # Built on first use, inside the running loop, as aiohttp wants.
            self._session = aiohttp.ClientSession(**self._session_kwargs)
            self._checks = self._session.raise_for_status
        return self._session

    def _absolute(self, url: URL) -> URL:
        """The URL aiohttp will request: relative ones joined to the base URL, as aiohttp does."""
        if url.absolute:
            return url
        if self._base_url is None:
            raise ValueError(
                f"relative URL {str(url)!r} and no base_url: give CoalescingSession(base_url=...)"
            )
        return self._base_url.join(url)

    def _target(self, str_or_url: str | URL, params: Any) -> URL:
        """The absolute URL a request goes to, its ``params=`` merged as aiohttp merges them."""
        url = self._absolute(str_or_url if isinstance(str_or_url, URL) else URL(str_or_url))
        return url.extend_query(params) if params else url

    async def _invalidate_after(self, method: str, url: URL, resp: CachedResponse) -> None:
        """RFC 9111 §4.4: a non-error response to an unsafe request that reached the origin
        drops what is stored for its URL and its same-origin Location and Content-Location."""
        if resp.cache_status not in ("miss", "bypass") or not invalidates(method, resp.status):
            return
        for target in invalidated_urls(url, resp.url, resp.headers):
            await self._core.invalidate_url(url_key(self._keys, target))

    async def _request(
        self, method: str, str_or_url: str | URL, kwargs: dict[str, Any]
    ) -> CachedResponse:
        cache = kwargs.pop("cache", True)
        cache_ttl = check_seconds_or_none(kwargs.pop("cache_ttl", None), "cache_ttl")
        refresh = bool(kwargs.pop("refresh", False))
        session = self._client()
        method = method.upper()
        if kwargs:
            check_call(kwargs)  # what aiohttp rejects is rejected here too, hits included
        if not (cache and method in self.policy.methods):
            return await self._pass(session, method, str_or_url, kwargs, None)
        if kwargs:  # the caller's alone (client_call.py): not part of the shared request
            own_options = {k: kwargs.pop(k) for k in CALLER_ALONE if k in kwargs}
            checks = own_options.get("raise_for_status", self._checks)
        else:
            own_options = _NO_OPTIONS
            checks = self._checks  # the session's raise_for_status (fixed when it was built)
        # The identity of a plain call (no options but allow_redirects, no credentials of the
        # session's own) depends only on the method, the URL and the session's default headers:
        # it is remembered, since building it is most of what a hit costs (inline: the hot path).
        # getversion() changes whenever those headers do.
        parts = None
        ident = None
        if (
            (not kwargs or kwargs.keys() <= _MEMO_KWARGS)
            and session.auth is None
            and not len(session.cookie_jar)
        ):
            parts = (
                method,
                str_or_url,
                kwargs.get("allow_redirects", True),
                getversion(session.headers),  # type: ignore[arg-type]  # typed too narrowly
            )
            ident = self._memo.get(parts)
        if ident is None:
            ident = self._identity(session, method, str_or_url, kwargs, parts)
        key = ident.key
        wanted = None
        no_store = False
        if ident.directives is not None:  # the caller's own Cache-Control (RFC 9111 §5.2.1)
            wanted, refresh, no_store = wanted_of(ident.directives, refresh)
        if ident.conditional is not None:  # the caller's own If-None-Match / If-Modified-Since
            return await self._conditional(session, method, str_or_url, kwargs, ident, wanted,
                                           refresh, own_options, checks)  # fmt: skip
        if key is not None and not refresh:
            snap = self._core.peek(key, ident.header, wanted)
            if snap is not None:  # the hot path: a hit answered without awaiting anything
                hit = CachedResponse(snap, "hit", request_url=ident.url, now=self._core.clock())
                return hit if checks is False else await self._checked(hit, checks)
        if key is None or no_store:  # a bypass; or §5.2.1.5: nothing of it is stored
            kwargs.update(own_options)  # its own request: aiohttp applies them
            return await self._pass(session, method, str_or_url, kwargs, ident.url)
        send = SharedRequest(
            session,
            (method, str_or_url),
            kwargs,
            limit=self.policy.max_body_size,
            should_store=self.policy.should_store,
            clock=self._core.clock,
        )
        call = Call(
            key,
            header=ident.header,
            ttl=cache_ttl,
            refresh=refresh,
            url=ident.url_text() if self.policy.url_ttl else None,
            url_key=ident.url_key,
            wanted=wanted,
        )
        fetch = self._core.fetch(call, send)
        total = wait_bound(own_options.get("timeout", UNSET))
        try:
            answer = await (fetch if total is None else asyncio.wait_for(fetch, total))
        except BaseException:
            send.drop()  # gave up: a response kept for us, now or later, is closed
            raise
        if answer.status == "stale":
            send.drop()  # a background refresh may use it: what it keeps is nobody's
        resp = send.caller_response(answer, ident.url, self._core.clock())
        if method not in SAFE_METHODS:
            await self._invalidate_after(method, ident.url, resp)
        return resp if checks is False else await self._checked(resp, checks)

    async def _conditional(
        self,
        session: aiohttp.ClientSession,
        method: str,
        str_or_url: str | URL,
        kwargs: dict[str, Any],
        ident: Identity,
        wanted: Wanted | None,
        refresh: bool,
        own_options: dict[str, Any],
        checks: Any,
    ) -> CachedResponse:
        """A call with its own ``If-None-Match`` or ``If-Modified-Since`` (RFC 9111 §4.3.2): from
        a fresh stored response, a 304 when it is not modified for the caller (only a 2xx, RFC
        9110 §13.2.1), else the stored response, a hit; nothing fresh stored (or ``no-cache``):
        the caller's own request, a bypass. Never a flight: the origin's answer to a conditional
        request is the caller's alone. As in the middleware."""
        assert ident.key is not None and ident.conditional is not None
        snap = None if refresh else await self._core.fresh(ident.key, ident.header, wanted)
        if snap is None:
            kwargs.update(own_options)
            return await self._pass(session, method, str_or_url, kwargs, ident.url)
        now = self._core.clock()
        if 200 <= snap.status < 300 and not_modified(
            snap.headers, *ident.conditional, snap.response_time or None
        ):
            snap = not_modified_snapshot(snap)
        hit = CachedResponse(snap, "hit", request_url=ident.url, now=now)
        return hit if checks is False else await self._checked(hit, checks)

    def _identity(
        self,
        session: aiohttp.ClientSession,
        method: str,
        str_or_url: str | URL,
        kwargs: dict[str, Any],
        parts: tuple[Any, ...] | None,
    ) -> Identity:
        """The call's identity (client_call.identify), remembered under ``parts`` if given."""
        url = self._absolute(str_or_url if isinstance(str_or_url, URL) else URL(str_or_url))
        ident = identify(session, self._keys, method, url, kwargs)
        if parts is not None:
            self._memo.remember(parts, ident)
        return ident

    async def _pass(
        self,
        session: aiohttp.ClientSession,
        method: str,
        str_or_url: str | URL,
        kwargs: dict[str, Any],
        url: URL | None,
    ) -> CachedResponse:
        """A call that takes no part: aiohttp's own request with the call's own options, its body
        streamed from the connection as aiohttp streams it (nothing buffered by us)."""
        send = Passing(session, (method, str_or_url), kwargs, self._core.clock)
        await self._core.fetch(Call(None), send)
        passed = send.live()
        if method not in SAFE_METHODS:
            target = url if url is not None else self._target(str_or_url, kwargs.get("params"))
            await self._invalidate_after(method, target, passed)
        return passed

    async def _checked(self, resp: CachedResponse, checks: Any) -> CachedResponse:
        """Apply this caller's ``raise_for_status`` (the call's, else the session's) to its own
        response, hits included, as aiohttp applies it."""
        try:
            if checks is True:
                resp.raise_for_status()
            elif callable(checks):
                await checks(resp)
        except BaseException:
            self._core.count_error()
            raise
        return resp
