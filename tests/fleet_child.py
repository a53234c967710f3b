"""One process of a fleet on one Redis or a Redis Cluster (``"cluster": true``), for
tests/test_fleet.py (issues 14, 23).

    python fleet_child.py session '{"redis": ..., "namespace": ..., "url": ..., "callers": 100}'
    python fleet_child.py server '{"redis": ..., "namespace": ..., "origin": ...}'

``session``: a CoalescingSession on a RedisStorage sends ``callers`` concurrent GETs of ``url``.
It prints ``ready`` once its local leader has either sent the request (it holds the key's lease)
or is watching for another process's outcome, so the test knows where every process stands
without sleeping; then, when all are answered, one JSON line: the callers' statuses and bodies,
and the session's counters.

``server``: an aiohttp.web worker with coalesce_middleware on a RedisStorage, whose handler asks
the test's origin. It prints ``port N`` once listening, and ``watching`` each time its leader
waits for another worker's outcome; it runs until killed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web

from coalesce_client import CoalescingSession, RedisStorage, coalesce_middleware


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Watched(RedisStorage):
    """Says when its process's leader starts waiting for another process."""

    __slots__ = ("watching",)

    async def watch(self, key: str) -> asyncio.Future[bytes]:
        waiter = await super().watch(key)
        self.watching.set()
        return waiter


def storage(options: dict[str, Any]) -> Watched:
    store = Watched(
        options["redis"],
        namespace=options["namespace"],
        lease_ttl=options.get("lease_ttl", 10.0),
        cluster=options.get("cluster", False),
        # Generous: 8 processes start at once on two busy cores here; the default is 0.5 s.
        socket_timeout=5.0,
    )
    store.watching = asyncio.Event()
    return store


async def session(options: dict[str, Any]) -> None:
    store = storage(options)
    sending = asyncio.Event()
    trace = aiohttp.TraceConfig()

    async def started(*_: Any) -> None:
        sending.set()

    trace.on_request_start.append(started)
    async with CoalescingSession(
        ttl=60,
        storage=store,
        wait_timeout=options.get("wait_timeout"),
        trace_configs=[trace],
        connector=aiohttp.TCPConnector(limit=0),
    ) as s:

        async def one() -> tuple[str, int, str]:
            async with s.get(options["url"]) as resp:
                return resp.cache_status, resp.status, await resp.text()

        calls = [asyncio.ensure_future(one()) for _ in range(options["callers"])]
        marks = [asyncio.ensure_future(e.wait()) for e in (sending, store.watching)]
        await asyncio.wait(marks, return_when=asyncio.FIRST_COMPLETED)
        say("ready")
        answers = await asyncio.gather(*calls)
        for mark in marks:
            mark.cancel()
        stats = s.stats
    say(
        json.dumps(
            {
                "statuses": Counter(a[0] for a in answers),
                "codes": Counter(a[1] for a in answers),
                "bodies": sorted({a[2] for a in answers}),
                "upstream": stats.upstream,
                "stored": stats.stored,
            }
        )
    )


async def server(options: dict[str, Any]) -> None:
    store = storage(options)
    client = aiohttp.ClientSession()

    async def handler(request: web.Request) -> web.Response:
        async with client.get(options["origin"]) as resp:
            return web.Response(text=await resp.text())

    async def watching() -> None:
        while True:
            await store.watching.wait()
            store.watching.clear()
            say("watching")

    reporter = asyncio.ensure_future(watching())
    app = web.Application(middlewares=[coalesce_middleware(ttl=60, storage=store)])
    app.router.add_get("/report", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    say(f"port {runner.addresses[0][1]}")
    try:
        await asyncio.Event().wait()  # until killed
    finally:
        reporter.cancel()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)  # to stderr, which a failing test shows
    mode, options = sys.argv[1], json.loads(sys.argv[2])
    asyncio.run(session(options) if mode == "session" else server(options))
