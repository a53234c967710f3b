"""A large body shared as it streams (issue 24): one download for many callers, memory bounded.

    python benchmarks/bench_large.py            # 100 callers of one 200 MiB body (a minute or so)
    python benchmarks/bench_large.py --quick    # 20 callers of 20 MiB, a 2 s idle follower

No network: this process is the origin (``aiohttp.web`` on 127.0.0.1, the body generated as it
is sent, never held whole), and each variant runs in a child process of its own, which reports
its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) and its callers' checksums
(CRC-32 and length: cheap enough for 100 readers of 200 MiB on one loop). Prints figures only.

Variants:

1. ``plain``: plain aiohttp, one download of the body, read in 256 KiB chunks. The reference.
2. ``shared``: ``CoalescingSession`` (default policy: ``max_body_size`` 8 MiB, ``MemoryStorage``),
   N concurrent callers each reading the whole body. Goals: 1 origin request, every checksum the
   origin's, peak RSS within plain's + 64 MiB.
3. ``alone``: the session, one caller: its completion time.
4. ``idle``: the session, the same caller plus one follower that reads nothing for the idle
   time, then reads it all. Goal: the caller's completion time within 1.2x of ``alone``'s.
5. ``burst-idle``: N callers of which one reads nothing for the idle time: the others'
   completion time beside ``shared``'s (the same callers with nobody idle).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
import zlib
from typing import Any

import aiohttp
from _harness import met, python_platform
from aiohttp import web

MIB = 1024 * 1024
PIECE = 256 * 1024
RSS_GOAL = 64 * MIB
IDLE_GOAL = 1.2


def piece(i: int) -> bytes:
    """The origin's ``i``-th piece of 256 KiB: its number, then a fixed pattern."""
    return i.to_bytes(8, "big") + _PATTERN[8:]


_PATTERN = bytes(range(256)) * (PIECE // 256)


def expected(size: int) -> tuple[int, int]:
    crc = 0
    for i in range(0, size, PIECE):
        crc = zlib.crc32(piece(i // PIECE)[: min(PIECE, size - i)], crc)
    return crc, size


class Origin:
    """``/big``: ``size`` bytes with a Content-Length, generated as they are sent."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.requests = 0
        self.app = web.Application()
        self.app.router.add_get("/big", self.big)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.url = ""

    async def big(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = self.size
        await resp.prepare(request)
        for i in range(0, self.size, PIECE):
            await resp.write(piece(i // PIECE)[: min(PIECE, self.size - i)])
        await resp.write_eof()
        return resp

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0, backlog=1024)
        await site.start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/big"


# -- the children ----------------------------------------------------------------------------------


async def consume(content: Any) -> tuple[int, int]:
    crc = n = 0
    async for chunk in content.iter_chunked(PIECE):
        crc = zlib.crc32(chunk, crc)
        n += len(chunk)
    return crc, n


async def child(variant: str, url: str, callers: int, idle: float) -> dict[str, Any]:
    from coalesce_client import CoalescingSession

    started = time.perf_counter()
    if variant == "plain":
        async with aiohttp.ClientSession() as plain, plain.get(url) as r:
            sums = [await consume(r.content)]
        return {"sums": sums, "busy": time.perf_counter() - started}

    async def one(wait: float) -> tuple[tuple[int, int], float]:
        async with s.get(url) as r:
            if wait:
                await asyncio.sleep(wait)  # reads nothing meanwhile
            got = await consume(r.content)
        return got, time.perf_counter() - started

    waits = {"alone": [0.0], "idle": [0.0, idle], "shared": [0.0] * callers}
    waits["burst-idle"] = [0.0] * (callers - 1) + [idle]
    async with CoalescingSession(ttl=600) as s:
        done = await asyncio.gather(*(one(w) for w in waits[variant]))
    busy = [t for (_, t), w in zip(done, waits[variant], strict=True) if not w]
    return {"sums": [got for got, _ in done], "busy": max(busy)}


def run_child(args: argparse.Namespace) -> None:
    result = asyncio.run(child(args.child, args.url, args.callers, args.idle))
    result["rss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps(result))


# -- the parent: the origin, and one child per variant ---------------------------------------------


async def variant(origin: Origin, name: str, args: argparse.Namespace) -> dict[str, Any]:
    before = origin.requests
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--child",
        name,
        "--url",
        origin.url,
        "--callers",
        str(args.callers),
        "--idle",
        str(args.idle),
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    out, _ = await proc.communicate()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result["requests"] = origin.requests - before
    return result


async def main(args: argparse.Namespace) -> None:
    size = args.size * MIB
    origin = Origin(size)
    await origin.start()
    want = expected(size)
    print(f"{python_platform()}; load average {os.getloadavg()[0]:.2f}")
    print(f"one body of {args.size} MiB from 127.0.0.1, {args.callers} callers, idle {args.idle} s")
    results = {}
    for name in ("plain", "shared", "alone", "idle", "burst-idle"):
        r = results[name] = await variant(origin, name, args)
        right = sum(tuple(s) == want for s in r["sums"])
        print(
            f"  {name:11} origin requests {r['requests']:3}  checksums right {right:3}/"
            f"{len(r['sums']):<3}  peak RSS {r['rss'] / MIB:7.1f} MiB  "
            f"completion {r['busy']:6.2f} s"
        )
    extra = results["shared"]["rss"] - results["plain"]["rss"]
    ratio = results["idle"]["busy"] / results["alone"]["busy"]
    burst = results["burst-idle"]["busy"] / results["shared"]["busy"]
    ok = results["shared"]["requests"] == 1
    print(f"shared: 1 origin request for {args.callers} callers: {met(ok)}")
    rss_ok, idle_ok = met(extra <= RSS_GOAL), met(ratio <= IDLE_GOAL)
    print(f"shared: peak RSS plain + {extra / MIB:.1f} MiB (goal + 64 MiB): {rss_ok}")
    print(f"idle follower: the leader's time {ratio:.2f}x alone (goal 1.2x): {idle_ok}")
    print(f"burst with an idle follower: the others' time {burst:.2f}x of the burst without")
    await origin.runner.cleanup()


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="20 callers, 20 MiB, 2 s idle")
    parser.add_argument("--size", type=int, default=200, help="the body, in MiB")
    parser.add_argument("--callers", type=int, default=100)
    parser.add_argument("--idle", type=float, default=10.0, help="seconds a follower reads nothing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.size, args.callers, args.idle = 20, 20, 2.0
    return args


if __name__ == "__main__":
    arguments = parse()
    if arguments.child:
        run_child(arguments)
    else:
        asyncio.run(main(arguments))
