"""Storage backends behind one protocol.

``DiskStorage`` and ``RedisStorage`` are imported on first use, so that importing the package (and
its framework-free core) never imports diskcache or redis.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Clock, Storage, StorageClosedError, wall_clock
from .memory import MemoryStorage
from .tiered import TieredStorage

if TYPE_CHECKING:
    from .disk.storage import DiskStorage
    from .redis import RedisStorage

__all__ = [
    "Clock",
    "DiskStorage",
    "MemoryStorage",
    "RedisStorage",
    "Storage",
    "StorageClosedError",
    "TieredStorage",
    "wall_clock",
]


_LAZY = {"DiskStorage": ".disk", "RedisStorage": ".redis"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
