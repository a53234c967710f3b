"""A storage that writes without waiting (``WritesNowait``: ``MemoryStorage``) is written in the
flight, its URL index with it, without a task (issue 20), unless a write runs in the background
that it could overtake; a subclass that changes ``set``, ``delete`` or ``get`` is called as
before."""

from __future__ import annotations

from dataclasses import replace

from conftest import FakeClock, snapshot

from coalesce_client.core.writer import Writer
from coalesce_client.spec.snapshot import Snapshot
from coalesce_client.storage import MemoryStorage
from coalesce_client.storage.records import Record, UrlIndex, VaryPointer

URL_KEY, KEY_1, KEY_2, VKEY = "url:" + "a" * 60, "b" * 64, "c" * 64, "d" * 64


class CountingNowait(MemoryStorage):
    """MemoryStorage that counts the index records written without waiting."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.index_writes = 0

    def set_nowait(self, key: str, value: Record, ttl: float) -> None:
        self.index_writes += isinstance(value, UrlIndex)
        super().set_nowait(key, value, ttl)


class OwnSet(MemoryStorage):
    async def set(self, key: str, value: Record, ttl: float) -> None:
        await super().set(key, value, ttl)


def stamped(clock: FakeClock, ttl: float, body: bytes = b"x") -> Snapshot:
    snap = snapshot(body, url="http://example.com/item")
    return replace(snap, stored_at=clock.now, expires_at=clock.now + ttl)


def test_only_a_memory_storage_of_its_own_methods_writes_without_waiting() -> None:
    assert MemoryStorage().writes_nowait
    assert CountingNowait(FakeClock()).writes_nowait
    assert not OwnSet().writes_nowait


async def written(storage: MemoryStorage, clock: FakeClock) -> tuple[Writer, Snapshot]:
    """A writer of ``storage`` that was handed one response of the URL."""
    writer = Writer(storage, clock, 8)
    snap = stamped(clock, 60)
    await writer.write(KEY_1, None, snap, 60, URL_KEY)
    return writer, snap


async def test_a_write_is_stored_and_indexed_before_it_returns() -> None:
    clock = FakeClock()
    storage = MemoryStorage(clock=clock)
    writer, snap = await written(storage, clock)
    assert storage.get_nowait(KEY_1) is snap  # no task: nothing left to run
    index = storage.get_nowait(URL_KEY)
    assert isinstance(index, UrlIndex) and index.keys == (KEY_1,)
    assert writer.pending == {} and writer.stored == 1


async def test_a_subclass_set_is_called_in_the_background_as_before() -> None:
    clock = FakeClock()
    storage = OwnSet(clock=clock)
    writer, snap = await written(storage, clock)
    assert writer.pending == {KEY_1: snap} and len(storage) == 0
    await writer.drain()
    assert storage.get_nowait(KEY_1) is snap and writer.pending == {}


async def test_a_write_does_not_overtake_one_running_in_the_background() -> None:
    clock = FakeClock()
    storage = MemoryStorage(clock=clock)
    writer = Writer(storage, clock, 8)
    varied, plain = stamped(clock, 60, b"varied"), stamped(clock, 60, b"plain")
    await writer.write(KEY_1, VKEY, varied, 60, URL_KEY)  # a Vary pointer: in a task
    await writer.write(KEY_1, None, plain, 60, URL_KEY)  # the same key, after it
    await writer.drain()
    assert storage.get_nowait(KEY_1) is plain  # not the pointer written after it
    assert isinstance(storage.get_nowait(VKEY), Snapshot)
    index = storage.get_nowait(URL_KEY)
    assert isinstance(index, UrlIndex) and index.keys == (VKEY, KEY_1)
    assert not isinstance(storage.get_nowait(KEY_1), VaryPointer)


async def test_the_index_is_written_without_waiting_when_it_changes_and_only_then() -> None:
    clock = FakeClock()
    storage = CountingNowait(clock)
    writer = Writer(storage, clock, 8)

    async def store(key: str, ttl: float) -> None:
        await writer.write(key, None, stamped(clock, ttl), ttl, URL_KEY)

    await store(KEY_1, 600)
    assert storage.index_writes == 1
    await store(KEY_1, 300)  # listed already, and the index lasts longer
    assert storage.index_writes == 1
    clock.advance(10)
    await store(KEY_1, 600)  # outlives the index: the index is extended
    assert storage.index_writes == 2
    await store(KEY_2, 60)  # a new key
    await store(KEY_1, 60)  # listed, but no longer the newest: reordered
    assert storage.index_writes == 4
    index = storage.get_nowait(URL_KEY)
    assert isinstance(index, UrlIndex) and index.keys == (KEY_2, KEY_1)
    assert index.expires_at == clock.now + 600


async def test_a_failed_write_without_waiting_counts_as_a_failure() -> None:
    clock = FakeClock()
    storage = MemoryStorage(clock=clock)
    writer = Writer(storage, clock, 8)
    await storage.close()
    await writer.write(KEY_1, None, stamped(clock, 60), 60, URL_KEY)
    assert writer.failure == "storage error" and writer.stored == 0
