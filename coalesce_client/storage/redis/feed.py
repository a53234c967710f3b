"""One pub/sub connection of RedisStorage: the channels somebody waits on, watched by a PING.

Rules of this module (issue 23):

* A feed is one connection to one Redis, or to one node of a cluster. ``want(channel)`` says a
  channel is needed and returns an event set once the server has confirmed its subscription (a
  publication sent after that reaches us); ``unwant`` says it no longer is. The commands are
  sent in the background by one flush that brings the server to what is wanted (unsubscribes
  first), so a burst of wants and unwants costs one command each way, in order.
* On a cluster (``sharded``) the commands are ``SSUBSCRIBE`` and ``SUNSUBSCRIBE``: a channel
  lives in its slot's shard and only that shard's primary sends its messages.
* A feed is watched: silent for half of ``health_check_interval``, it sends a ``PING``; silent
  for the other half, it is dead (a half-open connection: a partition that leaves the socket
  open). A dead or closed connection, a refused command, or a ``sunsubscribe`` nobody asked for
  (the slot moved: a failover, a resharding) ends the feed: it tells its owner (``lost``), who
  routes its channels again after a rest (``events.py``). Meanwhile waiters re-check
  (``core/fleet.py``).
* Everything it hears goes to ``heard(channel, data)``; it knows nothing of keys or outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = ["Feed", "Sink", "Source"]

log = logging.getLogger("coalesce_client")

_MESSAGES = frozenset({"message", "smessage"})
_CONFIRMS = frozenset({"subscribe", "ssubscribe"})
_ENDS = frozenset({"unsubscribe", "sunsubscribe"})


@dataclass(frozen=True, slots=True)
class Source:
    """Where a feed connects: ``pubsub()`` makes a redis-py ``PubSub``; ``close()`` frees what
    was built for this feed alone (a cluster node's client), or nothing."""

    address: str
    pubsub: Callable[[], Any]
    close: Callable[[], Awaitable[None]]


class Sink(Protocol):
    """The owner of feeds (``events.py``)."""

    def heard(self, channel: bytes, data: bytes) -> None: ...

    def lost(self, feed: Feed, was_up: bool) -> None: ...


class _Dead(Exception):
    """The connection stopped answering, or the server moved a channel away."""


class Feed:
    """One pub/sub connection and the channels wanted on it (module rules)."""

    __slots__ = (
        "_asked_off",
        "_confirmed",
        "_flush",
        "_on_server",
        "_pubsub",
        "_run",
        "_sink",
        "_source",
        "_wanted",
        "closing",
        "health",
        "sharded",
        "up",
    )

    def __init__(self, source: Source, sink: Sink, sharded: bool, health: float) -> None:
        self._source = source
        self._sink = sink
        self.sharded = sharded
        self.health = health  # seconds: health_check_interval
        self._wanted: set[str] = set()
        self._on_server: set[str] = set()  # subscribed, or asked for, on this connection
        self._confirmed: dict[str, asyncio.Event] = {}  # set once the server confirmed
        self._asked_off: Counter[str] = Counter()  # unsubscribes sent, not yet answered
        self._pubsub: Any = None  # the PubSub, once connected
        self._run: asyncio.Task[None] | None = None
        self._flush: asyncio.Task[None] | None = None
        self.up = False  # the server has answered on this connection
        self.closing = False

    @property
    def address(self) -> str:
        return self._source.address

    def want(self, channel: str) -> asyncio.Event:
        """Subscribe to ``channel`` (if not already); the event set once the server confirms."""
        confirmed = self._confirmed.get(channel)
        if confirmed is None:
            confirmed = self._confirmed[channel] = asyncio.Event()
        if channel not in self._wanted:
            self._wanted.add(channel)
            self._kick()
        return confirmed

    def unwant(self, channel: str) -> None:
        if channel in self._wanted:
            self._wanted.discard(channel)
            self._kick()

    def _kick(self) -> None:
        if self.closing:
            return
        if self._run is None:
            self._run = asyncio.ensure_future(self._connection())
        elif self._pubsub is not None and (self._flush is None or self._flush.done()):
            self._flush = asyncio.ensure_future(self._sync(self._pubsub))

    async def _sync(self, pubsub: Any) -> None:
        """Bring the server to what is wanted (module rules); a failure is the reader's to find."""
        try:
            while self._on_server != self._wanted and not self.closing:
                leaving = sorted(self._on_server - self._wanted)
                coming = sorted(self._wanted - self._on_server)
                if leaving:
                    self._on_server.difference_update(leaving)
                    for channel in leaving:
                        self._confirmed.pop(channel, None)
                    self._asked_off.update(leaving)
                    await self._send(
                        pubsub.sunsubscribe if self.sharded else pubsub.unsubscribe, leaving
                    )
                if coming:
                    self._on_server.update(coming)
                    await self._send(
                        pubsub.ssubscribe if self.sharded else pubsub.subscribe, coming
                    )
        except Exception as exc:
            log.debug("Redis pub/sub command failed (%r); the health check decides", exc)

    async def _send(self, command: Callable[..., Awaitable[Any]], channels: list[str]) -> None:
        """One command for all ``channels``; one each when sharded (channels of several slots
        in one command are refused: ``CROSSSLOT``)."""
        if not self.sharded:
            await command(*channels)
            return
        for channel in channels:
            await command(channel)

    async def _connection(self) -> None:
        pubsub = self._source.pubsub()
        try:
            if self._wanted:
                await self._sync(pubsub)
            else:
                await pubsub.ping()  # connects: a feed is kept for the next want
            self._pubsub = pubsub
            self._kick()  # what changed while connecting
            await self._listen(pubsub)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("Redis pub/sub connection to %s lost (%r)", self.address or "Redis", exc)
        finally:
            self._pubsub = None
            self.closing = True
            with contextlib.suppress(Exception, asyncio.TimeoutError):  # a dead one may hang
                await asyncio.wait_for(pubsub.aclose(), self.health)
            with contextlib.suppress(Exception):
                await self._source.close()
        self._sink.lost(self, self.up)

    async def _listen(self, pubsub: Any) -> None:
        half = self.health / 2
        pinged = False
        while True:
            message = await pubsub.get_message(timeout=half)
            if message is None:
                if pinged:
                    raise _Dead(f"no answer to a PING within {self.health} s")
                await pubsub.ping()
                pinged = True
                continue
            pinged = False
            self.up = True
            self._message(message)

    def _message(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind in _MESSAGES:
            self._sink.heard(message["channel"], message["data"])
            return
        channel = message["channel"]
        channel = channel.decode("utf-8", "replace") if isinstance(channel, bytes) else channel
        if kind in _CONFIRMS:
            confirmed = self._confirmed.get(channel)
            if confirmed is not None and channel in self._on_server:
                confirmed.set()
        elif kind in _ENDS and channel is not None:
            if self._asked_off[channel] > 0:
                self._asked_off[channel] -= 1
            elif channel in self._on_server:
                raise _Dead(f"the server ended the subscription to {channel} (its slot moved)")

    async def close(self) -> None:
        """Stop: no ``lost`` is told."""
        self.closing = True
        for task in (self._flush, self._run):
            if task is not None:
                task.cancel()
        running = [task for task in (self._flush, self._run) if task is not None]
        await asyncio.gather(*running, return_exceptions=True)
        if self._run is None:
            with contextlib.suppress(Exception):
                await self._source.close()
