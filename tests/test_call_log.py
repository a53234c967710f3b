"""One DEBUG record per finished call on the ``coalesce_client`` logger (issue 22).

On each face: a miss, a hit and a response not stored log one record each, with the fields as
attributes of the record; with DEBUG off nothing is built (``log_call`` is never reached), and
turning DEBUG on later is seen at once (logging clears its own cache of levels).
"""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Origin

from coalesce_client import coalesce_middleware
from coalesce_client.core import calllog

FIELDS = ("cache_status", "cache_reason", "method", "url", "key", "wait_seconds")


def routes(origin: Origin) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="x")

    async def nostore(request: web.Request) -> web.Response:
        return web.Response(text="x", headers={"Cache-Control": "no-store"})

    origin.route("/p", page)
    origin.route("/nostore", nostore)


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[Any, ...]]:
    return [
        tuple(getattr(r, f) for f in FIELDS)
        for r in caplog.records
        if r.name == "coalesce_client" and hasattr(r, "cache_status")
    ]


def check(got: list[tuple[Any, ...]], base: str) -> None:
    assert [g[:4] for g in got] == [
        ("miss", None, "GET", base + "/p"),
        ("hit", None, "GET", base + "/p"),
        ("miss", "no-store", "GET", base + "/nostore"),
    ]
    assert all(isinstance(g[4], str) and len(g[4]) == 12 for g in got)
    assert all(g[5] >= 0 for g in got)


async def test_a_client_face_logs_each_call(
    origin: Origin, client_face: Any, caplog: pytest.LogCaptureFixture
) -> None:
    routes(origin)
    await origin.start()
    caplog.set_level(logging.DEBUG, logger="coalesce_client")
    async with client_face(ttl=60) as s:
        for path in ("/p?a=1", "/p?a=1", "/nostore"):
            async with s.get(origin.url(path)) as r:
                await r.read()
    check(records(caplog), origin.base)
    upstream = [r.upstream_seconds for r in caplog.records if hasattr(r, "upstream_seconds")]
    assert upstream[1] is None and upstream[0] is not None and upstream[0] >= 0
    assert "miss (no-store) GET" in caplog.text


async def test_the_server_middleware_logs_each_request(caplog: pytest.LogCaptureFixture) -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])
    routes(origin)
    await origin.start()
    caplog.set_level(logging.DEBUG, logger="coalesce_client")
    try:
        async with aiohttp.ClientSession() as client:
            for path in ("/p?a=1", "/p?a=1", "/nostore"):
                async with client.get(origin.url(path)) as r:
                    await r.read()
    finally:
        await origin.stop()
        await mw.close()
    check(records(caplog), origin.base)


async def test_nothing_is_built_with_debug_off(
    origin: Origin, client_face: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes(origin)
    await origin.start()
    built: list[Any] = []
    monkeypatch.setattr(calllog, "log_call", built.append)
    logger = logging.getLogger("coalesce_client")
    monkeypatch.setattr(logger, "level", logger.level)
    logger.setLevel(logging.INFO)
    async with client_face(ttl=60) as s:
        for _ in range(2):
            async with s.get(origin.url("/p")) as r:
                await r.read()
        assert built == []
        logger.setLevel(logging.DEBUG)  # seen at once: logging clears its cache in place
        async with s.get(origin.url("/p")) as r:
            await r.read()
    assert [b.cache_status for b in built] == ["hit"]
