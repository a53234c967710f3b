"""CoalescingSession raises what plain aiohttp raises for the same call, on every path.

Each case makes the call through a plain ``aiohttp.ClientSession`` and through ours, on a miss and
on a hit (the URL stored first by a clean call): ours raises the same exception type, or succeeds
where aiohttp succeeds. ``tests/faults/test_fuzz_errors.py`` fuzzes the same comparison.
"""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Origin

from coalesce_client import CachePolicy, CoalescingSession, MemoryStorage
from coalesce_client.client.call import identify
from coalesce_client.client.checks import check_call

KEYS = CachePolicy().key_maker(namespace="", key_headers=())


async def outcome(session: Any, method: str, url: Any, kwargs: dict[str, Any]) -> Any:
    """What a call does: ("ok", status, body) or the type of the exception it raised."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            async with session.request(method, url, **kwargs) as resp:
                return ("ok", resp.status, await resp.read())
    except Exception as exc:
        return type(exc)


async def plain_outcome(method: str, url: Any, kwargs: dict[str, Any], **options: Any) -> Any:
    async with aiohttp.ClientSession(**options) as plain:
        return await outcome(plain, method, url, dict(kwargs))


@pytest.fixture
async def echo(origin: Origin) -> Origin:
    async def answer(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(text=f"{request.method} {request.path_qs} {body.decode()}")

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404, text="missing")

    async def slow(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text="slow")

    origin.route("/echo", answer)
    origin.route("/echo", answer, method="POST")
    origin.route("/missing", missing)
    origin.route("/slow", slow)
    await origin.start()
    return origin


# -- URLs ----------------------------------------------------------------------------------------


BAD_URLS = [
    "localhost:{port}/x",  # no scheme: "localhost" is taken for one
    "http://",
    "http:///x",
    "http://:80/x",
    "http://@/x",
    "http://[::1",
    "http://127.0.0.1:99999/x",
    "/rel%zz",
    "rel path",
    "x",
    "",
    "mailto:someone",
]


@pytest.mark.parametrize("template", BAD_URLS)
async def test_a_url_aiohttp_refuses_raises_what_aiohttp_raises(
    echo: Origin, template: str
) -> None:
    url = template.format(port=echo.base.rsplit(":", 1)[1])
    theirs = await plain_outcome("GET", url, {})
    assert isinstance(theirs, type) and issubclass(theirs, aiohttp.ClientError)
    async with CoalescingSession(ttl=60) as s:
        assert await outcome(s, "GET", url, {}) is theirs
        assert await outcome(s, "GET", url, {"params": {"a": "1"}}) is theirs


async def test_a_bad_url_is_reported_before_bad_params_as_aiohttp_does(echo: Origin) -> None:
    kwargs = {"params": {"a": True}}
    theirs = await plain_outcome("GET", "http:///x", kwargs)
    assert theirs is aiohttp.InvalidUrlClientError
    async with CoalescingSession(ttl=60) as s:
        assert await outcome(s, "GET", "http:///x", kwargs) is theirs


async def test_a_relative_url_without_base_url_says_so_in_aiohttps_exception(echo: Origin) -> None:
    async with CoalescingSession(ttl=60) as s:
        with pytest.raises(aiohttp.InvalidUrlClientError, match="base_url"):
            await s.get("/echo")
        with pytest.raises(aiohttp.InvalidUrlClientError) as info:
            await s.get("http:///echo")  # not relative: no hint
        assert "base_url" not in str(info.value)
    assert echo.calls["/echo"] == 0


async def test_a_wrapped_sessions_base_url_is_used_as_aiohttp_uses_it(echo: Origin) -> None:
    async with (
        aiohttp.ClientSession(base_url=echo.base + "/") as plain,
        CoalescingSession(ttl=60, session=plain) as s,
    ):
        first, again = await s.get("/echo"), await s.get("/echo")
        assert (first.cache_status, again.cache_status) == ("miss", "hit")
    assert echo.calls["/echo"] == 1


# -- headers, on hits too ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        "not headers",
        [("X-Fuzz", b"bytes")],
        {"X-Fuzz": 1, "X-A": "b\nc"},  # the first fault aiohttp meets
        {"X-Fuzz": None},
        {"X-A": "b\r\nX-Injected: 1", "X\nA": "1"},
        [("X-A",)],
    ],
)
async def test_headers_aiohttp_refuses_are_refused_on_a_hit(echo: Origin, headers: Any) -> None:
    theirs = await plain_outcome("GET", echo.url("/echo"), {"headers": headers})
    assert isinstance(theirs, type)
    async with CoalescingSession(ttl=60) as s:
        assert (await s.get(echo.url("/echo"))).cache_status == "miss"
        assert await outcome(s, "GET", echo.url("/echo"), {"headers": headers}) is theirs
    assert echo.calls["/echo"] == 1


async def test_session_headers_with_a_newline_are_refused_on_a_hit(echo: Origin) -> None:
    storage = MemoryStorage()
    headers = {"X-A": "b\nc"}
    theirs = await plain_outcome("GET", echo.url("/echo"), {}, headers=headers)
    assert theirs is ValueError
    async with CoalescingSession(ttl=60, storage=storage, storage_owner=False) as s:
        await s.get(echo.url("/echo"))
    async with CoalescingSession(ttl=60, storage=storage, headers=headers) as s:
        assert await outcome(s, "GET", echo.url("/echo"), {}) is theirs
        s.session.headers["X-A"] = "fine"  # a session's defaults may change: checked again
        assert (await s.get(echo.url("/echo"))).cache_status == "hit"
    assert echo.calls["/echo"] == 1


# -- bodies --------------------------------------------------------------------------------------


async def test_json_with_mixed_key_types_is_sent_as_aiohttp_sends_it(echo: Origin) -> None:
    policy = CachePolicy(methods={"GET", "POST"})
    kwargs = {"json": {1: "a", "b": 2}}
    theirs = await plain_outcome("POST", echo.url("/echo"), kwargs)
    assert theirs == ("ok", 200, b'POST /echo {"1": "a", "b": 2}')
    async with CoalescingSession(ttl=60, policy=policy) as s:
        assert await outcome(s, "POST", echo.url("/echo"), kwargs) == theirs


async def test_json_is_keyed_by_the_bytes_sent() -> None:
    def key(session: aiohttp.ClientSession, json: Any) -> str | None:
        kwargs = {"json": json}
        checked = check_call(session, "http://h/x", kwargs, {})
        return identify(session, KEYS, "POST", checked, kwargs).key

    async with aiohttp.ClientSession() as session:
        assert key(session, {"a": 1, "b": 2}) != key(session, {"b": 2, "a": 1})  # sent apart
        assert key(session, {1: "a", "b": 2}) == key(session, {"1": "a", "b": 2})  # sent alike
    async with aiohttp.ClientSession(json_serialize=lambda v: "constant") as session:
        assert key(session, {"a": 1}) == key(session, {"b": 2})  # the session's serializer


# -- the other options ---------------------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, -1, aiohttp.ClientTimeout(total=0)])
async def test_a_timeout_aiohttp_reads_as_none_is_none(echo: Origin, timeout: Any) -> None:
    theirs = await plain_outcome("GET", echo.url("/echo"), {"timeout": timeout})
    assert theirs[0] == "ok"
    async with CoalescingSession(ttl=60) as s:
        assert await outcome(s, "GET", echo.url("/echo"), {"timeout": timeout}) == theirs


async def test_a_timeout_aiohttp_refuses_is_refused_on_a_hit(echo: Origin) -> None:
    theirs = await plain_outcome("GET", echo.url("/echo"), {"timeout": "5"})
    assert theirs is TypeError
    async with CoalescingSession(ttl=60) as s:
        await s.get(echo.url("/echo"))
        assert await outcome(s, "GET", echo.url("/echo"), {"timeout": "5"}) is theirs


async def test_a_truthy_raise_for_status_raises_as_aiohttps_does(echo: Origin) -> None:
    theirs = await plain_outcome("GET", echo.url("/missing"), {"raise_for_status": "yes"})
    assert theirs is aiohttp.ClientResponseError
    policy = CachePolicy(status_ttl={404: 60})
    async with CoalescingSession(ttl=60, policy=policy) as s:
        await s.get(echo.url("/missing"))
        kwargs = {"raise_for_status": "yes"}
        assert await outcome(s, "GET", echo.url("/missing"), kwargs) is theirs


async def test_raise_for_status_none_is_the_sessions(echo: Origin) -> None:
    async with CoalescingSession(ttl=60, raise_for_status=True) as s:
        with pytest.raises(aiohttp.ClientResponseError):
            await s.get(echo.url("/missing"), raise_for_status=None)


async def test_a_callers_own_options_never_reach_a_plain_call_nor_the_reverse(
    echo: Origin,
) -> None:
    """A plain call's flight request is built once and kept (calls.py, issue 20); a call with
    options of its own builds its own, which neither takes the kept one nor is kept."""
    async with CoalescingSession(ttl=60) as s:  # a 404 is not stored: each call is sent
        url = echo.url("/missing")
        for _ in range(2):
            with pytest.raises(aiohttp.ClientResponseError):
                await s.get(url, raise_for_status=True)
            for _ in range(2):  # the first builds the plain call's request, the second takes it
                async with s.get(url) as resp:
                    assert resp.status == 404
        assert s.stats.upstream == 6


async def test_an_unknown_client_session_option_fails_at_construction() -> None:
    with pytest.raises(TypeError) as plain:
        aiohttp.ClientSession(expire_after=60)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="expire_after") as ours:
        CoalescingSession(ttl=1, expire_after=60)
    assert type(ours.value) is type(plain.value)


@pytest.mark.parametrize("option", ["refresh", "cache"])
@pytest.mark.parametrize("value", ["yes", 1, None])
async def test_refresh_and_cache_take_only_true_or_false(
    echo: Origin, option: str, value: Any
) -> None:
    async with CoalescingSession(ttl=60) as s:
        with pytest.raises(ValueError, match=option):
            await s.get(echo.url("/echo"), **{option: value})
    assert echo.calls["/echo"] == 0


async def test_a_follower_raises_what_aiohttp_raises_for_its_own_call(echo: Origin) -> None:
    echo.gate.clear()
    async with CoalescingSession(ttl=60) as s:
        leader = asyncio.ensure_future(s.get(echo.url("/slow")))
        await echo.at_gate.reach(1, "the leader at the gate")
        follower = await outcome(s, "GET", echo.url("/slow"), {"headers": {"X-A": b"1"}})
        echo.gate.set()
        assert (await leader).cache_status == "miss"
    assert follower is TypeError
