"""A scraper: hundreds of overlapping URLs through a disk cache; a rerun answers from disk.

    python examples/scraper.py [CACHE_DIR]

Starts its own slow "website" on 127.0.0.1 (no network needed). The crawl asks for 600 pages, but
only 40 distinct ones: each is fetched once, concurrent duplicates share the request, and the second
crawl (a new session, as after a restart) is answered from the disk cache.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web

from coalesce_client import CoalescingSession, DiskStorage

origin_calls = 0


async def page(request: web.Request) -> web.Response:
    global origin_calls
    origin_calls += 1
    await asyncio.sleep(0.05)  # a slow website
    n = int(request.match_info["n"])
    return web.Response(text=f"<h1>page {n}</h1>", content_type="text/html")


async def crawl(base: str, cache_dir: Path) -> tuple[int, dict[str, int], float]:
    # Links overlap the way a crawl's do: the same 40 pages, found from many places.
    urls = [f"{base}/page/{(i * 7) % 40}" for i in range(600)]
    limit = asyncio.Semaphore(100)
    t0 = time.perf_counter()
    async with CoalescingSession(ttl=3600, storage=DiskStorage(cache_dir)) as s:

        async def get(url: str) -> str:
            async with limit, s.get(url) as resp:
                resp.raise_for_status()
                return await resp.text()

        pages = await asyncio.gather(*(get(u) for u in urls))
        stats = s.stats
    counts = {"hits": stats.hits, "coalesced": stats.coalesced, "upstream": stats.upstream}
    return len(set(pages)), counts, time.perf_counter() - t0


async def main(cache_dir: Path) -> None:
    app = web.Application()
    app.router.add_get("/page/{n}", page)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    for run in ("first crawl", "second crawl"):
        before = origin_calls
        distinct, counts, wall = await crawl(base, cache_dir)
        print(
            f"{run}: 600 pages ({distinct} distinct) in {wall:.2f} s; "
            f"origin requests: {origin_calls - before}; hits: {counts['hits']}, "
            f"coalesced: {counts['coalesced']}"
        )
    await runner.cleanup()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        asyncio.run(main(Path(sys.argv[1])))
    else:
        with tempfile.TemporaryDirectory(prefix="scraper-cache-") as tmp:
            asyncio.run(main(Path(tmp)))
