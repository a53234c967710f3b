"""The server middleware with Prometheus metrics, and a /metrics route to scrape.

    python examples/metrics.py    # needs pip install 'coalesce_client[prometheus]'

Starts its own app on 127.0.0.1 (no network needed): a slow route behind the middleware, which
records to a ``PrometheusMetrics`` on a registry of its own, and ``/metrics`` (not cached) in
Prometheus' text format. A burst of 50 concurrent requests, then one more, then the scrape is
printed: ``coalesce_calls_total`` by status, the upstream requests and the flight's followers.
"""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from coalesce_client import coalesce_middleware
from coalesce_client.metrics import PrometheusMetrics


async def report(request: web.Request) -> web.Response:
    await asyncio.sleep(0.1)  # an expensive query
    return web.json_response({"report": "quarterly", "rows": 1234})


def build_app(registry: CollectorRegistry) -> web.Application:
    mw = coalesce_middleware(ttl=5, metrics=PrometheusMetrics(registry, name="reports"))

    async def metrics(request: web.Request) -> web.Response:
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/report", mw.decorate(report))  # only this route is coalesced
    app.router.add_get("/metrics", metrics)
    return app


async def main() -> None:
    runner = web.AppRunner(build_app(CollectorRegistry()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0, backlog=1024).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:

        async def get(path: str) -> str:
            async with client.get(base + path) as resp:
                return await resp.text()

        await asyncio.gather(*(get("/report") for _ in range(50)))
        await get("/report")  # stored by now: a hit
        scraped = await get("/metrics")
    await runner.cleanup()
    print(scraped, end="")


if __name__ == "__main__":
    asyncio.run(main())
