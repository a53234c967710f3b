"""Response bodies: replayed from memory, read from a shared stream, or from the connection.

Rules of this module:

* ``BodyStream`` replays a body already in memory; each caller has its own read position over the
  one shared ``bytes`` (never copied per caller).
* ``ReaderStream`` is one caller's ``BodyReader`` of a streamed body (``Snapshot.stream``: a
  flight's spool, a stored entry's file, issue 24) with aiohttp's stream API. A body that ends
  short reaches its caller as ``aiohttp.ClientPayloadError`` (plain aiohttp's error for a
  truncated body), never as a short body; after ``close()`` every read raises
  ``ClientConnectionError``, as a released aiohttp response's does.
* ``LiveStream`` is aiohttp's live ``StreamReader`` with the bytes already read from it put back
  in front: what a caller streams when its body turned out too large to share.
* ``read_within`` reads a body only up to the sharing limit: a ``Content-Length`` over it is
  known before anything is read (``announced_length``: when the body is not compressed), and
  otherwise reading stops as soon as the limit is crossed, so a too-large body is never
  buffered whole.
* ``Kept`` hands a live response to the caller it belongs to, or closes it if that caller left.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from aiohttp import ClientConnectionError, ClientPayloadError, ClientResponse, StreamReader

from ..core.spool import CHUNK
from ..spec.snapshot import BodyReader, StreamedBody, TruncatedBodyError

__all__ = [
    "BodyStream",
    "Kept",
    "LiveStream",
    "ReaderStream",
    "announced_length",
    "read_within",
    "released",
]


class _Stream:
    """What both streams share: iteration by lines, and aiohttp's two names for the end."""

    __slots__ = ()

    async def readline(self) -> bytes:
        return await self.readuntil(b"\n")

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        raise NotImplementedError

    async def read(self, n: int = -1) -> bytes:
        raise NotImplementedError

    async def readany(self) -> bytes:
        raise NotImplementedError

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        if n < 1:
            raise ValueError(f"chunk size must be at least 1, got {n}")
        while chunk := await self.read(n):
            yield chunk

    async def iter_any(self) -> AsyncIterator[bytes]:
        while chunk := await self.readany():
            yield chunk

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._lines()

    async def _lines(self) -> AsyncIterator[bytes]:
        while line := await self.readline():
            yield line

    def at_eof(self) -> bool:
        raise NotImplementedError

    def is_eof(self) -> bool:
        return self.at_eof()


class BodyStream(_Stream):
    """A read-only stream over a body already in memory, shaped like aiohttp's ``StreamReader``."""

    __slots__ = ("_body", "_pos")

    def __init__(self, body: bytes) -> None:
        self._body = body
        self._pos = 0

    def _take(self, n: int) -> bytes:
        body, pos = self._body, self._pos
        if pos == 0 and (n < 0 or n >= len(body)):
            self._pos = len(body)
            return body  # the whole body: no copy
        end = len(body) if n < 0 else min(len(body), pos + n)
        self._pos = end
        return body[pos:end]

    async def read(self, n: int = -1) -> bytes:
        return self._take(n)

    async def readany(self) -> bytes:
        return self._take(-1)

    def read_nowait(self, n: int = -1) -> bytes:
        return self._take(n)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        idx = self._body.find(separator, self._pos)
        return self._take(-1 if idx < 0 else idx + len(separator) - self._pos)

    async def readexactly(self, n: int) -> bytes:
        data = self._take(n)
        if len(data) < n:
            raise asyncio.IncompleteReadError(data, n)
        return data

    async def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        if n < 1:
            raise ValueError(f"chunk size must be at least 1, got {n}")
        while chunk := self._take(n):
            yield chunk

    async def iter_any(self) -> AsyncIterator[bytes]:
        if chunk := self._take(-1):
            yield chunk

    async def iter_chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        if chunk := self._take(-1):
            yield chunk, True

    def at_eof(self) -> bool:
        return self._pos >= len(self._body)

    def exception(self) -> BaseException | None:
        return None

    def total_bytes(self) -> int:
        return len(self._body)

    def __repr__(self) -> str:
        return f"<BodyStream {self._pos}/{len(self._body)} bytes read>"


class LiveStream(_Stream):
    """aiohttp's live ``StreamReader`` with bytes already taken from it put back in front.

    What a caller streams when its response was too large to share: the first bytes were read
    while the size was not yet known, the rest comes from the connection as it arrives.
    """

    __slots__ = ("_live", "_pos", "_prefix")

    def __init__(self, prefix: bytes, live: StreamReader) -> None:
        self._prefix = prefix
        self._pos = 0
        self._live = live

    def _take(self, n: int) -> bytes:
        prefix, pos = self._prefix, self._pos
        end = len(prefix) if n < 0 else min(len(prefix), pos + n)
        self._pos = end
        return prefix[pos:end]

    def _pending(self) -> int:
        return len(self._prefix) - self._pos

    async def read(self, n: int = -1) -> bytes:
        if not self._pending():
            return await self._live.read(n)
        head = self._take(n)
        return head + await self._live.read() if n < 0 else head

    async def readany(self) -> bytes:
        return self._take(-1) if self._pending() else await self._live.readany()

    def read_nowait(self, n: int = -1) -> bytes:
        return self._take(n) if self._pending() else self._live.read_nowait(n)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        if self._pending():
            idx = self._prefix.find(separator, self._pos)
            if idx >= 0:
                return self._take(idx + len(separator) - self._pos)
            return self._take(-1) + await self._live.readuntil(separator)
        return await self._live.readuntil(separator)

    async def readexactly(self, n: int) -> bytes:
        head = self._take(n)
        return head if len(head) == n else head + await self._live.readexactly(n - len(head))

    async def iter_chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        if self._pending():
            yield self._take(-1), False
        async for item in self._live.iter_chunks():
            yield item

    def at_eof(self) -> bool:
        return not self._pending() and self._live.at_eof()

    def exception(self) -> BaseException | None:
        return self._live.exception()

    def total_bytes(self) -> int:
        return self._live.total_bytes

    def __repr__(self) -> str:
        return f"<LiveStream {self._pending()} bytes put back, then {self._live!r}>"


class ReaderStream(_Stream):
    """One caller's reader of a streamed body, shaped like aiohttp's ``StreamReader`` (module
    rules). ``whole`` keeps the body once ``read()`` took it all (``CachedResponse.read``)."""

    __slots__ = ("_closed", "_eof", "_error", "_held", "_reader", "_total", "whole")

    def __init__(self, reader: BodyReader) -> None:
        self._reader = reader
        self._held = b""  # read ahead by readuntil and not yet handed out
        self._total = 0
        self._eof = False
        self._closed = False
        self._error: BaseException | None = None
        self.whole: bytes | None = None

    async def _next(self, n: int) -> bytes:
        if self._closed:
            raise ClientConnectionError("Connection closed")
        try:
            data = await self._reader.read(n)
        except TruncatedBodyError as exc:
            self._error = ClientPayloadError(f"Response payload is not completed: {exc}")
            self._reader.close()  # nothing more will be read: free its share at once
            raise self._error from exc
        if not data or n < 0:  # read(-1) reads to the end
            self._eof = True
        self._total += len(data)
        return data

    def _take(self, n: int) -> bytes:
        held = self._held
        if n < 0 or n >= len(held):
            self._held = b""
            return held
        self._held = held[n:]
        return held[:n]

    async def read(self, n: int = -1) -> bytes:
        if self._held:
            head = self._take(n)
            return head + await self._next(-1) if n < 0 else head
        return await self._next(n)

    async def readany(self) -> bytes:
        return self._take(-1) if self._held else await self._next(CHUNK)

    def read_nowait(self, n: int = -1) -> bytes:
        return self._take(n)  # only what is at hand: b"" is not the end here (as aiohttp's)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        while (idx := self._held.find(separator)) < 0:
            more = await self._next(CHUNK)
            if not more:
                return self._take(-1)
            self._held += more
        return self._take(idx + len(separator))

    async def readexactly(self, n: int) -> bytes:
        data = await self.read(n)
        while len(data) < n and (more := await self.read(n - len(data))):
            data += more
        if len(data) < n:
            raise asyncio.IncompleteReadError(data, n)
        return data

    async def iter_chunks(self) -> AsyncIterator[tuple[bytes, bool]]:
        while chunk := await self.readany():
            yield chunk, False

    async def read_whole(self) -> bytes:
        if self.whole is None:
            self.whole = await self.read()
        return self.whole

    def at_eof(self) -> bool:
        return self._eof and not self._held

    def exception(self) -> BaseException | None:
        return self._error

    def total_bytes(self) -> int:
        return self._total

    def close(self) -> None:
        """This caller is done: its reader is closed, and every read from now raises."""
        self._closed = True
        self._held = b""
        self._reader.close()

    def __repr__(self) -> str:
        return f"<ReaderStream {self._total} bytes read>"


class _Released:
    """What a released response keeps of its streamed body: its length, and no way to read it
    (the body itself is let go: ``CachedResponse.release``)."""

    __slots__ = ("length",)

    def __init__(self, length: int | None) -> None:
        self.length = length

    def reader(self, start: int = 0, end: int | None = None) -> BodyReader:
        raise ClientConnectionError("Connection closed")

    async def complete(self) -> int:
        raise ClientConnectionError("Connection closed")


def released(stream: StreamedBody | None) -> StreamedBody:
    """The stand-in for ``stream`` once its response is released (``_Released``)."""
    if isinstance(stream, _Released):
        return stream
    return _Released(None if stream is None else stream.length)


def announced_length(resp: ClientResponse) -> int | None:
    """The body's length as its ``Content-Length`` announces it, None when that is not what
    aiohttp will hand over (a compressed body, decompressed as it is read)."""
    return None if "Content-Encoding" in resp.headers else resp.content_length


async def read_within(resp: ClientResponse, limit: int) -> bytes | None:
    """The whole body if it is at most ``limit`` bytes; else None when ``Content-Length`` says so
    before anything is read, or the bytes read until the limit was crossed (longer than it)."""
    length = announced_length(resp)
    if length is not None:
        return None if length > limit else await resp.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_any():
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


class Kept:
    """A caller's own response kept for it to stream (too large to share), and whether the caller
    is still there to take it. The flight may end after its leader gave up: then whoever comes
    second (the flight keeping it, or the caller leaving) closes it, so no connection leaks."""

    __slots__ = ("gone", "prefix", "response")

    def __init__(self) -> None:
        self.response: ClientResponse | None = None
        self.prefix = b""  # bytes read before the size was known
        self.gone = False

    def keep(self, response: ClientResponse, prefix: bytes) -> None:
        if self.gone:
            response.close()
        else:
            self.response, self.prefix = response, prefix

    def drop(self) -> None:
        self.gone = True
        if self.response is not None:
            self.response.close()
