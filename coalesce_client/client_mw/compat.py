"""What the client middleware needs of aiohttp beyond its public API, in one place.

Rules of this module (docs/architecture.md, the client middleware face):

* The only module of this face that reads what aiohttp keeps to itself (a name starting with
  ``_``) or builds what aiohttp builds for itself. Each use says the aiohttp versions it was
  checked on: 3.12.0 (the first with client middlewares) and 3.14.5; CI runs both.
* A replayed response is built the way ``ClientRequest.send`` builds one (the request's
  ``response_class``, its ``request_info``, traces, loop and session), then given the state
  ``ClientResponse.start`` gives a response whose head has arrived: status, reason, headers, and
  a ``StreamReader`` fed with the whole body. It is a real ``ClientResponse``, its caller's own.
"""

from __future__ import annotations

import inspect
from http.cookies import SimpleCookie
from typing import Any, cast

import aiohttp
from aiohttp import ClientRequest, ClientResponse, StreamReader
from aiohttp.helpers import TimerNoop
from aiohttp.http import HttpVersion11
from multidict import CIMultiDict, CIMultiDictProxy

__all__ = ["HAS_MIDDLEWARES", "body_bytes", "replayed", "require_middlewares"]

# Client middlewares came with aiohttp 3.12 (ClientSession(middlewares=...)).
HAS_MIDDLEWARES = "middlewares" in inspect.signature(aiohttp.ClientSession.__init__).parameters
# 3.14 (not 3.12.0) wants the request's stream writer; for a request already sent it reads only
# its ``output_size``.
_INIT: dict[str, Any] = {}
if "stream_writer" in inspect.signature(ClientResponse.__init__).parameters:

    class _Sent:
        output_size = 0  # no byte of it was sent: it was answered here

    _INIT["stream_writer"] = _Sent()
_LIMIT = 2**16  # aiohttp's read buffer (ClientSession's read_bufsize default)


def require_middlewares() -> None:
    if not HAS_MIDDLEWARES:
        raise RuntimeError(
            "client_middleware needs aiohttp >= 3.12 (the first with client middlewares, "
            f"ClientSession(middlewares=...)); this is aiohttp {aiohttp.__version__}. "
            "Upgrade aiohttp, or use CoalescingSession"
        )


class _NoConnection:
    """The protocol of a stream fed from memory: nothing to pause or resume."""

    # Checked on 3.12.0 and 3.14.5: StreamReader reads this flag and calls these two (3.14's
    # feed_eof with resume_parser=False).
    _reading_paused = False

    def pause_reading(self) -> None: ...

    def resume_reading(self, resume_parser: bool = True) -> None: ...


_NO_CONNECTION: Any = _NoConnection()


def replayed(
    req: ClientRequest,
    status: tuple[int, str],
    headers: CIMultiDict[str],
    body: bytes,
    content: object = None,
) -> ClientResponse:
    """A ``ClientResponse`` of ``req`` with this status, headers and body (module rules), or,
    for a body that streams, with ``content`` (its caller's reader, shaped like aiohttp's
    ``StreamReader``) in place of one fed from ``body``."""
    # Checked on 3.12.0 and 3.14.5: ClientRequest.send passes these; _traces is private.
    resp = req.response_class(
        req.method,
        req.original_url,
        writer=None,
        continue100=None,
        timer=TimerNoop(),  # nothing to time: the body is here
        request_info=req.request_info,
        traces=req._traces,
        loop=req.loop,
        session=req.session,
        **_INIT,
    )
    # What ClientResponse.start sets (checked on 3.12.0 and 3.14.5): version, status, reason,
    # _headers, _raw_headers, content; cookies through the public setter. _closed stays True,
    # as for a response whose body arrived whole: there is no connection to give back.
    resp.version = HttpVersion11
    resp.status, resp.reason = status
    resp._headers = CIMultiDictProxy(headers)
    resp._raw_headers = tuple(
        (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()
    )
    if content is None:
        stream = StreamReader(_NO_CONNECTION, _LIMIT, loop=req.loop)
        if body:
            stream.feed_data(body)
        stream.feed_eof()
        content = stream
    # Checked on 3.12.0 and 3.14.5: read(), release() and close() use only the reads and
    # ``exception``/``set_exception`` of their content, which a ReaderStream has too.
    resp.content = cast(StreamReader, content)
    if "Set-Cookie" in headers:  # the origin's own answer to this caller: its cookie jar takes them
        jar: SimpleCookie = SimpleCookie()
        for value in headers.getall("Set-Cookie"):
            jar.load(value)
        resp.cookies = jar
    return resp


def body_bytes(req: ClientRequest) -> bytes | None:
    """The bytes of a request's body, or None when it is not held in memory (a stream, a file)."""
    body = req.body
    if not body:
        return b""
    # Checked on 3.12.0 and 3.14.5: BytesPayload (bytes, str, JSON, an urlencoded form) keeps
    # its bytes in _value.
    if isinstance(body, aiohttp.payload.BytesPayload) and isinstance(body._value, bytes):
        return body._value
    return None
