"""CoalescingSession: coalescing and caching for outbound aiohttp requests.

The only module that touches ``aiohttp.ClientSession``. It holds one (composition: aiohttp warns
against subclassing it), turns each call into a key and a ``send`` callable, and leaves every
decision to the framework-free ``Coalescer``.
"""

from __future__ import annotations

import hashlib
import json as jsonlib
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import aiohttp
from multidict import CIMultiDict, getversion
from yarl import URL

from .coalescer import Coalescer, Fetched, Stats
from .keys import KeyMemo
from .options import check_flag, check_seconds_or_none, check_string
from .policy import CachePolicy
from .response import CachedResponse, CallContext
from .snapshot import Snapshot
from .storage.base import Clock, Storage, wall_clock

__all__ = ["CoalescingSession"]

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Call arguments that feed the key beyond the method and the URL.
_KEY_KWARGS = frozenset({"params", "headers", "auth", "data", "json"})


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
    ``refresh=True`` (skip the stored response, still coalesce and store) and ``cache=False`` (a
    plain pass-through).
    """

    __slots__ = (
        "_base_url",
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
            storage=storage, policy=policy, ttl=ttl, clock=clock, wait_timeout=wait_timeout
        )
        self.policy = self._core.policy
        self._keys = self.policy.key_maker(
            namespace=check_string(namespace, "namespace"), key_headers=key_headers
        )
        self._base_url = _base_url(base_url)
        if base_url is not None and session is None:
            client_session_kwargs["base_url"] = base_url
        # Request parts of plain calls -> (absolute URL, key): see _request().
        self._memo: KeyMemo[tuple[URL, str]] = KeyMemo()
        self._session = session
        self._owns_session = session is None
        self._session_kwargs = client_session_kwargs
        self._closed = False

    # -- the aiohttp-shaped surface ---------------------------------------------------------------

    def request(self, method: str, url: str | URL, **kwargs: Any) -> CallContext:
        """Send a request like ``ClientSession.request``, coalesced and cached by the policy.

        Returns a coroutine that is also an async context manager, as aiohttp's own
        (``resp = await s.get(url)`` or ``async with s.get(url) as resp``); the response is a
        ``CachedResponse``, whose ``cache_status`` says where it came from. Extra options:
        ``cache_ttl=`` seconds this call's response stays fresh; ``refresh=True`` skips the
        stored response (still coalesced and stored); ``cache=False`` is a plain pass-through.
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

    async def invalidate(
        self, url: str | URL, method: str = "GET", headers: Mapping[str, str] | None = None
    ) -> None:
        """Forget what is stored for this request, so that the next one goes upstream."""
        method = method.upper()
        key = self._key(method, self._absolute(URL(url)), {"headers": headers} if headers else {})
        if key is not None:
            await self._core.invalidate(key)

    async def clear(self) -> None:
        """Remove every stored response."""
        await self._core.storage.clear()

    async def close(self) -> None:
        """Close the session we built (never one we were given) and, if we own it, the storage."""
        if self._closed:
            return
        self._closed = True
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

    async def _request(
        self, method: str, str_or_url: str | URL, kwargs: dict[str, Any]
    ) -> CachedResponse:
        cache = kwargs.pop("cache", True)
        cache_ttl = kwargs.pop("cache_ttl", None)
        refresh = kwargs.pop("refresh", False)
        cache_ttl = check_seconds_or_none(cache_ttl, "cache_ttl")
        session = self._client()
        method = method.upper()
        core = self._core
        eligible = cache and method in self.policy.methods
        # The key of a plain call (no params, headers, body or credentials of its own) depends only
        # on the method, the URL and the session's default headers: remember it, since building
        # it is most of what a cache hit costs. getversion() changes whenever those headers do.
        parts = None
        if (
            eligible
            and not (kwargs.keys() & _KEY_KWARGS)
            and session.auth is None
            and not len(session.cookie_jar)
        ):
            parts = (
                method,
                str_or_url,
                kwargs.get("allow_redirects", True),
                getversion(session.headers),  # type: ignore[arg-type]  # typed too narrowly
            )
        known = self._memo.get(parts) if parts is not None else None
        key: str | None
        if known is not None:
            url, key = known
        else:
            url = self._absolute(str_or_url if isinstance(str_or_url, URL) else URL(str_or_url))
            key = self._key(method, url, kwargs) if eligible else None
            if parts is not None and key is not None:
                self._memo.remember(parts, (url, key))

        if key is not None and not refresh:
            snap = core.peek(key)
            if snap is not None:  # the hot path: a hit answered without awaiting anything
                return CachedResponse(snap, "hit", request_url=url)

        should_store = self.policy.should_store

        async def send() -> Fetched:
            async with session.request(method, str_or_url, **kwargs) as resp:
                snap = _snapshot(resp, await resp.read())
            # The user's filter sees a response like every caller's, not aiohttp's (released).
            return Fetched(
                snap, should_store is None or bool(should_store(CachedResponse(snap, "miss")))
            )

        answer = await core.fetch(key, send, ttl=cache_ttl, refresh=bool(refresh))
        assert answer.snapshot is not None  # send() always returns one
        return CachedResponse(answer.snapshot, answer.status, request_url=url)

    def _key(self, method: str, url: URL, kwargs: Mapping[str, Any]) -> str | None:
        """The request's key, or None when it cannot be coalesced (a body we cannot identify)."""
        session = self._client()
        body_digest = None
        if method in _BODY_METHODS or "data" in kwargs or "json" in kwargs:
            body_digest = _body_digest(kwargs.get("data"), kwargs.get("json"))
            if body_digest is None:
                return None
        query: list[tuple[str, str]] = list(url.query.items())
        params = kwargs.get("params")
        if params:
            # Merged as aiohttp merges them: the URL's own query first, then params.
            query.extend(URL("/").with_query(params).query.items())
        call_headers = kwargs.get("headers")
        merged = CIMultiDict(session.headers)
        if call_headers:
            # The call's headers replace the session's defaults of the same name, as in aiohttp.
            pairs = list(call_headers.items() if hasattr(call_headers, "items") else call_headers)
            for name, _ in pairs:
                merged.popall(name, None)
            merged.extend(pairs)

        def header(name: str) -> str | None:
            values = merged.getall(name, None)
            return None if values is None else ", ".join(values)

        extra: list[str] = []
        auth = kwargs.get("auth") or session.auth
        if auth is not None:
            extra.append("auth:" + auth.encode())
        if "cookie" in self._keys.credential_headers and len(session.cookie_jar):
            jar = session.cookie_jar.filter_cookies(url)
            if jar:
                extra.append("jar:" + "; ".join(f"{k}={m.value}" for k, m in sorted(jar.items())))
        if not kwargs.get("allow_redirects", True):
            extra.append("no-redirects")
        return self._keys.make(
            method=method,
            scheme=url.scheme,
            host=url.host or "",
            port=url.explicit_port,
            path=url.raw_path,
            query=query,
            header=header,
            body_digest=body_digest,
            extra=extra,
        )


def _base_url(value: str | URL | None) -> URL | None:
    if value is None:
        return None
    try:
        url = URL(value)
    except (TypeError, ValueError):
        url = None
    if url is None or not url.absolute or not url.path.endswith("/"):
        raise ValueError(
            f"base_url must be an absolute URL whose path ends with '/', got {value!r}"
        )
    return url


def _body_digest(data: Any, json: Any) -> bytes | None:
    """A digest of a request body we can identify, or None (a stream, a form, a file)."""
    if json is not None:
        raw = jsonlib.dumps(json, sort_keys=True, separators=(",", ":")).encode()
        return b"json:" + hashlib.sha256(raw).digest()
    if data is None:
        return b"none"
    if isinstance(data, str):
        data = data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return b"data:" + hashlib.sha256(data).digest()
    if isinstance(data, Mapping) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in data.items()
    ):
        raw = jsonlib.dumps(sorted(data.items())).encode()
        return b"form:" + hashlib.sha256(raw).digest()
    return None


def _snapshot(resp: aiohttp.ClientResponse, body: bytes) -> Snapshot:
    return Snapshot(
        status=resp.status,
        reason=resp.reason or "",
        headers=tuple(resp.headers.items()),
        url=str(resp.url),
        method=resp.method,
        body=body,
        history=tuple(_snapshot(h, b"") for h in resp.history),
    )
