"""A streamed body a test feeds (issue 24): ``Feed`` is a ``StreamedBody`` whose bytes arrive as
the test hands them over, and which can end short, as a flight's spool does.

Used by tests/test_storage_streams.py, tests/stream_child.py and tests/faults; the storages under
test never see anything but the ``StreamedBody`` protocol (spec/snapshot.py).
"""

from __future__ import annotations

import asyncio
import hashlib

from coalesce_client.spec.snapshot import Snapshot, TruncatedBodyError

CHUNK = 256 * 1024


def pattern(size: int, seed: int = 0) -> bytes:
    """``size`` bytes that differ from block to block (a block swapped or shifted shows)."""
    step = hashlib.sha256(str(seed).encode()).digest() * 2048  # 64 KiB
    out = bytearray()
    n = 0
    while len(out) < size:
        out += n.to_bytes(8, "big") + step[8:]
        n += 1
    return bytes(out[:size])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Feed:
    """A ``StreamedBody`` fed by the test: ``give`` bytes, ``end`` it, or ``fail`` it (every
    reader then raises ``TruncatedBodyError`` once it has read what was given)."""

    def __init__(self, length: int | None = None) -> None:
        self._length = length  # announced (Content-Length), or None
        self.data = bytearray()
        self.ended = False
        self.failed = False
        self._changed = asyncio.Event()
        self.waiting = asyncio.Event()  # set whenever a reader waits at the end of the data
        self.readers = 0  # opened
        self.closed = 0  # closed by whoever opened them

    @classmethod
    def whole(cls, data: bytes, *, announced: bool = False) -> Feed:
        feed = cls(len(data) if announced else None)
        feed.give(data)
        feed.end()
        return feed

    @property
    def length(self) -> int | None:
        return len(self.data) if self.ended else self._length

    def give(self, data: bytes) -> None:
        self.data += data
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def fail(self) -> None:
        self.failed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        self.waiting.clear()

    def reader(self, start: int = 0, end: int | None = None) -> FeedReader:
        self.readers += 1
        return FeedReader(self, start, end)

    async def complete(self) -> int:
        while not self.ended:
            if self.failed:
                raise TruncatedBodyError("the feed failed")
            await self._changed.wait()
        return len(self.data)

    async def more(self) -> None:
        self.waiting.set()
        await self._changed.wait()


class FeedReader:
    def __init__(self, feed: Feed, start: int, end: int | None) -> None:
        self.feed, self.pos, self.end = feed, start, end

    async def read(self, n: int = -1) -> bytes:
        feed = self.feed
        while True:
            stop = len(feed.data) if self.end is None else min(self.end, len(feed.data))
            if self.pos < stop:
                take = stop - self.pos if n < 0 else min(n, stop - self.pos, CHUNK)
                chunk = bytes(feed.data[self.pos : self.pos + take])
                self.pos += take
                return chunk
            if feed.failed:
                raise TruncatedBodyError("the feed failed")
            if feed.ended or (self.end is not None and self.pos >= self.end):
                return b""
            await feed.more()

    def close(self) -> None:
        self.feed.closed += 1


def streamed(feed: Feed, url: str = "http://example.com/big") -> Snapshot:
    """A response whose body is ``feed``."""
    headers = (("Content-Type", "application/octet-stream"),)
    return Snapshot(
        200, "OK", headers, url, "GET", b"", 1_800_000_000.0, 1_800_000_060.0, stream=feed
    )


async def read_all(snap: Snapshot, start: int = 0, end: int | None = None, n: int = 65536) -> bytes:
    """The body of ``snap``'s stream from ``start`` to ``end``, read ``n`` bytes at a time."""
    assert snap.stream is not None
    reader = snap.stream.reader(start, end)
    parts = []
    try:
        while chunk := await reader.read(n):
            parts.append(chunk)
    finally:
        reader.close()
    return b"".join(parts)
