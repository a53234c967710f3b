"""DiskStorage: stored records in a directory, through diskcache, surviving restarts.

Rules of this package: one job per module, each stating its own rules at its top. ``storage.py``
is the storage itself (the Storage protocol and maintenance; the only public name),
``threads.py`` decides which thread touches the disk, ``opening.py`` opens and checks a
directory, ``rows.py`` keeps the rows, ``loopread.py`` reads one on the event loop (these three
the only modules that import diskcache), ``sealed.py`` what a row's value holds, ``files.py``
the value files, and ``bodies.py`` and ``streamed.py`` the streamed entries (issue 24): a body
written to its file as it arrives and read back by checked blocks, and the row committed once it
is whole. Importing ``coalesce_client`` imports none of them: ``DiskStorage`` is loaded on first
use.
"""

from __future__ import annotations

from .storage import DiskStorage

__all__ = ["DiskStorage"]
