"""Large bodies shared as they stream through the session (issue 24).

A body over ``max_body_size`` (64 KiB here) is fetched once for every concurrent caller, spooled
(memory up to the bound, then an unlinked temporary file) at the origin's pace, and read by each
caller at its own; a truncated body reaches each as ``ClientPayloadError``. The origins here are
real aiohttp servers on 127.0.0.1 counting calls; nothing sleeps.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Origin, finished, signalled

from coalesce_client import (
    CachedResponse,
    CachePolicy,
    CoalescingSession,
    DiskStorage,
    MemoryStorage,
)
from coalesce_client.client import pump
from coalesce_client.client.body import ReaderStream
from coalesce_client.core.spool import Spool
from coalesce_client.spec.snapshot import Snapshot, TruncatedBodyError
from coalesce_client.storage.base import StoresStreams

BOUND = 64 * 1024  # max_body_size: what one response may hold in memory
SIZE = 4 * 1024 * 1024 + 123  # the body: several MiB, not a multiple of anything
BODY = os.urandom(SIZE)
DIGEST = hashlib.sha256(BODY).hexdigest()
PIECE = 64 * 1024  # what the origin writes at a time
FIRST = BOUND + 4096  # what the origin sends before its gate: over the bound already
# aiohttp's own error for a write to a connection its client reset (3.11+; an OSError before).
RESET = tuple(getattr(aiohttp, n) for n in ("ClientConnectionResetError",) if hasattr(aiohttp, n))


def big_route(origin: Origin, path: str, *, length: bool = True, die_at: int | None = None) -> None:
    """``BODY`` in pieces, sized or chunked; ``FIRST`` bytes, then the gate, then the rest (up
    to ``die_at`` bytes, where the connection is reset)."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        if length:
            resp.content_length = SIZE
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        if request.method == "HEAD":
            return resp
        await resp.write(BODY[:FIRST])
        await origin.wait()
        end = SIZE if die_at is None else die_at
        for at in range(FIRST, end, PIECE):
            await resp.write(BODY[at : min(at + PIECE, end)])
        if die_at is not None:
            assert request.transport is not None
            request.transport.abort()  # the origin dies mid-body
            return resp
        await resp.write_eof()
        return resp

    origin.route(path, handler)


async def digest_of(resp: CachedResponse, n: int = 100_000) -> str:
    h = hashlib.sha256()
    async for chunk in resp.content.iter_chunked(n):
        h.update(chunk)
    resp.release()
    return h.hexdigest()


def session(**options: Any) -> CoalescingSession:
    return CoalescingSession(ttl=60, policy=CachePolicy(max_body_size=BOUND), **options)


@pytest.mark.parametrize("length", [True, False], ids=["sized", "chunked"])
async def test_concurrent_callers_of_a_large_body_share_one_request(
    origin: Origin, length: bool
) -> None:
    big_route(origin, "/big", length=length)
    await origin.start()
    origin.gate.clear()
    async with session() as s:
        calls = [asyncio.ensure_future(s.get(origin.url("/big"))) for _ in range(20)]
        await origin.at_gate.reach(1, "the leader's request at the gate")
        responses = await finished(asyncio.gather(*calls), "every caller answered")
        spool = responses[0].snapshot.stream
        assert isinstance(spool, Spool)
        assert all(r.snapshot.stream is spool for r in responses)  # one body for all
        origin.gate.set()
        sizes = [1000, 65536, 1 << 20, 4096]
        digests = await finished(
            asyncio.gather(*(digest_of(r, sizes[i % 4]) for i, r in enumerate(responses))),
            "every caller read the body",
        )
        assert digests == [DIGEST] * 20
        assert origin.calls["/big"] == 1
        assert sorted(r.cache_status for r in responses) == ["coalesced"] * 19 + ["miss"]
        assert s.stats.stored == 0  # MemoryStorage stores no streamed body


async def test_read_gives_the_whole_body_and_the_stream_api_works(origin: Origin) -> None:
    big_route(origin, "/big")
    await origin.start()
    async with session() as s:
        one, two, three = await asyncio.gather(*(s.get(origin.url("/big")) for _ in range(3)))
        assert await one.read() == BODY
        assert await one.read() == BODY  # kept, as aiohttp keeps it
        assert await two.content.readexactly(10) == BODY[:10]
        line = await two.content.readline()
        assert line == BODY[10 : BODY.index(b"\n", 10) + 1]
        assert await two.content.read() == BODY[len(line) + 10 :]
        assert two.content.at_eof()
        async with three:
            assert b"".join([c async for c in three.content.iter_any()]) == BODY
        assert origin.calls["/big"] == 1


async def test_a_follower_that_reads_nothing_holds_up_nobody(origin: Origin) -> None:
    big_route(origin, "/big")
    await origin.start()
    origin.gate.clear()
    async with session() as s:
        idle_has_it = asyncio.Event()
        others_done = asyncio.Event()

        async def idle() -> str:
            async with s.get(origin.url("/big")) as resp:
                idle_has_it.set()
                await others_done.wait()  # reads nothing until every other caller is done
                return await digest_of(resp)

        async def busy() -> str:
            async with s.get(origin.url("/big")) as resp:
                return await digest_of(resp)

        # One flight: every caller asks at once (a caller that comes after the head arrived
        # starts a flight of its own: the flight ends when its head is here).
        waiting = asyncio.ensure_future(idle())
        others = [asyncio.ensure_future(busy()) for _ in range(4)]
        await signalled(idle_has_it, "the idle caller got its response")
        origin.gate.set()
        # If the idle reader held up the pump or the others, this would never finish.
        assert await finished(asyncio.gather(*others), "the others") == [DIGEST] * 4
        others_done.set()
        assert await finished(waiting, "the idle caller") == DIGEST
        assert origin.calls["/big"] == 1


async def test_a_cancelled_follower_frees_its_reader_at_once(origin: Origin) -> None:
    big_route(origin, "/big")
    await origin.start()
    origin.gate.clear()
    async with session() as s:
        reading = asyncio.Event()
        keeper, follower = await asyncio.gather(*(s.get(origin.url("/big")) for _ in range(2)))

        async def reader() -> None:
            async with follower:
                await follower.content.readexactly(FIRST)  # all that came: the next read waits
                reading.set()
                await follower.content.read(1)

        spool = keeper.snapshot.stream
        assert isinstance(spool, Spool)
        task = asyncio.ensure_future(reader())
        await signalled(reading, "the follower waits for more")
        await asyncio.sleep(0)
        assert len(spool._waiters) == 1
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert spool._waiters == []  # its waiter is gone at once
        assert isinstance(follower.content, ReaderStream)
        with pytest.raises(aiohttp.ClientConnectionError):  # its reader is closed
            await follower.content.read(1)
        origin.gate.set()
        assert await digest_of(keeper) == DIGEST
        assert origin.calls["/big"] == 1


async def test_the_origin_dying_mid_body_is_every_callers_payload_error(origin: Origin) -> None:
    big_route(origin, "/dies", die_at=SIZE // 2)
    big_route(origin, "/dies-chunked", length=False, die_at=SIZE // 2)
    await origin.start()
    async with session() as s:
        for path in ("/dies", "/dies-chunked"):
            responses = await asyncio.gather(*(s.get(origin.url(path)) for _ in range(5)))
            for i, resp in enumerate(responses):
                with pytest.raises(aiohttp.ClientPayloadError):
                    await (resp.read() if i % 2 else digest_of(resp))
                assert isinstance(resp.content.exception(), aiohttp.ClientPayloadError)
            assert origin.calls[path] == 1
        assert s.stats.stored == 0
        assert (await s.get(origin.url("/dies"))).cache_status == "miss"  # nothing stored


async def test_closing_the_session_mid_body_is_a_payload_error_not_a_short_body(
    origin: Origin,
) -> None:
    big_route(origin, "/big")
    await origin.start()
    origin.gate.clear()
    s = session()
    responses = await asyncio.gather(*(s.get(origin.url("/big")) for _ in range(3)))
    await s.close()
    origin.gate.set()
    for resp in responses:
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    await finished(_pumps_ended(), "the pump ended")


async def test_head_of_a_large_resource_is_no_stream(origin: Origin) -> None:
    big_route(origin, "/big")
    await origin.start()
    async with session() as s:
        first = await s.head(origin.url("/big"))
        assert first.snapshot.stream is None
        assert first.content_length == SIZE and await first.read() == b""
        assert (await s.head(origin.url("/big"))).cache_status == "hit"
        assert origin.calls["/big"] == 1


async def test_a_body_nobody_reads_any_more_is_not_fetched_on(origin: Origin) -> None:
    gone = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        try:
            while True:  # until the client goes away
                await resp.write(BODY[:PIECE])
        except (ConnectionError, *RESET):
            gone.set()
        return resp

    origin.route("/endless", endless)
    await origin.start()
    async with session() as s:
        responses = await asyncio.gather(*(s.get(origin.url("/endless")) for _ in range(3)))
        for resp in responses:
            async with resp:
                assert len(await resp.content.read(10)) == 10
        # Every caller released its response (each still holds the object: its status and
        # headers stay readable), so nobody can read the body any more: the pump stops.
        gc.collect()
        await signalled(gone, "the origin saw the connection closed")
        await finished(_pumps_ended(), "the pump ended")
        assert [r.status for r in responses] == [200] * 3


async def _pumps_ended() -> None:
    loop = asyncio.get_running_loop()
    while running := {task for task in list(pump._RUNNING) if task.get_loop() is loop}:
        await asyncio.wait(running)


async def test_a_released_response_reads_nothing_short(origin: Origin) -> None:
    big_route(origin, "/big")
    await origin.start()
    async with session() as s:
        resp, other = await asyncio.gather(*(s.get(origin.url("/big")) for _ in range(2)))
        resp.release()
        assert isinstance(resp.content, ReaderStream)
        with pytest.raises(aiohttp.ClientConnectionError):
            await resp.read()
        assert await other.read() == BODY


class StreamingMemory(MemoryStorage):
    """A MemoryStorage that takes streamed bodies (``StoresStreams``): it waits for the body to
    complete, then keeps its bytes; a body that ends short is not stored."""

    def __init__(self, stream_limit: int) -> None:
        super().__init__()
        self.limit = stream_limit
        self.streams = 0

    @property
    def stream_limit(self) -> int:
        return self.limit

    async def set(self, key: str, value: Any, ttl: float) -> None:
        if isinstance(value, Snapshot) and value.stream is not None:
            self.streams += 1
            reader = value.stream.reader()
            try:
                body = await reader.read()
            finally:
                reader.close()
            value = Snapshot(
                value.status,
                value.reason,
                value.headers,
                value.url,
                value.method,
                body,
                value.stored_at,
                value.expires_at,
                value.history,
                value.request_time,
                value.response_time,
            )
        await super().set(key, value, ttl)


async def test_a_storage_that_takes_streams_stores_it_within_its_limits(origin: Origin) -> None:
    big_route(origin, "/big")
    big_route(origin, "/other")
    await origin.start()
    storage = StreamingMemory(stream_limit=SIZE)
    async with session(storage=storage) as s:
        assert await digest_of(await s.get(origin.url("/big"))) == DIGEST
        await s._core.drain()  # the write runs in the background
        hit = await s.get(origin.url("/big"))
        assert hit.cache_status == "hit" and await hit.read() == BODY
        assert storage.streams == 1
    small = StreamingMemory(stream_limit=SIZE - 1)  # under the body: shared, not stored
    async with session(storage=small) as s:
        resp = await s.get(origin.url("/other"))
        assert resp.cache_reason == "body over max_stored_size"
        assert await resp.read() == BODY
        assert small.streams == 0


async def test_a_large_body_is_stored_on_disk_as_it_streams_then_served_from_it(
    origin: Origin, tmp_path: Path
) -> None:
    storage = DiskStorage(tmp_path / "cache")
    if not isinstance(storage, StoresStreams):
        await storage.close()
        pytest.skip("this DiskStorage stores no streamed body (issue 24's storage part)")
    big_route(origin, "/big")
    big_route(origin, "/dies", die_at=SIZE // 2)
    await origin.start()
    async with session(storage=storage) as s:
        responses = await asyncio.gather(*(s.get(origin.url("/big")) for _ in range(5)))
        assert [await digest_of(r) for r in responses] == [DIGEST] * 5
        dying = await asyncio.gather(*(s.get(origin.url("/dies")) for _ in range(3)))
        for resp in dying:
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        await s._core.drain()  # the writes run in the background
        hits = await asyncio.gather(*(s.get(origin.url("/big")) for _ in range(5)))
        assert [h.cache_status for h in hits] == ["hit"] * 5
        assert [await digest_of(h) for h in hits] == [DIGEST] * 5
        assert (await s.get(origin.url("/dies"))).cache_status == "miss"  # nothing stored
        assert origin.calls["/big"] == 1


async def test_the_client_middleware_shares_a_large_body_as_it_streams_and_replays_it_from_disk(
    origin: Origin, tmp_path: Path
) -> None:
    """The client middleware reads a large body as the session does: one request for a burst,
    every caller (the leader too) reading its own replay of the spool, whole or in pieces; then
    stored as it streams and replayed from disk, never the empty body of its record."""
    from coalesce_client import cache_info, client_middleware
    from coalesce_client.client_mw import compat

    if not compat.HAS_MIDDLEWARES:
        pytest.skip("client middlewares need aiohttp >= 3.12")
    big_route(origin, "/big")
    await origin.start()
    policy = CachePolicy(max_body_size=BOUND)
    storage = DiskStorage(tmp_path / "cache")
    async with (
        client_middleware(ttl=60, policy=policy, storage=storage) as mw,
        aiohttp.ClientSession(middlewares=[mw]) as plain,
    ):
        burst = await asyncio.gather(*(plain.get(origin.url("/big")) for _ in range(5)))
        assert sorted(cache_info(r).status for r in burst) == ["coalesced"] * 4 + ["miss"]  # type: ignore[union-attr]
        assert [await r.read() for r in burst] == [BODY] * 5
        await mw._core.drain()  # the write runs in the background
        whole, pieces = [await plain.get(origin.url("/big")) for _ in range(2)]
        assert [cache_info(r).status for r in (whole, pieces)] == ["hit", "hit"]  # type: ignore[union-attr]
        assert await whole.read() == BODY
        h = hashlib.sha256()
        async for chunk in pieces.content.iter_chunked(100_000):
            h.update(chunk)
        assert h.hexdigest() == DIGEST
        pieces.release()
        async with plain.get(origin.url("/big")) as third:  # left unread: its reader is closed
            assert third.status == 200
        with pytest.raises(aiohttp.ClientConnectionError):
            await third.content.read(10)
    assert origin.calls["/big"] == 1


# -- Late callers: after the flight handed the head out, while the body still arrives ----------


async def test_late_callers_join_a_body_still_arriving_then_a_new_caller_sends_anew(
    origin: Origin,
) -> None:
    big_route(origin, "/late")
    await origin.start()
    origin.gate.clear()
    async with session() as s:  # MemoryStorage: it takes no streamed body
        url = origin.url("/late")
        early = await finished(asyncio.gather(*(s.get(url) for _ in range(5))), "5 callers")
        spool = early[0].snapshot.stream
        assert isinstance(spool, Spool) and not spool.done  # the body is held at the gate
        late = await finished(asyncio.gather(*(s.get(url) for _ in range(5))), "5 late callers")
        assert all(r.snapshot.stream is spool for r in early + late)
        assert origin.calls["/late"] == 1
        assert [r.cache_status for r in late] == ["coalesced"] * 5
        origin.gate.set()
        digests = await finished(
            asyncio.gather(*(digest_of(r) for r in early + late)), "every caller read the body"
        )
        assert digests == [DIGEST] * 10
        assert spool.done and not spool.failed
        after = await s.get(url)  # the body completed, and nothing stored: a new request
        assert after.cache_status == "miss" and after.snapshot.stream is not spool
        assert await digest_of(after) == DIGEST
        assert origin.calls["/late"] == 2
        assert s.stats.stored == 0


async def test_a_body_that_failed_is_never_handed_to_a_late_caller(origin: Origin) -> None:
    big_route(origin, "/fails", die_at=SIZE // 2)
    await origin.start()
    origin.gate.clear()
    async with session() as s:
        url = origin.url("/fails")
        early = await finished(asyncio.gather(*(s.get(url) for _ in range(2))), "2 callers")
        spool = early[0].snapshot.stream
        assert isinstance(spool, Spool)
        origin.gate.set()
        with pytest.raises(TruncatedBodyError):
            await finished(spool.complete(), "the origin dying mid-body")
        late = await s.get(url)  # its own request, not the failed body
        assert late.cache_status == "miss" and late.snapshot.stream is not spool
        assert origin.calls["/fails"] == 2
        for resp in (*early, late):
            with pytest.raises(aiohttp.ClientPayloadError):
                await finished(resp.read(), "a truncated body")


@pytest.mark.parametrize("how", ["refresh", "no-cache", "invalidate", "clear"])
async def test_a_late_caller_that_refreshes_or_follows_an_invalidation_sends_its_own(
    origin: Origin, how: str
) -> None:
    big_route(origin, "/own")
    await origin.start()
    origin.gate.clear()
    async with session() as s:
        url = origin.url("/own")
        first = await finished(s.get(url), "the first caller")
        own: dict[str, Any] = {}
        if how == "refresh":
            own = {"refresh": True}
        elif how == "no-cache":
            own = {"headers": {"Cache-Control": "no-cache"}}
        else:  # the URL invalidated, or everything cleared, while its body arrives
            await (s.invalidate(url) if how == "invalidate" else s.clear())
        late = await finished(s.get(url, **own), "a late caller")
        assert late.cache_status == "miss" and late.snapshot.stream is not first.snapshot.stream
        assert origin.calls["/own"] == 2
        origin.gate.set()
        assert await finished(digest_of(late), "its body") == DIGEST
        assert await finished(digest_of(first), "the first body") == DIGEST
