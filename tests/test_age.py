"""Age on every replay (issue 12, RFC 9111 §4.2.3 and §5.1), both faces, with a fake clock.

The origins here send their own ``Date``, written from the fake clock: aiohttp's would be the real
time, years away from the fake one, and every age would be that gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone

import aiohttp
from aiohttp import web
from conftest import FakeClock, Origin
from multidict import CIMultiDictProxy

from coalesce_client import CachePolicy, CoalescingSession, coalesce_middleware
from coalesce_client.spec.dates import format_http_date


@contextlib.asynccontextmanager
async def serving(origin: Origin) -> AsyncIterator[aiohttp.ClientSession]:
    await origin.start()
    try:
        async with aiohttp.ClientSession() as client:
            yield client
    finally:
        await origin.stop()


async def fetch(client: aiohttp.ClientSession, url: str) -> tuple[int, str, CIMultiDictProxy[str]]:
    async with client.get(url) as r:
        return r.status, await r.text(), r.headers


def dated_origin(
    origin: Origin, clock: FakeClock, *, date_ago: float = 0, age: str | None = None
) -> None:
    """A ``/dated`` route whose response is dated ``date_ago`` seconds before the fake now."""

    async def dated(request: web.Request) -> web.Response:
        headers = {"Date": format_http_date(clock.now - date_ago)}
        if age is not None:
            headers["Age"] = age
        await origin.wait()
        return web.Response(text="dated", headers=headers)

    origin.route("/dated", dated)


def utc(at: float) -> datetime:
    return datetime.fromtimestamp(at, timezone.utc)


# -- the client -----------------------------------------------------------------------------------


async def test_client_hit_5_s_after_storing_carries_age_5(origin: Origin, clock: FakeClock) -> None:
    dated_origin(origin, clock)
    await origin.start()
    async with CoalescingSession(ttl=60, clock=clock) as s:
        miss = await s.get(origin.url("/dated"))
        clock.advance(5)
        hit = await s.get(origin.url("/dated"))
        clock.advance(0.5)  # delta-seconds: rounded down
        later = await s.get(origin.url("/dated"))
    assert (miss.cache_status, hit.cache_status, later.cache_status) == ("miss", "hit", "hit")
    assert "Age" not in miss.headers  # the origin's own answer: nothing added
    assert hit.headers["Age"] == "5" and hit.age == 5.0
    assert later.headers["Age"] == "5" and later.age == 5.5
    assert (b"Age", b"5") in hit.raw_headers
    assert origin.calls["/dated"] == 1


async def test_client_origin_age_30_plus_100_s_resident_gives_130(
    origin: Origin, clock: FakeClock
) -> None:
    dated_origin(origin, clock, age="30")
    await origin.start()
    async with CoalescingSession(ttl=600, clock=clock) as s:
        miss = await s.get(origin.url("/dated"))
        clock.advance(100)
        hit = await s.get(origin.url("/dated"))
        bypass = await s.get(origin.url("/dated"), cache=False)
        await bypass.read()
    assert miss.headers.getall("Age") == ["30"]  # the origin's, untouched
    assert hit.headers.getall("Age") == ["130"]  # replaced, not added to
    # RFC 9111 §4.2.3 on every path: the origin's Age counts for its own answer too.
    assert (miss.cache_status, miss.age) == ("miss", 30.0)
    assert (hit.cache_status, hit.age) == ("hit", 130.0)
    assert (bypass.cache_status, bypass.age, bypass.headers["Age"]) == ("bypass", 30.0, "30")


async def test_client_date_20_s_in_the_past_gives_apparent_age_20(
    origin: Origin, clock: FakeClock
) -> None:
    dated_origin(origin, clock, date_ago=20)
    await origin.start()
    async with CoalescingSession(ttl=60, clock=clock) as s:
        await s.get(origin.url("/dated"))
        hit = await s.get(origin.url("/dated"))
    assert hit.headers["Age"] == "20"


async def test_client_coalesced_callers_carry_age_and_the_leader_does_not(
    origin: Origin, clock: FakeClock
) -> None:
    dated_origin(origin, clock, date_ago=20)
    await origin.start()
    origin.gate.clear()
    async with CoalescingSession(ttl=0, clock=clock) as s:  # shared, not stored
        tasks = [asyncio.ensure_future(s.get(origin.url("/dated"))) for _ in range(5)]
        await origin.at_gate.reach(1, "the leader's request at the gate")
        origin.gate.set()
        got = await asyncio.gather(*tasks)
    ages = Counter((r.cache_status, r.headers.get("Age")) for r in got)
    assert ages == {("miss", None): 1, ("coalesced", "20"): 4}
    assert origin.calls["/dated"] == 1


async def test_cached_response_attributes_of_a_miss_and_a_hit(
    origin: Origin, clock: FakeClock
) -> None:
    dated_origin(origin, clock)
    await origin.start()
    start = clock.now
    async with CoalescingSession(ttl=60, clock=clock) as s:
        miss = await s.get(origin.url("/dated"))
        clock.advance(5)
        hit = await s.get(origin.url("/dated"))
        bypass = await s.get(origin.url("/dated"), cache=False)
        await bypass.read()
    assert (miss.from_cache, miss.age) == (False, 0.0)
    assert (hit.from_cache, hit.age) == (True, 5.0)
    assert miss.created_at == hit.created_at == utc(start)
    assert miss.created_at.tzinfo is timezone.utc
    assert miss.expires == hit.expires == utc(start) + timedelta(seconds=60)
    assert (bypass.from_cache, bypass.age, bypass.expires) == (False, 0.0, None)
    assert bypass.created_at == utc(start + 5)


async def test_a_miss_dated_20_s_ago_is_20_s_old(origin: Origin, clock: FakeClock) -> None:
    dated_origin(origin, clock, date_ago=20)  # RFC 9111 §4.2.3: the apparent age counts
    await origin.start()
    async with CoalescingSession(ttl=0, clock=clock) as s:
        miss = await s.get(origin.url("/dated"))
    assert (miss.cache_status, miss.age) == ("miss", 20.0)
    assert "Age" not in miss.headers  # the origin's own answer: nothing added


async def test_a_response_not_stored_has_no_expiry(origin: Origin, clock: FakeClock) -> None:
    dated_origin(origin, clock)
    await origin.start()
    async with CoalescingSession(ttl=0, clock=clock) as s:
        miss = await s.get(origin.url("/dated"))
    assert (miss.cache_status, miss.expires) == ("miss", None)


# -- the middleware -------------------------------------------------------------------------------


async def test_middleware_replays_the_handlers_date_and_its_age(clock: FakeClock) -> None:
    mw = coalesce_middleware(ttl=60, clock=clock)
    origin = Origin(middlewares=[mw])
    dated_origin(origin, clock, date_ago=20, age="3")
    date = format_http_date(clock.now - 20)
    async with serving(origin) as client:
        _, _, miss = await fetch(client, origin.url("/dated"))
        clock.advance(5)
        _, _, hit = await fetch(client, origin.url("/dated"))
    assert (miss["X-Cache"], miss["Date"], miss["Age"]) == ("MISS", date, "3")
    assert (hit["X-Cache"], hit.getall("Date"), hit.getall("Age")) == ("HIT", [date], ["25"])
    assert origin.calls["/dated"] == 1


async def test_middleware_stores_a_date_when_the_handler_sets_none(clock: FakeClock) -> None:
    mw = coalesce_middleware(ttl=60, clock=clock)
    origin = Origin(middlewares=[mw])

    async def undated(request: web.Request) -> web.Response:
        return web.Response(text="undated")

    origin.route("/undated", undated)
    stored = format_http_date(clock.now)  # when the handler returned, by the middleware's clock
    async with serving(origin) as client:
        await fetch(client, origin.url("/undated"))
        clock.advance(3)
        _, _, first = await fetch(client, origin.url("/undated"))
        clock.advance(4)
        _, _, second = await fetch(client, origin.url("/undated"))
    assert (first["Date"], first["Age"]) == (stored, "3")
    assert (second["Date"], second["Age"]) == (stored, "7")  # the same Date, an older age


async def test_middleware_hits_count_their_age_to_the_second_every_time(clock: FakeClock) -> None:
    # From its third replay a stored response is copied from a template made once (replay.py),
    # and its Age text kept while the age stays within one second: every hit must still carry
    # its own age, rounded down, as the clock moves by fractions, whole seconds, and back.
    mw = coalesce_middleware(ttl=3600, clock=clock)
    origin = Origin(middlewares=[mw])
    dated_origin(origin, clock, date_ago=0)
    steps = [0.25, 0.5, 0.125, 0.125, 0.875, 0.125, 1.5, 100.0, -0.75, -200.0, 300.0]  # exact
    async with serving(origin) as client:
        await fetch(client, origin.url("/dated"))
        ages = []
        for step in steps:
            clock.advance(step)
            _, body, headers = await fetch(client, origin.url("/dated"))
            ages.append((headers["X-Cache"], headers.getall("Age"), body))
    expected = ["0", "0", "0", "1", "1", "2", "3", "103", "102", "0", "202"]
    assert ages == [("HIT", [age], "dated") for age in expected]
    assert origin.calls["/dated"] == 1


async def test_middleware_waiters_carry_age_and_the_leader_does_not(clock: FakeClock) -> None:
    mw = coalesce_middleware(ttl=60, clock=clock)
    origin = Origin(middlewares=[mw])
    dated_origin(origin, clock, date_ago=20)
    async with serving(origin) as client:
        origin.gate.clear()
        tasks = [asyncio.ensure_future(fetch(client, origin.url("/dated"))) for _ in range(5)]
        await origin.entered.reach(5, "5 requests in the middleware")
        origin.gate.set()
        got = await asyncio.gather(*tasks)
    ages = Counter((h["X-Cache"], h.get("Age")) for _, _, h in got)
    assert ages == {("MISS", None): 1, ("COALESCED", "20"): 4}


# -- the age on arrival decides how long a response stays fresh (RFC 9111 §4.2) -------------------


def fresh_route(origin: Origin, clock: FakeClock, path: str, **headers: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=path, headers={"Date": format_http_date(clock.now), **headers})

    origin.route(path, handler)


async def test_an_origin_age_shortens_the_stored_lifetime(origin: Origin, clock: FakeClock) -> None:
    fresh_route(origin, clock, "/aged", **{"Cache-Control": "max-age=60", "Age": "50"})
    fresh_route(origin, clock, "/gone", Expires=format_http_date(clock.now - 1))

    async def old(request: web.Request) -> web.Response:  # dated 30 s before it was received
        date = format_http_date(clock.now - 30)
        return web.Response(text="old", headers={"Date": date, "Cache-Control": "max-age=60"})

    origin.route("/old", old)
    await origin.start()
    async with CoalescingSession(ttl=600, clock=clock) as s:
        assert (await s.get(origin.url("/aged"))).cache_status == "miss"
        clock.advance(9)
        assert (await s.get(origin.url("/aged"))).cache_status == "hit"
        clock.advance(2)  # 50 + 11 s old: past max-age=60
        assert (await s.get(origin.url("/aged"))).cache_status == "miss"
        await s.get(origin.url("/gone"))
        assert (await s.get(origin.url("/gone"))).cache_status == "miss"  # Expires in the past
        await s.get(origin.url("/old"))
        clock.advance(29)
        assert (await s.get(origin.url("/old"))).cache_status == "hit"
        clock.advance(2)  # 30 s old on arrival (its Date), 31 s since: past max-age=60
        assert (await s.get(origin.url("/old"))).cache_status == "miss"
    assert (origin.calls["/aged"], origin.calls["/gone"], origin.calls["/old"]) == (2, 2, 2)


async def test_http_freshness_takes_the_origins_lifetime_in_the_middleware(
    clock: FakeClock,
) -> None:
    mw = coalesce_middleware(ttl=0, policy=CachePolicy(freshness="http"), clock=clock)
    origin = Origin(middlewares=[mw])
    fresh_route(origin, clock, "/long", **{"Cache-Control": "max-age=3600"})
    fresh_route(origin, clock, "/silent")
    async with serving(origin) as client:
        for _ in range(3):
            await fetch(client, origin.url("/long"))
            await fetch(client, origin.url("/silent"))
            clock.advance(1000)
    # Stored for an hour though the middleware's ttl is 0; nothing the origin was silent about.
    assert (origin.calls["/long"], origin.calls["/silent"]) == (1, 3)


async def test_http_freshness_takes_the_origins_lifetime_in_the_client(
    origin: Origin, clock: FakeClock
) -> None:
    fresh_route(origin, clock, "/long", **{"Cache-Control": "max-age=3600"})
    fresh_route(origin, clock, "/silent")
    await origin.start()
    async with CoalescingSession(ttl=0, policy=CachePolicy(freshness="http"), clock=clock) as s:
        for _ in range(3):
            await s.get(origin.url("/long"))
            await s.get(origin.url("/silent"))
            clock.advance(1000)
    assert (origin.calls["/long"], origin.calls["/silent"]) == (1, 3)
