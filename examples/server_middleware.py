"""The server middleware on a slow route: 200 concurrent requests, one handler run.

    python examples/server_middleware.py

Starts its own app on 127.0.0.1 (no network needed), fires a burst of concurrent requests at a
route that takes 100 ms, and prints how often the handler ran and what X-Cache said.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp
from aiohttp import web

from coalesce_client import coalesce_middleware

handler_runs = 0


async def report(request: web.Request) -> web.Response:
    global handler_runs
    handler_runs += 1
    await asyncio.sleep(0.1)  # an expensive query
    return web.json_response({"report": "quarterly", "rows": 1234})


async def main() -> None:
    mw = coalesce_middleware(ttl=5, key_headers=["Accept-Language"])
    app = web.Application(middlewares=[mw])
    app.router.add_get("/report", report)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/report"

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:

        async def one() -> str:
            async with client.get(url) as resp:
                await resp.json()
                return resp.headers["X-Cache"]

        burst = Counter(await asyncio.gather(*(one() for _ in range(200))))
        later = await one()
    await runner.cleanup()
    print(f"200 concurrent requests: handler ran {handler_runs} time(s)")
    shared = burst["COALESCED"] + burst["HIT"]  # late arrivals find it stored already
    print(f"X-Cache: {burst['MISS']} MISS, {shared} COALESCED or HIT; the next request: {later}")


if __name__ == "__main__":
    asyncio.run(main())
