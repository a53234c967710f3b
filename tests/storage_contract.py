"""The contract every ``Storage`` backend keeps (coalesce_client/storage/base.py).

How to use it for a backend: in ``tests/test_storage_<backend>.py``, import the tests and define a
``make_storage`` fixture that returns a factory ``make_storage(clock=...) -> Storage`` (the backend
must read time from ``clock``, so that expiry is tested without sleeping) and closes what it made::

    from storage_contract import *  # noqa: F403

    @pytest.fixture
    async def make_storage(tmp_path):
        made = []
        def make(*, clock):
            made.append(DiskStorage(tmp_path / "cache", clock=clock))
            return made[-1]
        yield make
        for storage in made:
            await storage.close()

The tests use only the protocol: a backend may hand back the stored snapshot itself or an equal
copy decoded from bytes. This module's name does not start with ``test_``, so pytest collects these
tests only where they are imported, once per backend.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import pytest
from conftest import FakeClock

from coalesce_client.snapshot import Snapshot
from coalesce_client.storage.base import Clock, Storage, StorageClosedError

__all__ = [
    "test_a_fresh_storage_is_empty",
    "test_an_entry_is_kept_until_just_before_its_expiry",
    "test_an_entry_is_not_returned_after_its_expiry",
    "test_backend_implements_the_storage_protocol",
    "test_clear_removes_every_entry",
    "test_clear_then_set_works",
    "test_close_twice_is_fine",
    "test_delete_leaves_other_keys",
    "test_delete_missing_key_is_fine",
    "test_delete_removes_the_entry",
    "test_each_key_expires_on_its_own_ttl",
    "test_get_missing_key_returns_none",
    "test_keys_are_independent",
    "test_set_again_renews_the_ttl",
    "test_set_replaces_the_previous_value",
    "test_set_then_get_returns_an_equal_snapshot",
    "test_set_with_fractional_ttl",
    "test_set_with_ttl_zero_or_less_does_not_keep_the_value",
    "test_set_with_ttl_zero_or_less_removes_a_previous_value",
    "test_storage_is_unusable_after_close",
    "test_values_survive_many_gets",
]


class MakeStorage(Protocol):
    def __call__(self, *, clock: Clock) -> Storage: ...


def snapshot(
    body: bytes = b"hello", *, url: str = "http://example.com/", status: int = 200
) -> Snapshot:
    return Snapshot(
        status,
        "OK",
        (("Content-Type", "text/plain"), ("Vary", "Accept"), ("Vary", "Origin")),
        url,
        "GET",
        body,
        1_800_000_000.0,
        1_800_000_060.0,
    )


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

KEY_A = "a" * 64  # keys are 64-character hex digests made by keys.py
KEY_B = "b" * 64
KEY_C = "0123456789abcdef" * 4


def open_storage(make_storage: MakeStorage, clock: FakeClock | None = None) -> Storage:
    return make_storage(clock=clock if clock is not None else FakeClock())


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
