"""MemoryStorage: an in-process LRU of stored records, bounded by entries and by bytes.

Rules of this module:

* The byte count is what an entry really costs this process (issue 11), so that the memory the
  storage holds stays within ``max_bytes`` and the process grows by at most about 1.5 x
  ``max_bytes`` whatever the entries look like. ``entry_cost`` is the one formula; it runs once
  per ``set``, and the result is kept with the entry, so a hit and an eviction never recompute it.
* An object an entry shares with others (a literal header name, the empty body of a redirect) is
  counted in full for each: the count may overshoot what the process holds, never fall short.
* Every kind of record (``records.py``) is kept and counted alike; ``entries()`` lists the
  responses only.
* It takes no streamed response (``Snapshot.stream``, issue 24: it is not ``StoresStreams``): the
  coalescer never hands it one, and ``TieredStorage`` keeps them out of its front. A body too
  large for ``max_body_size`` is what memory must not hold.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import AsyncIterator
from itertools import chain

from ..options import check_callable, check_count
from ..spec.snapshot import Snapshot
from .base import Clock, StorageBase, wall_clock
from .records import Record, UrlIndex, VaryPointer

__all__ = ["MemoryStorage", "entry_cost"]

# What an entry costs, measured with sys.getsizeof and checked against tracemalloc on CPython 3.10
# to 3.13 (tests/test_storage_memory.py holds the count to what tracemalloc sees, within 2%):
#
#   entry_cost    = key + ENTRY + snapshot_cost(response)
#                   + (history tuple + the sum of snapshot_cost(hop), when there are redirects)
#   snapshot_cost = SNAPSHOT + body + headers tuple + PAIR x headers
#                   + reason + url + method + every header name and value
#
# and for a Vary pointer or a URL index, key + ENTRY + POINTER or INDEX (the object and its two
# float times) + url + each tuple of strings and every string in it,
#
# where a variable part is what sys.getsizeof says of the object (a bytes is 33 bytes plus its
# length, a tuple 40 plus 8 an item, a str 40 to 80 plus 1, 2 or 4 a character), and the constants
# are these (CPython 3.11, 64-bit: SNAPSHOT 180, PAIR 56, ENTRY 288, 320 on 3.10).
_size = sys.getsizeof
_float = _size(0.0)
# The Snapshot object (16 bytes of GC header, 9 slots) with its two float times and a status
# outside the small-int cache.
_SNAPSHOT = _size(Snapshot(1000, "", (), "", "", b"")) + 2 * _float + _size(1000)
_PAIR = _size(("", ""))  # one (name, value) tuple
# The OrderedDict's slot at its worst, just after it grew (the table holds up to 6 slots an entry
# then, and a churning LRU sits there): 4 dict entries of 16 bytes (24 before 3.11, whose dicts of
# str keys kept the hash), 6 one-entry indices of 4 bytes and 6 fast-node pointers of 8, and the
# 32-byte linked node. Measured with tracemalloc: 168 bytes an entry on 3.11 to 3.13, 200 on 3.10,
# with keys added and evicted at table sizes from 1,000 to 100,000 entries.
_SLOT = 32 + 6 * (4 + 8) + 4 * (16 if sys.version_info >= (3, 11) else 24)
# The storage's own bookkeeping: the slot, the (snapshot, expiry, cost) tuple, the expiry float
# and the cost int.
_ENTRY = _SLOT + _size((None, 0.0, 0)) + _float + _size(2**40)
# The fast path: sys.getsizeof costs about 100 ns a call, and a response has dozens of strings.
# An ASCII str (nearly every URL and header) is _ASCII bytes plus one a character, so the strings
# of a snapshot are counted at once, joined; anything else is asked of sys.getsizeof one by one.
_ASCII = _size("")
_TUPLE = _size(())
_PTR = _size((None,)) - _TUPLE
_SNAPSHOT_ASCII = _SNAPSHOT + _size(b"") + _TUPLE + 3 * _ASCII  # reason, url, method
_HEADER_ASCII = _PTR + _PAIR + 2 * _ASCII  # name and value
_POINTER = _size(VaryPointer((), (), "", 0.0, 0.0)) + 2 * _float
_INDEX = _size(UrlIndex((), "", 0.0, 0.0)) + 2 * _float

_flatten = chain.from_iterable


def _snapshot_cost(snap: Snapshot) -> int:
    headers = snap.headers
    text = "".join([snap.reason, snap.url, snap.method, *_flatten(headers)])
    if text.isascii():
        return _SNAPSHOT_ASCII + len(snap.body) + _HEADER_ASCII * len(headers) + len(text)
    return (
        _SNAPSHOT
        + _size(snap.body)
        + _size(headers)
        + _PAIR * len(headers)
        + _size(snap.reason)
        + _size(snap.url)
        + _size(snap.method)
        + sum(map(_size, _flatten(headers)))
    )


def _text_cost(text: str) -> int:
    return _ASCII + len(text) if text.isascii() else _size(text)


def _texts_cost(texts: tuple[str, ...]) -> int:
    """A tuple of strings and the strings."""
    joined = "".join(texts)
    if joined.isascii():
        return _TUPLE + (_PTR + _ASCII) * len(texts) + len(joined)
    return _size(texts) + sum(map(_size, texts))


def entry_cost(key: str, record: Record) -> int:
    """The bytes that keeping ``record`` under ``key`` costs a MemoryStorage: body, headers, URL
    and other strings, redirect history, the objects holding them and the storage's bookkeeping.

    A response of four bytes costs about a kilobyte, kept under a 64-character key:

    >>> snap = Snapshot(200, "OK", (("Content-Type", "text/plain"),), "http://x/", "GET", b"body")
    >>> 900 < entry_cost("0" * 64, snap) < 1100
    True
    """
    cost = _ENTRY + _text_cost(key)
    if isinstance(record, Snapshot):
        cost += _snapshot_cost(record)
        history = record.history
        if history:
            cost += _TUPLE + _PTR * len(history) + sum(map(_snapshot_cost, history))
        return cost
    if isinstance(record, VaryPointer):
        lists = _texts_cost(record.names) + _texts_cost(record.variants)
        return cost + _POINTER + _text_cost(record.url) + lists
    return cost + _INDEX + _text_cost(record.url) + _texts_cost(record.keys)


class MemoryStorage(StorageBase):
    """Least-recently-used storage in memory. A stored body is kept once and shared by every hit.
    ``entries()`` lists the stored responses, least recently used first.

    >>> import asyncio
    >>> from coalesce_client import Snapshot
    >>> store = MemoryStorage(max_entries=2)
    >>> snap = Snapshot(200, "OK", (), "http://x/", "GET", b"body")
    >>> asyncio.run(store.set("k", snap, ttl=60))
    >>> asyncio.run(store.get("k")) is snap
    True

    Raises:
        ValueError: ``max_entries`` or ``max_bytes`` is not a whole number (naming it).
        StorageClosedError: an operation after ``close()``.
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
        # Most bytes kept, as entry_cost counts them; an entry larger is not kept.
        self.max_bytes = check_count(max_bytes, "max_bytes", minimum=1)
        self._clock: Clock = check_callable(clock, "clock")
        # key -> (record, expiry on self._clock, entry_cost); the end of the dict is the most
        # recent.
        self._entries: OrderedDict[str, tuple[Record, float, int]] = OrderedDict()
        self._bytes = 0

    async def get(self, key: str) -> Record | None:
        return self.get_nowait(key)

    def get_nowait(self, key: str) -> Record | None:
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

    async def set(self, key: str, value: Record, ttl: float) -> None:
        self.set_nowait(key, value, ttl)

    def set_nowait(self, key: str, value: Record, ttl: float) -> None:
        """``set`` without a coroutine: the coalescer's write of a miss (see storage/base.py)."""
        if self._closed:  # a miss's path: the check costs one attribute read
            self._check_open()
        if key in self._entries:
            self._drop(key)
        size = entry_cost(key, value)
        if not ttl > 0 or size > self.max_bytes:  # NaN never stored either
            return
        self._entries[key] = (value, self._clock() + ttl, size)
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            oldest = next(iter(self._entries))
            self._drop(oldest)

    async def delete(self, key: str) -> None:
        self.delete_nowait(key)

    def delete_nowait(self, key: str) -> None:
        """``delete`` without a coroutine (see storage/base.py)."""
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

    def entries(self) -> AsyncIterator[tuple[str, Snapshot]]:
        """``async for key, response in storage.entries()``: the stored responses with their keys,
        least recently used first, expired ones included until a read drops them; never a Vary
        pointer or a URL index. What is stored meanwhile is not listed; nothing is refreshed."""
        self._check_open()
        return _responses(list(self._entries.items()))

    @property
    def writes_nowait(self) -> bool:
        """True unless a subclass changed ``set``, ``delete`` or ``get`` (storage/base.py): the
        coalescer then calls them, and they may wait or fail as they please."""
        cls = type(self)
        own = MemoryStorage
        return cls.set is own.set and cls.delete is own.delete and cls.get is own.get

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        """Bytes held now: the sum of the entries' ``entry_cost``."""
        return self._bytes

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"entries={len(self._entries)} bytes={self._bytes}"
        return f"<MemoryStorage {state} max_entries={self.max_entries} max_bytes={self.max_bytes}>"

    def _drop(self, key: str) -> None:
        _, _, size = self._entries.pop(key)
        self._bytes -= size


async def _responses(
    items: list[tuple[str, tuple[Record, float, int]]],
) -> AsyncIterator[tuple[str, Snapshot]]:
    for key, (record, _, _) in items:
        if isinstance(record, Snapshot):
            yield key, record
