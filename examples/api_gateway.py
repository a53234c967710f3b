"""An API gateway: an aiohttp.web app forwarding to an upstream API through one CoalescingSession.

    python examples/api_gateway.py

Everything runs on 127.0.0.1 (no network needed): a slow upstream API, the gateway in front of it,
and a burst of clients. Each user's Authorization header splits the key, so users never share
answers, while the requests of one user coalesce into one upstream call.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from coalesce_client import CoalescingSession

upstream_calls: Counter[str] = Counter()
UPSTREAM = web.AppKey("upstream", CoalescingSession)


async def upstream_profile(request: web.Request) -> web.Response:
    user = request.headers["Authorization"].removeprefix("Bearer ")
    upstream_calls[user] += 1
    await asyncio.sleep(0.05)  # a slow upstream
    return web.json_response({"user": user, "plan": "pro" if user == "alice" else "free"})


async def start(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def main() -> None:
    upstream = web.Application()
    upstream.router.add_get("/v1/profile", upstream_profile)
    upstream_runner, upstream_url = await start(upstream)

    # One CoalescingSession for the whole gateway, opened and closed with the app.
    gateway = web.Application()

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        app[UPSTREAM] = CoalescingSession(ttl=30, key_headers=())
        yield
        await app[UPSTREAM].close()

    async def profile(request: web.Request) -> web.Response:
        s = request.app[UPSTREAM]
        auth = request.headers.get("Authorization", "")
        async with s.get(f"{upstream_url}/v1/profile", headers={"Authorization": auth}) as r:
            return web.json_response(await r.json(), headers={"X-Upstream-Cache": r.cache_status})

    gateway.cleanup_ctx.append(session_ctx)
    gateway.router.add_get("/profile", profile)
    gateway_runner, gateway_url = await start(gateway)

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:

        async def ask(user: str) -> str:
            headers = {"Authorization": f"Bearer {user}"}
            async with client.get(f"{gateway_url}/profile", headers=headers) as r:
                body = await r.json()
                assert body["user"] == user, body  # never another user's answer
                return body["plan"]

        users = ["alice", "bob", "carol"] * 50
        plans = await asyncio.gather(*(ask(u) for u in users))
    await gateway_runner.cleanup()
    await upstream_runner.cleanup()
    print(f"{len(users)} gateway requests from {len(set(users))} users")
    print("upstream calls per user:", dict(sorted(upstream_calls.items())))
    print("plans:", dict(sorted(Counter(zip(users, plans, strict=True)).items())))


if __name__ == "__main__":
    asyncio.run(main())
