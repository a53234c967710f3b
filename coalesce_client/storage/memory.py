"""MemoryStorage: an in-process LRU of snapshots, bounded by entries and by bytes."""

from __future__ import annotations

from collections import OrderedDict

from ..options import check_callable, check_count
from ..snapshot import Snapshot
from .base import Clock, StorageBase, wall_clock

__all__ = ["MemoryStorage"]


class MemoryStorage(StorageBase):
    """Least-recently-used storage in memory. A stored body is kept once and shared by every hit.

    >>> import asyncio
    >>> from coalesce_client.snapshot import Snapshot
    >>> store = MemoryStorage(max_entries=2)
    >>> snap = Snapshot(200, "OK", (), "http://x/", "GET", b"body")
    >>> asyncio.run(store.set("k", snap, ttl=60))
    >>> asyncio.run(store.get("k")) is snap
    True
    """

    __slots__ = ("_bytes", "_clock", "_entries", "max_bytes", "max_entries")

    def __init__(
        self,
        max_entries: int = 10_000,
        max_bytes: int = 256 * 1024 * 1024,
        *,
        clock: Clock = wall_clock,
    ) -> None:
        super().__init__()
        # Most entries kept; the least recently used go first.
        self.max_entries = check_count(max_entries, "max_entries", minimum=1, unit="entries")
        # Most bytes kept (Snapshot.size); an entry larger is not kept.
        self.max_bytes = check_count(max_bytes, "max_bytes", minimum=1)
        self._clock: Clock = check_callable(clock, "clock")
        # key -> (snapshot, expiry on self._clock, size); the end of the dict is the most recent.
        self._entries: OrderedDict[str, tuple[Snapshot, float, int]] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str) -> Snapshot | None:
        return self.get_nowait(key)

    def get_nowait(self, key: str) -> Snapshot | None:
        """``get`` without waiting: the coalescer's fast path for a hit (see storage/base.py)."""
        if self._closed:  # the hot path of a hit: the check costs one attribute read
            self._check_open()
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[1] <= self._clock():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry[0]

    async def set(self, key: str, value: Snapshot, ttl: float) -> None:
        self._check_open()
        if key in self._entries:
            self._drop(key)
        size = value.size
        if not ttl > 0 or size > self.max_bytes:  # NaN never stored either
            return
        self._entries[key] = (value, self._clock() + ttl, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    async def delete(self, key: str) -> None:
        self._check_open()
        if key in self._entries:
            self._drop(key)

    async def clear(self) -> None:
        self._check_open()
        self._entries.clear()
        self._bytes = 0

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0
        self._closed = True

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Bytes held now (the sum of the entries' ``Snapshot.size``)."""
        return self._bytes

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"entries={len(self._entries)} bytes={self._bytes}"
        return f"<MemoryStorage {state} max_entries={self.max_entries} max_bytes={self.max_bytes}>"

    def _drop(self, key: str) -> None:
        _, _, size = self._entries.pop(key)
        self._bytes -= size
