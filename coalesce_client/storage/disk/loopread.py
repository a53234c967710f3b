"""The event loop's read of one DiskStorage row: one prepared SELECT on diskcache's own table.

Rules of this module (with ``rows.py`` and ``opening.py``, the only ones that know diskcache):

* A read on the loop (``threads.py``) is one SELECT of the row's tag and value, by key, with
  diskcache's own expiry (a row whose ``expire_time`` has passed on ``time.time()`` is not
  there): the query of ``diskcache.Cache.get``'s fast path, which is the one it takes here since
  the storage's eviction policy writes nothing on a read (``opening.py``); a value that is not
  inside SQLite (in a file, a streamed entry's) reads as NULL and is left to the thread. It is not
  ``Cache.get`` itself, whose generality cost a hit more than the query (issue 20: 40,000
  instructions against 23,000): the ``Disk``'s key conversion, the per-thread connection lookup,
  and above all its ``raw`` bound as a ``bool``, which sqlite3 adapts by looking for
  ``__adapt__`` and ``__conform__``, raising and clearing an ``AttributeError`` each time.
* Every read reads the row from SQLite: another process may have replaced or deleted it. The
  statement is stepped to its end (``fetchall``), which resets it, so no read transaction stays
  open between reads (one would hold back the WAL's checkpoints).
* A connection is never used by two processes: a child of a fork reopens its own on its first
  read, as diskcache's ``Cache._con`` does. It knows it is one without a system call on each read
  (``os.getpid()`` took 0.46 µs on a loaded machine, 3% of a hit): this process's id is renewed
  in the child of a fork (``os.register_at_fork``).
"""

from __future__ import annotations

import os
import time
from typing import Any

from diskcache.core import MODE_RAW  # type: ignore[import-untyped]

from ..records import Record
from .sealed import Decoded

__all__ = ["USE_THREAD", "LoopRead", "UseThread"]

# Conditions as in diskcache.Cache.get (5.6); raw = 1: our keys are stored as they are
# (rows.BytesDisk.put), and a literal is not a parameter sqlite3 must adapt. The value only when
# it is inside SQLite (MODE_RAW), else NULL: one column fewer than the mode and the value (each
# column costs sqlite3 a description and a fetch on every read: 1,600 instructions).
_SELECT = (
    f"SELECT tag, CASE WHEN mode = {MODE_RAW} THEN value END FROM Cache"
    " WHERE key = ? AND raw = 1 AND (expire_time IS NULL OR expire_time > ?)"
)

_process = [os.getpid()]  # this process's id, renewed in the child of a fork (module rules)


def _forked() -> None:
    _process[0] = os.getpid()


if hasattr(os, "register_at_fork"):  # where there is no fork, there is nothing to renew
    os.register_at_fork(after_in_child=_forked)


class UseThread:
    """What a loop-side read returns when the worker thread must read: a value kept in a file, a
    busy database, or a call from a thread that does not own the loop's connection."""

    __slots__ = ()


USE_THREAD = UseThread()


class LoopRead:
    """The loop's cache (a ``diskcache.Cache`` whose connection any thread may close,
    ``opening.py``), the one query a hit runs on it, and the records it decoded."""

    __slots__ = ("_cache", "_cursor", "_decoded", "_pid")

    def __init__(self, cache: Any) -> None:
        self._cache = cache
        self._pid = _process[0]  # the process the connection was opened in
        self._cursor = cache._con.cursor()  # reused: a cursor per read costs its allocation
        self._decoded = Decoded()  # entries made of the rows read on the loop (sealed.py)

    def entry(self, key: str) -> tuple[Record, float] | UseThread | None:
        """The entry stored under ``key`` as (record, absolute expiry), None if there is none
        (or it is past diskcache's expiry), or ``USE_THREAD`` for a row whose value is not
        inside SQLite (kept in a file, a streamed entry, a row it fails on). ``Unreadable``
        for a row that does not unseal or decode; sqlite3's own errors are raised as they are
        (``threads.py`` tells a busy database from a damaged one)."""
        if _process[0] != self._pid:  # a child of a fork (module rules)
            self._pid = _process[0]
            self._cursor = self._cache._con.cursor()  # diskcache reopens for this process
        rows = self._cursor.execute(_SELECT, (key, time.time())).fetchall()
        if not rows:
            return None
        ((tag, value),) = rows
        if type(value) is not bytes:
            return USE_THREAD  # not in diskcache's MODE_RAW: the thread reads (and reports)
        return self._decoded.entry(key, value, tag)

    def close(self) -> None:
        """Release the connection; from any thread (``opening.py``)."""
        self._cursor.close()
        self._cache.close()
