"""coalesce_client: stop cache stampedes in aiohttp programs.

Concurrent identical requests share one real call (single-flight); responses that pass a filter may
then be kept for a while. Everything public is importable from here; other modules may move.

The framework-free core is imported eagerly; the aiohttp faces are imported on first use, so that
the core can be imported (and tested) where aiohttp is not wanted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.flight import Outcome, SingleFlight, WaitTimeout
from .core.policy import CachePolicy
from .core.records import CacheStatus, Stats
from .spec.snapshot import Snapshot
from .storage import MemoryStorage, Storage, StorageClosedError, TieredStorage
from .storage.codec import SnapshotError

if TYPE_CHECKING:
    from .client.response import CachedResponse
    from .client.session import CoalescingSession
    from .client_mw.info import CacheInfo, cache_info
    from .client_mw.middleware import ClientMiddleware, client_middleware
    from .server.middleware import CoalesceMiddleware, coalesce_middleware
    from .storage.disk.storage import DiskStorage
    from .storage.redis import RedisStorage

__all__ = [
    "CacheInfo",
    "CachePolicy",
    "CacheStatus",
    "CachedResponse",
    "ClientMiddleware",
    "CoalesceMiddleware",
    "CoalescingSession",
    "DiskStorage",
    "MemoryStorage",
    "Outcome",
    "RedisStorage",
    "SingleFlight",
    "Snapshot",
    "SnapshotError",
    "Stats",
    "Storage",
    "StorageClosedError",
    "TieredStorage",
    "WaitTimeout",
    "cache_info",
    "client_middleware",
    "coalesce_middleware",
]

__version__ = "0.1.0.dev0"

_LAZY = {
    "CoalescingSession": "client.session",
    "CachedResponse": "client.response",
    "CacheInfo": "client_mw.info",
    "cache_info": "client_mw.info",
    "ClientMiddleware": "client_mw.middleware",
    "client_middleware": "client_mw.middleware",
    "CoalesceMiddleware": "server.middleware",
    "coalesce_middleware": "server.middleware",
    "DiskStorage": "storage.disk.storage",
    "RedisStorage": "storage.redis",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'coalesce_client' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
