"""The URL index is written only when it changes (issue 20): a response stored again under a key
the index lists already, newest last, within the index's lifetime, costs no second index write."""

from __future__ import annotations

from dataclasses import replace

from conftest import FakeClock, snapshot

from coalesce_client.core.writer import Writer
from coalesce_client.storage import MemoryStorage
from coalesce_client.storage.records import Record, UrlIndex

URL_KEY, KEY_1, KEY_2 = "url:" + "a" * 60, "b" * 64, "c" * 64


class CountingStorage(MemoryStorage):
    """MemoryStorage that counts the index records written."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.index_writes = 0

    async def set(self, key: str, value: Record, ttl: float) -> None:
        self.index_writes += isinstance(value, UrlIndex)
        await super().set(key, value, ttl)


async def store(writer: Writer, key: str, clock: FakeClock, ttl: float) -> None:
    snap = snapshot(b"x", url="http://example.com/item")
    snap = replace(snap, stored_at=clock.now, expires_at=clock.now + ttl)
    await writer.write(key, None, snap, ttl, URL_KEY)
    await writer.drain()


async def test_the_index_is_written_when_it_changes_and_only_then() -> None:
    clock = FakeClock()
    storage = CountingStorage(clock)
    writer = Writer(storage, clock, 8)
    await store(writer, KEY_1, clock, 600)
    assert storage.index_writes == 1
    await store(writer, KEY_1, clock, 300)  # listed already, and the index lasts longer
    assert storage.index_writes == 1
    clock.advance(10)
    await store(writer, KEY_1, clock, 600)  # outlives the index: the index is extended
    assert storage.index_writes == 2
    await store(writer, KEY_2, clock, 60)  # a new key
    await store(writer, KEY_1, clock, 60)  # listed, but no longer the newest: reordered
    assert storage.index_writes == 4
    index = await storage.get(URL_KEY)
    assert isinstance(index, UrlIndex) and index.keys == (KEY_2, KEY_1)
    assert index.expires_at == clock.now + 600
