"""MemoryStorage: LRU bounds by entries and by bytes (the contract: test_storage_contract.py).

The byte tests read what the storage counts from ``storage.bytes`` (``counted`` below), never from
the formula, and the real-cost tests hold it against what tracemalloc sees the process allocate.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from conftest import FakeClock, Origin, snapshot

from coalesce_client import CoalescingSession, MemoryStorage
from coalesce_client.spec.snapshot import Snapshot
from coalesce_client.storage.records import Record, UrlIndex, VaryPointer

MiB = 1024 * 1024


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


# -- real cost (issue 11): process memory grows by at most about 1.5 x max_bytes -------------------


def fresh(text: str) -> str:
    """A new string object equal to ``text`` (a literal is shared, so it costs an entry nothing)."""
    return (text + ".")[:-1]


def tiny(i: int) -> Snapshot:
    """The smallest kind of response: a few bytes of body, one header, a short URL."""
    return Snapshot(
        200,
        "OK",
        (("Content-Type", "text/plain"),),
        f"http://example.com/{i}",
        "GET",
        str(i).encode(),
        1_800_000_000.0,
        1_800_000_060.0,
    )


def redirected(i: int, *, hops: int = 8, headers: int = 16, value: int = 400) -> Snapshot:
    """A small response reached through ``hops`` redirects, each with ``headers`` big headers."""
    history = tuple(
        Snapshot(
            302,
            fresh("Found"),
            tuple((f"X-Hop-{h}-{j}", f"{i:08x}" + "v" * value) for j in range(headers)),
            f"http://example.com/{i}/hop/{h}",
            fresh("GET"),
            b"",
            1_800_000_000.0 + i,
            1_800_000_060.0 + i,
        )
        for h in range(hops)
    )
    return Snapshot(
        200,
        fresh("OK"),
        ((fresh("Content-Type"), fresh("text/plain")),),
        f"http://example.com/{i}",
        fresh("GET"),
        b"x" * 100,
        1_800_000_000.0 + i,
        1_800_000_060.0 + i,
        history,
    )


@contextmanager
def traced() -> Iterator[Callable[[], int]]:
    """Bytes allocated since entering (tracemalloc), read by calling what the block is given."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield lambda: tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()


async def test_a_16_mib_limit_holds_at_most_24_mib_of_redirect_histories() -> None:
    # Issue 11: redirect history was not counted, and a 16 MiB limit held 115 MiB of it. Each entry
    # here carries about 70 KiB of redirect headers; 800 of them are about 55 MiB.
    storage = MemoryStorage(max_entries=1_000_000, max_bytes=16 * MiB, clock=FakeClock())
    with traced() as growth:
        for i in range(800):
            await storage.set(keyed(i), redirected(i), 60)
        held = growth()
    assert held <= 1.5 * storage.max_bytes, f"{held / MiB:.1f} MiB held under a 16 MiB limit"
    assert storage.max_bytes // 2 <= storage.bytes <= storage.max_bytes, "the test must fill it"


async def test_many_small_entries_hold_at_most_1_5_times_max_bytes() -> None:
    # Issue 11: small entries cost about 3.4 x what was counted (32 MiB counted, 109 MiB resident):
    # the key, the bookkeeping and each object's own header were left out.
    storage = MemoryStorage(max_entries=1_000_000, max_bytes=4 * MiB, clock=FakeClock())
    with traced() as growth:
        for i in range(60_000):
            await storage.set(keyed(i), tiny(i), 60)
        held = growth()
    assert len(storage) < 60_000, "the test must fill the storage"
    assert held <= 1.5 * storage.max_bytes, (
        f"{held / MiB:.1f} MiB held under a 4 MiB limit by {len(storage)} entries"
    )


def many_headers(i: int) -> Snapshot:
    return Snapshot(
        200,
        fresh("OK"),
        tuple((f"X-Header-{j}", f"value {j} of {i}") for j in range(40)),
        f"http://example.com/{i}",
        fresh("GET"),
        str(i).encode(),
        1_800_000_000.0 + i,
        1_800_000_060.0 + i,
    )


def non_ascii(i: int) -> Snapshot:
    # Header values decoded with surrogateescape, and text beyond Latin-1, take 2 or 4 bytes a
    # character in a str: counting characters undercounts them.
    return Snapshot(
        200,
        fresh("OK"),
        (
            (f"X-Title-{i}", f"日本語のタイトル {i} " * 8),
            (f"X-Emoji-{i}", f"\U0001f600 {i} " * 8),
            (f"X-Raw-{i}", f"\udcff\udcfe {i} " * 8),
        ),
        f"https://example.com/päth/{i}",
        fresh("GET"),
        str(i).encode(),
        1_800_000_000.0 + i,
        1_800_000_060.0 + i,
    )


def large_body(i: int) -> Snapshot:
    return Snapshot(
        200,
        fresh("OK"),
        ((fresh("Content-Type"), fresh("application/octet-stream")),),
        f"http://example.com/{i}",
        fresh("GET"),
        bytes([i % 256]) * 200_000,
        1_800_000_000.0 + i,
        1_800_000_060.0 + i,
    )


def fresh_tiny(i: int) -> Snapshot:
    """``tiny`` with every string its own, so that the entry alone holds each of them."""
    return Snapshot(
        200 + i % 300,  # most statuses are int objects of their own, not the small-int cache's
        fresh("OK"),
        ((fresh("Content-Type"), fresh("text/plain")),),
        f"http://example.com/{i}",
        fresh("GET"),
        str(i).encode(),
        1_800_000_000.0 + i,
        1_800_000_060.0 + i,
    )


def pointer(i: int) -> VaryPointer:
    """A Vary pointer to two variants, every string its own."""
    names = (fresh("accept"), fresh("accept-language"))
    variants = (keyed(2 * i), keyed(2 * i + 1))
    return VaryPointer(names, variants, f"http://example.com/{i}", 0.5 + i, 1.5 + i)


def index(i: int) -> UrlIndex:
    """A URL index of eight keys, every string its own."""
    keys = tuple(keyed(8 * i + j) for j in range(8))
    return UrlIndex(keys, f"https://example.com/päth/{i}", 0.5 + i, 1.5 + i)


@pytest.mark.parametrize(
    ("shape", "count"),
    [
        (fresh_tiny, 20_000),
        (many_headers, 2_000),
        (non_ascii, 5_000),
        (large_body, 100),
        (redirected, 200),
        (pointer, 20_000),
        (index, 10_000),
    ],
    ids=lambda v: getattr(v, "__name__", str(v)),
)
async def test_bytes_counted_are_what_the_entries_really_take(
    shape: Callable[[int], Record], count: int
) -> None:
    # Exact-ish: what the storage counts is what tracemalloc sees the entries allocate (each object
    # its own here), give or take the dict's slack, which is counted at its worst.
    storage = MemoryStorage(max_entries=count, max_bytes=2**40, clock=FakeClock())
    with traced() as growth:
        for i in range(count):
            await storage.set(keyed(i), shape(i), 60)
        held = growth()
    assert len(storage) == count
    assert 0.8 * storage.bytes <= held <= 1.02 * storage.bytes, (
        f"{held / count:.0f} bytes taken per entry, {storage.bytes / count:.0f} counted"
    )


# -- no copies ------------------------------------------------------------------------------------


async def test_entries_lists_one_response_after_one_request_through_the_session(
    started: Origin,
) -> None:
    # Issue 18: listings showed the URL index (and Vary pointers) as if they were responses.
    storage = MemoryStorage()
    async with CoalescingSession(ttl=60, storage=storage, storage_owner=False) as s:
        assert (await s.get(started.url("/text"))).cache_status == "miss"
    assert len(storage) == 2  # the response and its URL index
    listed = [item async for item in storage.entries()]
    assert len(listed) == 1
    [(_, snap)] = listed
    assert isinstance(snap, Snapshot) and snap.method == "GET"
    await storage.close()


async def test_entries_lists_least_recently_used_first_and_changes_nothing() -> None:
    clock = FakeClock()
    storage = MemoryStorage(clock=clock)
    for i in range(3):
        await storage.set(keyed(i), tiny(i), 10)
    await storage.get(keyed(0))  # now the most recent
    clock.advance(11)  # expired: listed until a read drops them
    assert [key async for key, _ in storage.entries()] == [keyed(1), keyed(2), keyed(0)]
    assert len(storage) == 3


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
