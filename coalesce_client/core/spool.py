"""A flight's body as it arrives, for readers at their own pace: ``Spool`` (issue 24).

Rules of this module (part of the framework-free core: the standard library only):

* One producer fills a spool (``append``, then ``finish`` or ``fail``); any number of readers
  read it (``reader()``), each from its own position and at its own pace. ``append`` never
  waits: no reader, slow or gone, ever holds up the producer or the other readers.
* A reader waiting for bytes not yet arrived waits on a future of its own, resolved by the next
  ``append``, ``finish`` or ``fail``, never on a timer; cancelling it touches nobody else.
* The body is held in memory up to ``bound`` bytes (the policy's ``max_body_size``); the first
  byte past it moves the whole body to a temporary file (``tempfile.TemporaryFile``: on POSIX
  it is unlinked at creation, so no spool file can outlive the process, whatever happens to
  it), and memory holds nothing more of it. A body announced over the bound goes to the file
  from its first byte. That one move writes ``bound`` bytes at once (about
  2 ms for 8 MiB); each later ``append`` is one write of its chunk (about 20 us for 64 KiB).
* Reads from the file are ``os.pread`` calls of at most ``CHUNK`` bytes on the loop's thread
  (about 40 us each from the page cache): a ``read(-1)`` of a large body yields to the loop
  between its chunks, so no read blocks the loop for long, and no thread ever holds the file.
* A body that ends short (``fail``, or ``finish`` before an announced length) raises
  ``TruncatedBodyError`` in every reader, at once, whatever it had read: never a short body
  presented as complete. The file is closed at the failure: nothing can be read from it again.
* A reader holds nothing but its position: ``close()`` frees it at once, and a read after it
  raises ``TruncatedBodyError`` (never ``b""``, which would end the body early).
* The file lives as long as the spool: it is closed when the spool fails, or when the spool
  itself is gone (``weakref.finalize``), that is when no reader is open (each reader holds its
  spool until it closes) and nobody can open a new one (no snapshot, flight or pending storage
  write holds it any more). A producer that must stop when nobody wants the body any more
  (the client face's pump) holds the spool by a weak reference only (``weakref.ref``), and
  registers its own ``weakref.finalize``.

See ``docs/architecture.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import weakref
from typing import IO

from ..spec.snapshot import TruncatedBodyError

__all__ = ["CHUNK", "Spool", "SpoolReader"]

CHUNK = 256 * 1024  # the most one read takes from the file on the loop's thread (about 40 us)


class Spool:
    """A ``StreamedBody`` filled by one producer, read by many (see the module rules).

    >>> import asyncio
    >>> async def demo():
    ...     spool = Spool(bound=4)
    ...     spool.append(b"abc")
    ...     spool.append(b"defgh")  # past the bound: to the temporary file
    ...     spool.finish()
    ...     return await spool.reader(2).read()
    >>> asyncio.run(demo())
    b'cdefgh'
    """

    __slots__ = (
        "__weakref__",
        "_bound",
        "_error",
        "_file",
        "_finalizer",
        "_length",
        "_memory",
        "_waiters",
        "done",
        "filled",
    )

    def __init__(self, bound: int, length: int | None = None) -> None:
        self._bound = bound  # bytes held in memory at most; past it, the temporary file
        self._length = length  # announced (Content-Length), or known once finished
        # None once the body is in the file; from the start when its announced length is over
        # the bound (no use holding what will move anyway).
        self._memory: bytearray | None = (
            None if length is not None and length > bound else bytearray()
        )
        self._file: IO[bytes] | None = None
        self._finalizer: weakref.finalize[[], Spool] | None = None
        self._error: TruncatedBodyError | None = None
        self._waiters: list[asyncio.Future[None]] = []  # readers waiting for more
        self.filled = 0  # bytes arrived
        self.done = False  # finished or failed: nothing more will arrive

    # -- StreamedBody ------------------------------------------------------------------------

    @property
    def length(self) -> int | None:
        """The whole length when known: announced, or arrived once finished."""
        return self._length

    def reader(self, start: int = 0, end: int | None = None) -> SpoolReader:
        """A new reader of bytes ``start`` to ``end`` (exclusive; None: to the end)."""
        return SpoolReader(self, start, end)

    async def complete(self) -> int:
        """Wait until the whole body has arrived; its length. Raises ``TruncatedBodyError``."""
        while not self.done:
            await self._wait()
        self._check()
        return self.filled

    @property
    def failed(self) -> bool:
        return self._error is not None

    @property
    def in_file(self) -> bool:
        """Has the body moved to the temporary file (and is that file still open)?"""
        return self._file is not None

    # -- the producer ------------------------------------------------------------------------

    def append(self, chunk: bytes) -> None:
        """The next bytes of the body; never waits (module rules)."""
        if self.done or not chunk:
            return
        memory = self._memory
        if memory is not None and len(memory) + len(chunk) <= self._bound:
            memory += chunk
        else:
            try:
                self._write(chunk)
            except OSError as exc:  # a full disk: the readers see a truncation, never less
                self.fail(exc)
                return
        self.filled += len(chunk)
        self._wake()

    def finish(self) -> None:
        """The body is complete. Short of an announced length, it failed instead."""
        if self.done:
            return
        if self._length is not None and self.filled != self._length:
            self.fail(TruncatedBodyError(f"body ended at {self.filled} of {self._length} bytes"))
            return
        self._length = self.filled
        self.done = True
        self._wake()

    def fail(self, exc: BaseException | None = None) -> None:
        """The body will not complete: every reader raises ``TruncatedBodyError`` from now."""
        if self.done:
            return
        error = exc if isinstance(exc, TruncatedBodyError) else TruncatedBodyError(str(exc or ""))
        if error is not exc and exc is not None:
            error.__cause__ = exc
        self._error = error
        self.done = True
        self._memory = None
        if self._finalizer is not None:
            self._finalizer()  # closes the file: nothing can be read from it again
        self._file = None
        self._wake()

    # -- inside ------------------------------------------------------------------------------

    def _write(self, chunk: bytes) -> None:
        file = self._file
        if file is None:
            # The first byte past the bound: the whole body moves to the file (module rules).
            # Unlinked at creation on POSIX; closed by fail() or when the spool is gone.
            file = self._file = tempfile.TemporaryFile(buffering=0)  # noqa: SIM115
            self._finalizer = weakref.finalize(self, file.close)
            if self._memory:
                _write_all(file, self._memory)
            self._memory = None
        _write_all(file, chunk)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter.cancelled() or not waiter.done():  # not woken: give its slot back now
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)

    def _check(self) -> None:
        """Raise a truncation of its own for each reader of a failed body (one exception
        object raised by many readers would pile up their tracebacks)."""
        error = self._error
        if error is not None:
            raise TruncatedBodyError(*error.args) from error

    def _take(self, start: int, stop: int) -> bytes:
        """Bytes ``start`` to ``stop`` (arrived), from memory or the file."""
        self._check()
        memory = self._memory
        if memory is not None:
            return bytes(memory[start:stop])
        assert self._file is not None
        return _pread(self._file, stop - start, start)


def _write_all(file: IO[bytes], data: bytes | bytearray) -> None:
    view = memoryview(data)
    while view:  # an unbuffered write may take less than it was given
        view = view[file.write(view) or 0 :]


def _pread(file: IO[bytes], n: int, at: int) -> bytes:
    if hasattr(os, "pread"):
        return os.pread(file.fileno(), n, at)
    file.seek(at)  # no pread (Windows): every access is on the loop's thread, so no race
    return file.read(n)


class SpoolReader:
    """One reader's own position over a range of a ``Spool`` (see the module rules)."""

    __slots__ = ("_end", "_pos", "_spool")

    def __init__(self, spool: Spool, start: int, end: int | None) -> None:
        self._spool: Spool | None = spool  # held until close(): the spool lives while read
        self._pos = start
        self._end = end

    @property
    def closed(self) -> bool:
        return self._spool is None

    @property
    def position(self) -> int:
        return self._pos

    def close(self) -> None:
        """Stop reading: the spool is no longer held by this reader (idempotent)."""
        self._spool = None

    def _stop(self, spool: Spool) -> int | None:
        """Where this reader's range ends, when it is known yet."""
        length = spool._length
        if self._end is None:
            return length
        return self._end if length is None else min(self._end, length)

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (``-1``: all that is left), waiting for them to arrive; ``b""`` at
        the end of the range. Raises ``TruncatedBodyError`` when the body ended short."""
        if n < 0:
            return await self._read_all()
        while True:
            spool = self._open()
            stop = self._stop(spool)
            if stop is not None and self._pos >= stop:
                return b""
            arrived = spool.filled if stop is None else min(spool.filled, stop)
            if arrived > self._pos:
                take = min(n, arrived - self._pos)
                if spool.in_file:
                    take = min(take, CHUNK)
                data = spool._take(self._pos, self._pos + take)
                self._pos += len(data)
                return data
            if n == 0:
                return b""
            await spool._wait()

    async def _read_all(self) -> bytes:
        parts = []
        while chunk := await self.read(CHUNK):
            parts.append(chunk)
            if len(chunk) == CHUNK and self._spool is not None and self._spool.in_file:
                await asyncio.sleep(0)  # a yield to the loop between file reads, not a wait
        return b"".join(parts)

    def _open(self) -> Spool:
        spool = self._spool
        if spool is None:
            raise TruncatedBodyError("read after close()")
        spool._check()
        return spool
