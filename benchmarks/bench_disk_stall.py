"""DiskStorage under large bodies: the event loop's longest stall during disk hits, and a burst of
distinct large URLs beside plain aiohttp (issue 19).

    python benchmarks/bench_disk_stall.py            # full run (about half a minute on 2 cores)
    python benchmarks/bench_disk_stall.py --quick    # smaller counts, a few seconds

No network: the script starts its own ``aiohttp.web`` origin on 127.0.0.1 (port chosen by the
OS); caches live in a temporary directory on the local disk, removed at the end. Prints figures
only; nothing here is a pass/fail test (the goals of issue 19 are shown as met or missed).

What is measured (each figure the median of the repeats, the worst in brackets; goals are
judged on the median, as the machine's other load shows in the worst; the first line gives the
load average):

1. Loop stall, one large hit: a watchdog task sleeps 1 ms in a loop and records its largest
   lateness (``bench_disk.worst_stall``'s longest gap less the 1 ms) while one
   ``async with s.get(url) as r: await r.read()`` is served from disk (a
   50 MiB body; 10 MiB with ``--quick``), through a fresh ``CoalescingSession`` on a fresh
   ``DiskStorage`` over the directory (nothing of it in memory). Goal: at most 10 ms.
2. Loop stall, concurrent hits: the same watchdog while 500 distinct stored 1 MiB URLs (200 with
   ``--quick``) are read at once (``asyncio.gather``), each served from disk. Goal: at most 10 ms.
   For scale, the same hits from ``MemoryStorage``: the turn of the loop that starts every call
   is the caller's own, whatever the storage.
3. Burst of distinct URLs: wall time from creating the tasks to the last body read, for 500
   distinct 1 MiB URLs fetched at once from the local origin, plain ``aiohttp.ClientSession``
   beside ``CoalescingSession(storage=DiskStorage(tmp))`` (interleaved), with the watchdog's
   figure and, for ours, how long its callers waited in ``Writer.write`` (where a flight hands
   its response to storage: up to 50 ms each before issue 19) and how many were stored once
   ``close()`` drained the writes. Goal: within 1.5x of plain.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple

import aiohttp
from _harness import Origin, met, python_platform
from bench_disk import worst_stall

from coalesce_client import CachePolicy, CoalescingSession
from coalesce_client.core.writer import Writer
from coalesce_client.storage import DiskStorage, MemoryStorage

MIB = 1024 * 1024
STALL_GOAL = 0.010
BURST_GOAL = 1.5


def session(directory: Path, max_body: int) -> CoalescingSession:
    return CoalescingSession(
        ttl=3600,
        storage=DiskStorage(directory, max_bytes=4 * 1024 * MIB),
        policy=CachePolicy(max_body_size=max_body),
    )


async def fill(origin: Origin, directory: Path, urls: list[str], max_body: int) -> None:
    async with session(directory, max_body) as s:
        for url in urls:
            async with s.get(url) as r:
                await r.read()


async def read_all(s: Any, urls: list[str]) -> list[str]:
    async def one(url: str) -> str:
        async with s.get(url) as r:
            await r.read()
            return str(getattr(r, "cache_status", "plain"))

    return list(await asyncio.gather(*(one(u) for u in urls)))


async def lateness(work: Any) -> tuple[Any, float, float]:
    """``work``'s result, the watchdog's largest lateness past its 1 ms sleep, and wall time."""
    result, gap, wall = await worst_stall(work)
    return result, max(0.0, gap - 0.001), wall


async def hit_stalls(
    origin: Origin, directory: Path, urls: list[str], max_body: int, repeats: int
) -> list[float]:
    """The watchdog's worst lateness while ``urls`` (stored) are all read at once from disk."""
    await fill(origin, directory, urls, max_body)
    stalls = []
    for _ in range(repeats):
        calls = sum(origin.calls.values())
        async with session(directory, max_body) as s:
            statuses, stall, _ = await lateness(read_all(s, urls))
        assert set(statuses) == {"hit"} and sum(origin.calls.values()) == calls, statuses[:3]
        stalls.append(stall)
    return stalls


async def memory_stalls(origin: Origin, urls: list[str], repeats: int) -> list[float]:
    """For scale: the same hits from MemoryStorage (no disk): the turn of the loop that starts
    them all is the caller's own."""
    stalls = []
    storage = MemoryStorage(max_bytes=4 * 1024 * MIB)
    async with CoalescingSession(ttl=3600, storage=storage) as s:
        await read_all(s, urls)
        for _ in range(repeats):
            statuses, stall, _ = await lateness(read_all(s, urls))
            assert set(statuses) == {"hit"}, statuses[:3]
            stalls.append(stall)
    return stalls


class WriteWaits:
    """How long callers waited in ``Writer.write`` (where a flight hands its response to
    storage): the same private method in every revision, wrapped for the burst only."""

    def __init__(self) -> None:
        self.waits: list[float] = []
        self._write = Writer.write

    async def write(self, writer: Writer, *args: Any) -> None:
        start = time.perf_counter()
        try:
            await self._write(writer, *args)
        finally:
            self.waits.append(time.perf_counter() - start)

    def __enter__(self) -> WriteWaits:
        waits = self

        async def write(writer: Writer, *args: Any) -> None:
            await waits.write(writer, *args)

        Writer.write = write  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Writer.write = self._write  # type: ignore[method-assign]


async def bursts(origin: Origin, tmp: Path, n: int, repeats: int) -> dict[str, list[Burst]]:
    """Per repeat, plain aiohttp and ours interleaved."""
    out: dict[str, list[Burst]] = {"plain aiohttp": [], "ours": []}
    for r in range(repeats):
        urls = [origin.url(f"/sized/burst{r}-{i}/{MIB}") for i in range(n)]
        async with aiohttp.ClientSession() as plain:
            _, stall, wall = await lateness(read_all(plain, urls))
        out["plain aiohttp"].append(Burst(wall, stall, 0, 0.0, 0.0))
        directory = tmp / f"burst-{r}"
        s = session(directory, 2 * MIB)
        try:
            with WriteWaits() as waits:
                statuses, stall, wall = await lateness(read_all(s, urls))
            assert statuses.count("miss") == n, statuses[:3]
        finally:
            await s.close()
        waited = sum(waits.waits)
        out["ours"].append(Burst(wall, stall, s.stats.stored, waited, max(waits.waits)))
        shutil.rmtree(directory, ignore_errors=True)
    return out


class Burst(NamedTuple):
    wall: float
    stall: float
    stored: int
    waited: float  # callers' time in Writer.write, summed
    longest: float  # the longest of them


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.1f} ms [{max(values) * 1000:.1f}]"


async def run(quick: bool, tmp: Path) -> None:
    big, many, burst, repeats = (10 * MIB, 200, 200, 2) if quick else (50 * MIB, 500, 500, 5)
    print(f"{python_platform()}; aiohttp {aiohttp.__version__}; load {os.getloadavg()[0]:.1f}")
    origin = Origin()
    await origin.start()
    try:
        one = [origin.url(f"/sized/one/{big}")]
        stalls = await hit_stalls(origin, tmp / "one", one, 2 * big, repeats)
        goal = met(statistics.median(stalls) <= STALL_GOAL)
        print(f"1. one {big // MIB} MiB disk hit, loop stall        {ms(stalls)}  {goal}")
        urls = [origin.url(f"/sized/{i}/{MIB}") for i in range(many)]
        stalls = await hit_stalls(origin, tmp / "many", urls, 2 * MIB, repeats)
        goal = met(statistics.median(stalls) <= STALL_GOAL)
        print(f"2. {many} concurrent 1 MiB disk hits, stall  {ms(stalls)}  {goal}")
        stalls = await memory_stalls(origin, urls, repeats)
        print(f"   the same from MemoryStorage, for scale    {ms(stalls)}")
        figures = await bursts(origin, tmp, burst, repeats)
        plain = statistics.median(b.wall for b in figures["plain aiohttp"])
        print(f"3. burst of {burst} distinct 1 MiB URLs")
        for name, rows in figures.items():
            ratio = statistics.median(b.wall for b in rows) / plain
            goal = f"  x{ratio:.2f} of plain {met(ratio <= BURST_GOAL)}" if name == "ours" else ""
            print(
                f"   {name:14} wall {ms([b.wall for b in rows])}"
                f"  loop stall {ms([b.stall for b in rows])}{goal}"
            )
        ours = figures["ours"]
        stored = sorted({b.stored for b in ours})
        print(
            f"   ours: callers waited for storage {ms([b.waited for b in ours])} in all,"
            f" {ms([b.longest for b in ours])} at most; stored {stored} once closed"
        )
    finally:
        await origin.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, a few seconds")
    quick = parser.parse_args().quick
    with tempfile.TemporaryDirectory(prefix="bench_disk_stall-") as tmp:
        asyncio.run(run(quick, Path(tmp)))


if __name__ == "__main__":
    main()
