"""DiskStorage: stored responses in a directory, through diskcache, so that they survive restarts.

Rules of this module (the public storage, its one job; how a directory is opened and checked is
``opening.py``'s job, how rows are kept and evicted ``rows.py``'s, which value files are ours
``files.py``', which thread touches the disk ``threads.py``'s):

* Every read is decided by the absolute expiry stored with the entry, on this storage's clock. An
  entry found expired is deleted, unless another process stored a new one under its key meanwhile,
  so it stays gone even if the clock steps back (contract).
* An entry that cannot be read, fails its checksum, was sealed for another key or expiry, or does
  not decode is a miss: it is deleted and logged (the first at WARNING, later ones at DEBUG),
  never served and never raised to the caller; so is a row the database fails on (a damaged
  page). A damaged directory is refused at construction with a ``ValueError`` naming it
  (``opening.py``); operations other than reads that meet a damaged database raise ``OSError``
  naming it (issue 11).
* A write that fails (disk full, locked for longer than ``lock_timeout``) raises; the coalescer
  logs it and goes on without storing, and the next write tries again.
* A response whose body streams (``Snapshot.stream``, issue 24: ``StoresStreams``) is written
  to its file as it arrives (``bodies.py``), a block at a time, and its row committed only once
  the body is complete and at most ``stream_limit`` bytes (and ``max_bytes``); one that ends
  short or grows past the limit leaves nothing (its ``set`` raises ``TruncatedBodyError`` or
  ``StreamTooLargeError``). A hit on it answers with a response whose ``stream`` reads the file
  by blocks, each checked; a damaged block is a ``TruncatedBodyError`` for its reader, and the
  entry is deleted and logged as any unreadable entry.
* Maintenance (``entries``, ``volume``, ``prune``) is async like the rest and runs in the worker
  thread, ``entries`` a batch at a time: a maintenance tool on an event loop never blocks it. It
  speaks of responses only: ``entries`` lists no Vary pointer or URL index, ``prune`` does not
  count them.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from ...options import check_callable, check_count, check_flag, check_seconds
from ...spec.snapshot import Snapshot
from ..base import Clock, StorageBase, StreamTooLargeError, wall_clock
from ..records import Record
from . import rows, streamed
from .bodies import BodyIO, write_stream
from .opening import Opening, open_caches
from .threads import USE_THREAD, DiskIO

__all__ = ["DiskStorage"]

log = logging.getLogger("coalesce_client")

_BATCH = 100  # entries read per trip to the worker thread by entries()


class DiskStorage(StorageBase):
    """Responses kept in a directory (diskcache), shared by processes, surviving restarts.

    >>> import asyncio, tempfile
    >>> from coalesce_client import Snapshot
    >>> async def main() -> None:
    ...     store = DiskStorage(tempfile.mkdtemp())
    ...     await store.set("k", Snapshot(200, "OK", (), "http://x/", "GET", b"body"), ttl=60)
    ...     print((await store.get("k")).body)
    ...     print([key async for key, _ in store.entries()], await store.prune())
    ...     await store.close()
    >>> asyncio.run(main())
    b'body'
    ['k'] 0

    ``max_bytes`` bounds the directory: past it, each write evicts the least recently stored
    entries, never the one it wrote (an entry larger than ``max_bytes`` is not kept).
    ``stream_limit`` (1 GiB by default, 0: none) bounds a response whose body is stored as it
    arrives (issue 24): a session or middleware over this storage stores a body larger than its
    ``max_body_size`` so, and serves it from its file without reading it whole.
    ``lock_timeout`` is how long a write waits for another process's lock before it fails;
    ``loop_timeout`` how long a read on the event loop waits before it moves to the worker
    thread. Construction opens the database and may block briefly: do it at start-up. A damaged
    directory is refused then, with a ``ValueError`` naming it.

    ``create=False`` refuses a directory that does not hold a cache yet (``ValueError``) instead of
    making one. ``read_only=True`` opens an existing cache for reading only (``create`` does not
    matter then): its database is opened read-only, nothing in the directory is created or
    changed, so a read-only directory will do; every read runs in the worker thread, and writes,
    deletes and ``prune`` raise ``PermissionError`` (``coalesce-client cache stats`` and ``list``
    read so). A session or middleware over it serves its hits and stores nothing, silently
    (``OpensReadOnly``): a read-only cache the user asked for is not a failure.

    Raises:
        ValueError: an option out of its domain, or a damaged directory (a ``cache.db`` that is
            not a database, a truncated one, random bytes in its schema), naming the directory;
            with ``create=False``, a directory that holds no cache.
        PermissionError: ``set``, ``delete``, ``prune`` or ``clear`` of a ``read_only`` storage
            (a session over it stores nothing and says nothing).
        OSError: maintenance (``prune``, ``clear``, ``entries``, ``volume``) that meets a damaged
            database, naming it. ``get`` never raises for damage: a damaged entry is a miss.
        StorageClosedError: an operation after ``close()``.
    """

    __slots__ = (
        "_bodies",
        "_clock",
        "_io",
        "_logged_unreadable",
        "create",
        "directory",
        "lock_timeout",
        "loop_timeout",
        "max_bytes",
        "read_only",
        "stream_limit",
    )

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int = 1024 * 1024 * 1024,
        *,
        clock: Clock = wall_clock,
        lock_timeout: float = 5.0,
        loop_timeout: float = 0.005,
        create: bool = True,
        read_only: bool = False,
        stream_limit: int = 1024 * 1024 * 1024,
    ) -> None:
        super().__init__()
        # Every option is checked before the disk is touched; each is described above.
        self.max_bytes = check_count(max_bytes, "max_bytes", minimum=1)
        self.lock_timeout = check_seconds(lock_timeout, "lock_timeout")
        self.loop_timeout = check_seconds(loop_timeout, "loop_timeout")
        self._clock: Clock = check_callable(clock, "clock")
        self.create = check_flag(create, "create")
        self.read_only = check_flag(read_only, "read_only")
        self.stream_limit = check_count(stream_limit, "stream_limit", minimum=0)
        try:
            path = Path(os.fspath(directory)).expanduser()
        except TypeError:
            raise ValueError(f"directory must be a path, got {directory!r}") from None
        self.directory = path  # where the cache lives: cache.db and the files of large values
        opening = Opening(
            self.max_bytes, self.lock_timeout, self.loop_timeout, self.create, self.read_only
        )
        worker_cache, loop_reader = open_caches(path, opening)
        self._io = DiskIO(worker_cache, loop_reader, path, self.lock_timeout)
        self._bodies = BodyIO(path, self._io.run_file, self._damaged)
        self._logged_unreadable = False

    # -- the Storage protocol ---------------------------------------------------------------------

    async def get(self, key: str) -> Record | None:
        entry = await self.get_with_expiry(key)
        return None if entry is None else entry[0]

    def get_nowait(self, key: str) -> Record | None:
        """``get`` when the row is at hand (issue 20): kept inside SQLite and read on the loop
        (``threads.py``), so that a hit costs the coalescer no coroutine. None for anything
        else: a value in a file or a busy database (the thread reads), and an entry expired or
        unreadable, which ``get`` then deletes (and logs) as it always does."""
        if self._closed:
            self._check_open()
        try:
            entry = self._io.read_on_loop(key)
        except rows.Unreadable:
            return None
        if type(entry) is not tuple or entry[1] <= self._clock():
            return None
        return entry[0]

    async def get_with_expiry(self, key: str) -> tuple[Record, float] | None:
        """The entry for ``key`` and its absolute expiry on this storage's clock, or None.

        ``TieredStorage`` refills its front with what is left of that expiry.
        """
        self._check_open()
        try:
            entry = self._io.read_on_loop(key)
            if entry is USE_THREAD:
                entry = await self._io.run(rows.read, key, self._bodies)
        except rows.Unreadable as exc:
            await self._discard(key, exc)
            return None
        if entry is None:
            return None
        assert isinstance(entry, tuple)
        if entry[1] <= self._clock():
            # Expired on our clock: gone for good, even if the clock steps back (contract).
            with contextlib.suppress(Exception):
                await self._io.run(rows.delete_if_unchanged, key, entry[1])
            return None
        return entry

    async def set(self, key: str, value: Record, ttl: float) -> None:
        self._check_open()
        if not ttl > 0:  # also NaN: nothing is kept, not even what was there (contract)
            await self._io.run(rows.delete, key)
            return
        if isinstance(value, Snapshot) and value.stream is not None:
            await self._set_streamed(key, value, ttl)
            return
        put = rows.Put(key, value, ttl, self._clock() + ttl)
        await self._io.run(rows.write, put, self.max_bytes)

    async def _set_streamed(self, key: str, value: Snapshot, ttl: float) -> None:
        """Store a response whose body streams, as it arrives (module rules)."""
        if self.read_only:
            raise PermissionError(f"DiskStorage {str(self.directory)!r} was opened read-only")
        assert value.stream is not None
        try:
            limit = min(self.stream_limit, self.max_bytes)
            written = await write_stream(self._bodies, value.stream, limit)
        except StreamTooLargeError:
            # Over the bound: not kept, and not the older entry either (contract).
            await self._io.run(rows.delete, key)
            raise
        put = rows.Put(key, value, ttl, self._clock() + ttl)
        await self._io.run(streamed.write_streamed, put, written, self.max_bytes)

    @property
    def body_bytes_read(self) -> int:
        """Bytes of streamed entries' bodies read from their files so far, by every reader (a
        range read reads the blocks it needs only: for tests and benchmarks)."""
        return self._bodies.bytes_read

    async def delete(self, key: str) -> None:
        self._check_open()
        await self._io.run(rows.delete, key)

    async def clear(self) -> None:
        self._check_open()
        await self._io.run(rows.clear)

    async def close(self) -> None:
        """Wait for the operations in progress, then release the database, files and thread."""
        if self._closed:
            return
        self._closed = True
        await self._io.close()

    # -- maintenance (the coalesce-client cache command) ------------------------------------------

    def entries(self) -> AsyncIterator[tuple[str, Snapshot]]:
        """Every readable response with its key, expired ones included, in key order; never a
        Vary pointer or a URL index.

        ``async for key, snapshot in storage.entries()``: the keys, then the entries 100 at a
        time, are read in the worker thread, so a large cache neither blocks the event loop nor
        has every body in memory at once. Unreadable entries are skipped; ``prune`` removes them.
        """
        self._check_open()
        return self._entries()

    async def _entries(self) -> AsyncIterator[tuple[str, Snapshot]]:
        keys = await self._io.run(rows.keys)
        for start in range(0, len(keys), _BATCH):
            batch = keys[start : start + _BATCH]
            for item in await self._io.run(rows.read_batch, batch, self._bodies):
                yield item

    async def volume(self) -> int:
        """Bytes used on disk: database pages plus value files, orphaned ones included (files a
        writer killed before committing left behind; ``prune`` removes them)."""
        self._check_open()
        return await self._io.run(rows.volume)

    async def prune(self) -> int:
        """Remove the entries that have expired on this storage's clock or are unreadable, and
        orphaned value files older than ten minutes (younger ones may belong to a write in
        progress in another process); return how many went: responses, unreadable entries and
        files (the Vary pointers and URL indexes that expired go too, uncounted)."""
        self._check_open()
        return await self._io.run(rows.prune, self._clock())

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open read-only" if self.read_only else "open"
        return f"<DiskStorage {str(self.directory)!r} {state} max_bytes={self.max_bytes}>"

    # -- internals --------------------------------------------------------------------------------

    async def _damaged(self, key: str, name: str, why: str) -> None:
        """A reader found a streamed entry's body damaged: delete the entry, if its row still
        names that body (another process may have stored a new one), and log it."""
        self._log_unreadable(key, why)
        try:
            await self._io.run(streamed.delete_if_file, key, name)
        except Exception as exc:
            log.debug("DiskStorage %s: could not delete %s: %r", self.directory, key, exc)

    async def _discard(self, key: str, exc: rows.Unreadable) -> None:
        self._log_unreadable(key, exc)
        try:
            await self._io.run(rows.delete, key)
        except Exception as delete_exc:
            log.debug("DiskStorage %s: could not delete %s: %r", self.directory, key, delete_exc)

    def _log_unreadable(self, key: str, exc: object) -> None:
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
