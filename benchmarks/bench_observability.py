"""What observability costs a hot client hit: metrics (PrometheusMetrics) and logging at INFO.

    python benchmarks/bench_observability.py            # about 20 s
    python benchmarks/bench_observability.py --quick

No network: an ``aiohttp.web`` origin on 127.0.0.1. Each contender is a
``CoalescingSession(ttl=600)`` whose one URL is stored already; ``async with s.get(url) as r:
await r.read()`` is timed in rounds of sequential hits, the contenders interleaved round by
round; the median per-hit time in µs:

* ``plain``: no metrics, logging not configured (the logger's effective level is WARNING);
* ``logging at INFO``: ``logging.basicConfig(level=INFO)`` (the DEBUG record is not built);
* ``PrometheusMetrics``: ``metrics=PrometheusMetrics(CollectorRegistry())`` (the hit recorded).

Goals (issue 22): at most 0.1 µs more per hit with logging at INFO, 0.5 µs with a metric.
Prints figures only.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from coalesce_client import CoalescingSession
from coalesce_client.metrics import PrometheusMetrics

Hit = Callable[[], Awaitable[None]]


async def serve() -> tuple[web.AppRunner, str]:
    async def item(request: web.Request) -> web.Response:
        return web.Response(body=b"x" * 2048)

    app = web.Application()
    app.router.add_get("/item", item)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/item"


async def timed(hit: Hit, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await hit()
    return (time.perf_counter() - started) / n * 1e6


async def main(rounds: int, n: int) -> None:
    runner, url = await serve()
    plain = CoalescingSession(ttl=600)
    metered = CoalescingSession(ttl=600, metrics=PrometheusMetrics(CollectorRegistry()))

    def hit_of(s: CoalescingSession) -> Hit:
        async def hit() -> None:
            async with s.get(url) as r:
                await r.read()

        return hit

    for s in (plain, metered):
        await hit_of(s)()  # stored
    root = logging.getLogger()
    contenders: dict[str, tuple[Hit, int]] = {
        "plain": (hit_of(plain), logging.NOTSET),
        "logging at INFO": (hit_of(plain), logging.INFO),
        "PrometheusMetrics": (hit_of(metered), logging.NOTSET),
    }
    figures: dict[str, list[float]] = {k: [] for k in contenders}
    handler = logging.StreamHandler()
    for _ in range(rounds):
        for name, (hit, level) in contenders.items():
            if level:
                root.addHandler(handler)
                root.setLevel(level)
            figures[name].append(await timed(hit, n))
            root.removeHandler(handler)
            root.setLevel(logging.WARNING)
    for s in (plain, metered):
        await s.close()
    await runner.cleanup()
    base = statistics.median(figures["plain"])
    print(f"hot client hit, median of {rounds} rounds of {n} hits (µs per hit):")
    for name, values in figures.items():
        median = statistics.median(values)
        print(f"  {name:<20} {median:7.2f}   {median - base:+.2f} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    asyncio.run(main(5 if quick else 15, 2000 if quick else 5000))
