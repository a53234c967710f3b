"""CoalescingSession(shared=True): a shared cache in the RFC 9111 sense, for gateways, and
url_ttl through both faces."""

from __future__ import annotations

import asyncio
import email.utils

import aiohttp
from aiohttp import web
from conftest import FakeClock, Origin, finished

from coalesce_client import CachePolicy, CoalescingSession, coalesce_middleware


def counted_route(origin: Origin, path: str, headers: dict[str, str]) -> None:
    async def handler(request: web.Request) -> web.Response:
        n = origin.calls[request.path]
        await origin.wait()
        return web.Response(text=f"{request.path} #{n}", headers=headers)

    origin.route(path, handler)


async def burst(s: CoalescingSession, url: str, n: int, origin: Origin) -> list[str]:
    origin.gate.clear()
    calls = [asyncio.ensure_future(s.get(url)) for _ in range(n)]
    await origin.at_gate.reach(1, "the first request at the origin")
    origin.gate.set()
    responses = await finished(asyncio.gather(*calls), "the burst")
    return [r.cache_status for r in responses]


async def test_a_shared_session_never_stores_nor_shares_a_private_response(origin: Origin) -> None:
    counted_route(origin, "/me", {"Cache-Control": "private, max-age=60"})
    await origin.start()
    async with CoalescingSession(ttl=60, shared=True) as s:
        statuses = await burst(s, origin.url("/me"), 20, origin)
        assert statuses == ["miss"] * 20  # nobody took another's private answer
        assert origin.calls["/me"] == 20
        assert (await s.get(origin.url("/me"))).cache_status != "hit"
        assert s.stats.stored == 0
    async with CoalescingSession(ttl=60) as private_cache:  # the default: a private cache
        assert (await private_cache.get(origin.url("/me"))).cache_status == "miss"
        assert (await private_cache.get(origin.url("/me"))).cache_status == "hit"


async def test_a_shared_session_takes_s_maxage_over_max_age(
    origin: Origin, clock: FakeClock
) -> None:
    # The origin's Date on the session's clock: its age on arrival is then 0.
    date = email.utils.formatdate(clock.now, usegmt=True)
    counted_route(origin, "/s", {"Cache-Control": "max-age=600, s-maxage=5", "Date": date})
    await origin.start()
    async with CoalescingSession(ttl=3600, shared=True, clock=clock) as s:
        await s.get(origin.url("/s"))
        clock.advance(4)
        assert (await s.get(origin.url("/s"))).cache_status == "hit"
        clock.advance(2)
        assert (await s.get(origin.url("/s"))).cache_status == "miss"
    assert origin.calls["/s"] == 2


async def test_url_ttl_decides_per_url_in_the_client(origin: Origin) -> None:
    counted_route(origin, "/static/app.js", {})
    counted_route(origin, "/live/feed", {})
    await origin.start()
    policy = CachePolicy(url_ttl={"*/live/*": 0, "127.0.0.1:*/static/*": 3600})
    async with CoalescingSession(ttl=60, policy=policy) as s:
        for _ in range(3):
            await s.get(origin.url("/static/app.js"))
            await s.get(origin.url("/live/feed"))
    assert (origin.calls["/static/app.js"], origin.calls["/live/feed"]) == (1, 3)


async def test_url_ttl_decides_per_url_in_the_middleware() -> None:
    mw = coalesce_middleware(ttl=60, policy=CachePolicy(url_ttl={"*/live/*": 0}))
    origin = Origin(middlewares=[mw])
    counted_route(origin, "/live/feed", {})
    counted_route(origin, "/page", {})
    await origin.start()
    try:
        async with aiohttp.ClientSession() as client:
            for _ in range(3):
                for path in ("/live/feed", "/page"):
                    async with client.get(origin.url(path)) as r:
                        await r.read()
    finally:
        await origin.stop()
    assert (origin.calls["/live/feed"], origin.calls["/page"]) == (3, 1)
