"""DiskStorage: stored responses in a directory, through diskcache, so that they survive restarts.

Rules of this module (the only one that imports diskcache):

* One diskcache row per key. Its value is ``snapshot.encode(...)`` bytes: inside SQLite when smaller
  than 32 KiB, else in a file of its own that the row names. Its ``tag`` is the absolute expiry on
  this storage's clock (wall-clock seconds, so an entry means the same to the next process), which
  decides every read. Its ``expire_time`` (diskcache's own, on ``time.time()``) is that TTL plus
  ``_KEEP_EXPIRED``: for that hour an expired entry can still be listed and pruned by maintenance
  (and, later, served stale or revalidated); after it, diskcache culls it before anything fresh.
  The snapshot itself is stored as given, so a read returns an equal snapshot.
* Nothing read back is unpickled. ``_BytesDisk`` stores bytes and nothing else, and refuses to
  fetch a row in any other mode (such as a pickle written by a plain ``diskcache.Cache``). A row
  that cannot be read, or whose bytes do not decode, is a miss: it is deleted and logged, never
  raised to the caller.
* The event loop never waits long on disk. Writes (set, delete, clear, deleting a bad entry) and
  reads of values kept in files run in one worker thread owned by the storage, and so do reads that
  found the database busy. A read of a value kept inside SQLite runs on the loop, because handing a
  call to a thread costs more (70-250 µs) than the read (about 10 µs): it uses a connection of its
  own whose SQLite busy timeout is ``loop_timeout`` (5 ms), after which the read moves to the thread
  and later reads go there for ``_LOOP_BACKOFF`` seconds. Readers of a WAL database are not blocked
  by writers at all, so the timeout matters only while another process recovers the database.
  (One case no busy timeout bounds: SQLite retries inside a read, for up to about 10 s, while
  another process holds every WAL read lock; only a broken or hostile process does that.)
* The loop's connection belongs to the thread that built the storage; reads from any other thread
  go to the worker thread.
* A write that fails (disk full, locked for longer than ``lock_timeout``) raises; the coalescer logs
  it and goes on without storing, and the next write tries again. A value file left half-written by
  a failed write is removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import diskcache  # type: ignore[import-untyped]
from diskcache.core import MODE_BINARY, MODE_RAW, UNKNOWN  # type: ignore[import-untyped]

from ..snapshot import Snapshot, decode, encode
from .base import Clock, StorageClosedError, wall_clock

__all__ = ["DiskStorage"]

log = logging.getLogger("coalesce_client")

T = TypeVar("T")

_KEEP_EXPIRED = 3600.0  # seconds diskcache keeps an entry past its TTL (module rules)
_LOOP_BACKOFF = 0.5  # seconds the loop leaves reads to the thread after finding the database busy
_FILE_WRITE_TRIES = 10  # as diskcache: another process may remove an empty subdirectory meanwhile


class _Unreadable(Exception):
    """A stored row this storage will not or cannot turn into a snapshot."""


class _UseThread:
    """What a loop-side read returns when the worker thread must read: a value kept in a file, a
    busy database, or a call from a thread that does not own the loop's connection."""

    __slots__ = ()


_USE_THREAD = _UseThread()
_FOREIGN_KEY = object()  # what iterating the keys yields for a key stored by pickle


class _BytesDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache has no type hints
    """A diskcache ``Disk`` that keeps bytes only and never unpickles anything.

    Keys are our hex digests (``str``), stored as they are. A value is stored inside SQLite below
    ``min_file_size``, else in a file; a file left half-written by a failed write is removed.
    """

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError(f"DiskStorage keys are strings, got {type(key).__name__}")
        return key, True

    def get(self, key: Any, raw: bool) -> Any:
        # A key another program stored by pickle is not ours: it comes back as it is, unread.
        return key if raw else _FOREIGN_KEY

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, Any, Any]:
        if type(value) is not bytes or read:
            raise TypeError(f"DiskStorage stores bytes only, got {type(value).__name__}")
        if len(value) < self.min_file_size:
            return 0, MODE_RAW, None, sqlite3.Binary(value)
        filename, full_path = self.filename(key, value)
        for attempt in range(1, _FILE_WRITE_TRIES + 1):
            try:
                os.makedirs(os.path.dirname(full_path), exist_ok=True)
                out = open(full_path, "xb")  # noqa: SIM115 - closed below, removed if incomplete
            except FileNotFoundError:
                # Another process removed the emptied subdirectory in between (Disk.remove).
                if attempt == _FILE_WRITE_TRIES:
                    raise
                continue
            try:
                with out:
                    out.write(value)
            except BaseException:
                self.remove(filename)
                raise
            return len(value), MODE_BINARY, filename, None
        raise AssertionError("unreachable")  # pragma: no cover

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
        if mode == MODE_RAW:
            if type(value) is not bytes:
                raise _Unreadable(f"a stored {type(value).__name__}, not bytes")
            return value
        if mode == MODE_BINARY:
            if read:
                return _USE_THREAD  # the caller reads it in the worker thread
            return super().fetch(mode, filename, value, False)
        raise _Unreadable(f"a value stored in diskcache mode {mode} (pickle or text)")


def _entry(value: bytes, expiry: Any) -> tuple[Snapshot, float]:
    if type(expiry) not in (float, int):
        raise _Unreadable("no expiry stored with it")
    try:
        snap = decode(value)
    except Exception as exc:  # SnapshotError above all, but nothing read back may escape
        raise _Unreadable(f"does not decode: {exc}") from None
    return snap, float(expiry)


class DiskStorage:
    """Responses kept in a directory (diskcache), shared by processes, surviving restarts.

    >>> import asyncio, tempfile
    >>> from coalesce_client.snapshot import Snapshot
    >>> async def main() -> None:
    ...     store = DiskStorage(tempfile.mkdtemp())
    ...     await store.set("k", Snapshot(200, "OK", (), "http://x/", "GET", b"body"), ttl=60)
    ...     print((await store.get("k")).body)
    ...     await store.close()
    >>> asyncio.run(main())
    b'body'

    ``max_bytes`` bounds the directory (diskcache ``size_limit``): past it, each write evicts the
    oldest stored entries. ``lock_timeout`` is how long a write waits for another process's lock
    before it fails; ``loop_timeout`` how long a read on the event loop waits before it moves to the
    worker thread. Construction opens the database and may block briefly: do it at start-up.
    """

    __slots__ = (
        "_clock",
        "_closed",
        "_executor",
        "_logged_unreadable",
        "_loop_reads",
        "_loop_reads_after",
        "_loop_thread",
        "_reader",
        "_writer",
        "directory",
        "lock_timeout",
        "loop_timeout",
        "max_bytes",
    )

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int = 1024 * 1024 * 1024,
        *,
        clock: Clock = wall_clock,
        lock_timeout: float = 5.0,
        loop_timeout: float = 0.005,
    ) -> None:
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 1:
            raise ValueError(f"max_bytes must be a positive integer, got {max_bytes!r}")
        for name, value in (("lock_timeout", lock_timeout), ("loop_timeout", loop_timeout)):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
        if not callable(clock):
            raise ValueError(f"clock must be callable, got {clock!r}")
        try:
            path = Path(os.fspath(directory)).expanduser()
        except TypeError:
            raise ValueError(f"directory must be a path, got {directory!r}") from None
        self.directory = path  # where the cache lives: cache.db and the files of large values
        self.max_bytes = max_bytes  # diskcache size_limit: entries are evicted oldest first past it
        self.lock_timeout = float(lock_timeout)  # a write waits this long for another's lock
        self.loop_timeout = float(loop_timeout)  # a read on the loop waits this long, then moves
        self._clock = clock
        self._writer, self._reader = _open(path, max_bytes, self.lock_timeout, self.loop_timeout)
        # The reader's connection was opened by this thread, and SQLite's Python connections are
        # bound to the thread that opened them: only this thread reads on its loop (module rules).
        self._loop_thread = threading.get_ident()
        self._loop_reads = True  # False for _LOOP_BACKOFF seconds after a busy database
        self._loop_reads_after = 0.0
        # One worker: SQLite takes one writer at a time anyway, and FIFO order means a read that
        # was queued before a delete finishes before it.
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="coalesce_client-disk")
        self._logged_unreadable = False
        self._closed = False

    # -- the Storage protocol ---------------------------------------------------------------------

    async def get(self, key: str) -> Snapshot | None:
        entry = await self.get_with_expiry(key)
        return None if entry is None else entry[0]

    async def get_with_expiry(self, key: str) -> tuple[Snapshot, float] | None:
        """The entry for ``key`` and its absolute expiry on this storage's clock, or None.

        ``TieredStorage`` refills its front with what is left of that expiry.
        """
        if self._closed:
            raise StorageClosedError("DiskStorage is closed")
        try:
            entry = self._read_on_loop(key)
            if entry is _USE_THREAD:
                entry = await self._run(self._read_in_thread, key)
        except _Unreadable as exc:
            await self._discard(key, exc)
            return None
        if entry is None:
            return None
        assert isinstance(entry, tuple)
        if entry[1] <= self._clock():
            # Expired on our clock: gone for good, even if the clock steps back (contract).
            with contextlib.suppress(Exception):
                await self._run(self._delete_expired, key, entry[1])
            return None
        return entry

    async def set(self, key: str, value: Snapshot, ttl: float) -> None:
        if self._closed:
            raise StorageClosedError("DiskStorage is closed")
        if not ttl > 0:  # also NaN: nothing is kept, not even what was there (contract)
            await self._run(self._writer.delete, key)
            return
        await self._run(self._write, key, value, ttl, self._clock() + ttl)

    async def delete(self, key: str) -> None:
        if self._closed:
            raise StorageClosedError("DiskStorage is closed")
        await self._run(self._writer.delete, key)

    async def clear(self) -> None:
        if self._closed:
            raise StorageClosedError("DiskStorage is closed")
        await self._run(self._writer.clear)

    async def close(self) -> None:
        """Wait for the operations in progress, then release the database, files and thread."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            # Connections belong to their thread: the worker's is closed by the worker, after
            # everything queued before it.
            await loop.run_in_executor(self._executor, self._writer.close)
        finally:
            self._executor.shutdown(wait=True)
            if threading.get_ident() == self._loop_thread:
                self._reader.close()
            # From another thread the loop's connection cannot be closed; dropping the reader lets
            # the garbage collector close it.
            self._reader = self._writer = None

    # -- maintenance (the coalesce-client cache command) ------------------------------------------

    def entries(self) -> Iterator[tuple[str, Snapshot]]:
        """Every readable entry with its key, expired ones included, oldest first.

        Blocking (each batch of 100 entries is read in the worker thread, the caller waits): meant
        for maintenance tools, not for code running on an event loop. Unreadable entries are
        skipped; ``prune`` removes them.
        """
        keys = self._blocking(lambda cache: [k for k in cache.iterkeys() if type(k) is str])
        for start in range(0, len(keys), 100):
            yield from self._blocking(self._read_batch, keys[start : start + 100])

    def volume(self) -> int:
        """Bytes used on disk as diskcache counts them (database pages plus value files)."""
        return int(self._blocking(lambda cache: cache.volume()))

    async def prune(self) -> int:
        """Remove the entries that have expired on this storage's clock or are unreadable."""
        if self._closed:
            raise StorageClosedError("DiskStorage is closed")
        return await self._run(self._prune, self._clock())

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<DiskStorage {str(self.directory)!r} {state} max_bytes={self.max_bytes}>"

    # -- internals --------------------------------------------------------------------------------

    async def _run(self, func: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StorageClosedError("DiskStorage is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._in_worker, func, *args)

    def _in_worker(self, func: Callable[..., T], *args: Any) -> T:
        try:
            return func(*args)
        except diskcache.Timeout:
            raise TimeoutError(
                f"DiskStorage {str(self.directory)!r}: the database stayed locked by another "
                f"process for more than {self.lock_timeout:g} s"
            ) from None

    def _read_on_loop(self, key: str) -> tuple[Snapshot, float] | _UseThread | None:
        """A read on the event loop when it is cheap and bounded, or ``_USE_THREAD``."""
        if not self._loop_reads:
            if time.monotonic() < self._loop_reads_after:
                return _USE_THREAD
            self._loop_reads = True
        if threading.get_ident() != self._loop_thread:
            return _USE_THREAD
        try:
            value, expiry = self._reader.get(key, read=True, tag=True)
        except (sqlite3.OperationalError, diskcache.Timeout):
            # Busy (another process is recovering the database) or worse: the thread retries
            # with the long timeout, and reports what is really wrong.
            self._loop_reads = False
            self._loop_reads_after = time.monotonic() + _LOOP_BACKOFF
            return _USE_THREAD
        if type(value) is bytes:
            return _entry(value, expiry)
        return None if value is None else _USE_THREAD  # a value in a file: read in the thread

    def _read_in_thread(self, key: str) -> tuple[Snapshot, float] | None:
        value, expiry = self._writer.get(key, tag=True)
        return None if value is None else _entry(value, expiry)

    def _write(self, key: str, value: Snapshot, ttl: float, expiry: float) -> None:
        data = encode(value)
        if len(data) > self.max_bytes:
            # Larger than the whole bound: not kept, and not the older value either (contract).
            self._writer.delete(key)
            return
        expire = None if math.isinf(ttl) else ttl + _KEEP_EXPIRED
        self._writer.set(key, data, expire=expire, tag=expiry)

    def _delete_expired(self, key: str, expiry: float) -> None:
        """Delete ``key`` unless another process stored a new entry there since we read it."""
        writer = self._writer
        with writer.transact():
            try:
                _, current = writer.get(key, read=True, tag=True)
            except _Unreadable:
                current = expiry
            if current == expiry:
                writer.delete(key)

    def _blocking(self, func: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StorageClosedError("DiskStorage is closed")
        return self._executor.submit(self._in_worker, func, self._writer, *args).result()

    @staticmethod
    def _read_batch(cache: Any, keys: list[str]) -> list[tuple[str, Snapshot]]:
        found = []
        for key in keys:
            try:
                value, expiry = cache.get(key, tag=True)
                if value is not None:
                    found.append((key, _entry(value, expiry)[0]))
            except _Unreadable:
                continue
        return found

    def _prune(self, now: float) -> int:
        cache = self._writer
        removed = int(cache.expire())  # past diskcache's own expiry (module rules)
        for key in list(cache.iterkeys()):
            if type(key) is not str:
                continue  # not ours: never read
            try:
                value, expiry = cache.get(key, tag=True)
                if value is None or _entry(value, expiry)[1] > now:
                    continue
            except _Unreadable:
                pass
            removed += bool(cache.delete(key))
        return removed

    async def _discard(self, key: str, exc: _Unreadable) -> None:
        if self._logged_unreadable:
            log.debug("DiskStorage %s: unreadable entry %s deleted (%s)", self.directory, key, exc)
        else:
            self._logged_unreadable = True
            log.warning(
                "DiskStorage %s: the entry for key %s is unreadable (%s); it was deleted and "
                "treated as a miss. Later unreadable entries are logged at DEBUG.",
                self.directory,
                key,
                exc,
            )
        try:
            await self._run(self._writer.delete, key)
        except Exception as delete_exc:
            log.debug("DiskStorage %s: could not delete %s: %r", self.directory, key, delete_exc)


def _open(path: Path, max_bytes: int, lock_timeout: float, loop_timeout: float) -> tuple[Any, Any]:
    """The worker's cache and the loop's cache on one directory; ValueError naming the path."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"DiskStorage directory {str(path)!r} exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or errno.errorcode.get(exc.errno or 0, str(exc))
        raise ValueError(
            f"DiskStorage directory {str(path)!r} cannot be created: {reason}"
        ) from None
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise ValueError(f"DiskStorage directory {str(path)!r} is not readable and writable")
    settings: dict[str, Any] = {
        "size_limit": max_bytes,
        # Reads must stay pure reads (no write transaction per hit, which other policies need).
        "eviction_policy": "least-recently-stored",
        "statistics": 0,
        "tag_index": 0,
        "sqlite_journal_mode": "wal",  # readers are never blocked by a writer
        # The WAL file is outside diskcache's size accounting: checkpoint it at an eighth of the
        # bound (SQLite's default of 1,000 pages at most) and truncate it back to that size.
        "sqlite_wal_autocheckpoint": max(16, min(1000, max_bytes // 8 // 4096)),
        "sqlite_journal_size_limit": max(64 * 1024, min(4 * 1024 * 1024, max_bytes // 8)),
    }
    writer = reader = None
    try:
        writer = diskcache.Cache(str(path), timeout=lock_timeout, disk=_BytesDisk, **settings)
        writer.close()  # this thread's connection; the worker thread opens its own
        reader = diskcache.Cache(str(path), timeout=loop_timeout, disk=_BytesDisk, **settings)
    except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
        if writer is not None:
            writer.close()
        cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ValueError(
            f"DiskStorage directory {str(path)!r} cannot hold a cache: {cause} "
            f"(its database is {str(path / diskcache.core.DBNAME)!r})"
        ) from None
    return writer, reader
