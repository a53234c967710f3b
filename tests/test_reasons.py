"""Why a response was not stored nor served from storage (issue 22: the reason codes).

Every code of ``spec/decisions/reasons.py`` is produced here by every face it applies to, against
real origins on 127.0.0.1: ``CachedResponse.cache_reason`` and ``cache_info(resp).reason`` on
both client faces (``client_face``), ``X-Cache-Reason`` on the server middleware with
``debug_header=True``. A stored or stored-then-served response says None. The guide's table
(docs/guide/observability.md) is checked against the code's own list.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

import aiohttp
import pytest
from aiohttp import web
from conftest import HAS_MIDDLEWARES, FakeClock, Origin, finished

from coalesce_client import (
    CachePolicy,
    CoalescingSession,
    MemoryStorage,
    cache_info,
    coalesce_middleware,
)
from coalesce_client.spec.decisions.reasons import CACHE_REASONS

GUIDE = Path(__file__).parent.parent / "docs" / "guide" / "observability.md"


def test_the_guide_table_lists_the_codes_of_the_code() -> None:
    text = GUIDE.read_text()
    section = text.split("## Reason codes", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([^`]+)` \|", section, flags=re.M)
    assert tuple(documented) == CACHE_REASONS


class Case(NamedTuple):
    """One way to get a reason: the origin's answer, the face's options, the request's."""

    headers: Mapping[str, str] = MappingProxyType({})  # the origin's response headers
    status: int = 200
    body: str = "hello"
    options: Mapping[str, Any] = MappingProxyType({})  # the face's
    request: Mapping[str, Any] = MappingProxyType({})  # the call's keyword arguments
    method: str = "GET"


class Broken(MemoryStorage):
    """A storage whose reads and writes fail."""

    async def get(self, key: str) -> Any:
        raise OSError("the disk is gone")

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        raise OSError("the disk is gone")


def _cases(shared: bool) -> dict[str, Case]:
    """The reasons one request produces, on a client face (``shared``: as a shared cache)."""
    big = CachePolicy(max_body_size=3)
    veto = CachePolicy(should_store=lambda resp: False)
    cases = {
        "no-store": Case({"Cache-Control": "no-store"}),
        "request no-store": Case(request={"headers": {"Cache-Control": "no-store"}}),
        "status not cacheable": Case(status=418),
        "storage takes no streams": Case(options={"policy": big}),  # both (issue 24)
        "body over max_stored_size": Case(options={"policy": CachePolicy(max_stored_size=3)}),
        "vary *": Case({"Vary": "*"}),
        "ttl 0": Case(options={"ttl": 0}),
        "stale on arrival": Case({"Cache-Control": "max-age=10", "Age": "20"}),
        "should_store veto": Case(options={"policy": veto}),
        "method not cached": Case(method="POST"),
        "range request": Case(request={"headers": {"Range": "bytes=0-1"}}),
        "conditional request": Case(request={"headers": {"If-Match": '"a"'}}),
        "request body": Case(request={"data": io.BytesIO(b"a stream")}),
        "only-if-cached": Case(request={"headers": {"Cache-Control": "only-if-cached"}}),
        "storage error": Case(options={"storage": Broken()}),
    }
    if shared:
        cases["private"] = Case({"Cache-Control": "private"})
        cases["set-cookie"] = Case({"Set-Cookie": "a=1"})
    return cases


def _reason(resp: Any) -> str | None:
    info = cache_info(resp)
    assert info is not None
    return info.reason


async def _client_reason(origin: Origin, client_face: Any, case: Case, shared: bool) -> Any:
    async def page(request: web.Request) -> web.Response:
        return web.Response(status=case.status, text=case.body, headers=case.headers)

    origin.route("/p", page, method=case.method)
    await origin.start()
    face = client_face(**{"ttl": 60, **case.options}, shared=shared)
    async with face as s, s.request(case.method, origin.url("/p"), **case.request) as r:
        await r.read()
        return _reason(r)


# Issue 24: both client faces share a body over max_body_size as it streams (and MemoryStorage
# stores no stream): "storage takes no streams". No reason is one face's alone today.
_NOT_ON: dict[str, tuple[str, ...]] = {}


@pytest.mark.parametrize("code", sorted(_cases(shared=False)))
async def test_each_reason_in_a_private_client(origin: Origin, client_face: Any, code: str) -> None:
    face = "session" if client_face is CoalescingSession else "client-middleware"
    if face in _NOT_ON.get(code, ()):
        pytest.skip(f"{code!r} is not a reason of the {face}")
    case = _cases(shared=False)[code]
    assert await _client_reason(origin, client_face, case, shared=False) == code


@pytest.mark.parametrize("code", ["private", "set-cookie"])
async def test_each_reason_in_a_shared_client(origin: Origin, client_face: Any, code: str) -> None:
    case = _cases(shared=True)[code]
    assert await _client_reason(origin, client_face, case, shared=True) == code


async def test_stored_and_served_from_storage_say_none(
    started: Origin, client_face: Any, clock: FakeClock
) -> None:
    async with client_face(ttl=60, clock=clock) as s:
        async with s.get(started.url("/text")) as miss:
            assert (miss.cache_status, _reason(miss)) == ("miss", None)
        async with s.get(started.url("/text")) as hit:
            assert (hit.cache_status, _reason(hit)) == ("hit", None)


async def test_session_only_reasons(started: Origin) -> None:
    from coalesce_client import CoalescingSession

    async def own(req: Any, handler: Any) -> Any:
        return await handler(req)

    async with CoalescingSession(ttl=60) as s:
        async with s.get(started.url("/text"), cache=False) as r:
            assert r.cache_reason == "cache=False"
        if HAS_MIDDLEWARES:  # per-call middlewares= came with aiohttp 3.12
            async with s.get(started.url("/text"), middlewares=(own,)) as r:
                assert r.cache_reason == "per-call middlewares"
        async with s.get(started.url("/text"), headers={"X(A)": "b"}) as r:
            assert r.cache_reason == "malformed request"


async def test_a_pass_through_key_says_so(origin: Origin, client_face: Any) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="mine", headers={"Cache-Control": "private"})

    origin.route("/p", page)
    await origin.start()
    async with client_face(ttl=60, shared=True) as s:
        async with s.get(origin.url("/p")) as first:
            assert _reason(first) == "private"
        async with s.get(origin.url("/p")) as second:
            assert (second.cache_status, _reason(second)) == ("bypass", "pass-through key")


async def test_followers_get_their_leaders_reason(origin: Origin, client_face: Any) -> None:
    async def page(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text="x", headers={"Cache-Control": "no-store"})

    origin.route("/p", page)
    await origin.start()
    origin.gate.clear()
    async with client_face(ttl=60) as s:

        async def one() -> tuple[str, str | None]:
            async with s.get(origin.url("/p")) as r:
                await r.read()
                return r.cache_status, _reason(r)

        calls = [asyncio.ensure_future(one()) for _ in range(5)]
        await origin.at_gate.reach(1, "the leader at the gate")
        origin.gate.set()
        got = await finished(asyncio.gather(*calls), "every caller answered")
    assert origin.calls["/p"] == 1
    assert sorted(got) == [("coalesced", "no-store")] * 4 + [("miss", "no-store")]


# -- the server middleware ------------------------------------------------------------------------

_SERVER_CASES: dict[str, Case] = {
    "no-store": Case({"Cache-Control": "no-store"}),
    "private": Case({"Cache-Control": "private"}),
    "set-cookie": Case({"Set-Cookie": "a=1"}),
    "status not cacheable": Case(status=418),
    # A body over max_body_size is shared as it streams (issue 24); MemoryStorage keeps bytes.
    "storage takes no streams": Case(options={"policy": CachePolicy(max_body_size=3)}),
    "vary *": Case({"Vary": "*"}),
    "ttl 0": Case(options={"ttl": 0}),
    "stale on arrival": Case({"Cache-Control": "max-age=10", "Age": "20"}),
    "should_store veto": Case(options={"policy": CachePolicy(should_store=lambda r: False)}),
    "method not cached": Case(method="POST"),
    "credential header": Case(request={"headers": {"Authorization": "Bearer a"}}),
    "range request": Case(request={"headers": {"Range": "bytes=0-1"}}),
    "conditional request": Case(request={"headers": {"If-None-Match": '"a"'}}),
    "request body": Case(request={"data": b"a body"}),
    "storage error": Case(options={"storage": Broken()}),
    "only-if-cached": Case(
        options={"request_cache_control": True},
        request={"headers": {"Cache-Control": "only-if-cached"}},
    ),
}

Serve = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _server_reply(case: Case, handler: Serve, times: int = 1) -> list[tuple[str, str]]:
    """Run ``handler`` behind the middleware (``debug_header=True``); each reply's ``X-Cache``
    and ``X-Cache-Reason`` (``-`` when absent)."""
    mw = coalesce_middleware(**{"ttl": 60, "debug_header": True, **case.options})
    origin = Origin(middlewares=[mw])
    origin.route("/p", handler, method=case.method)
    await origin.start()
    replies = []
    try:
        async with aiohttp.ClientSession() as client:
            for _ in range(times):
                async with client.request(case.method, origin.url("/p"), **case.request) as r:
                    await r.read()
                    replies.append((r.headers["X-Cache"], r.headers.get("X-Cache-Reason", "-")))
    finally:
        await origin.stop()
        await mw.close()
    return replies


@pytest.mark.parametrize("code", sorted(_SERVER_CASES))
async def test_each_reason_in_the_server_middleware(code: str) -> None:
    case = _SERVER_CASES[code]

    async def page(request: web.Request) -> web.Response:
        return web.Response(status=case.status, text=case.body, headers=case.headers)

    (reply,) = await _server_reply(case, page)
    assert reply[1] == code


async def test_the_server_says_why_for_a_stream_and_a_pass_through_key(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"a file")

    async def streamed(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(tmp_path / "f")

    assert await _server_reply(Case(), streamed) == [("MISS", "streamed")]

    async def private(request: web.Request) -> web.Response:
        return web.Response(text="x", headers={"Cache-Control": "private"})

    replies = await _server_reply(Case(), private, times=2)
    assert replies == [("MISS", "private"), ("BYPASS", "pass-through key")]


async def test_the_server_header_is_off_by_default_and_none_for_a_hit() -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="x")

    assert await _server_reply(Case(), page, times=2) == [("MISS", "-"), ("HIT", "-")]
    mw = coalesce_middleware(ttl=0)
    origin = Origin(middlewares=[mw])
    origin.route("/p", page)
    await origin.start()
    try:
        async with aiohttp.ClientSession() as client, client.get(origin.url("/p")) as r:
            assert "X-Cache-Reason" not in r.headers
    finally:
        await origin.stop()
    with pytest.raises(ValueError, match="debug_header"):
        coalesce_middleware(debug_header="yes")  # type: ignore[arg-type]
