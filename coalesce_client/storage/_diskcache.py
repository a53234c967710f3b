"""How DiskStorage's entries are kept in diskcache: one row per key, bytes only, never pickle.

Rules of this module (the only one that imports diskcache):

* One diskcache row per key. Its value is ``snapshot.encode(...)`` bytes: inside SQLite when smaller
  than 32 KiB, else in a file of its own that the row names. Its ``tag`` is the absolute expiry on
  the storage's clock (wall-clock seconds, so an entry means the same to the next process), which
  decides every read. Its ``expire_time`` (diskcache's own, on ``time.time()``) is that TTL plus
  ``KEEP_EXPIRED``: for that hour an expired entry can still be listed and pruned by maintenance
  (and, later, served stale or revalidated); after it, diskcache culls it before anything fresh.
  The snapshot itself is stored as given, so a read returns an equal snapshot.
* Nothing read back is unpickled. ``BytesDisk`` stores bytes and nothing else, and refuses to
  fetch a row in any other mode (such as a pickle written by a plain ``diskcache.Cache``). A row
  that cannot be read, or whose bytes do not decode, raises ``Unreadable``; the storage deletes it.
* A value file left half-written by a failed write is removed.
* The operations below take the cache they work on as their first argument and block: the storage
  runs them in its worker thread (``_disk_io``). They work on a ``diskcache.Cache`` or on a
  ``ReadOnlyCache``, which reads the same rows through a read-only SQLite connection and refuses
  every write with ``PermissionError``: diskcache's own ``Cache`` writes its settings whenever it
  opens a database, so a cache that must not change (a read-only directory) is read without it.
"""

from __future__ import annotations

import errno
import math
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, NoReturn

import diskcache  # type: ignore[import-untyped]
from diskcache.core import DBNAME, MODE_BINARY, MODE_RAW, UNKNOWN  # type: ignore[import-untyped]

from ..snapshot import Snapshot, decode, encode

__all__ = [
    "BUSY",
    "IN_A_FILE",
    "KEEP_EXPIRED",
    "BytesDisk",
    "LockTimeout",
    "ReadOnlyCache",
    "Unreadable",
    "clear",
    "delete",
    "delete_if_unchanged",
    "entry",
    "keys",
    "open_caches",
    "prune",
    "read",
    "read_batch",
    "volume",
    "write",
]

KEEP_EXPIRED = 3600.0  # seconds diskcache keeps an entry past its TTL (module rules)
_FILE_WRITE_TRIES = 10  # as diskcache: another process may remove an empty subdirectory meanwhile

LockTimeout = diskcache.Timeout  # a write waited ``lock_timeout`` for another process's lock
BUSY = (sqlite3.OperationalError, diskcache.Timeout)  # what a read of a busy database raises
IN_A_FILE = object()  # what a read with ``read=True`` returns for a value kept in a file
_FOREIGN_KEY = object()  # what iterating the keys yields for a key stored by pickle


class Unreadable(Exception):
    """A stored row this storage will not or cannot turn into a snapshot."""


class BytesDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache has no type hints
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
                raise Unreadable(f"a stored {type(value).__name__}, not bytes")
            return value
        if mode == MODE_BINARY:
            if read:
                return IN_A_FILE  # the caller reads it in the worker thread
            return super().fetch(mode, filename, value, False)
        raise Unreadable(f"a value stored in diskcache mode {mode} (pickle or text)")


def entry(value: bytes, expiry: Any) -> tuple[Snapshot, float]:
    """A row's value and tag as (snapshot, absolute expiry); ``Unreadable`` if they are not."""
    if type(expiry) not in (float, int):
        raise Unreadable("no expiry stored with it")
    try:
        snap = decode(value)
    except Exception as exc:  # SnapshotError above all, but nothing read back may escape
        raise Unreadable(f"does not decode: {exc}") from None
    return snap, float(expiry)


# -- operations on a cache (blocking: the storage runs them in its worker thread) -----------------


def read(cache: Any, key: str) -> tuple[Snapshot, float] | None:
    value, expiry = cache.get(key, tag=True)
    return None if value is None else entry(value, expiry)


def write(cache: Any, key: str, value: Snapshot, ttl: float, expiry: float, max_bytes: int) -> None:
    data = encode(value)
    if len(data) > max_bytes:
        # Larger than the whole bound: not kept, and not the older value either (contract).
        cache.delete(key)
        return
    expire = None if math.isinf(ttl) else ttl + KEEP_EXPIRED
    cache.set(key, data, expire=expire, tag=expiry)


def delete(cache: Any, key: str) -> None:
    cache.delete(key)


def clear(cache: Any) -> None:
    cache.clear()


def delete_if_unchanged(cache: Any, key: str, expiry: float) -> None:
    """Delete ``key`` unless another process stored a new entry there since we read it."""
    with cache.transact():
        try:
            _, current = cache.get(key, read=True, tag=True)
        except Unreadable:
            current = expiry
        if current == expiry:
            cache.delete(key)


def keys(cache: Any) -> list[str]:
    """Every key this storage could have written (not another program's pickled keys)."""
    return [k for k in cache.iterkeys() if type(k) is str]


def read_batch(cache: Any, batch: list[str]) -> list[tuple[str, Snapshot]]:
    """The readable entries among ``batch``, expired ones included; unreadable ones skipped."""
    found = []
    for key in batch:
        try:
            value, expiry = cache.get(key, tag=True)
            if value is not None:
                found.append((key, entry(value, expiry)[0]))
        except Unreadable:
            continue
    return found


def prune(cache: Any, now: float) -> int:
    """Remove the entries expired at ``now`` (the storage's clock) or unreadable; how many."""
    removed = int(cache.expire())  # past diskcache's own expiry (module rules)
    for key in list(cache.iterkeys()):
        if type(key) is not str:
            continue  # not ours: never read
        try:
            value, expiry = cache.get(key, tag=True)
            if value is None or entry(value, expiry)[1] > now:
                continue
        except Unreadable:
            pass
        removed += bool(cache.delete(key))
    return removed


def volume(cache: Any) -> int:
    """Bytes used on disk as diskcache counts them (database pages plus value files)."""
    return int(cache.volume())


# -- opening a directory --------------------------------------------------------------------------


def open_caches(
    path: Path,
    max_bytes: int,
    lock_timeout: float,
    loop_timeout: float,
    *,
    create: bool,
    read_only: bool,
) -> tuple[Any, Any]:
    """The worker's cache and the loop's cache on one directory; ValueError naming the path.

    ``read_only``: a ``ReadOnlyCache`` for the worker and no cache for the loop; nothing in the
    directory is created or changed. ``create=False``: the directory must hold a cache already.
    """
    if path.exists() and not path.is_dir():
        raise ValueError(f"DiskStorage directory {str(path)!r} exists and is not a directory")
    if read_only or not create:
        if not path.is_dir():
            raise ValueError(f"DiskStorage directory {str(path)!r} does not exist")
        if not os.access(path, os.R_OK | os.X_OK):
            raise ValueError(f"DiskStorage directory {str(path)!r} is not readable")
        reader = ReadOnlyCache(path, lock_timeout)  # also checks that it holds a cache
        if read_only:
            return reader, None
        reader.close()
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
    writer = loop_reader = None
    try:
        writer = diskcache.Cache(str(path), timeout=lock_timeout, disk=BytesDisk, **settings)
        writer.close()  # this thread's connection; the worker thread opens its own
        loop_reader = diskcache.Cache(str(path), timeout=loop_timeout, disk=BytesDisk, **settings)
    except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
        if writer is not None:
            writer.close()
        raise _cannot_hold_a_cache(path, exc) from None
    return writer, loop_reader


def _cannot_hold_a_cache(path: Path, exc: BaseException) -> ValueError:
    cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return ValueError(
        f"DiskStorage directory {str(path)!r} cannot hold a cache: {cause} "
        f"(its database is {str(path / DBNAME)!r})"
    )


class ReadOnlyCache:
    """The reads of ``diskcache.Cache`` that DiskStorage uses, on a read-only SQLite connection.

    The queries are diskcache's own (the fast path of ``Cache.get``, ``iterkeys``, ``volume``);
    every write raises ``PermissionError``. Built in one thread and then used by the worker thread
    alone, one call at a time.
    """

    def __init__(self, path: Path, timeout: float) -> None:
        self.directory = path
        self._disk = BytesDisk(str(path))
        database = path / DBNAME
        if not database.is_file():
            raise ValueError(
                f"DiskStorage directory {str(path)!r} holds no cache (it has no {DBNAME})"
            )
        try:
            self._con, tables = _connect_read_only(database, timeout)
        except sqlite3.Error as exc:
            raise _cannot_hold_a_cache(path, exc) from None
        if not {"Settings", "Cache"} <= tables:
            self._con.close()
            raise ValueError(
                f"DiskStorage directory {str(path)!r} holds no cache "
                f"(its {DBNAME} is not a diskcache database)"
            )

    def get(self, key: str, read: bool = False, tag: bool = False) -> Any:
        db_key, raw = self._disk.put(key)
        rows = self._con.execute(
            "SELECT tag, mode, filename, value FROM Cache WHERE key = ? AND raw = ?"
            " AND (expire_time IS NULL OR expire_time > ?)",
            (db_key, raw, time.time()),
        ).fetchall()
        if not rows:
            return (None, None) if tag else None
        ((db_tag, mode, filename, db_value),) = rows
        try:
            value = self._disk.fetch(mode, filename, db_value, read)
        except OSError:  # the file went with its row, removed by a writer meanwhile
            return (None, None) if tag else None
        return (value, db_tag) if tag else value

    def iterkeys(self) -> list[Any]:
        rows = self._con.execute("SELECT key, raw FROM Cache ORDER BY key ASC, raw ASC")
        return [self._disk.get(key, raw) for key, raw in rows]

    def volume(self) -> int:
        ((page_count,),) = self._con.execute("PRAGMA page_count").fetchall()
        ((page_size,),) = self._con.execute("PRAGMA page_size").fetchall()
        ((size,),) = self._con.execute("SELECT value FROM Settings WHERE key = 'size'").fetchall()
        return int(page_count) * int(page_size) + int(size)

    def close(self) -> None:
        self._con.close()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise PermissionError(f"DiskStorage {str(self.directory)!r} was opened read-only")

    set = delete = clear = expire = transact = _refuse


def _connect_read_only(database: Path, timeout: float) -> tuple[sqlite3.Connection, set[str]]:
    """A read-only connection, and the names of the database's tables.

    A reader of a WAL database needs its ``-wal`` and ``-shm`` files, and creates them when they
    are missing (SQLite leaves them behind). Where it may not (a directory we may not write) and
    there is no ``-wal`` file (no writer has the database open: the log was checkpointed into it),
    the database file holds every committed row: it is then read as immutable, without them.
    """
    uri = database.absolute().as_uri()
    wal = database.with_name(database.name + "-wal")
    for query in ("mode=ro", "mode=ro&immutable=1"):
        con = sqlite3.connect(
            f"{uri}?{query}",
            uri=True,
            timeout=timeout,
            isolation_level=None,
            check_same_thread=False,  # built here, then used by the worker thread alone
        )
        try:
            return con, {row[0] for row in con.execute("SELECT name FROM sqlite_master")}
        except sqlite3.OperationalError:
            con.close()
            if query != "mode=ro" or wal.exists() or os.access(database.parent, os.W_OK):
                raise
        except BaseException:
            con.close()
            raise
    raise AssertionError("unreachable")  # pragma: no cover
