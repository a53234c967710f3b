"""Storage backends behind one protocol.

``DiskStorage`` is imported on first use, so that importing the package (and its framework-free
core) never imports diskcache.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Clock, Storage, StorageClosedError, wall_clock
from .memory import MemoryStorage
from .tiered import TieredStorage

if TYPE_CHECKING:
    from .disk import DiskStorage

__all__ = [
    "Clock",
    "DiskStorage",
    "MemoryStorage",
    "Storage",
    "StorageClosedError",
    "TieredStorage",
    "wall_clock",
]


def __getattr__(name: str) -> Any:
    if name != "DiskStorage":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from .disk import DiskStorage

    globals()[name] = DiskStorage
    return DiskStorage


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
