"""SingleFlight: what ``do()`` costs over awaiting the work directly, and a 100k-call burst; then
the burst of 1,000 callers of one fresh URL through a ``CoalescingSession`` beside its floor.

    python benchmarks/bench_flight.py            # 9 rounds of the session burst
    python benchmarks/bench_flight.py --rounds 3

Prints figures only; nothing here is a pass/fail test. The work yields to the loop once (as any real
fetch does) so that both sides pay for one suspension.

The session burst (issue 20's row): 1,000 concurrent ``async with s.get(url) as r: await
r.read()`` of one fresh URL on a local origin that answers after 50 ms (one request reaches it,
999 callers follow its flight), against its floor in the same run: 1,000 tasks awaiting one
future that resolves after 50 ms; and the minimal coalescer (``_minimal.MinimalCoalescer``), the
least a library with aiohttp's call shape does: ``get(url)`` returns an object both awaitable and
an async context manager, the first caller of a URL starts a task doing the real aiohttp GET (a
task: a cancelled caller cancels nothing), every caller awaits a future of its own (a shared one
would be cancelled by one cancelled caller), and the task resolves them all with a prebuilt
response. Its costs over the floor (the real request, the call shape, a future per caller) are
aiohttp's and CPython's, paid by any such library; ours over it is ours. The three alternate round
by round (a fresh URL each time); the medians and their ratios are printed (issue 20's goal: at
most 1.1x the floor). Two setups: the origin in this loop with a fresh session for each burst
(the issue's), and the origin in a process of its own with one warm session per contender (one
``CoalescingSession``, one ``aiohttp.ClientSession`` under the minimal coalescer), their
connection open.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from contextlib import AsyncExitStack

import aiohttp
from _harness import (
    BODY,
    DELAY,
    TTL,
    Origin,
    OriginProcess,
    add_loop_option,
    check,
    floor_burst,
    loop_name,
)
from _harness import run as run_on_loop
from _minimal import MinimalCoalescer

from coalesce_client import CoalescingSession, SingleFlight

CALLERS = 1_000


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


async def session_burst(
    origin: Origin | OriginProcess, n: int, tag: str, warm: CoalescingSession | None
) -> float:
    """Wall seconds of n concurrent GETs of one fresh URL through a CoalescingSession: a fresh
    one (its connection opened by the burst's request), or ``warm``, whose connection is open."""
    url = origin.url(f"/slow/burst-{tag}")
    async with AsyncExitStack() as stack:
        s = warm or await stack.enter_async_context(CoalescingSession(ttl=TTL))

        async def one() -> str:
            async with s.get(url) as r:
                check(await r.read() == BODY)
                return r.cache_status

        t0 = time.perf_counter()
        statuses = Counter(await asyncio.gather(*(one() for _ in range(n))))
        wall = time.perf_counter() - t0
    check(statuses == {"miss": 1, "coalesced": n - 1}, statuses)
    return wall


async def minimal_burst(
    origin: Origin | OriginProcess, n: int, tag: str, warm: aiohttp.ClientSession | None
) -> float:
    """Wall seconds of the same burst through the minimal coalescer, over a fresh
    ``aiohttp.ClientSession`` or ``warm``, whose connection is open."""
    url = origin.url(f"/slow/minimal-{tag}")
    async with AsyncExitStack() as stack:
        s = warm or await stack.enter_async_context(aiohttp.ClientSession())
        m = MinimalCoalescer(s)

        async def one() -> None:
            async with m.get(url) as r:
                check(await r.read() == BODY)

        t0 = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        wall = time.perf_counter() - t0
    check(m.fetches == 1, f"{m.fetches} upstream requests, expected 1")
    return wall


async def bursts(rounds: int, origin: Origin | OriginProcess, warm: bool) -> dict[str, list[float]]:
    """The floor, the minimal coalescer and the session burst, in turn, after one untimed round
    of each."""
    await origin.start()
    walls: dict[str, list[float]] = {"floor": [], "minimal": [], "ours": []}
    async with AsyncExitStack() as stack:
        stack.push_async_callback(origin.stop)
        session = await stack.enter_async_context(CoalescingSession(ttl=TTL)) if warm else None
        plain = await stack.enter_async_context(aiohttp.ClientSession()) if warm else None
        for i in range(rounds + 1):
            for name, out in walls.items():
                gc.collect()
                await asyncio.sleep(0.05)  # let the origin close the last burst's sockets
                if name == "floor":
                    wall = await floor_burst(CALLERS)
                elif name == "minimal":
                    wall = await minimal_burst(origin, CALLERS, str(i), plain)
                else:
                    wall = await session_burst(origin, CALLERS, str(i), session)
                if i:  # the first round warms all up (and opens the warm sessions' connections)
                    out.append(wall)
    return walls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9, help="session bursts (and floors) timed")
    add_loop_option(parser)
    args = parser.parse_args()
    print(f"Python {sys.version.split()[0]} on {sys.platform}; {loop_name(args.uvloop)}")
    direct, through = run_on_loop(overhead(), args.uvloop)
    print(
        f"uncontended: direct await {direct:.2f} µs, flight.do {through:.2f} µs, "
        f"added {through - direct:.2f} µs per call"
    )
    gc.collect()
    fetches, wall = run_on_loop(burst(), args.uvloop)
    tracemalloc.start()
    run_on_loop(burst(), args.uvloop)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"burst: 100,000 calls over 1,000 keys -> {fetches} fetch calls, "
        f"{wall * 1000:.0f} ms wall, peak traced memory {peak / 2**20:.1f} MiB"
    )
    setups = (
        (Origin(), False, "origin in this loop, a fresh session each round (the issue's setup)"),
        (OriginProcess(), True, "origin in a process of its own, one session, its connection open"),
    )
    for origin, warm, where in setups:
        walls = run_on_loop(bursts(args.rounds, origin, warm), args.uvloop)
        med = {name: statistics.median(w) for name, w in walls.items()}
        floor, minimal, mine = med["floor"], med["minimal"], med["ours"]
        print(
            f"session burst, {where}: {CALLERS:,} callers of one fresh URL, origin answers"
            f" after {DELAY * 1000:.0f} ms, median of {args.rounds} rounds: CoalescingSession "
            f"{mine * 1000:.1f} ms, floor ({CALLERS:,} tasks awaiting one future) "
            f"{floor * 1000:.1f} ms: {mine / floor:.2f}x the floor (goal: at most 1.1x)"
        )
        print(
            f"  minimal coalescer (aiohttp GET, a future per caller) {minimal * 1000:.1f} ms: "
            f"{minimal / floor:.2f}x the floor; ours {mine / minimal:.2f}x the minimal coalescer"
        )
        for name, label in (("ours", "ours"), ("minimal", "minimal"), ("floor", "floor")):
            print(f"  per round, ms: {label} {' '.join(f'{w * 1000:.1f}' for w in walls[name])}")


if __name__ == "__main__":
    main()
