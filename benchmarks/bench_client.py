"""CoalescingSession beside aiohttp-client-cache and plain aiohttp: hot memory hits, cold bursts.

    python benchmarks/bench_client.py            # full run (about 30 s on 2 cores)
    python benchmarks/bench_client.py --quick    # smaller counts, a few seconds
    python benchmarks/bench_client.py --profile  # also: cProfile of our hot hit, top costs

Needs ``aiohttp-client-cache`` (``pip install '.[bench]'``). No network: the script starts its own
``aiohttp.web`` origin on 127.0.0.1 (port chosen by the OS) and counts the requests that reach it.
Prints figures only; nothing here is a pass/fail test (the targets are shown as met or missed).

What is measured:

1. Hot memory hit: ``async with s.get(url) as r: await r.read()`` for a 2 KiB body already stored,
   sequentially, per-call time in µs (median of rounds, contenders interleaved round by round):
   ``CoalescingSession(ttl=600)`` with its default ``MemoryStorage``; the floor (the same loop
   over a dict of prebuilt responses: a lookup, an ``async with``, an awaited ``read``, nothing
   else); aiohttp-client-cache's
   ``CachedSession`` with its in-memory ``CacheBackend(expire_after=600)``; and plain aiohttp (a
   real request over a kept-alive connection each time) for scale. Each cache is checked to serve
   from storage: the origin's counter does not move during the timed rounds.
2. Cold burst: N concurrent GETs (``asyncio.gather``) of one fresh URL whose handler answers after
   50 ms, each contender on a fresh session, wall time from creating the tasks to the last result
   (TCP connects included). The floor is the same N tasks awaiting one shared future that resolves
   after 50 ms, measured in the same run. The minimal coalescer (``_minimal.MinimalCoalescer``)
   is the least a library with aiohttp's call shape does: ``get(url)`` returns an object both
   awaitable and an async context manager; the first caller of a URL starts a task doing the real
   aiohttp GET (a task: a cancelled caller cancels nothing), every caller awaits a future of its
   own (a shared one would be cancelled by one cancelled caller), and the task resolves them all
   with a prebuilt response. Between the floor and it lie the real request and the call shape,
   aiohttp's and CPython's costs that any such library pays; between it and ours, what is ours.
   Plain aiohttp and aiohttp-client-cache use
   ``TCPConnector(limit=0)`` (no connection limit: with aiohttp's default of 100, 1,000 requests
   would queue in 10 waves of 50 ms). The origin listens with a backlog of 2,048 so that no
   connection attempt is dropped and retried a second later. Note that aiohttp-client-cache (0.15
   here) holds a per-key ``asyncio.Lock`` around lookup-fetch-store: concurrent identical requests
   make one upstream request, and the others then read the cache one at a time, in turn.
3. Miss: sequential GETs of 100 KiB bodies (cacheable for an hour) at URLs not stored yet, per-call
   ms: ours pays aiohttp's request plus the snapshot, the store and the URL index; the same
   route through plain aiohttp, interleaved round by round, is the reference; so is plain aiohttp
   keeping each body in a dict by its URL, the least any cache does (a body kept is memory that
   is not reused: new pages for every miss, which a plain GET that drops its body never touches);
   so is the minimal cache (``_minimal.MinimalCache``: the minimal coalescer above, keeping each
   response in a dict by URL), the least a coalescing cache with aiohttp's call shape does, on a
   fresh session each round as ours: ours minus it is the part of the miss that is ours.
   aiohttp-client-cache's miss (its memory backend, a fresh session each round) is the peer's.

The origin and the clients share one process and one event loop (the default asyncio loop, or
uvloop with ``--uvloop``), so the origin's work is on the same CPU as the client's: the
plain-aiohttp figures include the server handling every request, and a burst's wall time includes
the origin's 50 ms plus its own CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

import aiohttp
from _harness import (
    BODY,
    DELAY,
    TTL,
    Origin,
    add_loop_option,
    check,
    floor_burst,
    loop_name,
    met,
    profile_sequential,
    python_platform,
    sequential,
)
from _harness import run as run_on_loop
from _minimal import FloorCall, MinimalCache, MinimalCoalescer, Prebuilt
from aiohttp_client_cache import CacheBackend, CachedSession

from coalesce_client import CoalescingSession, cache_info, client_middleware

# -- 1. hot memory hit ----------------------------------------------------------------------------

Get = Callable[[str], Any]  # s.get: returns an awaitable async context manager


class FloorSession:
    """The hit floor: ``get`` looks the URL up in a dict of prebuilt responses, nothing else."""

    def __init__(self, responses: dict[str, Prebuilt]) -> None:
        self._responses = responses

    async def _lookup(self, url: str) -> Prebuilt:
        return self._responses[url]

    def get(self, url: str) -> FloorCall:
        return FloorCall(self._lookup(url))


async def hot_hits(
    origin: Origin, hits: int, plain_calls: int, rounds: int
) -> dict[str, list[float]]:
    """Per-call µs of each round for each contender, interleaved round by round."""
    ours_url, theirs_url, plain_url, mw_url = (origin.url(f"/fast/hot-{n}") for n in "abcd")
    times: dict[str, list[float]] = {"floor": [], "ours": [], "mw": [], "theirs": [], "plain": []}
    floor = FloorSession({ours_url: Prebuilt(BODY)})
    async with (
        CoalescingSession(ttl=TTL) as ours,
        client_middleware(ttl=TTL) as middleware,
        aiohttp.ClientSession(middlewares=[middleware]) as mw,
        CachedSession(cache=CacheBackend(expire_after=TTL)) as theirs,
        aiohttp.ClientSession() as plain,
    ):
        # Store the body, then check that the next call is really served from storage.
        for _ in range(2):
            async with ours.get(ours_url) as r:
                check(len(await r.read()) == len(BODY))
        check(r.cache_status == "hit", r.cache_status)
        for _ in range(2):
            async with mw.get(mw_url) as r:
                check(len(await r.read()) == len(BODY))
        check(getattr(cache_info(r), "status", None) == "hit", cache_info(r))
        for _ in range(2):
            async with theirs.get(theirs_url) as r:
                check(len(await r.read()) == len(BODY))
        check(r.from_cache is True, "aiohttp-client-cache did not serve from its cache")
        async with plain.get(plain_url) as r:  # opens the kept-alive connection
            await r.read()
        check(origin.calls["/fast/hot-a"] == 1 and origin.calls["/fast/hot-b"] == 1)

        # One untimed round each: warm caches, allocator and branch history before timing.
        await sequential(floor.get, ours_url, hits // 4)
        await sequential(ours.get, ours_url, hits // 4)
        await sequential(mw.get, mw_url, hits // 4)
        await sequential(theirs.get, theirs_url, hits // 4)
        await sequential(plain.get, plain_url, plain_calls // 4)
        plain_before = origin.calls["/fast/hot-c"]
        for _ in range(rounds):
            gc.collect()
            times["floor"].append(await sequential(floor.get, ours_url, hits))
            gc.collect()
            times["ours"].append(await sequential(ours.get, ours_url, hits))
            gc.collect()
            times["mw"].append(await sequential(mw.get, mw_url, hits))
            gc.collect()
            times["theirs"].append(await sequential(theirs.get, theirs_url, hits))
            gc.collect()
            times["plain"].append(await sequential(plain.get, plain_url, plain_calls))

        # Nothing reached the origin for the two caches; every plain call did.
        check(origin.calls["/fast/hot-a"] == 1, origin.calls["/fast/hot-a"])
        check(origin.calls["/fast/hot-b"] == 1, origin.calls["/fast/hot-b"])
        check(origin.calls["/fast/hot-d"] == 1, origin.calls["/fast/hot-d"])
        check(ours.stats.hits == 1 + hits // 4 + hits * rounds, ours.stats)
        check(origin.calls["/fast/hot-c"] - plain_before == plain_calls * rounds)
    return times


# -- 2. cold burst --------------------------------------------------------------------------------


class Burst:
    """One burst's outcome: wall seconds, requests that reached the origin, and a note."""

    def __init__(self, wall: float, upstream: int, note: str = "") -> None:
        self.wall = wall
        self.upstream = upstream
        self.note = note


async def _gather_reads(get: Get, url: str, n: int) -> list[Any]:
    async def one() -> Any:
        async with get(url) as r:
            body = await r.read()
            check(body == BODY)
            return r

    return await asyncio.gather(*(one() for _ in range(n)))


async def burst_floor(n: int) -> Burst:
    """The same n tasks awaiting one shared future that resolves after 50 ms."""
    return Burst(await floor_burst(n), 0)


async def burst_ours(origin: Origin, n: int, tag: str) -> Burst:
    path = f"/slow/ours-{tag}"
    async with CoalescingSession(ttl=TTL) as s:
        t0 = time.perf_counter()
        responses = await _gather_reads(s.get, origin.url(path), n)
        wall = time.perf_counter() - t0
        statuses = Counter(r.cache_status for r in responses)
        check(origin.calls[path] == 1, f"{origin.calls[path]} upstream requests, expected 1")
        check(s.stats.upstream == 1 and statuses == {"miss": 1, "coalesced": n - 1}, statuses)
    return Burst(wall, origin.calls[path], f"{statuses['miss']} miss, {statuses['coalesced']} coal")


async def burst_minimal(origin: Origin, n: int, tag: str) -> Burst:
    """The least a coalescer with aiohttp's call shape does (``_minimal.MinimalCoalescer``)."""
    path = f"/slow/minimal-{tag}"
    async with aiohttp.ClientSession() as session:
        m = MinimalCoalescer(session)
        t0 = time.perf_counter()
        await _gather_reads(m.get, origin.url(path), n)
        wall = time.perf_counter() - t0
    check(origin.calls[path] == 1 and m.fetches == 1, f"{origin.calls[path]} upstream requests")
    return Burst(wall, origin.calls[path])


async def burst_theirs(origin: Origin, n: int, tag: str) -> Burst:
    path = f"/slow/theirs-{tag}"
    async with CachedSession(
        cache=CacheBackend(expire_after=TTL), connector=aiohttp.TCPConnector(limit=0)
    ) as s:
        t0 = time.perf_counter()
        responses = await _gather_reads(s.get, origin.url(path), n)
        wall = time.perf_counter() - t0
    cached = sum(1 for r in responses if r.from_cache)
    return Burst(wall, origin.calls[path], f"{cached} from cache")


async def burst_plain(origin: Origin, n: int, tag: str) -> Burst:
    path = f"/slow/plain-{tag}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as s:
        t0 = time.perf_counter()
        await _gather_reads(s.get, origin.url(path), n)
        wall = time.perf_counter() - t0
    check(origin.calls[path] == n, origin.calls[path])
    return Burst(wall, origin.calls[path])


async def bursts(origin: Origin, n: int, repeats: int) -> dict[str, list[Burst]]:
    """Each contender ``repeats`` times, interleaved, each on a fresh URL and a fresh session."""
    steps: dict[str, Callable[[str], Awaitable[Burst]]] = {
        "floor": lambda tag: burst_floor(n),
        "minimal": lambda tag: burst_minimal(origin, n, tag),
        "ours": lambda tag: burst_ours(origin, n, tag),
        "theirs": lambda tag: burst_theirs(origin, n, tag),
        "plain": lambda tag: burst_plain(origin, n, tag),
    }
    runs: dict[str, list[Burst]] = {name: [] for name in steps}
    for i in range(repeats):
        for name, step in steps.items():
            gc.collect()
            await asyncio.sleep(0.05)  # let the origin finish closing the last burst's sockets
            runs[name].append(await step(str(i)))
    return runs


# -- 3. miss ---------------------------------------------------------------------------------------

MISS_SIZE = 100 * 1024


async def _fetch_each(get: Get, urls: list[str], kept: dict[str, bytes] | None = None) -> float:
    """Per-call ms of ``async with get(url) as r: await r.read()`` over ``urls``, in turn; with
    ``kept``, each body is kept there by its URL (what any cache must at least do)."""
    t0 = time.perf_counter()
    for url in urls:
        async with get(url) as r:
            body = await r.read()
            if kept is not None:
                kept[url] = body
        check(len(body) == MISS_SIZE)
    return (time.perf_counter() - t0) / len(urls) * 1e3


async def _minimal_misses(origin: Origin, urls: list[str]) -> float:
    """Per-call ms of ``_minimal.MinimalCache``'s misses over ``urls``, on a fresh session (its
    connection opened first, untimed, as ours is)."""
    warm = origin.url(f"/sized/warm/{MISS_SIZE}")
    async with aiohttp.ClientSession() as session:
        minimal = MinimalCache(session)
        await _fetch_each(minimal.get, [warm])
        gc.collect()
        took = await _fetch_each(minimal.get, urls)
    check(minimal.fetches == len(urls) + 1 and len(minimal.kept) == len(urls) + 1)
    return took


async def _their_misses(origin: Origin, urls: list[str]) -> float:
    """Per-call ms of aiohttp-client-cache's misses (its memory backend) over ``urls``, on a
    fresh session (its connection opened first, untimed, as ours is)."""
    async with CachedSession(cache=CacheBackend(expire_after=TTL)) as theirs:
        await _fetch_each(theirs.get, [origin.url(f"/sized/warm/{MISS_SIZE}")])
        gc.collect()
        took = await _fetch_each(theirs.get, urls)
        stored = [url async for url in theirs.cache.get_urls()]
    check(len(stored) == len(urls) + 1, f"aiohttp-client-cache stored {len(stored)} responses")
    return took


async def misses(origin: Origin, calls: int, rounds: int) -> dict[str, list[float]]:
    """Per-call ms of each round: our miss (a URL not stored yet, cacheable for an hour: fetched,
    stored, indexed), the minimal cache's, aiohttp-client-cache's, and a plain aiohttp GET of the
    same route (dropping or keeping each body), interleaved, all kept-alive."""
    times: dict[str, list[float]] = {
        "ours": [],
        "minimal": [],
        "theirs": [],
        "plain": [],
        "kept": [],
    }
    async with aiohttp.ClientSession() as plain:
        await _fetch_each(plain.get, [origin.url(f"/sized/warm/{MISS_SIZE}")])
        for i in range(rounds + 1):  # the first round warms up, untimed
            urls = {
                k: [origin.url(f"/sized/{k}-{i}-{n}/{MISS_SIZE}") for n in range(calls)]
                for k in times
            }
            async with CoalescingSession(ttl=TTL) as ours:
                await _fetch_each(ours.get, [origin.url(f"/sized/warm/{MISS_SIZE}")])
                gc.collect()
                took = await _fetch_each(ours.get, urls["ours"])
                check(ours.stats.misses == calls + 1 and ours.stats.stored == calls + 1, ours.stats)
            minimal_took = await _minimal_misses(origin, urls["minimal"])
            their_took = await _their_misses(origin, urls["theirs"])
            gc.collect()
            plain_took = await _fetch_each(plain.get, urls["plain"])
            gc.collect()
            kept_took = await _fetch_each(plain.get, urls["kept"], {})
            if i:
                times["ours"].append(took)
                times["minimal"].append(minimal_took)
                times["theirs"].append(their_took)
                times["plain"].append(plain_took)
                times["kept"].append(kept_took)
    return times


# -- profile --------------------------------------------------------------------------------------


async def profile_hot_hit(origin: Origin, hits: int, top: int = 25) -> str:
    """cProfile of our hot hit (sorted by own time); absolute times are inflated by the profiler."""
    url = origin.url("/fast/profile")
    async with CoalescingSession(ttl=TTL) as s:
        for _ in range(2):
            async with s.get(url) as r:
                await r.read()
        check(r.cache_status == "hit")
        return await profile_sequential(s.get, url, hits, top)


# -- report ---------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    quick = args.quick
    hits, plain_calls, rounds = (2_000, 200, 3) if quick else (20_000, 1_000, 7)
    n, repeats = (200, 3) if quick else (1_000, 5)
    n_miss = 100 if quick else 500

    print(
        f"{python_platform()}; aiohttp {aiohttp.__version__}, "
        f"aiohttp-client-cache {version('aiohttp-client-cache')}, "
        f"coalesce_client {version('coalesce_client')}; {loop_name(args.uvloop)}; "
        f"mode {'quick' if quick else 'full'}"
    )
    origin = Origin()
    await origin.start()
    try:
        print(
            f"\n1. hot memory hit, 2 KiB body: {rounds} rounds of {hits:,} sequential hits "
            f"(plain aiohttp: {plain_calls:,} real requests a round)"
        )
        times = await hot_hits(origin, hits, plain_calls, rounds)
        med = {k: statistics.median(v) for k, v in times.items()}
        labels = {
            "floor": "floor: a dict of prebuilt responses",
            "ours": "coalesce_client CoalescingSession",
            "mw": "coalesce_client client_middleware",
            "theirs": "aiohttp-client-cache (memory)",
            "plain": "plain aiohttp (real request)",
        }
        for key, label in labels.items():
            rounds_txt = " ".join(f"{t:.2f}" for t in times[key])
            print(f"   {label:<36} median {med[key]:8.2f} µs   rounds: {rounds_txt}")
        print(
            f"   coalesce_client per hit: {med['theirs'] / med['ours']:.1f}x faster than "
            f"aiohttp-client-cache, {med['plain'] / med['ours']:.1f}x faster than a real request; "
            "neither cache's origin counter moved during the timed rounds"
        )

        print(
            f"\n2. cold burst: {n:,} concurrent GETs of one fresh URL, origin answers after "
            f"{DELAY * 1000:.0f} ms; {repeats} repeats, fresh session and URL each"
        )
        runs = await bursts(origin, n, repeats)
        blabels = {
            "floor": "floor: shared future, 50 ms",
            "minimal": "minimal coalescer (aiohttp GET)",
            "ours": "coalesce_client CoalescingSession",
            "theirs": "aiohttp-client-cache (memory)",
            "plain": "plain aiohttp (limit=0)",
        }
        bmed = {k: statistics.median(b.wall for b in v) for k, v in runs.items()}
        for key, label in blabels.items():
            walls = " ".join(f"{b.wall * 1000:.1f}" for b in runs[key])
            ups = sorted({b.upstream for b in runs[key]})
            up_txt = "-" if key == "floor" else "/".join(str(u) for u in ups)
            note = runs[key][-1].note
            print(
                f"   {label:<36} median {bmed[key] * 1000:7.1f} ms  upstream {up_txt:>5}   "
                f"runs (ms): {walls}{'   ' + note if note else ''}"
            )

        print(
            f"\n3. miss, {MISS_SIZE // 1024} KiB body on loopback: {rounds} rounds of {n_miss} "
            "sequential GETs of URLs not stored yet (ours: fetched, stored, indexed; a fresh "
            "session each round), the minimal cache's, aiohttp-client-cache's and plain aiohttp "
            "GETs of the same route interleaved (dropping or keeping each body)"
        )
        mtimes = await misses(origin, n_miss, rounds)
        mmed = {k: statistics.median(v) for k, v in mtimes.items()}
        for key, label in (
            ("ours", "coalesce_client miss"),
            ("minimal", "minimal cache (aiohttp GET, a dict)"),
            ("theirs", "aiohttp-client-cache (memory)"),
            ("plain", "plain aiohttp GET"),
            ("kept", "plain aiohttp GET, bodies kept"),
        ):
            rounds_txt = " ".join(f"{t:.3f}" for t in mtimes[key])
            print(f"   {label:<36} median {mmed[key]:8.3f} ms   rounds: {rounds_txt}")
    finally:
        await origin.stop()

    floor = bmed["floor"]
    ups = {k: statistics.median(b.upstream for b in v) for k, v in runs.items()}
    print("\nSummary (medians)")
    print(f"   {'':<34}{'coalesce_client':>17}{'aiohttp-client-cache':>22}{'plain aiohttp':>15}")
    print(
        f"   {'hot hit, µs per call':<34}{med['ours']:>17.2f}{med['theirs']:>22.2f}"
        f"{med['plain']:>15.1f}"
    )
    print(
        f"   {'  times slower than ours':<34}{1.0:>16.1f}x{med['theirs'] / med['ours']:>21.1f}x"
        f"{med['plain'] / med['ours']:>14.1f}x"
    )
    print(
        f"   {f'burst of {n:,}, ms wall':<34}{bmed['ours'] * 1000:>17.1f}"
        f"{bmed['theirs'] * 1000:>22.1f}{bmed['plain'] * 1000:>15.1f}"
    )
    print(
        f"   {'  / floor (' + f'{floor * 1000:.1f} ms)':<34}{bmed['ours'] / floor:>16.2f}x"
        f"{bmed['theirs'] / floor:>21.2f}x{bmed['plain'] / floor:>14.2f}x"
    )
    print(
        f"   {'  minimal coalescer, ms wall':<34}{bmed['minimal'] * 1000:>17.1f}"
        f"   ({bmed['minimal'] / floor:.2f}x the floor; ours {bmed['ours'] / bmed['minimal']:.2f}x"
        " the minimal coalescer)"
    )
    print(
        f"   {'  upstream requests':<34}{ups['ours']:>17.0f}{ups['theirs']:>22.0f}"
        f"{ups['plain']:>15.0f}"
    )
    print(
        f"   {'client_middleware hit, µs per call':<34}{med['mw']:>17.2f}"
        f"   ({med['mw'] / med['ours']:.2f}x CoalescingSession's)"
    )
    over = mmed["ours"] - mmed["plain"]
    print(
        f"   {'miss of 100 KiB, ms':<34}{mmed['ours']:>17.3f}{mmed['theirs']:>22.3f}"
        f"{mmed['plain']:>15.3f}"
        f"   (+{over:.3f} ms over plain)"
    )
    print(
        f"   {'  plain, each body kept in a dict':<34}{'':>17}{'':>22}{mmed['kept']:>15.3f}"
        f"   (ours +{mmed['ours'] - mmed['kept']:.3f} ms over it)"
    )
    print(
        f"   {'  minimal cache (a dict by URL)':<34}{mmed['minimal']:>17.3f}"
        f"   ({mmed['minimal'] - mmed['plain']:+.3f} ms over plain; ours "
        f"{mmed['ours'] - mmed['minimal']:+.3f} ms over it)"
    )
    hit_floor = med["ours"] / med["floor"]
    print(
        f"   {'hot hit floor, µs per call':<34}{med['floor']:>17.2f}"
        f"   (ours is {hit_floor:.2f}x the floor)"
    )
    print("Targets (issue 20's; the minimal contenders show what any library of our shape pays)")
    print(f"   hot hit <= 10 µs: {med['ours']:.2f} µs, {met(med['ours'] <= 10)}")
    print(f"   hot hit <= 2x the floor: {hit_floor:.2f}x, {met(hit_floor <= 2)}")
    print(
        f"   burst <= 1.1x the floor: {bmed['ours'] / floor:.2f}x, "
        f"{met(bmed['ours'] / floor <= 1.1)} (the minimal coalescer "
        f"{bmed['minimal'] / floor:.2f}x)"
    )
    print(
        f"   miss <= plain aiohttp + 0.05 ms: +{over:.3f} ms, {met(over <= 0.05)} (the minimal "
        f"cache +{mmed['minimal'] - mmed['plain']:.3f} ms)"
    )
    ratio = med["theirs"] / med["ours"]
    print(f"   >= 10x faster than aiohttp-client-cache memory: {ratio:.1f}x, {met(ratio >= 10)}")
    mw_ratio = med["mw"] / med["ours"]
    print(
        f"   client_middleware hit <= 2x the session's (issue 21's): {mw_ratio:.2f}x, "
        f"{met(mw_ratio <= 2)} (a real ClientResponse through aiohttp's middleware chain)"
    )

    if args.profile:
        origin = Origin()
        await origin.start()
        try:
            print(f"\ncProfile of {hits:,} hot hits of CoalescingSession (sorted by own time):")
            print(await profile_hot_hit(origin, hits))
        finally:
            await origin.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, a few seconds")
    parser.add_argument("--profile", action="store_true", help="cProfile our hot hit too")
    add_loop_option(parser)
    args = parser.parse_args()
    run_on_loop(run(args), args.uvloop)


if __name__ == "__main__":
    main()
