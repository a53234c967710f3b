"""DiskStorage: diskcache under the Storage protocol (``storage.py``), its thread routing
(``threads.py``), opening and checking a directory (``opening.py``), diskcache's rows
(``rows.py``) and value files (``files.py``)."""

from __future__ import annotations

from .storage import DiskStorage

__all__ = ["DiskStorage"]
