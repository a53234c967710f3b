"""The storage protocol: where stored records live between flights.

Rules: keys are the hex digests made by ``keys.py``; values are immutable records
(``records.Record``: a response, a Vary pointer or a URL index), kept alike by every backend. A
backend that keeps bytes outside the process encodes them with ``codec.encode`` (never pickle) and
treats anything it cannot decode as a miss. ``ttl`` is in seconds from now; a backend never
returns an entry past its expiry. Every backend passes ``tests/test_storage_contract.py``.

Optional abilities are small ``runtime_checkable`` protocols, checked once with ``isinstance`` when
a storage is handed over (never looked up with ``getattr``, where a misspelt name silently turns a
fast path off):

* ``ReadsNowait``: ``get_nowait(key)``, the same answer as ``get`` when the backend has one at hand,
  without waiting (None when it would have to wait or has none). The coalescer then serves hits
  without a trip through coroutines; None always falls back to ``get``.
* ``WritesNowait``: ``set_nowait`` and ``delete_nowait``, ``set`` and ``delete`` done at once,
  without waiting (a storage in this process's memory), when ``writes_nowait`` is True (False:
  ``set``, ``delete`` or ``get`` do more, in a subclass, and must be called). The coalescer then
  writes a response and its URL index in the flight that got it, without a task (issue 20).
* ``ReadsExpiry``: ``get_with_expiry(key)``, the entry and its absolute expiry on the storage's
  clock; ``TieredStorage`` refills its front with what is left of it.
* ``Lists``: ``entries()``, the stored responses with their keys (never a Vary pointer or a URL
  index), for maintenance and for people.
* ``SharesFlights``: a storage shared by processes that can run one flight per key among them
  (issue 14, ``RedisStorage``): a lease per key, taken, renewed and released with a random token,
  and the outcome published to the processes that watch the key. ``core/fleet.py`` holds the
  algorithm; the coalescer uses it when its storage has it, or the storage it ``Fronts`` does.
  Every method may raise when the shared store is unreachable: the fleet then goes on locally.
* ``Fronts``: a storage in front of another one (``TieredStorage``), which names its ``back``, the
  storage of record: the abilities of the back (sharing flights) are the whole storage's.
* ``PublishesDrops``: a shared storage that tells every process about keys deleted (and clears)
  by any of them, so that ``TieredStorage`` drops its front's copy.
* ``StoresStreams``: a storage that stores a response whose body streams (``Snapshot.stream``) as
  it arrives, up to its ``stream_limit`` (issue 24); other storages are never handed one. A body
  that grows past the limit makes its ``set`` raise ``StreamTooLargeError``, and one that ends
  short ``TruncatedBodyError``: neither is a failure of the storage, and nothing is stored.
* ``OpensReadOnly``: a storage that may have been opened for reading only (``read_only`` True):
  the coalescer then stores and deletes nothing there, and says nothing about it (issue 19: its
  refused writes were logged as failures).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol, runtime_checkable

from ..spec.snapshot import Snapshot
from .records import Record

__all__ = [
    "Clock",
    "Fronts",
    "Lists",
    "OpensReadOnly",
    "PublishesDrops",
    "ReadsExpiry",
    "ReadsNowait",
    "SharesFlights",
    "Storage",
    "StorageBase",
    "StorageClosedError",
    "StorageUnavailableError",
    "StoresStreams",
    "StreamTooLargeError",
    "WritesNowait",
    "wall_clock",
]

Clock = Callable[[], float]
"""Returns wall-clock seconds; tests pass a fake one to move time without sleeping."""

wall_clock: Clock = time.time


class StorageClosedError(RuntimeError):
    """A storage was used after ``close()``."""


class StorageUnavailableError(ConnectionError):
    """A storage shared over the network cannot be reached now. The storage has logged the
    outage itself (once); whoever catches this goes on without storage and need not log it."""


class StreamTooLargeError(ValueError):
    """A streamed body grew past the ``stream_limit`` of the storage it was handed to (issue 24):
    nothing was stored, and nothing is left under its key (as for any entry over a storage's
    bound). Not a failure of the storage: the coalescer says so at DEBUG only."""


@runtime_checkable
class Storage(Protocol):
    """An async key-value store of records (responses and their bookkeeping), with a
    time-to-live per entry."""

    async def get(self, key: str) -> Record | None:
        """The entry for ``key``, or None when absent or expired."""
        ...

    async def set(self, key: str, value: Record, ttl: float) -> None:
        """Keep ``value`` under ``key`` for ``ttl`` seconds, replacing what was there."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        ...

    async def clear(self) -> None:
        """Remove every entry."""
        ...

    async def close(self) -> None:
        """Release resources; later calls raise StorageClosedError. Closing twice is allowed."""
        ...


@runtime_checkable
class ReadsNowait(Protocol):
    """A storage that can answer a read without waiting (see the module rules)."""

    def get_nowait(self, key: str) -> Record | None:
        """The entry for ``key`` if at hand now; None when absent, expired, or it would wait."""
        ...


@runtime_checkable
class WritesNowait(ReadsNowait, Protocol):
    """A storage that reads, writes and deletes without waiting (see the module rules)."""

    @property
    def writes_nowait(self) -> bool:
        """Are ``set_nowait``, ``delete_nowait`` and ``get_nowait`` all that ``set``,
        ``delete`` and ``get`` do?"""
        ...

    def set_nowait(self, key: str, value: Record, ttl: float) -> None:
        """``set``, done before it returns."""
        ...

    def delete_nowait(self, key: str) -> None:
        """``delete``, done before it returns."""
        ...


@runtime_checkable
class ReadsExpiry(Protocol):
    """A storage that can tell when an entry expires (see the module rules)."""

    async def get_with_expiry(self, key: str) -> tuple[Record, float] | None:
        """The entry for ``key`` and its absolute expiry on the storage's clock, or None."""
        ...


@runtime_checkable
class Lists(Protocol):
    """A storage that can list its responses (see the module rules)."""

    def entries(self) -> AsyncIterator[tuple[str, Snapshot]]:
        """``async for key, response in storage.entries()``: every stored response with its key,
        expired ones included while the storage still holds them; never a bookkeeping record."""
        ...


@runtime_checkable
class SharesFlights(Protocol):
    """A storage whose flights are shared by every process using it (see the module rules)."""

    lease_ttl: float  # seconds a lease lasts unless renewed

    async def acquire(self, key: str, token: str) -> bool:
        """Take the lease of ``key`` for ``lease_ttl``, if nobody holds it; True if taken."""
        ...

    async def renew(self, key: str, token: str) -> bool:
        """Extend the lease to ``lease_ttl`` from now if ``token`` still holds it."""
        ...

    async def release(self, key: str, token: str, outcome: bytes) -> bool:
        """Publish ``outcome`` to the watchers of ``key`` (``b"stored"`` only if an entry is
        stored under ``key``, else ``b"released"``: one watcher takes the lease over) and drop
        the lease if ``token`` holds it, at once: no watcher sees the lease gone before the
        publication is sent."""
        ...

    async def leased(self, key: str) -> bool:
        """Does anybody hold the lease of ``key``?"""
        ...

    async def watch(self, key: str) -> asyncio.Future[bytes]:
        """A future for the next outcome published for ``key``, registered before this returns.
        Give it back with ``unwatch``."""
        ...

    def unwatch(self, key: str, waiter: asyncio.Future[bytes]) -> None: ...


@runtime_checkable
class Fronts(Protocol):
    """A storage in front of another one (see the module rules)."""

    @property
    def back(self) -> Storage:
        """The storage behind this one: the storage of record."""
        ...


@runtime_checkable
class PublishesDrops(Protocol):
    """A shared storage that reports keys deleted by any process (see the module rules)."""

    def on_drop(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(key)`` for each key deleted anywhere, ``callback(None)`` for a clear."""
        ...


@runtime_checkable
class StoresStreams(Protocol):
    """A storage that takes a response whose body streams (``Snapshot.stream``, issue 24).

    Its ``set`` of such a response reads the body as it arrives (its own ``BodyReader``), never
    holding it whole, and commits the entry only once the body is complete: a body that ends
    short (``TruncatedBodyError``, raised by its ``set``) leaves nothing stored, and so does one
    that grows past ``stream_limit`` (``StreamTooLargeError``). Its ``get`` may answer with a
    streamed response too, read from storage as its reader asks.
    """

    @property
    def stream_limit(self) -> int:
        """The largest streamed body it stores, in bytes."""
        ...


@runtime_checkable
class OpensReadOnly(Protocol):
    """A storage that may be read-only (see the module rules)."""

    read_only: bool  # True: it is read, never written; its writes raise PermissionError


class StorageBase:
    """What every backend of this package shares: the closed state and its one check."""

    __slots__ = ("_closed",)

    def __init__(self) -> None:
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise StorageClosedError(f"{type(self).__name__} is closed")
