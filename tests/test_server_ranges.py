"""The middleware answers ``Range`` / ``If-Range`` from a complete stored 200 (issue 24, RFC 9110
§14, RFC 9111 §3.3-3.4), as the session does (``test_client_ranges.py``, whose cases these are): a
206 with ``Content-Range``, a 416, or the whole 200, ``HIT``, the handler not run; nothing usable
stored: the handler runs for that request alone, and its 206 is never stored. A streamed stored
body is written through a reader over the range only."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, NamedTuple

import aiohttp
import pytest
from aiohttp import web
from conftest import FakeClock, Origin
from multidict import CIMultiDictProxy
from test_client_ranges import BODY, ETAG, STORED_CASES, Streamed, document, small

from coalesce_client import CachePolicy, MemoryStorage, coalesce_middleware
from coalesce_client.spec.snapshot import Snapshot


class Reply(NamedTuple):
    status: int
    body: bytes
    cache: str  # X-Cache
    headers: CIMultiDictProxy[str]


async def ask(url: str, method: str = "GET", **kw: Any) -> Reply:
    async with aiohttp.ClientSession() as client, client.request(method, url, **kw) as r:
        return Reply(r.status, await r.read(), r.headers.get("X-Cache", "-"), r.headers)


class Served(NamedTuple):
    url: str
    origin: Origin
    mw: Any


async def serve(clock: FakeClock | None = None, **options: Any) -> Served:
    """The document behind the middleware (``ttl=600`` and ``debug_header=True`` unless said;
    ``status``: the document's)."""
    status = options.pop("status", 200)
    mw = coalesce_middleware(
        **{"ttl": 600, "debug_header": True, **options, **({"clock": clock} if clock else {})}
    )
    origin = Origin(middlewares=[mw])
    document(origin, clock or FakeClock(), status=status)
    origin.route("/big", small)
    await origin.start()
    return Served(origin.url("/doc"), origin, mw)


@pytest.fixture
async def served(clock: FakeClock) -> Any:
    s = await serve(clock)
    yield s
    await s.origin.stop()
    await s.mw.close()


@pytest.mark.parametrize(("headers", "expected"), STORED_CASES)
async def test_a_range_is_answered_from_the_stored_200(
    served: Served, clock: FakeClock, headers: dict[str, str], expected: tuple[Any, ...]
) -> None:
    assert (await ask(served.url)).cache == "MISS"
    clock.advance(5)
    r = await ask(served.url, headers=headers)
    assert (r.status, r.body, r.headers.get("Content-Range")) == expected
    assert (r.cache, r.headers["Age"], r.headers.get("X-Cache-Reason")) == ("HIT", "5", None)
    assert r.headers.get("Content-Length", "0") == str(len(r.body))  # a 304 has none
    if r.status == 206:
        assert r.headers["ETag"] == ETAG and r.headers["Content-Type"] == "text/plain"
    if r.status == 416:  # none of the stored response's (aiohttp 3.10 adds its own default type)
        assert "ETag" not in r.headers
        assert r.headers.get("Content-Type") in (None, "application/octet-stream")
    assert served.origin.calls["/doc"] == 1  # answered from storage: the handler did not run
    stats = served.mw.stats
    assert (stats.requests, stats.hits, stats.misses) == (2, 1, 1)


async def test_many_range_requests_at_once_each_get_their_own_slice(served: Served) -> None:
    await ask(served.url)
    who = [(i % 11, i % 11 + i % 3) for i in range(60)]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:

        async def one(a: int, b: int) -> tuple[int, bytes]:
            async with client.get(served.url, headers={"Range": f"bytes={a}-{b}"}) as r:
                return r.status, await r.read()

        got = await asyncio.gather(*(one(a, b) for a, b in who))
    assert got == [(206, BODY[a : b + 1]) for a, b in who]
    assert served.origin.calls["/doc"] == 1
    assert served.mw.stats.hits == 60


async def test_nothing_stored_a_range_runs_the_handler_alone_and_its_206_is_not_stored(
    served: Served,
) -> None:
    for n in (1, 2):  # the handler's 206 is never stored: the second runs it too
        r = await ask(served.url, headers={"Range": "bytes=0-1"})
        assert (r.status, r.body, r.cache) == (206, b"01", "BYPASS")
        assert r.headers["X-Cache-Reason"] == "range request"
        assert served.origin.calls["/doc"] == n
    whole = await ask(served.url)  # nor as the whole response
    assert (whole.status, whole.body, whole.cache) == (200, BODY, "MISS")
    r = await ask(served.url, headers={"Range": "bytes=0-1"})
    assert (r.status, r.body, r.cache) == (206, b"01", "HIT")
    assert served.origin.calls["/doc"] == 3


@pytest.mark.parametrize(
    "why", ["stale", "not a 200", "another variant", "if-match", "no-cache", "max-age=1"]
)
async def test_what_the_request_may_not_use_runs_the_handler(clock: FakeClock, why: str) -> None:
    s = await serve(
        clock,
        policy=CachePolicy(status_ttl={404: 600}),
        request_cache_control=True,
        status=404 if why == "not a 200" else 200,
    )
    try:
        await ask(s.url, headers={"X-Variant": "a"})
        headers = {"Range": "bytes=0-1", "X-Variant": "a"}
        if why == "stale":
            clock.advance(61)
        elif why == "another variant":
            headers["X-Variant"] = "b"
        elif why == "if-match":
            headers["If-Match"] = ETAG
        elif why in ("no-cache", "max-age=1"):  # the client's own (request_cache_control=True)
            headers["Cache-Control"] = why
            clock.advance(5)
        r = await ask(s.url, headers=headers)
        assert (r.cache, r.headers["X-Cache-Reason"]) == ("BYPASS", "range request")
        assert s.origin.calls["/doc"] == 2
        assert (s.mw.stats.hits, s.mw.stats.bypassed) == (0, 1)
    finally:
        await s.origin.stop()
        await s.mw.close()


async def test_a_head_with_range_is_a_plain_head_answered_from_storage(served: Served) -> None:
    await ask(served.url, "HEAD")
    r = await ask(served.url, "HEAD", headers={"Range": "bytes=0-1"})
    assert (r.status, r.cache, r.body) == (200, "HIT", b"")
    assert "Content-Range" not in r.headers
    assert served.origin.calls["/doc"] == 1


# -- a streamed stored body ------------------------------------------------------------------


async def stored_as_stream(s: Served, storage: MemoryStorage, body: Streamed) -> str:
    """Store ``/big`` through the middleware, then swap its body for ``body``; its URL."""
    url = s.origin.url("/big")
    await ask(url)
    await s.mw._core.drain()  # the write runs in the background
    ((key, snap),) = [entry async for entry in storage.entries()]
    assert isinstance(snap, Snapshot)
    await storage.set(key, replace(snap, body=b"", stream=body), ttl=600)
    return url


async def test_a_streamed_body_is_written_through_a_reader_of_the_range_only() -> None:
    storage = MemoryStorage()
    s = await serve(storage=storage)
    big = Streamed(bytes(range(256)) * 4096)  # 1 MiB
    try:
        url = await stored_as_stream(s, storage, big)
        r = await ask(url, headers={"Range": "bytes=-1024"})
        assert (r.status, r.cache, r.body) == (206, "HIT", big.data[-1024:])
        length = big.length
        assert r.headers["Content-Range"] == f"bytes {length - 1024}-{length - 1}/{length}"
        assert r.headers["Content-Length"] == "1024" and "Age" in r.headers
        assert big.asked == [(length - 1024, length)]  # the range, never the whole
        assert big.readers[0].closed
        r = await ask(url, headers={"Range": "bytes=0-1,5-6"})  # several: the whole, streamed
        assert (r.status, r.cache, r.body) == (200, "HIT", big.data)
        assert big.asked[-1] == (0, None)
        assert s.origin.calls["/big"] == 1
    finally:
        await s.origin.stop()
        await s.mw.close()


async def test_a_streamed_body_that_ends_short_resets_the_connection() -> None:
    storage = MemoryStorage()
    s = await serve(storage=storage)
    short = Streamed(b"abcdef" * 40_000, short=True)
    try:
        url = await stored_as_stream(s, storage, short)
        with pytest.raises(aiohttp.ClientPayloadError):
            await ask(url, headers={"Range": "bytes=2-"})
        assert short.readers[0].closed
        assert (await ask(s.url)).status == 200  # the server goes on serving
    finally:
        await s.origin.stop()
        await s.mw.close()


# -- cache-tests, group "partial" (https://github.com/http-tests/cache-tests, tests/partial.mjs) --


@pytest.mark.parametrize(
    ("test_id", "body", "asked", "expected"),
    [
        ("partial-store-complete-reuse-partial", b"01234567890", "bytes=0-1", b"01"),
        ("partial-store-complete-reuse-partial-no-last", b"01234567890", "bytes=1-", b"1234567890"),
        ("partial-store-complete-reuse-partial-suffix", b"0123456789A", "bytes=-1", b"A"),
        ("partial-use-headers", b"01234567890", "bytes=0-1", b"01"),
        ("partial-use-stored-headers", b"01234567890", "bytes=0-1", b"01"),
    ],
)
async def test_cache_tests_partial(test_id: str, body: bytes, asked: str, expected: bytes) -> None:
    mw = coalesce_middleware(ttl=0, policy=CachePolicy(freshness="http"))
    origin = Origin(middlewares=[mw])

    async def page(request: web.Request) -> web.Response:
        headers = {"Cache-Control": "max-age=3600", "A": str(origin.calls["/p"])}
        return web.Response(body=body, headers=headers)

    origin.route("/p", page)
    await origin.start()
    try:
        await ask(origin.url("/p"))
        r = await ask(origin.url("/p"), headers={"Range": asked})
        assert (r.status, r.body, r.cache) == (206, expected, "HIT"), test_id
        assert r.headers["A"] == "1"  # the stored response's fields (partial-use-*)
        assert origin.calls["/p"] == 1
    finally:
        await origin.stop()
        await mw.close()


async def test_cache_tests_partial_store_partial_is_not_done() -> None:
    """The five ``partial-store-partial-*`` tests need a stored 206: not done (never stored)."""
    mw = coalesce_middleware(ttl=0, policy=CachePolicy(freshness="http"))
    origin = Origin(middlewares=[mw])

    async def page(request: web.Request) -> web.Response:
        headers = {"Cache-Control": "max-age=3600", "Content-Range": "bytes 4-9/10"}
        return web.Response(status=206, body=b"01234", headers=headers)

    origin.route("/p", page)
    await origin.start()
    try:
        for _ in range(2):
            r = await ask(origin.url("/p"), headers={"Range": "bytes=-5"})
            assert (r.status, r.cache) == (206, "BYPASS")
        assert origin.calls["/p"] == 2
    finally:
        await origin.stop()
        await mw.close()
