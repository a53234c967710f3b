"""Storage behind the flights: the writes in progress, Vary pointers, failures logged once.

Rules of this module (part of the framework-free core):

* A flight does not wait long for its storage write (a disk locked by another process): the
  write runs as a task of its own, and until it ends the snapshot is *pending*: every read of
  this process finds it there, so no second flight starts for a key that is being stored.
* Storage is an optimisation, never a point of failure: an exception from it is logged (once per
  operation and exception type, then at DEBUG) and the caller goes on as if nothing was stored.
* Vary pointers (``vary.py``) are updated one at a time in the process (a lock), so a pointer
  lists every variant this process stored, at most ``max_variants``, the oldest dropped first.
  Processes sharing one storage may each lose the other's latest variant from the list (it
  stays readable through the names; it just is not dropped by an invalidation).
* ``drain()`` waits for every write in progress: call it before closing the storage.
"""

from __future__ import annotations

import asyncio
import logging

from .snapshot import Snapshot
from .storage.base import Clock, ReadsNowait, Storage
from .vary import pointer, read_pointer, vary_names

__all__ = ["Writer"]

log = logging.getLogger("coalesce_client")

STORE_WAIT = 0.05  # seconds a flight waits for its storage write before answering anyway


class Writer:
    """Reads and writes of one storage for one coalescer (see the module rules)."""

    __slots__ = (
        "_background",
        "_clock",
        "_logged",
        "_pointers",
        "get_nowait",
        "max_variants",
        "pending",
        "storage",
        "stored",
    )

    def __init__(self, storage: Storage, clock: Clock, max_variants: int) -> None:
        self.storage = storage
        # Reads without a coroutine, when the storage can answer without waiting (storage/base).
        self.get_nowait = storage.get_nowait if isinstance(storage, ReadsNowait) else None
        self.max_variants = max_variants
        self._clock = clock
        # Snapshots whose write has not finished (key -> snapshot), and the tasks writing them.
        self.pending: dict[str, Snapshot] = {}
        self._background: set[asyncio.Future[None]] = set()
        self._pointers = asyncio.Lock()  # one Vary pointer update at a time (module rules)
        self.stored = 0  # writes that succeeded
        self._logged: set[tuple[str, type[BaseException]]] = set()

    async def read(self, key: str) -> Snapshot | None:
        """What is stored for ``key`` (pending writes first), or None; a failure is a miss."""
        snap = self.pending.get(key)
        if snap is not None:
            return snap
        try:
            return await self.storage.get(key)
        except Exception as exc:
            self.failed("get", exc)
            return None

    def read_nowait(self, key: str) -> Snapshot | None:
        """``read`` when it needs no waiting; None otherwise (then ``read`` decides)."""
        snap = self.pending.get(key)
        if snap is not None or self.get_nowait is None:
            return snap
        try:
            return self.get_nowait(key)
        except Exception:
            return None  # read() tries again, and logs what is wrong

    async def write(self, key: str, vkey: str | None, shared: Snapshot, ttl: float) -> None:
        """Store ``shared`` under ``key`` (or under its variant ``vkey``, with a pointer under
        ``key``), waiting at most ``STORE_WAIT``; the rest finishes in the background."""
        if vkey is None:
            self.pending[key] = shared
        else:
            self.pending[vkey] = shared
            if key not in self.pending:  # reads meanwhile find their way to the variant
                names = vary_names(shared.headers)
                self.pending[key] = pointer(
                    names, (vkey,), shared.url, shared.stored_at, shared.expires_at
                )
        task = asyncio.ensure_future(self._store(key, vkey, shared, ttl))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        await asyncio.wait((task,), timeout=STORE_WAIT)

    async def delete(self, key: str) -> list[str]:
        """Drop ``key`` and every variant its pointer lists; return the variant keys dropped."""
        variants: list[str] = []
        try:
            snap = await self.read(key)
            listed = read_pointer(snap) if snap is not None else None
            variants = list(listed[1]) if listed else []
            for vkey in variants:
                self.pending.pop(vkey, None)
                await self.storage.delete(vkey)
            self.pending.pop(key, None)
            await self.storage.delete(key)
        except Exception as exc:
            self.failed("delete", exc)
        return variants

    async def drain(self) -> None:
        """Wait for the writes still running in the background (before closing the storage)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def _store(self, key: str, vkey: str | None, shared: Snapshot, ttl: float) -> None:
        written = self.pending.get(key)
        try:
            if vkey is None:
                await self.storage.set(key, shared, ttl)
            else:
                await self.storage.set(vkey, shared, ttl)
                await self._point(key, vkey, shared)
        except Exception as exc:
            self.failed("set", exc)
        else:
            self.stored += 1
        finally:
            # A newer write of a key may have replaced what we put there.
            for k, mine in ((key, written), (vkey, shared)):
                if k is not None and mine is not None and self.pending.get(k) is mine:
                    del self.pending[k]

    async def _point(self, key: str, vkey: str, shared: Snapshot) -> None:
        """Add ``vkey`` to the pointer under ``key``, newest last; the oldest past the bound go."""
        names = vary_names(shared.headers)
        async with self._pointers:
            current = await self.storage.get(key)
            listed = read_pointer(current) if current is not None else None
            variants: tuple[str, ...] = ()
            expires_at = shared.expires_at
            if listed is not None and listed[0] == names:
                assert current is not None
                variants = tuple(v for v in listed[1] if v != vkey)
                expires_at = max(expires_at, current.expires_at)
            variants += (vkey,)
            excess = len(variants) - self.max_variants
            for old in variants[:excess] if excess > 0 else ():
                await self.storage.delete(old)
            variants = variants[max(excess, 0) :]
            now = self._clock()
            record = pointer(names, variants, shared.url, now, expires_at)
            await self.storage.set(key, record, expires_at - now)

    def failed(self, op: str, exc: Exception) -> None:
        kind = (op, type(exc))
        if kind in self._logged:
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
