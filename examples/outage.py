"""An origin outage served from stale: revalidation while it is up, the last good answer when down.

    python examples/outage.py

Starts its own origin on 127.0.0.1 (no network needed). Its prices are fresh for one second and
carry an ETag and `stale-if-error=3600`. While the origin is up, an expired entry is confirmed with
a 304 (no body sent again); once it is down, every caller of the flight that finds it failing gets
the last good answer instead of an error, for up to an hour.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp import web

from coalesce_client import CoalescingSession

ETAG = '"prices-v1"'
calls: Counter[str] = Counter()


async def prices(request: web.Request) -> web.Response:
    headers = {"ETag": ETAG, "Cache-Control": "max-age=1, stale-if-error=3600"}
    if request.headers.get("If-None-Match") == ETAG:
        calls["304"] += 1
        return web.Response(status=304, headers=headers)
    calls["200"] += 1
    return web.json_response({"EUR": 1.08, "GBP": 1.27}, headers=headers)


async def burst(s: CoalescingSession, url: str, n: int = 50) -> Counter[str]:
    async def one() -> str:
        async with s.get(url) as resp:
            await resp.json()
            return f"{resp.status} {resp.cache_status}"

    return Counter(await asyncio.gather(*(one() for _ in range(n))))


async def main() -> None:
    app = web.Application()
    app.router.add_get("/prices", prices)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/prices"
    async with CoalescingSession(ttl=60) as s:
        print("origin up, cold:   ", dict(await burst(s, url)), "origin:", dict(calls))
        await asyncio.sleep(1.1)  # the entry expires
        print("origin up, expired:", dict(await burst(s, url)), "origin:", dict(calls))
        await runner.cleanup()  # the origin goes down
        await asyncio.sleep(1.1)
        print("origin down:       ", dict(await burst(s, url)), "origin:", dict(calls))
        st = s.stats
        print(f"stats: {st.misses} miss, {st.revalidated} revalidated, {st.stale} stale")


if __name__ == "__main__":
    asyncio.run(main())
