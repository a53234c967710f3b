"""coalesce_middleware through a real running aiohttp.web app and real HTTP clients."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import FakeClock

from coalesce_client import CachePolicy, MemoryStorage, Snapshot, coalesce_middleware
from coalesce_client.server import CoalesceMiddleware


class App:
    """A real app on 127.0.0.1 with a gate its handlers can wait at, and call counters."""

    def __init__(self, mw: CoalesceMiddleware, *, outer: list[Any] | None = None) -> None:
        self.mw = mw
        self.app = web.Application(middlewares=[*(outer or []), mw])
        self.calls: Counter[str] = Counter()
        self.gate = asyncio.Event()
        self.gate.set()
        self.arrived = asyncio.Event()
        self.base = ""
        self.runner: web.AppRunner | None = None

    def get(self, path: str, handler: Callable[[web.Request], Awaitable[Any]]) -> None:
        async def counted(request: web.Request) -> Any:
            self.calls[request.path] += 1
            return await handler(request)

        self.app.router.add_get(path, counted)

    def add(self, method: str, path: str, handler: Callable[[web.Request], Awaitable[Any]]) -> None:
        async def counted(request: web.Request) -> Any:
            self.calls[request.path] += 1
            return await handler(request)

        self.app.router.add_route(method, path, counted)

    async def wait(self) -> None:
        self.arrived.set()
        await self.gate.wait()

    async def start(self, **runner_kwargs: Any) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, **runner_kwargs)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0, backlog=1024).start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"

    def url(self, path: str) -> str:
        return self.base + path


@contextlib.asynccontextmanager
async def running(app: App, **runner_kwargs: Any) -> AsyncIterator[aiohttp.ClientSession]:
    await app.start(**runner_kwargs)
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:
            yield client
    finally:
        assert app.runner is not None
        await app.runner.cleanup()


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition that no event announces (requests reaching the middleware)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.001)


async def fetch(client: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, str, Any]:
    async with client.get(url, **kw) as r:
        return r.status, await r.text(), r.headers


async def burst(
    app: App, client: aiohttp.ClientSession, path: str, n: int, **kw: Any
) -> list[tuple[int, str, Any]]:
    """``n`` concurrent GETs that all reach the middleware while the handler waits at the gate."""
    before = app.mw.stats.requests
    app.gate.clear()
    tasks = [asyncio.ensure_future(fetch(client, app.url(path), **kw)) for _ in range(n)]
    await eventually(lambda: app.mw.stats.requests == before + n)
    app.gate.set()
    return await asyncio.gather(*tasks)


# -- coalescing and storing -----------------------------------------------------------------------


async def test_200_concurrent_gets_run_the_handler_once(clock: FakeClock) -> None:
    app = App(coalesce_middleware(ttl=5, clock=clock))

    async def slow(request: web.Request) -> web.Response:
        await app.wait()
        return web.Response(text="slow answer", headers={"X-Handler": "set"})

    app.get("/slow", slow)
    async with running(app) as client:
        results = await burst(app, client, "/slow", 200)
        assert app.calls["/slow"] == 1
        assert {(s, b) for s, b, _ in results} == {(200, "slow answer")}
        assert all(h["X-Handler"] == "set" for _, _, h in results)
        xcache = Counter(h["X-Cache"] for _, _, h in results)
        assert xcache == {"MISS": 1, "COALESCED": 199}
        _, body, headers = await fetch(client, app.url("/slow"))
        assert (body, headers["X-Cache"]) == ("slow answer", "HIT")
        clock.advance(6)
        _, _, headers = await fetch(client, app.url("/slow"))
        assert headers["X-Cache"] == "MISS"
        assert app.calls["/slow"] == 2


async def test_cache_status_header_none_leaves_it_out() -> None:
    app = App(coalesce_middleware(ttl=5, cache_status_header=None))

    async def h(request: web.Request) -> web.Response:
        return web.Response(text="x")

    app.get("/x", h)
    async with running(app) as client:
        for _ in range(2):
            _, _, headers = await fetch(client, app.url("/x"))
            assert "X-Cache" not in headers
        assert app.calls["/x"] == 1


async def test_ttl_zero_coalesces_and_stores_nothing() -> None:
    app = App(coalesce_middleware(ttl=0))

    async def h(request: web.Request) -> web.Response:
        await app.wait()
        return web.Response(text="x")

    app.get("/x", h)
    async with running(app) as client:
        await burst(app, client, "/x", 10)
        assert app.calls["/x"] == 1
        _, _, headers = await fetch(client, app.url("/x"))
        assert headers["X-Cache"] == "MISS"
        assert app.calls["/x"] == 2


async def test_per_status_ttl_and_default_statuses(clock: FakeClock) -> None:
    policy = CachePolicy(status_ttl={404: 1})
    app = App(coalesce_middleware(ttl=60, policy=policy, clock=clock))

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no")

    async def teapot(request: web.Request) -> web.Response:
        return web.Response(status=418, text="tea")

    app.get("/missing", missing)
    app.get("/teapot", teapot)
    async with running(app) as client:
        await fetch(client, app.url("/missing"))
        assert (await fetch(client, app.url("/missing")))[2]["X-Cache"] == "HIT"
        clock.advance(1.5)
        assert (await fetch(client, app.url("/missing")))[2]["X-Cache"] == "MISS"
        await fetch(client, app.url("/teapot"))
        assert (await fetch(client, app.url("/teapot")))[2]["X-Cache"] == "MISS"  # 418: not stored


# -- keys -----------------------------------------------------------------------------------------


async def test_keys_split_by_query_method_path_case_headers_and_key_func() -> None:
    def account(request: web.Request) -> str | None:
        return request.headers.get("X-Account")

    app = App(coalesce_middleware(ttl=60, key_headers=["Accept-Language"], key_func=account))

    async def echo(request: web.Request) -> web.Response:
        return web.Response(text=f"{request.method} {request.path_qs} {app.calls[request.path]}")

    app.get("/search", echo)
    app.get("/Search", echo)
    async with running(app) as client:
        a = await fetch(client, app.url("/search?q=a&page=1"))
        assert (await fetch(client, app.url("/search?page=1&q=a")))[1] == a[1]  # sorted query
        b = await fetch(client, app.url("/search?q=b&page=1"))
        assert b[2]["X-Cache"] == "MISS"
        assert (await fetch(client, app.url("/Search?q=a&page=1")))[2]["X-Cache"] == "MISS"
        async with client.head(app.url("/search?q=a&page=1")) as head:
            assert head.headers["X-Cache"] == "MISS"  # GET and HEAD never share
        fr = await fetch(client, app.url("/search?q=a&page=1"), headers={"Accept-Language": "fr"})
        assert fr[2]["X-Cache"] == "MISS"
        acct = await fetch(client, app.url("/search?q=a&page=1"), headers={"X-Account": "7"})
        assert acct[2]["X-Cache"] == "MISS"
        again = await fetch(client, app.url("/search?q=a&page=1"), headers={"X-Account": "7"})
        assert again[2]["X-Cache"] == "HIT"


async def test_post_passes_straight_through() -> None:
    app = App(coalesce_middleware(ttl=60))

    async def post(request: web.Request) -> web.Response:
        await app.wait()
        return web.Response(text="posted")

    app.add("POST", "/p", post)
    app.gate.clear()

    async def do_post(client: aiohttp.ClientSession) -> str:
        async with client.post(app.url("/p"), data=b"x") as r:
            return r.headers["X-Cache"]

    async with running(app) as client:
        tasks = [asyncio.ensure_future(do_post(client)) for _ in range(10)]
        await eventually(lambda: app.calls["/p"] == 10)  # none waits on another
        app.gate.set()
        assert set(await asyncio.gather(*tasks)) == {"BYPASS"}


async def test_credentials_bypass_unless_they_are_key_headers() -> None:
    app = App(coalesce_middleware(ttl=60))
    keyed = App(coalesce_middleware(ttl=60, key_headers=["Authorization"]))

    async def me(request: web.Request) -> web.Response:
        return web.Response(text=f"user {request.headers.get('Authorization')}")

    app.get("/me", me)
    keyed.get("/me", me)
    async with running(app) as client:
        for _ in range(2):
            _, body, headers = await fetch(client, app.url("/me"), headers={"Authorization": "a"})
            assert (body, headers["X-Cache"]) == ("user a", "BYPASS")
        _, _, headers = await fetch(client, app.url("/me"), headers={"Cookie": "sid=1"})
        assert headers["X-Cache"] == "BYPASS"
        assert app.calls["/me"] == 3
    async with running(keyed) as client:
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
    app = App(coalesce_middleware(ttl=60, clock=clock))
    n = 0

    async def h(request: web.Request) -> web.Response:
        nonlocal n
        n += 1
        mine = n
        await app.wait()
        return web.Response(text=f"for #{mine}", headers=private)

    app.get("/private", h)
    async with running(app) as client:
        results = await burst(app, client, "/private", 5)
        assert sorted(b for _, b, _ in results) == [f"for #{i}" for i in range(1, 6)]
        assert app.calls["/private"] == 5  # the waiters ran the handler themselves
        # Remembered as pass-through: neither serialized nor coalesced nor stored.
        app.gate.clear()
        later = [asyncio.ensure_future(fetch(client, app.url("/private"))) for _ in range(3)]
        await eventually(lambda: app.calls["/private"] == 8)  # all three in the handler at once
        app.gate.set()
        assert {h["X-Cache"] for _, _, h in await asyncio.gather(*later)} == {"BYPASS"}
        clock.advance(121)  # pass_ttl (120 s) over: the key takes part again
        _, _, headers = await fetch(client, app.url("/private"))
        assert headers["X-Cache"] == "MISS"
        assert app.mw.stats.stored == 0


async def test_two_users_never_see_each_others_cookie() -> None:
    app = App(coalesce_middleware(ttl=60))

    async def login(request: web.Request) -> web.Response:
        user = request.headers["X-User"]  # not a key header: both users share one key
        await app.wait()
        resp = web.Response(text=f"welcome {user}")
        resp.set_cookie("sid", f"secret-of-{user}")
        return resp

    app.get("/login", login)
    app.gate.clear()
    async with running(app) as client:
        alice = asyncio.ensure_future(fetch(client, app.url("/login"), headers={"X-User": "alice"}))
        await app.arrived.wait()
        bob = asyncio.ensure_future(fetch(client, app.url("/login"), headers={"X-User": "bob"}))
        await eventually(lambda: app.mw.stats.requests == 2)
        app.gate.set()
        (_, a_body, a_headers), (_, b_body, b_headers) = await asyncio.gather(alice, bob)
        assert (a_body, b_body) == ("welcome alice", "welcome bob")
        assert [c.split(";")[0] for c in a_headers.getall("Set-Cookie")] == ["sid=secret-of-alice"]
        assert [c.split(";")[0] for c in b_headers.getall("Set-Cookie")] == ["sid=secret-of-bob"]
        _, c_body, c_headers = await fetch(client, app.url("/login"), headers={"X-User": "carol"})
        assert c_body == "welcome carol"
        assert c_headers["X-Cache"] == "BYPASS"  # remembered as pass-through
        assert app.calls["/login"] == 3


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

    app = App(coalesce_middleware(ttl=60), outer=[request_id])

    async def h(request: web.Request) -> web.Response:
        await app.wait()
        return web.Response(
            text="x",
            headers={
                "Access-Control-Allow-Credentials": "true",
                "X-RateLimit-Remaining": "3",
                "X-Kept": "yes",
            },
        )

    app.get("/h", h)
    app.gate.clear()
    async with running(app) as client:
        tasks = [
            asyncio.ensure_future(fetch(client, app.url("/h"), headers={"Origin": f"o{i}"}))
            for i in range(4)
        ]
        await eventually(lambda: app.mw.stats.requests == 4)
        app.gate.set()
        results = await asyncio.gather(*tasks)
        results.append(await fetch(client, app.url("/h"), headers={"Origin": "o9"}))
    ids = {h["X-Request-Id"] for _, _, h in results}
    assert len(ids) == 5  # each request its own
    origins = sorted(h["Access-Control-Allow-Origin"] for _, _, h in results)
    assert origins == ["o0", "o1", "o2", "o3", "o9"]
    for _, _, headers in results:
        assert headers["X-Kept"] == "yes"
        if headers["X-Cache"] != "MISS":
            assert "X-RateLimit-Remaining" not in headers
            assert "Access-Control-Allow-Credentials" not in headers


async def test_each_replay_is_a_fresh_response_object() -> None:
    mw = coalesce_middleware(ttl=60)
    seen: list[web.StreamResponse] = []

    @web.middleware
    async def outer(request: web.Request, handler: Any) -> web.StreamResponse:
        resp = await handler(request)
        seen.append(resp)
        return resp

    app = App(mw, outer=[outer])

    async def h(request: web.Request) -> web.Response:
        await app.wait()
        return web.Response(text="x")

    app.get("/h", h)
    app.gate.clear()
    async with running(app) as client:
        tasks = [asyncio.ensure_future(fetch(client, app.url("/h"))) for _ in range(5)]
        await eventually(lambda: mw.stats.requests == 5)
        app.gate.set()
        await asyncio.gather(*tasks)
        await fetch(client, app.url("/h"))
    assert len({id(r) for r in seen}) == 6
    assert len({id(r.headers) for r in seen}) == 6


async def test_responses_that_cannot_be_replayed_pass_through_untouched(tmp_path: Path) -> None:
    app = App(coalesce_middleware(ttl=60, policy=CachePolicy(max_body_size=1000)))
    data = tmp_path / "file.txt"
    data.write_text("file body")

    async def stream(request: web.Request) -> web.StreamResponse:
        await app.wait()
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(b"streamed")
        return resp

    async def file(request: web.Request) -> web.FileResponse:
        await app.wait()
        return web.FileResponse(data)

    async def big(request: web.Request) -> web.Response:
        await app.wait()
        return web.Response(body=b"b" * 5000)

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        await sock.send_str("hello")
        await sock.close()
        return sock

    for path, handler in (("/stream", stream), ("/file", file), ("/big", big), ("/ws", ws)):
        app.get(path, handler)
    async with running(app) as client:
        for path, body in (("/stream", "streamed"), ("/file", "file body"), ("/big", "b" * 5000)):
            app.gate.clear()
            tasks = [asyncio.ensure_future(fetch(client, app.url(path))) for _ in range(3)]
            await eventually(lambda: app.mw.stats.requests % 3 == 0 and app.arrived.is_set())
            app.gate.set()
            results = await asyncio.gather(*tasks)
            assert [b for _, b, _ in results] == [body] * 3, path
            assert app.calls[path] == 3, path  # not shared: each ran the handler
            app.arrived.clear()
        for _ in range(2):
            async with client.ws_connect(app.url("/ws")) as sock:
                assert await sock.receive_str() == "hello"
        assert app.calls["/ws"] == 2
        assert app.mw.stats.stored == 0


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

    app = App(coalesce_middleware(ttl=60), outer=[outer])

    async def moved(request: web.Request) -> web.Response:
        await app.wait()
        raise web.HTTPFound("/elsewhere", headers={"X-From": "handler"})

    app.get("/moved", moved)
    app.gate.clear()
    async with running(app) as client:
        tasks = [
            asyncio.ensure_future(fetch(client, app.url("/moved"), allow_redirects=False))
            for _ in range(5)
        ]
        await eventually(lambda: app.mw.stats.requests == 5)
        app.gate.set()
        results = await asyncio.gather(*tasks)
        assert app.calls["/moved"] == 1
        assert {s for s, _, _ in results} == {302}
        assert {h["Location"] for _, _, h in results} == {"/elsewhere"}
        assert sorted(h["X-Outer"] for _, _, h in results) == ["1", "2", "3", "4", "5"]
        assert all(type(e) is web.HTTPFound and e.location == "/elsewhere" for e in raised)
        assert len({id(e) for e in raised}) == 5
        await fetch(client, app.url("/moved"), allow_redirects=False)
        assert app.calls["/moved"] == 2  # nothing stored from it


async def test_other_exceptions_are_a_500_for_each_and_nothing_is_stored() -> None:
    app = App(coalesce_middleware(ttl=60))
    fail = True

    async def flaky(request: web.Request) -> web.Response:
        await app.wait()
        if fail:
            raise RuntimeError("handler bug")
        return web.Response(text="fixed")

    app.get("/flaky", flaky)
    async with running(app) as client:
        results = await burst(app, client, "/flaky", 5)
        assert {s for s, _, _ in results} == {500}
        assert app.calls["/flaky"] == 1
        fail = False
        assert (await fetch(client, app.url("/flaky")))[1] == "fixed"
        assert app.calls["/flaky"] == 2
        assert app.mw.stats.errors == 5


async def test_the_leader_disconnecting_fails_no_waiter_and_runs_nothing_twice() -> None:
    app = App(coalesce_middleware(ttl=60))

    async def slow(request: web.Request) -> web.Response:
        await app.wait()
        return web.Response(text="done")

    app.get("/slow", slow)
    app.gate.clear()
    async with running(app, handler_cancellation=True) as client:
        leader_client = aiohttp.ClientSession()
        leader = asyncio.ensure_future(fetch(leader_client, app.url("/slow")))
        await app.arrived.wait()
        followers = [asyncio.ensure_future(fetch(client, app.url("/slow"))) for _ in range(5)]
        await eventually(lambda: app.mw.stats.requests == 6)
        leader.cancel()
        await leader_client.close()  # the leader's connection goes away
        with pytest.raises(asyncio.CancelledError):
            await leader
        app.gate.set()
        results = await asyncio.gather(*followers)
        assert {(s, b) for s, b, _ in results} == {(200, "done")}
        assert app.calls["/slow"] == 1


class BrokenStorage(MemoryStorage):
    async def get(self, key: str) -> Snapshot | None:
        raise OSError("broken")

    async def set(self, key: str, value: Snapshot, ttl: float) -> None:
        raise OSError("broken")


async def test_a_broken_storage_degrades_to_coalescing() -> None:
    app = App(coalesce_middleware(ttl=60, storage=BrokenStorage()))

    async def h(request: web.Request) -> web.Response:
        await app.wait()
        return web.Response(text="ok")

    app.get("/h", h)
    async with running(app) as client:
        results = await burst(app, client, "/h", 5)
        assert {(s, b) for s, b, _ in results} == {(200, "ok")}
        assert app.calls["/h"] == 1


async def test_decorate_applies_it_to_chosen_routes_only() -> None:
    mw = coalesce_middleware(ttl=60)
    application = web.Application()
    calls: Counter[str] = Counter()

    async def h(request: web.Request) -> web.Response:
        calls[request.path] += 1
        return web.Response(text="x")

    application.router.add_get("/cached", mw.decorate(h))
    application.router.add_get("/plain", h)
    runner = web.AppRunner(application)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        async with aiohttp.ClientSession() as client:
            for _ in range(2):
                await fetch(client, base + "/cached")
                _, _, headers = await fetch(client, base + "/plain")
                assert "X-Cache" not in headers
    finally:
        await runner.cleanup()
    assert calls == {"/cached": 1, "/plain": 2}


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
