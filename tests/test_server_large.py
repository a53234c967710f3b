"""The middleware shares large and streamed bodies as the handler writes them (issue 24).

A handler's prepared ``StreamResponse`` (and a ``web.Response`` over ``max_body_size``) is
captured into a spool; every caller of the flight, the leader included, is answered from its own
reader of it, at its own pace. A handler that raises mid-body resets every caller's connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web
from conftest import Origin, finished, signalled, until

from coalesce_client import CachePolicy, DiskStorage, MemoryStorage, Snapshot, coalesce_middleware
from coalesce_client.core.spool import Spool
from coalesce_client.spec.snapshot import BodyReader
from coalesce_client.storage.base import StoresStreams

T = TypeVar("T")
KIB = 1024
MIB = 1024 * KIB
CHUNK = 64 * KIB
SMALL = CachePolicy(max_body_size=64 * KIB)  # every body here is over it
# Downloads of many MiB by many clients take their time on a loaded machine: conftest's WAIT
# bounds an event, this bounds a transfer (still a bound: a stuck download fails the test).
TRANSFER = 60.0


def body_of(size: int) -> bytes:
    """``size`` bytes that differ from one 64 KiB chunk to the next (a misplaced chunk shows)."""
    return b"".join(
        hashlib.sha256(str(i).encode()).digest() * (CHUNK // 32) for i in range(size // CHUNK)
    )


async def transferred(work: Awaitable[T], what: str) -> T:
    """The result of ``work``; fail within ``TRANSFER`` seconds, saying ``what`` did not end."""
    try:
        return await asyncio.wait_for(work, TRANSFER)
    except asyncio.TimeoutError:
        raise AssertionError(f"not within {TRANSFER} s: {what}") from None


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@contextlib.asynccontextmanager
async def serving(origin: Origin) -> AsyncIterator[aiohttp.ClientSession]:
    await origin.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
            yield client
    finally:
        await origin.stop()


async def get(client: aiohttp.ClientSession, url: str) -> tuple[str, Any]:
    async with client.get(url) as r:
        return digest(await r.read()), r.headers


async def burst(origin: Origin, client: aiohttp.ClientSession, path: str, n: int) -> list[Any]:
    """``n`` concurrent GETs, all in the middleware before the handler may answer."""
    before = origin.entered.count
    origin.gate.clear()
    tasks = [asyncio.ensure_future(get(client, origin.url(path))) for _ in range(n)]
    await origin.entered.reach(before + n, f"{n} requests to {path} in the middleware")
    origin.gate.set()
    return await transferred(asyncio.gather(*tasks), f"{n} downloads of {path}")


async def shared_once(origin: Origin, path: str, n: int, data: bytes, **expected: str) -> list[Any]:
    """``n`` concurrent clients of ``path``: one handler run, every client ``data`` and the
    ``expected`` headers (the name ``Transfer_Encoding`` for Transfer-Encoding); their headers."""
    async with serving(origin) as client:
        results = await burst(origin, client, path, n)
    assert origin.calls[path] == 1
    assert {d for d, _ in results} == {digest(data)}
    for _, headers in results:
        got = {name: headers.get(name.replace("_", "-")) for name in expected}
        assert got == expected, headers
    return [h for _, h in results]


def streaming(origin: Origin, data: bytes, chunked: bool = False, **headers: str) -> Any:
    async def handler(request: web.Request) -> web.StreamResponse:
        await origin.wait()
        resp = web.StreamResponse(headers=headers)
        if chunked:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        for at in range(0, len(data), CHUNK):
            await resp.write(data[at : at + CHUNK])
        return resp

    return handler


async def test_a_streamed_body_of_4_mib_runs_the_handler_once_for_100_clients() -> None:
    mw = coalesce_middleware(ttl=60, policy=SMALL)
    origin = Origin(middlewares=[mw])
    data = body_of(4 * MIB)
    origin.route("/big", streaming(origin, data, ETag='"v1"', **{"Content-Type": "video/mp4"}))
    # No length given: chunked, once (aiohttp's framing of the replay, not the handler's).
    kept = {"Content-Type": "video/mp4", "ETag": '"v1"', "Transfer_Encoding": "chunked"}
    results = await shared_once(origin, "/big", 100, data, **kept)
    assert Counter(h["X-Cache"] for h in results) == {"MISS": 1, "COALESCED": 99}


async def test_the_handlers_content_length_is_sent_to_every_client() -> None:
    mw = coalesce_middleware(ttl=60, policy=SMALL)
    origin = Origin(middlewares=[mw])
    data = body_of(1 * MIB)
    headers = {"Content-Length": str(len(data)), "Content-Type": "application/x-tar"}
    origin.route("/sized", streaming(origin, data, ETag='"s"', **headers))
    await shared_once(origin, "/sized", 20, data, ETag='"s"', Transfer_Encoding=None, **headers)


async def test_a_handler_that_asks_for_chunked_encoding_is_shared_too() -> None:
    mw = coalesce_middleware(ttl=60, policy=SMALL)
    origin = Origin(middlewares=[mw])
    data = body_of(1 * MIB)
    origin.route("/chunks", streaming(origin, data, chunked=True))
    await shared_once(origin, "/chunks", 20, data, Transfer_Encoding="chunked")


async def test_a_client_that_reads_nothing_holds_up_none_of_the_others() -> None:
    mw = coalesce_middleware(ttl=60, policy=SMALL)
    origin = Origin(middlewares=[mw])
    data = body_of(16 * MIB)  # far more than the slow client's socket buffers take
    origin.route("/slow", streaming(origin, data))
    others_done = asyncio.Event()
    slow_has_headers = asyncio.Event()

    async def slow(client: aiohttp.ClientSession) -> str:
        async with client.get(origin.url("/slow")) as r:
            slow_has_headers.set()
            await others_done.wait()  # reads nothing until every other client has it all
            return digest(await r.read())

    async with serving(origin) as client:
        origin.gate.clear()
        held = asyncio.ensure_future(slow(client))
        await origin.entered.reach(1, "the slow client's request")
        others = [asyncio.ensure_future(get(client, origin.url("/slow"))) for _ in range(5)]
        await origin.entered.reach(6, "five more requests")
        origin.gate.set()
        await signalled(slow_has_headers, "the slow client's headers")
        others_read = asyncio.gather(*others)
        results = await transferred(others_read, "the others, the slow one reading none")
        others_done.set()
        assert await transferred(held, "the slow client, at last") == digest(data)
    assert origin.calls["/slow"] == 1
    assert {d for d, _ in results} == {digest(data)}


@pytest.mark.parametrize("sized", [False, True], ids=["chunked", "content-length"])
async def test_a_handler_that_raises_halfway_resets_every_client(
    sized: bool, caplog: pytest.LogCaptureFixture
) -> None:
    storage = StreamStorage()  # it would store the body had it completed
    mw = coalesce_middleware(ttl=60, policy=SMALL, storage=storage)
    origin = Origin(middlewares=[mw])
    data = body_of(2 * MIB)

    async def broken(request: web.Request) -> web.StreamResponse:
        await origin.wait()
        resp = web.StreamResponse()
        if sized:
            resp.content_length = len(data)
        await resp.prepare(request)
        for at in range(0, len(data) // 2, CHUNK):
            await resp.write(data[at : at + CHUNK])
        raise RuntimeError("the origin died at 50%")

    origin.route("/broken", broken)

    async def truncated(client: aiohttp.ClientSession) -> type[BaseException] | None:
        try:
            await get(client, origin.url("/broken"))
        except aiohttp.ClientPayloadError as exc:
            return type(exc)
        return None

    async with serving(origin) as client:
        with caplog.at_level(logging.ERROR, logger="coalesce_client"):
            origin.gate.clear()
            tasks = [asyncio.ensure_future(truncated(client)) for _ in range(20)]
            await origin.entered.reach(20, "twenty requests in the middleware")
            origin.gate.set()
            seen = await transferred(asyncio.gather(*tasks), "twenty truncated downloads")
            assert seen == [aiohttp.ClientPayloadError] * 20  # never a short body taken whole
            await finished(mw._core.drain(), "the storage's read of the stream")
            assert await truncated(client) is aiohttp.ClientPayloadError  # nothing stored:
        assert origin.calls["/broken"] == 2  # the next request ran the handler again
    assert mw.stats.stored == 0 and storage.reads == 2  # it read both runs, kept neither
    logged = [r for r in caplog.records if "Error handling request" in r.getMessage()]
    assert len(logged) == 2 and all(r.exc_info for r in logged)  # once per run


async def test_a_web_response_over_max_body_size_is_shared() -> None:
    mw = coalesce_middleware(ttl=60, policy=SMALL)
    origin = Origin(middlewares=[mw])
    data = body_of(1 * MIB)

    async def whole(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(body=data, content_type="application/pdf", headers={"ETag": '"w"'})

    origin.route("/whole", whole)
    length = str(len(data))
    kept = {"Content-Length": length, "Content-Type": "application/pdf", "ETag": '"w"'}
    await shared_once(origin, "/whole", 30, data, **kept)


async def test_a_run_nobody_reads_any_more_stops_as_for_a_client_gone() -> None:
    mw = coalesce_middleware(ttl=60, policy=SMALL)
    origin = Origin(middlewares=[mw])
    chunk = body_of(CHUNK)
    stopped: list[BaseException] = []
    written = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        try:
            for _ in range(4000):  # 250 MiB at most: the test fails long before
                await resp.write(chunk)
                written.set()
        except ConnectionResetError as exc:
            stopped.append(exc)
        return resp

    origin.route("/endless", endless)
    async with serving(origin) as client:
        async with client.get(origin.url("/endless")) as r:
            assert len(await r.content.readexactly(CHUNK)) == CHUNK
            r.close()  # gone mid-body: nobody else reads it, nothing stores it
        await signalled(written, "the handler's writes")
        await until(lambda: bool(stopped), "the handler stopped by a write", turns=1000)
    assert origin.calls["/endless"] == 1 and len(stopped) == 1


class StreamStorage(MemoryStorage):
    """A MemoryStorage that takes streams (``StoresStreams``), as DiskStorage does: it reads a
    streamed body whole once complete, and answers with a stream of it again; ``damaged``
    makes every stored stream end short halfway (a damaged entry found while serving it)."""

    stream_limit = 1 << 30

    def __init__(self) -> None:
        super().__init__()
        self.damaged = False
        self.reads = 0  # streams it began to read

    async def set(self, key: str, value: Any, ttl: float) -> None:
        if isinstance(value, Snapshot) and value.stream is not None:
            reader = value.stream.reader()
            self.reads += 1
            value = replace(value, stream=Stored(await reader.read(), self))
        await super().set(key, value, ttl)


class Stored:
    """A stored entry's body, a new spool of its bytes for every reader (``StreamedBody``)."""

    def __init__(self, data: bytes, storage: StreamStorage) -> None:
        self.data = data
        self.storage = storage

    @property
    def length(self) -> int:
        return len(self.data)

    def reader(self, start: int = 0, end: int | None = None) -> BodyReader:
        spool = Spool(len(self.data))
        if self.storage.damaged:
            spool.append(self.data[: len(self.data) // 2])
            spool.fail(None)
        else:
            spool.append(self.data)
            spool.finish()
        return spool.reader(start, end)

    async def complete(self) -> int:
        return len(self.data)


async def test_a_stored_streamed_entry_is_replayed_as_it_streams_or_resets_if_damaged() -> None:
    storage = StreamStorage()
    mw = coalesce_middleware(ttl=60, policy=SMALL, storage=storage)
    origin = Origin(middlewares=[mw])
    data = body_of(1 * MIB)
    origin.route("/kept", streaming(origin, data, ETag='"k"', **{"Content-Length": str(len(data))}))
    await origin.start()
    try:
        async with aiohttp.ClientSession() as client:
            assert (await get(client, origin.url("/kept")))[0] == digest(data)
            await finished(mw._core.drain(), "the storage write")
            assert mw.stats.stored == 1
            got, headers = await transferred(get(client, origin.url("/kept")), "a hit")
            assert got == digest(data) and headers["X-Cache"] == "HIT"
            assert headers["Content-Length"] == str(len(data)) and headers["ETag"] == '"k"'
            storage.damaged = True
            with pytest.raises(aiohttp.ClientPayloadError):
                await transferred(get(client, origin.url("/kept")), "a damaged hit")
    finally:
        await origin.stop()
    assert origin.calls["/kept"] == 1


async def test_a_streamed_body_is_stored_on_disk_then_replayed_from_it(tmp_path: Path) -> None:
    storage = DiskStorage(tmp_path / "cache")
    if not isinstance(storage, StoresStreams):
        await storage.close()
        pytest.skip("this DiskStorage stores no streamed body (issue 24's storage part)")
    mw = coalesce_middleware(ttl=60, policy=SMALL, storage=storage)
    origin = Origin(middlewares=[mw])
    data = body_of(2 * MIB)
    origin.route("/disk", streaming(origin, data, ETag='"d"'))
    try:
        async with serving(origin) as client:
            first = await burst(origin, client, "/disk", 10)
            await finished(mw._core.drain(), "the storage write")
            hits = await burst(origin, client, "/disk", 10)
    finally:
        await mw.close()
    assert origin.calls["/disk"] == 1 and mw.stats.stored == 1
    assert {d for d, _ in first + hits} == {digest(data)}
    assert {h["X-Cache"] for _, h in hits} == {"HIT"}
    assert {(h["Content-Length"], h["ETag"]) for _, h in hits} == {(str(len(data)), '"d"')}


async def test_a_late_client_joins_the_run_whose_body_still_arrives() -> None:
    mw = coalesce_middleware(ttl=60, policy=SMALL)  # MemoryStorage: it takes no streamed body
    origin = Origin(middlewares=[mw])
    data = body_of(1 * MIB)
    first = 128 * KIB  # over max_body_size: the head is handed out, the rest held at the gate

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Length": str(len(data))})
        await resp.prepare(request)
        await resp.write(data[:first])
        await origin.wait()
        for at in range(first, len(data), CHUNK):
            await resp.write(data[at : at + CHUNK])
        return resp

    origin.route("/late", handler)
    origin.gate.clear()
    async with serving(origin) as client:
        url = origin.url("/late")
        early = await finished(asyncio.gather(*(client.get(url) for _ in range(3))), "3 heads")
        await origin.at_gate.reach(1, "the handler held at the gate")
        late = await finished(asyncio.gather(*(client.get(url) for _ in range(3))), "3 late heads")
        assert origin.calls["/late"] == 1  # the late clients joined the run
        origin.gate.set()
        bodies = await transferred(asyncio.gather(*(r.read() for r in early + late)), "bodies")
        assert {digest(b) for b in bodies} == {digest(data)}
        for r in early + late:
            r.release()
        assert (await transferred(get(client, url), "a new client"))[0] == digest(data)
    assert origin.calls["/late"] == 2  # the body completed, not stored: a new run
