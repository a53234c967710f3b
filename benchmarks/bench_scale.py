"""The fleet at scale (issue 23): Redis commands and event messages per burst and per process.

    python benchmarks/bench_scale.py                 # 2, 4, 8, 16 processes x 1, 100, 1,000 keys
    python benchmarks/bench_scale.py --quick         # 2 and 4 processes, 1 and 100 keys
    python benchmarks/bench_scale.py --cluster       # the same on a 3-primary Redis Cluster

Needs ``redis-server`` (and ``redis-cli`` for ``--cluster``) on PATH; starts its own on 127.0.0.1
in a temporary directory, and its own ``aiohttp.web`` origin (each answer after 200 ms, so that
the processes that do not hold a key's lease wait on it).

A burst: every process sends ``CALLERS`` concurrent GETs of each of K fresh URLs at once (K keys
in flight). What is counted, per burst: the Redis commands the server ran (``INFO commandstats``
deltas, summed over every primary of a cluster, after the fleet's background releases), by
command; the event messages each process received (its storage's ``_heard``); upstream calls (the
target: one per key). Figures are counts, not times: they do not depend on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from coalesce_client import CoalescingSession, RedisStorage

CALLERS = 1  # callers per key per process (more coalesce in the process: the same commands)
SLOW = 0.2  # seconds the origin takes to answer


class Counting(RedisStorage):
    """Counts the event messages that reach this process."""

    __slots__ = ("heard",)

    def _heard(self, key: str, data: bytes) -> None:
        self.heard += 1
        super()._heard(key, data)


async def child(url: str, namespace: str, cluster: bool) -> None:
    """One process: for each ``K base`` line on stdin, CALLERS GETs of each of K URLs at once."""
    storage = Counting(url, namespace=namespace, cluster=cluster, socket_timeout=5.0)
    storage.heard = 0
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    connector = aiohttp.TCPConnector(limit=0)
    async with CoalescingSession(ttl=60, storage=storage, connector=connector) as s:

        async def one(target: str) -> str:
            async with s.get(target) as resp:
                await resp.read()
                return resp.cache_status

        print("ready", flush=True)
        while line := (await reader.readline()).decode().strip():
            keys, base = line.split()
            heard, upstream = storage.heard, s.stats.upstream
            calls = [one(f"{base}/{k}") for k in range(int(keys)) for _ in range(CALLERS)]
            statuses = Counter(await asyncio.gather(*calls))
            report = {"heard": storage.heard - heard, "upstream": s.stats.upstream - upstream}
            print(json.dumps({**report, "statuses": statuses}), flush=True)


# -- Redis: one server, or a cluster --------------------------------------------------------------


class Servers:
    """The redis-servers of the run, and their INFO commandstats."""

    def __init__(self, directory: Path, cluster: bool) -> None:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from conftest import RedisServer  # the tests' rigs: one way to start them
        from redis_rigs import Cluster

        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("needs a redis-server on PATH")
        self.cluster = Cluster(binary, directory) if cluster else None
        self.nodes = self.cluster.nodes if self.cluster else [RedisServer(binary, directory)]

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> None:
        if self.cluster:
            self.cluster.start()
        else:
            self.nodes[0].start()

    def stop(self) -> None:
        if self.cluster:
            self.cluster.stop()
        else:
            self.nodes[0].stop()

    async def commands(self) -> Counter[str]:
        """Commands run so far, summed over every node (replicas' replication excluded)."""
        import redis.asyncio as aioredis

        total: Counter[str] = Counter()
        for node in self.nodes:
            client = aioredis.Redis(port=node.port)
            try:
                if (await client.info("replication"))["role"] != "master":
                    continue
                for name, stat in (await client.info("commandstats")).items():
                    total[name.removeprefix("cmdstat_")] += int(stat["calls"])
            finally:
                await client.aclose()
        for noise in ("info", "replconf", "cluster|nodes", "cluster|slots", "command|docs"):
            total.pop(noise, None)  # the benchmark's own, and replication's
        return total


# -- the run --------------------------------------------------------------------------------------


async def origin() -> tuple[web.AppRunner, str, Counter[str]]:
    calls: Counter[str] = Counter()

    async def slow(request: web.Request) -> web.Response:
        calls[request.path] += 1
        await asyncio.sleep(SLOW)
        return web.Response(text=request.path)

    app = web.Application()
    app.router.add_get("/{burst}/{key}", slow)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=4096).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}", calls


async def fleet(n: int, servers: Servers) -> list[asyncio.subprocess.Process]:
    namespace = f"scale-{uuid.uuid4().hex[:8]}"
    args = (__file__, "--child", servers.url, namespace, "1" if servers.cluster else "0")
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, *args, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        for _ in range(n)
    ]
    for proc in procs:
        assert proc.stdout is not None
        assert (await asyncio.wait_for(proc.stdout.readline(), 120)).strip() == b"ready"
    return procs


async def burst(
    procs: list[asyncio.subprocess.Process], keys: int, base: str
) -> list[dict[str, Any]]:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"{keys} {base}\n".encode())
        await proc.stdin.drain()
    results = []
    for proc in procs:
        assert proc.stdout is not None
        results.append(json.loads(await asyncio.wait_for(proc.stdout.readline(), 300)))
    return results


async def run(args: argparse.Namespace, servers: Servers) -> None:
    runner, base, calls = await origin()
    processes = (2, 4) if args.quick else args.processes
    key_counts = (1, 100) if args.quick else args.keys
    where = "a 3-primary Redis Cluster" if servers.cluster else "one Redis"
    print(f"Fleet bursts on {where}: {CALLERS} callers per key per process, origin {SLOW} s")
    print(
        f"{'procs':>5} {'keys':>5} {'upstream':>8} {'cmds/burst':>10} {'cmds/proc/key':>13} "
        f"{'events/proc':>11} {'events/proc max':>15}  commands per key (fleet)"
    )
    try:
        for n in processes:
            procs = await fleet(n, servers)
            try:
                await burst(procs, 1, f"{base}/warm-{n}")
                for keys in key_counts:
                    name = f"b{n}-{keys}-{uuid.uuid4().hex[:6]}"
                    before = await servers.commands()
                    started = time.perf_counter()
                    results = await burst(procs, keys, f"{base}/{name}")
                    await asyncio.sleep(0.5)  # the holders' releases, sent in the background
                    spent = time.perf_counter() - started - 0.5
                    used = await servers.commands() - before
                    total = sum(used.values())
                    upstream = sum(c for path, c in calls.items() if path.startswith(f"/{name}/"))
                    heard = [r["heard"] for r in results]
                    mix = ", ".join(f"{c} {v / keys:.2f}" for c, v in used.most_common(7))
                    print(
                        f"{n:>5} {keys:>5} {upstream:>8} {total:>10} {total / n / keys:>13.2f} "
                        f"{sum(heard) / n:>11.1f} {max(heard):>15}  {mix}  ({spent:.1f} s)"
                    )
            finally:
                for proc in procs:
                    assert proc.stdin is not None
                    proc.stdin.close()
                    await proc.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        url, namespace, cluster = sys.argv[2:5]
        asyncio.run(child(url, namespace, cluster == "1"))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 and 4 processes, 1 and 100 keys")
    parser.add_argument("--cluster", action="store_true", help="on a 3-primary Redis Cluster")
    parser.add_argument("--processes", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--keys", type=int, nargs="+", default=[1, 100, 1000])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        servers = Servers(Path(tmp), args.cluster)
        servers.start()
        try:
            asyncio.run(run(args, servers))
        finally:
            servers.stop()


if __name__ == "__main__":
    main()
