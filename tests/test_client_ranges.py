"""The session answers ``Range`` / ``If-Range`` from a complete stored 200 (issue 24, RFC 9110 §14,
RFC 9111 §3.3-3.4): a 206 with ``Content-Range``, a 416, or the whole 200, a hit, the origin
untouched; nothing usable stored: the caller's own request, never a flight, and the origin's 206
is never stored. A streamed stored body is read through a reader over the range only."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import FakeClock, Origin

from coalesce_client import CachePolicy, CoalescingSession, MemoryStorage
from coalesce_client.spec.dates import format_http_date
from coalesce_client.spec.snapshot import BodyReader, Snapshot, TruncatedBodyError

BODY = b"0123456789A"
ETAG = '"v1"'
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


def document(origin: Origin, clock: FakeClock, status: int = 200) -> None:
    """A resource that a plain origin serves; it answers a ``Range`` of the form ``a-b`` or
    ``a-`` itself with a 206 (as a real origin would), to show that such a 206 is never
    stored."""

    async def doc(request: web.Request) -> web.Response:
        headers = {
            "ETag": ETAG,
            "Last-Modified": LAST_MODIFIED,
            "Date": format_http_date(clock.now),
            "Cache-Control": "max-age=60",
            "Content-Type": "text/plain",
            "Vary": "X-Variant",
        }
        asked = request.headers.get("Range", "")
        if asked.startswith("bytes=") and "," not in asked and not asked[6:].startswith("-"):
            first, _, last = asked[6:].partition("-")
            end = len(BODY) - 1 if not last else int(last)
            headers["Content-Range"] = f"bytes {first}-{end}/{len(BODY)}"
            return web.Response(status=206, body=BODY[int(first) : end + 1], headers=headers)
        return web.Response(status=status, body=BODY, headers=headers)

    origin.route("/doc", doc)


@pytest.fixture
async def doc(origin: Origin, clock: FakeClock) -> str:
    """The document's URL, its origin started."""
    document(origin, clock)
    await origin.start()
    return origin.url("/doc")


async def small(request: web.Request) -> web.Response:
    return web.Response(body=b"x", headers={"Cache-Control": "max-age=60"})


# (the caller's headers) -> (status, body, Content-Range)
STORED_CASES: list[tuple[dict[str, str], tuple[int, bytes, str | None]]] = [
    ({"Range": "bytes=0-1"}, (206, b"01", "bytes 0-1/11")),  # first bytes
    ({"Range": "bytes=3-5"}, (206, b"345", "bytes 3-5/11")),  # middle
    ({"Range": "bytes=-1"}, (206, b"A", "bytes 10-10/11")),  # suffix
    ({"Range": "bytes=-50"}, (206, BODY, "bytes 0-10/11")),
    ({"Range": "bytes=1-"}, (206, BODY[1:], "bytes 1-10/11")),  # open-ended
    ({"Range": "bytes=8-99"}, (206, b"89A", "bytes 8-10/11")),
    ({"Range": "bytes=11-"}, (416, b"", "bytes */11")),  # past the end
    ({"Range": "bytes=2-1"}, (200, BODY, None)),  # invalid: ignored (RFC 9110 §14.2)
    ({"Range": "lines=1-2"}, (200, BODY, None)),  # another unit: ignored
    ({"Range": "bytes=0-1,4-5"}, (200, BODY, None)),  # several ranges: the whole 200
    ({"Range": "bytes=0-1", "If-Range": ETAG}, (206, b"01", "bytes 0-1/11")),
    ({"Range": "bytes=0-1", "If-Range": '"v0"'}, (200, BODY, None)),
    ({"Range": "bytes=0-1", "If-Range": f"W/{ETAG}"}, (200, BODY, None)),  # weak: no match
    ({"Range": "bytes=0-1", "If-Range": LAST_MODIFIED}, (206, b"01", "bytes 0-1/11")),
    ({"If-Range": ETAG}, (200, BODY, None)),  # If-Range alone is ignored (§13.1.5)
    ({"Range": "bytes=0-1", "If-None-Match": ETAG}, (304, b"", None)),  # a 304 first (§13.2.2)
    ({"Range": "bytes=0-1", "If-None-Match": '"v0"'}, (206, b"01", "bytes 0-1/11")),
]


@pytest.mark.parametrize(("headers", "expected"), STORED_CASES)
async def test_a_range_is_answered_from_the_stored_200(
    origin: Origin,
    clock: FakeClock,
    doc: str,
    headers: dict[str, str],
    expected: tuple[Any, ...],
) -> None:
    async with CoalescingSession(ttl=600, clock=clock) as s:
        assert (await s.get(doc)).cache_status == "miss"
        clock.advance(5)
        async with s.get(doc, headers=headers) as r:
            got = (r.status, await r.read(), r.headers.get("Content-Range"))
            assert got == expected
            assert (r.cache_status, r.from_cache, r.cache_reason) == ("hit", True, None)
            assert r.headers["Age"] == "5"
            if r.status == 206:
                assert r.headers["Content-Length"] == str(len(got[1]))
                assert r.headers["ETag"] == ETAG and r.headers["Content-Type"] == "text/plain"
            if r.status == 416:
                assert "ETag" not in r.headers and "Content-Type" not in r.headers
        assert origin.calls["/doc"] == 1  # answered from storage: no origin call
        assert (s.stats.requests, s.stats.hits, s.stats.misses) == (2, 1, 1)


async def test_many_range_callers_at_once_each_get_their_own_slice(
    origin: Origin, clock: FakeClock, doc: str
) -> None:
    async with CoalescingSession(ttl=600, clock=clock) as s:
        await s.get(doc)
        who = [(i % 11, i % 11 + i % 3) for i in range(100)]
        answers = await asyncio.gather(
            *(s.get(doc, headers={"Range": f"bytes={a}-{b}"}) for a, b in who)
        )
        for (a, b), r in zip(who, answers, strict=True):
            assert (r.status, await r.read()) == (206, BODY[a : b + 1])
        assert origin.calls["/doc"] == 1
        assert s.stats.hits == 100


async def test_nothing_stored_a_range_goes_to_the_origin_alone_and_its_206_is_not_stored(
    origin: Origin, clock: FakeClock, doc: str
) -> None:
    url = doc
    async with CoalescingSession(ttl=600, clock=clock) as s:
        for n in (1, 2):  # the origin's 206 is never stored: the second goes there too
            async with s.get(url, headers={"Range": "bytes=0-1"}) as r:
                assert (r.status, await r.read(), r.cache_status) == (206, b"01", "bypass")
                assert r.cache_reason == "range request"
            assert origin.calls["/doc"] == n
        async with s.get(url) as whole:  # nor as the whole response
            assert (whole.status, await whole.read(), whole.cache_status) == (200, BODY, "miss")
        assert origin.calls["/doc"] == 3
        assert s.stats.stored == 1
        async with s.get(url, headers={"Range": "bytes=0-1"}) as r:
            assert (r.status, await r.read(), r.cache_status) == (206, b"01", "hit")
        assert origin.calls["/doc"] == 3


async def test_range_callers_never_join_a_flight(
    origin: Origin, clock: FakeClock, doc: str
) -> None:
    async with CoalescingSession(ttl=600, clock=clock) as s:
        got = await asyncio.gather(*(s.get(doc, headers={"Range": "bytes=0-1"}) for _ in range(5)))
        assert [r.cache_status for r in got] == ["bypass"] * 5
        assert origin.calls["/doc"] == 5
        assert s.stats.stored == 0


@pytest.mark.parametrize(
    "why",
    ["stale", "not a 200", "another variant", "max-age=0", "max-age=1", "if-match", "post"],
)
async def test_what_the_caller_may_not_use_sends_the_range_to_the_origin(
    origin: Origin, clock: FakeClock, why: str
) -> None:
    document(origin, clock, status=404 if why == "not a 200" else 200)
    origin.route("/doc", small, method="POST")
    await origin.start()
    policy = CachePolicy(status_ttl={404: 600}, methods={"GET", "HEAD", "POST"})
    async with CoalescingSession(ttl=600, clock=clock, policy=policy) as s:
        await s.get(origin.url("/doc"), headers={"X-Variant": "a"})
        assert s.stats.stored == 1
        headers = {"Range": "bytes=0-1", "X-Variant": "a"}
        method = "GET"
        if why == "stale":
            clock.advance(61)
        elif why == "another variant":
            headers["X-Variant"] = "b"
        elif why in ("max-age=0", "max-age=1"):  # the caller's own Cache-Control
            headers["Cache-Control"] = why
            clock.advance(5)
        elif why == "if-match":
            headers["If-Match"] = ETAG
        elif why == "post":
            method = "POST"
        async with s.request(method, origin.url("/doc"), headers=headers) as r:
            await r.read()
            assert (r.cache_status, r.cache_reason) == ("bypass", "range request")
        assert origin.calls["/doc"] == 2
        assert (s.stats.hits, s.stats.bypassed) == (0, 1)


async def test_a_head_with_range_is_a_plain_head_answered_from_storage(
    origin: Origin, clock: FakeClock, doc: str
) -> None:
    async with CoalescingSession(ttl=600, clock=clock) as s:
        await s.head(doc)
        async with s.head(doc, headers={"Range": "bytes=0-1"}) as r:
            assert (r.status, r.cache_status, await r.read()) == (200, "hit", b"")
            assert "Content-Range" not in r.headers
        assert origin.calls["/doc"] == 1


# -- a streamed stored body ------------------------------------------------------------------


class Reader:
    def __init__(self, data: bytes, short: bool) -> None:
        self.data = data
        self.short = short
        self.closed = False

    async def read(self, n: int = -1) -> bytes:
        if self.short and (n < 0 or n >= len(self.data)):
            raise TruncatedBodyError("the file ended")  # before the end of the range
        out, self.data = (self.data, b"") if n < 0 else (self.data[:n], self.data[n:])
        return out

    def close(self) -> None:
        self.closed = True


class Streamed:
    """A stored body not held in memory: records the ranges its readers are asked for."""

    def __init__(self, data: bytes, short: bool = False) -> None:
        self.data = data
        self.short = short
        self.asked: list[tuple[int, int | None]] = []
        self.readers: list[Reader] = []

    @property
    def length(self) -> int:
        return len(self.data)

    def reader(self, start: int = 0, end: int | None = None) -> BodyReader:
        self.asked.append((start, end))
        self.readers.append(Reader(self.data[start:end], self.short))
        return self.readers[-1]

    async def complete(self) -> int:
        return len(self.data)


async def stored_as_stream(
    s: CoalescingSession, storage: MemoryStorage, url: str, body: Streamed
) -> None:
    """Store ``url``'s response through the session, then swap its body for ``body``."""
    await s.get(url)
    await s._core.drain()  # the write runs in the background
    ((key, snap),) = [entry async for entry in storage.entries()]
    assert isinstance(snap, Snapshot)
    await storage.set(key, replace(snap, body=b"", stream=body), ttl=600)


async def test_a_streamed_body_is_ranged_through_a_reader_of_the_range_only(
    origin: Origin,
) -> None:
    origin.route("/big", small)
    await origin.start()
    storage = MemoryStorage()
    big = Streamed(bytes(range(256)) * 4096)  # 1 MiB
    async with CoalescingSession(ttl=600, storage=storage) as s:
        await stored_as_stream(s, storage, origin.url("/big"), big)
        tail = {"Range": "bytes=-1024"}
        async with s.get(origin.url("/big"), headers=tail) as r:
            assert (r.status, r.cache_status) == (206, "hit")
            assert (
                r.headers["Content-Range"]
                == f"bytes {big.length - 1024}-{big.length - 1}/{big.length}"
            )
            assert big.asked == []  # nothing read before the caller reads
            chunks = [c async for c in r.content.iter_chunked(100)]
            assert b"".join(chunks) == big.data[-1024:]
        assert big.asked == [(big.length - 1024, big.length)]  # the range, never the whole
        assert big.readers[0].closed
        async with s.get(origin.url("/big"), headers={"Range": "bytes=10-19"}) as r:
            assert await r.read() == big.data[10:20]
            assert await r.text("latin-1") == big.data[10:20].decode("latin-1")
        assert big.asked[-1] == (10, 20)
        async with s.get(origin.url("/big")) as r:  # a plain hit is another face's work
            assert r.cache_status == "hit"
        assert origin.calls["/big"] == 1


async def test_a_streamed_body_that_ends_short_is_a_payload_error(origin: Origin) -> None:
    origin.route("/big", small)
    await origin.start()
    storage = MemoryStorage()
    async with CoalescingSession(ttl=600, storage=storage) as s:
        short = Streamed(b"abcdef", short=True)
        await stored_as_stream(s, storage, origin.url("/big"), short)
        async with s.get(origin.url("/big"), headers={"Range": "bytes=2-"}) as r:
            assert r.status == 206
            with pytest.raises(aiohttp.ClientPayloadError):
                await r.read()
        assert short.readers[0].closed  # freed at once


# -- cache-tests, group "partial" (https://github.com/http-tests/cache-tests, tests/partial.mjs) --


@pytest.mark.parametrize(
    ("test_id", "body", "asked", "expected"),
    [
        ("partial-store-complete-reuse-partial", b"01234567890", "bytes=0-1", b"01"),
        ("partial-store-complete-reuse-partial-no-last", b"01234567890", "bytes=1-", b"1234567890"),
        ("partial-store-complete-reuse-partial-suffix", b"0123456789A", "bytes=-1", b"A"),
    ],
)
async def test_cache_tests_partial_store_complete_reuse_partial(
    origin: Origin, test_id: str, body: bytes, asked: str, expected: bytes
) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Cache-Control": "max-age=3600"})

    origin.route("/p", page)
    await origin.start()
    async with CoalescingSession(ttl=0, policy=CachePolicy(freshness="http")) as s:
        await (await s.get(origin.url("/p"))).read()
        async with s.get(origin.url("/p"), headers={"Range": asked}) as r:
            assert (r.status, await r.read(), r.from_cache) == (206, expected, True)
        assert origin.calls["/p"] == 1, test_id


@pytest.mark.parametrize("test_id", ["partial-use-headers", "partial-use-stored-headers"])
async def test_cache_tests_partial_use_headers(origin: Origin, test_id: str) -> None:
    async def page(request: web.Request) -> web.Response:
        n = origin.calls["/p"]
        headers = {"Cache-Control": "max-age=3600", "A": str(n)}
        return web.Response(body=b"01234567890", headers=headers)

    origin.route("/p", page)
    await origin.start()
    async with CoalescingSession(ttl=0, policy=CachePolicy(freshness="http")) as s:
        await (await s.get(origin.url("/p"))).read()
        async with s.get(origin.url("/p"), headers={"Range": "bytes=0-1"}) as r:
            assert (r.status, await r.read(), r.from_cache) == (206, b"01", True)
            assert r.headers["A"] == "1"  # the stored response's (partial-use-stored-headers)
        assert origin.calls["/p"] == 1


async def test_cache_tests_partial_store_partial_is_not_done(origin: Origin) -> None:
    """The five ``partial-store-partial-*`` tests need a stored 206: storing partial responses
    is not done (a 206 is never stored), so a second range request goes to the origin."""

    async def page(request: web.Request) -> web.Response:
        headers = {"Cache-Control": "max-age=3600", "Content-Range": "bytes 4-9/10"}
        return web.Response(status=206, body=b"01234", headers=headers)

    origin.route("/p", page)
    await origin.start()
    async with CoalescingSession(ttl=0, policy=CachePolicy(freshness="http")) as s:
        for _ in range(2):
            async with s.get(origin.url("/p"), headers={"Range": "bytes=-5"}) as r:
                assert (r.status, r.from_cache) == (206, False)
        assert origin.calls["/p"] == 2


async def test_a_body_stored_decoded_is_not_ranged(origin: Origin) -> None:
    """aiohttp decodes a gzip body; the session stores it decoded, so the offsets of the coded
    representation the origin would count are not the stored bytes': the origin answers."""

    async def coded(request: web.Request) -> web.Response:
        resp = web.Response(body=BODY * 100, headers={"Cache-Control": "max-age=60"})
        resp.enable_compression(web.ContentCoding.gzip)
        return resp

    origin.route("/coded", coded)
    await origin.start()
    async with CoalescingSession(ttl=600) as s:
        async with s.get(origin.url("/coded")) as r:
            assert (r.headers["Content-Encoding"], await r.read()) == ("gzip", BODY * 100)
        async with s.get(origin.url("/coded"), headers={"Range": "bytes=0-1"}) as r:
            assert (r.cache_status, r.cache_reason) == ("bypass", "range request")
        assert origin.calls["/coded"] == 2
