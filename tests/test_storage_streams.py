"""Streamed responses in storage (issue 24): DiskStorage stores a body as it arrives and serves it
from its file by checked blocks; RedisStorage up to its limit; TieredStorage keeps them out of its
front; the Writer neither logs a truncation as a storage failure nor waits on one to invalidate.

Real directories, real separate processes where persistence is claimed (tests/stream_child.py),
a real redis-server; the bodies are ``tests/streams.Feed``, fed by the test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from conftest import KEY_A, KEY_B, FakeClock, snapshot
from streams import Feed, pattern, read_all, sha, streamed

from coalesce_client import RedisStorage
from coalesce_client.core.writer import Writer
from coalesce_client.spec.snapshot import TruncatedBodyError
from coalesce_client.storage import DiskStorage, MemoryStorage, TieredStorage
from coalesce_client.storage.base import StoresStreams, StreamTooLargeError
from coalesce_client.storage.disk.bodies import BLOCK
from coalesce_client.storage.disk.files import ORPHAN_GRACE

CHILD = Path(__file__).with_name("stream_child.py")
CHILD_TIMEOUT = 60.0
MIB = 1024 * 1024


@pytest.fixture
async def disk(tmp_path: Path) -> AsyncIterator[DiskStorage]:
    storage = DiskStorage(tmp_path / "cache")
    yield storage
    await storage.close()


def value_files(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.val"))


async def run_child(*args: str) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT)
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


def flip(file: Path, offset: int) -> None:
    """Damage one byte of ``file`` at ``offset``."""
    with open(file, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


async def read_until_error(reader: Any) -> tuple[bytes, Exception | None]:
    """What ``reader`` hands out until it ends or raises, and what it raised."""
    read = b""
    try:
        while chunk := await reader.read(65536):
            read += chunk
    except Exception as exc:
        return read, exc
    return read, None


# -- stored as it streams, read back --------------------------------------------------------------


async def test_a_streamed_body_written_by_one_process_is_read_whole_by_another(
    tmp_path: Path,
) -> None:
    directory = str(tmp_path / "cache")
    size = 6 * MIB + 12345  # several blocks and a short last one
    written = await run_child("write", directory, KEY_A, str(size), "7")
    read = await run_child("read", directory, KEY_A)
    assert read["sha"] == written["sha"] == sha(pattern(size, 7))
    assert read["length"] == size and read["bytes_read"] == size  # each block read once


async def test_the_body_is_written_as_it_arrives_and_the_row_committed_only_at_its_end(
    disk: DiskStorage,
) -> None:
    feed = Feed()
    writing = asyncio.ensure_future(disk.set(KEY_A, streamed(feed), 60))
    feed.give(pattern(3 * BLOCK))
    await feed.waiting.wait()  # every byte given is in the file now
    [file] = value_files(disk.directory)
    assert file.stat().st_size == 3 * BLOCK  # on disk, not held
    assert await disk.get(KEY_A) is None  # no row before the body is complete
    feed.give(b"tail")
    feed.end()
    await writing
    got = await disk.get(KEY_A)
    assert got is not None and got.stream is not None and got.body == b""
    assert got.stream.length == 3 * BLOCK + 4
    assert await read_all(got) == pattern(3 * BLOCK) + b"tail"
    assert feed.closed == feed.readers == 1  # the storage closed the reader it opened
    assert value_files(disk.directory) == [file]


async def test_a_small_entry_is_stored_and_read_as_before(disk: DiskStorage) -> None:
    await disk.set(KEY_A, snapshot(b"small"), 60)
    got = await disk.get(KEY_A)
    assert got is not None and got.stream is None and got.body == b"small"
    assert disk.get_nowait(KEY_A) == got


async def test_a_range_reads_only_the_blocks_it_needs(disk: DiskStorage) -> None:
    body = pattern(40 * BLOCK + 777)
    await disk.set(KEY_A, streamed(Feed.whole(body)), 60)
    got = await disk.get(KEY_A)
    assert got is not None and got.stream is not None
    assert await read_all(got, len(body) - 1024) == body[-1024:]
    assert disk.body_bytes_read <= 2 * BLOCK  # the last 1 KiB: at most two blocks
    before = disk.body_bytes_read
    start, end = 5 * BLOCK - 10, 7 * BLOCK + 10  # across four blocks
    assert await read_all(got, start, end, n=1000) == body[start:end]
    assert disk.body_bytes_read - before == 4 * BLOCK


async def test_100_concurrent_readers_of_one_entry_each_read_it_whole(
    disk: DiskStorage,
) -> None:
    body = pattern(4 * MIB + 5)

    await disk.set(KEY_A, streamed(Feed.whole(body)), 60)

    async def one() -> str:
        got = await disk.get(KEY_A)
        assert got is not None
        return sha(await read_all(got))

    assert set(await asyncio.gather(*(one() for _ in range(100)))) == {sha(body)}


async def test_an_entry_evicted_after_a_hit_is_still_read_whole_by_that_hit(
    disk: DiskStorage,
) -> None:
    body = pattern(2 * MIB)
    await disk.set(KEY_A, streamed(Feed.whole(body)), 60)
    got = await disk.get(KEY_A)
    assert got is not None
    await disk.delete(KEY_A)  # its file is unlinked: the hit opened it already
    assert value_files(disk.directory) == []
    assert await read_all(got) == body


async def test_entries_lists_a_streamed_entry_with_its_size(disk: DiskStorage) -> None:
    await disk.set(KEY_A, streamed(Feed.whole(pattern(MIB))), 60)
    [(key, listed)] = [item async for item in disk.entries()]
    assert key == KEY_A and listed.stream is not None and listed.stream.length == MIB
    assert listed.size >= MIB
    assert await read_all(listed) == pattern(MIB)  # opened by its first reader


async def test_the_cache_list_command_shows_a_streamed_entry_with_its_size(
    tmp_path: Path,
) -> None:
    storage = DiskStorage(tmp_path / "cache")
    await storage.set(KEY_A, streamed(Feed.whole(pattern(MIB + 3))), 600)
    await storage.close()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "coalesce_client",
        "cache",
        "list",
        "--cache-dir",
        str(tmp_path / "cache"),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), CHILD_TIMEOUT)
    [line] = out.decode().splitlines()
    assert f"200  {MIB + 3:>9}" in line and "http://example.com/big" in line


# -- what leaves nothing behind -------------------------------------------------------------------


async def test_a_body_that_ends_short_leaves_nothing_and_the_older_entry_stays(
    disk: DiskStorage,
) -> None:
    await disk.set(KEY_A, snapshot(b"older"), 60)
    feed = Feed()
    writing = asyncio.ensure_future(disk.set(KEY_A, streamed(feed), 60))
    feed.give(pattern(3 * BLOCK))
    await feed.waiting.wait()
    assert len(value_files(disk.directory)) == 1
    feed.fail()
    with pytest.raises(TruncatedBodyError):
        await writing
    assert value_files(disk.directory) == []
    got = await disk.get(KEY_A)
    assert got is not None and got.body == b"older"  # the write never happened
    assert feed.closed == 1


async def test_a_body_past_stream_limit_leaves_nothing_not_even_the_older_entry(
    tmp_path: Path,
) -> None:
    storage = DiskStorage(tmp_path / "cache", stream_limit=2 * MIB)
    try:
        await storage.set(KEY_A, snapshot(b"older"), 60)
        feed = Feed()
        writing = asyncio.ensure_future(storage.set(KEY_A, streamed(feed), 60))
        feed.give(pattern(2 * MIB))
        await feed.waiting.wait()
        feed.give(b"x")  # one byte past the limit
        with pytest.raises(StreamTooLargeError):
            await asyncio.wait_for(writing, CHILD_TIMEOUT)
        assert value_files(storage.directory) == []
        assert await storage.get(KEY_A) is None
        # A body announced larger than the limit is not read at all.
        announced = Feed.whole(pattern(2 * MIB + 1), announced=True)
        with pytest.raises(StreamTooLargeError):
            await storage.set(KEY_B, streamed(announced), 60)
        assert announced.readers == 0 and value_files(storage.directory) == []
        # Exactly the limit is kept.
        await storage.set(KEY_B, streamed(Feed.whole(pattern(2 * MIB))), 60)
        assert await storage.get(KEY_B) is not None
    finally:
        await storage.close()


async def test_a_cancelled_write_leaves_nothing(disk: DiskStorage) -> None:
    feed = Feed()
    writing = asyncio.ensure_future(disk.set(KEY_A, streamed(feed), 60))
    feed.give(pattern(2 * BLOCK))
    await feed.waiting.wait()
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    assert value_files(disk.directory) == [] and feed.closed == 1
    assert await disk.get(KEY_A) is None


async def test_a_writer_killed_mid_body_leaves_an_orphan_that_prune_removes(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "cache"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHILD),
        "hang",
        str(directory),
        KEY_A,
        str(3 * MIB),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), CHILD_TIMEOUT)
    assert json.loads(line) == {"writing": True}
    proc.send_signal(signal.SIGKILL)
    await proc.wait()
    [orphan] = value_files(directory)
    assert orphan.stat().st_size == 3 * MIB
    storage = DiskStorage(directory)
    try:
        assert await storage.get(KEY_A) is None  # no row was committed
        assert await storage.volume() >= 3 * MIB
        assert await storage.prune() == 0  # young: maybe a write in progress elsewhere
        old = time.time() - ORPHAN_GRACE - 5
        os.utime(orphan, (old, old))
        assert await storage.prune() == 1
        assert value_files(directory) == []
    finally:
        await storage.close()


# -- damage ---------------------------------------------------------------------------------------


async def test_a_damaged_block_is_an_error_for_its_reader_and_deletes_the_entry(
    disk: DiskStorage, caplog: pytest.LogCaptureFixture
) -> None:
    body = pattern(8 * BLOCK)
    await disk.set(KEY_A, streamed(Feed.whole(body)), 60)
    [file] = value_files(disk.directory)
    flip(file, 5 * BLOCK + 100)  # one byte of block 5
    got = await disk.get(KEY_A)
    assert got is not None and got.stream is not None
    # A range before the damage is served (its blocks pass their checks).
    assert await read_all(got, 0, 5 * BLOCK) == body[: 5 * BLOCK]
    with caplog.at_level(logging.WARNING, logger="coalesce_client"):
        read, error = await read_until_error(got.stream.reader())
    assert read == body[: 5 * BLOCK]  # never a byte of the damaged block
    assert isinstance(error, TruncatedBodyError) and "unreadable" in caplog.text
    assert await disk.get(KEY_A) is None  # deleted before the reader heard of it
    assert value_files(disk.directory) == []


async def test_a_body_file_shorter_than_its_row_is_a_miss_and_is_deleted(
    disk: DiskStorage,
) -> None:
    await disk.set(KEY_A, streamed(Feed.whole(pattern(3 * BLOCK))), 60)
    [file] = value_files(disk.directory)
    os.truncate(file, 2 * BLOCK)
    assert await disk.get(KEY_A) is None
    assert value_files(disk.directory) == []


async def test_a_read_only_storage_refuses_a_stream_without_reading_it(tmp_path: Path) -> None:
    await DiskStorage(tmp_path / "cache").close()  # a cache there
    storage = DiskStorage(tmp_path / "cache", read_only=True)
    try:
        feed = Feed.whole(b"x")
        with pytest.raises(PermissionError):
            await storage.set(KEY_A, streamed(feed), 60)
        assert feed.readers == 0
    finally:
        await storage.close()


@pytest.mark.parametrize("value", [-1, 1.5, True, "1"])
def test_stream_limit_is_checked_like_every_option(tmp_path: Path, value: Any) -> None:
    with pytest.raises(ValueError, match="stream_limit"):
        DiskStorage(tmp_path / "cache", stream_limit=value)


# -- TieredStorage, MemoryStorage ------------------------------------------------------------------


async def test_tiered_storage_takes_streams_when_its_back_does_and_keeps_them_out_of_its_front(
    tmp_path: Path,
) -> None:
    disk = DiskStorage(tmp_path / "cache", stream_limit=5 * MIB)
    front = MemoryStorage()
    store = TieredStorage(front, disk)
    try:
        assert isinstance(store, StoresStreams) and store.stream_limit == 5 * MIB
        assert not isinstance(front, StoresStreams)
        assert TieredStorage(MemoryStorage(), MemoryStorage()).stream_limit == 0
        await store.set(KEY_A, snapshot(b"older"), 60)
        assert len(front) == 1
        await store.set(KEY_A, streamed(Feed.whole(pattern(MIB))), 60)
        assert len(front) == 0  # the older copy dropped, the stream never entered
        got = await store.get(KEY_A)
        assert got is not None and await read_all(got) == pattern(MIB)
        assert len(front) == 0  # a back hit on a stream does not refill the front
    finally:
        await store.close()


# -- the Writer -----------------------------------------------------------------------------------


async def test_the_writer_stores_a_stream_and_its_reads_find_it_pending_meanwhile(
    disk: DiskStorage, clock: FakeClock
) -> None:
    writer = Writer(disk, clock, 8)
    assert writer.stream_limit == disk.stream_limit
    feed = Feed()
    snap = streamed(feed)
    await writer.write(KEY_A, None, snap, 60, url_key=KEY_B)
    feed.give(pattern(MIB))
    await feed.waiting.wait()
    assert await writer.read(KEY_A) is snap  # pending: the flight's body, still arriving
    feed.end()
    await writer.drain()
    assert writer.stored == 1
    got = await writer.read(KEY_A)
    assert got is not snap and got is not None and await read_all(got) == pattern(MIB)
    index = await disk.get(KEY_B)
    assert index is not None and KEY_A in index.keys  # type: ignore[union-attr]


async def test_a_truncated_streamed_write_is_not_a_storage_failure(
    disk: DiskStorage, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    writer = Writer(disk, clock, 8)
    feed = Feed()
    with caplog.at_level(logging.DEBUG, logger="coalesce_client"):
        await writer.write(KEY_A, None, streamed(feed), 60)
        feed.give(b"part")
        feed.fail()
        await writer.drain()
    assert writer.failure is None and writer.stored == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert "not stored" in caplog.text
    assert await writer.read(KEY_A) is None and value_files(disk.directory) == []


async def test_a_storage_that_takes_no_streams_is_never_handed_one(clock: FakeClock) -> None:
    memory = MemoryStorage()
    writer = Writer(memory, clock, 8)
    assert writer.stream_limit == 0
    feed = Feed.whole(b"body")
    await writer.write(KEY_A, None, streamed(feed), 60)
    await writer.drain()
    assert len(memory) == 0 and feed.readers == 0 and await writer.read(KEY_A) is None


async def test_an_invalidation_cancels_a_streamed_write_of_its_url_and_waits_for_no_other(
    disk: DiskStorage, clock: FakeClock
) -> None:
    writer = Writer(disk, clock, 8)
    mine, other = Feed(), Feed()
    url_key, other_url_key = "c" * 64, "d" * 64
    await writer.write(KEY_A, None, streamed(mine), 60, url_key=url_key)
    await writer.write(
        KEY_B, None, streamed(other, "http://example.com/other"), 60, url_key=other_url_key
    )
    mine.give(pattern(BLOCK))
    other.give(pattern(BLOCK))
    await mine.waiting.wait()
    await other.waiting.wait()
    await asyncio.wait_for(writer.delete_url(url_key), 5)  # the other body is still arriving
    assert await writer.read(KEY_A) is None and mine.closed == 1
    other.end()
    await writer.drain()
    assert await disk.get(KEY_A) is None and await disk.get(KEY_B) is not None


# -- RedisStorage ---------------------------------------------------------------------------------


@pytest.fixture
async def redis_store(redis_server: Any, namespace: str) -> AsyncIterator[Any]:
    storage = RedisStorage(redis_server.url, namespace=namespace, stream_limit=2 * MIB)
    yield storage
    await storage.close()


async def test_redis_stores_a_stream_up_to_its_limit_as_one_value(redis_store: Any) -> None:
    assert isinstance(redis_store, StoresStreams) and redis_store.stream_limit == 2 * MIB
    body = pattern(2 * MIB)
    feed = Feed.whole(body)
    await redis_store.set(KEY_A, streamed(feed), 60)
    got = await redis_store.get(KEY_A)
    assert got is not None and got.stream is None and got.body == body  # whole, in memory
    assert feed.closed == 1


async def test_redis_past_its_limit_or_cut_short_keeps_nothing_new(redis_store: Any) -> None:
    await redis_store.set(KEY_A, snapshot(b"older"), 60)
    feed = Feed()
    writing = asyncio.ensure_future(redis_store.set(KEY_A, streamed(feed), 60))
    feed.give(pattern(2 * MIB + 1))
    with pytest.raises(StreamTooLargeError):
        await asyncio.wait_for(writing, CHILD_TIMEOUT)
    assert await redis_store.get(KEY_A) is None  # not the older value either (contract)
    await redis_store.set(KEY_B, snapshot(b"older"), 60)
    short = Feed()
    short.give(b"part")
    short.fail()
    with pytest.raises(TruncatedBodyError):
        await redis_store.set(KEY_B, streamed(short), 60)
    got = await redis_store.get(KEY_B)
    assert got is not None and got.body == b"older"


@pytest.mark.parametrize("value", [-1, 512 * MIB, 2.0])
def test_redis_stream_limit_is_checked(value: Any) -> None:
    with pytest.raises(ValueError, match="stream_limit"):
        RedisStorage("redis://127.0.0.1:1/0", stream_limit=value)
