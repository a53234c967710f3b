"""``metrics=`` on the three faces (issue 22): what a burst, a hit and a response not stored record.

Each face gets a ``PrometheusMetrics`` on a registry of its own; a burst of 5 callers on one key
(its handler held at the gate until all 5 are in), then a hit, then a ``no-store`` response, then
a broken storage; the registry's text is read back by prometheus_client's own parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from conftest import CLIENT_MIDDLEWARE, HAS_MIDDLEWARES, MiddlewareClient, Origin, finished
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from coalesce_client import CoalescingSession, MemoryStorage, coalesce_middleware
from coalesce_client.metrics import PrometheusMetrics

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(registry: CollectorRegistry) -> Samples:
    text = generate_latest(registry).decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def at(got: Samples, name: str, face: str, **labels: str) -> float:
    return got.get((name, frozenset({"face": face, "name": "default", **labels}.items())), 0.0)


class Broken(MemoryStorage):
    async def get(self, key: str) -> Any:
        raise OSError("the disk is gone")

    async def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        raise OSError("the disk is gone")


def routes(origin: Origin) -> None:
    async def burst(request: web.Request) -> web.Response:
        await origin.wait()
        return web.Response(text="shared")

    async def private(request: web.Request) -> web.Response:
        return web.Response(text="x", headers={"Cache-Control": "no-store"})

    origin.route("/burst", burst)
    origin.route("/nostore", private)


Get = Callable[[str], Awaitable[str]]  # a path -> the reply's body


async def a_burst_a_hit_and_a_no_store(origin: Origin, get: Get, entering: int = 1) -> None:
    """``entering``: the burst's requests that reach the application (the server's: all)."""
    origin.gate.clear()
    calls = [asyncio.ensure_future(get("/burst")) for _ in range(5)]
    await origin.at_gate.reach(1, "the leader at the gate")
    await origin.entered.reach(entering, "the burst in the application")
    origin.gate.set()
    assert await finished(asyncio.gather(*calls), "the burst") == ["shared"] * 5
    assert await get("/burst") == "shared"  # a hit
    assert await get("/nostore") == "x"


def check(got: Samples, face: str, followers: int = 4) -> None:
    assert at(got, "coalesce_calls_total", face, status="miss") == 2
    assert at(got, "coalesce_calls_total", face, status="coalesced") == followers
    assert at(got, "coalesce_calls_total", face, status="hit") == 1
    assert at(got, "coalesce_not_stored_total", face, reason="no-store") == 1
    assert at(got, "coalesce_upstream_requests_total", face) == 2
    assert at(got, "coalesce_upstream_duration_seconds_count", face) == 2
    assert at(got, "coalesce_flight_followers_count", face) == 2
    assert at(got, "coalesce_flight_followers_sum", face) == followers


@pytest.mark.parametrize("face", ["session", CLIENT_MIDDLEWARE])
async def test_a_client_face_records(origin: Origin, face: str) -> None:
    routes(origin)
    await origin.start()
    registry = CollectorRegistry()
    label = "client" if face == "session" else "client-middleware"
    kind: Any = CoalescingSession if face == "session" else MiddlewareClient
    async with kind(ttl=60, metrics=PrometheusMetrics(registry)) as s:

        async def get(path: str) -> str:
            async with s.get(origin.url(path)) as r:
                return str(await r.text())

        await a_burst_a_hit_and_a_no_store(origin, get)
    check(samples(registry), label)
    broken = CollectorRegistry()
    failing = kind(ttl=60, storage=Broken(), metrics=[PrometheusMetrics(broken)])
    async with failing as s, s.get(origin.url("/nostore")) as r:
        await r.read()
    got = samples(broken)
    assert at(got, "coalesce_storage_errors_total", label, storage="Broken", operation="get") == 1


async def test_the_server_middleware_records() -> None:
    registry = CollectorRegistry()
    mw = coalesce_middleware(ttl=60, metrics=PrometheusMetrics(registry))
    origin = Origin(middlewares=[mw])
    routes(origin)
    await origin.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:

            async def get(path: str) -> str:
                async with client.get(origin.url(path)) as r:
                    return await r.text()

            await a_burst_a_hit_and_a_no_store(origin, get, entering=5)
    finally:
        await origin.stop()
        await mw.close()
    check(samples(registry), "server")


@pytest.mark.parametrize("bad", [object(), [], ["x"], 3])
def test_metrics_must_be_a_sink_or_sinks(bad: Any) -> None:
    faces = (CoalescingSession, coalesce_middleware, *([MiddlewareClient] * HAS_MIDDLEWARES))
    for face in faces:
        with pytest.raises(ValueError, match="metrics"):
            face(metrics=bad)
