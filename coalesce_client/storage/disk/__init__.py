"""DiskStorage: stored records in a directory, through diskcache, surviving restarts.

Rules of this package: one job per module, each stating its own rules at its top. ``storage.py``
is the storage itself (the Storage protocol and maintenance; the only public name),
``threads.py`` decides which thread touches the disk, ``opening.py`` opens and checks a
directory, ``rows.py`` keeps the rows (with ``opening.py``, the only modules that import
diskcache) and ``files.py`` the value files. Importing ``coalesce_client`` imports none of them:
``DiskStorage`` is loaded on first use.
"""

from __future__ import annotations

from .storage import DiskStorage

__all__ = ["DiskStorage"]
