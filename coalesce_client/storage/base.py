"""The storage protocol: where stored responses live between flights.

Rules: keys are the hex digests made by ``keys.py``; values are immutable ``Snapshot`` objects. A
backend that keeps bytes outside the process encodes them with ``snapshot.encode`` (never pickle)
and treats anything it cannot decode as a miss. ``ttl`` is in seconds from now; a backend never
returns an entry past its expiry. Every backend passes ``tests/storage_contract.py``.

A backend that keeps entries in process memory may also offer ``get_nowait(key)``: the same answer
as ``get`` when it has one at hand, without waiting (None when it would have to wait or has none).
The coalescer then serves hits without a trip through coroutines; None always falls back to ``get``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..snapshot import Snapshot

__all__ = ["Clock", "Storage", "StorageClosedError", "wall_clock"]

Clock = Callable[[], float]
"""Returns wall-clock seconds; tests pass a fake one to move time without sleeping."""

wall_clock: Clock = time.time


class StorageClosedError(RuntimeError):
    """A storage was used after ``close()``."""


@runtime_checkable
class Storage(Protocol):
    """An async key-value store for snapshots, with a time-to-live per entry."""

    async def get(self, key: str) -> Snapshot | None:
        """The entry for ``key``, or None when absent or expired."""
        ...

    async def set(self, key: str, value: Snapshot, ttl: float) -> None:
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
