"""RedisStorage's event connections and connection bound (issue 23), against a real redis-server:
a process hears only the keys it waits on, a half-open event connection is found by its PING and
replaced, and no more than ``max_connections`` calls hold a connection at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import KEY_A, KEY_B, RedisServer, finished, snapshot

from coalesce_client import RedisStorage
from coalesce_client.storage.redis import RedisUnavailableError


class Counting(RedisStorage):
    """A process's storage that counts the publications that reach it."""

    __slots__ = ("heard",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.heard = 0

    def _heard(self, key: str, data: bytes) -> None:
        self.heard += 1
        super()._heard(key, data)


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


async def channels(raw: aioredis.Redis, namespace: str) -> list[bytes]:
    """The channels of the namespace that somebody is subscribed to now."""
    found: list[bytes] = await raw.pubsub_channels(f"{namespace}:*")
    return found


async def test_a_process_waiting_on_one_key_hears_only_that_key_among_1000(
    redis_server: RedisServer, raw: aioredis.Redis, namespace: str
) -> None:
    listener = Counting(redis_server.url, namespace=namespace)
    holder = RedisStorage(redis_server.url, namespace=namespace)
    try:
        assert await holder.acquire(KEY_A, "holder")
        waiter = await listener.watch(KEY_A)  # returns once the key's subscription holds
        assert await channels(raw, namespace) == [f"{namespace}:ev:{{{KEY_A}}}".encode()]
        # 1,000 other flights of the fleet complete (what their holders' releases publish) ...
        async with raw.pipeline(transaction=False) as pipe:
            for n in range(1000):
                pipe.publish(f"{namespace}:ev:{{{n:064x}}}", b"stored")
            await pipe.execute()
        # ... then ours: what was published before it has reached us by then.
        assert not await holder.release(KEY_A, "someone else", b"not stored")
        assert await finished(waiter, "the waiter woken by its key's outcome") == b"not stored"
        assert listener.heard == 1  # not 1,001
        listener.unwatch(KEY_A, waiter)  # the flight ends: the subscription goes
        for _ in range(100):
            if not await channels(raw, namespace):
                break
        assert await channels(raw, namespace) == []
    finally:
        await listener.close()
        await holder.close()


async def test_a_half_open_event_connection_is_found_by_its_ping_and_replaced(
    redis_server: RedisServer, redis_proxy: Any, namespace: str
) -> None:
    # Through the proxy; the holder talks to Redis directly. A long lease: the waiter's re-check
    # (every lease_ttl / 2) cannot be what wakes it.
    listener = RedisStorage(redis_proxy.url, namespace=namespace, health_check_interval=0.2)
    holder = RedisStorage(redis_server.url, namespace=namespace, lease_ttl=60)
    try:
        assert await holder.acquire(KEY_A, "holder")
        waiter = await listener.watch(KEY_A)
        assert listener.subscribed and redis_proxy.accepted == 1
        redis_proxy.stall()  # the socket stays open; nothing goes through any more
        loop = asyncio.get_running_loop()
        stalled = loop.time()
        while redis_proxy.accepted < 2 or not listener.subscribed:  # a new connection, answered
            await asyncio.sleep(0.02)
            assert loop.time() - stalled < 5, "the dead event connection was not replaced"
        # Found within health_check_interval, then replaced after the first rest (0.5 s).
        assert loop.time() - stalled < 0.2 + 0.5 + 1.0
        assert await holder.release(KEY_A, "holder", b"not stored")
        assert await finished(waiter, "the waiter woken on the new connection") == b"not stored"
    finally:
        await listener.close()
        await holder.close()


async def test_calls_hold_at_most_max_connections(
    redis_server: RedisServer, redis_proxy: Any, namespace: str
) -> None:
    store = RedisStorage(redis_proxy.url, namespace=namespace, max_connections=3)
    try:
        keys = [f"{n:064x}" for n in range(60)]
        await asyncio.gather(*(store.set(key, snapshot(), 60) for key in keys))
        found = await asyncio.gather(*(store.get(key) for key in keys))
        assert all(entry is not None for entry in found)
        assert redis_proxy.accepted <= 3  # not one per key in flight
    finally:
        await store.close()


async def test_a_call_that_gets_no_connection_within_socket_timeout_is_redis_unreachable(
    redis_server: RedisServer, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = RedisStorage(
        redis_server.url, namespace=namespace, max_connections=1, socket_timeout=0.2
    )
    held = asyncio.Event()
    release = asyncio.Event()
    real_get = store._client.get

    async def slow_get(name: str) -> Any:  # the one connection stays busy until released
        held.set()
        await release.wait()
        return await real_get(name)

    store._client.get = slow_get  # type: ignore[method-assign]
    try:
        first = asyncio.ensure_future(store.get(KEY_A))
        await held.wait()
        with (
            caplog.at_level(logging.WARNING, logger="coalesce_client"),
            pytest.raises(RedisUnavailableError, match="max_connections=1"),
        ):
            await store.set(KEY_B, snapshot(), 60)
        assert "max_connections=1" in caplog.text  # said, at WARNING
        release.set()
        assert await finished(first, "the call that held the connection") is None
        await store.set(KEY_B, snapshot(), 60)  # at once: Redis answers, so no rest began
    finally:
        release.set()
        await store.close()


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"max_connections": 0}, "max_connections"),
        ({"max_connections": 2.5}, "max_connections"),
        ({"max_connections": True}, "max_connections"),
        ({"health_check_interval": 0}, "health_check_interval"),
        ({"health_check_interval": float("nan")}, "health_check_interval"),
        ({"cluster": "yes"}, "cluster"),
    ],
)
def test_a_bad_scale_option_raises_value_error_naming_it(
    kwargs: dict[str, object], option: str
) -> None:
    with pytest.raises(ValueError, match=option):
        RedisStorage("redis://127.0.0.1:1/0", **kwargs)  # type: ignore[arg-type]
