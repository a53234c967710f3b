"""coalesce_client: stop cache stampedes in aiohttp programs.

Concurrent identical requests share one real call (single-flight); responses that pass a filter may
then be kept for a while. Everything public is importable from here; other modules may move.
"""

from .client import CoalescingSession
from .coalescer import CacheStatus, Stats
from .flight import Outcome, SingleFlight, WaitTimeout
from .policy import CachePolicy
from .response import CachedResponse
from .snapshot import Snapshot, SnapshotError
from .storage import MemoryStorage, Storage, StorageClosedError

__all__ = [
    "CachePolicy",
    "CacheStatus",
    "CachedResponse",
    "CoalescingSession",
    "MemoryStorage",
    "Outcome",
    "SingleFlight",
    "Snapshot",
    "SnapshotError",
    "Stats",
    "Storage",
    "StorageClosedError",
    "WaitTimeout",
]

__version__ = "0.1.0.dev0"
