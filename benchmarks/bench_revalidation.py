"""Revalidation and stale responses (issue 13): what a 304 saves, and what stale-while-revalidate
spares the callers.

1. An expired 100 KiB entry, fetched again: revalidated (the origin answers 304 to
   ``If-None-Match``; the stored body is served) against a full refetch (no validator: the whole
   body again), with plain aiohttp's GET of the same URL beside them. Per request: mean and p50
   latency, and the body bytes that crossed the wire.
2. A popular key whose entry just expired, with a 200 ms origin: what the caller who finds it
   waits, under ``stale_while_revalidate`` (the stale response at once, one refresh in the
   background) against a blocking refresh (the caller waits for the conditional request).

The origin runs in a process of its own, so its work is not on the measured event loop. Time
moves on a fake clock given to the session (each round starts with the entry expired), so no
round waits for real expiry.

    python benchmarks/bench_revalidation.py [--rounds 400] [--mbps 100]

Part 1 runs twice: on loopback at full speed, and with the origin sending its body at ``--mbps``
(a WAN link; a 304 has no body to send).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from _harness import python_platform
from aiohttp import web

from coalesce_client import CachePolicy, CoalescingSession

BODY = bytes(range(256)) * 400  # 100 KiB
ETAG = '"v1"'
SLOW = 0.2  # the slow route's answer time, seconds


def _serve(port_out: Any, mbps: float) -> None:
    async def send(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
        """The body at ``mbps`` megabits per second (0: as fast as loopback goes)."""
        if not mbps:
            return web.Response(body=BODY, headers=headers)
        resp = web.StreamResponse(headers=headers)
        resp.content_length = len(BODY)
        await resp.prepare(request)
        chunk = 16 * 1024
        for at in range(0, len(BODY), chunk):
            await resp.write(BODY[at : at + chunk])
            await asyncio.sleep(chunk * 8 / (mbps * 1e6))
        return resp

    async def validated(request: web.Request) -> web.StreamResponse:
        if request.headers.get("If-None-Match") == ETAG:
            return web.Response(status=304, headers={"ETag": ETAG})
        return await send(request, {"ETag": ETAG})

    async def plain(request: web.Request) -> web.StreamResponse:
        return await send(request, {})

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(SLOW)
        return await validated(request)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/validated", validated)
        app.router.add_get("/plain", plain)
        app.router.add_get("/slow", slow)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_out.send(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def timed(rounds: int, one: Callable[[], Awaitable[int]]) -> tuple[list[float], int]:
    """Latencies (ms) of ``rounds`` calls of ``one``, and the body bytes it says it moved."""
    latencies, moved = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        moved += await one()
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies, moved


def row(name: str, ms: list[float], moved: int, rounds: int) -> str:
    ms_sorted = sorted(ms)
    p99 = ms_sorted[min(len(ms_sorted) - 1, int(len(ms_sorted) * 0.99))]
    return (
        f"{name:<44}{statistics.fmean(ms):>9.3f}{statistics.median(ms):>9.3f}{p99:>9.3f}"
        f"{moved / rounds / 1024:>12.1f}"
    )


async def run(args: argparse.Namespace) -> None:
    print(python_platform())
    for mbps in (0.0, args.mbps):
        link = f"origin sends at {mbps:g} Mbit/s" if mbps else "loopback, full speed"
        print(f"\n{link:<44}{'mean ms':>9}{'p50 ms':>9}{'p99 ms':>9}{'KiB/req in':>12}")
        await one_link(args, mbps, stale=not mbps)


async def one_link(args: argparse.Namespace, mbps: float, *, stale: bool) -> None:
    parent, child = multiprocessing.Pipe()
    proc = multiprocessing.Process(target=_serve, args=(child, mbps), daemon=True)
    proc.start()
    base = f"http://127.0.0.1:{parent.recv()}"
    rounds = args.rounds if not mbps else max(20, args.rounds // 10)
    try:
        # 1. revalidated (304) against a full refetch, every request on an expired entry.
        for name, path in (("revalidated (304, stored body served)", "/validated"),
                           ("full refetch (no validator)", "/plain")):  # fmt: skip
            clock = Clock()
            async with CoalescingSession(ttl=1, clock=clock) as s:
                await (await s.get(base + path)).read()

                async def expired(path: str = path, s: CoalescingSession = s,
                                  clock: Clock = clock) -> int:  # fmt: skip
                    clock.now += 2  # the entry expired
                    resp = await s.get(base + path)
                    await resp.read()
                    return 0 if resp.cache_status == "revalidated" else len(BODY)

                ms, moved = await timed(rounds, expired)
                print(row(name, ms, moved, rounds))
                statuses = s.stats
            assert statuses.upstream == rounds + 1, statuses
        async with aiohttp.ClientSession() as plain:

            async def direct() -> int:
                async with plain.get(base + "/plain") as resp:
                    return len(await resp.read())

            ms, moved = await timed(rounds, direct)
            print(row("plain aiohttp GET (reference)", ms, moved, rounds))

        if not stale:
            return
        # 2. the caller who finds the entry expired, 200 ms origin.
        print(f"\nexpired popular key, {SLOW * 1000:.0f} ms origin ({args.stale_rounds} rounds)")
        for name, policy in (
            ("stale-while-revalidate=60 (stale at once)", CachePolicy(stale_while_revalidate=60)),
            ("blocking refresh (waits for the 304)", CachePolicy()),
        ):
            clock = Clock()
            async with CoalescingSession(ttl=1, clock=clock, policy=policy) as s:
                await (await s.get(base + "/slow")).read()

                async def finding(s: CoalescingSession = s, clock: Clock = clock) -> int:
                    clock.now += 2
                    resp = await s.get(base + "/slow")
                    await resp.read()
                    return 0

                ms: list[float] = []
                for _ in range(args.stale_rounds):
                    one, _ = await timed(1, finding)
                    ms.extend(one)
                    await s._core.drain()  # the background refresh, outside the timing
                print(row(name, ms, 0, args.stale_rounds))
    finally:
        proc.terminate()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--stale-rounds", type=int, default=20)
    parser.add_argument("--mbps", type=float, default=100.0, help="the slow link's speed")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
