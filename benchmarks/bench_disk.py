"""DiskStorage and TieredStorage beside MemoryStorage and aiohttp-client-cache's SQLite backend.

    python benchmarks/bench_disk.py            # full run (about a minute on 2 cores)
    python benchmarks/bench_disk.py --quick    # smaller counts, a few seconds
    python benchmarks/bench_disk.py --profile  # also: cProfile of our hot disk hit, top costs

Needs ``aiohttp-client-cache`` (``pip install '.[bench]'``). No network: the script starts its own
``aiohttp.web`` origin on 127.0.0.1 (port chosen by the OS) and counts the requests that reach it.
Caches live in a temporary directory on the local disk, removed at the end. Prints figures only;
nothing here is a pass/fail test (the targets of issue 4 are shown as met or missed).

What is measured:

1. Hot hit: ``async with s.get(url) as r: await r.read()`` for a 2 KiB body already stored,
   sequentially, per-call time in µs (median of rounds, contenders interleaved round by round):
   ``CoalescingSession(ttl=600)`` with ``DiskStorage(dir)``, with
   ``TieredStorage(MemoryStorage(), DiskStorage(dir))`` and with its default ``MemoryStorage``;
   aiohttp-client-cache's ``CachedSession`` with ``SQLiteBackend(expire_after=600)``. Each is
   checked to serve from storage (the origin's counters do not move during the timed rounds), the
   plain DiskStorage from disk (it has no memory layer), and TieredStorage from its front (its
   disk is read once, by the first hit).
2. Cold burst: 1,000 concurrent GETs (``asyncio.gather``) of one fresh URL whose handler answers
   after 50 ms, through a fresh session with DiskStorage or MemoryStorage, interleaved, wall time
   from creating the tasks to the last body read. Each burst must send exactly 1 request upstream.
   Every caller looks in storage before it joins the flight, so the disk burst pays 1,000 disk
   lookups (misses) plus one write.
3. Loop stall: a ticker task wakes every 1 ms and records the longest gap between its wake-ups
   while 200 ``DiskStorage.set`` calls of 1 MiB bodies run at once (``asyncio.gather``). For
   scale, the same writes made on the loop itself (``diskcache.Cache.set``, as a naive backend
   would) are measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable
from importlib.metadata import version
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import diskcache
from _harness import (
    BODY,
    DELAY,
    TTL,
    Origin,
    add_loop_option,
    loop_name,
    met,
    profile_sequential,
    python_platform,
    sequential,
)
from _harness import run as run_on_loop
from aiohttp_client_cache import CachedSession, SQLiteBackend

from coalesce_client import CoalescingSession, Snapshot
from coalesce_client.storage import DiskStorage, MemoryStorage, TieredStorage
from coalesce_client.storage.codec import encode

T = TypeVar("T")


class CountingBack:
    """Wraps TieredStorage's back to count the reads that reach it (none on a front hit)."""

    def __init__(self, inner: DiskStorage) -> None:
        self.inner = inner
        self.reads = 0

    async def get(self, key: str) -> Snapshot | None:
        self.reads += 1
        return await self.inner.get(key)

    async def get_with_expiry(self, key: str) -> tuple[Snapshot, float] | None:
        self.reads += 1
        return await self.inner.get_with_expiry(key)

    async def set(self, key: str, value: Snapshot, ttl: float) -> None:
        await self.inner.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def clear(self) -> None:
        await self.inner.clear()

    async def close(self) -> None:
        await self.inner.close()


# -- 1. hot hit -----------------------------------------------------------------------------------


async def hot_hits(
    origin: Origin, tmp: Path, hits: int, their_hits: int, rounds: int
) -> dict[str, list[float]]:
    names = ("disk", "tiered", "memory", "sqlite")
    urls = {name: origin.url(f"/fast/hot-{name}") for name in names}
    back = CountingBack(DiskStorage(tmp / "hot-tiered"))
    sessions: dict[str, Any] = {
        "disk": CoalescingSession(ttl=TTL, storage=DiskStorage(tmp / "hot-disk")),
        "tiered": CoalescingSession(ttl=TTL, storage=TieredStorage(MemoryStorage(), back)),
        "memory": CoalescingSession(ttl=TTL),
        "sqlite": CachedSession(
            cache=SQLiteBackend(cache_name=str(tmp / "hot-theirs.sqlite"), expire_after=TTL)
        ),
    }
    counts = {name: (their_hits if name == "sqlite" else hits) for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    try:
        for s in sessions.values():
            await s.__aenter__()
        # Store the body, then check that the next call is really served from storage.
        for name in names:
            for _ in range(2):
                async with sessions[name].get(urls[name]) as r:
                    assert await r.read() == BODY
            if name == "sqlite":
                assert r.from_cache is True, "aiohttp-client-cache did not serve from its cache"
            else:
                assert r.cache_status == "hit", (name, r.cache_status)
        assert all(origin.calls[f"/fast/hot-{name}"] == 1 for name in names), origin.calls

        for name in names:  # one untimed round each: warm caches, allocator, branch history
            await sequential(sessions[name].get, urls[name], counts[name] // 4)
        for _ in range(rounds):
            for name in names:
                gc.collect()
                times[name].append(await sequential(sessions[name].get, urls[name], counts[name]))

        # Nothing reached the origin; the tiered disk was read twice, both before the timed
        # rounds: the first lookup, and the URL's invalidation index when the response was stored.
        assert all(origin.calls[f"/fast/hot-{name}"] == 1 for name in names), origin.calls
        assert back.reads == 2, back.reads
        for name in ("disk", "tiered", "memory"):
            stats = sessions[name].stats
            assert stats.hits == 1 + hits // 4 + hits * rounds, (name, stats)
    finally:
        for s in sessions.values():
            await s.close()
    return times


async def profile_hot_hit(origin: Origin, tmp: Path, hits: int, top: int = 25) -> str:
    """cProfile of our hot disk hit (sorted by own time); absolute times are inflated."""
    url = origin.url("/fast/profile")
    async with CoalescingSession(ttl=TTL, storage=DiskStorage(tmp / "profile")) as s:
        for _ in range(2):
            async with s.get(url) as r:
                await r.read()
        assert r.cache_status == "hit"
        return await profile_sequential(s.get, url, hits, top)


# -- 2. cold burst --------------------------------------------------------------------------------


async def one_burst(origin: Origin, storage: Any, n: int, path: str) -> float:
    async with CoalescingSession(ttl=TTL, storage=storage) as s:

        async def one() -> str:
            async with s.get(origin.url(path)) as r:
                assert await r.read() == BODY
                return r.cache_status

        t0 = time.perf_counter()
        statuses = Counter(await asyncio.gather(*(one() for _ in range(n))))
        wall = time.perf_counter() - t0
        assert origin.calls[path] == 1, f"{origin.calls[path]} upstream requests, expected 1"
        assert statuses == {"miss": 1, "coalesced": n - 1}, statuses
    # Stored once: counted when the write, which runs behind the callers, ends (by close at last).
    assert s.stats.upstream == 1 and s.stats.stored == 1, s.stats
    return wall


async def bursts(origin: Origin, tmp: Path, n: int, repeats: int) -> dict[str, list[float]]:
    walls: dict[str, list[float]] = {"disk": [], "memory": []}
    for i in range(repeats):
        for name in walls:
            gc.collect()
            await asyncio.sleep(0.05)  # let the origin finish closing the last burst's sockets
            storage = DiskStorage(tmp / f"burst-{i}") if name == "disk" else MemoryStorage()
            walls[name].append(await one_burst(origin, storage, n, f"/slow/{name}-{i}"))
    return walls


# -- 3. loop stall during large writes ------------------------------------------------------------


async def worst_stall(work: Awaitable[T]) -> tuple[T, float, float]:
    """``work``'s result, the longest gap between a 1 ms ticker's wake-ups, and the wall time."""
    worst = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last)
            last = now

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    try:
        result = await work
    finally:
        wall = time.perf_counter() - t0
        stop = True
        await tick
    return result, worst, wall


def _mib_snapshot(i: int) -> Snapshot:
    body = bytes([i % 256]) * (1024 * 1024)
    return Snapshot(
        200, "OK", (("Content-Type", "application/octet-stream"),), "http://x/", "GET", body
    )


async def write_stalls(
    tmp: Path, writes: int, repeats: int
) -> dict[str, list[tuple[float, float]]]:
    """(worst stall, wall) per repeat: DiskStorage.set, then the same writes on the loop."""
    snaps = [_mib_snapshot(i) for i in range(writes)]
    out: dict[str, list[tuple[float, float]]] = {"ours": [], "on the loop": []}
    for r in range(repeats):
        storage = DiskStorage(tmp / f"stall-{r}")
        try:
            work = asyncio.gather(*(storage.set(f"{i:064x}", s, TTL) for i, s in enumerate(snaps)))
            _, stall, wall = await worst_stall(work)
            out["ours"].append((stall, wall))
            assert await storage.get(f"{writes - 1:064x}") == snaps[-1]
        finally:
            await storage.close()

        cache = diskcache.Cache(str(tmp / f"naive-{r}"))

        async def on_the_loop(cache: Any = cache) -> None:
            for i, s in enumerate(snaps):
                cache.set(f"{i:064x}", encode(s), expire=TTL)
                await asyncio.sleep(0)  # a coroutine per write, as an async backend would be

        try:
            _, stall, wall = await worst_stall(on_the_loop())
            out["on the loop"].append((stall, wall))
        finally:
            cache.close()
    return out


# -- report ---------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, tmp: Path) -> None:
    quick = args.quick
    hits, their_hits, rounds = (2_000, 300, 3) if quick else (20_000, 2_000, 7)
    n, repeats = (200, 3) if quick else (1_000, 5)
    writes, stall_repeats = (50, 2) if quick else (200, 3)

    print(
        f"{python_platform()}; aiohttp {aiohttp.__version__}, diskcache {diskcache.__version__}, "
        f"SQLite {sqlite3.sqlite_version}, aiohttp-client-cache {version('aiohttp-client-cache')}, "
        f"coalesce_client {version('coalesce_client')}; {loop_name(args.uvloop)}; "
        f"mode {'quick' if quick else 'full'}; caches in {tmp}"
    )
    origin = Origin()
    await origin.start()
    try:
        print(
            f"\n1. hot hit, 2 KiB body: {rounds} rounds of {hits:,} sequential hits "
            f"(aiohttp-client-cache SQLite: {their_hits:,} a round)"
        )
        times = await hot_hits(origin, tmp, hits, their_hits, rounds)
        med = {k: statistics.median(v) for k, v in times.items()}
        labels = {
            "disk": "CoalescingSession + DiskStorage",
            "tiered": "CoalescingSession + TieredStorage",
            "memory": "CoalescingSession + MemoryStorage",
            "sqlite": "aiohttp-client-cache SQLiteBackend",
        }
        for key, label in labels.items():
            rounds_txt = " ".join(f"{t:.1f}" for t in times[key])
            print(f"   {label:<36} median {med[key]:8.2f} µs   rounds: {rounds_txt}")
        print(
            "   origin counters did not move during the timed rounds; "
            "the tiered disk was read once (first hit)"
        )

        print(
            f"\n2. cold burst: {n:,} concurrent GETs of one fresh URL, origin answers after "
            f"{DELAY * 1000:.0f} ms; {repeats} repeats, fresh session, storage and URL each"
        )
        walls = await bursts(origin, tmp, n, repeats)
        bmed = {k: statistics.median(v) for k, v in walls.items()}
        for key, label in (("disk", "DiskStorage"), ("memory", "MemoryStorage")):
            runs = " ".join(f"{w * 1000:.1f}" for w in walls[key])
            print(
                f"   {label:<36} median {bmed[key] * 1000:7.1f} ms   upstream 1 each   "
                f"runs (ms): {runs}"
            )

        if args.profile:
            print(f"\ncProfile of {hits:,} hot disk hits (sorted by own time):")
            print(await profile_hot_hit(origin, tmp, hits))
    finally:
        await origin.stop()

    print(
        f"\n3. loop stall: {writes} concurrent writes of 1 MiB bodies, ticker every 1 ms; "
        f"{stall_repeats} repeats"
    )
    stalls = await write_stalls(tmp, writes, stall_repeats)
    for key, label in (
        ("ours", "DiskStorage.set (worker thread)"),
        ("on the loop", "diskcache Cache.set on the loop"),
    ):
        worst = max(s for s, _ in stalls[key])
        runs = " ".join(f"{s * 1000:.1f}" for s, _ in stalls[key])
        wall = statistics.median(w for _, w in stalls[key])
        print(
            f"   {label:<36} worst stall {worst * 1000:7.1f} ms   runs (ms): {runs}   "
            f"wall {wall * 1000:.0f} ms ({writes / wall:.0f} writes/s)"
        )

    ours_stall = max(s for s, _ in stalls["ours"])
    print("\nSummary (medians)")
    print(f"   hot disk hit:          {med['disk']:8.2f} µs per hit")
    print(f"   hot SQLite (theirs):   {med['sqlite']:8.2f} µs per hit")
    print(f"   hot tiered hit:        {med['tiered']:8.2f} µs per hit")
    print(f"   hot memory hit:        {med['memory']:8.2f} µs per hit")
    print(f"   cold burst, disk:      {bmed['disk'] * 1000:8.1f} ms   1 upstream")
    print(f"   cold burst, memory:    {bmed['memory'] * 1000:8.1f} ms   1 upstream")
    print(f"   worst loop stall during {writes} x 1 MiB writes: {ours_stall * 1000:.1f} ms")
    print("Targets (issue 4)")
    print(f"   disk hit <= 100 µs: {med['disk']:.2f} µs, {met(med['disk'] <= 100)}")
    ratio = med["sqlite"] / med["disk"]
    print(f"   >= 5x faster than aiohttp-client-cache SQLite: {ratio:.1f}x, {met(ratio >= 5)}")
    tiered = med["tiered"] / med["memory"]
    print(f"   tiered hit within 1.5x of memory: {tiered:.2f}x, {met(tiered <= 1.5)}")
    burst = bmed["disk"] / bmed["memory"]
    print(f"   cold burst within 1.5x of memory: {burst:.2f}x, {met(burst <= 1.5)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, a few seconds")
    parser.add_argument("--profile", action="store_true", help="cProfile our hot disk hit too")
    add_loop_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-disk-") as tmp:
        run_on_loop(run(args, Path(tmp)), args.uvloop)


if __name__ == "__main__":
    main()
