"""TieredStorage: a memory front before a slower back (the contract: test_storage_contract.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import KEY_A, KEY_B, FakeClock, Origin, finished, signalled, snapshot

from coalesce_client import CoalescingSession
from coalesce_client.spec.snapshot import Snapshot
from coalesce_client.storage import DiskStorage, MemoryStorage, StorageClosedError, TieredStorage


class Counting:
    """A storage wrapper that counts the reads reaching the wrapped one."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.reads = 0

    async def get(self, key: str) -> Snapshot | None:
        self.reads += 1
        result: Snapshot | None = await self.inner.get(key)
        return result

    async def set(self, key: str, value: Snapshot, ttl: float) -> None:
        await self.inner.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def clear(self) -> None:
        await self.inner.clear()

    async def close(self) -> None:
        await self.inner.close()


class Parked(Counting):
    """A back whose reads stop between reading the entry and handing it back, until the test says.

    A read that parks has read what was stored before whatever the test does meanwhile: the race
    between a refill of the front and a write, made to happen every time.
    """

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.parked = asyncio.Event()  # set when a read holds its entry and waits
        self.proceed = asyncio.Event()  # set by the test: parked reads return what they read

    async def park(self, read: Awaitable[Any]) -> Any:
        found = await read
        self.parked.set()
        await self.proceed.wait()
        return found

    async def get(self, key: str) -> Snapshot | None:
        self.reads += 1
        found: Snapshot | None = await self.park(self.inner.get(key))
        return found


class ParkedWithExpiry(Parked):
    """The same, for a back that tells its entries' expiry (``ReadsExpiry``, as DiskStorage)."""

    async def get_with_expiry(self, key: str) -> tuple[Snapshot, float] | None:
        self.reads += 1
        found: tuple[Snapshot, float] | None = await self.park(self.inner.get_with_expiry(key))
        return found


async def test_a_back_hit_refills_the_front_until_the_back_entry_expires(tmp_path: Path) -> None:
    clock = FakeClock()
    back = DiskStorage(tmp_path / "cache", clock=clock)
    front = MemoryStorage(clock=clock)
    tiered = TieredStorage(front, back, clock=clock)
    try:
        await back.set(KEY_A, snapshot(b"from disk"), 10)  # stored by an earlier run
        clock.advance(4)
        got = await tiered.get(KEY_A)
        assert got is not None and got.body == b"from disk"
        assert await front.get(KEY_A) == got  # refilled
        clock.advance(5.9)  # 9.9 s after the back's write: both still fresh
        assert await front.get(KEY_A) is not None
        clock.advance(0.2)  # past the back's expiry: the front, refilled at 4 s, is gone too
        assert await front.get(KEY_A) is None
        assert await tiered.get(KEY_A) is None
    finally:
        await tiered.close()


async def test_a_back_without_expiry_information_is_read_through_the_snapshot(
    clock: FakeClock,
) -> None:
    back = Counting(MemoryStorage(clock=clock))
    front = MemoryStorage(clock=clock)
    tiered = TieredStorage(front, back, clock=clock)
    fresh = Snapshot(200, "OK", (), "http://x/", "GET", b"a", clock.now, clock.now + 10)
    unknown = Snapshot(200, "OK", (), "http://x/", "GET", b"b")  # expires_at not set
    await back.set(KEY_A, fresh, 10)
    await back.set(KEY_B, unknown, 10)
    for _ in range(3):
        assert await tiered.get(KEY_A) is fresh
        assert await tiered.get(KEY_B) is unknown
    assert back.reads == 1 + 3  # KEY_A once, then from memory; KEY_B never refilled
    clock.advance(10.5)
    assert await tiered.get(KEY_A) is None


async def test_tiered_writes_deletes_and_clears_reach_both(clock: FakeClock) -> None:
    front, back = MemoryStorage(clock=clock), MemoryStorage(clock=clock)
    tiered = TieredStorage(front, back, clock=clock)
    await tiered.set(KEY_A, snapshot(b"a"), 60)
    await tiered.set(KEY_B, snapshot(b"b"), 60)
    assert len(front) == len(back) == 2
    await tiered.delete(KEY_A)
    assert await front.get(KEY_A) is None and await back.get(KEY_A) is None
    await tiered.clear()
    assert len(front) == len(back) == 0
    await tiered.close()
    with pytest.raises(StorageClosedError):
        await front.get(KEY_A)
    with pytest.raises(StorageClosedError):
        await back.get(KEY_A)
    await tiered.close()


# What a write that overlaps a refill leaves in the tiered storage: the refill must not undo it.
RACING: dict[str, tuple[Callable[[TieredStorage], Awaitable[None]], bytes | None]] = {
    "delete": (lambda tiered: tiered.delete(KEY_A), None),
    "clear": (lambda tiered: tiered.clear(), None),
    "set": (lambda tiered: tiered.set(KEY_A, snapshot(b"new"), 60), b"new"),
}


@pytest.mark.parametrize("write", sorted(RACING))
@pytest.mark.parametrize("back_kind", ["memory back", "disk back, expiry-aware"])
async def test_a_refill_racing_a_write_never_brings_the_old_entry_back(
    tmp_path: Path, clock: FakeClock, write: str, back_kind: str
) -> None:
    if back_kind == "memory back":
        back: Parked = Parked(MemoryStorage(clock=clock))
    else:
        back = ParkedWithExpiry(DiskStorage(tmp_path / "cache", clock=clock))
    front = MemoryStorage(clock=clock)
    tiered = TieredStorage(front, back, clock=clock)
    racing_write, left = RACING[write]
    try:
        await back.inner.set(KEY_A, snapshot(b"old"), 60)  # in the back only: a read refills
        reading = asyncio.create_task(tiered.get(KEY_A))
        await signalled(back.parked, "the back read parked")  # it holds "old"
        await racing_write(tiered)
        back.proceed.set()
        old = await finished(reading, "the read")
        assert old is not None and old.body == b"old"  # it began before the write: fair enough
        in_front = await front.get(KEY_A)
        assert (None if in_front is None else in_front.body) == left  # but no refill with it
        now = await tiered.get(KEY_A)
        assert (None if now is None else now.body) == left
    finally:
        back.proceed.set()
        await tiered.close()


@pytest.mark.parametrize("bad", ["front", "back"])
def test_tiered_checks_its_storages(bad: str) -> None:
    good = MemoryStorage()
    kwargs: dict[str, Any] = {"front": good, "back": MemoryStorage(), bad: "not a storage"}
    with pytest.raises(ValueError, match=bad):
        TieredStorage(**kwargs)
    with pytest.raises(ValueError, match="different"):
        TieredStorage(good, good)


async def test_tiered_hits_through_a_session_come_from_memory_after_the_first(
    origin: Origin, tmp_path: Path
) -> None:
    async def page(request: web.Request) -> web.Response:
        return web.Response(text="tier")

    origin.route("/page/tier", page)
    await origin.start()
    back = Counting(DiskStorage(tmp_path / "cache"))
    storage = TieredStorage(MemoryStorage(), back)
    async with CoalescingSession(ttl=60, storage=storage) as s:
        statuses = [(await s.get(origin.url("/page/tier"))).cache_status for _ in range(5)]
    assert statuses == ["miss", "hit", "hit", "hit", "hit"]
    # The first lookup, and the URL index read when storing (core/writer.py); every hit came from
    # the front.
    assert back.reads == 2
    assert origin.calls["/page/tier"] == 1
