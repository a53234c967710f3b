"""The key audit of coalesce_middleware (issue 22): what a handler reads that its key does not hold.

Each test runs a real app on 127.0.0.1 whose handler reads an input the key does not hold, and
sends a burst of users at once (the handler held at the gate until every request is inside):
with ``audit=True`` the read is logged once per route and input, with ``audit="strict"`` no user
gets another user's answer, and a handler that reads only keyed inputs logs nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import aiohttp
import pytest
from aiohttp import web
from conftest import Origin, finished

from coalesce_client import CachePolicy, coalesce_middleware

USERS = 50
Page = Callable[[web.Request], Awaitable[web.Response]]


async def _user(request: web.Request) -> web.Response:  # answers from X-User: a per-user page
    return web.Response(text=f"data of {request.headers.get('X-User')}")


async def _debug(request: web.Request) -> web.Response:  # reflects X-Debug into a header
    return web.Response(text="page", headers={"X-Echo": request.headers.get("X-Debug", "-")})


async def _language(request: web.Request) -> web.Response:  # no key, no Vary
    wanted = request.headers.get("Accept-Language", "en")
    return web.Response(text="bonjour" if wanted.startswith("fr") else "hello")


async def _link(request: web.Request) -> web.Response:  # reflects X-Forwarded-Host into a link
    host = request.headers.get("X-Forwarded-Host", "www.example")
    return web.Response(text=f'<a href="https://{host}/next">next</a>')


# The handler, the header it reads, the value each user sends, and what that user must get.
CASES = {
    "X-User": (_user, lambda i: f"user{i}", lambda v: f"data of {v}"),
    "X-Debug": (_debug, lambda i: f"d{i}", lambda v: f"page X-Echo={v}"),
    "Accept-Language": (_language, lambda i: "fr" if i % 2 else "en",
                        lambda v: "bonjour" if v == "fr" else "hello"),
    "X-Forwarded-Host": (_link, lambda i: f"h{i}.example",
                         lambda v: f'<a href="https://{v}/next">next</a>'),
}  # fmt: skip


async def burst(origin: Origin, name: str, values: list[str]) -> list[tuple[str, str]]:
    """Every user's request at once; each user's value and what it got (body, and X-Echo)."""
    page = CASES[name][0]

    async def held(request: web.Request) -> web.Response:
        await origin.wait()
        return await page(request)

    origin.route("/page", held)
    origin.gate.clear()
    await origin.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:

            async def one(value: str) -> tuple[str, str]:
                async with client.get(origin.url("/page"), headers={name: value}) as r:
                    echo = r.headers.get("X-Echo")
                    return value, await r.text() + (f" X-Echo={echo}" if echo else "")

            tasks = [asyncio.create_task(one(v)) for v in values]
            await origin.entered.reach(len(tasks), "every request inside the app")
            await origin.at_gate.reach(1, "a handler run")
            origin.gate.set()
            return await finished(asyncio.gather(*tasks), "the burst")
    finally:
        await origin.stop()


def app(audit: bool | str, name: str) -> Origin:
    policy = CachePolicy(forwarded_headers=()) if name == "X-Forwarded-Host" else None
    return Origin(middlewares=[coalesce_middleware(ttl=60, policy=policy, audit=audit)])


@pytest.mark.parametrize("name", list(CASES))
async def test_audit_logs_one_warning_per_route_and_unkeyed_input(
    name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="coalesce_client")
    values = [CASES[name][1](i) for i in range(USERS)]
    await burst(app(True, name), name, values)
    said = [
        r.getMessage() for r in caplog.records if "not in the key nor in Vary" in r.getMessage()
    ]
    assert said == [
        f"GET /page reads {name}, which is not in the key nor in Vary: every user gets the first "
        "user's answer; add it to key_headers or Vary"
    ]


@pytest.mark.parametrize("name", list(CASES))
async def test_strict_audit_gives_no_user_another_users_answer(name: str) -> None:
    make, answer = CASES[name][1], CASES[name][2]
    values = [make(i) for i in range(USERS)]
    replies = await burst(app("strict", name), name, values)
    wrong = [value for value, got in replies if got != answer(value)]
    assert wrong == []  # 0 of 50


async def test_a_handler_that_reads_only_keyed_inputs_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="coalesce_client")

    async def page(request: web.Request) -> web.Response:
        await origin.wait()
        accept = request.headers.get("Accept")  # keyed (key_headers)
        lang = request.headers.get("Accept-Language")  # named in Vary
        auth = request.headers.get("Authorization")  # a credential header: bypasses if present
        forwarded = request.headers.get("X-Forwarded-Proto")  # keyed by default
        return web.Response(text=f"{accept} {lang} {auth} {forwarded} {request.host}",
                            headers={"Vary": "Accept-Language"})  # fmt: skip

    mw = coalesce_middleware(ttl=60, key_headers=["Accept"], audit="strict")
    origin = Origin(middlewares=[mw])
    origin.route("/page", page)
    await origin.start()
    try:
        async with aiohttp.ClientSession() as client:
            for _ in range(3):
                async with client.get(origin.url("/page")) as r:
                    assert r.status == 200
    finally:
        await origin.stop()
    assert origin.calls["/page"] == 1  # shared and stored: nothing unkeyed
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize("wrong", ["yes", 1, None, "STRICT"])
def test_audit_takes_true_false_or_strict(wrong: object) -> None:
    with pytest.raises(ValueError, match="audit must be"):
        coalesce_middleware(audit=wrong)  # type: ignore[arg-type]


async def test_a_strict_audit_says_why_with_debug_header() -> None:
    mw = coalesce_middleware(ttl=60, audit="strict", debug_header=True)
    origin = Origin(middlewares=[mw])
    origin.route("/page", _user)
    await origin.start()
    try:
        async with (
            aiohttp.ClientSession() as client,
            client.get(origin.url("/page"), headers={"X-User": "a"}) as r,
        ):
            assert await r.text() == "data of a"
            assert r.headers["X-Cache-Reason"] == "unkeyed input"
    finally:
        await origin.stop()
