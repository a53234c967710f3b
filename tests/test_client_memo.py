"""What a session remembers of its plain calls (issue 20): a call's identity and its flight request
are remembered from the second call of its request parts on (``keys.Sightings``), so that a URL
called once (a scraper's) leaves nothing behind for the collector to walk again and again, while
a URL called again is answered from the memo. A real origin on 127.0.0.1 counts its calls."""

from __future__ import annotations

import asyncio
import gc

import pytest
from aiohttp import web
from conftest import Origin

from coalesce_client import CoalescingSession
from coalesce_client.client.call import Identity
from coalesce_client.client.calls import Sending
from coalesce_client.core.keys import _MEMO_SIZE, UNSEEN, Sightings


def alive(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is kind)


@pytest.fixture
async def items(origin: Origin) -> Origin:
    async def item(request: web.Request) -> web.Response:
        return web.Response(text=request.path, headers={"Cache-Control": "max-age=60"})

    origin.route("/item/{n}", item)
    await origin.start()
    return origin


async def test_urls_called_once_leave_no_identity_nor_flight_request_behind(items: Origin) -> None:
    before = alive(Identity), alive(Sending)
    async with CoalescingSession(ttl=60) as s:
        for n in range(50):
            async with s.get(items.url(f"/item/{n}")) as r:
                assert await r.text() == f"/item/{n}"
        assert (alive(Identity), alive(Sending)) == before  # 50 of each when remembered at once
        assert s.stats.misses == 50 and items.total == 50


async def test_a_url_called_again_is_remembered_from_its_second_call(items: Origin) -> None:
    url = items.url("/item/1")
    async with CoalescingSession(ttl=60) as s:
        statuses = []
        for calls in range(1, 5):
            async with s.get(url) as r:
                assert await r.text() == "/item/1"
                statuses.append(r.cache_status)
            assert len(s._memo) == (0 if calls == 1 else 1)
        remembered = next(iter(s._memo.values()))
        stored = [key for key in s._core._writer.storage._entries if key == remembered.key]
        assert stored[0] is remembered.key  # the first call's string: found by identity
        async with s.get(url) as r:
            await r.read()
        assert next(iter(s._memo.values())) is remembered  # the fifth call built none
        assert statuses == ["miss", "hit", "hit", "hit"] and items.calls["/item/1"] == 1


async def test_a_burst_of_one_url_builds_its_flight_request_twice_at_most(
    origin: Origin,
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text="slow", headers={"Cache-Control": "max-age=60"})

    origin.route("/slow", slow)
    await origin.start()
    origin.gate.clear()
    async with CoalescingSession(ttl=60) as s:

        async def one() -> str:
            async with s.get(origin.url("/slow")) as r:
                return await r.text()

        tasks = [asyncio.ensure_future(one()) for _ in range(20)]
        await origin.arrived.wait()
        assert alive(Sending) <= 2  # the leader's own, then the one the followers share
        origin.gate.set()
        assert await asyncio.gather(*tasks) == ["slow"] * 20
        assert origin.calls["/slow"] == 1


def test_sightings_give_the_first_calls_key_from_the_second_sight_and_stay_bounded() -> None:
    seen = Sightings()
    first, again = "".join(["a"] * 64), "".join(["a"] * 64)
    assert first == again and first is not again
    assert seen.sighted(("GET", "u"), first) is UNSEEN
    assert seen.sighted(("GET", "u"), again) is first
    assert seen.sighted(("GET", "v"), None) is UNSEEN
    assert seen.sighted(("GET", "v"), None) is None  # a bypass's identity: seen, no key
    for n in range(2 * _MEMO_SIZE):
        seen.sighted(("GET", n), str(n))
    assert 0 < len(seen._keys) <= _MEMO_SIZE
