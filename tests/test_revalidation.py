"""Revalidation and stale responses (issue 13; RFC 9111 §4.3, §4.2.4, RFC 5861), both faces.

Every origin here is a real aiohttp.web app on 127.0.0.1 that counts its calls and records the
conditional headers each call carried; time is a fake clock, and the origins date their answers
on it (aiohttp's own ``Date`` would be the real time, months from the fake one).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from conftest import CLIENT_MIDDLEWARE, FakeClock, MiddlewareClient, Origin, finished, until
from multidict import CIMultiDict

from coalesce_client import CachePolicy, CoalescingSession, coalesce_middleware
from coalesce_client.spec.dates import format_http_date

LAST_MODIFIED = "Sat, 01 Jan 2022 00:00:00 GMT"


@dataclass
class Resource:
    """What the origin's ``/r`` answers, and what it was asked."""

    etag: str | None = '"v1"'
    last_modified: str | None = None
    cache_control: str = "max-age=10"
    body: str = "version 1"
    status: int = 200  # 503: the origin fails; 304 answers come from the validators below
    not_modified_etag: str | None = None  # the ETag of a 304 (default: the current one)
    extra: dict[str, str] = field(default_factory=dict)  # more headers, on 200 and 304 alike
    raise_503: bool = False  # the handler raises HTTPServiceUnavailable instead of returning
    hold: bool = False  # wait at the origin's gate
    conditions: list[tuple[str | None, str | None]] = field(default_factory=list)


def validating(origin: Origin, clock: FakeClock, r: Resource) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        inm = request.headers.get("If-None-Match")
        ims = request.headers.get("If-Modified-Since")
        r.conditions.append((inm, ims))
        if r.hold:
            await origin.wait()
        headers = {"Date": format_http_date(clock.now), "Cache-Control": r.cache_control}
        headers.update(r.extra)
        if r.raise_503:
            raise web.HTTPServiceUnavailable(headers={"Date": headers["Date"]})
        if r.status != 200:
            return web.Response(status=r.status, text="origin down", headers=headers)
        if r.etag is not None:
            headers["ETag"] = r.etag
        if r.last_modified is not None:
            headers["Last-Modified"] = r.last_modified
        matched = (inm is not None and r.etag is not None and inm == r.etag) or (
            inm is None and ims is not None and r.last_modified == ims
        )
        if matched:
            if r.not_modified_etag is not None:
                headers["ETag"] = r.not_modified_etag
            return web.Response(status=304, headers=headers)
        return web.Response(text=r.body, headers=headers)

    origin.route("/r", handler)


# -- the two faces, behind one interface ------------------------------------------------------


@dataclass
class Seen:
    status: int
    body: str
    cache_status: str
    headers: CIMultiDict[str]


class Face:
    """One face in front of the origin: ``get()`` returns what a caller saw."""

    name: str
    stats: Callable[[], object]

    async def get(self, headers: dict[str, str] | None = None) -> Seen:
        raise NotImplementedError

    async def drain(self) -> None:
        raise NotImplementedError


class ClientFace(Face):
    name = "client"

    def __init__(self, session: CoalescingSession, url: str) -> None:
        self.session, self.url = session, url
        self.stats = lambda: session.stats

    async def get(self, headers: dict[str, str] | None = None) -> Seen:
        r = await self.session.get(self.url, headers=headers)
        return Seen(r.status, await r.text(), r.cache_status, CIMultiDict(r.headers))

    async def drain(self) -> None:
        await self.session._core.drain()


_X_CACHE = {
    "HIT": "hit",
    "MISS": "miss",
    "COALESCED": "coalesced",
    "STALE": "stale",
    "REVALIDATED": "revalidated",
    "BYPASS": "bypass",
}


class ServerFace(Face):
    """The middleware in front of a handler that forwards to the origin (a reverse proxy)."""

    name = "middleware"

    def __init__(self, mw: object, client: aiohttp.ClientSession, url: str) -> None:
        self.mw, self.client, self.url = mw, client, url
        self.stats = lambda: mw.stats  # type: ignore[attr-defined]

    async def get(self, headers: dict[str, str] | None = None) -> Seen:
        async with self.client.get(self.url, headers=headers) as r:
            body = await r.text()
            return Seen(r.status, body, _X_CACHE[r.headers["X-Cache"]], CIMultiDict(r.headers))

    async def drain(self) -> None:
        await self.mw._core.drain()  # type: ignore[attr-defined]


@pytest.fixture(params=["client", "middleware", CLIENT_MIDDLEWARE])
async def make_face(
    request: pytest.FixtureRequest, origin: Origin, clock: FakeClock
) -> AsyncIterator[Callable[..., object]]:
    """``await make_face(resource, policy=..., timeout=...)``: the origin serving ``resource``
    behind the face of this run."""
    closers: list[Callable[[], object]] = []

    async def make(r: Resource, **options: object) -> Face:
        validating(origin, clock, r)
        await origin.start()
        policy = options.pop("policy", CachePolicy())
        timeout = options.pop("timeout", None)
        if request.param != "middleware":
            face = CoalescingSession if request.param == "client" else MiddlewareClient
            session = face(
                ttl=600,
                clock=clock,
                policy=policy,
                timeout=aiohttp.ClientTimeout(total=timeout) if timeout else None,
            )
            closers.append(session.close)
            return ClientFace(session, origin.url("/r"))
        mw = coalesce_middleware(ttl=600, clock=clock, policy=policy, request_cache_control=True)
        upstream = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=timeout) if timeout else aiohttp.ClientTimeout()
        )
        closers.append(upstream.close)

        async def forward(req: web.Request) -> web.Response:
            wanted = {k: v for k, v in req.headers.items() if k.lower().startswith("if-")}
            async with upstream.get(origin.url("/r"), headers=wanted) as up:
                body = await up.read()
                if up.status == 503:
                    raise web.HTTPServiceUnavailable(text="origin down")
                kept = ("Date", "Cache-Control", "ETag", "Last-Modified", *r.extra)
                headers = {k: up.headers[k] for k in kept if k in up.headers}
                return web.Response(status=up.status, body=body or None, headers=headers)

        app = web.Application(middlewares=[mw])
        app.router.add_get("/r", forward)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        closers.append(runner.cleanup)
        client = aiohttp.ClientSession()
        closers.append(client.close)
        return ServerFace(mw, client, f"http://127.0.0.1:{port}/r")

    yield make
    for close in reversed(closers):
        await close()  # type: ignore[misc]


# -- conditional revalidation (RFC 9111 §4.3) ---------------------------------------------------


async def test_etag_revalidation_304_updates_headers_renews_freshness(
    make_face: Callable[..., object], origin: Origin, clock: FakeClock
) -> None:
    r = Resource(extra={"X-Version": "1"})
    face: Face = await make_face(r)  # type: ignore[misc]
    first = await face.get()
    clock.advance(11)  # max-age=10: stale now
    r.extra["X-Version"] = "2"  # the 304 carries a new value: it replaces the stored one
    second = await face.get()
    clock.advance(5)
    third = await face.get()
    assert (first.cache_status, second.cache_status, third.cache_status) == (
        "miss",
        "revalidated",
        "hit",
    )
    assert second.status == third.status == 200
    assert second.body == third.body == "version 1"  # the stored body, confirmed
    assert second.headers["X-Version"] == third.headers["X-Version"] == "2"
    assert second.headers["Age"] == "0" and third.headers["Age"] == "5"  # renewed at the 304
    assert origin.calls["/r"] == 2
    assert r.conditions == [(None, None), ('"v1"', None)]
    stats = face.stats()
    assert (stats.revalidated, stats.hits, stats.misses) == (1, 1, 1)  # type: ignore[attr-defined]


async def test_last_modified_revalidation_sends_if_modified_since(
    make_face: Callable[..., object], origin: Origin, clock: FakeClock
) -> None:
    r = Resource(etag=None, last_modified=LAST_MODIFIED)
    face: Face = await make_face(r)  # type: ignore[misc]
    await face.get()
    clock.advance(11)
    again = await face.get()
    after = await face.get()
    assert (again.cache_status, after.cache_status) == ("revalidated", "hit")
    assert again.body == "version 1"
    assert r.conditions == [(None, None), (None, LAST_MODIFIED)]
    assert origin.calls["/r"] == 2


async def test_a_200_to_the_conditional_request_replaces_the_entry(
    make_face: Callable[..., object], origin: Origin, clock: FakeClock
) -> None:
    r = Resource()
    face: Face = await make_face(r)  # type: ignore[misc]
    await face.get()
    clock.advance(11)
    r.etag, r.body = '"v2"', "version 2"
    replaced = await face.get()
    after = await face.get()
    assert (replaced.cache_status, replaced.body) == ("miss", "version 2")
    assert (after.cache_status, after.body, after.headers["ETag"]) == ("hit", "version 2", '"v2"')
    assert r.conditions == [(None, None), ('"v1"', None)]


async def test_a_304_for_another_strong_etag_is_not_applied(
    make_face: Callable[..., object], origin: Origin, clock: FakeClock
) -> None:
    """RFC 9111 §4.3.4: a 304 whose strong validator is not the stored one updates nothing; the
    flight asks again, unconditionally, for the whole response."""
    r = Resource(not_modified_etag='"other"')
    face: Face = await make_face(r)  # type: ignore[misc]
    await face.get()
    clock.advance(11)
    r.body = "version 1, again"  # what an unconditional request now gets
    again = await face.get()
    assert (again.status, again.cache_status, again.body) == (200, "miss", "version 1, again")
    assert r.conditions == [(None, None), ('"v1"', None), (None, None)]


async def test_burst_of_100_on_a_stale_entry_makes_exactly_one_conditional_request(
    make_face: Callable[..., object], origin: Origin, clock: FakeClock
) -> None:
    r = Resource()
    face: Face = await make_face(r)  # type: ignore[misc]
    await face.get()
    clock.advance(11)
    r.hold = True
    origin.gate.clear()
    burst = [asyncio.ensure_future(face.get()) for _ in range(100)]
    await origin.at_gate.reach(1, "the conditional request at the origin")
    await until(lambda: face.stats().requests == 101, "the burst inside the face")  # type: ignore[attr-defined]
    origin.gate.set()
    seen = await finished(asyncio.gather(*burst), "the burst")
    assert origin.calls["/r"] == 2 and r.conditions[1:] == [('"v1"', None)]
    assert sorted(s.cache_status for s in seen) == ["coalesced"] * 99 + ["revalidated"]
    assert {s.body for s in seen} == {"version 1"}


async def test_response_no_cache_is_stored_and_revalidated_before_every_reuse(
    make_face: Callable[..., object], origin: Origin, clock: FakeClock
) -> None:
    r = Resource(cache_control="no-cache")
    face: Face = await make_face(r)  # type: ignore[misc]
    seen = [await face.get() for _ in range(3)]
    assert [s.cache_status for s in seen] == ["miss", "revalidated", "revalidated"]
    assert {s.body for s in seen} == {"version 1"}
    assert r.conditions == [(None, None), ('"v1"', None), ('"v1"', None)]


async def test_request_no_cache_revalidates_a_fresh_entry(
    make_face: Callable[..., object], origin: Origin, clock: FakeClock
) -> None:
    r = Resource(cache_control="max-age=100")
    face: Face = await make_face(r)  # type: ignore[misc]
    await face.get()
    forced = await face.get({"Cache-Control": "no-cache"})
    assert (forced.cache_status, forced.body) == ("revalidated", "version 1")
    assert r.conditions == [(None, None), ('"v1"', None)]


# -- stale-while-revalidate (RFC 5861 §3) -------------------------------------------------------


@pytest.mark.parametrize("from_origin", [True, False], ids=["directive", "policy"])
async def test_swr_serves_a_burst_at_once_with_exactly_one_background_request(
    make_face: Callable[..., object], origin: Origin, clock: FakeClock, from_origin: bool
) -> None:
    if from_origin:
        r, policy = Resource(cache_control="max-age=10, stale-while-revalidate=60"), CachePolicy()
    else:
        r, policy = Resource(), CachePolicy(stale_while_revalidate=60)
    face: Face = await make_face(r, policy=policy)  # type: ignore[misc]
    await face.get()
    clock.advance(30)  # stale for 20 s, within the 60 s window
    r.hold = True
    origin.gate.clear()  # the refresh waits at the origin; the callers must not
    r.etag, r.body = '"v2"', "version 2"
    seen = await finished(asyncio.gather(*(face.get() for _ in range(100))), "the stale burst")
    assert {(s.cache_status, s.body) for s in seen} == {("stale", "version 1")}
    assert all(s.headers["Age"] == "30" for s in seen)
    await origin.at_gate.reach(1, "the background refresh at the origin")
    assert origin.calls["/r"] == 2  # one refresh, not one per caller
    origin.gate.set()
    await finished(face.drain(), "the background refresh")
    after = await face.get()
    assert (after.cache_status, after.body) == ("hit", "version 2")
    assert r.conditions == [(None, None), ('"v1"', None)]
    assert face.stats().stale == 100  # type: ignore[attr-defined]


async def test_swr_refresh_that_gets_an_error_keeps_the_stored_response(
    make_face: Callable[..., object], origin: Origin, clock: FakeClock
) -> None:
    r = Resource(cache_control="max-age=10, stale-while-revalidate=60")
    face: Face = await make_face(r)  # type: ignore[misc]
    await face.get()
    clock.advance(20)
    r.status = 500  # the refresh gets an error: nothing stored, the stored response stays
    stale = await face.get()
    await finished(face.drain(), "the background refresh")
    again = await face.get()
    await finished(face.drain(), "the second refresh")
    assert (stale.cache_status, again.cache_status) == ("stale", "stale")
    assert again.body == "version 1"
    assert origin.calls["/r"] == 3  # the first refresh, then the next caller's own


async def test_client_swr_refresh_failure_is_logged_never_raised(
    origin: Origin, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    r = Resource(cache_control="max-age=10, stale-while-revalidate=60")
    validating(origin, clock, r)
    await origin.start()
    async with CoalescingSession(ttl=600, clock=clock) as s:
        await s.get(origin.url("/r"))
        clock.advance(20)
        await origin.stop()  # connection refused for the refresh
        with caplog.at_level(logging.WARNING, logger="coalesce_client"):
            stale = await s.get(origin.url("/r"))
            await finished(s._core.drain(), "the background refresh")
        assert stale.cache_status == "stale" and await stale.text() == "version 1"
        assert s.stats.errors == 0
    failures = [m for m in caplog.messages if "background refresh failed" in m]
    assert len(failures) == 1 and "ClientConnectorError" in failures[0]


async def test_past_the_swr_window_callers_wait_for_the_refresh(
    make_face: Callable[..., object], origin: Origin, clock: FakeClock
) -> None:
    r = Resource(cache_control="max-age=10, stale-while-revalidate=5")
    face: Face = await make_face(r)  # type: ignore[misc]
    await face.get()
    clock.advance(16)  # stale for 6 s: outside the window
    got = await face.get()
    assert got.cache_status == "revalidated"


# -- stale-if-error (RFC 5861 §4) ------------------------------------------------------------


@pytest.mark.parametrize("failure", ["503", "raised 503", "500"])
async def test_sie_serves_stale_when_the_origin_answers_an_error(
    make_face: Callable[..., object], origin: Origin, clock: FakeClock, failure: str
) -> None:
    r = Resource(cache_control="max-age=10, stale-if-error=60")
    face: Face = await make_face(r)  # type: ignore[misc]
    await face.get()
    clock.advance(30)
    if failure == "raised 503":
        r.raise_503 = True
    else:
        r.status = int(failure)
    r.hold = True
    origin.gate.clear()
    burst = [asyncio.ensure_future(face.get()) for _ in range(20)]
    await origin.at_gate.reach(1, "the refresh at the origin")
    await until(lambda: face.stats().requests == 21, "the burst inside the face")  # type: ignore[attr-defined]
    origin.gate.set()
    seen = await finished(asyncio.gather(*burst), "the burst")
    assert {(s.status, s.body, s.cache_status) for s in seen} == {(200, "version 1", "stale")}
    assert origin.calls["/r"] == 2


async def test_sie_outside_the_window_the_error_reaches_the_caller(
    make_face: Callable[..., object], origin: Origin, clock: FakeClock
) -> None:
    r = Resource(cache_control="max-age=10, stale-if-error=60")
    face: Face = await make_face(r)  # type: ignore[misc]
    await face.get()
    clock.advance(71)  # stale for 61 s
    r.status = 503
    got = await face.get()
    assert got.status == 503 and got.cache_status == "miss"


async def test_must_revalidate_beats_stale_if_error(
    make_face: Callable[..., object], origin: Origin, clock: FakeClock
) -> None:
    r = Resource(cache_control="max-age=10, must-revalidate")
    face: Face = await make_face(r, policy=CachePolicy(stale_if_error=600))  # type: ignore[misc]
    await face.get()
    clock.advance(30)
    r.status = 503
    got = await face.get()
    assert got.status == 503 and got.cache_status == "miss"


async def test_client_sie_on_connection_refused_and_on_timeout(
    origin: Origin, clock: FakeClock
) -> None:
    r = Resource(cache_control="max-age=10, stale-if-error=60")
    validating(origin, clock, r)
    await origin.start()
    url = origin.url("/r")
    timeout = aiohttp.ClientTimeout(total=0.2)
    async with CoalescingSession(ttl=600, clock=clock, timeout=timeout) as s:
        await s.get(url)
        clock.advance(30)
        r.hold = True
        origin.gate.clear()  # the origin hangs: the session's timeout ends the request
        timed_out = await s.get(url)
        await origin.stop()  # now nothing listens: connection refused
        refused = await s.get(url)
        clock.advance(60)  # outside the window: the failure reaches the caller
        with pytest.raises(aiohttp.ClientConnectionError):
            await s.get(url)
    assert (timed_out.cache_status, await timed_out.text()) == ("stale", "version 1")
    assert (refused.cache_status, await refused.text()) == ("stale", "version 1")


async def test_client_max_stale_request_directive(origin: Origin, clock: FakeClock) -> None:
    r = Resource()
    validating(origin, clock, r)
    await origin.start()
    async with CoalescingSession(ttl=600, clock=clock) as s:
        await s.get(origin.url("/r"))
        clock.advance(20)  # stale for 10 s
        ok = await s.get(origin.url("/r"), headers={"Cache-Control": "max-stale=15"})
        too_old = await s.get(origin.url("/r"), headers={"Cache-Control": "max-stale=5"})
    assert ok.cache_status == "stale" and await ok.text() == "version 1"
    assert too_old.cache_status == "revalidated"
    assert origin.calls["/r"] == 2


async def test_close_drains_a_background_refresh(origin: Origin, clock: FakeClock) -> None:
    r = Resource(cache_control="max-age=10, stale-while-revalidate=60")
    validating(origin, clock, r)
    await origin.start()
    s = CoalescingSession(ttl=600, clock=clock)
    await s.get(origin.url("/r"))
    clock.advance(20)
    r.hold = True
    origin.gate.clear()
    stale = await s.get(origin.url("/r"))
    await origin.at_gate.reach(1, "the background refresh")
    closing = asyncio.ensure_future(s.close())
    await until(lambda: s.closed, "close begun")
    for _ in range(20):  # loop turns: close cannot end while the refresh is at the gate
        await asyncio.sleep(0)
    assert not closing.done()
    origin.gate.set()
    await finished(closing, "close")
    assert stale.cache_status == "stale"
    assert s.stats.stored == 2  # the refresh finished and stored before close returned


async def test_middleware_background_refresh_never_writes_on_a_callers_connection(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A stale-while-revalidate refresh runs the handler after its caller was answered, while
    that caller's connection serves its next request: a handler that streams must not write a
    byte there (its refresh fails, logged; the connection's next answer is intact)."""
    runs = 0

    async def handler(request: web.Request) -> web.StreamResponse:
        nonlocal runs
        runs += 1
        headers = {"Cache-Control": "max-age=10, stale-while-revalidate=60", "ETag": '"a"'}
        if runs == 1:
            return web.Response(text="stored", headers=headers)
        resp = web.StreamResponse(headers=headers)  # the refresh streams its answer
        await resp.prepare(request)
        await resp.write(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged")
        return resp

    mw = coalesce_middleware(ttl=600, clock=clock)
    app = web.Application(middlewares=[mw])
    app.router.add_get("/r", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/r"
    try:
        connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection for every request
        async with aiohttp.ClientSession(connector=connector) as client:
            seen = []
            with caplog.at_level(logging.WARNING, logger="coalesce_client"):
                for step in range(4):
                    if step == 1:
                        clock.advance(20)
                    async with client.get(url) as r:
                        seen.append((r.status, await r.text(), r.headers.get("X-Cache")))
                    await finished(mw._core.drain(), "the background refresh")
    finally:
        await runner.cleanup()
    assert seen[0] == (200, "stored", "MISS")
    assert seen[1:] == [(200, "stored", "STALE")] * 3
    assert runs == 4  # each stale answer started a refresh, which failed
    assert any("background refresh failed" in m for m in caplog.messages)
