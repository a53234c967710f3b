"""Where nothing is shared, nothing is buffered: bypasses and too-large bodies stream (issue 11).

Each origin here sends its first bytes, then holds the rest of the body at the gate: a call that
returns while the gate is still closed has not read the body whole. Since issue 24 the session
and the client middleware share a too-large body as it streams (one request,
``tests/test_client_large.py``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Origin, finished, signalled

from coalesce_client import CachedResponse, CachePolicy, CoalescingSession, cache_info

LIMIT = 1000  # max_body_size in the tests of too-large bodies
HEAD = bytes(range(256)) * 5  # 1,280 bytes sent before the gate: over LIMIT already
TAIL = b"t" * 600  # sent after it


def streaming_route(origin: Origin, path: str, *, length: bool) -> None:
    """A body of HEAD + TAIL, with ``Content-Length`` or chunked, the TAIL held at the gate."""

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        if length:
            resp.content_length = len(HEAD) + len(TAIL)
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(HEAD)
        await origin.wait()
        await resp.write(TAIL)
        await resp.write_eof()
        return resp

    origin.route(path, handler)


async def read_all(resp: CachedResponse) -> bytes:
    chunks = [chunk async for chunk in resp.content.iter_chunked(100)]
    resp.release()
    return b"".join(chunks)


async def test_cache_false_streams_instead_of_buffering(origin: Origin) -> None:
    streaming_route(origin, "/big", length=True)
    await origin.start()
    origin.gate.clear()
    async with CoalescingSession(ttl=60) as s:
        resp = await finished(s.get(origin.url("/big"), cache=False), "the call returned")
        assert resp.cache_status == "bypass" and resp.status == 200
        assert not origin.gate.is_set()  # returned with the tail still held by the origin
        assert await resp.content.readexactly(len(HEAD)) == HEAD
        origin.gate.set()
        assert await read_all(resp) == TAIL
        assert s.stats.bypassed == 1 and s.stats.stored == 0


async def test_a_method_that_takes_no_part_streams(origin: Origin, client_face: Any) -> None:
    streaming_route(origin, "/big", length=False)
    await origin.start()
    origin.gate.clear()
    async with client_face(ttl=60, policy=CachePolicy(methods={"HEAD"})) as s:
        resp = await finished(s.get(origin.url("/big")), "the call returned")
        assert resp.cache_status == "bypass"
        origin.gate.set()
        assert await resp.read() == HEAD + TAIL


@pytest.mark.parametrize("length", [True, False], ids=["sized", "chunked"])
async def test_a_too_large_body_is_shared_as_it_streams(
    origin: Origin, client_face: Any, length: bool
) -> None:
    """Issue 24 changed this: the followers no longer send their own (both client faces); every
    caller gets its response while the tail is still held by the origin (nothing was buffered
    whole)."""
    streaming_route(origin, "/big", length=length)
    await origin.start()
    origin.gate.clear()
    async with client_face(ttl=60, policy=CachePolicy(max_body_size=LIMIT)) as s:
        calls = [asyncio.ensure_future(s.get(origin.url("/big"))) for _ in range(5)]
        responses = await finished(asyncio.gather(*calls), "every call answered")
        assert not origin.gate.is_set()
        origin.gate.set()
        bodies = [await read_all(r) for r in responses]
        assert bodies == [HEAD + TAIL] * 5
        infos = [cache_info(r) for r in responses]
        assert sorted(i.status for i in infos) == ["coalesced"] * 4 + ["miss"]  # type: ignore[union-attr]
        assert [i.reason for i in infos] == ["storage takes no streams"] * 5  # type: ignore[union-attr]
        assert origin.calls["/big"] == 1
        assert s.stats.stored == 0


async def test_a_caller_that_gives_up_leaves_no_open_response(
    origin: Origin, client_face: Any
) -> None:
    streaming_route(origin, "/big", length=True)
    await origin.start()
    origin.gate.clear()
    async with client_face(ttl=60, policy=CachePolicy(max_body_size=LIMIT)) as s:
        call = asyncio.ensure_future(s.get(origin.url("/big")))
        await signalled(origin.arrived, "the request reached the origin")
        call.cancel()
        origin.gate.set()
        await asyncio.gather(call, return_exceptions=True)
        assert call.cancelled()
        # Nothing left open or half read: the next call gets the whole body, streamed.
        resp = await finished(s.get(origin.url("/big")), "the next call")
        assert await read_all(resp) == HEAD + TAIL


async def test_a_streamed_response_reads_as_text_and_json_like_any_other(origin: Origin) -> None:
    async def data(request: web.Request) -> web.Response:
        return web.json_response({"rows": [1, 2, 3]})

    origin.route("/data", data)
    await origin.start()
    async with CoalescingSession(ttl=60) as s:
        async with s.get(origin.url("/data"), cache=False) as resp:
            assert resp.cache_status == "bypass"
            assert await resp.json() == {"rows": [1, 2, 3]}
            assert await resp.text() == '{"rows": [1, 2, 3]}'  # read once, kept
        assert (await (await s.get(origin.url("/data"))).json()) == {"rows": [1, 2, 3]}
        assert origin.calls["/data"] == 2


@pytest.mark.parametrize(
    ("policy", "options"),
    [(None, {"cache": False}), (CachePolicy(methods={"HEAD"}), {})],
    ids=["cache=False", "method not cached"],
)
async def test_leaving_async_with_gives_a_passed_response_s_connection_back(
    origin: Origin, policy: CachePolicy | None, options: dict[str, Any]
) -> None:
    """The session has one connection; the origin holds the body's tail. A caller that leaves
    its ``async with`` without reading lets the next call have the connection, as aiohttp's
    ``ClientResponse`` does on leaving (``release()``)."""
    streaming_route(origin, "/big", length=True)
    await origin.start()
    origin.gate.clear()
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
    async with CoalescingSession(ttl=60, policy=policy, session=session) as s:
        async with s.get(origin.url("/big"), **options) as first:
            assert first.cache_status == "bypass" and not origin.gate.is_set()
        # Not given back, the next call waits for the connection until `finished` fails.
        second = await finished(s.get(origin.url("/big"), **options), "the next call")
        second.release()
    await session.close()
