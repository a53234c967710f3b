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

from aiohttp import hdrs, web
from aiohttp.abc import AbstractStreamWriter
from multidict import CIMultiDict

__all__ = [
    "NoWriter",
    "ResponseTemplate",
    "detach",
    "fresh_exception",
    "request_line",
    "template_of",
    "writing_to",
]

# The values a response's state may hold for a template to share them between its copies.
_SHARED = (type(None), bool, int, float, str, bytes)
_new = object.__new__


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
    writing_to(request, NoWriter())


def writing_to(request: web.BaseRequest, writer: AbstractStreamWriter) -> AbstractStreamWriter:
    """Make ``writer`` the payload writer of the responses ``request`` prepares from now on (a
    response prepared before keeps its own); the writer it had."""
    # Checked on aiohttp 3.10.0, 3.12.0 and 3.14.5: StreamResponse.prepare() -> _start() takes
    # request._payload_writer as the response's writer, and writes everything through it (the
    # status line and headers: write_headers; the body: write, write_eof).
    was = request._payload_writer
    request._payload_writer = writer
    return was


def request_line(request: web.Request) -> tuple[str, str, str, str]:
    """``(request.method, request.scheme, request.host, request.raw_path)``: the same values,
    read without calling the three properties (each a Python call when first read; a third of a
    stored route's key, issue 20). A hashable tuple: the middleware's key memo is keyed by it."""
    # Checked on aiohttp 3.10.0 and 3.14.5: scheme, host and raw_path are reified: a value
    # already read, or set by clone(scheme=, host=) or an absolute-form request target, is in
    # request._cache; else scheme is "https" when _transport_sslcontext is set, host is the
    # message's Host header (without one: the socket's name, left to the property), raw_path the
    # message's path; method is the message's. A subclass may override any of them: it reads
    # them as properties.
    cache = request._cache
    if "host" not in cache and "scheme" not in cache and type(request) is web.Request:
        msg = request._message  # clone(method=, rel_url=, headers=) makes a new one
        host = msg.headers.get(hdrs.HOST)
        if host is not None:
            scheme = "https" if request._transport_sslcontext else "http"
            return msg.method, scheme, host, msg.path
    return request.method, request.scheme, request.host, request.raw_path


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


class ResponseTemplate:
    """A ``web.Response`` kept as its state, from which fresh equivalents are made fast: each
    copy has its own headers and state, and shares only immutable values (the body bytes)."""

    __slots__ = ("_cls", "_dicts", "_empty", "_headers", "_state")

    def __init__(
        self, cls: type[web.Response], state: dict[str, Any], empty: tuple[str, ...]
    ) -> None:
        self._cls = cls
        self._headers: CIMultiDict[str] = state.pop("_headers")
        self._state = state
        self._dicts = tuple(name for name in empty if type(state[name]) is dict)
        self._empty = tuple((name, type(state[name])) for name in empty if name not in self._dicts)

    def headers(self, age: str, name: str | None, value: str) -> CIMultiDict[str]:
        """The template's headers with ``Age: age`` and ``name: value`` (None: no such header)
        set, as ``headers[name] = value`` sets them: a header block for ``copy``."""
        headers: CIMultiDict[str] = self._headers.copy()
        headers[hdrs.AGE] = age
        if name is not None:
            headers[name] = value
        return headers

    def copy(self, headers: CIMultiDict[str]) -> web.Response:
        """A fresh response with a copy of ``headers`` (a block of ``self.headers()``)."""
        resp = _new(self._cls)
        state = self._state.copy()
        for attr in self._dicts:  # {} costs less than dict()
            state[attr] = {}
        for attr, kind in self._empty:
            state[attr] = kind()
        state["_headers"] = headers.copy()
        resp.__dict__ = state
        return resp


def template_of(resp: web.Response) -> ResponseTemplate | None:
    """A template of ``resp`` as it is now (a response not yet prepared), or None when its state
    holds what copies could not share."""
    # Checked on aiohttp 3.10.0 and 3.14.5: a Response keeps its whole state in its __dict__ (no
    # __slots__): its headers (a CIMultiDict), dicts that are empty until it is prepared (its
    # state; on 3.10 its cookies, a SimpleCookie) and immutable values (status, reason, the body
    # bytes, None and flags); aiohttp writes what preparing adds to the response's own __dict__.
    state = dict(vars(resp))
    headers = state.get("_headers")
    if resp.prepared or type(headers) is not CIMultiDict:
        return None
    state["_headers"] = headers.copy()  # the template's own: the response goes to a caller
    empty = []
    for name, value in state.items():
        if isinstance(value, dict) and not value:
            empty.append(name)
        elif name != "_headers" and not isinstance(value, _SHARED):
            return None
    return ResponseTemplate(type(resp), state, tuple(empty))
