"""RedisStorage beyond the shared contract (tests/test_storage_contract.py runs that on Redis too):
key names, expiry, namespaces, options, the client's ownership, Redis out of reach, damaged
values, the lease's script semantics, and invalidations reaching every process's memory front."""

from __future__ import annotations

import asyncio
import logging
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from conftest import (
    KEY_A,
    KEY_B,
    Origin,
    RedisServer,
    free_port,
    signalled,
    snapshot,
    until,
)

from coalesce_client import CoalescingSession, MemoryStorage, RedisStorage, TieredStorage
from coalesce_client.spec.snapshot import Snapshot
from coalesce_client.storage.base import PublishesDrops, ReadsExpiry, SharesFlights
from coalesce_client.storage.codec import encode
from coalesce_client.storage.redis import RedisUnavailableError


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@pytest.fixture
async def store(redis_server: RedisServer, namespace: str) -> AsyncIterator[RedisStorage]:
    storage = RedisStorage(redis_server.url, namespace=namespace)
    yield storage
    await storage.close()


async def test_redis_storage_offers_the_fleet_abilities(store: RedisStorage) -> None:
    for ability in (SharesFlights, PublishesDrops, ReadsExpiry):
        assert isinstance(store, ability), ability.__name__


async def test_keys_are_namespaced_with_the_digest_in_a_hash_tag_and_expire_in_redis(
    store: RedisStorage, raw: aioredis.Redis, namespace: str
) -> None:
    await store.set(KEY_A, snapshot(), 60)
    assert await store.acquire(KEY_A, "token")
    names = sorted([k.decode() async for k in raw.scan_iter(match=f"{namespace}:*")])
    assert names == [f"{namespace}:lease:{{{KEY_A}}}", f"{namespace}:v:{{{KEY_A}}}"]
    assert 59_000 < await raw.pttl(f"{namespace}:v:{{{KEY_A}}}") <= 60_000  # Redis's own expiry
    assert 0 < await raw.pttl(f"{namespace}:lease:{{{KEY_A}}}") <= 10_000


async def test_clear_removes_only_this_namespace(
    redis_server: RedisServer, store: RedisStorage, raw: aioredis.Redis, namespace: str
) -> None:
    other = RedisStorage(redis_server.url, namespace=namespace + "-other")
    try:
        for key in (KEY_A, KEY_B):
            await store.set(key, snapshot(), 60)
            await other.set(key, snapshot(b"theirs"), 60)
        await raw.set(f"{namespace}-foreign", b"not ours")
        await store.clear()
        assert await store.get(KEY_A) is None and await store.get(KEY_B) is None
        kept = await other.get(KEY_A)
        assert kept is not None and kept.body == b"theirs"
        assert await raw.get(f"{namespace}-foreign") == b"not ours"
    finally:
        await other.close()


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"namespace": "a:b"}, "namespace"),
        ({"namespace": ""}, "namespace"),
        ({"namespace": "x*"}, "namespace"),
        ({"namespace": 5}, "namespace"),
        ({"lease_ttl": 0}, "lease_ttl"),
        ({"lease_ttl": float("nan")}, "lease_ttl"),
        ({"socket_timeout": -1}, "socket_timeout"),
        ({"clock": 5}, "clock"),
    ],
)
def test_a_bad_option_raises_value_error_naming_it(kwargs: dict[str, object], option: str) -> None:
    with pytest.raises(ValueError, match=option):
        RedisStorage("redis://127.0.0.1:1/0", **kwargs)  # type: ignore[arg-type]


async def test_url_and_client_together_are_refused_and_a_given_client_stays_open(
    redis_server: RedisServer, raw: aioredis.Redis
) -> None:
    with pytest.raises(ValueError, match="url or client"):
        RedisStorage(redis_server.url, client=raw)
    with pytest.raises(ValueError, match="client"):
        RedisStorage(client="redis://x")  # type: ignore[arg-type]
    storage = RedisStorage(client=raw, namespace="given")
    await storage.set(KEY_A, snapshot(), 60)
    await storage.close()
    assert await raw.ping()  # the caller's to close, like session=


def test_without_redis_py_the_package_imports_and_the_error_names_the_extra() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'redis':\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import coalesce_client\n"
        "from coalesce_client import RedisStorage\n"
        "try:\n"
        "    RedisStorage()\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'coalesce_client[redis]'" in out.stdout


async def test_redis_out_of_reach_fails_no_request_and_is_logged_once(
    started: Origin, caplog: pytest.LogCaptureFixture
) -> None:
    storage = RedisStorage(f"redis://127.0.0.1:{free_port()}/0")  # nobody listens there
    with caplog.at_level(logging.WARNING, logger="coalesce_client"):
        async with CoalescingSession(ttl=60, storage=storage) as s:
            answers = await asyncio.gather(*(s.get(started.url("/text")) for _ in range(10)))
            assert [a.status for a in answers] == [200] * 10
            assert started.total == 1  # coalesced locally all the same
            with pytest.raises(RedisUnavailableError):
                await storage.get(KEY_A)  # resting: answered at once, not tried
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "Redis unavailable" in warnings[0].getMessage()


async def test_a_damaged_value_is_a_miss_and_is_deleted(
    store: RedisStorage, raw: aioredis.Redis, namespace: str
) -> None:
    await store.set(KEY_A, snapshot(b"good"), 60)
    name = f"{namespace}:v:{{{KEY_A}}}"
    data = bytearray(await raw.get(name))
    data[-6] ^= 0xFF  # a byte of the body
    await raw.set(name, bytes(data))
    assert await store.get(KEY_A) is None
    assert await raw.exists(name) == 0


async def test_a_hot_value_is_unpacked_once_and_its_bytes_checked_every_time(
    store: RedisStorage, raw: aioredis.Redis, namespace: str
) -> None:
    """Issue 20: a hit read the same bytes and decoded them anew each time. The record is
    remembered by the very bytes it came from: the same bytes, the same record; other bytes
    (written by another process, or damaged), unpacked and checked anew."""
    await store.set(KEY_A, snapshot(b"good"), 60)
    first = await store.get(KEY_A)
    assert first is not None and await store.get(KEY_A) is first  # unpacked once
    name = f"{namespace}:v:{{{KEY_A}}}"
    good = await raw.get(name)
    await raw.set(name, good[:8] + encode(snapshot(b"newer")))  # another process's write
    newer = await store.get(KEY_A)
    assert isinstance(newer, Snapshot) and newer.body == b"newer"
    damaged = bytearray(good)
    damaged[-6] ^= 0xFF  # a byte of the body: the checksum fails
    await raw.set(name, bytes(damaged))
    assert await store.get(KEY_A) is None
    await raw.set(name, good)  # the remembered bytes again: served, their expiry read
    assert await store.get(KEY_A) is first


async def test_a_value_in_format_3_is_a_miss_and_is_deleted(
    store: RedisStorage, raw: aioredis.Redis, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    # As the version before issue 18 wrote it: the expiry, then a record without a record kind.
    v3 = bytes([3]) + encode(snapshot())[2:-4]
    value = struct.pack(">d", 1e12) + v3 + zlib.crc32(v3).to_bytes(4, "big")
    name = f"{namespace}:v:{{{KEY_A}}}"
    await raw.set(name, value)
    with caplog.at_level(logging.WARNING, logger="coalesce_client"):
        assert await store.get(KEY_A) is None
    assert await raw.exists(name) == 0
    assert "unknown snapshot format version 3" in caplog.text
    await store.set(KEY_A, snapshot(b"again"), 60)  # written again in this version's format
    assert (await raw.get(name))[8:10] == encode(snapshot())[:2]


async def test_the_lease_is_renewed_and_released_only_by_its_token(
    store: RedisStorage, raw: aioredis.Redis, namespace: str
) -> None:
    assert await store.acquire(KEY_A, "mine")
    assert not await store.acquire(KEY_A, "theirs")
    assert not await store.renew(KEY_A, "theirs")
    assert await store.renew(KEY_A, "mine")
    assert not await store.release(KEY_A, "theirs", b"stored")  # published, lease untouched
    assert await store.leased(KEY_A)
    waiter = await store.watch(KEY_A)
    assert await store.release(KEY_A, "mine", b"not stored")
    assert await asyncio.wait_for(waiter, 2) == b"not stored"
    store.unwatch(KEY_A, waiter)
    assert not await store.leased(KEY_A)


class Front(MemoryStorage):
    """A memory front that says when a key is dropped from it."""

    __slots__ = ("dropped",)

    def __init__(self) -> None:
        super().__init__()
        self.dropped = asyncio.Event()

    async def delete(self, key: str) -> None:
        await super().delete(key)
        self.dropped.set()

    async def clear(self) -> None:
        await super().clear()
        self.dropped.set()


async def test_a_delete_or_clear_in_one_process_drops_every_process_s_memory_front(
    redis_server: RedisServer, namespace: str
) -> None:
    here = TieredStorage(MemoryStorage(), RedisStorage(redis_server.url, namespace=namespace))
    front = Front()
    back = RedisStorage(redis_server.url, namespace=namespace)
    there = TieredStorage(front, back)
    try:
        for key in (KEY_A, KEY_B):
            await here.set(key, snapshot(), 60)
            assert await there.get(key) is not None  # now in the other process's front too
        assert len(front) == 2
        waiter = await back.watch(KEY_A)  # returns once its subscription holds
        back.unwatch(KEY_A, waiter)
        await here.delete(KEY_A)
        await signalled(front.dropped, "the other process's front dropping the key")
        assert front.get_nowait(KEY_A) is None and front.get_nowait(KEY_B) is not None
        front.dropped.clear()
        await here.clear()
        await signalled(front.dropped, "the other process's front cleared")
        assert len(front) == 0
    finally:
        await here.close()
        await there.close()


async def gets(raw: aioredis.Redis) -> int:
    """GET commands the server has run so far."""
    stats = await raw.info("commandstats")
    return int(stats.get("cmdstat_get", {}).get("calls", 0))


async def test_concurrent_reads_of_a_key_share_one_get(
    store: RedisStorage, raw: aioredis.Redis
) -> None:
    await store.set(KEY_A, snapshot(b"old"), 60)
    before = await gets(raw)
    answers = await asyncio.gather(*(store.get(KEY_A) for _ in range(50)))
    assert {a.body for a in answers if a is not None} == {b"old"} and None not in answers
    assert await gets(raw) - before == 1  # a burst's lookups cost one command, not 50


class Held(RedisStorage):
    """Its reads wait at a gate the test opens, so a test can leave in the middle of one."""

    __slots__ = ("gate",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()

    async def _read(self, key: str) -> Any:
        await self.gate.wait()
        return await super()._read(key)


async def test_a_reader_that_leaves_cancels_nobody_else_s_read(
    redis_server: RedisServer, namespace: str
) -> None:
    store = Held(redis_server.url, namespace=namespace)
    try:
        await store.set(KEY_A, snapshot(b"kept"), 60)
        first = asyncio.ensure_future(store.get(KEY_A))
        await until(lambda: KEY_A in store._reads, "the first read begun")
        joined = asyncio.ensure_future(store.get(KEY_A))
        # Joined: waiting on the first read's shared answer (its shield's callback is on it).
        await until(lambda: bool(store._reads[KEY_A][0]._callbacks), "a second reader joined")
        first.cancel()
        await until(first.done, "the first reader gone")
        store.gate.set()
        got = await asyncio.wait_for(joined, 2)
        assert got is not None and got.body == b"kept"
    finally:
        await store.close()


class Late(RedisStorage):
    """Its reads are answered, then held at a gate: a read that began before a write ends after."""

    __slots__ = ("gate",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()

    async def _read(self, key: str) -> Any:
        answer = await super()._read(key)
        await self.gate.wait()
        return answer


async def test_a_read_begun_after_a_write_does_not_take_an_older_read_s_answer(
    redis_server: RedisServer, namespace: str
) -> None:
    store = Late(redis_server.url, namespace=namespace)
    try:
        await store.set(KEY_A, snapshot(b"old"), 60)
        store.gate.set()
        store.gate = asyncio.Event()
        first = asyncio.ensure_future(store.get(KEY_A))  # answered "old", held
        await until(lambda: KEY_A in store._reads, "the first read begun")
        await store.set(KEY_A, snapshot(b"new"), 60)
        later = asyncio.ensure_future(store.get(KEY_A))
        await until(lambda: KEY_A in store._reads and not later.done(), "the later read begun")
        store.gate.set()
        old, new = await asyncio.wait_for(asyncio.gather(first, later), 2)
        assert old is not None and new is not None and new.body == b"new"
    finally:
        await store.close()


async def test_a_release_publishes_stored_only_if_the_entry_is_there(store: RedisStorage) -> None:
    # Issue 23: a store meant but not there is "released" (one waiter takes over), no longer
    # "not stored" (every process would send its own).
    for present, heard in ((False, b"released"), (True, b"stored")):
        if present:
            await store.set(KEY_B, snapshot(), 60)
        assert await store.acquire(KEY_B, "mine")
        waiter = await store.watch(KEY_B)
        assert await store.release(KEY_B, "mine", b"stored")
        assert await asyncio.wait_for(waiter, 2) == heard
        store.unwatch(KEY_B, waiter)
