"""Shared fixtures and helpers: a real aiohttp.web origin on 127.0.0.1 counting its calls, a fake
clock, and the snapshots and keys the storage tests store."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from coalesce_client.snapshot import Snapshot

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Origin:
    """A local HTTP server whose routes the test defines; ``calls[path]`` counts real requests.

    ``gate`` holds every handler (that awaits ``origin.wait()``) until the test opens it, so a test
    can line up concurrent callers without sleeping.
    """

    def __init__(self) -> None:
        self.app = web.Application()
        self.calls: Counter[str] = Counter()
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Event()  # set when a handler starts waiting at the gate
        self.requests: list[web.Request] = []
        self._runner: web.AppRunner | None = None
        self.base = ""

    def route(self, path: str, handler: Handler, method: str = "GET") -> None:
        async def counted(request: web.Request) -> web.StreamResponse:
            self.calls[request.path] += 1
            self.requests.append(request)
            return await handler(request)

        if method == "GET":
            self.app.router.add_get(path, counted)  # answers HEAD too, as real servers do
        else:
            self.app.router.add_route(method, path, counted)

    async def wait(self) -> None:
        self.arrived.set()
        await self.gate.wait()

    def url(self, path: str) -> str:
        return self.base + path

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        # Hundreds of connections arrive at once in these tests; with the default backlog (128) the
        # kernel drops the extra SYNs and clients retry 1, 3, 7... seconds later: slow, and under
        # load slower than the test's timeout.
        site = web.TCPSite(self._runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    """An origin with a ``/text`` route; tests add their own routes, then start it."""
    o = Origin()

    async def text(request: web.Request) -> web.Response:
        n = o.calls[request.path]  # this request's number, taken before waiting at the gate
        await o.wait()
        return web.Response(text=f"hello {request.path} #{n}")

    o.route("/text", text)
    yield o
    await o.stop()


@pytest.fixture
async def started(origin: Origin) -> Origin:
    await origin.start()
    return origin


class FakeClock:
    """Wall-clock seconds that move only when the test says so."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- what the storage tests store -----------------------------------------------------------------

KEY_A = "a" * 64  # keys are 64-character hex digests made by keys.py
KEY_B = "b" * 64
KEY_C = "0123456789abcdef" * 4


def snapshot(
    body: bytes = b"hello", *, url: str = "http://example.com/", status: int = 200
) -> Snapshot:
    """A small stored response, with repeated headers (their order must survive storage)."""
    return Snapshot(
        status,
        "OK",
        (("Content-Type", "text/plain"), ("Vary", "Accept"), ("Vary", "Origin")),
        url,
        "GET",
        body,
        1_800_000_000.0,
        1_800_000_060.0,
    )
