"""The caller's own Cache-Control (RFC 9111 §5.2.1): honoured by the client, and by the
middleware only with ``request_cache_control=True`` (off by default, as in nginx and Varnish).

The origins send their own ``Date`` from the fake clock (see tests/test_age.py).
"""

from __future__ import annotations

import aiohttp
import pytest
from aiohttp import web
from conftest import FakeClock, Origin

from coalesce_client import CoalescingSession, coalesce_middleware
from coalesce_client.spec.dates import format_http_date


def dated(origin: Origin, clock: FakeClock) -> None:
    async def page(request: web.Request) -> web.Response:
        n = origin.calls[request.path]
        return web.Response(text=f"page #{n}", headers={"Date": format_http_date(clock.now)})

    origin.route("/page", page)


async def status_of(s: CoalescingSession, url: str, cache_control: str | None = None) -> str:
    headers = {} if cache_control is None else {"Cache-Control": cache_control}
    async with s.get(url, headers=headers) as resp:
        await resp.read()
        return f"{resp.status} {resp.cache_status}"


async def test_the_client_honours_its_callers_request_directives(
    origin: Origin, clock: FakeClock
) -> None:
    dated(origin, clock)
    await origin.start()
    url = origin.url("/page")
    async with CoalescingSession(ttl=60, clock=clock) as s:
        assert await status_of(s, url, "only-if-cached") == "504 miss"  # not stored: no origin
        assert origin.calls["/page"] == 0
        assert await status_of(s, url) == "200 miss"
        clock.advance(10)
        assert await status_of(s, url, "max-age=20") == "200 hit"
        assert await status_of(s, url, "max-age=5") == "200 miss"  # too old for this caller
        clock.advance(10)
        # Stored again at 10 s (the max-age=5 call), so 50 s of freshness are left at 20 s.
        assert await status_of(s, url, "min-fresh=51") == "200 miss"
        assert await status_of(s, url, "min-fresh=61") == "200 miss"  # stored again: 60 s left
        assert await status_of(s, url, "min-fresh=59") == "200 hit"
        assert await status_of(s, url, "no-cache") == "200 miss"  # to the origin, stored again
        assert await status_of(s, url, "only-if-cached") == "200 hit"
        async with s.get(url, headers={"Pragma": "no-cache"}) as resp:
            assert resp.cache_status == "miss"
        async with s.get(url, headers={"Pragma": "no-cache", "Cache-Control": "max-age=60"}) as r:
            assert r.cache_status == "hit"  # §5.4: with Cache-Control, Pragma is ignored
        assert await status_of(s, url, "no-store, max-age=0") == "200 bypass"
    assert origin.calls["/page"] == 7


@pytest.mark.parametrize("honoured", [False, True])
async def test_the_middleware_honours_request_directives_only_when_told(
    clock: FakeClock, honoured: bool
) -> None:
    mw = coalesce_middleware(ttl=60, clock=clock, request_cache_control=honoured)
    origin = Origin(middlewares=[mw])
    dated(origin, clock)
    await origin.start()
    try:
        async with aiohttp.ClientSession() as client:

            async def get(**headers: str) -> str:
                async with client.get(origin.url("/page"), headers=headers) as r:
                    await r.read()
                    return f"{r.status} {r.headers['X-Cache']}"

            assert await get() == "200 MISS"
            clock.advance(10)
            first = [
                await get(**{"Cache-Control": "max-age=5"}),  # 10 s old: too old if honoured
                await get(**{"Cache-Control": "no-cache"}),
                await get(Pragma="no-cache"),
            ]
    finally:
        await origin.stop()
    if honoured:
        assert first == ["200 MISS", "200 MISS", "200 MISS"]
        assert origin.calls["/page"] == 4
    else:  # a client cannot switch off the stampede protection
        assert first == ["200 HIT", "200 HIT", "200 HIT"]
        assert origin.calls["/page"] == 1
