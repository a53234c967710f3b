"""The forwarding headers are in the middleware's key by default (issue 22, web cache poisoning).

A handler that reflects what a proxy in front says (a link built from ``X-Forwarded-Host``, a
scheme from ``X-Forwarded-Proto``, a path from ``X-Original-URL``) must not hand the first sender's
value to everybody. Each test sends a burst at once through a real app on 127.0.0.1, the handler
held at the gate until every request is inside: an attacker with his own value, and users with
the proxy's value (or none). Every reply must be what the handler gives for its own request; the
handler's runs are counted exactly.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import Origin, finished

from coalesce_client import CachePolicy, coalesce_middleware

USERS = 20
EVIL = "evil.example"


def reflected(request: web.Request) -> str:
    """What the handler answers: everything a proxy in front may say about the request."""
    said = [f"{h}={request.headers.get(h)}" for h in REFLECTED]
    forwarded = [f"{e.get('host')}/{e.get('proto')}" for e in request.forwarded]
    return " ".join(said) + f" forwarded={forwarded}"


REFLECTED = ("X-Forwarded-Host", "X-Original-URL", "X-Forwarded-Proto")


async def burst(
    origin: Origin, calls: list[dict[str, str]]
) -> tuple[list[tuple[dict[str, str], str]], int]:
    """Send every call at once; the replies (with the headers each sent) and the handler runs."""

    async def page(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text=reflected(request))

    origin.route("/page", page)
    origin.gate.clear()
    await origin.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:

            async def one(headers: dict[str, str]) -> tuple[dict[str, str], str]:
                async with client.get(origin.url("/page"), headers=headers) as r:
                    return headers, await r.text()

            tasks = [asyncio.create_task(one(h)) for h in calls]
            await origin.entered.reach(len(tasks), "every request inside the app")
            await origin.at_gate.reach(1, "a handler run")
            origin.gate.set()
            replies = await finished(asyncio.gather(*tasks), "the burst")
    finally:
        await origin.stop()
    return replies, origin.calls["/page"]


def expected(headers: dict[str, str]) -> str:
    said = [f"{h}={headers.get(h)}" for h in REFLECTED]
    forwarded = headers.get("Forwarded")
    hosts = [] if forwarded is None else [_forwarded(forwarded)]
    return " ".join(said) + f" forwarded={hosts}"


def _forwarded(value: str) -> str:
    pairs = dict(p.split("=", 1) for p in value.split(";"))
    return f"{pairs.get('host')}/{pairs.get('proto')}"


@pytest.mark.parametrize(
    "attack",
    [
        {"X-Forwarded-Host": EVIL},
        {"X-Original-URL": "/admin"},
        {"X-Forwarded-Proto": "gopher"},
        {"Forwarded": f"for=6.6.6.6;host={EVIL};proto=https"},
    ],
    ids=["x-forwarded-host", "x-original-url", "x-forwarded-proto", "forwarded-host"],
)
async def test_a_reflected_forwarding_header_reaches_no_other_user(attack: dict[str, str]) -> None:
    origin = Origin(middlewares=[coalesce_middleware(ttl=60)])
    calls = [attack] + [{} for _ in range(USERS)]
    replies, runs = await burst(origin, calls)
    wrong = [sent for sent, body in replies if body != expected(sent)]
    assert wrong == []  # 0 of 20 users got the attacker's value
    assert runs == 2  # the attacker's entry, and everybody else's


async def test_a_proxy_that_adds_the_clients_address_does_not_fragment_the_key() -> None:
    origin = Origin(middlewares=[coalesce_middleware(ttl=60)])
    proxy = {"X-Forwarded-Host": "www.example", "X-Forwarded-Proto": "https"}
    calls: list[dict[str, Any]] = [
        {**proxy, "X-Forwarded-For": f"10.0.{i // 250}.{i % 250}", "Forwarded": f"for=10.1.0.{i}"}
        for i in range(100)
    ]
    replies, runs = await burst(origin, calls)
    assert runs == 1  # X-Forwarded-For and Forwarded's for= name the client: not keyed
    assert {body for _, body in replies} == {expected({**proxy, "Forwarded": "for=x"})}


async def test_opting_out_with_forwarded_headers_empty_lets_the_first_value_reach_everybody() -> (
    None
):
    policy = CachePolicy(forwarded_headers=())
    origin = Origin(middlewares=[coalesce_middleware(ttl=60, policy=policy)])
    replies, runs = await burst(origin, [{"X-Forwarded-Host": EVIL}] + [{} for _ in range(USERS)])
    assert runs == 1  # what the README warns of: declare what the handler reads
    assert {body for _, body in replies} == {expected({"X-Forwarded-Host": EVIL})}


def test_forwarded_headers_is_checked_like_the_other_header_lists() -> None:
    with pytest.raises(ValueError, match="forwarded_headers"):
        CachePolicy(forwarded_headers=("X Bad",))
