"""The demo behind ``coalesce-client demo``: a stampede against a local origin, then the cure."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from .flight import SingleFlight

__all__ = ["Row", "format_table", "run"]


@dataclass(frozen=True, slots=True)
class Row:
    label: str
    requests: int
    upstream: int
    shared: int
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
    runner, base, calls = await _start_origin(delay)
    targets = [f"{base}/item/{i % urls}" for i in range(requests)]
    rows: list[Row] = []
    try:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def plain(url: str) -> bytes:
                async with session.get(url) as resp:
                    return await resp.read()

            rows.append(await _burst("plain aiohttp", targets, plain, calls))

            flight: SingleFlight[str, bytes] = SingleFlight()

            async def coalesced(url: str) -> bytes:
                return await flight.do(url, lambda: plain(url))

            before = flight.joined
            row = await _burst("SingleFlight", targets, coalesced, calls)
            rows.append(_with_shared(row, flight.joined - before))
    finally:
        await runner.cleanup()
    return rows


async def _burst(label: str, targets: list[str], get: object, calls: list[int]) -> Row:
    assert callable(get)
    before = calls[0]
    latencies: list[float] = []

    async def one(url: str) -> None:
        t0 = time.perf_counter()
        await get(url)
        latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(u) for u in targets))
    wall = time.perf_counter() - t0
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return Row(label, len(targets), calls[0] - before, 0, wall, q[49] * 1e3, q[98] * 1e3)


def _with_shared(row: Row, shared: int) -> Row:
    return Row(row.label, row.requests, row.upstream, shared, row.wall_s, row.p50_ms, row.p99_ms)


def format_table(rows: list[Row]) -> str:
    head = f"{'run':<16}{'requests':>9}{'upstream':>10}{'shared':>8}{'wall':>9}{'p50':>9}{'p99':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r.label:<16}{r.requests:>9}{r.upstream:>10}{r.shared:>8}"
            f"{r.wall_s * 1e3:>7.0f}ms{r.p50_ms:>7.1f}ms{r.p99_ms:>7.1f}ms"
        )
    return "\n".join(lines)
