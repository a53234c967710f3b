"""How DiskStorage's entries are kept in diskcache: one row per key, bytes only, never pickle.

Rules of this module (with ``opening.py``, which opens a directory, and ``loopread.py``, the
loop's read of a row, the only ones that import diskcache):

* One diskcache row per key, whatever the kind of record it keeps (a response, a Vary pointer, a
  URL index: ``records.py``). Its value is *sealed* (``sealed.py``): the key it was stored under,
  its absolute expiry, then ``codec.encode(...)`` bytes (checksummed). It is kept inside SQLite
  when smaller than 32 KiB, else in a file of its own that the row names, whose body a read takes
  without copying it (``sealed.entry_in_file``). A streamed entry (issue 24, ``bodies.py``) is a
  row of its own mode, ``MODE_STREAMED``: its value inside SQLite, its body raw in the file the
  row names, read by ``get`` as a ``FileBody`` whose readers read it by blocks.
  Its ``tag`` is the same
  absolute expiry on the storage's clock (wall-clock seconds, so an entry means the same to the
  next process), which decides every read. Its ``expire_time`` (diskcache's own, on
  ``time.time()``) is that TTL plus ``KEEP_EXPIRED``: for that hour an expired entry can still be
  listed and pruned by maintenance (and, later, served stale or revalidated).
* A row is served only if its record names the key that was asked for and the expiry its row
  holds, and its record passes the checksum (issue 11). The checksum alone cannot see a damaged
  index that leads one key to another key's intact row (SQLite does not re-check the key against
  the row it lands on), nor a damaged tag that would serve an expired entry as fresh; the key and
  expiry sealed with the record can. The record itself is stored as given, so a read returns an
  equal record.
* Nothing read back is unpickled. ``BytesDisk`` stores bytes and nothing else, and refuses to
  fetch a row in any other mode (such as a pickle written by a plain ``diskcache.Cache``), or a
  file whose name is not one of ours (``files.py``). A row that cannot be read (the database
  fails on it, it does not unseal, it does not decode) raises ``Unreadable``; the storage deletes
  it. Only a busy database (``is_busy``) is a reason to wait instead.
* Maintenance speaks of responses only: ``read_batch`` lists them, ``prune`` counts the ones it
  removes (and the unreadable rows and stray files); a Vary pointer or URL index that expired
  goes with them, uncounted.
* A value file left half-written by a failed write is removed; one left by a writer that was
  killed before it committed its row is an orphan, counted by ``volume`` and removed by ``prune``.
* ``max_bytes`` is kept by ``evict`` after each write, not by diskcache's cull (issue 11: with
  entries above a tenth of the bound, its cull of ten rows at a time removed every entry, the one
  just written included). Past the bound, rows past diskcache's own expiry go first, then the least
  recently stored ones, never the row just written, until the volume is back under the bound
  (a 64th under it, so that a full cache does not pay for an eviction on every write).
  Reads stay pure reads: no write transaction on a hit.
* The operations below take the cache they work on as their first argument and block: the storage
  runs them in its worker thread (``threads.py``). They work on a ``diskcache.Cache`` or on an
  ``opening.ReadOnlyCache``, which reads the same rows through a read-only SQLite connection and
  refuses every write with ``PermissionError``. Where diskcache has no method for a query (the
  file names rows hold, the eviction order), it runs on diskcache's own connection (``_sql``) and
  in its own transactions (``_transact``), which remove the files of deleted rows after commit.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, NamedTuple

import diskcache  # type: ignore[import-untyped]
from diskcache.core import MODE_BINARY, MODE_RAW, UNKNOWN  # type: ignore[import-untyped]

from ...spec.snapshot import Snapshot
from ..records import Record
from .bodies import BodyIO
from .files import ORPHAN_GRACE, is_value_name, remove_orphans, value_files
from .sealed import (
    InAFile,
    Sealed,
    StreamedFile,
    StreamedValue,
    Unreadable,
    entry,
    entry_in_file,
    seal,
    streamed_entry,
)

__all__ = [
    "KEEP_EXPIRED",
    "MODE_STREAMED",
    "BytesDisk",
    "LockTimeout",
    "Put",
    "Sealed",
    "Unreadable",
    "clear",
    "delete",
    "delete_if_unchanged",
    "entry",
    "evict",
    "is_busy",
    "keys",
    "prune",
    "read",
    "read_batch",
    "seal",
    "volume",
    "write",
]

KEEP_EXPIRED = 3600.0  # seconds diskcache keeps an entry past its TTL (module rules)
_FILE_WRITE_TRIES = 10  # as diskcache: another process may remove an empty subdirectory meanwhile
_EVICT_BATCH = 256  # rows looked at per eviction transaction
_ROW_COST = 64  # bytes a row costs in SQLite beyond its key and value (an estimate, see evict)

LockTimeout = diskcache.Timeout  # a write waited ``lock_timeout`` for another process's lock
_FOREIGN_KEY = object()  # what iterating the keys yields for a key stored by pickle
_LOCKED = ("database is locked", "database table is locked", "database schema is locked")
# A streamed entry's row (bodies.py): its value inside SQLite, its body in the file it names. Not
# one of diskcache's modes (0 to 4): a version of this package before issue 24 reads such a row
# as unreadable, a miss, and deletes it.
MODE_STREAMED = 5


class Put(NamedTuple):
    """One write: ``record`` under ``key`` for ``ttl`` seconds, until ``expiry`` on the
    storage's clock (the row's tag)."""

    key: str
    record: Record
    ttl: float
    expiry: float


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` says that another connection holds a lock (wait), not that a row is bad."""
    if isinstance(exc, diskcache.Timeout):
        return True
    return isinstance(exc, sqlite3.OperationalError) and str(exc).startswith(_LOCKED)


class BytesDisk(diskcache.Disk):  # type: ignore[misc]  # diskcache has no type hints
    """A diskcache ``Disk`` that keeps bytes only and never unpickles anything.

    Keys are our hex digests (``str``), stored as they are. A value is stored inside SQLite below
    ``min_file_size``, else in a file; a file left half-written by a failed write is removed. Only
    files named as diskcache names them are read or removed (``files.py``).
    """

    def put(self, key: Any) -> tuple[Any, bool]:
        if type(key) is not str:
            raise TypeError(f"DiskStorage keys are strings, got {type(key).__name__}")
        return key, True

    def get(self, key: Any, raw: bool) -> Any:
        # A key another program stored by pickle is not ours: it comes back as it is, unread.
        return key if raw else _FOREIGN_KEY

    def store(self, value: Any, read: bool, key: Any = UNKNOWN) -> tuple[int, int, Any, Any]:
        if type(value) is StreamedValue:  # its body is in its file already (bodies.py)
            return value.size, MODE_STREAMED, value.name, sqlite3.Binary(b"".join(value.sealed))
        parts = value if type(value) is Sealed else (value,)
        if not all(type(part) is bytes for part in parts) or read:
            raise TypeError(f"DiskStorage stores bytes only, got {type(value).__name__}")
        size = sum(map(len, parts))
        if size < self.min_file_size:
            return 0, MODE_RAW, None, sqlite3.Binary(b"".join(parts))
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
                    for part in parts:
                        out.write(part)
            except BaseException:
                self.remove(filename)
                raise
            return size, MODE_BINARY, filename, None
        raise AssertionError("unreachable")  # pragma: no cover

    def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
        if mode == MODE_RAW:
            if type(value) is not bytes:
                raise Unreadable(f"a stored {type(value).__name__}, not bytes")
            return value
        if mode == MODE_BINARY:
            if not is_value_name(filename):
                raise Unreadable(f"its row names no value file of ours: {filename!r}")
            if read:  # its path: read in the worker thread (sealed.py)
                return InAFile(os.path.join(self._directory, filename))
            return super().fetch(mode, filename, value, False)
        if mode == MODE_STREAMED:
            if not is_value_name(filename) or type(value) is not bytes:
                raise Unreadable(f"a streamed entry whose row is damaged: {filename!r}")
            return StreamedFile(filename, value)
        raise Unreadable(f"a value stored in diskcache mode {mode} (pickle or text)")

    def remove(self, file_path: Any) -> None:
        # A damaged row may name anything: only our own value files are ever removed.
        if is_value_name(file_path):
            super().remove(file_path)


def _get(cache: Any, key: str, *, read: bool = False) -> tuple[Any, Any]:
    """``cache.get(key, read=read, tag=True)``: a busy database raises as it is, any other failure
    of the database on this row (a damaged page, text that is not UTF-8) raises ``Unreadable``."""
    try:
        return cache.get(key, read=read, tag=True)  # type: ignore[no-any-return]
    except Unreadable:
        raise
    except Exception as exc:
        if is_busy(exc):
            raise
        raise Unreadable(f"the database failed to read it: {type(exc).__name__}: {exc}") from None


# -- operations on a cache (blocking: the storage runs them in its worker thread) -----------------


def read(cache: Any, key: str, io: BodyIO) -> tuple[Record, float] | None:
    value, expiry = _get(cache, key, read=True)
    if type(value) is InAFile:  # a large value: its body read without a copy (sealed.py)
        return entry_in_file(key, value, expiry)
    if type(value) is StreamedFile:  # its file opened now: read whole even if evicted later
        return streamed_entry(key, value, expiry, io, opened=True)
    return None if value is None else entry(key, value, expiry)


def _entry(key: str, value: Any, expiry: Any, io: BodyIO | None) -> tuple[Record, float]:
    """``entry`` of a row read with ``read=False``, a streamed one included (its file not
    opened: by its first reader, when ``io`` is given)."""
    if type(value) is not StreamedFile:
        return entry(key, value, expiry)
    found = streamed_entry(key, value, expiry, io, opened=False)
    assert found is not None
    return found


def write(cache: Any, put: Put, max_bytes: int) -> None:
    sealed = seal(put.key, put.expiry, put.record)
    if sum(map(len, sealed)) > max_bytes:
        # Larger than the whole bound: not kept, and not the older value either (contract).
        cache.delete(put.key)
        return
    expire = None if math.isinf(put.ttl) else put.ttl + KEEP_EXPIRED
    cache.set(put.key, sealed, expire=expire, tag=put.expiry)
    evict(cache, put.key, max_bytes)


def evict(cache: Any, keep: str, max_bytes: int) -> int:
    """Remove rows until diskcache's volume is under ``max_bytes``; never ``keep`` (module rules).

    Past the bound, rows go until the volume is a 64th below it, so that a full cache of small
    entries pays for an eviction transaction every few writes, not on each one. Each round is one
    short transaction: it walks the rows past diskcache's expiry, then the rest oldest first (both
    on an index), until their estimated cost (file, value and key bytes, plus ``_ROW_COST``)
    covers the excess, deletes them, and commits; the database shrinks at commit
    (``auto_vacuum``), so the next round measures again. Every round deletes at least one row,
    so this ends. Returns the rows removed.
    """
    volume = cache.volume()
    if volume <= max_bytes:
        return 0
    target = max_bytes - max_bytes // 64
    removed = 0
    cost = f"size + COALESCE(length(value), 0) + length(key) + {_ROW_COST}"
    dead = (
        f"SELECT rowid, filename, {cost} FROM Cache"
        " WHERE expire_time IS NOT NULL AND expire_time < ? AND NOT (key = ? AND raw = 1)"
        " ORDER BY expire_time LIMIT ?"
    )
    oldest = (
        f"SELECT rowid, filename, {cost} FROM Cache WHERE NOT (key = ? AND raw = 1)"
        " ORDER BY store_time, rowid LIMIT ?"
    )
    while (excess := volume - target) > 0:
        with cache._transact() as (sql, cleanup):
            chosen: dict[int, Any] = {}
            for query, args in ((dead, (time.time(), keep)), (oldest, (keep,))):
                rows = sql(query, (*args, _EVICT_BATCH))  # read lazily: usually one row or two
                try:
                    for rowid, filename, size in rows:
                        if excess <= 0:
                            break
                        if rowid not in chosen:
                            chosen[rowid] = filename
                            excess -= size or 0
                finally:
                    rows.close()
            if not chosen:
                return removed  # nothing left but the row just written
            sql(f"DELETE FROM Cache WHERE rowid IN ({','.join(map(str, chosen))})")
            for filename in chosen.values():
                cleanup(filename)  # removed after commit, if it is one of ours (BytesDisk.remove)
        removed += len(chosen)
        volume = cache.volume()
    return removed


def delete(cache: Any, key: str) -> None:
    cache.delete(key)


def clear(cache: Any) -> None:
    cache.clear()


def delete_if_unchanged(cache: Any, key: str, expiry: float) -> None:
    """Delete ``key`` unless another process stored a new entry there since we read it."""
    with cache.transact():
        try:
            _, current = _get(cache, key, read=True)
        except Unreadable:
            current = expiry
        if current == expiry:
            cache.delete(key)


def keys(cache: Any) -> list[str]:
    """Every key this storage could have written (not another program's pickled keys)."""
    return [k for k in cache.iterkeys() if type(k) is str]


def read_batch(cache: Any, batch: list[str], io: BodyIO) -> list[tuple[str, Snapshot]]:
    """The readable responses among ``batch``, expired ones included; unreadable rows and
    bookkeeping records skipped (module rules). A streamed entry's body file is opened by its
    first reader, not here (a listing would hold every one open)."""
    found = []
    for key in batch:
        try:
            value, expiry = _get(cache, key)
            record = None if value is None else _entry(key, value, expiry, io)[0]
        except Unreadable:
            continue
        if isinstance(record, Snapshot):
            found.append((key, record))
    return found


def prune(cache: Any, now: float) -> int:
    """Remove the entries expired at ``now`` (the storage's clock) or unreadable, and the value
    files no row names that are older than ``ORPHAN_GRACE``; how many responses, unreadable rows
    and files went (a Vary pointer or URL index goes uncounted: module rules)."""
    removed = _expire(cache)  # past diskcache's own expiry (module rules)
    for key in keys(cache):
        try:
            value, expiry = _get(cache, key)
            if value is None:
                continue
            record, expiry = _entry(key, value, expiry, None)
            if expiry > now:
                continue
            counted = isinstance(record, Snapshot)
        except Unreadable:
            counted = True
        if cache.delete(key) and counted:
            removed += 1
    directory = Path(cache.directory)
    listed = value_files(directory)  # before the rows are read (files.py rules)
    orphans, _ = remove_orphans(directory, listed, _named_files(cache), time.time() - ORPHAN_GRACE)
    return removed + orphans


def _expire(cache: Any) -> int:
    """``cache.expire()``: diskcache removes the rows past its own expiry, which ``cache.get``
    no longer returns; how many of them were responses or unreadable, read here before."""
    counted = 0
    rows = cache._sql(
        "SELECT key, tag, mode, filename, value FROM Cache"
        " WHERE expire_time IS NOT NULL AND expire_time < ?",
        (time.time(),),
    )
    try:
        for key, expiry, *stored in rows:
            try:
                record, _ = _entry(key, cache._disk.fetch(*stored, False), expiry, None)
            except Exception:  # unreadable: not our key, a damaged row, its file gone
                counted += 1
            else:
                counted += isinstance(record, Snapshot)
    finally:
        rows.close()
    cache.expire()
    return counted


def volume(cache: Any) -> int:
    """Bytes used on disk: the database's pages plus every value file, orphans included."""
    ((page_count,),) = cache._sql("PRAGMA page_count").fetchall()
    ((page_size,),) = cache._sql("PRAGMA page_size").fetchall()
    files = value_files(Path(cache.directory))
    return int(page_count) * int(page_size) + sum(f.size for f in files)


def _named_files(cache: Any) -> set[str]:
    rows = cache._sql("SELECT filename FROM Cache WHERE filename IS NOT NULL").fetchall()
    return {name for (name,) in rows}
