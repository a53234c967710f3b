"""Wrap a ClientSession the application already owns: same connector, cookies and defaults.

    python examples/wrap_existing_session.py

The application keeps ownership: closing the CoalescingSession never closes the session it wraps.
Runs against its own origin on 127.0.0.1 (no network needed).
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web

from coalesce_client import CoalescingSession

calls = 0


async def items(request: web.Request) -> web.Response:
    global calls
    calls += 1
    await asyncio.sleep(0.02)
    return web.json_response({"items": [1, 2, 3], "client": request.headers["User-Agent"]})


async def main() -> None:
    app = web.Application()
    app.router.add_get("/items", items)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/items"

    # The application's own session, with its own defaults.
    async with aiohttp.ClientSession(headers={"User-Agent": "my-app/1.0"}) as own:
        async with CoalescingSession(session=own, ttl=60) as s:
            results = await asyncio.gather(*(s.get(url) for _ in range(50)))
            bodies = [await r.json() for r in results]
            print(f"50 calls through the wrapper, {calls} upstream request")
            print("every caller saw:", bodies[0])
        print("wrapped session still open after the wrapper closed:", not own.closed)
        async with own.get(url) as r:  # the application goes on using it directly
            print("direct call through the same session:", r.status)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
