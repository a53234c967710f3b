"""A ``CoalescingSession`` call with ``Range`` or ``If-Range``, answered from a complete stored
response (RFC 9110 §14, RFC 9111 §3.3-3.4; the rules are ``spec/ranges.py``'s).

Rules of this module (docs/architecture.md, the client face):

* A GET or HEAD whose identity has ``ranged`` (``call.py``: ``Range`` or ``If-Range`` and no
  precondition a cache does not evaluate) reads what is stored for its key (the request's key:
  ``Range`` is not part of it) as any call does (fresh, its own ``Cache-Control``, Vary:
  ``Coalescer.stored``), and ``spec/ranges.range_answer`` says what it answers: a 206, a 416,
  a 304 or the whole stored response, a hit. When it says None (nothing fresh stored, or not a
  200 to range) the call is its own request (``"range request"``): never a flight, and the
  origin's 206 is never stored (``Passing`` stores nothing).
* A body in memory is sliced (no copy of the rest); a streamed stored body (``Snapshot.stream``)
  is read through a reader over the range only (``ReaderStream``): ``content`` and ``read()``
  never read the whole stored body. A stored body that turns out short raises aiohttp's own
  ``ClientPayloadError``, never a short body presented as complete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import ClientPayloadError

from ..core.coalescer import Coalescer
from ..spec.ranges import range_answer
from ..spec.requests import Wanted
from ..spec.snapshot import BodyReader, StreamedBody, TruncatedBodyError
from .body import _Stream
from .call import Identity
from .response import CachedResponse

__all__ = ["ReaderStream", "StreamedHit", "ranged_hit"]

_CHUNK = 64 * 1024  # what readany() and iter_any() take at a time from a streamed body


async def ranged_hit(
    core: Coalescer, method: str, ident: Identity, wanted: Wanted | None
) -> CachedResponse | None:
    """The answer from storage to a call with ``Range`` or ``If-Range`` (module rules), counted
    as a hit; None when the call must be its own request (not counted)."""
    assert ident.key is not None and ident.conditional is not None and ident.ranged is not None
    stored = await core.stored(ident.key, ident.header, wanted)
    asked = ident.conditional, ident.ranged
    answer = None if stored is None else range_answer(stored, method, *asked)
    if answer is None:
        return None
    core.count_hit()
    now = core.clock()
    if answer.stream is None:
        return CachedResponse(answer, "hit", request_url=ident.url, now=now)
    return StreamedHit(answer, "hit", request_url=ident.url, now=now)


class StreamedHit(CachedResponse):
    """A response from storage whose body is streamed (``Snapshot.stream``): ``content`` reads it
    through one reader, ``read()`` reads what is left of it once."""

    __slots__ = ("_body",)

    _body: bytes | None

    @property
    def content(self) -> ReaderStream:  # type: ignore[override]  # the same reading methods
        if self._content is None:
            stream = self.snapshot.stream
            assert stream is not None
            self._content = ReaderStream(stream)  # type: ignore[assignment]
            self._body = None
        return self._content  # type: ignore[return-value]

    async def read(self) -> bytes:
        content = self.content
        if self._body is None:
            self._body = await content.read()
        return self._body

    def close(self) -> None:
        self.closed = True
        if self._content is not None:
            self.content.close()

    def release(self) -> None:
        self.close()


class ReaderStream(_Stream):
    """aiohttp's ``StreamReader`` reading methods over one reader of a streamed body (module
    rules). The reader is opened on the first read and closed at the end, or by ``close()``."""

    __slots__ = ("_body", "_buffer", "_eof", "_reader")

    def __init__(self, body: StreamedBody) -> None:
        self._body = body
        self._reader: BodyReader | None = None
        self._buffer = b""  # read past a separator by readuntil, given back first
        self._eof = False

    async def _next(self, n: int) -> bytes:
        """Up to ``n`` bytes (-1: all that is left) from the body, after the buffer."""
        if self._buffer:
            out = self._buffer if n < 0 else self._buffer[:n]
            self._buffer = self._buffer[len(out) :]
            return out if n >= 0 or self._eof else out + await self._next(-1)
        if self._eof:
            return b""
        if self._reader is None:
            self._reader = self._body.reader()
        try:
            chunk = await self._reader.read(n)
        except TruncatedBodyError as exc:
            self.close()
            raise ClientPayloadError(f"the stored body ended short: {exc}") from exc
        if not chunk or n < 0:
            self.close()
        return chunk

    def close(self) -> None:
        """Stop reading: the reader is freed at once."""
        self._eof = True
        if self._reader is not None:
            self._reader.close()

    async def read(self, n: int = -1) -> bytes:
        return await self._next(n)

    async def readany(self) -> bytes:
        return await self._next(_CHUNK)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        data = b""
        while (at := data.find(separator)) < 0:
            chunk = await self._next(_CHUNK)
            if not chunk:
                return data
            data += chunk
        self._buffer = data[at + len(separator) :] + self._buffer
        return data[: at + len(separator)]

    async def readexactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n and (chunk := await self._next(n - len(data))):
            data += chunk
        if len(data) < n:
            raise ClientPayloadError(f"{len(data)} bytes read of the {n} expected")
        return data

    def iter_chunked(self, n: int) -> AsyncIterator[bytes]:
        if n < 1:
            raise ValueError(f"chunk size must be at least 1, got {n}")
        return self._chunks(n)

    def iter_any(self) -> AsyncIterator[bytes]:
        return self._chunks(_CHUNK)

    async def _chunks(self, n: int) -> AsyncIterator[bytes]:
        while chunk := await self._next(n):
            yield chunk

    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    def exception(self) -> BaseException | None:
        return None

    def __repr__(self) -> str:
        return f"<ReaderStream of {self._body!r}>"
