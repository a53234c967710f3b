"""Which thread does DiskStorage's disk work: the event loop for small reads, else one worker.

Rules of this module:

* The event loop never waits long on disk. Writes (set, delete, clear, deleting a bad entry),
  maintenance, and reads of values kept in files run in one worker thread owned by the storage,
  and so do reads that found the database busy. A read of a value kept inside SQLite runs on the
  loop, because handing a call to a thread costs more (70-250 µs) than the read (about 10 µs): it
  uses a connection of its own whose SQLite busy timeout is ``loop_timeout`` (5 ms), after which
  the read moves to the thread and later reads go there for ``LOOP_BACKOFF`` seconds. Readers of a
  WAL database are not blocked by writers at all, so the timeout matters only while another
  process recovers the database. (One case no busy timeout bounds: SQLite retries inside a read,
  for up to about 10 s, while another process holds every WAL read lock; only a broken or hostile
  process does that.)
* The loop's connection belongs to the thread that built the storage; reads from any other thread
  go to the worker thread, and so does every read of a storage without one (read-only). Any
  thread may close it (``opening.py``): a storage closed from another thread leaves nothing open.
* The worker's cache is touched in the worker thread only: work is handed over as an operation of
  ``rows.py`` (``run(op, *args)`` calls ``op(cache, *args)`` there), and the worker closes it.
  One worker: SQLite takes one writer at a time anyway, and FIFO order means a read that was
  queued before a delete finishes before it.
* Many reads at once never stall the loop (issue 19: 500 concurrent 1 MiB hits stalled it
  134 ms). The operations the loop's thread queues in one turn of the loop are handed to the
  worker together when the turn ends (``_hand_over``), so the worker does not compete with the
  loop for the GIL while the turn runs; once one is queued, the turn's later reads join it
  without querying SQLite on the loop first. Their outcomes come back at most ``DELIVER_BATCH``
  per turn (``_deliver``): reads that ended while the loop was busy resume their callers a few
  at a time, not all in one turn. (Other threads' operations go to the worker one at a time.)
* The bodies of streamed entries (``bodies.py``) are written and read by blocks in the storage's
  file threads (``run_file``: ``FILE_THREADS`` of them, apart from the worker): a body of
  hundreds of MiB being written or read never queues the worker's reads and writes of rows
  behind it, and several readers of large bodies read at once (a read releases the GIL).
* A write that waits longer than ``lock_timeout`` for another process's lock raises
  ``TimeoutError`` naming the directory; the coalescer logs it and goes on without storing. Any
  other failure of the database in the worker (a damaged page met by a write or by maintenance)
  raises ``OSError`` naming the directory: SQLite's own exception types never escape the storage.
  A read never raises for a damaged row: ``rows.py`` makes that ``Unreadable``, a miss.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from ..base import StorageClosedError
from ..records import Record
from .loopread import USE_THREAD, LoopRead, UseThread
from .rows import Unreadable, is_busy

__all__ = ["DELIVER_BATCH", "FILE_THREADS", "LOOP_BACKOFF", "USE_THREAD", "DiskIO", "UseThread"]

T = TypeVar("T")

LOOP_BACKOFF = 0.5  # seconds the loop leaves reads to the thread after finding the database busy
DELIVER_BATCH = 16  # outcomes of the worker handed to their callers per turn of the loop
FILE_THREADS = 4  # threads that write and read the bodies of streamed entries (module rules)


class _Job(NamedTuple):
    op: Callable[..., Any]
    args: tuple[Any, ...]
    future: asyncio.Future[Any]


class _Outcome(NamedTuple):
    value: Any
    error: BaseException | None


class DiskIO:
    """The loop's connection, the worker thread and its connection, for one DiskStorage."""

    __slots__ = (
        "_batch",
        "_closed",
        "_delivering",
        "_done",
        "_executor",
        "_files",
        "_lock",
        "_loop_reads",
        "_loop_reads_after",
        "_loop_thread",
        "_reader",
        "_worker_cache",
        "directory",
        "lock_timeout",
    )

    def __init__(
        self, worker_cache: Any, reader: LoopRead | None, directory: Path, lock_timeout: float
    ) -> None:
        self.directory = directory  # named in errors
        self.lock_timeout = lock_timeout  # named in errors: how long a write waited for a lock
        self._worker_cache = worker_cache  # used and closed in the worker thread only
        self._reader = reader  # the loop's connection: used in _loop_thread only
        # The reader's connection was opened by this thread: only this thread reads on its loop
        # (module rules); any thread may close it (opening.py).
        self._loop_thread = threading.get_ident()
        self._loop_reads = True  # False for LOOP_BACKOFF seconds after a busy database
        self._loop_reads_after = 0.0
        if reader is None:  # no connection for the loop: every read goes to the thread
            self._loop_reads, self._loop_reads_after = False, math.inf
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="coalesce_client-disk")
        self._files = ThreadPoolExecutor(FILE_THREADS, thread_name_prefix="coalesce_client-disk-f")
        self._closed = False
        # Operations queued by the loop's thread in this turn of the loop, handed over together
        # (_hand_over); outcomes waiting for the loop (_deliver), guarded by _lock.
        self._batch: list[_Job] = []
        self._done: deque[tuple[asyncio.Future[Any], _Outcome]] = deque()
        self._lock = threading.Lock()
        self._delivering = False

    def read_on_loop(self, key: str) -> tuple[Record, float] | UseThread | None:
        """A read on the event loop when it is cheap and bounded, or ``USE_THREAD``.

        Raises ``Unreadable`` for a row that does not decode.
        """
        if self._batch:  # the worker reads in this turn of the loop already: one more (rules)
            return USE_THREAD
        if not self._loop_reads:
            if time.monotonic() < self._loop_reads_after:
                return USE_THREAD
            self._loop_reads = True
        if threading.get_ident() != self._loop_thread:
            return USE_THREAD
        try:
            return self._reader.entry(key)  # type: ignore[union-attr]  # None: never _loop_reads
        except Unreadable:
            raise
        except Exception as exc:
            # Busy (another process is recovering the database): the thread waits with the long
            # timeout, and the loop leaves reads to it for a while. Anything else (a damaged
            # page): the thread reads again and reports what is really wrong.
            if is_busy(exc):
                self._loop_reads = False
                self._loop_reads_after = time.monotonic() + LOOP_BACKOFF
            return USE_THREAD

    async def run(self, op: Callable[..., T], *args: Any) -> T:
        """``op(cache, *args)`` in the worker thread, after everything queued before it."""
        if self._closed:
            raise StorageClosedError("DiskStorage is closed")
        loop = asyncio.get_running_loop()
        if threading.get_ident() != self._loop_thread:  # one at a time, from another thread
            return await loop.run_in_executor(self._executor, self._in_worker, op, *args)
        future: asyncio.Future[T] = loop.create_future()
        if not self._batch:  # the first of this turn of the loop: handed over once it is done
            loop.call_soon(self._hand_over)
        self._batch.append(_Job(op, args, future))
        return await future

    async def run_file(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a file thread (module rules): a block of a streamed body."""
        if self._closed:
            raise StorageClosedError("DiskStorage is closed")
        return await asyncio.get_running_loop().run_in_executor(self._files, fn, *args)

    def _hand_over(self) -> None:
        """Give the worker every operation queued in this turn of the loop, in order (rules)."""
        if self._batch:
            batch, self._batch = self._batch, []
            self._executor.submit(self._work, batch)

    def _work(self, batch: list[_Job]) -> None:
        """In the worker thread: each operation of ``batch``, its outcome queued for the loop."""
        for job in batch:
            if job.future.cancelled():  # as an executor's job cancelled before it started
                continue
            try:
                outcome = _Outcome(self._in_worker(job.op, *job.args), None)
            except BaseException as exc:  # handed to the caller, as an executor does
                outcome = _Outcome(None, exc)
            with self._lock:
                self._done.append((job.future, outcome))
                if self._delivering:
                    continue
                self._delivering = True
            loop = job.future.get_loop()
            with contextlib.suppress(RuntimeError):  # the loop was closed meanwhile
                loop.call_soon_threadsafe(self._deliver, loop)

    def _deliver(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop: at most ``DELIVER_BATCH`` outcomes per turn, the rest in the next ones,
        so that many reads ending at once never stall the loop (rules)."""
        for _ in range(DELIVER_BATCH):
            with self._lock:
                if not self._done:
                    self._delivering = False
                    return
                future, outcome = self._done.popleft()
            if future.cancelled():
                continue
            if outcome.error is None:
                future.set_result(outcome.value)
            else:
                future.set_exception(outcome.error)
        loop.call_soon(self._deliver, loop)

    def _in_worker(self, op: Callable[..., T], *args: Any) -> T:
        try:
            return op(self._worker_cache, *args)
        except Exception as exc:
            if is_busy(exc):
                raise TimeoutError(
                    f"DiskStorage {str(self.directory)!r}: the database stayed locked by another "
                    f"process for more than {self.lock_timeout:g} s"
                ) from None
            if isinstance(exc, sqlite3.DatabaseError):
                raise OSError(
                    f"DiskStorage {str(self.directory)!r}: the database failed "
                    f"({type(exc).__name__}: {exc}); if it is damaged, remove the directory"
                ) from None
            raise

    async def close(self) -> None:
        """Wait for the operations in progress, then release the database, files and thread."""
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        self._hand_over()  # what this turn of the loop queued goes first
        try:
            # Connections belong to their thread: the worker's is closed by the worker, after
            # everything queued before it.
            await loop.run_in_executor(self._executor, self._worker_cache.close)
        finally:
            self._executor.shutdown(wait=True)
            self._files.shutdown(wait=False)  # a block being read or written ends on its own
            if self._reader is not None:  # from any thread: its connection allows it (opening.py)
                self._reader.close()
            self._reader = self._worker_cache = None
