"""The fleet's flight (coalesce_client/core/fleet.py, issue 14): one upstream call per key for every
process sharing one RedisStorage, against a real redis-server and a real origin on 127.0.0.1.

The fleets are real processes (``fleet_child.py``) where the issue asks for processes (the burst,
the lease holder killed, the middleware workers, the 503); the others are several sessions in this
process, each on a RedisStorage of its own (its own connections): to Redis they are as many
processes. Every wait is on an event the processes report (``ready``: the leader is sending or
watching), never on time; the lease tests use a short ``lease_ttl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
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
from conftest import FakeClock, Origin, RedisServer, RedisTarget, finished, signalled

from coalesce_client import CoalescingSession, MemoryStorage, RedisStorage, TieredStorage
from coalesce_client.core.fleet import leases_of
from coalesce_client.storage.base import Fronts, Storage
from coalesce_client.storage.redis import RedisUnavailableError

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
            # The child may have ended and been reaped by the child watcher before asyncio has
            # set its returncode (Python 3.10's threaded watcher): nothing left to kill then.
            with contextlib.suppress(ProcessLookupError):
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


async def stored_keys(target: RedisTarget, namespace: str) -> list[bytes]:
    kind = aioredis.RedisCluster if target.cluster else aioredis.Redis
    client = kind.from_url(target.url)
    try:
        return [k async for k in client.scan_iter(match=f"{namespace}:v:*")]
    finally:
        await client.aclose()


# -- processes ------------------------------------------------------------------------------------


class Proxy:
    """A user's own storage in front of another one (not a TieredStorage): it names its back."""

    def __init__(self, back: Storage) -> None:
        self._back = back

    @property
    def back(self) -> Storage:
        return self._back


async def test_the_fleet_finds_its_leases_behind_any_storage_that_fronts_another() -> None:
    # Issue 18: the core found them behind a TieredStorage only, by importing the class.
    shared = RedisStorage("redis://127.0.0.1:1/0")  # nothing is connected until the first call
    tiered = TieredStorage(MemoryStorage(), shared)
    try:
        assert isinstance(tiered, Fronts) and isinstance(Proxy(shared), Fronts)
        assert leases_of(shared) is shared
        assert leases_of(tiered) is shared
        assert leases_of(Proxy(tiered)) is shared  # type: ignore[arg-type]
        assert leases_of(MemoryStorage()) is None
        assert leases_of(Proxy(MemoryStorage())) is None  # type: ignore[arg-type]
    finally:
        await tiered.close()


async def test_8_processes_of_100_callers_make_exactly_one_upstream_call(
    redis_target: RedisTarget, gated: Origin, spawn: Any, namespace: str
) -> None:
    options = {
        "redis": redis_target.url,
        "cluster": redis_target.cluster,
        "namespace": namespace,
        "url": gated.url("/text"),
    }
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
    redis_target: RedisTarget, gated: Origin, spawn: Any, namespace: str
) -> None:
    options = {
        "redis": redis_target.url,
        "cluster": redis_target.cluster,
        "namespace": namespace,
        "url": gated.url("/text"),
    }
    holder = await spawn("session", callers=10, lease_ttl=0.6, **options)
    assert await holder.line("the first process sending") == "ready"
    await gated.at_gate.reach(1, "the holder's request at the origin")
    waiters = [await spawn("session", callers=10, lease_ttl=0.6, **options) for _ in range(2)]
    for child in waiters:
        assert await child.line("a process watching the holder's lease") == "ready"
    holder.kill()  # SIGKILL mid-request: no release, no publication
    killed = time.monotonic()
    await gated.at_gate.reach(2, "one waiter taking the lease over once it expired")
    # Not before the dead holder's lease ran out (renewed every 0.2 s, it had 0.4 s to 0.6 s left).
    assert time.monotonic() - killed > 0.35
    gated.gate.set()
    results = [await child.result() for child in waiters]
    assert gated.total == 2  # the dead holder's, and the one takeover
    statuses = sum((Counter(r["statuses"]) for r in results), Counter())
    assert statuses["miss"] == 1 and statuses["coalesced"] + statuses["hit"] == 19
    assert {body for r in results for body in r["bodies"]} == {"hello /text #2"}


async def test_a_503_across_4_processes_is_at_most_one_call_per_process_and_not_stored(
    redis_target: RedisTarget, origin: Origin, spawn: Any, namespace: str
) -> None:
    async def unavailable(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(status=503, text="busy")

    origin.route("/busy", unavailable)
    origin.gate.clear()
    await origin.start()
    options = {
        "redis": redis_target.url,
        "cluster": redis_target.cluster,
        "namespace": namespace,
        "url": origin.url("/busy"),
    }
    children = [await spawn("session", callers=50, **options) for _ in range(4)]
    for child in children:
        assert await child.line("a process's leader sending or watching") == "ready"
    origin.gate.set()
    results = [await child.result() for child in children]
    assert 1 <= origin.total <= 4
    assert all(r["upstream"] <= 1 for r in results)
    assert all(r["codes"] == {"503": 50} for r in results)
    assert await stored_keys(redis_target, namespace) == []


async def test_4_middleware_workers_run_the_handler_once_for_a_burst_spread_across_them(
    redis_target: RedisTarget, gated: Origin, spawn: Any, namespace: str
) -> None:
    options = {
        "redis": redis_target.url,
        "cluster": redis_target.cluster,
        "namespace": namespace,
        "origin": gated.url("/text"),
    }
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


def on(target: RedisTarget, storage: type[RedisStorage] = RedisStorage, **options: Any) -> Any:
    """A process's storage on ``target`` (one Redis or a cluster)."""
    return storage(target.url, **target.storage_options(), **options)


def shared(redis_target: RedisTarget, namespace: str, **options: Any) -> CoalescingSession:
    return CoalescingSession(
        ttl=60,
        storage=on(redis_target, namespace=namespace, **options),
        connector=aiohttp.TCPConnector(limit=0),
    )


class Watched(RedisStorage):
    """A process's storage that says when its leader starts waiting for another process."""

    __slots__ = ("watching",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.watching = asyncio.Event()

    async def watch(self, key: str) -> asyncio.Future[bytes]:
        waiter = await super().watch(key)
        self.watching.set()
        return waiter


class Deaf(Watched):
    """A process whose subscriber hears nothing: every publication to it is lost."""

    __slots__ = ()

    def _heard(self, key: str, data: bytes) -> None:
        pass


class Releasing(RedisStorage):
    """A process's storage that says when its lease is released, as the release's last step."""

    __slots__ = ("released",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.released = asyncio.Event()

    async def release(self, key: str, token: str, outcome: bytes) -> bool:
        mine = await super().release(key, token, outcome)
        self.released.set()  # the test wakes before the release's task is done
        return mine


@pytest.mark.timeout(10)
async def test_closing_as_the_lease_is_released_does_not_spin(
    redis_target: RedisTarget, started: Origin, namespace: str
) -> None:
    """Issue 26: on Python 3.12+ gather() of done futures returns without yielding, so a drain
    that waited for the done callbacks to empty its set spun forever (the two hangs below)."""
    storage = on(redis_target, Releasing, namespace=namespace)
    session = CoalescingSession(ttl=60, storage=storage)
    assert (await session.get(started.url("/text"))).cache_status == "miss"
    await signalled(storage.released, "the lease released in the background")
    await session.close()  # at once: the release's done callbacks have not run yet
    assert storage.closed


async def test_a_lost_publication_still_ends_within_half_a_lease(
    redis_target: RedisTarget, gated: Origin, namespace: str
) -> None:
    # A lease long enough that a loaded machine (or a cluster's slower round trips) renews it in
    # time: a holder whose renewal came late would be taken over, and this test is not about that.
    deaf = on(redis_target, Deaf, namespace=namespace, lease_ttl=1.0)
    async with (
        shared(redis_target, namespace, lease_ttl=1.0) as holder,
        CoalescingSession(ttl=60, storage=deaf) as waiter,
    ):
        first = asyncio.ensure_future(holder.get(gated.url("/text")))
        await gated.at_gate.reach(1, "the holder's request at the origin")
        second = asyncio.ensure_future(waiter.get(gated.url("/text")))
        await signalled(deaf.watching, "the other process watching the holder's lease")
        gated.gate.set()
        assert (await finished(first, "the holder's answer")).cache_status == "miss"
        loop = asyncio.get_running_loop()
        published = loop.time()
        late = await finished(second, "an answer though the publication was lost")
        assert loop.time() - published <= 1.0  # its re-check, every lease_ttl / 2 (0.5 s)
        assert late.cache_status == "coalesced" and await late.text() == "hello /text #1"
    assert gated.total == 1


async def test_a_wait_on_another_process_is_bounded_by_wait_timeout(
    redis_target: RedisTarget, gated: Origin, namespace: str
) -> None:
    storage = on(redis_target, Deaf, namespace=namespace)
    async with (
        shared(redis_target, namespace) as holder,
        CoalescingSession(ttl=60, storage=storage, wait_timeout=0.3) as impatient,
    ):
        first = asyncio.ensure_future(holder.get(gated.url("/text")))
        await gated.at_gate.reach(1, "the holder's request at the origin")
        second = asyncio.ensure_future(impatient.get(gated.url("/text")))
        await signalled(storage.watching, "the other process watching the holder's lease")
        await gated.at_gate.reach(2, "the impatient process's own request, past wait_timeout")
        gated.gate.set()
        own = await finished(second, "the impatient process's answer")
        await finished(first, "the holder's answer")
        assert own.cache_status == "miss" and await own.text() == "hello /text #2"
    assert impatient.stats.stored == 0 and holder.stats.stored == 1  # closed: writes drained


async def test_redis_stopped_mid_run_answers_every_request_then_resumes_after_a_restart(
    own_redis: RedisServer,
    started: Origin,
    namespace: str,
    loop_clock: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = RedisStorage(own_redis.url, namespace=namespace)
    async with CoalescingSession(ttl=60, storage=storage) as s:
        first = await s.get(started.url("/text?before"))
        await s._core.drain()  # its write runs in the background (issue 19)
        assert first.cache_status == "miss" and s.stats.stored == 1
        own_redis.stop()
        with caplog.at_level(logging.WARNING, logger="coalesce_client"):
            burst = await finished(
                asyncio.gather(*(s.get(started.url("/text?down")) for _ in range(20))),
                "every request answered while Redis is down",
            )
            again = await s.get(started.url("/text?before"))  # stored, but out of reach
        assert [r.status for r in burst] == [200] * 20
        assert Counter(r.cache_status for r in burst) == {"miss": 1, "coalesced": 19}
        assert again.cache_status == "miss" and started.total == 3
        down = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(down) == 1  # logged once for the outage
        with pytest.raises(RedisUnavailableError):  # resting: no attempt until the backoff ends
            await storage.get("0" * 64)
        own_redis.start()
        loop_clock.advance(0.5)  # the first backoff
        after = await s.get(started.url("/text?after"))
        assert after.cache_status == "miss"
        hit = await s.get(started.url("/text?after"))  # from Redis again
        assert hit.cache_status == "hit" and started.total == 4
    assert s.stats.stored == 2


async def test_a_refresh_in_one_process_is_not_answered_by_what_another_stored_before(
    redis_target: RedisTarget, started: Origin, namespace: str
) -> None:
    async with shared(redis_target, namespace) as one, shared(redis_target, namespace) as two:
        first = await one.get(started.url("/text"))
        assert first.cache_status == "miss" and await first.text() == "hello /text #1"
        fresh = await two.get(started.url("/text"), refresh=True)
        assert fresh.cache_status == "miss" and await fresh.text() == "hello /text #2"
        later = await one.get(started.url("/text"))  # the refreshed response, from Redis
        assert later.cache_status == "hit" and await later.text() == "hello /text #2"


async def test_a_stale_entry_is_revalidated_by_one_process_and_renewed_for_all(
    redis_target: RedisTarget, origin: Origin, namespace: str, clock: FakeClock
) -> None:
    async def tagged(request: web.Request) -> web.Response:
        # Dated by the test's clock: aiohttp's own Date would make it look years old.
        date = email.utils.formatdate(clock(), usegmt=True)
        headers = {"ETag": '"v1"', "Cache-Control": "max-age=10", "Date": date}
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers=headers)
        return web.Response(text="tagged body", headers=headers)

    origin.route("/tagged", tagged)
    await origin.start()

    def session() -> CoalescingSession:
        storage = on(redis_target, namespace=namespace, clock=clock)
        return CoalescingSession(ttl=60, storage=storage, clock=clock)

    async with session() as one, session() as two:
        first = await one.get(origin.url("/tagged"))
        assert first.cache_status == "miss"
        clock.advance(11)  # stale, kept for revalidation (it has a validator)
        renewed = await two.get(origin.url("/tagged"))  # the fleet's flight, with its prior
        assert renewed.cache_status == "revalidated" and await renewed.text() == "tagged body"
        again = await one.get(origin.url("/tagged"))  # renewed in Redis for every process
        assert again.cache_status == "hit"
    statuses = [r.headers.get("If-None-Match") for r in origin.requests]
    assert statuses == [None, '"v1"']  # one full response, one conditional request


async def test_stale_while_revalidate_refreshes_once_for_the_fleet(
    redis_target: RedisTarget, origin: Origin, namespace: str, clock: FakeClock
) -> None:
    async def swr(request: web.Request) -> web.Response:
        n = origin.calls[request.path]
        await origin.wait()
        date = email.utils.formatdate(clock(), usegmt=True)
        cache_control = "max-age=1, stale-while-revalidate=60"
        return web.Response(text=f"v{n}", headers={"Cache-Control": cache_control, "Date": date})

    origin.route("/swr", swr)
    await origin.start()
    watcher = on(redis_target, Watched, namespace=namespace, clock=clock)

    def process(storage: RedisStorage | None = None) -> CoalescingSession:
        storage = storage or on(redis_target, namespace=namespace, clock=clock)
        return CoalescingSession(ttl=60, storage=storage, clock=clock)

    async with process() as one, process() as two, process(watcher) as three:
        try:
            assert await (await one.get(origin.url("/swr"))).text() == "v1"
            clock.advance(2)  # stale, within its stale-while-revalidate window
            origin.gate.clear()
            stale = await two.get(origin.url("/swr"))  # answered at once; its refresh holds
            assert stale.cache_status == "stale" and await stale.text() == "v1"
            await origin.at_gate.reach(1, "one background refresh at the origin")
            also = await three.get(origin.url("/swr"))
            assert also.cache_status == "stale"
            await signalled(watcher.watching, "the other process's refresh waiting for the holder")
            origin.gate.set()
            await two.close()
            await three.close()  # its refresh ended with the holder's publication
            fresh = await one.get(origin.url("/swr"))
            assert fresh.cache_status == "hit" and await fresh.text() == "v2"
        finally:
            origin.gate.set()  # a failing test leaves no refresh waiting at the origin
    assert origin.total == 2  # the first response and one refresh for the fleet
