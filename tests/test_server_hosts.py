"""Virtual hosts through coalesce_middleware: the request's ``Host`` is part of the key (issue 19).

One app answers two sites (as a server behind a proxy does when it serves ``a.example`` and
``b.example``): its handler answers from ``request.host``. A burst of both sites at once, held at
the gate until every request is inside, must run the handler once per site, and every reply must
name its own site, in the burst (followers) and afterwards (hits). The same site reached as
``host:port`` pairs that differ is a different ``Host``: it does not share, which is why a reverse
proxy in front must pass the public ``Host`` (README, Security).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from aiohttp import web
from conftest import Origin, finished

from coalesce_client import coalesce_middleware

SITES = ("a.example", "b.example", "a.example:8080")


async def test_each_host_has_its_own_answer_in_bursts_and_hits() -> None:
    mw = coalesce_middleware(ttl=60)
    origin = Origin(middlewares=[mw])

    async def home(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text=f"welcome to {request.host}")

    origin.route("/", home)
    origin.gate.clear()
    await origin.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:

            async def ask(site: str) -> tuple[str, str, str]:
                async with client.get(origin.url("/"), headers={"Host": site}) as r:
                    return site, await r.text(), r.headers.get("X-Cache", "")

            burst = [asyncio.create_task(ask(SITES[i % len(SITES)])) for i in range(60)]
            await origin.entered.reach(len(burst), "every request inside the app")
            await origin.at_gate.reach(len(SITES), "one leader per site at the handler")
            origin.gate.set()
            replies = await finished(asyncio.gather(*burst), "the burst")
            hits = await finished(asyncio.gather(*(ask(s) for s in SITES)), "the hits")
    finally:
        await origin.stop()

    assert origin.calls["/"] == len(SITES)  # one handler run per Host, not one for all
    for site, body, _ in replies + hits:
        assert body == f"welcome to {site}"
    assert [cache for _, _, cache in hits] == ["HIT"] * len(SITES)


async def test_a_scheme_and_host_set_by_clone_ahead_split_the_key() -> None:
    """A middleware ahead that trusts a proxy (as aiohttp-remotes does) hands on
    ``request.clone(scheme=..., host=...)``: the key reads the clone's scheme and host, not the
    connection's and the ``Host`` header's (server/compat.py, request_line)."""
    mw = coalesce_middleware(ttl=60)

    @web.middleware
    async def proxied(request: web.Request, handler: Any) -> web.StreamResponse:
        site = request.headers.get("X-Test-Site")
        if site is not None:
            scheme, _, host = site.partition("://")
            request = request.clone(scheme=scheme, host=host)
        return await handler(request)

    origin = Origin(middlewares=[proxied, mw])

    async def home(request: web.Request) -> web.Response:
        return web.Response(text=f"{request.scheme}://{request.host}")

    origin.route("/", home)
    await origin.start()
    sites = ("http://a.example", "https://a.example", "https://b.example")
    try:
        async with aiohttp.ClientSession() as client:
            replies = []
            for site in sites * 2:
                headers = {"Host": "a.example", "X-Test-Site": site}
                async with client.get(origin.url("/"), headers=headers) as r:
                    replies.append((site, await r.text(), r.headers["X-Cache"]))
    finally:
        await origin.stop()

    assert origin.calls["/"] == len(sites)
    assert [body for _, body, _ in replies] == [site for site, _, _ in replies]
    assert [cache for _, _, cache in replies] == ["MISS"] * 3 + ["HIT"] * 3
