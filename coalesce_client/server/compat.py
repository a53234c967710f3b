"""What the middleware needs of aiohttp.web beyond its public API, in one place.

Rules of this module (docs/architecture.md, the server face):

* The only module of the server face that reads or writes what aiohttp keeps to itself: an
  attribute whose name starts with ``_``, or an object's whole state. Each use says which aiohttp
  versions it was checked on; the suite runs on the oldest and the newest supported (3.10.0 and
  3.14.5), so a release that changes one fails here first, and only this module changes.
* Nothing else: the middleware's rules live in ``middleware.py``, the handler runs in
  ``send.py``, the replays in ``replay.py``.
"""

from __future__ import annotations

from typing import Any, NoReturn

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict

__all__ = ["NoWriter", "detach", "fresh_exception"]


class NoWriter(AbstractStreamWriter):
    """The payload writer of a background refresh's request: a handler that streams (prepares its
    response itself) fails there, so that nothing reaches a connection that may be serving
    another request by then; its refresh is logged as failed. It has no transport at all."""

    def _refuse(self) -> NoReturn:
        raise RuntimeError(
            "a background refresh (stale-while-revalidate) cannot send a streamed response"
        )

    async def write(self, chunk: Any) -> None:
        self._refuse()

    async def write_eof(self, chunk: bytes = b"") -> None:
        self._refuse()

    async def drain(self) -> None:
        self._refuse()

    def enable_compression(self, encoding: str = "deflate", strategy: Any = None) -> None:
        self._refuse()

    def enable_chunking(self) -> None:
        self._refuse()

    async def write_headers(self, status_line: str, headers: Any) -> None:
        self._refuse()


def detach(request: web.Request) -> None:
    """Cut ``request`` (a clone made for a background refresh) off its caller's connection: its
    caller was answered, and that connection may serve another request by now."""
    # Checked on aiohttp 3.10.0 and 3.14.5: BaseRequest keeps its writer in _payload_writer (one
    # of its ATTRS: no warning in DEBUG mode), which StreamResponse._start() reads when a
    # response is prepared; the public BaseRequest.writer is read-only, clone() copies it.
    request._payload_writer = NoWriter()


def fresh_exception(exc: web.HTTPException) -> web.HTTPException:
    """An equivalent of ``exc`` that shares no mutable state with it, for one more waiter."""
    # Checked on aiohttp 3.10.0 and 3.14.5: an HTTPException is a web.Response (and an
    # Exception) whose whole state is in its __dict__, its mutable parts a CIMultiDict (the
    # headers) and dicts (cookies, the response's state); no __slots__. A copy of that state,
    # those parts copied too, is the same exception, not yet prepared, for another caller.
    cls = type(exc)
    new = cls.__new__(cls)
    state = dict(vars(exc))
    for name, value in state.items():
        if isinstance(value, CIMultiDict):
            state[name] = CIMultiDict(value)
        elif isinstance(value, dict):
            state[name] = type(value)(value) if type(value) is dict else value.copy()
    new.__dict__.update(state)
    new.args = exc.args
    return new
