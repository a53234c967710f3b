"""Storage backends behind one protocol."""

from .base import Clock, Storage, StorageClosedError, wall_clock
from .memory import MemoryStorage

__all__ = ["Clock", "MemoryStorage", "Storage", "StorageClosedError", "wall_clock"]
