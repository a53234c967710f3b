"""The fleet's flight (coalesce_client/fleet.py, issue 14): one upstream call per key for every
process sharing one RedisStorage, against a real redis-server and a real origin on 127.0.0.1.

The fleets are real processes (``fleet_child.py``) where the issue asks for processes (the burst,
the lease holder killed, the middleware workers, the 503); the others are several sessions in this
process, each on a RedisStorage of its own (its own connections): to Redis they are as many
processes. Every wait is on an event the processes report (``ready``: the leader is sending or
watching), never on time; the lease tests use a short ``lease_ttl``.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from conftest import Origin, RedisServer

from coalesce_client import CoalescingSession, RedisStorage

CHILD = Path(__file__).parent / "fleet_child.py"
START = 30.0  # seconds a child process may take to start (8 at once on 2 busy cores)


class Child:
    """One process of the fleet, and the lines it prints."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    async def line(self, what: str, timeout: float = START) -> str:
        assert self.proc.stdout is not None
        try:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(f"not within {timeout} s: {what}") from None
        if not raw:
            err = b"" if self.proc.stderr is None else await self.proc.stderr.read()
            raise AssertionError(f"{what}: the child ended\n{err.decode()}")
        return raw.decode().strip()

    async def result(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(await self.line("the child's answers"))
        return result

    def kill(self) -> None:
        if self.proc.returncode is None:
            os.kill(self.proc.pid, signal.SIGKILL)


@pytest.fixture
async def spawn() -> AsyncIterator[Any]:
    children: list[Child] = []

    async def start(mode: str, **options: Any) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(CHILD),
            mode,
            json.dumps(options),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        child = Child(proc)
        children.append(child)
        return child

    yield start
    for child in children:
        child.kill()
        await child.proc.wait()


@pytest.fixture
async def gated(origin: Origin) -> Origin:
    """The origin with its gate closed: every request waits until the test opens it."""
    origin.gate.clear()
    await origin.start()
    return origin


async def stored_keys(server: RedisServer, namespace: str) -> list[bytes]:
    client = aioredis.Redis.from_url(server.url)
    try:
        return [k async for k in client.scan_iter(match=f"{namespace}:v:*")]
    finally:
        await client.aclose()


# -- processes ------------------------------------------------------------------------------------


async def test_8_processes_of_100_callers_make_exactly_one_upstream_call(
    redis_server: RedisServer, gated: Origin, spawn: Any, namespace: str
) -> None:
    options = {"redis": redis_server.url, "namespace": namespace, "url": gated.url("/text")}
    children = [await spawn("session", callers=100, **options) for _ in range(8)]
    for child in children:  # each leader is sending (it holds the lease) or watching
        assert await child.line("a process's leader sending or watching") == "ready"
    assert gated.at_gate.count == 1, "more than one process sent the request"
    gated.gate.set()
    results = [await child.result() for child in children]
    assert gated.total == 1
    statuses = sum((Counter(r["statuses"]) for r in results), Counter())
    assert statuses["miss"] == 1  # exactly one caller fleet-wide
    assert statuses["coalesced"] + statuses["hit"] == 799
    assert {body for r in results for body in r["bodies"]} == {"hello /text #1"}
    assert sum(r["upstream"] for r in results) == 1


async def test_a_killed_lease_holder_is_taken_over_by_one_process(
    redis_server: RedisServer, gated: Origin, spawn: Any, namespace: str
) -> None:
    options = {"redis": redis_server.url, "namespace": namespace, "url": gated.url("/text")}
    holder = await spawn("session", callers=10, lease_ttl=0.6, **options)
    assert await holder.line("the first process sending") == "ready"
    await gated.at_gate.reach(1, "the holder's request at the origin")
    waiters = [await spawn("session", callers=10, lease_ttl=0.6, **options) for _ in range(2)]
    for child in waiters:
        assert await child.line("a process watching the holder's lease") == "ready"
    holder.kill()  # SIGKILL mid-request: no release, no publication
    killed = time.monotonic()
    await gated.at_gate.reach(2, "one waiter taking the lease over once it expired")
    assert time.monotonic() - killed < 0.6 * 1.5 + 0.5  # lease_ttl, then at most one re-check
    gated.gate.set()
    results = [await child.result() for child in waiters]
    assert gated.total == 2  # the dead holder's, and the one takeover
    statuses = sum((Counter(r["statuses"]) for r in results), Counter())
    assert statuses["miss"] == 1 and statuses["coalesced"] + statuses["hit"] == 19
    assert {body for r in results for body in r["bodies"]} == {"hello /text #2"}


async def test_a_503_across_4_processes_is_at_most_one_call_per_process_and_not_stored(
    redis_server: RedisServer, origin: Origin, spawn: Any, namespace: str
) -> None:
    async def unavailable(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(status=503, text="busy")

    origin.route("/busy", unavailable)
    origin.gate.clear()
    await origin.start()
    options = {"redis": redis_server.url, "namespace": namespace, "url": origin.url("/busy")}
    children = [await spawn("session", callers=50, **options) for _ in range(4)]
    for child in children:
        assert await child.line("a process's leader sending or watching") == "ready"
    origin.gate.set()
    results = [await child.result() for child in children]
    assert 1 <= origin.total <= 4
    assert all(r["upstream"] <= 1 for r in results)
    assert all(r["codes"] == {"503": 50} for r in results)
    assert await stored_keys(redis_server, namespace) == []


async def test_4_middleware_workers_run_the_handler_once_for_a_burst_spread_across_them(
    redis_server: RedisServer, gated: Origin, spawn: Any, namespace: str
) -> None:
    options = {"redis": redis_server.url, "namespace": namespace, "origin": gated.url("/text")}
    workers = [await spawn("server", **options) for _ in range(4)]
    ports = [int((await w.line("a worker listening")).split()[1]) for w in workers]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:

        async def one(port: int) -> tuple[str, str]:
            # One Host, as behind a load balancer: the key is the same in every worker.
            url = f"http://127.0.0.1:{port}/report"
            async with client.get(url, headers={"Host": "fleet.example"}) as resp:
                assert resp.status == 200
                return resp.headers["X-Cache"], await resp.text()

        burst = [asyncio.ensure_future(one(ports[i % 4])) for i in range(200)]
        await gated.at_gate.reach(1, "one worker's handler asking the origin")
        # Every worker but the holder says it waits for the holder's outcome.
        reads = [asyncio.ensure_future(w.line("a worker watching")) for w in workers]
        watching = 0
        pending = set(reads)
        while watching < 3 and pending:
            done, pending = await asyncio.wait(
                pending, timeout=START, return_when=asyncio.FIRST_COMPLETED
            )
            assert done, f"not within {START} s: {watching} of 3 workers watching"
            watching += sum(1 for d in done if d.result() == "watching")
        for read in pending:
            read.cancel()
        assert watching == 3 and gated.at_gate.count == 1
        gated.gate.set()
        answers = await asyncio.gather(*burst)
    assert gated.total == 1  # the handler ran once across the 4 workers
    assert Counter(a[0] for a in answers)["MISS"] == 1
    assert {a[1] for a in answers} == {"hello /text #1"}


# -- sessions of this process, each on its own connections ----------------------------------------


def shared(redis_server: RedisServer, namespace: str, **options: Any) -> CoalescingSession:
    return CoalescingSession(
        ttl=60,
        storage=RedisStorage(redis_server.url, namespace=namespace, **options),
        connector=aiohttp.TCPConnector(limit=0),
    )
