"""CallContext: what a request method returns before the response exists.

Rules of this module: a ``CallContext`` is a coroutine that is also an async context manager, as
aiohttp's own ``_RequestContextManager``; ``await``, ``async with``, ``asyncio.create_task`` and
``gather`` all accept it. It adds no coroutine of its own to a call: entering it awaits the
call's coroutine (``CallPath._request``), leaving it returns an awaitable already done. Every
coroutine frame is measured on a hit (issue 20: a frame and its await cost about 600
instructions each way). Leaving releases the response the call kept (``_keep``): one that may
hold a connection or a stream; a hit keeps none (stored records never carry a stream: its body
is bytes in memory, with nothing to give back).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine, Generator
from types import TracebackType
from typing import Any, Protocol

from yarl import URL

from .response import CachedResponse

__all__ = ["CallContext", "Requester"]


class Requester(Protocol):
    """What a ``CallContext`` runs: ``CallPath._request`` (client/calls.py)."""

    def _request(
        self, method: str, url: str | URL, kwargs: dict[str, Any], ctx: CallContext
    ) -> Coroutine[Any, Any, CachedResponse]: ...


class CallContext(Coroutine[Any, Any, CachedResponse]):
    """What ``s.get(...)`` returns: a coroutine that is also an async context manager.

    ``await`` and ``async with`` both give the response; leaving the ``async with`` releases
    the response the call kept (module rules).
    """

    __slots__ = ("_coro", "_resp")

    def __init__(
        self, path: Requester, method: str, url: str | URL, kwargs: dict[str, Any]
    ) -> None:
        self._resp: CachedResponse | None = None
        self._coro = path._request(method, url, kwargs, self)

    def _keep(self, resp: CachedResponse) -> CachedResponse:
        """Remember ``resp`` for ``__aexit__`` to release; return it."""
        self._resp = resp
        return resp

    def send(self, value: Any) -> Any:
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        if val is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # pragma: no cover - legacy signature

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, CachedResponse]:
        return self._coro.__await__()

    def __aenter__(self) -> Coroutine[Any, Any, CachedResponse]:
        return self._coro

    def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> Awaitable[None]:
        resp = self._resp
        if resp is not None:
            resp.release()
        return _DONE


class _NoLoop:
    """The loop of ``_DONE``: a future asks its loop only whether it debugs when it is built;
    a future already done is awaited without its loop (asyncio's C and Python futures alike)."""

    def get_debug(self) -> bool:
        return False


# An awaitable already done, with None as its result: what leaving a ``CallContext`` returns,
# shared by every loop (awaiting it reads its result and nothing else).
_DONE: asyncio.Future[None] = asyncio.Future(loop=_NoLoop())  # type: ignore[arg-type]
_DONE.set_result(None)
