"""coalesce_middleware sharing one large streamed body with a burst of clients (issue 24).

    python benchmarks/bench_large_server.py                  # 200 MiB, 100 clients
    python benchmarks/bench_large_server.py --size 50 --clients 20   # quicker

No network: every process listens on or talks to 127.0.0.1 only (ports chosen by the OS). Prints
figures only; nothing here is a pass/fail test (the issue's targets are shown as met or missed).

A server is this script run as ``--serve bare|mw`` in a child process of its own, so that its
peak RSS is its own: an ``aiohttp.web`` app (access log off) whose handler streams ``SIZE`` MiB
(a ``web.StreamResponse``, 256 KiB per ``write``, no ``Content-Length``: chunked), and a control
port answering ``/__stats`` (handler runs, ``ru_maxrss``) from an app no middleware sees. The
handler sends its headers once the burst's requests are all in (10 s at most), as the tests'
gate does: a request arriving after the headers starts a run of its own. ``mw``
puts ``coalesce_middleware(ttl=600)`` (its default ``max_body_size``, 8 MiB: the body is spooled
to a temporary file past it) in front. This process downloads, counting each body's CRC-32:

1. ``bare``, one client: the plain aiohttp figure (peak RSS of a server streaming it once).
2. ``mw``, ``CLIENTS`` concurrent clients: handler runs (the target: 1), every client's
   checksum against the handler's, wall time, and the server's peak RSS against the bare one
   (the target: within + 64 MiB).
3. The same burst with one client that reads nothing after its headers until the others have
   their whole bodies: the others' wall time against 2.'s (the target: within 1.2x).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import subprocess
import sys
import time
import zlib
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

from coalesce_client import coalesce_middleware

HOST = "127.0.0.1"
WRITE = 256 * 1024  # what the handler writes at a time
MIB = 1024 * 1024


def block(i: int) -> bytes:
    """The ``i``-th 256 KiB of the body: the same bytes in every process, differing by block."""
    return (i.to_bytes(8, "big") * (WRITE // 8))[:WRITE]


def expected_crc(size: int) -> int:
    crc = 0
    for i in range(size // WRITE):
        crc = zlib.crc32(block(i), crc)
    return crc


async def serve(mode: str, size: int, burst: int) -> None:
    runs: Counter[str] = Counter()
    arrived = 0
    all_in = asyncio.Event()

    @web.middleware
    async def entering(request: web.Request, handler: Any) -> web.StreamResponse:
        nonlocal arrived
        arrived += 1
        if arrived >= burst:
            all_in.set()
        return await handler(request)

    async def big(request: web.Request) -> web.StreamResponse:
        runs["big"] += 1
        # The burst's requests all in before the headers (as the tests' gate; 10 s at most): one
        # arriving after them would start a run of its own (a flight ends at its headers).
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(all_in.wait(), 10)
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        for i in range(size // WRITE):
            await resp.write(block(i))
        return resp

    async def stats(request: web.Request) -> web.Response:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        return web.json_response({"runs": runs["big"], "peak_rss_kib": peak})

    middlewares = [entering, coalesce_middleware(ttl=600)] if mode == "mw" else [entering]
    app = web.Application(middlewares=middlewares)
    app.router.add_get("/big", big)
    control = web.Application()
    control.router.add_get("/__stats", stats)
    ports = []
    for each in (app, control):
        runner = web.AppRunner(each, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, HOST, 0, backlog=1024)
        await site.start()
        ports.append(runner.addresses[0][1])
    print(json.dumps({"ports": ports}), flush=True)
    await asyncio.Event().wait()  # until killed


async def download(
    session: aiohttp.ClientSession, url: str, stall: asyncio.Event | None = None
) -> tuple[int, int]:
    """One client's download: its body's CRC-32 and length, read as it arrives; with ``stall``,
    nothing read after the headers until it is set."""
    crc = length = 0
    async with session.get(url) as r:
        if stall is not None:
            await stall.wait()
        async for chunk in r.content.iter_chunked(WRITE):
            crc = zlib.crc32(chunk, crc)
            length += len(chunk)
    return crc, length


async def downloads(ports: list[int], clients: int, stalled: bool) -> dict[str, Any]:
    """``clients`` concurrent downloads from a server (its app and control ``ports``); with
    ``stalled``, one of them reads nothing until the others have it all."""
    port, control = ports
    connector = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async with session.get(f"http://{HOST}:{control}/__stats") as r:
            before = await r.json()
        began = time.perf_counter()
        url = f"http://{HOST}:{port}/big"
        stall = asyncio.Event()
        held = asyncio.ensure_future(download(session, url, stall if stalled else None))
        bodies = await asyncio.gather(*(download(session, url) for _ in range(clients - 1)))
        if stalled:
            took = time.perf_counter() - began  # the others', before the stalled one reads
        stall.set()
        bodies.append(await held)
        if not stalled:
            took = time.perf_counter() - began
        async with session.get(f"http://{HOST}:{control}/__stats") as r:
            after = await r.json()
    return {
        "bodies": bodies,
        "took": took,
        "runs": after["runs"],
        "idle_rss": before["peak_rss_kib"] / 1024,
        "peak_rss": after["peak_rss_kib"] / 1024,
    }


def measure(mode: str, size: int, clients: int, stalled: bool = False) -> dict[str, Any]:
    """A server in a child process of its own (its RSS its own), downloaded from, then killed."""
    cmd = [sys.executable, __file__, "--serve", mode, "--size", str(size // MIB)]
    cmd += ["--clients", str(clients)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        ports = json.loads(proc.stdout.readline())["ports"]
        return asyncio.run(downloads(ports, clients, stalled))
    finally:
        proc.kill()
        proc.wait()


def main(size: int, clients: int) -> None:
    print(f"aiohttp {aiohttp.__version__}, Python {sys.version.split()[0]}")
    print(f"a handler streaming {size // MIB} MiB (chunked), {clients} concurrent clients\n")
    crc = expected_crc(size)
    bare = measure("bare", size, 1)
    mw = measure("mw", size, clients)
    right = sum(1 for got in mw["bodies"] + bare["bodies"] if got == (crc, size))
    print(f"{'':24}{'bare, 1 client':>18}{f'mw, {clients} clients':>20}")
    print(f"{'handler runs':24}{bare['runs']:>18}{mw['runs']:>20}")
    print(f"{'wall time (s)':24}{bare['took']:>18.2f}{mw['took']:>20.2f}")
    print(f"{'server RSS at start':24}{bare['idle_rss']:>14.1f} MiB{mw['idle_rss']:>16.1f} MiB")
    print(f"{'server peak RSS':24}{bare['peak_rss']:>14.1f} MiB{mw['peak_rss']:>16.1f} MiB")
    extra = mw["peak_rss"] - bare["peak_rss"]
    print(f"\nbodies with the handler's CRC-32 and length: {right} of {clients + 1}")
    print(f"handler runs for {clients} clients: {mw['runs']} (target 1)")
    verdict = "met" if extra <= 64 else "missed"
    print(f"peak RSS over the bare server: {extra:+.1f} MiB (target within +64 MiB: {verdict})")
    held = measure("mw", size, clients, stalled=True)
    ratio = held["took"] / mw["took"]
    right = sum(1 for got in held["bodies"] if got == (crc, size))
    print(f"\nwith one client reading nothing until the {clients - 1} others are done:")
    print(f"  the others' wall time {held['took']:.2f} s, {ratio:.2f}x the burst's (target 1.2x)")
    print(f"  handler runs {held['runs']}, bodies right {right} of {clients}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=200, help="the body, in MiB")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--serve", choices=["bare", "mw"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.size * MIB, args.clients))
    else:
        main(args.size * MIB, args.clients)
