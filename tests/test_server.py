"""coalesce_middleware through a real running aiohttp.web app and real HTTP clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import FakeClock, Origin

from coalesce_client import CachePolicy, MemoryStorage, Snapshot, coalesce_middleware


@contextlib.asynccontextmanager
async def serving(origin: Origin, **runner_kwargs: Any) -> AsyncIterator[aiohttp.ClientSession]:
    """Start the origin; a client without a connection limit (bursts are all in flight at once)."""
    await origin.start(**runner_kwargs)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
            yield client
    finally:
        await origin.stop()


async def fetch(client: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str, Any]:
    async with client.get(url, **kw) as r:
        return r.status, await r.text(), r.headers


async def burst(
    origin: Origin, client: aiohttp.ClientSession, path: str, n: int, **kw: Any
) -> list[tuple[int, str, Any]]:
    """``n`` concurrent GETs, all inside the middleware before the handler may answer.

    The handler waits at the gate; the gate opens once all ``n`` requests have entered the
    application, and from there to the flight they join nothing waits.
    """
    before = origin.entered.count
    origin.gate.clear()
    tasks = [asyncio.ensure_future(fetch(client, origin.url(path), **kw)) for _ in range(n)]
    await origin.entered.reach(before + n, f"{n} requests to {path} in the middleware")
    origin.gate.set()
    return await asyncio.gather(*tasks)


# -- coalescing and storing -----------------------------------------------------------------------


async def test_200_concurrent_gets_run_the_handler_once(clock: FakeClock) -> None:
    mw = coalesce_middleware(ttl=5, clock=clock)
    origin = Origin(middlewares=[mw])

    async def slow(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text="slow answer", headers={"X-Handler": "set"})

    origin.route("/slow", slow)
    async with serving(origin) as client:
        results = await burst(origin, client, "/slow", 200)
        assert origin.calls["/slow"] == 1
        assert {(s, b) for s, b, _ in results} == {(200, "slow answer")}
        assert all(h["X-Handler"] == "set" for _, _, h in results)
        xcache = Counter(h["X-Cache"] for _, _, h in results)
        assert xcache == {"MISS": 1, "COALESCED": 199}
        _, body, headers = await fetch(client, origin.url("/slow"))
        assert (body, headers["X-Cache"]) == ("slow answer", "HIT")
        clock.advance(6)
        _, _, headers = await fetch(client, origin.url("/slow"))
        assert headers["X-Cache"] == "MISS"
        assert origin.calls["/slow"] == 2


async def test_cache_status_header_none_leaves_it_out() -> None:
    mw = coalesce_middleware(ttl=5, cache_status_header=None)
    origin = Origin(middlewares=[mw])

    async def h(request: web.Request) -> web.Response:
        return web.Response(text="x")

    origin.route("/x", h)
    async with serving(origin) as client:
        for _ in range(2):
            _, _, headers = await fetch(client, origin.url("/x"))
            assert "X-Cache" not in headers
        assert origin.calls["/x"] == 1


async def test_ttl_zero_coalesces_and_stores_nothing() -> None:
    mw = coalesce_middleware(ttl=0)
    origin = Origin(middlewares=[mw])

    async def h(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text="x")

    origin.route("/x", h)
    async with serving(origin) as client:
        await burst(origin, client, "/x", 10)
        assert origin.calls["/x"] == 1
        _, _, headers = await fetch(client, origin.url("/x"))
        assert headers["X-Cache"] == "MISS"
        assert origin.calls["/x"] == 2


async def test_per_status_ttl_and_default_statuses(clock: FakeClock) -> None:
    policy = CachePolicy(status_ttl={404: 1})
    mw = coalesce_middleware(ttl=60, policy=policy, clock=clock)
    origin = Origin(middlewares=[mw])

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no")

    async def teapot(request: web.Request) -> web.Response:
        return web.Response(status=418, text="tea")

    origin.route("/missing", missing)
    origin.route("/teapot", teapot)
    async with serving(origin) as client:
        await fetch(client, origin.url("/missing"))
        assert (await fetch(client, origin.url("/missing")))[2]["X-Cache"] == "HIT"
        clock.advance(1.5)
        assert (await fetch(client, origin.url("/missing")))[2]["X-Cache"] == "MISS"
        await fetch(client, origin.url("/teapot"))
        _, _, headers = await fetch(client, origin.url("/teapot"))
        assert headers["X-Cache"] == "MISS"  # 418: not stored


# -- keys -----------------------------------------------------------------------------------------


async def test_keys_split_by_query_method_path_case_headers_and_key_func() -> None:
    def account(request: web.Request) -> str | None:
        return request.headers.get("X-Account")

    mw = coalesce_middleware(ttl=60, key_headers=["Accept-Language"], key_func=account)
    origin = Origin(middlewares=[mw])

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=f"{request.method} {request.path_qs} {origin.calls[request.path]}")

    origin.route("/search", echo)
    origin.route("/Search", echo)
    async with serving(origin) as client:
        a_url = origin.url("/search?q=a&page=1")
        a = await fetch(client, a_url)
        assert (await fetch(client, origin.url("/search?page=1&q=a")))[1] == a[1]  # sorted query
        b = await fetch(client, origin.url("/search?q=b&page=1"))
        assert b[2]["X-Cache"] == "MISS"
        assert (await fetch(client, origin.url("/Search?q=a&page=1")))[2]["X-Cache"] == "MISS"
        async with client.head(a_url) as head:
            assert head.headers["X-Cache"] == "MISS"  # GET and HEAD never share
        fr = await fetch(client, a_url, headers={"Accept-Language": "fr"})
        assert fr[2]["X-Cache"] == "MISS"
        acct = await fetch(client, a_url, headers={"X-Account": "7"})
        assert acct[2]["X-Cache"] == "MISS"
        again = await fetch(client, a_url, headers={"X-Account": "7"})
        assert again[2]["X-Cache"] == "HIT"


async def test_post_passes_straight_through() -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])

    async def post(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text="posted")

    origin.route("/p", post, method="POST")
    origin.gate.clear()

    async def do_post(client: aiohttp.ClientSession) -> str:
        async with client.post(origin.url("/p"), data=b"x") as r:
            return r.headers["X-Cache"]

    async with serving(origin) as client:
        tasks = [asyncio.ensure_future(do_post(client)) for _ in range(10)]
        await origin.at_gate.reach(10, "ten POSTs in the handler at once")  # none waits
        origin.gate.set()
        assert set(await asyncio.gather(*tasks)) == {"BYPASS"}


async def test_credentials_bypass_unless_they_are_key_headers() -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])
    keyed_mw = coalesce_middleware(ttl=60, key_headers=["Authorization"])
    keyed = Origin(middlewares=[keyed_mw])

    async def me(request: web.Request) -> web.Response:
        return web.Response(text=f"user {request.headers.get('Authorization')}")

    origin.route("/me", me)
    keyed.route("/me", me)
    async with serving(origin) as client:
        me_url = origin.url("/me")
        for _ in range(2):
            _, body, headers = await fetch(client, me_url, headers={"Authorization": "a"})
            assert (body, headers["X-Cache"]) == ("user a", "BYPASS")
        _, _, headers = await fetch(client, me_url, headers={"Cookie": "sid=1"})
        assert headers["X-Cache"] == "BYPASS"
        assert origin.calls["/me"] == 3
    async with serving(keyed) as client:
        await fetch(client, keyed.url("/me"), headers={"Authorization": "alice"})
        _, body, headers = await fetch(client, keyed.url("/me"), headers={"Authorization": "bob"})
        assert (body, headers["X-Cache"]) == ("user bob", "MISS")
        _, body, headers = await fetch(client, keyed.url("/me"), headers={"Authorization": "bob"})
        assert (body, headers["X-Cache"]) == ("user bob", "HIT")


# -- what is never shared -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "private",
    [
        {"Cache-Control": "private, max-age=60"},
        {"Cache-Control": "no-store"},
        {"Set-Cookie": "sid=header-set"},
    ],
)
async def test_private_responses_are_never_shared_and_the_key_passes_for_a_while(
    private: dict[str, str], clock: FakeClock
) -> None:
    mw = coalesce_middleware(ttl=60, clock=clock)
    origin = Origin(middlewares=[mw])
    n = 0

    async def h(request: web.Request) -> web.Response:
        nonlocal n
        n += 1
        mine = n
        await origin.wait()
        return web.Response(text=f"for #{mine}", headers=private)

    origin.route("/private", h)
    async with serving(origin) as client:
        results = await burst(origin, client, "/private", 5)
        assert sorted(b for _, b, _ in results) == [f"for #{i}" for i in range(1, 6)]
        assert origin.calls["/private"] == 5  # the waiters ran the handler themselves
        # Remembered as pass-through: neither serialized nor coalesced nor stored.
        origin.gate.clear()
        later = [asyncio.ensure_future(fetch(client, origin.url("/private"))) for _ in range(3)]
        await origin.at_gate.reach(8, "all three in the handler at once")
        origin.gate.set()
        assert {h["X-Cache"] for _, _, h in await asyncio.gather(*later)} == {"BYPASS"}
        clock.advance(121)  # pass_ttl (120 s) over: the key takes part again
        _, _, headers = await fetch(client, origin.url("/private"))
        assert headers["X-Cache"] == "MISS"
        assert mw.stats.stored == 0


async def test_two_users_never_see_each_others_cookie() -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])

    async def login(request: web.Request) -> web.Response:
        user = request.headers["X-User"]  # not a key header: both users share one key
        await origin.wait()
        resp = web.Response(text=f"welcome {user}")
        resp.set_cookie("sid", f"secret-of-{user}")
        return resp

    origin.route("/login", login)
    origin.gate.clear()
    async with serving(origin) as client:
        url = origin.url("/login")
        alice = asyncio.ensure_future(fetch(client, url, headers={"X-User": "alice"}))
        await origin.at_gate.reach(1, "alice's request at the handler's gate")
        bob = asyncio.ensure_future(fetch(client, url, headers={"X-User": "bob"}))
        await origin.entered.reach(2, "bob's request in the middleware")
        origin.gate.set()
        (_, a_body, a_headers), (_, b_body, b_headers) = await asyncio.gather(alice, bob)
        assert (a_body, b_body) == ("welcome alice", "welcome bob")
        assert [c.split(";")[0] for c in a_headers.getall("Set-Cookie")] == ["sid=secret-of-alice"]
        assert [c.split(";")[0] for c in b_headers.getall("Set-Cookie")] == ["sid=secret-of-bob"]
        _, c_body, c_headers = await fetch(client, url, headers={"X-User": "carol"})
        assert c_body == "welcome carol"
        assert c_headers["X-Cache"] == "BYPASS"  # remembered as pass-through
        assert origin.calls["/login"] == 3


async def test_replays_carry_no_leader_only_headers_and_outer_headers_are_per_request() -> None:
    counter = 0

    @web.middleware
    async def request_id(request: web.Request, handler: Any) -> web.StreamResponse:
        nonlocal counter
        counter += 1
        mine = counter
        resp = await handler(request)
        resp.headers["X-Request-Id"] = str(mine)
        resp.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin", "none")
        return resp

    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[request_id, mw])

    async def h(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(
            text="x",
            headers={
                "Access-Control-Allow-Credentials": "true",
                "X-RateLimit-Remaining": "3",
                "X-Kept": "yes",
            },
        )

    origin.route("/h", h)
    origin.gate.clear()
    async with serving(origin) as client:
        tasks = [
            asyncio.ensure_future(fetch(client, origin.url("/h"), headers={"Origin": f"o{i}"}))
            for i in range(4)
        ]
        await origin.entered.reach(4, "four requests in the middleware")
        origin.gate.set()
        results = await asyncio.gather(*tasks)
        results.append(await fetch(client, origin.url("/h"), headers={"Origin": "o9"}))
    ids = {h["X-Request-Id"] for _, _, h in results}
    assert len(ids) == 5  # each request its own
    origins = sorted(h["Access-Control-Allow-Origin"] for _, _, h in results)
    assert origins == ["o0", "o1", "o2", "o3", "o9"]
    for _, _, headers in results:
        assert headers["X-Kept"] == "yes"
        if headers["X-Cache"] != "MISS":
            assert "X-RateLimit-Remaining" not in headers
            assert "Access-Control-Allow-Credentials" not in headers


async def test_a_middleware_editing_one_callers_response_leaves_every_other_alone() -> None:
    # Every replay is a fresh web.Response with headers of its own (server.py rules): an outer
    # middleware that edits one caller's response (its own id, a header removed, one added) must
    # not reach another caller's, whether that one coalesced or hit.
    seen: list[web.StreamResponse] = []

    @web.middleware
    async def editor(request: web.Request, handler: Any) -> web.StreamResponse:
        resp = await handler(request)
        seen.append(resp)
        who = request.headers["X-Who"]
        resp.headers["X-Who"] = who
        if who.startswith("editor"):
            del resp.headers["X-Kept"]
            resp.headers["X-Only-Mine"] = who
        return resp

    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[editor, mw])

    async def h(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text="x", headers={"X-Kept": "yes"})

    origin.route("/h", h)
    whos = [f"{'editor' if i % 2 == 0 else 'plain'}-{i}" for i in range(8)]
    async with serving(origin) as client:
        origin.gate.clear()
        tasks = [
            asyncio.ensure_future(fetch(client, origin.url("/h"), headers={"X-Who": who}))
            for who in whos[:4]
        ]
        await origin.entered.reach(4, "four requests in the middleware")
        origin.gate.set()
        results = await asyncio.gather(*tasks)
        for who in whos[4:]:  # then four hits, one after another
            results.append(await fetch(client, origin.url("/h"), headers={"X-Who": who}))
    for who, (_, body, headers) in zip(whos, results, strict=True):
        mine = (body, headers.get("X-Who"), headers.get("X-Kept"), headers.get("X-Only-Mine"))
        if who.startswith("editor"):
            assert mine == ("x", who, None, who), headers
        else:
            assert mine == ("x", who, "yes", None), headers
    assert Counter(h.get("X-Cache") for _, _, h in results) == {"MISS": 1, "COALESCED": 3, "HIT": 4}
    assert origin.calls["/h"] == 1
    assert len({id(r) for r in seen}) == 8  # all alive: eight response objects


async def test_files_and_websockets_pass_through_untouched(tmp_path: Path) -> None:
    """A FileResponse and a WebSocket stay their caller's own: each caller runs the handler
    (streamed responses and bodies over max_body_size are shared: test_server_large.py)."""
    mw = coalesce_middleware(ttl=60, policy=CachePolicy(max_body_size=1000))
    origin = Origin(middlewares=[mw])
    data = tmp_path / "file.txt"
    data.write_text("file body")

    async def file(request: web.Request) -> web.FileResponse:
        await origin.wait()
        return web.FileResponse(data)

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        await sock.send_str("hello")
        await sock.close()
        return sock

    for path, handler in (("/file", file), ("/ws", ws)):
        origin.route(path, handler)
    async with serving(origin) as client:
        origin.gate.clear()
        tasks = [asyncio.ensure_future(fetch(client, origin.url("/file"))) for _ in range(3)]
        await origin.entered.reach(3, "three requests to /file in the middleware")
        origin.gate.set()
        results = await asyncio.gather(*tasks)
        assert [b for _, b, _ in results] == ["file body"] * 3
        assert origin.calls["/file"] == 3  # not shared: each ran the handler
        for _ in range(2):
            async with client.ws_connect(origin.url("/ws")) as sock:
                assert await sock.receive_str() == "hello"
        assert origin.calls["/ws"] == 2
        assert mw.stats.stored == 0


# -- failure --------------------------------------------------------------------------------------


async def test_an_http_exception_reaches_every_waiter_as_a_fresh_equivalent() -> None:
    raised: list[web.HTTPException] = []

    @web.middleware
    async def outer(request: web.Request, handler: Any) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as exc:
            raised.append(exc)
            exc.headers["X-Outer"] = str(len(raised))  # each its own headers
            raise

    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[outer, mw])

    async def moved(request: web.Request) -> web.Response:
        await origin.wait()
        raise web.HTTPFound("/elsewhere", headers={"X-From": "handler"})

    origin.route("/moved", moved)
    origin.gate.clear()
    async with serving(origin) as client:
        tasks = [
            asyncio.ensure_future(fetch(client, origin.url("/moved"), allow_redirects=False))
            for _ in range(5)
        ]
        await origin.entered.reach(5, "five requests in the middleware")
        origin.gate.set()
        results = await asyncio.gather(*tasks)
        assert origin.calls["/moved"] == 1
        assert {s for s, _, _ in results} == {302}
        assert {h["Location"] for _, _, h in results} == {"/elsewhere"}
        assert sorted(h["X-Outer"] for _, _, h in results) == ["1", "2", "3", "4", "5"]
        assert all(type(e) is web.HTTPFound and e.location == "/elsewhere" for e in raised)
        assert len({id(e) for e in raised}) == 5
        await fetch(client, origin.url("/moved"), allow_redirects=False)
        assert origin.calls["/moved"] == 2  # nothing stored from it


async def test_other_exceptions_are_a_500_for_each_and_nothing_is_stored() -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])
    fail = True

    async def flaky(request: web.Request) -> web.Response:
        await origin.wait()
        if fail:
            raise RuntimeError("handler bug")
        return web.Response(text="fixed")

    origin.route("/flaky", flaky)
    async with serving(origin) as client:
        results = await burst(origin, client, "/flaky", 5)
        assert {s for s, _, _ in results} == {500}
        assert origin.calls["/flaky"] == 1
        fail = False
        assert (await fetch(client, origin.url("/flaky")))[1] == "fixed"
        assert origin.calls["/flaky"] == 2
        assert mw.stats.errors == 5


async def test_the_leader_disconnecting_fails_no_waiter_and_runs_nothing_twice() -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])

    async def slow(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text="done")

    origin.route("/slow", slow)
    origin.gate.clear()
    async with serving(origin, handler_cancellation=True) as client:
        leader_client = aiohttp.ClientSession()
        leader = asyncio.ensure_future(fetch(leader_client, origin.url("/slow")))
        await origin.at_gate.reach(1, "the leader at the handler's gate")
        followers = [asyncio.ensure_future(fetch(client, origin.url("/slow"))) for _ in range(5)]
        await origin.entered.reach(6, "the leader and five followers in the middleware")
        leader.cancel()
        await leader_client.close()  # the leader's connection goes away
        with pytest.raises(asyncio.CancelledError):
            await leader
        origin.gate.set()
        results = await asyncio.gather(*followers)
        assert {(s, b) for s, b, _ in results} == {(200, "done")}
        assert origin.calls["/slow"] == 1


class BrokenStorage(MemoryStorage):
    async def get(self, key: str) -> Snapshot | None:
        raise OSError("broken")

    async def set(self, key: str, value: Snapshot, ttl: float) -> None:
        raise OSError("broken")


async def test_a_broken_storage_degrades_to_coalescing() -> None:
    mw = coalesce_middleware(ttl=60, storage=BrokenStorage())
    origin = Origin(middlewares=[mw])

    async def h(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text="ok")

    origin.route("/h", h)
    async with serving(origin) as client:
        results = await burst(origin, client, "/h", 5)
        assert {(s, b) for s, b, _ in results} == {(200, "ok")}
        assert origin.calls["/h"] == 1


async def test_decorate_applies_it_to_chosen_routes_only() -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin()  # no middleware on the application: only on the decorated route
    runs: Counter[str] = Counter()

    async def h(request: web.Request) -> web.Response:
        runs[request.path] += 1
        return web.Response(text="x")

    origin.route("/cached", mw.decorate(h))
    origin.route("/plain", h)
    async with serving(origin) as client:
        for _ in range(2):
            _, _, headers = await fetch(client, origin.url("/cached"))
            assert "X-Cache" in headers
            _, _, headers = await fetch(client, origin.url("/plain"))
            assert "X-Cache" not in headers
    assert runs == {"/cached": 1, "/plain": 2}


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"ttl": -1}, "ttl"),
        ({"wait_timeout": 0}, "wait_timeout"),
        ({"key_headers": "Accept"}, "key_headers"),
        ({"policy": "strict"}, "policy"),
        ({"storage": {}}, "storage"),
        ({"key_func": "account"}, "key_func"),
        ({"cache_status_header": "X:Cache"}, "cache_status_header"),
    ],
)
def test_bad_options_fail_at_construction(kwargs: dict[str, Any], option: str) -> None:
    with pytest.raises(ValueError, match=option):
        coalesce_middleware(**kwargs)
