"""RedisStorage's one pub/sub connection: the fleet's outcomes and the invalidations it hears.

Rules of this module:

* Events travel on one pub/sub connection per storage: a single pattern subscription to
  ``{namespace}:ev:*`` (``layout.py``), made on first need (a ``watch``, or the first call that
  succeeds once an ``on_drop`` callback is registered) and made again after a drop, with the
  link's backoff (0.5 s, doubling to 30 s).
* ``watch`` registers a local waiter for one key's next outcome before it returns; ``unwatch``
  gives it back. A waiter never relies on its publication alone: while the subscription is down
  it relies on its re-checks (``core/fleet.py``).
* ``on_drop`` callbacks (``TieredStorage``) hear every key deleted, and every clear, by any
  process of the namespace.
* What is heard goes through the storage's ``_heard`` (given at construction), so that a
  storage can be told apart from the connection that hears for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from .layout import CLEAR, DROPPED, Names
from .link import BACKOFF_FIRST, BACKOFF_MAX, Link

__all__ = ["Events"]

log = logging.getLogger("coalesce_client")


class Events:
    """The event connection of one storage, its waiters and its drop callbacks."""

    __slots__ = (
        "_drop_callbacks",
        "_heard",
        "_link",
        "_listener",
        "_names",
        "_subscribed",
        "_watchers",
        "closed",
    )

    def __init__(self, link: Link, names: Names, heard: Callable[[str, bytes], None]) -> None:
        self._link = link
        self._names = names
        self._heard = heard  # where a publication goes (module rules); usually self.heard
        # key -> futures of the local waiters for its outcome (watch / unwatch)
        self._watchers: dict[str, set[asyncio.Future[bytes]]] = {}
        self._drop_callbacks: list[Callable[[str | None], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Event | None = None  # set while the pattern subscription holds
        self.closed = False

    @property
    def subscribed(self) -> bool:
        """Does the pattern subscription hold now? (publications reach this process)"""
        return self._subscribed is not None and self._subscribed.is_set()

    async def watch(self, key: str, patience: float) -> asyncio.Future[bytes]:
        """A future for the next outcome published for ``key``, registered now; the subscription
        is made first if it is not there, waiting for it at most ``patience`` seconds."""
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(key, set()).add(waiter)
        subscribed = self.listen()
        if not subscribed.is_set():
            # Not within the bound: the waiter relies on its re-checks (fleet.py) until it is.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(subscribed.wait(), patience)
        return waiter

    def unwatch(self, key: str, waiter: asyncio.Future[bytes]) -> None:
        waiters = self._watchers.get(key)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._watchers[key]

    def on_drop(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(key)`` for every key deleted, ``callback(None)`` for every clear,
        from the storage's next call that succeeds on (module rules)."""
        self._drop_callbacks.append(callback)
        if self._listener is None:
            self._link.then = self.listen

    def heard(self, key: str, data: bytes) -> None:
        """A publication for ``key``: to the drop callbacks, or to the key's waiters."""
        if data in (DROPPED, CLEAR):
            for callback in self._drop_callbacks:
                callback(None if data == CLEAR else key)
            return
        for waiter in self._watchers.get(key, ()):
            if not waiter.done():
                waiter.set_result(data)

    def listen(self) -> asyncio.Event:
        """Start the connection unless it runs; the event set while it is subscribed."""
        if self._subscribed is None:
            self._subscribed = asyncio.Event()
        if self._listener is None or self._listener.done():
            self._listener = asyncio.ensure_future(self._run(self._subscribed))
        return self._subscribed

    async def _run(self, subscribed: asyncio.Event) -> None:
        rest = BACKOFF_FIRST
        while not self.closed:
            pubsub: Any = self._link.pubsub_client.pubsub()  # PubSub; its aclose is untyped
            try:
                await pubsub.psubscribe(self._names.events)
                async for message in pubsub.listen():
                    if message["type"] == "psubscribe":
                        subscribed.set()
                        rest = BACKOFF_FIRST
                    elif message["type"] == "pmessage":
                        self._message(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("Redis pub/sub connection lost (%r); again in %.1f s", exc, rest)
            finally:
                subscribed.clear()
                with contextlib.suppress(Exception):  # a dead connection may fail to close
                    await pubsub.aclose()
            # Waiters meanwhile rely on their re-checks (fleet.py); try again after a rest.
            await asyncio.sleep(rest)
            rest = min(rest * 2, BACKOFF_MAX)

    def _message(self, channel: bytes, data: bytes) -> None:
        key = self._names.key_of(channel.decode("utf-8", "replace"))
        if key is not None:
            self._heard(key, data)

    async def close(self) -> None:
        """Stop the connection and cancel every waiter."""
        self.closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        for waiters in self._watchers.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        self._watchers.clear()
