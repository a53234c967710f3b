"""The demo behind ``coalesce-client demo``: a stampede against a local origin, then the cure."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from .client import CoalescingSession
from .coalescer import Stats

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


async def _start_origin(delay: float) -> tuple[web.AppRunner, str, list[int]]:
    calls = [0]

    async def slow(request: web.Request) -> web.Response:
        calls[0] += 1
        await asyncio.sleep(delay)
        return web.Response(text=f"item {request.match_info['n']}")

    app = web.Application()
    app.router.add_get("/item/{n}", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", calls


async def run(*, requests: int, urls: int, delay: float) -> list[Row]:
    """Three bursts of the same requests: plain aiohttp, then coalesce_client cold, then warm."""
    runner, base, calls = await _start_origin(delay)
    targets = [f"{base}/item/{i % urls}" for i in range(requests)]
    rows: list[Row] = []
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def plain(url: str) -> str:
                async with session.get(url) as resp:
                    return await resp.text()

            rows.append(await _burst("plain aiohttp", targets, plain, calls, None))
            async with CoalescingSession(ttl=60, connector=aiohttp.TCPConnector(limit=0)) as s:

                async def coalesced(url: str) -> str:
                    async with s.get(url) as resp:
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
