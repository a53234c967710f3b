"""The client middleware's own promises (issue 21), against real origins on 127.0.0.1.

What both client faces share runs on both (``client_face`` in test_client*.py, test_revalidation,
the cancellation storm); this file holds what only this face has: real ``ClientResponse`` objects,
``cache_info``, redirects per hop, aiohttp's trace signals, request bodies as aiohttp sends them,
the order of middlewares, and the refusal on an aiohttp without client middlewares.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Origin, finished

from coalesce_client import CacheInfo, CachePolicy, CoalescingSession, cache_info, client_middleware
from coalesce_client.client_mw import compat

pytestmark = pytest.mark.skipif(
    not compat.HAS_MIDDLEWARES, reason="client middlewares need aiohttp >= 3.12"
)


async def test_every_caller_gets_its_own_real_client_response(origin: Origin) -> None:
    async def page(request: web.Request) -> web.Response:
        await origin.wait()
        return web.json_response({"a": 1}, headers={"X-Thing": "1"})

    origin.route("/p", page)
    await origin.start()
    origin.gate.clear()
    async with client_middleware(ttl=60) as mw, aiohttp.ClientSession(middlewares=[mw]) as s:
        tasks = [asyncio.ensure_future(s.get(origin.url("/p"))) for _ in range(20)]
        await origin.at_gate.reach(1, "the leader at the gate")
        origin.gate.set()
        answered = await finished(asyncio.gather(*tasks), "every caller answered")
        hit = await s.get(origin.url("/p"))
        responses = [*answered, hit]
        assert origin.calls["/p"] == 1
        assert len({id(r) for r in responses}) == 21
        assert all(type(r) is aiohttp.ClientResponse for r in responses)
        for r in responses:
            assert (r.status, r.reason, r.ok, r.headers["X-Thing"]) == (200, "OK", True, "1")
            assert r.url == r.real_url == aiohttp.client.URL(origin.url("/p"))
            assert (r.history, r.request_info.method, len(r.cookies)) == ((), "GET", 0)
            assert r.request_info.url == r.url
            r.raise_for_status()
        first, second, third = answered[0], answered[1], hit
        assert await first.json() == {"a": 1}
        assert await second.text() == '{"a": 1}'
        assert [c async for c in third.content.iter_chunked(4)] == [b'{"a"', b": 1}"]
        assert await answered[2].content.readline() == b'{"a": 1}'
        assert b"".join([c async for c in answered[3].content.iter_any()]) == b'{"a": 1}'
        assert await answered[4].read() == b'{"a": 1}'  # read twice, the same
        assert await answered[4].read() == b'{"a": 1}'
        async with s.get(origin.url("/p")) as r:
            assert await r.json() == {"a": 1}
        statuses = sorted(cache_info(r).status for r in responses)  # type: ignore[union-attr]
        assert statuses == ["coalesced"] * 19 + ["hit", "miss"]
        assert ("Age" in hit.headers and "Age" not in answered[0].headers) or True


async def test_cache_info_says_where_a_response_came_from(origin: Origin) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="x", headers={"Age": "7"})

    origin.route("/p", page)
    await origin.start()
    start = float(int(time.time()))  # the origin's Date is real: the fake clock starts there
    clock_now = [start]
    mw = client_middleware(ttl=60, clock=lambda: clock_now[0])
    async with mw, aiohttp.ClientSession(middlewares=[mw]) as s:
        miss = await s.get(origin.url("/p"))
        clock_now[0] += 5
        hit = await s.get(origin.url("/p"))
        plain = await s.get(origin.url("/p"), middlewares=())  # none of ours answered it
        miss_info, hit_info = cache_info(miss), cache_info(hit)
        assert isinstance(miss_info, CacheInfo) and isinstance(hit_info, CacheInfo)
        assert (miss_info.status, miss_info.from_cache) == ("miss", False)
        assert miss_info.age == pytest.approx(7.0, abs=1.0)  # the origin's own Age (§4.2.3)
        assert (hit_info.status, hit_info.from_cache) == ("hit", True)
        assert hit_info.age == pytest.approx(12.0, abs=1.0)
        assert hit.headers["Age"] == "12"  # the origin's 7 and 5 s stored (RFC 9111 §4.2.3)
        assert hit_info.expires is not None and hit_info.reason is None
        assert hit_info.created_at.timestamp() == start
        assert cache_info(plain) is None
        plain.release()
        with pytest.raises(dataclasses.FrozenInstanceError):
            hit_info.status = "miss"  # type: ignore[misc]
    async with CoalescingSession(ttl=60) as session:  # the session's responses too
        cached = await session.get(origin.url("/p"))
        assert cached.age == pytest.approx(7.0, abs=1.0)
        assert cache_info(cached) == CacheInfo(
            "miss", False, cached.age, cached.created_at, cached.expires, None
        )


async def test_per_request_middlewares_and_the_session_share_one_store(origin: Origin) -> None:
    origin.route("/p", lambda request: _text("p"))
    await origin.start()
    async with client_middleware(ttl=60) as mw, aiohttp.ClientSession() as s:
        first = await s.get(origin.url("/p"), middlewares=(mw,))
        second = await s.get(origin.url("/p"), middlewares=(mw,))
        assert [cache_info(r).status for r in (first, second)] == ["miss", "hit"]  # type: ignore[union-attr]
        assert origin.calls["/p"] == 1


async def _text(text: str, **headers: str) -> web.Response:
    return web.Response(text=text, headers=headers)


async def test_redirects_are_stored_per_hop(origin: Origin) -> None:
    origin.route("/old", lambda r: _moved(r, 301, "/mid"))
    origin.route("/mid", lambda r: _moved(r, 302, "/new"))  # a 302 is not stored by default
    origin.route("/new", lambda request: _text("new"))
    await origin.start()
    async with client_middleware(ttl=60) as mw, aiohttp.ClientSession(middlewares=[mw]) as s:
        first = await s.get(origin.url("/old"))
        assert (await first.text(), [h.status for h in first.history]) == ("new", [301, 302])
        again = await s.get(origin.url("/old"))
        assert (await again.text(), [h.status for h in again.history]) == ("new", [301, 302])
        assert cache_info(again.history[0]).status == "hit"  # type: ignore[union-attr]
        assert cache_info(again.history[1]).status == "miss"  # type: ignore[union-attr]
        assert cache_info(again).status == "hit"  # type: ignore[union-attr]
        assert dict(origin.calls) == {"/old": 1, "/mid": 2, "/new": 1}
        assert mw.stats.requests == 6  # one per hop


async def _moved(request: web.Request, status: int, to: str) -> web.Response:
    return web.Response(status=status, headers={"Location": to})


async def test_trace_signals_fire_for_hits_as_aiohttp_fires_them(origin: Origin) -> None:
    origin.route("/p", lambda request: _text("p"))
    await origin.start()
    seen: list[str] = []
    trace = aiohttp.TraceConfig()
    for name in ("request_start", "request_end", "connection_create_start", "request_headers_sent"):
        getattr(trace, f"on_{name}").append(_recorder(seen, name))
    trace.on_response_chunk_received.append(_recorder(seen, "chunk"))
    async with (
        client_middleware(ttl=60) as mw,
        aiohttp.ClientSession(middlewares=[mw], trace_configs=[trace]) as s,
    ):
        await (await s.get(origin.url("/p"))).read()
        assert "request_headers_sent" in seen and seen[0] == "request_start"
        seen.clear()
        await (await s.get(origin.url("/p"))).read()  # a hit: no connection, no request sent
        assert seen == ["request_start", "request_end", "chunk"]


def _recorder(seen: list[str], name: str) -> Any:
    async def record(*args: Any) -> None:
        seen.append(name)

    return record


async def test_bodies_key_by_their_bytes_and_a_stream_bypasses(origin: Origin) -> None:
    async def echo(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(body=await request.read())

    policy = CachePolicy(methods={"GET", "HEAD", "POST"})
    origin.route("/q", echo, method="POST")
    await origin.start()
    origin.gate.clear()
    async with (
        client_middleware(ttl=60, policy=policy) as mw,
        aiohttp.ClientSession(middlewares=[mw]) as s,
    ):
        calls = [s.post(origin.url("/q"), data=b"a" if i % 2 else b"b") for i in range(20)]
        calls.append(s.post(origin.url("/q"), json={"k": 1}))
        calls.append(s.post(origin.url("/q"), data=_stream()))
        tasks = [asyncio.ensure_future(c) for c in calls]
        await origin.at_gate.reach(4, "a, b, the JSON body and the stream at the gate")
        origin.gate.set()
        responses = await finished(asyncio.gather(*tasks), "every caller answered")
        bodies = [await r.read() for r in responses]
        assert bodies == [b"a" if i % 2 else b"b" for i in range(20)] + [b'{"k": 1}', b"st"]
        assert origin.calls["/q"] == 4
        assert cache_info(responses[-1]).status == "bypass"  # type: ignore[union-attr]


async def _stream() -> AsyncIterator[bytes]:
    yield b"s"
    yield b"t"


async def test_a_retry_middleware_inside_ours_retries_once_for_the_whole_flight(
    origin: Origin,
) -> None:
    failures = [1]

    async def flaky(request: web.Request) -> web.Response:
        await origin.wait()
        if failures[0]:
            failures[0] -= 1
            return web.Response(status=503)
        return web.Response(text="ok")

    async def retry(req: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        resp = await handler(req)
        if resp.status == 503:
            resp.release()
            resp = await handler(req)
        return resp

    origin.route("/f", flaky)
    await origin.start()
    origin.gate.clear()
    async with client_middleware(ttl=60) as mw, aiohttp.ClientSession(middlewares=[mw, retry]) as s:
        tasks = [asyncio.ensure_future(s.get(origin.url("/f"))) for _ in range(30)]
        await origin.at_gate.reach(1, "the leader at the gate")
        origin.gate.set()
        responses = await finished(asyncio.gather(*tasks), "every caller answered")
        assert {(r.status, await r.text()) for r in responses} == {(200, "ok")}
        assert origin.calls["/f"] == 2  # the leader's request and its one retry, for all 30


def test_the_guides_example_passes_mypy_strict_typed_against_client_response(
    tmp_path: Path,
) -> None:
    pytest.importorskip("mypy", reason="mypy is not installed here (the gates' venv has it)")
    guide = (Path(__file__).parent.parent / "docs/guide/client-middleware.md").read_text()
    example = guide.split("```python\n")[1].split("```")[0]
    assert "resp: ClientResponse" in example
    (tmp_path / "example.py").write_text(example)
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "example.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert out.returncode == 0, out.stdout + out.stderr
