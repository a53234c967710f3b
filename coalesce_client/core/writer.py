"""Storage behind the flights: the writes in progress, Vary pointers, URL indexes, failures
logged once.

Rules of this module (part of the framework-free core; it speaks the storage layer's typed
records, ``storage/records.py``, and no concrete storage):

* A flight does not wait for its storage write (issue 19: a burst of 500 distinct 1 MiB URLs
  into a disk took 1.9 s where plain aiohttp took 0.4 s, each caller waiting up to 50 ms): the
  write runs as a task of its own, and until it ends the snapshot (and the Vary pointer that
  leads to it) is *pending*: every read of this process finds it there, so no second flight
  starts for a key that is being stored. The bound: the responses of running writes count their
  body plus ``RECORD_COST`` each, and past ``MAX_PENDING`` bytes a caller waits until the
  writes before it bring the total back under it, so that a storage slower than the origin
  holds at most that much memory that nobody else holds.
* A response whose body streams (``Snapshot.stream``, issue 24) is written the same way, to a
  storage that takes streams (``StoresStreams``: ``stream_limit``, 0 for one that takes none:
  such a response is then not stored). Its write lasts as long as its body takes to arrive:
  meanwhile it is pending as any other (its stream is the flight's spool, which opens a reader
  for each read), and it counts ``RECORD_COST`` only towards the bound, its body being on disk or
  in the spool, never here. Its Vary pointer and URL index are written once it is stored. A body
  that ended short (``TruncatedBodyError``: the origin's fault) or grew past the storage's limit
  (``StreamTooLargeError``) is not stored, and that is no failure of the storage: it is logged
  at DEBUG, not counted, and the storage's state is unchanged.
* ``read`` answers with a response or a Vary pointer, never with a URL index: an index lives
  under a URL key, which no request's key can be (``keys.py``), and is read only to invalidate.
* A storage opened read-only (``OpensReadOnly``: ``DiskStorage(read_only=True)``) is read and
  never written: nothing is stored or deleted there, and nothing is logged about it (issue 19:
  its refusals were logged as failures): ``write`` returns at once, and every delete goes through
  ``_drop``.
* Storage is an optimisation, never a point of failure: an exception from it is logged (once per
  operation and exception type, then at DEBUG; a ``StorageUnavailableError`` only at DEBUG, the
  storage logs its own outages) and the caller goes on as if nothing was stored.
* Vary pointers (``VaryPointer``) are updated one at a time in the process (a lock), so a pointer
  lists every variant this process stored, at most ``max_variants``, the oldest dropped first.
  Processes sharing one storage may each lose the other's latest variant from the list (it
  stays readable through the names; it just is not dropped by an invalidation).
* A storage that writes without waiting (``WritesNowait``: ``MemoryStorage``) is written at
  once, in the flight, when no write runs in the background (which it could overtake): no task,
  nothing pending, no coroutine (issue 20: a task per miss); and read without a coroutine. Its
  failures count as any other.
* URL indexes (``UrlIndex``) are updated after the write they index, one at a time in the
  process (a lock), newest last, at most ``MAX_KEYS``; the process keeps a copy of the indexes
  it wrote (at most ``MAX_URLS`` URLs): ``indexes.py`` decides what to delete and write.
  Processes sharing one storage may each lose the other's latest key from an index (a
  read-modify-write); the entry then stays until it expires.
* An invalidation first waits for the writes already in progress (only those), so that a
  response stored just before it is in the index it reads; but not for a streamed write, which
  may last minutes: one of the URL invalidated is cancelled (nothing of it is stored), the others
  are left to run.
* ``drain()`` waits for every write in progress: call it before closing the storage.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Literal, TypeAlias, cast

from ..metrics.base import Recorder
from ..spec.snapshot import Snapshot, TruncatedBodyError
from ..spec.vary import vary_names
from ..storage.base import (
    Clock,
    OpensReadOnly,
    ReadsNowait,
    Storage,
    StorageUnavailableError,
    StoresStreams,
    StreamTooLargeError,
    WritesNowait,
)
from ..storage.records import UrlIndex, VaryPointer
from .indexes import UrlIndexes

__all__ = ["Writer"]

log = logging.getLogger("coalesce_client")

MAX_PENDING = 512 * 1024 * 1024  # bytes of responses whose writes may run behind the callers
RECORD_COST = 1024  # what a pending response costs beyond its body (an estimate: fields, task)
MAX_URLS = 10_000  # URLs whose index this process keeps a copy of; the least recent go first
MAX_KEYS = 256  # storage keys an index lists at most; the oldest go (and are deleted) first

Found: TypeAlias = Snapshot | VaryPointer
"""What a request's key may hold: a response, or the Vary pointer to its variants."""


class Writer:
    """Reads and writes of one storage for one coalescer (see the module rules)."""

    __slots__ = (
        "_background",
        "_clock",
        "_index_lock",
        "_indexes",
        "_logged",
        "_now",
        "_pending_bytes",
        "_pointers",
        "_room",
        "_streaming",
        "failure",
        "get_nowait",
        "max_variants",
        "pending",
        "recorder",
        "storage",
        "stored",
        "stores",
        "stream_limit",
    )

    def __init__(self, storage: Storage, clock: Clock, max_variants: int) -> None:
        self.storage = storage
        # Reads of a request's key (so a Found: module rules) when at hand (storage/base.py).
        self.get_nowait = (
            cast("Callable[[str], Found | None]", storage.get_nowait)
            if isinstance(storage, ReadsNowait)
            else None
        )
        # False for a storage opened read-only: nothing is written nor deleted (module rules).
        self.stores = not (isinstance(storage, OpensReadOnly) and storage.read_only)
        # The largest streamed body (Snapshot.stream) the storage takes; 0: it takes none.
        self.stream_limit = storage.stream_limit if isinstance(storage, StoresStreams) else 0
        now = storage if isinstance(storage, WritesNowait) and storage.writes_nowait else None
        self._now = now if self.stores else None  # writes and reads without waiting (rules)
        self.max_variants = max_variants
        self._clock = clock
        # Records whose write has not finished (key -> record), and the tasks writing them.
        self.pending: dict[str, Found] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._streaming: dict[asyncio.Future[None], str | None] = {}  # streamed writes: url key
        self._pending_bytes = 0  # what the running writes' responses cost (module rules)
        self._room: deque[asyncio.Future[None]] = deque()  # callers waiting for it to shrink
        self._pointers = asyncio.Lock()  # one Vary pointer update at a time (module rules)
        self._index_lock = asyncio.Lock()  # one URL index update at a time (module rules)
        # This process's copy of the URL indexes it wrote (indexes.py), read under _index_lock.
        self._indexes = UrlIndexes(clock, MAX_KEYS, MAX_URLS)
        self.stored = 0  # writes that succeeded
        self._logged: set[tuple[str, type[BaseException]]] = set()
        # "storage error" from the last failure until a write succeeds: the reason a leader gives
        # a response it hands to this writer (reasons.py), None while the storage works.
        self.failure: Literal["storage error"] | None = None
        self.recorder: Recorder | None = None  # the face's metrics (storage errors), or None

    async def read(self, key: str) -> Found | None:
        """What is stored for ``key`` (pending writes first), or None; a failure is a miss, and
        so is a URL index (module rules)."""
        found = self.pending.get(key)
        if found is not None:
            return found
        now = self._now  # get_nowait is all its get does: no coroutine (a miss reads so)
        try:
            record = now.get_nowait(key) if now is not None else await self.storage.get(key)
        except Exception as exc:
            self.failed("get", exc)
            return None
        # Not isinstance(record, UrlIndex): a response fails that only after a lookup of its
        # __class__, and a response is what a read finds.
        return record if isinstance(record, (Snapshot, VaryPointer)) else None

    def read_nowait(self, key: str) -> Found | None:
        """``read`` when it needs no waiting; None otherwise (then ``read`` decides)."""
        snap = self.pending.get(key)
        if snap is not None or self.get_nowait is None:
            return snap
        try:
            return self.get_nowait(key)
        except Exception:
            return None  # read() tries again, and logs what is wrong

    async def write(
        self,
        key: str,
        vkey: str | None,
        shared: Snapshot,
        ttl: float,
        url_key: str | None = None,
    ) -> None:
        """Store ``shared`` under ``key`` (or under its variant ``vkey``, with a pointer under
        ``key``), listed in the index of ``url_key`` when given, in the background; wait only
        while the running writes hold more than ``MAX_PENDING`` bytes (module rules)."""
        if self.write_nowait(key, vkey, shared, ttl, url_key):
            return
        if vkey is None:
            self.pending[key] = shared
        else:
            self.pending[vkey] = shared
            if key not in self.pending:  # reads meanwhile find their way to the variant
                names = vary_names(shared.headers)
                self.pending[key] = VaryPointer(
                    names, (vkey,), shared.url, shared.stored_at, shared.stored_at + ttl
                )
        task = asyncio.ensure_future(self._store(key, vkey, shared, ttl, url_key))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if shared.stream is not None:
            self._streaming[task] = url_key
            task.add_done_callback(self._streaming.pop)
        self._pending_bytes += _cost(shared)
        while self._pending_bytes > MAX_PENDING and not task.done():
            waiter = asyncio.get_running_loop().create_future()
            self._room.append(waiter)
            await waiter

    def write_nowait(
        self, key: str, vkey: str | None, shared: Snapshot, ttl: float, url_key: str | None
    ) -> bool:
        """``write`` without a coroutine when it waits for nothing (module rules): True if done."""
        if not self.stores or (shared.stream is not None and not self.stream_limit):
            return True
        now, busy = self._now, self._background or self._index_lock.locked()
        if now is not None and vkey is None and not busy:  # nothing to overtake (module rules)
            self._store_now(now, key, shared, ttl, url_key)
            return True
        return False

    async def delete(self, key: str) -> list[str]:
        """Drop ``key`` and every variant its pointer lists; return the variant keys dropped."""
        variants: list[str] = []
        try:
            found = await self.read(key)
            variants = list(found.variants) if isinstance(found, VaryPointer) else []
            for vkey in variants:
                self.pending.pop(vkey, None)
                await self._drop(vkey)
            self.pending.pop(key, None)
            await self._drop(key)
        except Exception as exc:
            self.failed("delete", exc)
        return variants

    async def settle(self) -> None:
        """Wait for the writes already running (only those: a busy process's later writes may
        never all end)."""
        running = tuple(self._background)
        if running:
            await asyncio.gather(*running, return_exceptions=True)

    async def drain(self) -> None:
        """Wait for the writes still running in the background (before closing the storage)."""
        while self._background:
            running = tuple(self._background)
            await asyncio.gather(*running, return_exceptions=True)
            # Python 3.12+: gather() of futures all done returns without yielding to the loop, so
            # the done callbacks that discard them have not run yet: drop them here, or spin.
            self._background.difference_update(running)

    async def _store(
        self, key: str, vkey: str | None, shared: Snapshot, ttl: float, url_key: str | None
    ) -> None:
        written = self.pending.get(key)
        try:
            if vkey is None:
                await self.storage.set(key, shared, ttl)
            else:
                await self.storage.set(vkey, shared, ttl)
                await self._point(key, vkey, shared, shared.stored_at + ttl)
        except (TruncatedBodyError, StreamTooLargeError) as exc:
            # Not stored, and not the storage's failure (module rules).
            log.debug("streamed response for %s not stored: %r", shared.url, exc)
        except Exception as exc:
            self.failed("set", exc)
        else:
            self._succeeded()
            if url_key is not None:
                try:
                    keys = (key,) if vkey is None else (key, vkey)
                    await self._index(url_key, keys, shared, shared.stored_at + ttl)
                except Exception as exc:
                    self.failed("index", exc)
        finally:
            # A newer write of a key may have replaced what we put there.
            for k, mine in ((key, written), (vkey, shared)):
                if k is not None and mine is not None and self.pending.get(k) is mine:
                    del self.pending[k]
            self._pending_bytes -= _cost(shared)
            while self._room and self._pending_bytes <= MAX_PENDING:
                waiter = self._room.popleft()
                if not waiter.done():  # a waiting caller that was cancelled is gone
                    waiter.set_result(None)

    async def _point(self, key: str, vkey: str, shared: Snapshot, until: float) -> None:
        """Add ``vkey`` to the pointer under ``key``, newest last; the oldest past the bound go."""
        names = vary_names(shared.headers)
        async with self._pointers:
            current = await self.storage.get(key)
            variants: tuple[str, ...] = ()
            expires_at = until  # the pointer lasts as long as its variants are stored
            if isinstance(current, VaryPointer) and current.names == names:
                variants = tuple(v for v in current.variants if v != vkey)
                expires_at = max(expires_at, current.expires_at)
            variants += (vkey,)
            excess = len(variants) - self.max_variants
            for old in variants[:excess] if excess > 0 else ():
                await self._drop(old)
            variants = variants[max(excess, 0) :]
            now = self._clock()
            pointer = VaryPointer(names, variants, shared.url, now, expires_at)
            await self.storage.set(key, pointer, expires_at - now)

    async def _index(
        self, url_key: str, keys: tuple[str, ...], shared: Snapshot, until: float
    ) -> None:
        """Add ``keys`` to the index of ``url_key`` (module rules, ``indexes.py``)."""
        async with self._index_lock:
            current = await self.storage.get(url_key)
            update = self._indexes.add(url_key, keys, current, shared.url, until)
            for old in update.dropped:
                self.pending.pop(old, None)
                await self._drop(old)
            if update.record is not None:
                await self.storage.set(url_key, update.record, update.ttl)

    def _store_now(
        self, now: WritesNowait, key: str, shared: Snapshot, ttl: float, url_key: str | None
    ) -> None:
        """``_store`` of a response without Vary to a storage that writes without waiting
        (module rules), its index with it: the same steps, none of them awaited."""
        try:
            now.set_nowait(key, shared, ttl)
        except Exception as exc:
            self.failed("set", exc)
            return
        self._succeeded()
        if url_key is None:
            return
        try:
            current = now.get_nowait(url_key)
            update = self._indexes.add(url_key, (key,), current, shared.url, shared.stored_at + ttl)
            for old in update.dropped:
                self.pending.pop(old, None)
                now.delete_nowait(old)
            if update.record is not None:
                now.set_nowait(url_key, update.record, update.ttl)
        except Exception as exc:
            self.failed("index", exc)

    def _succeeded(self) -> None:
        self.stored += 1
        self.failure = None

    async def delete_url(self, url_key: str) -> list[str]:
        """Drop every entry the index of ``url_key`` lists (Vary variants included) and the index
        itself; return the storage keys dropped."""
        # A body still arriving for this URL is not stored; other streamed writes run on.
        cancelled = [t for t, url in self._streaming.items() if url == url_key and t.cancel()]
        running = (*(t for t in self._background if t not in self._streaming), *cancelled)
        if running:  # module rules: what is being stored now is indexed before we read
            await asyncio.gather(*running, return_exceptions=True)
        dropped: list[str] = []
        async with self._index_lock:
            try:
                current = await self.storage.get(url_key)
            except Exception as exc:
                self.failed("get", exc)
                current = None
            mine = self._indexes.pop(url_key)
            listed = current.keys if isinstance(current, UrlIndex) else ()
            for key in dict.fromkeys(listed + mine):
                dropped.append(key)
                dropped.extend(await self.delete(key))
            try:
                await self._drop(url_key)
            except Exception as exc:
                self.failed("delete", exc)
        return dropped

    async def _drop(self, key: str) -> None:
        if self.stores:  # a read-only storage keeps what it has (module rules)
            await self.storage.delete(key)

    def forget_indexes(self) -> None:
        """Forget this process's copy of the indexes (the storage was cleared)."""
        self._indexes.clear()

    def failed(self, op: str, exc: Exception) -> None:
        self.failure = "storage error"
        if self.recorder is not None:
            self.recorder.storage_error(type(self.storage).__name__, op)
        kind = (op, type(exc))
        if kind in self._logged or isinstance(exc, StorageUnavailableError):  # logged by it
            log.debug("storage %s failed again: %r", op, exc)
            return
        self._logged.add(kind)
        log.warning(
            "storage %s failed (%s: %s); going on without storage for this call. "
            "Later failures of this kind are logged at DEBUG.",
            op,
            type(exc).__name__,
            exc,
        )


def _cost(shared: Snapshot) -> int:
    """What a pending response costs while its write runs (module rules): a streamed one's
    body is not in ``body``, so it counts ``RECORD_COST`` only."""
    return len(shared.body) + RECORD_COST
