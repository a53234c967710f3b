"""SingleFlight: what ``do()`` costs over awaiting the work directly, and a 100k-call burst.

    python benchmarks/bench_flight.py

Prints figures only; nothing here is a pass/fail test. The work yields to the loop once (as any real
fetch does) so that both sides pay for one suspension.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
import tracemalloc

from coalesce_client import SingleFlight


async def _work() -> int:
    await asyncio.sleep(0)
    return 1


async def overhead(n: int = 100_000, rounds: int = 7) -> tuple[float, float]:
    """Median per-call time (µs) of awaiting the work directly and through do(), uncontended."""
    flight: SingleFlight[int, int] = SingleFlight()
    direct, through = [], []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(n):
            await _work()
        direct.append((time.perf_counter() - t0) / n * 1e6)
        t0 = time.perf_counter()
        for i in range(n):
            await flight.do(i, _work)
        through.append((time.perf_counter() - t0) / n * 1e6)
    return statistics.median(direct), statistics.median(through)


async def burst(calls: int = 100_000, keys: int = 1_000) -> tuple[int, float]:
    flight: SingleFlight[int, int] = SingleFlight()
    fetches = 0
    release = asyncio.Event()

    async def fetch() -> int:
        nonlocal fetches
        fetches += 1
        await release.wait()
        return fetches

    t0 = time.perf_counter()
    tasks = [asyncio.ensure_future(flight.do(i % keys, fetch)) for i in range(calls)]
    await asyncio.sleep(0)
    release.set()
    await asyncio.gather(*tasks)
    wall = time.perf_counter() - t0
    assert len(flight) == 0
    return fetches, wall


def main() -> None:
    print(f"Python {sys.version.split()[0]} on {sys.platform}")
    direct, through = asyncio.run(overhead())
    print(
        f"uncontended: direct await {direct:.2f} µs, flight.do {through:.2f} µs, "
        f"added {through - direct:.2f} µs per call"
    )
    gc.collect()
    fetches, wall = asyncio.run(burst())
    tracemalloc.start()
    asyncio.run(burst())
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"burst: 100,000 calls over 1,000 keys -> {fetches} fetch calls, "
        f"{wall * 1000:.0f} ms wall, peak traced memory {peak / 2**20:.1f} MiB"
    )


if __name__ == "__main__":
    main()
