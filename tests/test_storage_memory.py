"""MemoryStorage: LRU bounds by entries and by bytes (the contract: test_storage_contract.py).

The byte tests read what the storage counts from ``storage.bytes`` (``counted`` below), never from
the formula.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import FakeClock, snapshot

from coalesce_client import MemoryStorage
from coalesce_client.snapshot import Snapshot


def keyed(i: int) -> str:
    return f"{i:064x}"


async def counted(snap: Snapshot) -> int:
    """What a MemoryStorage counts for ``snap`` stored under a key like ``keyed(i)``."""
    storage = MemoryStorage(clock=FakeClock())
    await storage.set(keyed(0), snap, 60)
    return storage.bytes


# -- bounded by entries ---------------------------------------------------------------------------


async def test_least_recently_set_entry_is_evicted_past_max_entries() -> None:
    storage = MemoryStorage(max_entries=2, clock=FakeClock())
    await storage.set(keyed(1), snapshot(b"1"), 60)
    await storage.set(keyed(2), snapshot(b"2"), 60)
    await storage.set(keyed(3), snapshot(b"3"), 60)
    assert len(storage) == 2
    assert await storage.get(keyed(1)) is None
    assert await storage.get(keyed(2)) is not None
    assert await storage.get(keyed(3)) is not None


async def test_get_refreshes_recency() -> None:
    storage = MemoryStorage(max_entries=2, clock=FakeClock())
    await storage.set(keyed(1), snapshot(b"1"), 60)
    await storage.set(keyed(2), snapshot(b"2"), 60)
    assert await storage.get(keyed(1)) is not None  # 1 is now the most recent; 2 goes next
    await storage.set(keyed(3), snapshot(b"3"), 60)
    assert await storage.get(keyed(2)) is None
    assert await storage.get(keyed(1)) is not None
    assert await storage.get(keyed(3)) is not None


async def test_set_of_an_existing_key_refreshes_recency_without_evicting() -> None:
    storage = MemoryStorage(max_entries=2, clock=FakeClock())
    await storage.set(keyed(1), snapshot(b"1"), 60)
    await storage.set(keyed(2), snapshot(b"2"), 60)
    await storage.set(keyed(1), snapshot(b"1b"), 60)  # a replacement: still two entries
    assert len(storage) == 2
    await storage.set(keyed(3), snapshot(b"3"), 60)
    assert await storage.get(keyed(2)) is None
    got = await storage.get(keyed(1))
    assert got is not None and got.body == b"1b"


async def test_max_entries_one_keeps_only_the_latest() -> None:
    storage = MemoryStorage(max_entries=1, clock=FakeClock())
    for i in range(5):
        await storage.set(keyed(i), snapshot(bytes([i])), 60)
        assert len(storage) == 1
    got = await storage.get(keyed(4))
    assert got is not None and got.body == b"\x04"


# -- bounded by bytes -----------------------------------------------------------------------------


async def test_eviction_by_max_bytes_keeps_bytes_within_the_bound() -> None:
    one = await counted(snapshot(b"x" * 1000))
    storage = MemoryStorage(max_bytes=2 * one + one // 2, clock=FakeClock())
    for i in range(6):
        await storage.set(keyed(i), snapshot(b"x" * 1000), 60)
        assert storage.bytes <= storage.max_bytes
    assert len(storage) == 2
    assert storage.bytes == 2 * one
    assert await storage.get(keyed(4)) is not None
    assert await storage.get(keyed(5)) is not None
    assert await storage.get(keyed(3)) is None


async def test_eviction_by_max_bytes_goes_in_lru_order() -> None:
    one = await counted(snapshot(b"x" * 1000))
    storage = MemoryStorage(max_bytes=3 * one, clock=FakeClock())
    for i in range(3):
        await storage.set(keyed(i), snapshot(b"x" * 1000), 60)
    await storage.get(keyed(0))  # 1 is now the least recently used
    await storage.set(keyed(3), snapshot(b"x" * 1000), 60)
    assert await storage.get(keyed(1)) is None
    for i in (0, 2, 3):
        assert await storage.get(keyed(i)) is not None


async def test_a_big_entry_evicts_as_many_small_ones_as_needed() -> None:
    small = snapshot(b"s" * 100)
    big = snapshot(b"b" * 2000)
    storage = MemoryStorage(max_bytes=await counted(big) + await counted(small), clock=FakeClock())
    for i in range(5):
        await storage.set(keyed(i), small, 60)
    await storage.set(keyed(99), big, 60)
    assert storage.bytes <= storage.max_bytes
    assert await storage.get(keyed(99)) is big
    assert await storage.get(keyed(4)) is small  # the most recent small one still fits
    assert len(storage) == 2


async def test_an_entry_larger_than_max_bytes_is_not_kept() -> None:
    storage = MemoryStorage(max_bytes=10_000, clock=FakeClock())
    kept = snapshot(b"k" * 100)
    await storage.set(keyed(1), kept, 60)
    await storage.set(keyed(2), snapshot(b"x" * 20_000), 60)
    assert await storage.get(keyed(2)) is None
    assert await storage.get(keyed(1)) is kept  # nothing was evicted to make room in vain
    assert storage.bytes == await counted(kept)


async def test_an_entry_of_exactly_max_bytes_is_kept() -> None:
    snap = snapshot(b"x" * 500)
    storage = MemoryStorage(max_bytes=await counted(snap), clock=FakeClock())
    await storage.set(keyed(1), snap, 60)
    assert await storage.get(keyed(1)) is snap


async def test_replacing_with_a_too_large_entry_drops_the_old_one() -> None:
    storage = MemoryStorage(max_bytes=10_000, clock=FakeClock())
    await storage.set(keyed(1), snapshot(b"old"), 60)
    await storage.set(keyed(1), snapshot(b"x" * 20_000), 60)
    assert await storage.get(keyed(1)) is None
    assert storage.bytes == 0


# -- byte accounting ------------------------------------------------------------------------------


async def test_bytes_follow_set_replace_delete_and_clear() -> None:
    storage = MemoryStorage(clock=FakeClock())
    a, b, a2 = snapshot(b"a" * 10), snapshot(b"b" * 20), snapshot(b"a" * 30)
    await storage.set(keyed(1), a, 60)
    await storage.set(keyed(2), b, 60)
    ca, cb, ca2 = await counted(a), await counted(b), await counted(a2)
    assert storage.bytes == ca + cb
    await storage.set(keyed(1), a2, 60)
    assert storage.bytes == ca2 + cb
    await storage.delete(keyed(2))
    assert storage.bytes == ca2
    await storage.clear()
    assert storage.bytes == 0 and len(storage) == 0


async def test_expired_entry_is_dropped_when_read() -> None:
    clock = FakeClock()
    storage = MemoryStorage(clock=clock)
    await storage.set(keyed(1), snapshot(), 10)
    clock.advance(10)
    assert await storage.get(keyed(1)) is None
    assert len(storage) == 0 and storage.bytes == 0


# -- no copies ------------------------------------------------------------------------------------


async def test_a_stored_body_is_the_same_object_on_every_hit() -> None:
    storage = MemoryStorage(clock=FakeClock())
    snap = snapshot(b"z" * 100_000)
    await storage.set(keyed(1), snap, 60)
    first = await storage.get(keyed(1))
    second = await storage.get(keyed(1))
    assert first is snap and second is snap
    assert first.body is snap.body and second.body is snap.body


# -- construction ---------------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["max_entries", "max_bytes"])
@pytest.mark.parametrize(
    "value", [0, -1, True, False, 1.5, 10.0, "10", None], ids=lambda v: repr(v)
)
def test_bad_bound_raises_value_error_naming_it(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=option):
        MemoryStorage(**{option: value})


def test_non_callable_clock_raises_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match="clock"):
        MemoryStorage(clock=42)  # type: ignore[arg-type]


def test_bounds_of_one_are_accepted() -> None:
    storage = MemoryStorage(max_entries=1, max_bytes=1)
    assert (storage.max_entries, storage.max_bytes) == (1, 1)


def test_repr_shows_live_state() -> None:
    storage = MemoryStorage(max_entries=3, max_bytes=1000)
    assert repr(storage) == "<MemoryStorage entries=0 bytes=0 max_entries=3 max_bytes=1000>"


async def test_repr_says_closed() -> None:
    storage = MemoryStorage()
    await storage.close()
    assert "closed" in repr(storage)
