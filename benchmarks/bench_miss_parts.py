"""Where a miss's own time goes: its storing step and its lifetime decision, timed inside real
misses, beside the same code run back to back (issue 20's sixth pass, BENCHMARKS.md).

    python benchmarks/bench_miss_parts.py            # 3,000 misses of 2 KiB, then the loops
    python benchmarks/bench_miss_parts.py --size 102400 --misses 1000

A diagnostic, not a comparison: it wraps two of the core's private methods (``Leader._keep``,
the storing step of a miss: Vary, sharing, storable headers, lifetime, the decision, the stamp,
the store and the URL index; ``Leader._lifetime``) with a timer, so its figures include the
timer's own ~0.1 us a call. It prints, per miss:

1. the two steps inside sequential misses of new URLs through ``CoalescingSession(ttl=600)``,
   from an origin on 127.0.0.1 in the same loop;
2. ``CachePolicy.lifetime_of`` of the same response, in a loop of its own;
3. ``Coalescer.fetch`` alone, for new keys back to back, its send answering a prebuilt response
   at once (no aiohttp, no origin), and the two steps inside it.

A step costs more inside real misses than back to back: between two misses aiohttp's request and
the origin's reply run through the same caches (``cachesim.py`` counts their misses).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

from _harness import Origin

from coalesce_client import CoalescingSession
from coalesce_client.core.coalescer import Call, Coalescer, Setup
from coalesce_client.core.leader import Leader
from coalesce_client.core.policy import CachePolicy
from coalesce_client.core.records import Fetched
from coalesce_client.spec.freshness import ResponseFacts
from coalesce_client.spec.snapshot import Snapshot
from coalesce_client.storage.memory import MemoryStorage

Timed = dict[str, float]


def timing(spent: Timed) -> None:
    """Wrap ``Leader._keep`` and ``Leader._lifetime`` to add their time to ``spent``."""
    keep, lifetime = Leader._keep, Leader._lifetime

    async def timed_keep(self: Leader, *args: Any) -> Any:
        t0 = time.perf_counter()
        result = await keep(self, *args)
        spent["storing step"] += time.perf_counter() - t0
        return result

    def timed_lifetime(self: Leader, *args: Any) -> Any:
        t0 = time.perf_counter()
        result = lifetime(self, *args)
        spent["  of which the lifetime"] += time.perf_counter() - t0
        return result

    Leader._keep = timed_keep  # type: ignore[method-assign]
    Leader._lifetime = timed_lifetime  # type: ignore[method-assign]


async def real_misses(spent: Timed, size: int, misses: int) -> tuple[float, tuple[Any, ...]]:
    """Per-miss us of sequential misses of new URLs; the last response's headers."""
    origin = Origin()
    await origin.start()
    try:
        async with CoalescingSession(ttl=600) as s:
            for i in range(200):  # warm-up, untimed
                async with s.get(origin.url(f"/sized/warm{i}/{size}")) as r:
                    await r.read()
            spent.update(dict.fromkeys(spent, 0.0))
            t0 = time.perf_counter()
            for i in range(misses):
                async with s.get(origin.url(f"/sized/x{i}/{size}")) as r:
                    await r.read()
            took = time.perf_counter() - t0
            assert s.stats.stored == misses + 200, s.stats
            return took / misses * 1e6, tuple(r.headers.items())
    finally:
        await origin.stop()


async def fetch_loop(spent: Timed, headers: tuple[Any, ...], misses: int) -> float:
    """Per-miss us of ``Coalescer.fetch`` for new keys, its send answering at once."""
    now = time.time()
    url = "http://127.0.0.1/x"
    snap = Snapshot(
        200, "OK", headers, url, "GET", b"x" * 2048, request_time=now, response_time=now
    )
    fetched = Fetched(snap, True)

    async def send(conditional: Any = (), detached: bool = False) -> Fetched:
        return fetched

    core = Coalescer(
        MemoryStorage(max_entries=2 * misses + 10), Setup.of(policy=None, ttl=600, clock=time.time)
    )
    calls = [Call(f"k{i:062d}", url_key=f"u{i:062d}") for i in range(misses)]
    spent.update(dict.fromkeys(spent, 0.0))
    t0 = time.perf_counter()
    for call in calls:
        await core.fetch(call, send)
    return (time.perf_counter() - t0) / misses * 1e6


def loop_of(fn: Callable[[], object], n: int = 20_000) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


async def run(args: argparse.Namespace) -> None:
    spent: Timed = {"storing step": 0.0, "  of which the lifetime": 0.0}
    timing(spent)
    whole, headers = await real_misses(spent, args.size, args.misses)
    print(f"1. inside {args.misses:,} misses of {args.size:,} bytes: {whole:.1f} us a miss")
    for step, seconds in spent.items():
        print(f"   {step:<28} {seconds / args.misses * 1e6:6.2f} us")
    policy, now = CachePolicy(), time.time()
    facts = ResponseFacts(200, headers, now, now, session_ttl=600, url="127.0.0.1/x")
    looped = loop_of(lambda: policy.lifetime_of(facts))
    print(f"2. lifetime_of in a loop of its own: {looped:.2f} us")
    alone = await fetch_loop(spent, headers, args.misses)
    print(f"3. Coalescer.fetch back to back, a prebuilt response: {alone:.1f} us a miss")
    for step, seconds in spent.items():
        print(f"   {step:<28} {seconds / args.misses * 1e6:6.2f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="body bytes (default 2048)")
    parser.add_argument("--misses", type=int, default=3000, help="misses timed (default 3000)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
