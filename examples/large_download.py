"""A burst of downloads of one large file: fetched once, shared as it streams, memory bounded.

    python examples/large_download.py [SIZE_MIB]

Starts its own "file server" on 127.0.0.1 (no network needed) that sends a file of SIZE_MIB
(default 64) MiB, never held whole. Fifty tasks download it at once through one
``CoalescingSession``: the body is over ``max_body_size``, so it is not held in memory for them;
it is downloaded once and spooled (memory up to ``max_body_size``, the rest in a temporary file
that is deleted as it is created), and each task reads it at its own pace into its own checksum.
One task is slow (it waits a second before reading): nobody waits for it.
"""

from __future__ import annotations

import asyncio
import hashlib
import resource
import sys
import time

from aiohttp import web

from coalesce_client import CachePolicy, CoalescingSession

MIB = 1024 * 1024
BLOCK = bytes(range(256)) * 4096  # 1 MiB
origin_calls = 0


def file_server(size: int) -> web.Application:
    async def download(request: web.Request) -> web.StreamResponse:
        global origin_calls
        origin_calls += 1
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        resp.content_length = size
        await resp.prepare(request)
        for at in range(0, size, MIB):
            await resp.write(BLOCK[: min(MIB, size - at)])
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_get("/dataset.bin", download)
    return app


async def main(size: int) -> None:
    runner = web.AppRunner(file_server(size), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/dataset.bin"
    origin = hashlib.sha256()
    for at in range(0, size, MIB):
        origin.update(BLOCK[: min(MIB, size - at)])
    want = origin.hexdigest()
    policy = CachePolicy(max_body_size=8 * MIB)  # the most held in memory for one response
    t0 = time.perf_counter()
    finished: dict[str, float] = {}
    async with CoalescingSession(ttl=600, policy=policy) as s:

        async def download(name: str, slow: bool) -> str:
            async with s.get(url) as resp:
                resp.raise_for_status()
                if slow:
                    await asyncio.sleep(1.0)  # reads nothing for a second
                digest = hashlib.sha256()
                async for chunk in resp.content.iter_chunked(256 * 1024):
                    digest.update(chunk)
            finished[name] = time.perf_counter() - t0
            return digest.hexdigest()

        names = [f"task {i}" for i in range(50)]
        digests = await asyncio.gather(*(download(n, n == "task 0") for n in names))
    others = max(t for n, t in finished.items() if n != "task 0")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(f"50 downloads of {size // MIB} MiB: {origin_calls} origin request(s)")
    print(f"every checksum right: {all(d == want for d in digests)}")
    print(f"the 49 others done in {others:.2f} s; the slow one in {finished['task 0']:.2f} s")
    print(f"peak memory of this process: {peak:.0f} MiB")
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) * MIB if len(sys.argv) > 1 else 64 * MIB))
