"""CoalescingSession: coalescing and caching for outbound aiohttp requests.

The client face (docs/architecture.md). Rules of this module: ``CoalescingSession`` holds an
``aiohttp.ClientSession`` (composition: aiohttp warns against subclassing it) and one framework-free
``Coalescer`` that makes every decision; this module is its public surface (aiohttp's request
methods, ``stats``, ``invalidate``, ``clear``) and its life (options, ownership of the session
and the storage, closing). How each call is answered is ``calls.py``; what a call is,
``call.py``; how its real request is sent, ``send.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import Any

import aiohttp
from yarl import URL

from ..core.coalescer import Coalescer
from ..core.keys import KeyMemo, Sightings
from ..core.policy import CachePolicy
from ..core.records import Setup
from ..metrics.base import Metrics, recorder_of
from ..options import Seconds, check_flag, check_string
from ..storage.base import Clock, Storage, wall_clock
from ..storage.memory import MemoryStorage
from .call import Identity, check_base_url, url_key
from .calls import CallPath
from .compat import KNOWN_SESSION_KWARGS, base_url_of
from .context import CallContext
from .pump import stop_pumps

__all__ = ["CoalescingSession"]

_new = object.__new__  # see get()


class CoalescingSession(CallPath):
    """An ``aiohttp.ClientSession`` wrapper that coalesces and caches requests.

    Concurrent identical requests share one real request; a response that the policy allows is
    then kept in ``storage`` and answered from there while it is fresh.

    Parameters:
        ttl: seconds a stored response stays fresh (capped by the origin's ``Cache-Control``);
            ``0`` coalesces only and stores nothing. Every option in seconds (``ttl``,
            ``wait_timeout``, ``cache_ttl=``, the policy's) also takes a ``datetime.timedelta``.
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
            ``session=``, the wrapped session's own base URL is used, as aiohttp uses it (naming
            it here is allowed; naming another is a ``ValueError``).
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

    Raises:
        ValueError: an option out of its domain (naming it), or ``session`` with
            ``ClientSession`` options it cannot take.
        TypeError: a keyword argument ``aiohttp.ClientSession`` does not take (as aiohttp).
        aiohttp.ClientError: from a call, exactly what plain aiohttp raises for the same call
            (``InvalidUrlClientError``, ``ClientResponseError`` with ``raise_for_status``, ...),
            on every path: hits and followers included.
    """

    __slots__ = ("_owns_session", "storage_owner")  # and CallPath's

    def __init__(
        self,
        ttl: Seconds = 60,
        storage: Storage | None = None,
        key_headers: Iterable[str] = ("Accept",),
        policy: CachePolicy | None = None,
        session: aiohttp.ClientSession | None = None,
        wait_timeout: Seconds | None = None,
        *,
        shared: bool = False,
        storage_owner: bool = True,
        namespace: str = "",
        base_url: str | URL | None = None,
        clock: Clock = wall_clock,
        metrics: Metrics | Iterable[Metrics] | None = None,
        **client_session_kwargs: Any,
    ) -> None:
        base = check_base_url(base_url)
        if session is not None:
            if not isinstance(session, aiohttp.ClientSession):
                raise ValueError(f"session must be an aiohttp.ClientSession, got {session!r}")
            if client_session_kwargs:
                names = ", ".join(sorted(client_session_kwargs))
                raise ValueError(
                    f"session was given, so ClientSession options ({names}) cannot be applied; "
                    "set them on the session you pass"
                )
            if base is not None and base != base_url_of(session):
                raise ValueError(
                    f"base_url must be the wrapped session's own base URL, got {base_url!r}"
                )
        _check_unknown(client_session_kwargs)
        self.storage_owner = check_flag(storage_owner, "storage_owner")  # as connector_owner
        self._core = Coalescer(
            MemoryStorage(clock=clock) if storage is None else storage,
            Setup.of(
                policy=policy,
                ttl=ttl,
                clock=clock,
                wait_timeout=wait_timeout,
                shared_cache=check_flag(shared, "shared"),
            ),
            recorder_of(metrics, "client"),
        )
        self.policy = self._core.policy
        self._keys = self.policy.key_maker(
            namespace=check_string(namespace, "namespace"), key_headers=key_headers
        )
        if base_url is not None and session is None:
            client_session_kwargs["base_url"] = base_url
        self._memo: KeyMemo[Identity] = KeyMemo()  # see CallPath._request
        self._sightings = Sightings()
        self._session = None
        self._checks = False
        if session is not None:
            self._bind(session)
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
        return CallContext(self, method.upper(), url, kwargs)

    def get(self, url: str | URL, **kwargs: Any) -> CallContext:
        """GET ``url``, like ``ClientSession.get``; see ``request`` for the extra options."""
        # CallContext(self, "GET", url, kwargs), inlined on the hot path (a type call and its
        # __init__ frame: 540 instructions of a hit)
        ctx = _new(CallContext)
        ctx._resp = None
        ctx._coro = self._request("GET", url, kwargs, ctx)
        return ctx

    def head(self, url: str | URL, **kwargs: Any) -> CallContext:
        """HEAD ``url`` (without following redirects, as aiohttp); see ``request``."""
        kwargs.setdefault("allow_redirects", False)  # as aiohttp does for HEAD
        return CallContext(self, "HEAD", url, kwargs)

    def options(self, url: str | URL, **kwargs: Any) -> CallContext:
        """OPTIONS ``url``: passed through unless the policy lists OPTIONS; see ``request``."""
        return CallContext(self, "OPTIONS", url, kwargs)

    def post(self, url: str | URL, **kwargs: Any) -> CallContext:
        """POST ``url``: passed through unless the policy lists POST; see ``request``."""
        return CallContext(self, "POST", url, kwargs)

    def put(self, url: str | URL, **kwargs: Any) -> CallContext:
        """PUT ``url``: passed through unless the policy lists PUT; see ``request``."""
        return CallContext(self, "PUT", url, kwargs)

    def patch(self, url: str | URL, **kwargs: Any) -> CallContext:
        """PATCH ``url``: passed through unless the policy lists PATCH; see ``request``."""
        return CallContext(self, "PATCH", url, kwargs)

    def delete(self, url: str | URL, **kwargs: Any) -> CallContext:
        """DELETE ``url``: passed through unless the policy lists DELETE; see ``request``."""
        return CallContext(self, "DELETE", url, kwargs)

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
        owned = self._session if self._owns_session else None
        if owned is not None:
            # The bodies it still streams end short (pump.py) before the drain, which would
            # otherwise wait for the storage writes that read them: for a download that the
            # origin holds, for good (an interrupted `fetch` hung so).
            stop_pumps(owned)
        await self._core.drain()  # background refreshes still use the session
        if owned is not None:
            stop_pumps(owned)  # any a refresh started meanwhile
            await owned.close()
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


def _check_unknown(client_session_kwargs: dict[str, Any]) -> None:
    """Refuse an option ``ClientSession`` does not know, as ``ClientSession(...)`` would, now
    rather than when it is built."""
    unknown = client_session_kwargs.keys() - KNOWN_SESSION_KWARGS if KNOWN_SESSION_KWARGS else ()
    if unknown:
        raise TypeError(
            f"ClientSession.__init__() got an unexpected keyword argument {min(unknown)!r}"
        )
