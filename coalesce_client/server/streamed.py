"""The replay of a response whose body streams (``Snapshot.stream``, issue 24): ``StreamedReply``.

Rules of this module (docs/architecture.md, the server face; ``replay.py`` makes the replies):

* Every caller gets its own ``StreamedReply``, which opens its own reader of the stream (a
  flight's spool, or a stored entry read from storage) and writes it at its own connection's
  pace: a slow client holds up nobody. It is an ordinary unprepared ``web.StreamResponse`` when
  the middleware returns it (outer middlewares may still set headers); aiohttp prepares it and
  its ``write_eof`` sends the body, as ``web.Response`` sends its own.
* ``Content-Length``, when the snapshot has it, is sent as it is (the handler's own); else the
  stream's length when it is known already (a stored entry's, a body complete); aiohttp frames
  the body by it, else chunked (HTTP/1.1).
* A body that ends short (``TruncatedBodyError``: the handler raised mid-body, a damaged stored
  entry), or that does not match its ``Content-Length``, resets the caller's connection: the
  transport is aborted before another byte is written, so neither a chunked body's last chunk
  nor the rest of a ``Content-Length`` ever reaches the client (RFC 9112 §6.3: the client sees
  an incomplete message). Then ``ConnectionResetError``: aiohttp takes it as a client gone
  mid-response (its ``finish_response`` on 3.10 to 3.14), logs nothing and closes.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from ..spec.snapshot import Snapshot, StreamedBody, TruncatedBodyError

__all__ = ["CHUNK", "StreamedReply"]

CHUNK = 64 * 1024  # the most one read of the stream takes: a slow client holds no more


class StreamedReply(web.StreamResponse):
    """One caller's replay of a snapshot whose body streams (module rules)."""

    def __init__(self, snap: Snapshot) -> None:
        super().__init__(status=snap.status, reason=snap.reason, headers=snap.headers)
        assert snap.stream is not None
        self._stream: StreamedBody = snap.stream
        self._transport: asyncio.Transport | None = None
        self._bodiless = snap.status in (204, 304) or snap.status < 200  # RFC 9110 §6.4.1
        self._sent = False
        length = snap.stream.length  # known: a stored entry's, or a body already complete
        if length is not None and not self._bodiless and self.content_length is None:
            self.content_length = length

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if not self.prepared:
            self._transport = request.transport
            self._bodiless = self._bodiless or request.method == "HEAD"
        return await super().prepare(request)

    async def write_eof(self, data: bytes = b"") -> None:
        if not self._sent and self.prepared:
            self._sent = True
            if not self._bodiless:
                await self._send_body()
        await super().write_eof(data)

    async def _send_body(self) -> None:
        """The stream through this caller's own reader; a short one resets the connection."""
        reader = self._stream.reader()
        length = self.content_length
        sent = 0
        try:
            while chunk := await reader.read(CHUNK):
                sent += len(chunk)
                if length is not None and sent > length:
                    raise TruncatedBodyError(f"body longer than its Content-Length {length}")
                await self.write(chunk)
            if length is not None and sent != length:
                raise TruncatedBodyError(f"body ended at {sent} of {length} bytes")
        except TruncatedBodyError as exc:
            if self._transport is not None:
                self._transport.abort()  # before any end of the body is written (module rules)
            raise ConnectionResetError(f"the response body ended short: {exc}") from exc
        finally:
            reader.close()
