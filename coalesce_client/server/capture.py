"""A flight leader's handler run that streams its response: written into a spool, not onto a
connection (issue 24).

Rules of this module (docs/architecture.md, the server face; ``send.py`` decides when a run is
captured, ``streamed.py`` replays what it captured):

* While the handler runs, the request's payload writer is a ``Capture`` (``compat.writing_to``):
  a response the handler prepares sends its status line and headers there, and its body into a
  ``Spool`` (``core/spool.py``: memory up to ``max_body_size``, then a temporary file), never to
  the leader's connection. Every caller of the flight, the leader included, is then answered from
  its own reader of that spool, at its own connection's pace.
* The flight goes on as soon as the headers are out: the run goes on in the background, filling
  the spool at the handler's own pace (no reader, slow or gone, holds it up: ``Spool.append``
  never waits; each write yields once, so that the readers get their turn). A run that raises
  after its headers fails the spool (``TruncatedBodyError`` in every reader: a reset connection
  for each client, never a short body presented as complete); it is logged once, here.
* Once the flight has its snapshot (``take``), the run holds the spool by a weak reference only:
  when nobody can read it any more (every caller answered or gone, nothing storing it), its
  next write raises ``ConnectionResetError``, what aiohttp raises in a handler whose client
  went away, and the run stops there (not logged: nobody is left to miss the body).
* The captured headers are the ones aiohttp would have sent, without what belongs to one
  connection (hop-by-hop fields, RFC 9110 §7.6.1; ``Server``). ``Content-Length`` stays when the
  handler set it (the spool then knows the length it must reach). A compression the handler
  asked for is not applied: the bytes captured are the handler's own, and ``Content-Encoding``
  is dropped with it (as replays from bytes, which are never compressed either).
* A response without a body (to a HEAD, a 1xx, 204 or 304: RFC 9110 §6.4.1) captures none.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

from ..core.spool import Spool
from ..spec.snapshot import Headers
from ..spec.stored_fields import HOP_BY_HOP
from .compat import writing_to

__all__ = ["Capture", "Head", "run_captured"]

log = logging.getLogger("coalesce_client")

# What belongs to one connection, or that aiohttp sets anew for each response it sends.
_NOT_CAPTURED = HOP_BY_HOP | {"server"}
# Background runs still filling their spools: kept here so that none is garbage-collected.
_RUNNING: set[asyncio.Future[None]] = set()


@dataclass(frozen=True, slots=True)
class Head:
    """The status line and headers a handler's response prepared, as they will be replayed."""

    status: int
    reason: str
    headers: Headers


class Capture(AbstractStreamWriter):
    """The payload writer of a captured run (module rules): ``head`` resolves with what the
    handler's response prepared; its body arrives in ``spool``."""

    def __init__(self, bound: int, method: str) -> None:
        self.head: asyncio.Future[Head] = asyncio.get_running_loop().create_future()
        self.spool: Spool | None = None  # made with the headers (they carry its length)...
        self._taken: weakref.ref[Spool] | None = None  # ...then held weakly (module rules)
        self.compressed = False
        self.length: int | None = None  # set by aiohttp at prepare: Content-Length or None
        self._bound = bound  # max_body_size: what the spool holds in memory
        self._head_only = method == "HEAD"
        self._empty = False

    async def write_headers(self, status_line: str, headers: Any) -> None:
        _, code, reason = f"{status_line}  ".split(" ", 2)  # "HTTP/1.1 200 OK"
        status = int(code)
        self._empty = self._head_only or status in (204, 304) or status < 200
        dropped = _NOT_CAPTURED | {"content-encoding"} if self.compressed else _NOT_CAPTURED
        kept = tuple((k, v) for k, v in headers.items() if k.lower() not in dropped)
        self.spool = Spool(self._bound, 0 if self._empty else self.length)
        if not self.head.done():
            self.head.set_result(Head(status, reason.strip(), kept))

    def take(self) -> Spool:
        """The spool, for the flight's snapshot: from now on the run holds it weakly."""
        spool = self.spool
        assert spool is not None, "taken once its headers are out"
        self._taken = weakref.ref(spool)
        self.spool = None
        return spool

    def _spool(self) -> Spool | None:
        return self.spool if self._taken is None else self._taken()

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        spool = self._spool()
        if spool is None:
            if self._taken is not None:  # nobody can read it any more (module rules)
                raise ConnectionResetError("nobody reads this response any more")
            raise RuntimeError("a body written before its headers")
        if not self._empty:
            spool.append(bytes(chunk))
            self.output_size += len(chunk)
        await asyncio.sleep(0)  # the readers' turn (module rules)

    async def write_eof(self, chunk: bytes = b"") -> None:
        if chunk:
            await self.write(chunk)
        self.finish()

    def finish(self) -> None:
        spool = self._spool()
        if spool is not None:
            spool.finish()

    def fail(self, exc: BaseException) -> bool:
        """Fail the spool; False when nobody can read it any more (nothing to fail)."""
        spool = self._spool()
        if spool is not None:
            spool.fail(exc)
        return spool is not None

    async def drain(self) -> None:
        return None

    def enable_compression(self, encoding: str = "deflate", strategy: Any = None) -> None:
        self.compressed = True  # not applied (module rules)

    def enable_chunking(self) -> None:
        return None  # a spool needs no framing: its readers' responses frame it themselves

    def send_headers(self) -> None:
        return None  # aiohttp 3.12+: the headers went to head already


async def run_captured(
    run: Awaitable[web.StreamResponse], request: web.Request, capture: Capture
) -> web.StreamResponse | None:
    """``run`` (the handler's, on ``request``) with ``capture`` as its payload writer: the
    response it returned without preparing it, or None once a response it prepared has its
    headers in ``capture.head`` (its run goes on in the background: module rules). Raises what
    the handler raised before any headers."""
    was = writing_to(request, capture)
    task = asyncio.ensure_future(run)
    try:
        await asyncio.wait((task, capture.head), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:  # its caller cancelled: the run with it, as when it runs inline
        task.cancel()
        raise
    finally:
        writing_to(request, was)  # the callers' own responses go to the connection
    if not capture.head.done():
        return task.result()
    rest = asyncio.ensure_future(_rest(task, capture, request))
    _RUNNING.add(rest)
    rest.add_done_callback(_RUNNING.discard)
    return None


async def _rest(
    task: asyncio.Future[web.StreamResponse], capture: Capture, request: web.Request
) -> None:
    """The rest of a captured run, after its headers: its body ends the spool, or fails it."""
    try:
        resp = await task
        if resp.prepared:
            await resp.write_eof()  # what aiohttp does after a handler returns
        capture.finish()
    except BaseException as exc:
        read = capture.fail(exc)
        if not isinstance(exc, Exception):
            raise
        if read:  # else the run stopped because nobody reads it (module rules)
            log.exception("Error handling request %s %s", request.method, request.rel_url)
