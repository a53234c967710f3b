"""CachedResponse: what every caller of CoalescingSession gets, its own object over a shared body.

Rules of this module: it quacks like ``aiohttp.ClientResponse`` for what people use (the README
lists it). Everything derived from the snapshot (headers multidict, URL objects, the stream) is
built on first use: a cache hit pays only for what its caller reads. The body bytes are the
snapshot's own and are never copied per caller; each caller has its own read position.
A streamed body (``Snapshot.stream``, issue 24) is read by each caller through a reader of its
own (``body.ReaderStream``), opened on first use; ``release()``, ``close()`` and leaving the
``async with`` close it and let go of the stream, so that a body nobody reads any more is not
fetched on (``client/pump.py``); ``read()`` gives the whole body, or raises
``ClientPayloadError`` when it ended short.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timezone
from http.cookies import SimpleCookie
from types import TracebackType
from typing import Any

from aiohttp import ClientResponse, ClientResponseError, ContentTypeError, RequestInfo, StreamReader
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ..core.records import CacheStatus
from ..spec.decisions.reasons import CacheReason
from ..spec.freshness import age_header
from ..spec.snapshot import Snapshot
from .body import BodyStream, LiveStream, ReaderStream, released

__all__ = ["CachedResponse", "LiveResponse"]


# The statuses of a response served from storage (``from_cache``).
_FROM_CACHE = frozenset({"hit", "stale", "revalidated"})
# The statuses of a response that is the origin's own answer to this caller: no Age is added.
_OWN = frozenset({"miss", "bypass"})


class CachedResponse:
    """One caller's response; the README says what it promises.

    ``cache_status`` says where this caller's body came from: ``"miss"`` (a real request made for
    this caller), ``"coalesced"`` (another caller's request in flight), ``"hit"`` (storage) or
    ``"bypass"`` (not eligible: method, ``cache=False``). A response replayed from a stored or
    shared snapshot (every status but ``"miss"`` and ``"bypass"``) carries an ``Age`` header, its
    current age (RFC 9111 §4.2.3, §5.1) in place of any the origin sent; ``age`` is that current
    age on every path (a miss's included), and ``created_at``, ``expires`` and ``from_cache`` say
    the rest as attributes.
    """

    __slots__ = (
        "_content",
        "_headers",
        "_history",
        "_now",
        "_req_headers",
        "_req_url",
        "_url",
        "cache_reason",
        "cache_status",
        "closed",
        "method",
        "reason",
        "snapshot",
        "status",
    )

    def __init__(
        self,
        snapshot: Snapshot,
        cache_status: CacheStatus,
        request_url: URL | None = None,
        request_headers: CIMultiDict[str] | None = None,
        now: float = 0.0,
    ) -> None:
        self.snapshot = snapshot  # the shared, immutable response this object replays
        self._now = now  # when it was served to this caller (the session's clock), for its age
        self.cache_status: CacheStatus = cache_status
        # Why it was neither stored nor served from storage (a code of reasons.py), else None:
        # set by the session once built (send.py).
        self.cache_reason: CacheReason | None = None
        self.status = snapshot.status
        self.reason = snapshot.reason
        self.method = snapshot.method
        self.closed = False
        self._req_url = request_url
        self._req_headers = request_headers
        self._url: URL | None = None
        self._headers: CIMultiDictProxy[str] | None = None
        self._content: BodyStream | ReaderStream | None = None
        self._history: tuple[CachedResponse, ...] | None = None

    # -- what aiohttp.ClientResponse offers -------------------------------------------------------

    @property
    def ok(self) -> bool:
        return self.status < 400

    @property
    def url(self) -> URL:
        if self._url is None:
            self._url = URL(self.snapshot.url)
        return self._url

    @property
    def real_url(self) -> URL:
        return self.url.with_fragment(None)

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        if self._headers is None:
            headers = CIMultiDict(self.snapshot.headers)
            if self.cache_status not in _OWN:
                # Built here, on first use, so that a hit nobody asks the headers of pays
                # nothing for its age (RFC 9111 §5.1: replaces the origin's Age).
                headers["Age"] = age_header(self.snapshot.age(self._now))
            self._headers = CIMultiDictProxy(headers)
        return self._headers

    @property
    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        return tuple((k.encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items())

    @property
    def history(self) -> tuple[CachedResponse, ...]:
        if self._history is None:
            self._history = tuple(
                CachedResponse(h, self.cache_status, request_url=self._req_url, now=self._now)
                for h in self.snapshot.history
            )
        return self._history

    # -- what a cache adds ------------------------------------------------------------------------

    @property
    def from_cache(self) -> bool:
        """Whether this response was served from storage (a hit, stale or revalidated)."""
        return self.cache_status in _FROM_CACHE

    @property
    def age(self) -> float:
        """Its current age in seconds when it was served to this caller (RFC 9111 §4.2.3), in
        every case: the origin's ``Age`` (or the apparent age from its ``Date``, whichever is
        more) and the response delay, plus the time it was kept. A replayed response's ``Age``
        header is this, rounded down; a miss's or a bypass's headers are the origin's own (so an
        ``Age: 30`` of the origin's is a miss of age 30)."""
        return max(0.0, self.snapshot.age(self._now))

    @property
    def created_at(self) -> datetime:
        """When the response was received from the origin (an aware UTC ``datetime``)."""
        return datetime.fromtimestamp(self.snapshot.response_time, timezone.utc)

    @property
    def expires(self) -> datetime | None:
        """When its stored freshness ends (an aware UTC ``datetime``), or None: not stored."""
        at = self.snapshot.expires_at
        return datetime.fromtimestamp(at, timezone.utc) if at > 0.0 else None

    @property
    def content(self) -> BodyStream | ReaderStream:
        if self._content is None:
            stream = self.snapshot.stream
            if stream is None:
                self._content = BodyStream(self.snapshot.body)
            else:  # this caller's own reader of a streamed body (module rules)
                self._content = ReaderStream(stream.reader())
        return self._content

    @property
    def content_type(self) -> str:
        raw = self.snapshot.header("Content-Type")
        if raw is None:
            return "application/octet-stream"
        return raw.partition(";")[0].strip().lower() or "application/octet-stream"

    @property
    def charset(self) -> str | None:
        raw = self.snapshot.header("Content-Type")
        if raw is None:
            return None
        for param in raw.split(";")[1:]:
            name, _, value = param.partition("=")
            if name.strip().lower() == "charset":
                return value.strip().strip('"').lower() or None
        return None

    @property
    def content_length(self) -> int | None:
        raw = self.snapshot.header("Content-Length")
        return int(raw) if raw is not None and raw.isdigit() else None

    @property
    def cookies(self) -> SimpleCookie:
        jar: SimpleCookie = SimpleCookie()
        for name, value in self.snapshot.headers:
            if name.lower() == "set-cookie":
                jar.load(value)
        return jar

    @property
    def request_info(self) -> RequestInfo:
        url = self._req_url if self._req_url is not None else self.url
        headers = CIMultiDictProxy(self._req_headers or CIMultiDict())
        return RequestInfo(url, self.method, headers, url)

    def get_encoding(self) -> str:
        return self.charset or "utf-8"

    async def read(self) -> bytes:
        if self.snapshot.stream is None:
            return self.snapshot.body
        content = self.content
        assert isinstance(content, ReaderStream)
        return await content.read_whole()

    async def text(self, encoding: str | None = None, errors: str = "strict") -> str:
        return (await self.read()).decode(encoding or self.get_encoding(), errors)

    async def json(
        self,
        *,
        encoding: str | None = None,
        loads: Callable[[str], Any] = json.loads,
        content_type: str | None = "application/json",
    ) -> Any:
        if content_type is not None and not _json_like(self.content_type, content_type):
            raise ContentTypeError(
                self.request_info,
                self.history,  # type: ignore[arg-type]  # quacks like ClientResponse
                status=self.status,
                message=(
                    "Attempt to decode JSON with unexpected mimetype: "
                    f"{self.snapshot.header('Content-Type') or ''}"
                ),
                headers=self.headers,
            )
        text = (await self.read()).decode(encoding or self.get_encoding()).strip()
        return loads(text) if text else None

    def raise_for_status(self) -> None:
        if self.status >= 400:
            raise ClientResponseError(
                self.request_info,
                self.history,  # type: ignore[arg-type]  # quacks like ClientResponse
                status=self.status,
                message=self.reason,
                headers=self.headers,
            )

    def release(self) -> None:
        """A body in memory: nothing to give back (kept for aiohttp compatibility); a streamed
        one: this caller's reader is closed (module rules)."""
        if self.snapshot.stream is not None:
            self._let_go()

    def _let_go(self) -> None:
        content = self.content  # opened now if never read: closed at once
        assert isinstance(content, ReaderStream)
        content.close()
        # The stream itself is let go (the rest of the record stays): a body that no response
        # holds any more is not fetched on.
        self.snapshot = replace(self.snapshot, stream=released(self.snapshot.stream))

    def close(self) -> None:
        self.closed = True
        self.release()

    async def wait_for_close(self) -> None:
        self.close()

    async def __aenter__(self) -> CachedResponse:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return (
            f"<CachedResponse({self.snapshot.url}) [{self.status} {self.reason}] "
            f"cache_status={self.cache_status}>"
        )


class LiveResponse(CachedResponse):
    """A caller's own response streamed from the connection, as aiohttp gives it: a bypass, or a
    body too large to share. Nothing of it is buffered by us; ``release()`` gives the connection
    back, as aiohttp's does. ``snapshot`` holds its status and headers, and no body.
    """

    __slots__ = ("_body", "_live", "_stream")

    def __init__(
        self,
        live: ClientResponse,
        snapshot: Snapshot,
        cache_status: CacheStatus,
        *,
        prefix: bytes = b"",
        request_url: URL | None = None,
    ) -> None:
        # Handed to its caller when its head arrived: its age is its age then (RFC 9111 §4.2.3).
        super().__init__(
            snapshot, cache_status, request_url=request_url, now=snapshot.response_time
        )
        self._live = live
        self._stream: LiveStream | StreamReader = (
            LiveStream(prefix, live.content) if prefix else live.content
        )
        self._body: bytes | None = None

    @property
    def content(self) -> Any:
        return self._stream

    @property
    def connection(self) -> Any:
        return self._live.connection

    async def read(self) -> bytes:
        if self._body is None:
            try:
                self._body = await self._stream.read()
            finally:
                self._live.release()
        return self._body

    def release(self) -> None:
        self._live.release()

    def close(self) -> None:
        self.closed = True
        self._live.close()

    async def wait_for_close(self) -> None:
        self.closed = True
        await self._live.wait_for_close()


def _json_like(actual: str, expected: str) -> bool:
    # The same rule as aiohttp: the expected type, or for JSON any application/*+json type.
    if expected == "application/json":
        return actual == "application/json" or (
            actual.startswith("application/") and actual.endswith("+json")
        )
    return expected in actual
