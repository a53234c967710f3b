"""The body of a streamed entry (issue 24): written to its file as it arrives, read back by blocks.

Rules of this module (value files and checksums only; no SQLite, no diskcache import):

* A streamed response is kept in two parts: its row (``rows.py``, mode ``MODE_STREAMED``), whose
  value inside SQLite is the sealed key and expiry, the block table and the response's record
  with an empty body (``sealed.py``), and its body, raw, in a value file the row names. The file
  has the name diskcache gives value files (``files.py``), so eviction, deletion, ``volume`` and
  ``prune``'s removal of orphans treat it as any other value file.
* The body is checked by blocks of ``BLOCK`` bytes (``Blocks``): the CRC-32 of each block is
  computed while the body is written, and kept in the row. A reader reads whole blocks, only the
  ones its range needs, and checks each one before handing out any byte of it. A block that fails
  its check, or a file shorter than its row says, is a ``TruncatedBodyError`` for that reader and
  the entry is deleted (``BodyIO.damaged``): a damaged body is never served short or wrong.
* Why blocks of 256 KiB: a range read (the last KiB of a 200 MiB body) reads one or two of them,
  and a reader holds at most one in memory, so 100 readers of one entry hold 25 MiB at most.
* Every file operation (open, write, read, remove) runs in the storage's file threads
  (``threads.py``: ``DiskIO.run_file``), never on the event loop.
* A stored body's file is opened once, in the worker thread when ``get`` finds its row (later
  listings open it on their first read), and every reader of that snapshot reads it with
  ``os.pread``: an entry evicted or replaced after ``get`` found it is still read whole from the
  file it had (POSIX keeps an unlinked file open). It is closed when the snapshot is dropped.
* A write that fails, is cancelled, ends short (``TruncatedBodyError``) or grows past its limit
  (``StreamTooLargeError``) removes its file; a process killed meanwhile leaves an orphan that
  ``prune`` removes once it is older than ``files.ORPHAN_GRACE`` (its age counts from its last
  write, so a slow body being written is never taken for one).
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
import weakref
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NamedTuple

from ...spec.snapshot import StreamedBody, TruncatedBodyError
from ..base import StreamTooLargeError
from .files import new_value_name

__all__ = ["BLOCK", "Blocks", "BodyIO", "Damaged", "FileBody", "Written", "write_stream"]

BLOCK = 256 * 1024  # bytes checked by one CRC-32 (module rules)
_TABLE = struct.Struct(">QII")  # body length, block size, block count; then the CRCs, then a CRC


class Damaged(Exception):
    """A block of a stored body failed its check, or its file is shorter than its row says."""


class Blocks(NamedTuple):
    """The block table of a stored body: its length, block size and each block's CRC-32."""

    length: int
    size: int
    sums: tuple[int, ...]

    def encode(self) -> bytes:
        """The table as the row keeps it, with a CRC-32 of its own."""
        n = len(self.sums)
        data = _TABLE.pack(self.length, self.size, n) + struct.pack(f">{n}I", *self.sums)
        return data + zlib.crc32(data).to_bytes(4, "big")

    @classmethod
    def decode(cls, data: bytes | memoryview, pos: int) -> tuple[Blocks, int]:
        """The table at ``pos`` in ``data``, and where it ends; ``Damaged`` if it is not one."""
        try:
            length, size, n = _TABLE.unpack_from(data, pos)
            end = pos + _TABLE.size + 4 * n
            sums = struct.unpack_from(f">{n}I", data, pos + _TABLE.size)
            check = int.from_bytes(data[end : end + 4], "big")
        except struct.error:
            raise Damaged("its block table is truncated") from None
        if zlib.crc32(data[pos:end]) != check or size < 1 or n != -(-length // size):
            raise Damaged("its block table is damaged")
        return cls(length, size, sums), end + 4


class _Summing:
    """The CRC-32 of each block of a body, computed as its bytes are written."""

    __slots__ = ("crc", "fill", "length", "sums")

    def __init__(self) -> None:
        self.sums: list[int] = []
        self.crc = self.fill = self.length = 0

    def add(self, data: bytes) -> None:
        view = memoryview(data)
        self.length += len(view)
        while view:
            take = min(len(view), BLOCK - self.fill)
            self.crc = zlib.crc32(view[:take], self.crc)
            self.fill += take
            view = view[take:]
            if self.fill == BLOCK:
                self.sums.append(self.crc)
                self.crc = self.fill = 0

    def blocks(self) -> Blocks:
        tail = [self.crc] if self.fill else []
        return Blocks(self.length, BLOCK, (*self.sums, *tail))


class BodyIO:
    """What a stored body needs of its storage: its file threads, and what to do with damage."""

    __slots__ = ("bytes_read", "damaged", "directory", "run")

    def __init__(
        self,
        directory: Path,
        run: Callable[..., Awaitable[Any]],
        damaged: Callable[[str, str, str], Awaitable[None]],
    ) -> None:
        self.directory = directory
        self.run = run  # run(fn, *args): fn(*args) in a file thread (threads.py)
        self.damaged = damaged  # await damaged(key, file name, why): delete the entry, log it
        self.bytes_read = 0  # bytes of stored bodies read from their files (tests, benchmarks)


class Written(NamedTuple):
    """A body written to its value file, not yet named by any row."""

    name: str  # relative to the directory, as a row names it
    blocks: Blocks


class _Out:
    """A value file being written (in file threads only, one operation at a time: a write that
    was cancelled may still be running in its thread when ``discard`` starts in another)."""

    __slots__ = ("file", "lock", "name", "path", "summing")

    def __init__(self, directory: Path) -> None:
        for attempt in range(10):  # another process may remove an emptied folder meanwhile
            self.name = new_value_name()
            self.path = directory / self.name
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.file = open(self.path, "xb")  # noqa: SIM115 - closed by finish or discard
                break
            except FileNotFoundError:
                if attempt == 9:
                    raise
        self.summing = _Summing()
        self.lock = threading.Lock()

    def write(self, parts: list[bytes]) -> None:
        with self.lock:
            for part in parts:
                self.file.write(part)
                self.summing.add(part)

    def finish(self) -> Blocks:
        self.file.close()
        return self.summing.blocks()

    def discard(self) -> None:
        with self.lock:
            self.file.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        with contextlib.suppress(OSError):  # as diskcache does: emptied folders go
            self.path.parent.rmdir()
            self.path.parent.parent.rmdir()


async def write_stream(io: BodyIO, stream: StreamedBody, limit: int) -> Written:
    """Read ``stream`` to its end into a new value file, at most ``limit`` bytes of it, a block at
    a time; the file is removed if anything goes wrong (module rules)."""
    if stream.length is not None and stream.length > limit:
        raise StreamTooLargeError(f"a body of {stream.length} bytes, over {limit}")
    reader = stream.reader()
    try:
        out: _Out = await io.run(_Out, io.directory)
        try:
            parts: list[bytes] = []
            held = 0
            while chunk := await reader.read(BLOCK):
                parts.append(chunk)
                held += len(chunk)
                if out.summing.length + held > limit:
                    raise StreamTooLargeError(f"a body of more than {limit} bytes")
                if held >= BLOCK:
                    await io.run(out.write, parts)
                    parts, held = [], 0
            await io.run(out.write, parts)
            blocks: Blocks = await io.run(out.finish)
        except BaseException:
            with contextlib.suppress(Exception):  # the storage was closed meanwhile: an orphan
                await io.run(out.discard)
            raise
    finally:
        reader.close()
    return Written(out.name, blocks)


class FileBody:
    """A stored body read from its value file (``StreamedBody``): whole blocks, each checked."""

    __slots__ = ("__weakref__", "_damaged", "_fd", "blocks", "io", "key", "name")

    def __init__(self, key: str, name: str, blocks: Blocks, io: BodyIO) -> None:
        self.key = key  # the entry it belongs to: deleted if it is damaged
        self.name = name  # its file, relative to the directory
        self.blocks = blocks
        self.io = io
        self._fd: int | None = None
        self._damaged = False

    @property
    def length(self) -> int:
        return self.blocks.length

    def reader(self, start: int = 0, end: int | None = None) -> _Reader:
        length = self.blocks.length
        end = length if end is None else min(end, length)
        if not 0 <= start <= end:
            raise ValueError(f"no range {start} to {end} in a body of {length} bytes")
        return _Reader(self, start, end)

    async def complete(self) -> int:
        return self.blocks.length  # stored whole: complete from the start

    def open(self) -> None:
        """Open the file (blocking: a worker or file thread), once; ``Damaged`` when it is
        shorter than the row says, ``OSError`` when it is gone."""
        if self._fd is not None:
            return
        fd = os.open(self.io.directory / self.name, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        if os.fstat(fd).st_size != self.blocks.length:
            os.close(fd)
            raise Damaged("its file is not as long as its row says")
        self._fd = fd
        weakref.finalize(self, os.close, fd)  # closed with the last reference to the snapshot

    def read_block(self, index: int, buffer: bytearray) -> int:
        """Block ``index`` into ``buffer``, checked (blocking: a file thread); its length.
        ``Damaged`` if it fails."""
        self.open()
        assert self._fd is not None
        size = self.blocks.size
        start = index * size
        want = min(size, self.blocks.length - start)
        view = memoryview(buffer)[:want]
        got = _read_into(self._fd, view, start)
        self.io.bytes_read += got
        if got != want:
            raise Damaged(f"its file ends inside block {index}")
        if zlib.crc32(view) != self.blocks.sums[index]:
            raise Damaged(f"block {index} fails its checksum")
        return got

    async def block(self, index: int, buffer: bytearray) -> int:
        """Block ``index`` read into ``buffer`` in a file thread; its length.
        ``TruncatedBodyError`` if it is damaged or cannot be read, and then the entry is
        deleted (module rules)."""
        try:
            got: int = await self.io.run(self.read_block, index, buffer)
        except (Damaged, OSError) as exc:
            if not self._damaged:  # deleted before its reader hears of it
                self._damaged = True
                await self.io.damaged(self.key, self.name, str(exc))
            raise TruncatedBodyError(f"the stored body is damaged: {exc}") from None
        except Exception as exc:  # the storage closed meanwhile: the body cannot be completed
            raise TruncatedBodyError(f"the stored body cannot be read: {exc}") from None
        return got


def _read_into(fd: int, view: memoryview, offset: int) -> int:
    """``os.preadv`` into ``view`` where there is one (Linux, BSD, macOS 11 on Python 3.11+),
    else ``os.pread`` and a copy: the bytes at ``offset``, the file's own position untouched."""
    if _PREADV is not None:
        return _PREADV(fd, [view], offset)
    data = os.pread(fd, len(view), offset)
    view[: len(data)] = data
    return len(data)


_PREADV: Callable[[int, list[memoryview], int], int] | None = getattr(os, "preadv", None)


class _Reader:
    """One reader of a ``FileBody``, from ``start`` to ``end``. Its blocks are read into one
    buffer of its own, allocated once and reused (a reader holds one block, and 100 readers
    of a large body churn no memory); what it hands out is copied from there."""

    __slots__ = ("_body", "_buffer", "_closed", "_end", "_held", "_pos")

    def __init__(self, body: FileBody, start: int, end: int) -> None:
        self._body = body
        self._pos = start
        self._end = end
        self._buffer: bytearray | None = None  # allocated by the first read
        self._held = memoryview(b"")  # the rest of the block read, within the range
        self._closed = False

    async def read(self, n: int = -1) -> bytes:
        if self._closed:
            raise TruncatedBodyError("this reader was closed")
        if n < 0:
            parts = []
            while part := await self.read(BLOCK):
                parts.append(part)
            return b"".join(parts)
        if not self._held:
            if self._pos >= self._end or n == 0:
                return b""
            size = self._body.blocks.size
            if self._buffer is None:
                self._buffer = bytearray(size)
            index = self._pos // size
            try:
                got = await self._body.block(index, self._buffer)
            except BaseException:  # cancelled: its thread may still write into the buffer
                self._buffer = None
                raise
            offset = self._pos - index * size
            self._held = memoryview(self._buffer)[offset : min(got, self._end - index * size)]
        taken = self._held[:n]
        self._held = self._held[len(taken) :]
        self._pos += len(taken)
        return bytes(taken)

    def close(self) -> None:
        self._closed = True
        self._held = memoryview(b"")
        self._buffer = None
