"""The real request behind a client middleware flight: the rest of aiohttp's chain, run once.

Rules of this module (docs/architecture.md; as ``client/send.py``'s ``SharedRequest``, over a
``ClientRequest`` instead of a session call):

* ``ChainSend`` is the ``send`` of one request's flight: the handler aiohttp gave the middleware
  (the middlewares after ours, then the connection) runs once, timed around (RFC 9111 §4.2.3),
  and the body is read only up to ``max_body_size``. A body over the limit is kept, whole and
  live, for its own caller to stream (``body.Kept``), and the flight ends at once so that its
  followers send their own; anything else is a complete ``Snapshot``, the live response
  released.
* A revalidation (RFC 9111 §4.3.1) sends the caller's own request with the validators added,
  and takes them off again: the request's headers are its caller's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import ClientRequest, ClientResponse

from ..client.body import Kept, read_within
from ..client.send import Times, snapshot_of
from ..core.policy import CachePolicy
from ..core.records import CacheStatus, Fetched
from ..spec.snapshot import Headers, Snapshot
from ..storage.base import Clock
from .compat import put_back

__all__ = ["ChainSend", "Handler", "Passing", "Replay"]

Handler = Callable[[ClientRequest], Awaitable[ClientResponse]]
Replay = Callable[[ClientRequest, Snapshot, CacheStatus], ClientResponse]


class ChainSend(Kept):
    """The ``send`` of one request's flight (module rules); it is also its caller's ``Kept``."""

    __slots__ = ("_clock", "_handler", "_policy", "_replay", "_req", "times")

    def __init__(
        self,
        req: ClientRequest,
        handler: Handler,
        policy: CachePolicy,
        replay: Replay,
        clock: Clock,
    ) -> None:
        super().__init__()
        self._clock = clock  # the core's: it dates the response
        self._req = req
        self._handler = handler
        self._policy = policy
        self._replay = replay  # what should_store is shown: the response every caller would get
        self.times = Times(0.0, 0.0)

    async def __call__(self, conditional: Headers = (), detached: bool = False) -> Fetched:
        req, policy = self._req, self._policy
        clock = self._clock
        for name, value in conditional:
            req.headers[name] = value
        sent = clock()
        try:
            resp = await self._handler(req)
        finally:
            for name, _ in conditional:
                req.headers.popall(name, None)
        self.times = Times(sent, clock())
        limit = policy.max_body_size
        try:
            body = await read_within(resp, limit)
        except BaseException:
            resp.close()  # a truncated or cancelled read: nobody gets a short body
            raise
        if not (body is not None and len(body) <= limit):  # too large to share
            put_back(resp, body or b"")  # its caller streams it whole, from the first byte
            self.keep(resp, b"")  # and the flight ends now
            return Fetched(None, withheld="body over max_body_size")
        resp.release()
        snap = snapshot_of(resp, body, self.times)
        should_store = policy.should_store
        verdict = should_store is None or should_store(self._replay(req, snap, "miss"))
        return Fetched(snap, bool(verdict))


class Passing(ChainSend):
    """The ``send`` of a request that takes no part: the chain's response, untouched, streamed."""

    __slots__ = ()

    async def __call__(self, conditional: Headers = (), detached: bool = False) -> Fetched:
        sent = self._clock()  # never conditional: a request that takes no part revalidates nothing
        self.keep(await self._handler(self._req), b"")
        self.times = Times(sent, self._clock())
        return Fetched(None)
