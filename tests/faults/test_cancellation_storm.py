"""Fault case: a storm of calls through each face with random cancels, wait timeouts, 500s,
connection resets and truncated bodies, over entries that expire, are revalidated (ETag, 304) and
served stale (stale-while-revalidate, stale-if-error) while it goes on.

Modes (every case under tests/faults/ has both):
    python -m pytest tests/faults/test_cancellation_storm.py -s   # QUICK: 1,500 calls a face
    COALESCE_FAULTS=full python -m pytest tests/faults/...storm.py -s   # FULL: 30,000 calls a face

Each run is seeded and bounded in count and time: QUICK uses a fixed seed, FULL a random one;
COALESCE_FAULTS_SEED=N replays a run (the seed is printed). After every storm:
* no key is left in flight (a stuck key would serialize that URL for good);
* no caller got a wrong or short body: every 200 has exactly its key's body;
* the event loop reported nothing ("exception was never retrieved", "destroyed but pending");
* the stats invariant holds: every call counted once in ``requests`` and once in exactly one
  outcome, and ``upstream`` matches what the origin saw: more by aiohttp's own retries of a GET
  whose connection was reset before any answer (at most one per reset), less by requests whose
  caller gave up before they reached the origin (at most one per cancel or timeout).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from typing import Any, NamedTuple

import aiohttp
from aiohttp import web
from conftest import Origin, finished

from coalesce_client import CachePolicy, CoalescingSession, coalesce_middleware

FULL = os.environ.get("COALESCE_FAULTS") == "full"
SEED = os.environ.get("COALESCE_FAULTS_SEED")
CALLS = 30_000 if FULL else 1_500
KEYS = 12
BATCH = 150  # calls in flight together
LIMIT = 600 if FULL else 60  # seconds a storm may take before the case fails (bounded in time)


def body_of(key: int) -> bytes:
    return (f"body of key {key};" * (20 + key)).encode()


def outcomes(stats: Any) -> int:
    return int(
        stats.hits
        + stats.misses
        + stats.coalesced
        + stats.stale
        + stats.revalidated
        + stats.bypassed
    )


class Faults:
    """What the origin does to each request: answer, fail, reset or truncate, after some turns."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seen: Counter[str] = Counter()
        self.resets = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = int(request.match_info["key"])
        self.seen[request.method] += 1
        etag = f'"key-{key}"'  # one representation per key: a 304 always selects it
        for _ in range(self.rng.randrange(4)):
            await asyncio.sleep(0)
        roll = self.rng.random()
        if roll < 0.05:
            return web.Response(status=500, text="origin trouble")
        if roll < 0.08:
            if request.transport is not None:  # None: the client went away already
                self.resets += 1
                request.transport.abort()  # a reset before any answer
            return web.Response(status=499)
        body = body_of(key)
        # Short lifetimes with windows: entries expire, are served stale and revalidated during
        # the storm (the real clock; the session's ttl is 50 ms).
        cc = "max-age=0, stale-while-revalidate=1, stale-if-error=1" if roll < 0.5 else ""
        if roll > 0.3 and request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag, "Cache-Control": cc})
        if roll < 0.11:
            resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
            resp.content_length = len(body)
            await resp.prepare(request)
            await resp.write(body[: len(body) // 2])
            if request.transport is not None:
                request.transport.abort()  # a truncated body
            return resp
        headers = {"ETag": etag} if roll > 0.15 else {}
        if cc:
            headers["Cache-Control"] = cc
        return web.Response(body=body, headers=headers)


class LoopReports:
    """Everything the event loop's exception handler was told during the storm."""

    def __init__(self) -> None:
        self.reports: list[str] = []
        loop = asyncio.get_running_loop()
        self._previous = loop.get_exception_handler()
        loop.set_exception_handler(lambda _, ctx: self.reports.append(str(ctx.get("message"))))

    def close(self) -> list[str]:
        asyncio.get_running_loop().set_exception_handler(self._previous)
        return [r for r in self.reports if "never retrieved" in r or "destroyed" in r]


class Shape(NamedTuple):
    """A storm's shape: how many keys, how many calls in flight together, and at most how many
    loop turns before a batch's victims are cancelled."""

    keys: int
    batch: int
    turns: int


SHAPE = Shape(KEYS, BATCH, 6)


async def storm(calls: int, rng: random.Random, one: Any, shape: Shape = SHAPE) -> Counter[str]:
    """Run ``calls`` calls of ``one(key)`` in batches, cancelling some at random points (while
    they wait for their flight, or read their body)."""
    results: Counter[str] = Counter()
    for _ in range(0, calls, shape.batch):
        tasks = [asyncio.ensure_future(one(rng.randrange(shape.keys))) for _ in range(shape.batch)]
        victims = rng.sample(tasks, k=shape.batch // 6)
        for _ in range(rng.randrange(1, shape.turns)):
            await asyncio.sleep(0)
        for task in victims:
            task.cancel()
        for outcome in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(outcome, asyncio.CancelledError):
                results["cancelled"] += 1
            elif isinstance(outcome, BaseException):
                results[type(outcome).__name__] += 1
            else:
                results[outcome] += 1
    return results


def a_seed() -> int:
    if SEED is not None:
        return int(SEED)
    return random.randrange(2**32) if FULL else 20261126


async def test_client_storm_leaves_no_stuck_key_and_no_wrong_body(
    origin: Origin, client_face: Any
) -> None:
    seed = a_seed()
    faults = Faults(seed)
    origin.route("/k/{key}", faults.handle)
    await origin.start()
    reports = LoopReports()
    rng = random.Random(seed + 1)
    policy = CachePolicy(max_body_size=600)  # the larger keys stream instead of being shared
    async with client_face(ttl=0.05, wait_timeout=0.002, policy=policy) as s:

        async def one(key: int) -> str:
            kwargs: dict[str, Any] = {}
            if rng.random() < 0.1:
                kwargs["refresh"] = True
            if rng.random() < 0.05:
                kwargs["timeout"] = aiohttp.ClientTimeout(total=0.003)
            async with s.get(origin.url(f"/k/{key}"), **kwargs) as resp:
                body = await resp.read()
            if resp.status == 200:
                return "ok" if body == body_of(key) else "WRONG BODY"
            return f"status {resp.status}"

        results = await asyncio.wait_for(storm(CALLS, rng, one), LIMIT)
        await finished(s._core.drain(), "background writes")
        stats = s.stats
        in_flight = len(s._core.flight)
    leftovers = reports.close()
    print(f"\nclient storm, seed {seed}: {dict(results)}; {stats}")
    assert in_flight == 0
    assert results["WRONG BODY"] == 0 and results["ok"] > 0
    assert leftovers == []
    assert stats.requests == outcomes(stats)
    # aiohttp sends a request again after a reset of a reused connection, through the client
    # middleware again: it counts what it sees.
    again = 0 if client_face is CoalescingSession else faults.resets
    assert CALLS <= stats.requests <= CALLS + again
    gave_up = results["cancelled"] + results["TimeoutError"]
    assert faults.seen["GET"] - faults.resets <= stats.upstream <= faults.seen["GET"] + gave_up


async def test_server_storm_leaves_no_stuck_key_and_no_wrong_body() -> None:
    seed = a_seed()
    faults = Faults(seed)
    mw = coalesce_middleware(ttl=0.05, wait_timeout=0.002)
    origin = Origin(middlewares=[mw])
    origin.route("/k/{key}", faults.handle)
    await origin.start(handler_cancellation=True)
    reports = LoopReports()
    rng = random.Random(seed + 1)
    connector = aiohttp.TCPConnector(limit=0)
    try:
        async with aiohttp.ClientSession(connector=connector) as client:

            async def one(key: int) -> str:
                async with client.get(origin.url(f"/k/{key}")) as resp:
                    body = await resp.read()
                if resp.status == 200:
                    return "ok" if body == body_of(key) else "WRONG BODY"
                return f"status {resp.status}"

            results = await asyncio.wait_for(storm(CALLS, rng, one), LIMIT)
            # The server side of a cancelled request may still be winding down: let it end.
            await finished(_settled(mw), "the middleware's calls in progress")
        stats = mw.stats
        in_flight = len(mw._core.flight)
    finally:
        await origin.stop()
    leftovers = reports.close()
    print(f"\nserver storm, seed {seed}: {dict(results)}; {stats}")
    assert in_flight == 0
    assert results["WRONG BODY"] == 0 and results["ok"] > 0
    assert leftovers == []
    assert stats.requests == outcomes(stats)
    assert stats.upstream == faults.seen["GET"]  # the middleware's upstream is the handler run


async def _settled(mw: Any) -> None:
    """Until every call the middleware began has counted its outcome (each is a few turns)."""
    while mw.stats.requests != outcomes(mw.stats) or len(mw._core.flight):  # noqa: ASYNC110
        await asyncio.sleep(0)  # no event says it; finished() bounds the wait
