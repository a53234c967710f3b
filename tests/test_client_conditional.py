"""The session answers its caller's own If-None-Match / If-Modified-Since from a fresh stored
response (RFC 9111 §4.3.2, RFC 9110 §13.1), as the middleware does (both behind a disk too): a 304
only when the stored response is not modified for that caller, else the stored response; nothing
fresh stored: the caller's own request (a bypass), never a flight."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from aiohttp import web
from conftest import FakeClock, Origin

from coalesce_client import CachePolicy, CoalescingSession, DiskStorage, coalesce_middleware
from coalesce_client.spec.dates import format_http_date

ETAG = 'W/"v7"'
LAST_MODIFIED = "Wed, 21 Oct 2015 07:28:00 GMT"


def resource(origin: Origin, clock: FakeClock) -> None:
    async def doc(request: web.Request) -> web.Response:
        headers = {
            "ETag": ETAG,
            "Last-Modified": LAST_MODIFIED,
            "Cache-Control": "max-age=60",
            "Date": format_http_date(clock.now),
            "Content-Type": "text/plain",
            "X-Conditional": str("If-None-Match" in request.headers),
        }
        if request.headers.get("If-None-Match") == ETAG:
            return web.Response(status=304, headers=headers)
        return web.Response(text="the document", headers=headers)

    origin.route("/doc", doc)


# (what the caller sends, whether the stored response is not modified for it)
CASES: list[tuple[dict[str, str], bool]] = [
    ({"If-None-Match": ETAG}, True),
    ({"If-None-Match": '"v7"'}, True),  # weak comparison
    ({"If-None-Match": '"v1", W/"v7"'}, True),
    ({"If-None-Match": "*"}, True),
    ({"If-None-Match": '"v1"'}, False),
    ({"If-None-Match": "v7"}, False),  # not an entity-tag: nothing can be said
    ({"If-Modified-Since": LAST_MODIFIED}, True),
    ({"If-Modified-Since": "Thu, 22 Oct 2015 07:28:00 GMT"}, True),
    ({"If-Modified-Since": "Tue, 20 Oct 2015 07:28:00 GMT"}, False),
    ({"If-Modified-Since": "garbage"}, False),
    ({"If-None-Match": '"v1"', "If-Modified-Since": LAST_MODIFIED}, False),  # INM decides
]


async def test_many_callers_with_their_own_validators_each_get_their_own_answer(
    origin: Origin, clock: FakeClock
) -> None:
    resource(origin, clock)
    await origin.start()
    url = origin.url("/doc")
    async with CoalescingSession(ttl=600, clock=clock) as s:
        stored = await s.get(url)
        assert stored.cache_status == "miss"
        clock.advance(5)
        who = [CASES[i % len(CASES)] for i in range(220)]
        answers = await asyncio.gather(*(s.get(url, headers=h) for h, _ in who))
        for (_, unmodified), r in zip(who, answers, strict=True):
            if unmodified:
                assert (r.status, await r.read(), r.cache_status) == (304, b"", "hit")
                assert r.headers["ETag"] == ETAG and r.headers["Age"] == "5"
                assert "Content-Type" not in r.headers and "X-Conditional" not in r.headers
            else:
                assert (r.status, await r.text(), r.cache_status) == (200, "the document", "hit")
        assert origin.calls["/doc"] == 1  # every one of them answered from storage
        assert s.stats.hits == 220


async def test_nothing_fresh_stored_the_conditional_request_is_the_callers_own(
    origin: Origin, clock: FakeClock
) -> None:
    resource(origin, clock)
    await origin.start()
    url = origin.url("/doc")
    async with CoalescingSession(ttl=600, clock=clock) as s:
        first = await s.get(url, headers={"If-None-Match": ETAG})  # nothing stored
        assert (first.status, first.cache_status) == (304, "bypass")
        assert first.headers["X-Conditional"] == "True"  # the origin saw the condition
        await s.get(url)
        # Fresh, but the caller says no-cache: the origin decides.
        forced = await s.get(url, headers={"If-None-Match": ETAG, "Cache-Control": "no-cache"})
        assert forced.cache_status == "bypass"
        clock.advance(61)  # stale now: not answered from storage
        late = await s.get(url, headers={"If-None-Match": ETAG})
        assert (late.status, late.cache_status) == (304, "bypass")
        post = await s.post(url, headers={"If-None-Match": ETAG})
        assert (post.status, post.cache_status) == (405, "bypass")  # not a GET: never answered
    assert origin.calls["/doc"] == 4  # the GETs: the first, the plain one, late and forced


async def test_a_stored_error_ignores_the_precondition(origin: Origin, clock: FakeClock) -> None:
    async def gone(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no", headers={"ETag": ETAG})

    origin.route("/gone", gone)
    await origin.start()
    policy = CachePolicy(status_ttl={404: 60})
    async with CoalescingSession(ttl=600, clock=clock, policy=policy) as s:
        await s.get(origin.url("/gone"))
        r = await s.get(origin.url("/gone"), headers={"If-None-Match": ETAG})
        assert (r.status, r.cache_status) == (404, "hit")


async def test_behind_a_disk_storage_too(origin: Origin, clock: FakeClock, tmp_path: Path) -> None:
    """A storage read that waits (DiskStorage) answers a conditional request as memory does."""
    resource(origin, clock)
    await origin.start()
    url = origin.url("/doc")
    disk = DiskStorage(tmp_path / "cache", clock=clock)
    async with CoalescingSession(ttl=600, clock=clock, storage=disk) as s:
        await s.get(url)
        r = await s.get(url, headers={"If-None-Match": ETAG})
        other = await s.get(url, headers={"If-None-Match": '"v1"'})
    assert (r.status, r.cache_status) == (304, "hit")
    assert (other.status, await other.text(), other.cache_status) == (200, "the document", "hit")
    assert origin.calls["/doc"] == 1


async def test_middleware_behind_a_disk_storage_too(clock: FakeClock, tmp_path: Path) -> None:
    runs = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal runs
        runs += 1
        headers = {"ETag": ETAG, "Cache-Control": "max-age=60"}
        return web.Response(text="the document", headers=headers)

    disk = DiskStorage(tmp_path / "cache", clock=clock)
    mw = coalesce_middleware(ttl=600, clock=clock, storage=disk)
    app = web.Application(middlewares=[mw])
    app.router.add_get("/doc", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/doc"
    try:
        async with aiohttp.ClientSession() as client:
            await (await client.get(url)).read()
            async with client.get(url, headers={"If-None-Match": ETAG}) as r:
                assert (r.status, r.headers["X-Cache"]) == (304, "HIT")
    finally:
        await runner.cleanup()
        await mw.close()
    assert runs == 1
