"""CoalescingSession against a real aiohttp.web origin on 127.0.0.1 that counts its calls."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import warnings
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import FakeClock, LoopClock, Origin, finished, signalled, until

from coalesce_client import (
    CachedResponse,
    CachePolicy,
    CoalescingSession,
    MemoryStorage,
    Snapshot,
    Stats,
    cache_info,
)

# -- coalescing and caching -----------------------------------------------------------------------


async def test_500_concurrent_gets_make_one_upstream_request(
    origin: Origin, client_face: Any
) -> None:
    async def big(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(body=b"x" * 100_000, headers={"X-Thing": "1"})

    origin.route("/big", big)
    await origin.start()
    origin.gate.clear()
    async with client_face(ttl=60) as s:
        tasks = [asyncio.ensure_future(s.get(origin.url("/big"))) for _ in range(500)]
        await origin.at_gate.reach(1, "the leader's request at the gate")
        origin.gate.set()
        responses = await asyncio.gather(*tasks)
        bodies = await asyncio.gather(*(r.read() for r in responses))
        assert origin.calls["/big"] == 1
        assert all(r.status == 200 and r.headers["X-Thing"] == "1" for r in responses)
        assert all(b == b"x" * 100_000 for b in bodies)
        statuses = sorted(r.cache_status for r in responses)
        assert statuses.count("miss") == 1
        assert statuses.count("coalesced") == 499
        assert len({id(r) for r in responses}) == 500  # each caller its own object
        st = s.stats
        assert (st.requests, st.misses, st.coalesced, st.upstream, st.stored) == (500, 1, 499, 1, 1)


async def test_within_ttl_a_hit_after_it_a_miss(
    started: Origin, clock: FakeClock, client_face: Any
) -> None:
    async with client_face(ttl=10, clock=clock) as s:
        first = await s.get(started.url("/text"))
        clock.advance(9.9)
        second = await s.get(started.url("/text"))
        clock.advance(0.2)
        third = await s.get(started.url("/text"))
    assert [first.cache_status, second.cache_status, third.cache_status] == ["miss", "hit", "miss"]
    assert await second.text() == await first.text() == "hello /text #1"
    assert await third.text() == "hello /text #2"
    assert started.calls["/text"] == 2


async def test_ttl_zero_coalesces_but_stores_nothing(started: Origin) -> None:
    started.gate.clear()
    async with CoalescingSession(ttl=0) as s:
        tasks = [asyncio.ensure_future(s.get(started.url("/text"))) for _ in range(20)]
        await started.at_gate.reach(1, "the leader's request at the gate")
        started.gate.set()
        await asyncio.gather(*tasks)
        assert started.calls["/text"] == 1
        again = await s.get(started.url("/text"))
        assert again.cache_status == "miss"
        assert started.calls["/text"] == 2
        assert s.stats.stored == 0


async def test_per_call_cache_ttl_refresh_and_cache_false(
    started: Origin, clock: FakeClock
) -> None:
    url = started.url("/text")
    async with CoalescingSession(ttl=100, clock=clock) as s:
        await s.get(url, cache_ttl=5)
        clock.advance(6)
        assert (
            await s.get(url)
        ).cache_status == "miss"  # the call's 5 s won over the session's 100
        refreshed = await s.get(url, refresh=True)
        assert refreshed.cache_status == "miss"
        assert await refreshed.text() == "hello /text #3"
        hit = await s.get(url)
        assert hit.cache_status == "hit"
        assert await hit.text() == "hello /text #3"  # refresh stored its response
        bypass = await s.get(url, cache=False)
        assert bypass.cache_status == "bypass"
        assert await bypass.text() == "hello /text #4"
        assert (await s.get(url)).cache_status == "hit"  # cache=False stored nothing
        st = s.stats
    assert st.requests == 6
    assert st.requests == st.hits + st.misses + st.coalesced + st.bypassed
    assert (st.hits, st.misses, st.bypassed, st.upstream) == (2, 3, 1, 4)


async def test_ttl_precedence_call_then_status_then_session_capped_by_max_age(
    origin: Origin, clock: FakeClock
) -> None:
    async def not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, text="nope")

    async def capped(request: web.Request) -> web.Response:
        return web.Response(text="capped", headers={"Cache-Control": "max-age=3"})

    origin.route("/missing", not_found)
    origin.route("/capped", capped)
    await origin.start()
    policy = CachePolicy(status_ttl={404: 10})
    async with CoalescingSession(ttl=100, policy=policy, clock=clock) as s:
        await s.get(origin.url("/missing"))
        await s.get(origin.url("/capped"))
        await s.get(origin.url("/capped?call"), cache_ttl=50)
        clock.advance(4)
        assert (await s.get(origin.url("/capped"))).cache_status == "miss"  # max-age 3 < 100
        assert (await s.get(origin.url("/capped?call"))).cache_status == "miss"  # 3 < 50 too
        assert (await s.get(origin.url("/missing"))).cache_status == "hit"  # status_ttl 10
        clock.advance(7)
        assert (await s.get(origin.url("/missing"))).cache_status == "miss"


async def test_invalidate_and_clear(started: Origin, client_face: Any) -> None:
    url = started.url("/text")
    async with client_face(ttl=60) as s:
        await s.get(url)
        await s.get(url + "?other=1")
        await s.invalidate(url)
        assert (await s.get(url)).cache_status == "miss"
        assert (await s.get(url + "?other=1")).cache_status == "hit"
        await s.clear()
        assert (await s.get(url + "?other=1")).cache_status == "miss"


# -- keys -----------------------------------------------------------------------------------------


async def test_params_are_merged_into_the_key_and_query_order_does_not_matter(
    started: Origin,
) -> None:
    async with CoalescingSession(ttl=60) as s:
        await s.get(started.url("/text?b=2"), params={"a": "1"})
        assert (await s.get(started.url("/text?a=1&b=2"))).cache_status == "hit"
        assert (
            await s.get(started.url("/text"), params=[("b", "2"), ("a", "1")])
        ).cache_status == ("hit")
        assert (await s.get(started.url("/text?a=1&b=3"))).cache_status == "miss"
        assert (await s.get(started.url("/TEXT?a=1&b=2"))).status == 404  # path case kept


async def test_key_headers_split_and_session_defaults_merge(started: Origin) -> None:
    url = started.url("/text")
    async with CoalescingSession(ttl=60, headers={"Accept": "text/plain"}) as s:
        await s.get(url)
        assert (await s.get(url, headers={"accept": "text/plain"})).cache_status == "hit"
        assert (await s.get(url, headers={"Accept": "application/json"})).cache_status == "miss"
        assert (await s.get(url, headers={"Accept": ""})).cache_status == "miss"  # empty != other
        assert (
            await s.get(url, headers={"X-Other": "1"})
        ).cache_status == "hit"  # not a key header
    async with CoalescingSession(ttl=60) as s:
        await s.get(url)  # no Accept at all
        assert (await s.get(url, headers={"Accept": ""})).cache_status == "miss"  # absent != empty


async def test_changing_the_sessions_default_headers_changes_the_key(started: Origin) -> None:
    url = started.url("/text")
    async with CoalescingSession(ttl=60, headers={"Accept": "text/plain"}) as s:
        await s.get(url)
        assert (await s.get(url)).cache_status == "hit"
        s.session.headers["Accept"] = "application/json"
        assert (await s.get(url)).cache_status == "miss"
        s.session.headers["Accept"] = "text/plain"
        assert (await s.get(url)).cache_status == "hit"


async def test_credentials_always_split_the_key_unless_opted_out(started: Origin) -> None:
    url = started.url("/text")
    async with CoalescingSession(ttl=60, key_headers=()) as s:
        alice = await s.get(url, headers={"Authorization": "Bearer alice"})
        bob = await s.get(url, headers={"Authorization": "Bearer bob"})
        cookie = await s.get(url, headers={"Cookie": "session=1"})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # auth= is deprecated in 3.14
            basic = await s.get(url, auth=aiohttp.BasicAuth("carol", "pw"))
        assert [r.cache_status for r in (alice, bob, cookie, basic)] == ["miss"] * 4
        assert (await s.get(url, headers={"Authorization": "Bearer alice"})).cache_status == "hit"
    policy = CachePolicy(credential_headers=())
    async with CoalescingSession(ttl=60, key_headers=(), policy=policy) as s:
        await s.get(url, headers={"Authorization": "Bearer alice"})
        shared = await s.get(url, headers={"Authorization": "Bearer bob"})
        assert shared.cache_status == "hit"  # the user said so, explicitly


async def test_cookies_in_the_session_jar_split_the_key(origin: Origin) -> None:
    async def login(request: web.Request) -> web.Response:
        resp = web.Response(text="in")
        resp.set_cookie("sid", request.query["user"])
        return resp

    async def me(request: web.Request) -> web.Response:
        return web.Response(text=f"me={request.cookies.get('sid')}")

    origin.route("/login", login)
    origin.route("/me", me)
    await origin.start()
    storage = MemoryStorage()
    # The default jar refuses cookies from IP addresses; the origin is on 127.0.0.1.
    jar = aiohttp.CookieJar(unsafe=True)
    async with CoalescingSession(
        ttl=60, storage=storage, storage_owner=False, cookie_jar=jar
    ) as alice:
        await alice.get(origin.url("/login?user=alice"))
        assert await (await alice.get(origin.url("/me"))).text() == "me=alice"
    bob_jar = aiohttp.CookieJar(unsafe=True)
    async with CoalescingSession(ttl=60, storage=storage, cookie_jar=bob_jar) as bob:
        await bob.get(origin.url("/login?user=bob"))
        mine = await bob.get(origin.url("/me"))
        assert mine.cache_status == "miss"
        assert await mine.text() == "me=bob"  # never alice's page from the shared storage


async def test_get_and_head_are_separate_keys(started: Origin, client_face: Any) -> None:
    async with client_face(ttl=60) as s:
        await s.get(started.url("/text"))
        head = await s.head(started.url("/text"))
        assert head.cache_status == "miss"
        assert await head.read() == b""
        assert (await s.head(started.url("/text"))).cache_status == "hit"


async def test_20_concurrent_posts_make_20_upstream_requests(origin: Origin) -> None:
    async def post(request: web.Request) -> web.Response:
        return web.Response(text=await request.text())

    origin.route("/post", post, method="POST")
    await origin.start()
    async with CoalescingSession(ttl=60) as s:
        responses = await asyncio.gather(
            *(s.post(origin.url("/post"), data="x") for _ in range(20))
        )
        assert origin.calls["/post"] == 20
        assert {r.cache_status for r in responses} == {"bypass"}
        assert s.stats.bypassed == 20
        assert s.stats.upstream == 20


async def test_post_is_coalesced_by_body_when_the_policy_says_so(origin: Origin) -> None:
    async def post(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text=await request.text())

    origin.route("/q", post, method="POST")
    await origin.start()
    origin.gate.clear()
    policy = CachePolicy(methods={"GET", "POST"})
    async with CoalescingSession(ttl=60, policy=policy) as s:
        tasks = [
            asyncio.ensure_future(s.post(origin.url("/q"), json={"q": i % 2})) for i in range(10)
        ]
        await origin.at_gate.reach(2, "one request per body at the gate")
        origin.gate.set()
        responses = await asyncio.gather(*tasks)
        assert origin.calls["/q"] == 2  # one per distinct body
        assert [json.loads(await r.text()) for r in responses] == [{"q": i % 2} for i in range(10)]


# -- filtering ------------------------------------------------------------------------------------


async def test_a_503_storm_is_one_503_and_is_not_stored(origin: Origin, client_face: Any) -> None:
    async def down(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(status=503, text="down")

    origin.route("/down", down)
    await origin.start()
    origin.gate.clear()
    async with client_face(ttl=60) as s:
        tasks = [asyncio.ensure_future(s.get(origin.url("/down"))) for _ in range(20)]
        await origin.at_gate.reach(1, "the leader's request at the gate")
        origin.gate.set()
        responses = await asyncio.gather(*tasks)
        assert origin.calls["/down"] == 1
        assert {r.status for r in responses} == {503}
        assert (await s.get(origin.url("/down"))).cache_status == "miss"
        assert origin.calls["/down"] == 2
        assert s.stats.stored == 0


async def test_status_ttl_zero_never_stores_that_status(started: Origin) -> None:
    async with CoalescingSession(ttl=60, policy=CachePolicy(status_ttl={200: 0})) as s:
        await s.get(started.url("/text"))
        assert (await s.get(started.url("/text"))).cache_status == "miss"


async def test_stripped_and_hop_by_hop_headers_are_not_replayed(origin: Origin) -> None:
    async def h(request: web.Request) -> web.Response:
        return web.Response(
            text="ok",
            headers={
                "Set-Cookie": "sid=secret",
                "Access-Control-Allow-Origin": "*",
                "X-RateLimit-Remaining": "9",
                "Keep-Alive": "timeout=5",
                "X-Kept": "yes",
            },
        )

    origin.route("/h", h)
    await origin.start()
    async with CoalescingSession(ttl=60) as s:
        leader = await s.get(origin.url("/h"))
        assert leader.headers["Set-Cookie"] == "sid=secret"  # the leader sees its own response
        hit = await s.get(origin.url("/h"))
    assert hit.cache_status == "hit"
    assert hit.headers["X-Kept"] == "yes"
    for name in (
        "Set-Cookie",
        "Access-Control-Allow-Origin",
        "X-RateLimit-Remaining",
        "Keep-Alive",
    ):
        assert name not in hit.headers


async def test_no_store_is_not_stored(origin: Origin) -> None:
    async def h(request: web.Request) -> web.Response:
        return web.Response(text="secret", headers={"Cache-Control": "no-store"})

    origin.route("/ns", h)
    await origin.start()
    async with CoalescingSession(ttl=60) as s:
        await s.get(origin.url("/ns"))
        assert (await s.get(origin.url("/ns"))).cache_status == "miss"
        assert s.stats.stored == 0
    policy = CachePolicy(respect_cache_control=False)
    async with CoalescingSession(ttl=60, policy=policy) as s:
        await s.get(origin.url("/ns"))
        assert (await s.get(origin.url("/ns"))).cache_status == "hit"


async def test_a_body_over_max_body_size_is_shared_not_stored_and_everyone_gets_all_of_it(
    origin: Origin,
    client_face: Any,
) -> None:
    body = bytes(range(256)) * 400  # 102,400 bytes

    async def big(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(body=body)

    origin.route("/big", big)
    await origin.start()
    origin.gate.clear()
    async with client_face(ttl=60, policy=CachePolicy(max_body_size=100_000)) as s:
        tasks = [asyncio.ensure_future(s.get(origin.url("/big"))) for _ in range(5)]
        await origin.at_gate.reach(1, "the leader's request at the gate")
        origin.gate.set()
        responses = await asyncio.gather(*tasks)
        assert [await r.read() for r in responses] == [body] * 5
        # Issue 24: shared as it streams (both client faces), not stored (MemoryStorage takes
        # no stream).
        assert origin.calls["/big"] == 1
        assert sorted(r.cache_status for r in responses) == ["coalesced"] * 4 + ["miss"]
        assert s.stats.stored == 0
        assert (await s.get(origin.url("/big"))).cache_status == "miss"


async def test_should_store_can_veto(started: Origin) -> None:
    seen: list[CachedResponse] = []

    def veto(resp: CachedResponse) -> bool:
        seen.append(resp)
        return b"#1" not in resp.snapshot.body

    async with CoalescingSession(ttl=60, policy=CachePolicy(should_store=veto)) as s:
        await s.get(started.url("/text"))  # body "... #1": vetoed
        assert (await s.get(started.url("/text"))).cache_status == "miss"  # "#2": stored
        assert (await s.get(started.url("/text"))).cache_status == "hit"
    assert len(seen) == 2
    assert all(isinstance(r, CachedResponse) and r.status == 200 for r in seen)


# -- responses ------------------------------------------------------------------------------------


async def test_cached_response_quacks_like_client_response(origin: Origin) -> None:
    doc = {"name": "café", "n": [1, 2, 3]}

    async def latin(request: web.Request) -> web.Response:
        return web.Response(
            body="olá\nline two\nend".encode("latin-1"),
            content_type="text/plain",
            charset="latin-1",
        )

    async def jsonh(request: web.Request) -> web.Response:
        return web.json_response(doc)

    async def teapot(request: web.Request) -> web.Response:
        return web.Response(status=418, reason="I'm a teapot", text="short and stout")

    origin.route("/latin", latin)
    origin.route("/json", jsonh)
    origin.route("/teapot", teapot)
    await origin.start()
    async with CoalescingSession(ttl=60) as s:
        for _ in range(2):  # once as a miss, once as a hit
            async with s.get(origin.url("/latin")) as r:
                assert r.ok and r.status == 200 and r.reason == "OK"
                assert r.charset == "latin-1"
                assert r.content_type == "text/plain"
                assert await r.text() == "olá\nline two\nend"
                assert r.method == "GET"
                assert str(r.url) == origin.url("/latin")
                assert await r.content.readline() == "olá\n".encode("latin-1")
                assert await r.content.read(4) == b"line"
                assert [c async for c in r.content.iter_chunked(3)] == [b" tw", b"o\ne", b"nd"]
                assert r.content.at_eof()
                assert await r.read() == "olá\nline two\nend".encode("latin-1")  # still whole
            j = await s.get(origin.url("/json"))
            assert await j.json() == doc
            with pytest.raises(aiohttp.ContentTypeError):
                await r.json()
        plain = aiohttp.ClientSession()
        try:
            async with plain.get(origin.url("/teapot")) as real:
                with pytest.raises(aiohttp.ClientResponseError) as expected:
                    real.raise_for_status()
        finally:
            await plain.close()
        ours = await s.get(origin.url("/teapot"))
        assert not ours.ok
        with pytest.raises(aiohttp.ClientResponseError) as got:
            ours.raise_for_status()
        for field in ("status", "message"):
            assert getattr(got.value, field) == getattr(expected.value, field)
        assert got.value.request_info.url == expected.value.request_info.url
        assert got.value.request_info.method == expected.value.request_info.method


async def test_each_caller_reads_its_own_stream(started: Origin) -> None:
    started.gate.clear()
    async with CoalescingSession(ttl=60) as s:
        tasks = [asyncio.ensure_future(s.get(started.url("/text"))) for _ in range(3)]
        await started.at_gate.reach(1, "the leader's request at the gate")
        started.gate.set()
        a, b, c = await asyncio.gather(*tasks)
        assert await a.content.read() == b"hello /text #1"
        assert await b.content.readany() == b"hello /text #1"  # a's read drained nothing of b's
        assert [x async for x in c.content.iter_any()] == [b"hello /text #1"]
        assert a.content is not b.content


async def test_await_async_with_create_task_and_gather_all_work(started: Origin) -> None:
    async with CoalescingSession(ttl=60) as s:
        url = started.url("/text")
        r1 = await s.get(url)
        async with s.get(url) as r2:
            body2 = await r2.read()
        r3 = await asyncio.create_task(s.get(url))
        r4, r5 = await asyncio.gather(s.get(url), s.request("get", url))
    assert {await r.text() for r in (r1, r3, r4, r5)} == {body2.decode()}


async def test_redirects_keep_the_final_url_and_history(origin: Origin) -> None:
    async def hop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/text")

    origin.route("/hop", hop)
    await origin.start()
    async with CoalescingSession(ttl=60) as s:
        for expected in ("miss", "hit"):
            r = await s.get(origin.url("/hop"))
            assert r.cache_status == expected
            assert str(r.url) == origin.url("/text")
            assert [h.status for h in r.history] == [302]
            assert str(r.history[0].url) == origin.url("/hop")
            assert await r.text() == "hello /text #1"


# -- failure and cancellation ---------------------------------------------------------------------


async def test_connection_errors_reach_every_caller_as_aiohttp_raises_them(
    unused_tcp_port: int,
) -> None:
    url = f"http://127.0.0.1:{unused_tcp_port}/nothing-listens"
    async with aiohttp.ClientSession() as plain:
        with pytest.raises(aiohttp.ClientError) as direct:
            await plain.get(url)
    async with CoalescingSession(ttl=60) as s:
        results = await asyncio.gather(*(s.get(url) for _ in range(10)), return_exceptions=True)
        assert all(type(r) is type(direct.value) for r in results)
        assert s.stats.errors == 10
        assert s.stats.upstream == 1
        with pytest.raises(type(direct.value)):
            await s.get(url)  # not remembered: tried again
        assert s.stats.upstream == 2


async def test_timeouts_reach_every_caller_and_nothing_is_stored(
    origin: Origin, loop_clock: LoopClock
) -> None:
    async def stuck(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text="late")

    origin.route("/stuck", stuck)
    await origin.start()
    origin.gate.clear()
    timeout = aiohttp.ClientTimeout(total=20)  # reached by moving the loop's clock, not by waiting
    async with CoalescingSession(ttl=60, timeout=timeout) as s:
        calls = asyncio.gather(
            *(s.get(origin.url("/stuck")) for _ in range(5)), return_exceptions=True
        )
        await origin.at_gate.reach(1, "the shared request at the origin")  # its timer is set
        loop_clock.advance(21)  # aiohttp rounds a timeout of 20 s up to the next whole second
        results = await finished(calls, "every caller answered")
        assert all(isinstance(r, asyncio.TimeoutError) for r in results), results
        assert origin.calls["/stuck"] == 1
        origin.gate.set()
        ok = await s.get(origin.url("/stuck"))
        assert ok.cache_status == "miss"
        assert await ok.text() == "late"


async def test_cancelling_the_leader_does_not_fail_the_others(
    started: Origin, client_face: Any
) -> None:
    started.gate.clear()
    async with client_face(ttl=60) as s:
        leader = asyncio.ensure_future(s.get(started.url("/text")))
        await started.at_gate.reach(1, "the leader's request at the gate")
        followers = [asyncio.ensure_future(s.get(started.url("/text"))) for _ in range(5)]
        # From its start to the flight it joins, a follower awaits nothing that could wait.
        await until(lambda: s.stats.requests == 6, "the five followers in the session")
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        started.gate.set()
        responses = await asyncio.gather(*followers)
        assert {await r.text() for r in responses} == {"hello /text #1"}
        assert {r.cache_status for r in responses} == {"coalesced"}
        assert started.calls["/text"] == 1
        assert (await s.get(started.url("/text"))).cache_status == "hit"


async def test_a_follower_past_wait_timeout_sends_its_own_request_not_stored(
    origin: Origin, loop_clock: LoopClock, client_face: Any
) -> None:
    async def slow(request: web.Request) -> web.Response:
        n = origin.calls["/slow"]
        await origin.wait()
        return web.Response(text=f"answer #{n}")

    origin.route("/slow", slow)
    await origin.start()
    origin.gate.clear()
    async with client_face(ttl=60, wait_timeout=20) as s:
        leader = asyncio.ensure_future(s.get(origin.url("/slow")))
        await origin.at_gate.reach(1, "the leader's request at the gate")
        impatient = asyncio.ensure_future(s.get(origin.url("/slow")))
        await loop_clock.scheduled(20, "the follower waiting, with its wait_timeout")
        loop_clock.advance(20)
        await origin.at_gate.reach(2, "the follower's own request at the gate")
        origin.gate.set()
        first, second = await finished(asyncio.gather(leader, impatient), "both answered")
        assert first.cache_status == second.cache_status == "miss"
        assert [getattr(cache_info(r), "reason", "") for r in (first, second)] == [
            None,
            "wait timeout",
        ]
        assert await second.text() == "answer #2"
        hit = await s.get(origin.url("/slow"))
        assert await hit.text() == "answer #1"  # the leader's, not the impatient one's
        assert s.stats.stored == 1
        assert s.stats.upstream == 2


class BrokenStorage(MemoryStorage):
    async def get(self, key: str) -> Snapshot | None:
        raise OSError("disk on fire")

    async def set(self, key: str, value: Snapshot, ttl: float) -> None:
        raise OSError("disk on fire")


async def test_a_broken_storage_degrades_to_coalescing_and_logs_once(
    started: Origin, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="coalesce_client")
    started.gate.clear()
    async with CoalescingSession(ttl=60, storage=BrokenStorage()) as s:
        tasks = [asyncio.ensure_future(s.get(started.url("/text"))) for _ in range(10)]
        await started.at_gate.reach(1, "the leader's request at the gate")
        started.gate.set()
        responses = await asyncio.gather(*tasks)
        assert {r.status for r in responses} == {200}
        assert started.calls["/text"] == 1
        await s.get(started.url("/text"))
        await s.get(started.url("/text"))
        assert s.stats.errors == 0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert sorted(r.getMessage().split(" (")[0] for r in warnings) == [
        "storage get failed",
        "storage set failed",
    ]


class StuckStorage(MemoryStorage):
    """Writes park until the test lets them through, like a disk locked by another process; what
    happens to the storage is noted in order."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.write_started = asyncio.Event()
        self.events: list[str] = []

    async def set(self, key: str, value: Snapshot, ttl: float) -> None:
        self.events.append("write started")
        self.write_started.set()
        await self.release.wait()
        await super().set(key, value, ttl)
        self.events.append("write done")

    async def close(self) -> None:
        self.events.append("closed")
        await super().close()


async def answered_while_the_write_is_parked(
    s: CoalescingSession, storage: StuckStorage, url: str, loop_clock: LoopClock
) -> CachedResponse:
    getting = asyncio.ensure_future(s.get(url))
    await signalled(storage.write_started, "the flight's storage write started")
    loop_clock.advance(1)  # a flight waits for its write a moment (well under a second), no more
    first = await finished(getting, "the answer, while the write is parked")
    assert storage.events == ["write started"]
    return first


async def test_a_slow_storage_write_does_not_hold_the_answer_back(
    started: Origin, loop_clock: LoopClock
) -> None:
    storage = StuckStorage()
    url = started.url("/text")
    async with CoalescingSession(ttl=60, storage=storage) as s:
        first = await answered_while_the_write_is_parked(s, storage, url, loop_clock)
        assert first.cache_status == "miss"
        second = await s.get(url)  # found in the write in progress: no new flight
        assert second.cache_status == "hit"
        assert started.calls["/text"] == 1
        assert s.stats.stored == 0
        storage.release.set()
    # The response, then its URL index (url_index.py), both before the storage closes.
    assert storage.events == ["write started", "write done"] * 2 + ["closed"]
    assert s.stats.stored == 1


async def test_close_waits_for_a_pending_storage_write_then_closes_the_storage(
    started: Origin, loop_clock: LoopClock
) -> None:
    storage = StuckStorage()
    async with aiohttp.ClientSession() as own:  # ours to close: close() goes straight to storage
        s = CoalescingSession(ttl=60, storage=storage, session=own)
        await answered_while_the_write_is_parked(s, storage, started.url("/text"), loop_clock)
        closing = asyncio.ensure_future(s.close())
        # close() runs until it must wait: for the parked write, with the storage still open.
        await until(lambda: s.closed, "close() started")
        assert storage.events == ["write started"]
        assert not closing.done()
        storage.release.set()
        await finished(closing, "close(), once the write could finish")
    assert storage.events == ["write started", "write done"] * 2 + ["closed"]  # and the index
    assert s.stats.stored == 1
    assert started.calls["/text"] == 1


class ParkedReads(MemoryStorage):
    """Reads wait until the test lets them through, like a slow disk or a remote storage."""

    def __init__(self) -> None:
        super().__init__()
        self.reading = asyncio.Event()
        self.release = asyncio.Event()

    def get_nowait(self, key: str) -> Snapshot | None:
        return None  # never at hand: every lookup goes through get()

    async def get(self, key: str) -> Snapshot | None:
        self.reading.set()
        await self.release.wait()
        return await super().get(key)


def outcomes(stats: Stats) -> int:
    """The calls counted in an outcome (hits, misses, coalesced, bypassed and any later one)."""
    not_outcomes = {"requests", "stored", "errors", "upstream"}
    return sum(
        getattr(stats, f.name) for f in dataclasses.fields(stats) if f.name not in not_outcomes
    )


async def test_a_caller_cancelled_during_its_storage_read_is_counted_in_one_outcome(
    started: Origin,
) -> None:
    storage = ParkedReads()
    async with CoalescingSession(ttl=60, storage=storage) as s:
        caller = asyncio.ensure_future(s.get(started.url("/text")))
        await signalled(storage.reading, "the caller's storage read started")
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        storage.release.set()
        st = s.stats
    assert st.requests == 1
    assert outcomes(st) == 1, st
    assert started.calls["/text"] == 0


async def test_logging_is_quiet_at_info(started: Origin, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="coalesce_client")
    async with CoalescingSession(ttl=60) as s:
        await asyncio.gather(*(s.get(started.url("/text")) for _ in range(5)))
        await s.get(started.url("/text"))
    assert [r for r in caplog.records if r.name.startswith("coalesce_client")] == []


# -- sessions, options, compatibility -------------------------------------------------------------


async def test_a_wrapped_session_is_used_and_never_closed(started: Origin) -> None:
    async with aiohttp.ClientSession(headers={"X-App": "mine"}) as own:
        async with CoalescingSession(ttl=60, session=own) as s:
            assert s.session is own
            await s.get(started.url("/text"))
        assert not own.closed
        assert started.requests[-1].headers["X-App"] == "mine"


async def test_the_storage_is_closed_with_the_session_unless_told_otherwise() -> None:
    kept, owned = MemoryStorage(), MemoryStorage()
    async with CoalescingSession(storage=kept, storage_owner=False):
        pass
    async with CoalescingSession(storage=owned):
        pass
    await kept.get("k")  # still usable
    with pytest.raises(RuntimeError, match="closed"):
        await owned.get("k")


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"ttl": -1}, "ttl"),
        ({"ttl": "60"}, "ttl"),
        ({"ttl": float("nan")}, "ttl"),
        ({"wait_timeout": 0}, "wait_timeout"),
        ({"key_headers": "Accept"}, "key_headers"),
        ({"key_headers": ["Bad:Header"]}, "key_headers"),
        ({"policy": {"methods": ["GET"]}}, "policy"),
        ({"storage": object()}, "storage"),
        ({"storage_owner": "yes"}, "storage_owner"),
    ],
)
def test_bad_options_fail_at_construction_naming_the_option(
    kwargs: dict[str, Any], option: str
) -> None:
    with pytest.raises(ValueError, match=option):
        CoalescingSession(**kwargs)


async def test_session_and_client_session_options_together_are_refused() -> None:
    async with aiohttp.ClientSession() as own:
        with pytest.raises(ValueError, match="session"):
            CoalescingSession(session=own, headers={"A": "b"})


async def test_a_bad_cache_ttl_on_a_call_is_a_clear_error(started: Origin) -> None:
    async with CoalescingSession() as s:
        with pytest.raises(ValueError, match="cache_ttl"):
            await s.get(started.url("/text"), cache_ttl=-5)


async def test_users_aioresponses_mocks_still_intercept_requests() -> None:
    aioresponses = pytest.importorskip("aioresponses").aioresponses
    # aioresponses 0.7.9 cannot mock aiohttp 3.14's ClientSession at all (its issue #289); detect
    # that on a plain session first, and skip only if aioresponses itself cannot mock one.
    with aioresponses() as m:
        m.get("http://api.test/probe", body="probe")
        try:
            async with aiohttp.ClientSession() as plain, plain.get("http://api.test/probe") as r:
                assert await r.text() == "probe"
        except Exception as exc:
            pytest.skip(f"aioresponses cannot mock a plain ClientSession on this aiohttp: {exc!r}")
    with aioresponses() as m:
        m.get("http://api.test/items", payload={"items": [1, 2]}, repeat=True)
        async with CoalescingSession(ttl=60) as s:
            first = await s.get("http://api.test/items")
            second = await s.get("http://api.test/items")
            assert await first.json() == await second.json() == {"items": [1, 2]}
            assert second.cache_status == "hit"
        calls = sum(len(v) for v in m.requests.values())
        assert calls == 1


# -- base_url -------------------------------------------------------------------------------------


async def test_relative_urls_join_base_url_and_share_the_absolute_key(started: Origin) -> None:
    async with aiohttp.ClientSession(base_url=started.base + "/") as plain:
        try:
            await plain.head(started.url("/no-such-route"))
        except AssertionError:  # aiohttp 3.10.0 takes only paths with a base URL: ours as well
            absolute_ok = False
        else:
            absolute_ok = True
    async with CoalescingSession(ttl=60, base_url=started.base + "/") as s:
        first = await s.get("/text")
        if not absolute_ok:
            with pytest.raises(AssertionError):
                await s.get(started.url("/text"))
            return
        again = await s.get(started.url("/text"))  # the same resource, written absolutely
        assert (first.cache_status, again.cache_status) == ("miss", "hit")
        assert await again.text() == "hello /text #1"
        assert started.calls["/text"] == 1


async def test_a_wrapped_session_uses_its_own_base_url_and_no_other(started: Origin) -> None:
    async with aiohttp.ClientSession(base_url=started.base + "/") as plain:
        with pytest.raises(ValueError, match="base_url"):  # not where aiohttp would send it
            CoalescingSession(ttl=60, session=plain, base_url="http://elsewhere.test/")
        async with CoalescingSession(ttl=60, session=plain, base_url=started.base + "/") as s:
            assert (await s.get("/text")).cache_status == "miss"
            assert (await s.get("/text")).cache_status == "hit"
        assert started.calls["/text"] == 1
