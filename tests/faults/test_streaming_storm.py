"""Fault case: a storm of calls for large bodies shared as they stream (issue 24), with random
cancels, slow readers, readers that give up half-way, and an origin that resets mid-body.

Modes (every case under tests/faults/ has both):
    python -m pytest tests/faults/test_streaming_storm.py -s   # QUICK: 600 calls
    COALESCE_FAULTS=full python -m pytest tests/faults/test_streaming_storm.py -s   # FULL: 6,000

Each run is seeded and bounded in count and time: QUICK uses a fixed seed, FULL a random one;
COALESCE_FAULTS_SEED=N replays a run (the seed is printed). After the storm:
* no short body was presented as complete: every read that ended without an error has exactly
  its key's body (a truncation is the caller's ``ClientPayloadError``);
* no key is left in flight, and no pump is left running;
* no spool file is left open (the process's open files in the temporary directory are counted
  before and after), and the event loop reported nothing.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import random
import tempfile

import pytest
from aiohttp import web
from conftest import Origin, finished
from test_cancellation_storm import LoopReports, Shape, a_seed, storm

from coalesce_client import CachePolicy, CoalescingSession
from coalesce_client.client import pump

FULL = os.environ.get("COALESCE_FAULTS") == "full"
CALLS = 6_000 if FULL else 600
KEYS = 6
BOUND = 16 * 1024  # max_body_size: every body here is larger, so every one is spooled
LIMIT = 600 if FULL else 90  # seconds a storm may take before the case fails (bounded in time)
PIECE = 16 * 1024
BATCH = 60  # calls in flight together


def body_of(key: int) -> bytes:
    """Each key's body: 64 KiB to 704 KiB, the key's digest repeated."""
    unit = hashlib.sha256(str(key).encode()).digest()
    return unit * ((64 + 128 * key) * 1024 // len(unit))


BODIES = [body_of(k) for k in range(KEYS)]


def spool_files() -> int:
    """The process's open files in the temporary directory (where every spool file is)."""
    if not os.path.isdir("/proc/self/fd"):
        return -1
    tmp = tempfile.gettempdir()
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(tmp)
    return count


class Faults:
    """What the origin does: the body in pieces (at a varying pace, sized or chunked), or a
    reset mid-body."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seen = 0
        self.resets = 0

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = int(request.match_info["key"])
        body = BODIES[key]
        self.seen += 1
        roll = self.rng.random()
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        if roll < 0.5:
            resp.content_length = len(body)
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        cut = self.rng.randrange(len(body)) if roll < 0.2 or roll > 0.9 else len(body)
        for at in range(0, cut, PIECE):
            await resp.write(body[at : min(at + PIECE, cut)])
            for _ in range(self.rng.randrange(3)):  # the origin's pace varies
                await asyncio.sleep(0)
        if cut < len(body):
            if request.transport is not None:
                self.resets += 1
                request.transport.abort()  # the origin dies mid-body
            return resp
        await resp.write_eof()
        return resp


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
async def test_streaming_storm_presents_no_short_body_and_leaves_nothing_behind(
    origin: Origin,
) -> None:
    seed = a_seed()
    faults = Faults(seed)
    origin.route("/k/{key}", faults.handle)
    await origin.start()
    files_before = spool_files()
    reports = LoopReports()
    rng = random.Random(seed + 1)
    policy = CachePolicy(max_body_size=BOUND)
    async with CoalescingSession(ttl=0.05, policy=policy) as s:

        async def one(key: int) -> str:
            how = rng.random()
            async with s.get(origin.url(f"/k/{key}")) as resp:
                if how < 0.1:
                    await resp.content.read(rng.randrange(1, BOUND))
                    return "gave up"  # released half-way: its reader is closed
                if how < 0.5:
                    body = await resp.read()
                else:  # a slow reader: small chunks, turns of the loop between them
                    parts = []
                    async for chunk in resp.content.iter_chunked(rng.choice([512, 4096, 65536])):
                        parts.append(chunk)
                        for _ in range(rng.randrange(3)):
                            await asyncio.sleep(0)
                    body = b"".join(parts)
            return "ok" if body == BODIES[key] else "SHORT OR WRONG BODY"

        results = await asyncio.wait_for(storm(CALLS, rng, one, Shape(KEYS, BATCH, 40)), LIMIT)
        await finished(s._core.drain(), "background writes")
        in_flight = len(s._core.flight)
    gc.collect()  # a cancelled caller's frames may hold its response in a cycle
    await finished(_pumps_ended(), "every pump ended")
    files_after = spool_files()
    leftovers = reports.close()
    print(
        f"\nstreaming storm, seed {seed}: {dict(results)}; origin requests {faults.seen}, "
        f"resets {faults.resets}; spool files {files_before} -> {files_after}"
    )
    assert results["SHORT OR WRONG BODY"] == 0 and results["ok"] > 0
    assert results["ClientPayloadError"] > 0  # the resets were seen, as truncations
    assert in_flight == 0
    assert files_after == files_before
    assert leftovers == []
    assert faults.seen < CALLS  # shared: far fewer requests than calls


async def _pumps_ended() -> None:
    loop = asyncio.get_running_loop()
    while running := {task for task in list(pump._RUNNING) if task.get_loop() is loop}:
        await asyncio.wait(running)
