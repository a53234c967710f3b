"""TieredStorage: a fast storage (memory) in front of a slower one (disk, later Redis).

Rules of this module:

* Reads try the front, then the back; a back hit refills the front with what is left of the back
  entry's TTL, so the front never outlives the back's expiry. The back's own expiry is used when it
  can tell it (``ReadsExpiry``, as ``DiskStorage`` can), else the record's ``expires_at`` (every
  kind of record has one). A front that ``ReadsNowait`` makes this
  storage read without waiting too.
* Writes go to the front, then to the back: the front's expiry is computed first, so it is never
  later than the back's. A failing back write raises (the coalescer logs it); the front keeps the
  response for its TTL.
* Deletes and clears go to the back first, then the front, so that a read running meanwhile can
  not refill the front with what was just removed. A refill whose back read overlapped any write
  of this storage is skipped.
* A back shared by processes that reports their deletes (``PublishesDrops``, ``RedisStorage``)
  makes every process drop the key from its own front too, counted as a write of this storage so
  that a refill racing it is skipped.
* A response whose body streams (``Snapshot.stream``, issue 24) never enters the front: it is
  written to the back alone (its older copy dropped from the front first), and a back hit on one
  does not refill the front. So it takes streams when its back does, up to the back's
  ``stream_limit`` (0, none, when the back takes none).
* It ``Fronts`` its back: what the back can do for a fleet (``SharesFlights``) is found through
  ``back``, not by knowing this class.
"""

from __future__ import annotations

import asyncio

from ..options import check_callable
from ..spec.snapshot import Snapshot
from .base import (
    Clock,
    PublishesDrops,
    ReadsExpiry,
    ReadsNowait,
    Storage,
    StorageBase,
    StoresStreams,
    wall_clock,
)
from .records import Record

__all__ = ["TieredStorage"]


class TieredStorage(StorageBase):
    """A small, fast ``front`` (usually ``MemoryStorage``) before a slower ``back``.

    >>> import asyncio
    >>> from coalesce_client import Snapshot
    >>> from coalesce_client.storage import MemoryStorage
    >>> front, back = MemoryStorage(), MemoryStorage()
    >>> store = TieredStorage(front, back)
    >>> snap = Snapshot(200, "OK", (), "http://x/", "GET", b"body", 0.0, 1e11)
    >>> asyncio.run(back.set("k", snap, ttl=60))  # as if stored by an earlier run
    >>> asyncio.run(store.get("k")) is snap, len(front)  # a back hit refills the front
    (True, 1)

    Closing it closes both.

    Raises:
        ValueError: ``front`` or ``back`` is not a storage, or both are the same one.
        StorageClosedError: an operation after ``close()``.
    """

    __slots__ = (
        "_back_expiry",
        "_back_streams",
        "_clock",
        "_dropping",
        "_front_nowait",
        "_writes",
        "back",
        "front",
    )

    def __init__(self, front: Storage, back: Storage, *, clock: Clock = wall_clock) -> None:
        for name, value in (("front", front), ("back", back)):
            if not isinstance(value, Storage):
                raise ValueError(f"{name} must implement the Storage protocol, got {value!r}")
        if front is back:
            raise ValueError("front and back must be two different storages")
        super().__init__()
        self._clock: Clock = check_callable(clock, "clock")
        self.front = front  # read first, refilled from the back
        self.back = back  # the storage of record
        # The optional abilities this storage builds on, found once (storage/base.py).
        self._front_nowait = front if isinstance(front, ReadsNowait) else None
        self._back_expiry = back if isinstance(back, ReadsExpiry) else None
        self._back_streams = back if isinstance(back, StoresStreams) else None
        self._writes = 0  # bumped by every set, delete and clear: a refill racing one is skipped
        self._dropping: set[asyncio.Future[None]] = set()  # fronts' drops heard from the back
        if isinstance(back, PublishesDrops):
            back.on_drop(self._dropped)

    def _dropped(self, key: str | None) -> None:
        """Another process (or this one) deleted ``key`` from the back (None: cleared it)."""
        if self._closed:
            return
        self._writes += 1
        task = asyncio.ensure_future(self.front.clear() if key is None else self.front.delete(key))
        self._dropping.add(task)
        task.add_done_callback(self._drop_done)

    def _drop_done(self, task: asyncio.Future[None]) -> None:
        self._dropping.discard(task)
        if not task.cancelled():
            task.exception()  # a closed front: nothing left to drop

    @property
    def stream_limit(self) -> int:
        """The back's ``stream_limit`` (``StoresStreams``), 0 if it takes no streams."""
        back = self._back_streams
        return 0 if back is None else back.stream_limit

    def get_nowait(self, key: str) -> Record | None:
        """The front's entry, if the front can tell without waiting; else None (then ``get``)."""
        if self._closed:
            self._check_open()
        front = self._front_nowait
        return None if front is None else front.get_nowait(key)

    async def get(self, key: str) -> Record | None:
        self._check_open()
        record = await self.front.get(key)
        if record is not None:
            return record
        writes = self._writes
        if self._back_expiry is not None:
            entry = await self._back_expiry.get_with_expiry(key)
            if entry is None:
                return None
            record, expires_at = entry
        else:
            record = await self.back.get(key)
            if record is None:
                return None
            expires_at = record.expires_at
        remaining = expires_at - self._clock()
        if remaining > 0 and writes == self._writes and not _streams(record):
            await self.front.set(key, record, remaining)
        return record

    async def set(self, key: str, value: Record, ttl: float) -> None:
        self._check_open()
        self._writes += 1
        if _streams(value):  # the back's alone (module rules)
            await self.front.delete(key)
        else:
            await self.front.set(key, value, ttl)
        await self.back.set(key, value, ttl)

    async def delete(self, key: str) -> None:
        self._check_open()
        self._writes += 1
        await self.back.delete(key)
        await self.front.delete(key)

    async def clear(self) -> None:
        self._check_open()
        self._writes += 1
        await self.back.clear()
        await self.front.clear()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self.front.close()
        finally:
            await self.back.close()

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<TieredStorage front={self.front!r} back={self.back!r}{state}>"


def _streams(record: Record) -> bool:
    """Whether ``record`` is a response whose body streams (module rules)."""
    return isinstance(record, Snapshot) and record.stream is not None
