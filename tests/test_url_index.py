"""Invalidation (RFC 9111 §4.4) through both faces: a real origin on 127.0.0.1 counting its calls.

One resource, ``/item``, stored five ways: GET for two Vary variants (Accept-Language), GET for
two credential partitions, and HEAD. A non-error answer to an unsafe method drops all five; an
error answer drops nothing; same-origin Location / Content-Location are dropped too, another
origin's are not.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Origin

from coalesce_client import CoalescingSession, MemoryStorage, coalesce_middleware
from coalesce_client.core import writer

UNSAFE = ["POST", "PUT", "DELETE", "PATCH"]
# (method, headers) of the five ways /item is stored.
WAYS: list[tuple[str, dict[str, str]]] = [
    ("GET", {"Accept-Language": "en"}),
    ("GET", {"Accept-Language": "fr"}),
    ("GET", {"Accept-Language": "en", "Authorization": "alice"}),
    ("GET", {"Accept-Language": "en", "Authorization": "bob"}),
    ("HEAD", {"Accept-Language": "en"}),
]


class Resource:
    """``/item`` and its neighbours on one origin; ``seen`` counts the origin's calls by method
    and path; ``answer`` is what the next unsafe request gets (status and headers)."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.seen: Counter[tuple[str, str]] = Counter()
        self.status = 200
        self.headers: dict[str, str] = {}

        async def item(request: web.Request) -> web.StreamResponse:
            self.seen[request.method, request.path] += 1
            if request.method in ("GET", "HEAD"):
                lang = request.headers.get("Accept-Language", "")
                return web.Response(
                    text=f"{request.path} {lang}", headers={"Vary": "Accept-Language"}
                )
            if self.status == 303:
                raise web.HTTPSeeOther(self.headers["Location"])
            return web.Response(status=self.status, text="done", headers=self.headers)

        for path in ("/item", "/other", "/third"):
            origin.route(path, item)
        for method in UNSAFE:
            origin.route("/item", item, method)

    def gets(self) -> int:
        return sum(n for (m, p), n in self.seen.items() if m in ("GET", "HEAD") and p == "/item")


@pytest.fixture
async def resource(origin: Origin) -> Resource:
    r = Resource(origin)
    await origin.start()
    return r


async def statuses(s: CoalescingSession, url: str) -> list[str]:
    out = []
    for method, headers in WAYS:
        async with s.request(method, url, headers=headers) as r:
            out.append(r.cache_status)
    return out


MISSES = ["miss"] * 5
HITS = ["hit"] * 5


# -- the client ----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", UNSAFE)
async def test_a_successful_unsafe_request_drops_every_stored_response_of_its_url(
    resource: Resource, method: str
) -> None:
    url = resource.origin.url("/item")
    async with CoalescingSession(ttl=60) as s:
        assert await statuses(s, url) == MISSES
        assert await statuses(s, url) == HITS
        async with s.request(method, url) as r:
            assert r.status == 200
        assert await statuses(s, url) == MISSES
        assert await statuses(s, url) == HITS
    assert resource.gets() == 10
    assert resource.seen[method, "/item"] == 1


@pytest.mark.parametrize("status", [404, 500])
async def test_an_error_answer_to_an_unsafe_request_drops_nothing(
    resource: Resource, status: int
) -> None:
    url = resource.origin.url("/item")
    resource.status = status
    async with CoalescingSession(ttl=60) as s:
        await statuses(s, url)
        async with s.post(url) as r:
            assert r.status == status
        assert await statuses(s, url) == HITS
    assert resource.gets() == 5


async def test_same_origin_location_and_content_location_are_dropped_too(
    resource: Resource,
) -> None:
    origin = resource.origin
    # Another origin for the same server: another host name (RFC 6454: scheme, host, port).
    elsewhere = origin.url("/other").replace("127.0.0.1", "localhost")
    resource.status = 201
    resource.headers = {"Location": "/other", "Content-Location": origin.url("/third?x=1")}
    async with CoalescingSession(ttl=60) as s:
        for url in (origin.url("/other"), origin.url("/third?x=1"), elsewhere):
            await s.get(url)
        async with s.post(origin.url("/item")):
            pass
        assert (await s.get(origin.url("/other"))).cache_status == "miss"
        assert (await s.get(origin.url("/third?x=1"))).cache_status == "miss"
        # A cross-origin Location is not the origin's to drop.
        resource.headers = {"Location": elsewhere}
        async with s.put(origin.url("/item")):
            pass
        assert (await s.get(elsewhere)).cache_status == "hit"
        assert (await s.get(origin.url("/other"))).cache_status == "hit"
    assert resource.seen["GET", "/other"] == 3
    assert resource.seen["GET", "/third"] == 2


async def test_invalidate_drops_every_stored_response_of_the_url_and_nothing_else(
    resource: Resource,
) -> None:
    url = resource.origin.url("/item")
    async with CoalescingSession(ttl=60) as s:
        await statuses(s, url)
        await s.get(url + "?page=2")
        await s.invalidate(url)
        assert await statuses(s, url) == MISSES
        assert (await s.get(url + "?page=2")).cache_status == "hit"
        await s.invalidate(url, params={"page": "2"})
        assert (await s.get(url + "?page=2")).cache_status == "miss"
    assert resource.gets() == 12


async def test_the_index_is_bounded_and_its_oldest_entry_is_dropped_with_it(
    started: Origin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "MAX_KEYS", 2)
    url = started.url("/text")
    storage = MemoryStorage()
    async with CoalescingSession(ttl=60, storage=storage, storage_owner=False) as s:
        for user in ("alice", "bob", "carol"):
            await s.get(url, headers={"Authorization": user})
        assert len(storage) == 3  # two responses and the index: alice's went out with her key
        assert (await s.get(url, headers={"Authorization": "alice"})).cache_status == "miss"
        assert (await s.get(url, headers={"Authorization": "carol"})).cache_status == "hit"
        await s.invalidate(url)
        assert len(storage) == 0
    assert started.calls["/text"] == 4


# -- the middleware ------------------------------------------------------------------------------


async def served(client: aiohttp.ClientSession, url: str) -> list[str]:
    out = []
    for method, headers in WAYS:
        async with client.request(method, url, headers=headers) as r:
            out.append(r.headers["X-Cache"])
    return out


@pytest.fixture
async def behind() -> AsyncIterator[tuple[Resource, aiohttp.ClientSession]]:
    """``/item`` behind the middleware (credentials keyed, so both partitions are stored)."""
    origin = Origin(middlewares=[coalesce_middleware(ttl=60, key_headers=["Authorization"])])
    resource = Resource(origin)
    await origin.start()
    try:
        async with aiohttp.ClientSession() as client:
            yield resource, client
    finally:
        await origin.stop()


@pytest.mark.parametrize("method", UNSAFE)
async def test_the_middleware_drops_a_url_its_handler_changed(
    behind: tuple[Resource, aiohttp.ClientSession], method: str
) -> None:
    resource, client = behind
    url = resource.origin.url("/item")
    assert await served(client, url) == ["MISS"] * 5
    assert await served(client, url) == ["HIT"] * 5
    async with client.request(method, url) as r:
        assert r.status == 200
    assert await served(client, url) == ["MISS"] * 5
    assert resource.gets() == 10


@pytest.mark.parametrize("status", [404, 500])
async def test_the_middleware_keeps_a_url_when_the_handler_answered_an_error(
    behind: tuple[Resource, aiohttp.ClientSession], status: int
) -> None:
    resource, client = behind
    url = resource.origin.url("/item")
    resource.status = status
    await served(client, url)
    async with client.post(url) as r:
        assert r.status == status
    assert await served(client, url) == ["HIT"] * 5
    assert resource.gets() == 5


async def test_the_middleware_drops_a_same_origin_location_raised_or_returned(
    behind: tuple[Resource, aiohttp.ClientSession],
) -> None:
    resource, client = behind
    origin = resource.origin

    async def cache_of(path: str) -> str:
        async with client.get(origin.url(path)) as r:
            return r.headers["X-Cache"]

    kw: dict[str, Any] = {"allow_redirects": False}
    await cache_of("/other")
    await cache_of("/third")
    resource.status = 303  # raised: web.HTTPSeeOther
    resource.headers = {"Location": "/other"}
    async with client.post(origin.url("/item"), **kw) as r:
        assert r.status == 303
    assert (await cache_of("/other"), await cache_of("/third")) == ("MISS", "HIT")
    resource.status = 201  # returned, with a Content-Location on the same origin
    resource.headers = {"Content-Location": origin.url("/third")}
    async with client.post(origin.url("/item"), **kw):
        pass
    assert (await cache_of("/other"), await cache_of("/third")) == ("HIT", "MISS")
    # Another origin's Location (another host name for this server) drops nothing here.
    resource.headers = {"Location": origin.url("/other").replace("127.0.0.1", "localhost")}
    async with client.post(origin.url("/item"), **kw):
        pass
    assert (await cache_of("/other"), await cache_of("/third")) == ("HIT", "HIT")
