"""The contract every ``Storage`` backend keeps (coalesce_client/storage/base.py), run on each.

Each test takes ``make_storage``, a factory ``make_storage(clock=...) -> Storage`` for one backend:
the backend reads time from ``clock``, so that expiry is tested without sleeping. RedisStorage too:
it decides a read by the expiry stored in the value, on its own clock (Redis's own expiry frees
the memory; ``test_storage_redis.py`` checks it is set), so the fake clock works there as well,
against a redis-server started for the session, each test in a namespace of its own. The tests use
the protocol only: a backend may hand back the stored snapshot itself or an equal copy decoded from
bytes. Every kind of record (a response, a Vary pointer, a URL index: ``storage/records.py``) is
kept alike. The optional abilities (``ReadsNowait``, ``ReadsExpiry``, ``Lists``) are tested on
every backend that offers them, and only there.

A new backend is one more line in ``BACKENDS`` below.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

import pytest
from conftest import KEY_A, KEY_B, KEY_C, FakeClock, snapshot

from coalesce_client.spec.snapshot import Snapshot
from coalesce_client.storage import DiskStorage, MemoryStorage, RedisStorage, TieredStorage
from coalesce_client.storage.base import (
    Clock,
    Lists,
    ReadsExpiry,
    ReadsNowait,
    Storage,
    StorageClosedError,
)
from coalesce_client.storage.records import UrlIndex, VaryPointer


class MakeStorage(Protocol):
    def __call__(self, *, clock: Clock) -> Storage: ...


Build = Callable[[Path, Clock], Storage]
REDIS_URL: list[str] = []  # the session's redis-server, set by factory() for the Redis backends


def redis(clock: Clock) -> RedisStorage:
    return RedisStorage(REDIS_URL[0], namespace=f"c{uuid.uuid4().hex[:12]}", clock=clock)


# Every backend, by name: its class (the ability tests below find from it which optional protocols
# it offers) and how to build one in a directory of its own. To add a backend, add its line here
# (and, if it needs a server, to NEEDS_REDIS).
BACKENDS: dict[str, tuple[type[Any], Build]] = {
    "memory": (MemoryStorage, lambda _, clock: MemoryStorage(clock=clock)),
    "disk": (DiskStorage, lambda directory, clock: DiskStorage(directory, clock=clock)),
    "tiered-disk": (
        TieredStorage,
        lambda directory, clock: TieredStorage(
            MemoryStorage(clock=clock), DiskStorage(directory, clock=clock), clock=clock
        ),
    ),
    "tiered-memory": (
        TieredStorage,
        lambda _, clock: TieredStorage(
            MemoryStorage(clock=clock), MemoryStorage(clock=clock), clock=clock
        ),
    ),
    "redis": (RedisStorage, lambda _, clock: redis(clock)),
    "tiered-redis": (
        TieredStorage,
        lambda _, clock: TieredStorage(MemoryStorage(clock=clock), redis(clock), clock=clock),
    ),
}
NEEDS_REDIS = {"redis", "tiered-redis"}


def offering(ability: type[Any]) -> list[str]:
    """The backends whose class offers an optional ability (a runtime_checkable protocol)."""
    return [name for name, (cls, _) in BACKENDS.items() if issubclass(cls, ability)]


async def factory(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, ability: type[Any] = Storage
) -> AsyncIterator[Any]:
    """``make_storage`` for one backend; closes what it made when the test is over."""
    if name in NEEDS_REDIS:
        REDIS_URL[:] = [request.getfixturevalue("redis_server").url]
    made: list[Storage] = []
    build = BACKENDS[name][1]

    def make(*, clock: Clock) -> Any:
        storage = build(tmp_path / f"storage{len(made)}", clock)
        made.append(storage)
        assert isinstance(storage, ability), (name, ability.__name__)
        return storage

    yield make
    for storage in made:
        await storage.close()


@pytest.fixture(params=sorted(BACKENDS))
async def make_storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async for make in factory(request.param, request, tmp_path):
        yield make


@pytest.fixture(params=offering(ReadsNowait))
async def make_nowait(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async for make in factory(request.param, request, tmp_path, ReadsNowait):
        yield make


@pytest.fixture(params=offering(ReadsExpiry))
async def make_expiry(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async for make in factory(request.param, request, tmp_path, ReadsExpiry):
        yield make


@pytest.fixture(params=offering(Lists))
async def make_lists(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    async for make in factory(request.param, request, tmp_path, Lists):
        yield make


def open_storage(make_storage: MakeStorage, clock: FakeClock | None = None) -> Storage:
    return make_storage(clock=clock if clock is not None else FakeClock())


RICH = Snapshot(
    200,
    "OK",
    (
        ("Content-Type", "application/octet-stream"),
        ("X-Title", "Café — 日本語"),
        ("Link", "</a>"),
        ("link", "</b>"),
        ("X-Empty", ""),
    ),
    "https://example.com/päth?q=1",
    "GET",
    bytes(range(256)) * 1024,  # 256 KiB, every byte value
    1_800_000_000.25,
    1_800_000_060.5,
    (
        Snapshot(
            301,
            "Moved Permanently",
            (("Location", "https://example.com/päth?q=1"),),
            "http://example.com/old",
            "GET",
            b"",
            1_800_000_000.0,
            1_800_000_000.0,
        ),
    ),
)


async def test_backend_implements_the_storage_protocol(make_storage: MakeStorage) -> None:
    assert isinstance(open_storage(make_storage), Storage)


async def test_a_fresh_storage_is_empty(make_storage: MakeStorage) -> None:
    storage = open_storage(make_storage)
    for key in (KEY_A, KEY_B, KEY_C):
        assert await storage.get(key) is None


async def test_get_missing_key_returns_none(make_storage: MakeStorage) -> None:
    storage = open_storage(make_storage)
    await storage.set(KEY_A, snapshot(), 60)
    assert await storage.get(KEY_B) is None


async def test_set_then_get_returns_an_equal_snapshot(make_storage: MakeStorage) -> None:
    storage = open_storage(make_storage)
    await storage.set(KEY_A, RICH, 60)
    got = await storage.get(KEY_A)
    assert got is not None
    assert got.body == RICH.body  # byte for byte
    assert got.headers == RICH.headers  # order and repeats kept
    assert got.history == RICH.history
    assert got == RICH


async def test_values_survive_many_gets(make_storage: MakeStorage) -> None:
    storage = open_storage(make_storage)
    await storage.set(KEY_A, snapshot(b"same"), 60)
    for _ in range(5):
        got = await storage.get(KEY_A)
        assert got is not None and got.body == b"same"


async def test_set_replaces_the_previous_value(make_storage: MakeStorage) -> None:
    storage = open_storage(make_storage)
    await storage.set(KEY_A, snapshot(b"first"), 60)
    await storage.set(KEY_A, snapshot(b"second"), 60)
    got = await storage.get(KEY_A)
    assert got is not None and got.body == b"second"


async def test_delete_removes_the_entry(make_storage: MakeStorage) -> None:
    storage = open_storage(make_storage)
    await storage.set(KEY_A, snapshot(), 60)
    await storage.delete(KEY_A)
    assert await storage.get(KEY_A) is None


async def test_delete_leaves_other_keys(make_storage: MakeStorage) -> None:
    storage = open_storage(make_storage)
    await storage.set(KEY_A, snapshot(b"a"), 60)
    await storage.set(KEY_B, snapshot(b"b"), 60)
    await storage.delete(KEY_A)
    got = await storage.get(KEY_B)
    assert got is not None and got.body == b"b"


async def test_delete_missing_key_is_fine(make_storage: MakeStorage) -> None:
    storage = open_storage(make_storage)
    await storage.delete(KEY_A)
    await storage.set(KEY_A, snapshot(), 60)
    await storage.delete(KEY_A)
    await storage.delete(KEY_A)
    assert await storage.get(KEY_A) is None


async def test_clear_removes_every_entry(make_storage: MakeStorage) -> None:
    storage = open_storage(make_storage)
    for key in (KEY_A, KEY_B, KEY_C):
        await storage.set(key, snapshot(key.encode()), 60)
    await storage.clear()
    for key in (KEY_A, KEY_B, KEY_C):
        assert await storage.get(key) is None


async def test_clear_then_set_works(make_storage: MakeStorage) -> None:
    storage = open_storage(make_storage)
    await storage.clear()  # clearing an empty storage is fine
    await storage.set(KEY_A, snapshot(b"a"), 60)
    await storage.clear()
    await storage.set(KEY_A, snapshot(b"again"), 60)
    got = await storage.get(KEY_A)
    assert got is not None and got.body == b"again"


async def test_keys_are_independent(make_storage: MakeStorage) -> None:
    storage = open_storage(make_storage)
    await storage.set(KEY_A, snapshot(b"a", url="http://a/"), 60)
    await storage.set(KEY_B, snapshot(b"b", url="http://b/"), 60)
    await storage.set(KEY_A, snapshot(b"a2", url="http://a/"), 60)
    got_a, got_b = await storage.get(KEY_A), await storage.get(KEY_B)
    assert got_a is not None and got_a.body == b"a2"
    assert got_b is not None and got_b.body == b"b" and got_b.url == "http://b/"


async def test_an_entry_is_kept_until_just_before_its_expiry(make_storage: MakeStorage) -> None:
    clock = FakeClock()
    storage = open_storage(make_storage, clock)
    await storage.set(KEY_A, snapshot(), 10)
    clock.advance(9.9)
    got = await storage.get(KEY_A)
    assert got is not None and got.body == b"hello"


async def test_an_entry_is_not_returned_after_its_expiry(make_storage: MakeStorage) -> None:
    clock = FakeClock()
    storage = open_storage(make_storage, clock)
    await storage.set(KEY_A, snapshot(), 10)
    clock.advance(10.1)
    assert await storage.get(KEY_A) is None


async def test_set_with_fractional_ttl(make_storage: MakeStorage) -> None:
    clock = FakeClock()
    storage = open_storage(make_storage, clock)
    await storage.set(KEY_A, snapshot(), 0.5)
    clock.advance(0.4)
    assert await storage.get(KEY_A) is not None
    clock.advance(0.2)
    assert await storage.get(KEY_A) is None


async def test_each_key_expires_on_its_own_ttl(make_storage: MakeStorage) -> None:
    clock = FakeClock()
    storage = open_storage(make_storage, clock)
    await storage.set(KEY_A, snapshot(b"short"), 5)
    await storage.set(KEY_B, snapshot(b"long"), 50)
    clock.advance(6)
    assert await storage.get(KEY_A) is None
    got = await storage.get(KEY_B)
    assert got is not None and got.body == b"long"


async def test_set_again_renews_the_ttl(make_storage: MakeStorage) -> None:
    clock = FakeClock()
    storage = open_storage(make_storage, clock)
    await storage.set(KEY_A, snapshot(b"old"), 10)
    clock.advance(8)
    await storage.set(KEY_A, snapshot(b"new"), 10)
    clock.advance(8)  # 16 s after the first set, 8 s after the second
    got = await storage.get(KEY_A)
    assert got is not None and got.body == b"new"


@pytest.mark.parametrize("ttl", [0, 0.0, -1, -0.001])
async def test_set_with_ttl_zero_or_less_does_not_keep_the_value(
    make_storage: MakeStorage, ttl: float
) -> None:
    storage = open_storage(make_storage)
    await storage.set(KEY_A, snapshot(), ttl)
    assert await storage.get(KEY_A) is None


async def test_set_with_ttl_zero_or_less_removes_a_previous_value(
    make_storage: MakeStorage,
) -> None:
    # "Keep value under key for ttl seconds, replacing what was there": for 0 seconds, nothing is
    # left, and in particular not the older response the caller meant to replace.
    storage = open_storage(make_storage)
    await storage.set(KEY_A, snapshot(b"old"), 60)
    await storage.set(KEY_A, snapshot(b"new"), 0)
    assert await storage.get(KEY_A) is None


OPERATIONS: dict[str, Callable[[Storage], Awaitable[Any]]] = {
    "get": lambda s: s.get(KEY_A),
    "set": lambda s: s.set(KEY_A, snapshot(), 60),
    "delete": lambda s: s.delete(KEY_A),
    "clear": lambda s: s.clear(),
}


@pytest.mark.parametrize("operation", sorted(OPERATIONS))
async def test_storage_is_unusable_after_close(make_storage: MakeStorage, operation: str) -> None:
    storage = open_storage(make_storage)
    await storage.set(KEY_A, snapshot(), 60)
    await storage.close()
    with pytest.raises(StorageClosedError):
        await OPERATIONS[operation](storage)


async def test_close_twice_is_fine(make_storage: MakeStorage) -> None:
    storage = open_storage(make_storage)
    await storage.set(KEY_A, snapshot(), 60)
    await storage.close()
    await storage.close()
    with pytest.raises(StorageClosedError):
        await storage.get(KEY_A)


# -- the records that are not responses: kept alike, never listed ---------------------------------

POINTER = VaryPointer(("accept",), (KEY_B, KEY_C), "https://example.com/päth", 1e9, 1.8e9 + 60)
INDEX = UrlIndex((KEY_A, KEY_B, KEY_C), "https://example.com/päth", 1e9, 1.8e9 + 60)


async def test_a_pointer_and_an_index_come_back_as_themselves(make_storage: MakeStorage) -> None:
    storage = open_storage(make_storage)
    await storage.set(KEY_A, POINTER, 60)
    await storage.set(KEY_B, INDEX, 60)
    await storage.set(KEY_C, RICH, 60)
    pointer, index = await storage.get(KEY_A), await storage.get(KEY_B)
    assert type(pointer) is VaryPointer and pointer == POINTER
    assert type(index) is UrlIndex and index == INDEX
    assert await storage.get(KEY_C) == RICH


async def test_a_pointer_and_an_index_expire_and_go_as_a_response_does(
    make_storage: MakeStorage,
) -> None:
    clock = FakeClock()
    storage = open_storage(make_storage, clock)
    await storage.set(KEY_A, POINTER, 10)
    await storage.set(KEY_B, INDEX, 60)
    await storage.set(KEY_C, INDEX, 60)
    await storage.delete(KEY_C)
    clock.advance(10.1)
    assert await storage.get(KEY_A) is None  # expired
    assert await storage.get(KEY_B) == INDEX
    assert await storage.get(KEY_C) is None  # deleted


async def test_entries_lists_the_responses_only(make_lists: MakeStorage) -> None:
    clock = FakeClock()
    storage: Any = open_storage(make_lists, clock)
    await storage.set(KEY_A, POINTER, 60)
    await storage.set(KEY_B, RICH, 10)
    await storage.set(KEY_C, INDEX, 60)
    clock.advance(5)
    listed = [(key, snap) async for key, snap in storage.entries()]
    assert listed == [(KEY_B, RICH)]
    await storage.close()
    with pytest.raises(StorageClosedError):
        storage.entries()


# -- ReadsNowait: get_nowait gives get's answer, or None ------------------------------------------


async def assert_nowait_agrees_with_get(storage: Any, key: str) -> None:
    at_hand = storage.get_nowait(key)  # first: get may change what is at hand (a refill)
    got = await storage.get(key)
    assert at_hand is None or at_hand == got, (at_hand, got)


async def test_get_nowait_answers_as_get_does_or_not_at_all(make_nowait: MakeStorage) -> None:
    clock = FakeClock()
    storage: Any = open_storage(make_nowait, clock)
    for key in (KEY_A, KEY_B):
        await assert_nowait_agrees_with_get(storage, key)  # absent
    await storage.set(KEY_A, snapshot(b"first"), 10)
    await storage.set(KEY_B, snapshot(b"other"), 60)
    await assert_nowait_agrees_with_get(storage, KEY_A)
    await storage.set(KEY_A, snapshot(b"second"), 10)  # replaced
    await assert_nowait_agrees_with_get(storage, KEY_A)
    await assert_nowait_agrees_with_get(storage, KEY_A)  # after a read, too
    clock.advance(10.1)  # expired: get says None, so get_nowait must too
    await assert_nowait_agrees_with_get(storage, KEY_A)
    await storage.delete(KEY_B)
    await assert_nowait_agrees_with_get(storage, KEY_B)
    await storage.set(KEY_C, snapshot(b"c"), 60)
    await storage.clear()
    await assert_nowait_agrees_with_get(storage, KEY_C)


async def test_get_nowait_never_returns_an_expired_or_removed_entry(
    make_nowait: MakeStorage,
) -> None:
    clock = FakeClock()
    storage: Any = open_storage(make_nowait, clock)
    for key in (KEY_A, KEY_B, KEY_C):
        await storage.set(key, snapshot(key.encode()), 10)
        await storage.get(key)  # read once, so that a tier in front holds it too
    await storage.delete(KEY_B)
    await storage.set(KEY_C, snapshot(b"gone"), 0)
    assert storage.get_nowait(KEY_B) is None
    assert storage.get_nowait(KEY_C) is None
    clock.advance(10.1)
    assert storage.get_nowait(KEY_A) is None


# -- ReadsExpiry: get_with_expiry gives the entry and its absolute expiry -------------------------


async def test_get_with_expiry_returns_the_entry_and_its_absolute_expiry(
    make_expiry: MakeStorage,
) -> None:
    clock = FakeClock()
    storage: Any = open_storage(make_expiry, clock)
    assert await storage.get_with_expiry(KEY_A) is None
    await storage.set(KEY_A, RICH, 10)
    clock.advance(4)
    entry = await storage.get_with_expiry(KEY_A)
    assert entry is not None
    snap, expires_at = entry
    assert snap == RICH == await storage.get(KEY_A)
    assert expires_at == pytest.approx(clock.now - 4 + 10)  # absolute, on the storage's clock
    await storage.set(KEY_A, snapshot(b"renewed"), 30)
    entry = await storage.get_with_expiry(KEY_A)
    assert entry is not None and entry[0].body == b"renewed"
    assert entry[1] == pytest.approx(clock.now + 30)


async def test_get_with_expiry_returns_none_for_what_get_does_not_return(
    make_expiry: MakeStorage,
) -> None:
    clock = FakeClock()
    storage: Any = open_storage(make_expiry, clock)
    await storage.set(KEY_A, snapshot(b"short"), 5)
    await storage.set(KEY_B, snapshot(b"deleted"), 60)
    await storage.set(KEY_C, snapshot(b"zero"), 60)
    await storage.delete(KEY_B)
    await storage.set(KEY_C, snapshot(b"zero"), 0)
    clock.advance(5.1)
    for key in (KEY_A, KEY_B, KEY_C):
        assert await storage.get_with_expiry(key) is None
        assert await storage.get(key) is None


# -- a closed storage refuses every operation, optional ones included -----------------------------


async def test_get_nowait_raises_after_close(make_nowait: MakeStorage) -> None:
    storage: Any = open_storage(make_nowait)
    await storage.set(KEY_A, snapshot(), 60)
    await storage.close()
    with pytest.raises(StorageClosedError):
        storage.get_nowait(KEY_A)


async def test_get_with_expiry_raises_after_close(make_expiry: MakeStorage) -> None:
    storage: Any = open_storage(make_expiry)
    await storage.set(KEY_A, snapshot(), 60)
    await storage.close()
    with pytest.raises(StorageClosedError):
        await storage.get_with_expiry(KEY_A)
