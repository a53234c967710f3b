"""The rows of streamed entries (issue 24): committed once their body is in its file, deleted when
their body turns out damaged.

Rules of this module (operations on a cache, as ``rows.py``'s: blocking, run in the storage's
worker thread; no diskcache import):

* A streamed entry's row is committed only after its body is written whole to its value file
  (``bodies.write_stream``): a row never names a file still being written. Its value is kept
  inside SQLite (``sealed.seal_streamed``), its mode is ``rows.MODE_STREAMED``, its size the
  body's, so ``rows.evict`` counts it as the value files it keeps. A failed commit removes the
  file; an earlier row of the key goes with its own file, as any replaced row does.
* A body found damaged deletes its entry only if the row still names that body's file: another
  process may have stored a new entry under the key meanwhile.
"""

from __future__ import annotations

import math
from typing import Any

from ...spec.snapshot import Snapshot
from .bodies import Written
from .rows import KEEP_EXPIRED, Put, evict
from .sealed import StreamedValue, seal_streamed

__all__ = ["delete_if_file", "write_streamed"]


def write_streamed(cache: Any, put: Put, written: Written, max_bytes: int) -> None:
    """Commit the row of a streamed entry whose body ``written`` is in its file already
    (``bodies.py``); ``evict`` as ``rows.write`` does (module rules)."""
    assert isinstance(put.record, Snapshot)
    sealed = seal_streamed(put.key, put.expiry, put.record, written.blocks)
    stored = StreamedValue(written.name, written.blocks.length, sealed)
    expire = None if math.isinf(put.ttl) else put.ttl + KEEP_EXPIRED
    try:
        cache.set(put.key, stored, expire=expire, tag=put.expiry)
    except BaseException:
        cache._disk.remove(written.name)
        raise
    evict(cache, put.key, max_bytes)


def delete_if_file(cache: Any, key: str, name: str) -> None:
    """Delete ``key`` if its row still names the value file ``name`` (a damaged streamed body:
    another process may have stored a new entry there meanwhile)."""
    with cache.transact():
        rows = cache._sql("SELECT filename FROM Cache WHERE key = ? AND raw = 1", (key,))
        if rows.fetchall() == [(name,)]:
            cache.delete(key)
