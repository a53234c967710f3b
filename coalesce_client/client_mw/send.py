"""The real request behind a client middleware flight: the rest of aiohttp's chain, run once.

Rules of this module (docs/architecture.md; as ``client/send.py``'s ``SharedRequest``, over a
``ClientRequest`` instead of a session call):

* ``ChainSend`` is the ``send`` of one request's flight: the handler aiohttp gave the middleware
  (the middlewares after ours, then the connection) runs once, timed around (RFC 9111 §4.2.3),
  and its body read as the session reads its own (``client/send.py``'s ``received``): whole up
  to ``max_body_size``, else shared as it streams (a spool every caller reads at its own pace,
  issue 24); the live response released once read.
* A revalidation (RFC 9111 §4.3.1) sends the caller's own request with the validators added,
  and takes them off again: the request's headers are its caller's.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import ClientRequest, ClientResponse

from ..client.body import Kept
from ..client.send import Times, received
from ..core.policy import CachePolicy
from ..core.records import CacheStatus, Fetched
from ..spec.snapshot import Headers, Snapshot
from ..storage.base import Clock

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
        # Read as the session reads its own (issue 24): a body over max_body_size is shared
        # as it streams, every caller (the leader too) reading its own replay of the spool.
        snap = await received(resp, policy.max_body_size, self.times, req.session)
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
