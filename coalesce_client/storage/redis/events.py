"""RedisStorage's event connections: the outcomes its waiters wait for, the invalidations it hears.

Rules of this module:

* A process hears only what it waits for (issue 23): ``watch`` subscribes to the key's channel
  (once for all the process's waiters of that key) and ``unwatch`` of its last waiter
  unsubscribes, on the connection of the key's shard (``feed.py``): one connection for one
  Redis, one per primary that holds a watched key on a cluster. ``watch`` registers the local
  waiter before it returns, having waited at most ``patience`` for the subscription to be
  confirmed; a waiter never relies on its publication alone: while a subscription is not there
  it relies on its re-checks (``core/fleet.py``).
* ``on_drop`` callbacks (``TieredStorage``) hear every key deleted and every clear of the
  namespace, on its one drops channel, subscribed from the first call that succeeds once a
  callback is registered.
* A feed lost (closed, dead by its health check, its slot moved) is replaced after a rest (0.5 s,
  doubling to 30 s while feeds die before they answer): the topology is read again on a cluster,
  and every channel still wanted is subscribed again where it now lives.
* What is heard goes through the storage's ``_heard`` (given at construction), so that a
  storage can be told apart from the connections that hear for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from .feed import Feed
from .layout import CLEAR, DROPPED, Names, invalidation
from .link import BACKOFF_FIRST, BACKOFF_MAX, Link

__all__ = ["Events"]

log = logging.getLogger("coalesce_client")


class Events:
    """The event connections of one storage, its waiters and its drop callbacks."""

    __slots__ = (
        "_drop_callbacks",
        "_feeds",
        "_heard",
        "_link",
        "_names",
        "_recovery",
        "_rest",
        "_watchers",
        "closed",
        "health",
    )

    def __init__(
        self, link: Link, names: Names, heard: Callable[[str, bytes], None], health: float
    ) -> None:
        self._link = link
        self._names = names
        self._heard = heard  # where a publication goes (module rules); usually self.heard
        self.health = health  # health_check_interval, seconds
        # key -> futures of the local waiters for its outcome (watch / unwatch)
        self._watchers: dict[str, set[asyncio.Future[bytes]]] = {}
        self._drop_callbacks: list[Callable[[str | None], None]] = []
        self._feeds: dict[str, Feed] = {}  # by the address of the node they talk to
        self._recovery: asyncio.Task[None] | None = None
        self._rest = BACKOFF_FIRST
        self.closed = False

    @property
    def subscribed(self) -> bool:
        """Has every event connection an answer from its server? (publications reach us)"""
        return bool(self._feeds) and all(feed.up for feed in self._feeds.values())

    async def watch(self, key: str, patience: float) -> asyncio.Future[bytes]:
        """A future for the next outcome published for ``key``, registered now; the key's
        subscription is asked for first if it is not there, waited for at most ``patience``."""
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(key, set()).add(waiter)
        confirmed = self._want(self._names.channel(key))
        if not confirmed.is_set():
            # Not within the bound: the waiter relies on its re-checks (fleet.py) until it is.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(confirmed.wait(), patience)
        return waiter

    def unwatch(self, key: str, waiter: asyncio.Future[bytes]) -> None:
        waiters = self._watchers.get(key)
        if waiters is None:
            return
        waiters.discard(waiter)
        if not waiters:
            del self._watchers[key]
            channel = self._names.channel(key)
            feed = self._feeds.get(self._link.route(channel))
            if feed is not None:
                feed.unwant(channel)

    def on_drop(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(key)`` for every key deleted, ``callback(None)`` for every clear,
        from the storage's next call that succeeds on (module rules)."""
        self._drop_callbacks.append(callback)
        if len(self._drop_callbacks) == 1:
            self._link.then = self._want_drops

    def _want_drops(self) -> None:
        self._want(self._names.drops)

    def _want(self, channel: str) -> asyncio.Event:
        address = self._link.route(channel)
        feed = self._feeds.get(address)
        if feed is None or feed.closing:
            source = self._link.source(address)
            feed = self._feeds[address] = Feed(source, self, self._link.cluster, self.health)
        return feed.want(channel)

    def heard(self, channel: bytes, data: bytes) -> None:
        """A message on one of our channels (``feed.py``): to the storage's ``_heard``."""
        name = channel.decode("utf-8", "replace")
        if name == self._names.drops:
            said = invalidation(data)
            if said is not None:
                self._heard(*said)
            return
        key = self._names.key_of(name)
        if key is not None:
            self._heard(key, data)

    def deliver(self, key: str, data: bytes) -> None:
        """A publication for ``key``: to the drop callbacks, or to the key's waiters."""
        if data in (DROPPED, CLEAR):
            for callback in self._drop_callbacks:
                callback(None if data == CLEAR else key)
            return
        for waiter in self._watchers.get(key, ()):
            if not waiter.done():
                waiter.set_result(data)

    def lost(self, feed: Feed, was_up: bool) -> None:
        """``feed`` ended (module rules): its channels are routed again after a rest."""
        if self._feeds.get(feed.address) is feed:
            del self._feeds[feed.address]
        if was_up:
            self._rest = BACKOFF_FIRST
        if not self.closed and (self._recovery is None or self._recovery.done()):
            self._recovery = asyncio.ensure_future(self._recover())

    async def _recover(self) -> None:
        while not self.closed:
            rest, self._rest = self._rest, min(self._rest * 2, BACKOFF_MAX)
            log.debug("Redis pub/sub: subscribing again in %.1f s", rest)
            await asyncio.sleep(rest)
            await self._link.refresh()
            wanted = [self._names.channel(key) for key in self._watchers]
            if self._drop_callbacks:
                wanted.append(self._names.drops)
            try:
                for channel in wanted:
                    self._want(channel)
            except Exception as exc:  # a slot not covered yet (a failover under way): again
                log.debug("Redis pub/sub: a channel has no node yet (%r)", exc)
                continue
            return

    async def close(self) -> None:
        """Stop every connection and cancel every waiter."""
        self.closed = True
        if self._recovery is not None:
            self._recovery.cancel()
            await asyncio.gather(self._recovery, return_exceptions=True)
        feeds, self._feeds = list(self._feeds.values()), {}
        await asyncio.gather(*(feed.close() for feed in feeds))
        for waiters in self._watchers.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        self._watchers.clear()
