"""The least a library of coalesce_client's shape must do: the minimal contenders of issue 20.

Not a benchmark itself. ``bench_client.py``, ``bench_flight.py`` and ``bench_server.py`` import it
as ``_minimal`` and time these beside coalesce_client, in the same run. Each is the thinnest code
that still answers as a library with aiohttp's call shape must, so its costs are aiohttp's and
CPython's, not ours: what separates it from the floor (a shared future, a bare GET, a bare
handler) any such library pays; what separates coalesce_client from it is ours.

Rules of this module: no freshness, no Vary, no options, no statistics (counted fetches excepted,
for the benchmarks' upstream checks); but every answer is right: the same bytes as the origin's,
one upstream request per flight, a cancelled caller cancels nobody else's request.

* ``MinimalCoalescer``: ``get(url)`` returns a ``FloorCall`` (awaitable, and an async context
  manager, as aiohttp's ``s.get`` is) around a coroutine that, for the first caller of a URL,
  starts a task doing the real aiohttp GET (a task: a cancelled caller cancels nothing), and for
  every caller appends its own future (one shared future would be cancelled by one cancelled
  caller) and awaits it; the task resolves every waiter with a ``Prebuilt`` response.
* ``MinimalCache``: the same, keeping each response in a dict by URL; a later call of the URL is
  answered from it.
* ``minimal_cache_middleware()``: an ``aiohttp.web`` middleware that keeps, per ``path_qs`` of a
  GET, the handler's status, body and headers the first time, and answers every later request
  with a fresh ``web.Response`` (aiohttp's responses are single-use) carrying those, plus the
  ``Age`` (RFC 9111 §5.1) and ``X-Cache: HIT`` lines coalesce_middleware adds. It does not
  coalesce misses: it is the reference of a stored route's HIT, where no flight is involved.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict


class Prebuilt:
    """A response built once, entered and read as an aiohttp response is."""

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body

    async def __aenter__(self) -> Prebuilt:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def read(self) -> bytes:
        return self.body


class FloorCall:
    """What ``s.get(url)`` must return in aiohttp's API, at its thinnest: awaitable (the
    response) and an async context manager (entered on the awaited response)."""

    __slots__ = ("_coro", "_resp")

    def __init__(self, coro: Coroutine[Any, Any, Prebuilt]) -> None:
        self._coro = coro

    def __await__(self) -> Generator[Any, None, Prebuilt]:
        return self._coro.__await__()

    async def __aenter__(self) -> Prebuilt:
        self._resp = await self._coro
        return await self._resp.__aenter__()

    async def __aexit__(self, *exc: object) -> None:
        await self._resp.__aexit__(*exc)


class MinimalCoalescer:
    """Single-flight GETs over ``session``: one request per URL in flight, every caller its own
    future. ``fetches`` counts the requests it sent."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._flights: dict[str, list[asyncio.Future[Prebuilt]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # asyncio keeps only weak references
        self.fetches = 0

    def _answer(self, url: str, resp: Prebuilt) -> None:
        """What a fetched response becomes before its waiters get it (a cache keeps it)."""

    async def _fetch(self, url: str) -> None:
        self.fetches += 1
        try:
            async with self._session.get(url) as r:
                resp = Prebuilt(await r.read())
        except BaseException as exc:  # the waiters get it; this task itself ends quietly
            for waiter in self._flights.pop(url):
                if not waiter.done():
                    waiter.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._answer(url, resp)
        for waiter in self._flights.pop(url):
            if not waiter.done():  # a cancelled caller's future is done already
                waiter.set_result(resp)

    async def _get(self, url: str) -> Prebuilt:
        loop = asyncio.get_running_loop()
        waiters = self._flights.get(url)
        if waiters is None:
            waiters = self._flights[url] = []
            task = loop.create_task(self._fetch(url))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        waiter: asyncio.Future[Prebuilt] = loop.create_future()
        waiters.append(waiter)
        return await waiter

    def get(self, url: str) -> FloorCall:
        return FloorCall(self._get(url))


class MinimalCache(MinimalCoalescer):
    """The minimal coalescer keeping each response by URL: a later call is answered from it."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        super().__init__(session)
        self.kept: dict[str, Prebuilt] = {}

    def _answer(self, url: str, resp: Prebuilt) -> None:
        self.kept[url] = resp

    async def _get(self, url: str) -> Prebuilt:
        resp = self.kept.get(url)
        if resp is not None:
            return resp
        return await super()._get(url)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Stored:
    """One stored response: what every later reply is built from."""

    status: int
    body: bytes
    headers: CIMultiDict[str]
    at: float  # time.monotonic() when stored


def minimal_cache_middleware() -> Middleware:
    """A middleware keeping each GET's first ``web.Response`` by ``path_qs``, replaying it after."""
    stored: dict[str, Stored] = {}

    @web.middleware
    async def minimal_cache(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method != "GET":
            return await handler(request)
        key = request.path_qs
        entry = stored.get(key)
        if entry is not None:
            # web.Response copies the headers it is given into a CIMultiDict of its own: this
            # reply's copy, which the two lines below extend.
            resp = web.Response(status=entry.status, body=entry.body, headers=entry.headers)
            resp.headers["Age"] = str(int(time.monotonic() - entry.at))
            resp.headers["X-Cache"] = "HIT"
            return resp
        resp = await handler(request)
        if type(resp) is web.Response and isinstance(resp.body, bytes):
            headers = CIMultiDict(resp.headers)
            stored[key] = Stored(resp.status, resp.body, headers, time.monotonic())
            resp.headers["X-Cache"] = "MISS"
        return resp

    return minimal_cache
