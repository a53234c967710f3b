"""DiskStorage's hot hit (issue 20): read without a coroutine, decoded once, checked every time.

A row kept inside SQLite is read on the loop (``get_nowait``), so the coalescer serves it as it
serves a memory hit; its record is decoded once and remembered with the row's very bytes, but
every read still reads the row, and serves the record only if the row holds those bytes (their
key, expiry and checksum checked before) and the same tag (``storage/disk/sealed.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from conftest import KEY_A, FakeClock, Origin, snapshot

from coalesce_client import CoalescingSession
from coalesce_client.storage import DiskStorage
from coalesce_client.storage.base import ReadsNowait
from coalesce_client.storage.disk.sealed import Decoded, Unreadable, seal

BODY = bytes(range(256)) * 8


@pytest.fixture
async def disk(tmp_path: Path) -> AsyncIterator[DiskStorage]:
    storage = DiskStorage(tmp_path / "cache")
    yield storage
    await storage.close()


def row_value(directory: Path, key: str) -> bytes:
    with contextlib.closing(sqlite3.connect(directory / "cache.db")) as con:
        ((value,),) = con.execute("SELECT value FROM Cache WHERE key = ?", (key,)).fetchall()
    return bytes(value)


def write_row_value(directory: Path, key: str, value: bytes) -> None:
    with contextlib.closing(sqlite3.connect(directory / "cache.db", isolation_level=None)) as con:
        con.execute("UPDATE Cache SET value = ? WHERE key = ?", (value, key))


async def test_a_row_inside_sqlite_is_read_without_a_coroutine(disk: DiskStorage) -> None:
    assert isinstance(disk, ReadsNowait)
    assert disk.get_nowait(KEY_A) is None
    await disk.set(KEY_A, snapshot(BODY), 60)
    got = disk.get_nowait(KEY_A)
    assert got is not None and got.body == BODY


async def test_a_hot_row_is_decoded_once_and_served_as_the_same_record(disk: DiskStorage) -> None:
    await disk.set(KEY_A, snapshot(BODY), 60)
    first, second = disk.get_nowait(KEY_A), await disk.get(KEY_A)
    assert first is not None and first is second  # the decode was skipped, not the read
    await disk.set(KEY_A, snapshot(BODY[::-1]), 60)  # a new value: decoded anew
    third = disk.get_nowait(KEY_A)
    assert third is not None and third.body == BODY[::-1]


async def test_a_remembered_row_damaged_on_disk_is_still_a_miss(
    disk: DiskStorage, caplog: pytest.LogCaptureFixture
) -> None:
    await disk.set(KEY_A, snapshot(BODY), 60)
    assert disk.get_nowait(KEY_A) is not None  # decoded and remembered
    value = bytearray(row_value(disk.directory, KEY_A))
    value[value.index(BODY) + 100] ^= 0x20  # one byte of the body, checksum left as it was
    write_row_value(disk.directory, KEY_A, bytes(value))
    assert disk.get_nowait(KEY_A) is None  # the checksum is checked on every read
    with caplog.at_level(logging.WARNING, logger="coalesce_client"):
        assert await disk.get(KEY_A) is None  # and get deletes it, logged
    assert "checksum" in caplog.records[0].getMessage()
    assert await disk.get(KEY_A) is None


async def test_a_remembered_record_is_served_for_its_very_bytes_and_tag_only() -> None:
    # Under one key, another value (even of the same length) is unsealed, checked and decoded
    # anew; the same value under another tag or another key is checked again, and refused.
    decoded = Decoded()
    record_a, record_b = snapshot(b"a" * 100), snapshot(b"b" * 100)
    value_a = b"".join(seal(KEY_A, 1e12, record_a))
    value_b = b"".join(seal(KEY_A, 1e12, record_b))
    got_a, _ = decoded.entry(KEY_A, value_a, 1e12)
    assert got_a == record_a and decoded.entry(KEY_A, value_a, 1e12)[0] is got_a
    got_b, _ = decoded.entry(KEY_A, value_b, 1e12)
    assert got_b == record_b
    assert decoded.entry(KEY_A, value_b, 1e12)[0] is got_b  # remembered in its turn
    with pytest.raises(Unreadable, match="another expiry"):  # a damaged tag, say
        decoded.entry(KEY_A, value_b, 2e12)
    with pytest.raises(Unreadable, match="another key"):  # a damaged index, say
        decoded.entry("other", value_b, 1e12)


async def test_an_expired_row_is_not_at_hand_and_get_deletes_it(tmp_path: Path) -> None:
    clock = FakeClock()
    disk = DiskStorage(tmp_path / "cache", clock=clock)
    try:
        await disk.set(KEY_A, snapshot(BODY), 10)
        assert disk.get_nowait(KEY_A) is not None
        clock.advance(10)
        assert disk.get_nowait(KEY_A) is None
        assert await disk.get(KEY_A) is None
        with contextlib.closing(sqlite3.connect(tmp_path / "cache" / "cache.db")) as con:
            assert con.execute("SELECT count(*) FROM Cache").fetchall() == [(0,)]
    finally:
        await disk.close()


async def test_a_session_serves_disk_hits_from_the_row_it_reads_each_time(
    tmp_path: Path, origin: Origin
) -> None:
    async def item(request: web.Request) -> web.Response:
        return web.Response(body=BODY)

    origin.route("/item", item)
    await origin.start()
    url = origin.url("/item")
    storage = DiskStorage(tmp_path / "cache")
    async with CoalescingSession(ttl=600, storage=storage) as s:
        async with s.get(url) as r:
            assert await r.read() == BODY
        await s._core.drain()  # the write has ended: the next hits read the row
        for _ in range(3):
            async with s.get(url) as r:
                assert await r.read() == BODY and r.cache_status == "hit"
        assert origin.calls["/item"] == 1
        (key,) = [k async for k, _ in storage.entries()]
        value = bytearray(row_value(storage.directory, key))
        value[value.index(BODY) + 100] ^= 0x20  # damaged on disk: the next hit must see it
        write_row_value(storage.directory, key, bytes(value))
        async with s.get(url) as r:
            assert await r.read() == BODY and r.cache_status == "miss"
    assert origin.calls["/item"] == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_a_child_of_a_fork_reads_on_a_connection_of_its_own(tmp_path: Path) -> None:
    async def store() -> None:
        writer = DiskStorage(tmp_path / "cache")
        await writer.set(KEY_A, snapshot(BODY), 60)
        await writer.close()

    asyncio.run(store())
    storage = DiskStorage(tmp_path / "cache")
    try:
        assert storage.get_nowait(KEY_A) is not None
        reader = storage._io._reader
        assert reader is not None
        ours = reader._cursor.connection
        with warnings.catch_warnings():  # 3.12 warns of a fork of a process that has threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child: its own connection, never the parent's
            code = 1
            try:
                served = storage.get_nowait(KEY_A)
                code = 0 if served is not None and reader._cursor.connection is not ours else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert storage.get_nowait(KEY_A) is not None and reader._cursor.connection is ours
    finally:
        asyncio.run(storage.close())
