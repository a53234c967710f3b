"""Spool: one producer, many readers at their own pace, memory then a temporary file (issue 24)."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import weakref

import pytest

from coalesce_client.core.spool import CHUNK, Spool
from coalesce_client.spec.snapshot import StreamedBody, TruncatedBodyError


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1


def test_a_spool_is_a_streamed_body() -> None:
    body: StreamedBody = Spool(bound=8)
    assert body.length is None


async def test_bytes_within_the_bound_stay_in_memory() -> None:
    spool = Spool(bound=10)
    spool.append(b"0123456789")
    spool.finish()
    assert not spool.in_file
    assert await spool.reader().read() == b"0123456789"
    assert await spool.complete() == 10
    assert spool.length == 10


async def test_the_first_byte_past_the_bound_moves_the_whole_body_to_the_file() -> None:
    spool = Spool(bound=10)
    spool.append(b"0123456789")
    early = spool.reader()
    assert await early.read(4) == b"0123"
    spool.append(b"X")
    assert spool.in_file
    assert spool._memory is None  # memory holds nothing more of it
    spool.finish()
    assert await early.read() == b"456789X"
    assert await spool.reader(3, 8).read() == b"34567"


async def test_a_body_announced_over_the_bound_goes_to_the_file_from_its_first_byte() -> None:
    spool = Spool(bound=10, length=11)
    spool.append(b"0")
    assert spool.in_file
    assert await spool.reader().read(5) == b"0"


async def test_each_reader_reads_from_its_own_position_as_bytes_arrive() -> None:
    spool = Spool(bound=4)
    a, b = spool.reader(), spool.reader()
    pending = asyncio.ensure_future(a.read(100))
    await asyncio.sleep(0)
    assert not pending.done()  # waits for bytes not yet arrived
    spool.append(b"abc")
    assert await pending == b"abc"
    spool.append(b"defg")
    assert await b.read(2) == b"ab"
    assert await a.read(100) == b"defg"
    assert await b.read(100) == b"cdefg"
    spool.finish()
    assert await a.read(100) == b""
    assert await b.read() == b""


async def test_a_reader_of_a_range_stops_at_its_end() -> None:
    spool = Spool(bound=100, length=10)
    reader = spool.reader(2, 5)
    spool.append(b"0123456")
    assert await reader.read() == b"234"  # its range has arrived: no wait for the rest
    assert await reader.read(1) == b""


async def test_file_reads_take_at_most_a_chunk_and_read_all_gets_everything() -> None:
    data = os.urandom(3 * CHUNK + 5)
    spool = Spool(bound=1024)
    for i in range(0, len(data), 10_000):
        spool.append(data[i : i + 10_000])
    spool.finish()
    reader = spool.reader()
    assert len(await reader.read(10 * CHUNK)) == CHUNK
    assert await spool.reader().read() == data


async def test_a_slow_reader_does_not_hold_up_the_producer_or_the_others() -> None:
    data = os.urandom(1 << 20)
    spool = Spool(bound=64 * 1024)
    slow = spool.reader()  # never reads until the end
    fast = spool.reader()
    got = bytearray()
    for i in range(0, len(data), 4096):
        spool.append(data[i : i + 4096])  # append never waits
        got += await fast.read(4096)
    spool.finish()
    assert bytes(got) == data
    assert await slow.read() == data


async def test_a_failure_reaches_every_reader_whatever_it_had_read() -> None:
    spool = Spool(bound=4)
    readers = [spool.reader() for _ in range(3)]
    waiting = asyncio.ensure_future(readers[0].read(10))
    spool.append(b"abcdefgh")
    assert await waiting == b"abcdefgh"
    waiting = asyncio.ensure_future(readers[0].read(10))
    await asyncio.sleep(0)
    spool.fail(ConnectionResetError("reset"))
    with pytest.raises(TruncatedBodyError) as info:
        await waiting
    assert isinstance(info.value.__cause__, TruncatedBodyError)
    for reader in readers[1:]:
        with pytest.raises(TruncatedBodyError):
            await reader.read(1)  # the bytes that had arrived are not served either
    with pytest.raises(TruncatedBodyError):
        await spool.reader().read()
    with pytest.raises(TruncatedBodyError):
        await spool.complete()
    assert not spool.in_file  # the file is closed at the failure


async def test_finishing_short_of_the_announced_length_is_a_truncation() -> None:
    spool = Spool(bound=4, length=10)
    spool.append(b"abcde")
    spool.finish()
    assert spool.failed
    with pytest.raises(TruncatedBodyError, match="5 of 10"):
        await spool.reader().read()


async def test_a_cancelled_reader_touches_nobody_else() -> None:
    spool = Spool(bound=4)
    a, b = spool.reader(), spool.reader()
    wait_a = asyncio.ensure_future(a.read(10))
    wait_b = asyncio.ensure_future(b.read(10))
    await asyncio.sleep(0)
    wait_a.cancel()
    await asyncio.sleep(0)
    assert len(spool._waiters) == 1  # its waiter is gone at once
    spool.append(b"xy")
    assert await wait_b == b"xy"
    assert wait_a.cancelled()


async def test_a_closed_reader_lets_go_of_the_spool_and_never_reads_short() -> None:
    spool = Spool(bound=4)
    reader = spool.reader()
    reader.close()
    reader.close()  # idempotent
    assert reader.closed
    with pytest.raises(TruncatedBodyError):
        await reader.read()
    ref = weakref.ref(spool)
    del spool
    assert ref() is None  # the closed reader held nothing


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
async def test_the_file_is_closed_when_the_spool_is_gone_or_failed() -> None:
    before = _open_fds()
    spool = Spool(bound=4)
    spool.append(b"0123456789")
    reader = spool.reader()
    assert _open_fds() == before + 1
    spool.finish()
    del spool
    gc.collect()
    assert _open_fds() == before + 1  # an open reader keeps the spool, and its file
    assert await reader.read(3) == b"012"
    reader.close()
    del reader
    assert _open_fds() == before  # nobody can read it any more: the file is closed at once

    failed = Spool(bound=4)
    failed.append(b"0123456789")
    kept = failed.reader()
    failed.fail(None)
    assert _open_fds() == before  # a failed body is closed at once, readers or not
    kept.close()


async def test_a_producer_holding_a_weak_reference_learns_nobody_wants_the_body() -> None:
    spool = Spool(bound=4)
    gone = asyncio.Event()
    weakref.finalize(spool, gone.set)
    ref = weakref.ref(spool)
    reader = spool.reader()
    del spool
    assert ref() is not None and not gone.is_set()  # a reader holds it
    reader.close()
    assert ref() is None and gone.is_set()


async def test_many_readers_of_a_large_body_get_it_whole() -> None:
    data = os.urandom(2 << 20)
    spool = Spool(bound=64 * 1024)
    digest = hashlib.sha256(data).hexdigest()

    async def produce() -> None:
        for i in range(0, len(data), 65536):
            spool.append(data[i : i + 65536])
            await asyncio.sleep(0)
        spool.finish()

    async def consume(n: int) -> str:
        reader = spool.reader()
        h = hashlib.sha256()
        while chunk := await reader.read(n):
            h.update(chunk)
        return h.hexdigest()

    results = await asyncio.gather(produce(), *(consume(n) for n in (1000, 65536, 1 << 20)))
    assert results[1:] == [digest] * 3


async def test_a_full_disk_fails_the_body_rather_than_the_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    spool = Spool(bound=4)

    def full(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("coalesce_client.core.spool._write_all", full)
    spool.append(b"0123456789")
    assert spool.failed
    with pytest.raises(TruncatedBodyError):
        await spool.reader().read()
