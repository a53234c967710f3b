"""The demo behind ``coalesce-client demo``: a stampede against a local origin, then the cure."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from .. import CoalescingSession, Stats, Storage

__all__ = ["Row", "format_table", "run"]


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    requests: int
    upstream: int
    hits: int
    coalesced: int
    wall_s: float
    p50_ms: float
    p99_ms: float


# The demo's URLs name this host; a resolver of our own sends it to the origin's port on 127.0.0.1.
# The URLs (and so the cache keys) stay the same from run to run, so a kept --cache-dir starts warm.
DEMO_HOST = "origin.coalesce-demo.invalid"


class _DemoResolver(AbstractResolver):
    def __init__(self, port: int) -> None:
        self.port = port

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if host != DEMO_HOST:
            raise OSError(f"the demo resolves only {DEMO_HOST}, not {host}")
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=self.port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


def _connector(port: int) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=0, resolver=_DemoResolver(port), use_dns_cache=False)


async def _start_origin(delay: float) -> tuple[web.AppRunner, int, list[int]]:
    calls = [0]

    async def slow(request: web.Request) -> web.Response:
        calls[0] += 1
        await asyncio.sleep(delay)
        return web.Response(text=f"item {request.match_info['n']}")

    app = web.Application()
    app.router.add_get("/item/{n}", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    return runner, runner.addresses[0][1], calls


async def run(
    *,
    requests: int,
    urls: int,
    delay: float,
    concurrency: int | None = None,
    storage: Storage | None = None,
) -> list[Row]:
    """Three bursts of the same requests: plain aiohttp, then coalesce_client cold, then warm.

    ``concurrency`` bounds the requests in flight at once (all of them by default); ``storage``
    is where coalesce_client keeps responses (closed at the end).
    """
    runner, port, calls = await _start_origin(delay)
    targets = [f"http://{DEMO_HOST}/item/{i % urls}" for i in range(requests)]
    rows: list[Row] = []
    limit = asyncio.Semaphore(concurrency or requests)
    try:
        async with aiohttp.ClientSession(connector=_connector(port)) as session:

            async def plain(url: str) -> str:
                async with limit, session.get(url) as resp:
                    return await resp.text()

            rows.append(await _burst("plain aiohttp", targets, plain, calls, None))
            async with CoalescingSession(ttl=60, storage=storage, connector=_connector(port)) as s:

                async def coalesced(url: str) -> str:
                    async with limit, s.get(url) as resp:
                        return await resp.text()

                rows.append(await _burst("coalesce (cold)", targets, coalesced, calls, s))
                rows.append(await _burst("coalesce (warm)", targets, coalesced, calls, s))
    finally:
        await runner.cleanup()
    return rows


async def _burst(
    label: str,
    targets: list[str],
    get: Callable[[str], Awaitable[str]],
    calls: list[int],
    session: CoalescingSession | None,
) -> Row:
    before_calls = calls[0]
    before = session.stats if session is not None else Stats()
    latencies: list[float] = []

    async def one(url: str) -> None:
        t0 = time.perf_counter()
        await get(url)
        latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(u) for u in targets))
    wall = time.perf_counter() - t0
    after = session.stats if session is not None else Stats()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return Row(
        label,
        len(targets),
        calls[0] - before_calls,
        after.hits - before.hits,
        after.coalesced - before.coalesced,
        wall,
        q[49] * 1e3,
        q[98] * 1e3,
    )


def format_table(rows: list[Row]) -> str:
    head = (
        f"{'run':<17}{'requests':>9}{'upstream':>10}{'hits':>7}{'coalesced':>11}"
        f"{'wall':>9}{'p50':>9}{'p99':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.label:<17}{r.requests:>9}{r.upstream:>10}{r.hits:>7}{r.coalesced:>11}"
            f"{r.wall_s * 1e3:>7.0f}ms{r.p50_ms:>7.1f}ms{r.p99_ms:>7.1f}ms"
        )
    return "\n".join(lines)
