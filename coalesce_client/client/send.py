"""The real requests behind a ``CoalescingSession`` call, and the response each caller gets.

Rules of this module (the client face's half of the pipeline; ``client_call.py`` says who may
share, this says how a response is fetched and handed back):

* ``SharedRequest`` is the ``send`` of a flight: one real request with the session's timeout and
  no status check (each caller applies its own), timed around (RFC 9111 §4.2.3: its request and
  response times date the response), read only up to ``max_body_size``. A body over the limit is
  kept for its own caller to stream, and the flight ends at once so that its followers send their
  own (``body.Kept``); anything else is a complete ``Snapshot``.
* ``Passing`` is the ``send`` of a call that takes no part: aiohttp's own request with the call's
  own options, its body streamed as aiohttp streams it.
* The caller's response: a ``CachedResponse`` over the shared snapshot, a ``LiveResponse`` over
  the kept stream, or a 504 for an ``only-if-cached`` call with nothing usable stored.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from ..core.records import Answer, Fetched
from ..spec.cache_control import RequestDirectives
from ..spec.requests import Wanted
from ..spec.snapshot import Headers, Snapshot
from .body import Kept, read_within
from .response import CachedResponse, LiveResponse

__all__ = ["Passing", "SharedRequest", "snapshot_of", "wanted_of"]


class SharedRequest(Kept):
    """The real request behind a flight, and what its own caller gets (module rules).

    It is also the ``Kept`` of its caller: a response too large to share is kept on it.
    """

    __slots__ = (
        "_args",
        "_clock",
        "_kwargs",
        "_limit",
        "_session",
        "_should_store",
        "times",
    )

    def __init__(
        self,
        session: aiohttp.ClientSession,
        args: tuple[str, str | URL],
        kwargs: dict[str, Any],
        *,
        limit: int,
        should_store: Callable[[Any], bool] | None,
        clock: Callable[[], float],
    ) -> None:
        super().__init__()
        self._session = session
        self._args = args  # (method, the URL as the caller gave it)
        self._kwargs = kwargs  # aiohttp's options, without the caller's own
        self._limit = limit
        self._should_store = should_store
        self._clock = clock
        self.times = (0.0, 0.0)  # when the real request was sent, when its response arrived

    async def __call__(self, conditional: Headers = (), detached: bool = False) -> Fetched:
        kwargs = self._kwargs  # detached: its caller drops what is kept (Kept.drop)
        if conditional:  # a revalidation: the caller's request, made conditional
            headers = CIMultiDict(kwargs.get("headers") or ())
            for name, value in conditional:
                headers[name] = value
            kwargs = {**kwargs, "headers": headers}
        sent = self._clock()
        resp = await self._session.request(*self._args, raise_for_status=False, **kwargs)
        self.times = (sent, self._clock())  # its head is here: RFC 9111 response_time
        try:
            body = await read_within(resp, self._limit)
        except BaseException:
            resp.close()  # a truncated or cancelled read: nobody gets a short body
            raise
        if body is None or len(body) > self._limit:
            self.keep(resp, body or b"")  # too large to share: the flight ends now
            return Fetched(None)
        resp.release()
        snap = snapshot_of(resp, body, *self.times)
        verdict = self._should_store is None or self._should_store(CachedResponse(snap, "miss"))
        return Fetched(snap, bool(verdict))  # the filter sees what every caller would

    def caller_response(self, answer: Answer, url: URL, now: float) -> CachedResponse:
        """What this caller gets of its flight's answer (module rules)."""
        if answer.snapshot is not None:
            return CachedResponse(answer.snapshot, answer.status, request_url=url, now=now)
        live = self.response
        if live is None:  # only-if-cached, nothing usable stored (RFC 9111 §5.2.1.7)
            gateway_timeout = Snapshot(
                504, "Gateway Timeout", (("Content-Length", "0"),), str(url), self._args[0], b""
            )
            return CachedResponse(gateway_timeout, "miss", request_url=url)
        return LiveResponse(
            live,
            snapshot_of(live, b"", *self.times),
            answer.status,
            prefix=self.prefix,
            request_url=url,
        )


class Passing:
    """The request of a call that takes no part, streamed as aiohttp streams it."""

    __slots__ = ("_args", "_clock", "_kwargs", "_session", "response", "times")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        args: tuple[str, str | URL],
        kwargs: dict[str, Any],
        clock: Callable[[], float],
    ) -> None:
        self._session = session
        self._args = args
        self._kwargs = kwargs
        self._clock = clock
        self.response: aiohttp.ClientResponse | None = None
        self.times = (0.0, 0.0)

    async def __call__(self, conditional: Headers = (), detached: bool = False) -> Fetched:
        sent = self._clock()  # never conditional: a call that takes no part revalidates nothing
        self.response = await self._session.request(*self._args, **self._kwargs)
        self.times = (sent, self._clock())
        return Fetched(None)

    def live(self) -> LiveResponse:
        assert self.response is not None  # __call__ ran
        live = self.response
        return LiveResponse(live, snapshot_of(live, b"", *self.times), "bypass")


def wanted_of(directives: RequestDirectives, refresh: bool) -> tuple[Wanted | None, bool, bool]:
    """What a caller's request directives ask: (what it accepts of a stored response, whether
    it goes to the origin whatever is stored, whether its response may be stored)."""
    d = directives
    refresh = refresh or d.no_cache or d.max_age == 0  # RFC 9111 §5.2.1.4, §5.2.1.1
    wanted = None
    if (
        d.max_age is not None
        or d.min_fresh is not None
        or d.only_if_cached
        or d.max_stale is not None
    ):
        wanted = Wanted(
            max_age=d.max_age,
            min_fresh=d.min_fresh,
            only_if_cached=d.only_if_cached,
            max_stale=d.max_stale,
        )
    return wanted, refresh, d.no_store


def snapshot_of(
    resp: aiohttp.ClientResponse, body: bytes, request_time: float, response_time: float
) -> Snapshot:
    """The response as received, with the times its age is computed from (a redirect's are those
    of the whole request: aiohttp does not say when each hop arrived)."""
    return Snapshot(
        status=resp.status,
        reason=resp.reason or "",
        headers=tuple(resp.headers.items()),
        url=str(resp.url),
        method=resp.method,
        body=body,
        history=tuple(snapshot_of(h, b"", request_time, response_time) for h in resp.history),
        request_time=request_time,
        response_time=response_time,
    )
