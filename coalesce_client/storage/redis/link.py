"""RedisStorage's clients, and whether Redis may be asked now: the backoff after a failure.

Rules of this module:

* redis-py is imported when a ``RedisStorage`` is built (``load``), never when this module is:
  the package imports without the extra, and building one without it raises ``ImportError``
  naming the extra.
* Redis down or slow is never a failed request: every call is bounded by ``socket_timeout``
  (connect and read; redis-py's own retries off) on a client built from a URL. A call that fails
  for want of Redis logs once per outage (then at DEBUG) and the link rests: until its backoff
  ends (0.5 s, doubling to 30 s) every call raises ``RedisUnavailableError`` at once, which the
  coalescer treats as it treats any storage failure (a miss, nothing stored, local coalescing).
  The first call after the backoff tries Redis again; success ends the outage (logged at INFO).
  Backoff runs on the event loop's clock.
* Connections are bounded (issue 23): at most ``max_connections`` calls are in progress at once,
  so a burst of distinct keys cannot open a connection per key; a call that waits past
  ``socket_timeout`` for its turn is Redis unreachable (``RedisUnavailableError``: its flight
  goes on locally), but no rest begins: Redis answers the calls that hold a connection.
* On a cluster the commands go through one ``RedisCluster`` (it routes each key to its slot's
  primary and follows ``MOVED``); event connections are made to one node each (``route``,
  ``source``), with the cluster's credentials, and ``refresh`` reads the topology again.
* The event connections wait for messages as long as they live: their reads are bounded by their
  health check (``feed.py``), not by ``socket_timeout``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ...options import check_string
from ..base import StorageUnavailableError
from .feed import Source

__all__ = ["BACKOFF_FIRST", "BACKOFF_MAX", "Link", "RedisUnavailableError", "Setup", "load"]

log = logging.getLogger("coalesce_client")

DEFAULT_URL = "redis://localhost:6379/0"
EXTRA = "pip install 'coalesce_client[redis]'"
BACKOFF_FIRST = 0.5  # seconds Redis rests after the first failure of an outage
BACKOFF_MAX = 30.0  # the backoff doubles up to this


class RedisUnavailableError(StorageUnavailableError):
    """Redis could not be reached (or answered too slowly); the storage rests until its backoff
    ends. The coalescer treats it as any storage failure: no request fails because of it."""


def load() -> Any:
    """redis-py's asyncio module, or ``ImportError`` naming the extra (module rules)."""
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - exercised in a subprocess
        raise ImportError(
            f"RedisStorage needs redis-py's asyncio client (redis>=5): {EXTRA}"
        ) from exc
    return aioredis


@dataclass(frozen=True, slots=True)
class Setup:
    """How a storage's clients are built and bounded (``RedisStorage``'s options)."""

    socket_timeout: float
    max_connections: int
    cluster: bool


class Link:
    """The clients of one storage and the state of its outage, if any (see the module rules)."""

    __slots__ = (
        "_backoff",
        "_down_errors",
        "_down_until",
        "_lost_nodes",
        "_slots",
        "_starved_logged",
        "client",
        "cluster",
        "owns_clients",
        "pubsub_client",
        "setup",
        "then",
    )

    def __init__(self, client: Any, pubsub_client: Any, owned: bool, setup: Setup) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self.client = client  # commands, each bounded by socket_timeout when built here
        self.pubsub_client = pubsub_client  # the event connection of one Redis; None on a cluster
        self.owns_clients = owned  # built from a URL, so closed with the storage
        self.setup = setup
        self.cluster = setup.cluster
        # Called once after the next call that succeeds (the event connection's first start).
        self.then: Callable[[], object] | None = None
        self._down_errors: tuple[type[BaseException], ...] = (
            RedisConnectionError,
            RedisTimeoutError,
            OSError,
            asyncio.TimeoutError,
        )
        self._down_until = 0.0  # loop time until which Redis rests (0: not down)
        self._backoff = 0.0  # the rest after the next failure (0: not in an outage)
        # Calls in progress at most max_connections (module rules); made on first use, in a loop.
        self._slots: _Slots | None = None
        self._lost_nodes = False  # a cluster's call failed since the last that succeeded
        self._starved_logged = False

    @classmethod
    def open(cls, url: str | None, client: Any, setup: Setup) -> Link:
        """A link over ``client`` (the caller's to close), or over clients built from ``url``."""
        aioredis = load()
        if url is not None and client is not None:
            raise ValueError("give url or client, not both")
        if client is not None:
            if isinstance(client, aioredis.RedisCluster):
                return cls(
                    client, None, False, Setup(setup.socket_timeout, setup.max_connections, True)
                )
            if not isinstance(client, aioredis.Redis):
                raise ValueError(
                    f"client must be a redis.asyncio.Redis or RedisCluster, got {client!r}"
                )
            return cls(client, client, False, setup)
        if url is not None:
            check_string(url, "url")
        options = _options(setup.socket_timeout)
        if setup.cluster:
            del options["retry_on_timeout"]  # not a RedisCluster option (its retry is)
            commands = aioredis.RedisCluster.from_url(url or DEFAULT_URL, **options)
            return cls(commands, None, True, setup)
        commands = aioredis.Redis.from_url(url or DEFAULT_URL, **options)
        events = aioredis.Redis.from_url(url or DEFAULT_URL, **{**options, "socket_timeout": None})
        return cls(commands, events, True, setup)

    async def routes(self) -> None:
        """Make sure a cluster's slots are known (its client reads them on its first call)."""
        if self.cluster:
            await self.call(self.client.initialize())

    def route(self, channel: str) -> str:
        """The address of the node that holds ``channel`` ("" on one Redis)."""
        if not self.cluster:
            return ""
        node = self.client.get_node_from_key(channel)
        return f"{node.host}:{node.port}"

    def source(self, address: str) -> Source:
        """Where a feed to ``address`` connects (``feed.py``)."""
        if not self.cluster:
            return Source(address, self.pubsub_client.pubsub, _nothing)
        aioredis = load()
        host, _, port = address.rpartition(":")
        node = self.client.get_node(host=host, port=int(port))
        kwargs = {k: v for k, v in node.connection_kwargs.items() if k in _NODE_OPTIONS}
        kwargs["socket_timeout"] = None  # the feed bounds its reads itself
        client = aioredis.Redis(host=host, port=int(port), **kwargs)
        return Source(address, client.pubsub, client.aclose)

    async def refresh(self) -> None:
        """Read a cluster's topology again (after a feed was lost: a failover may have moved
        its slots); a failure is left to the next attempt."""
        if self.cluster:
            try:
                await asyncio.wait_for(
                    self.client.nodes_manager.initialize(), self.setup.socket_timeout * 4
                )
            except Exception as exc:  # redis-py's own errors, a timeout
                log.debug("reading the cluster's topology failed (%r)", exc)

    @property
    def resting(self) -> bool:
        """In an outage (until a call succeeds again)."""
        return bool(self._backoff)

    def ready(self) -> None:
        """Raise ``RedisUnavailableError`` at once while Redis rests after a failure."""
        if self._down_until:
            left = self._down_until - asyncio.get_running_loop().time()
            if left > 0:
                raise RedisUnavailableError(f"Redis unavailable; next attempt in {left:.1f} s")

    async def call(self, work: Awaitable[Any]) -> Any:
        """Await one Redis command (made by the caller after ``ready``), holding one of the
        ``max_connections`` slots: waiting for one past ``socket_timeout`` is Redis unreachable."""
        slots = self._slots
        if slots is None:
            slots = self._slots = _Slots(self.setup.max_connections)
        if not slots.take_nowait():  # else at once: nothing awaited (a hit's cost)
            try:
                await slots.take(self.setup.socket_timeout)
            except BaseException as exc:
                _close(work)  # never sent
                if isinstance(exc, asyncio.TimeoutError):
                    raise self._starved(exc) from exc
                raise
        try:
            if self._lost_nodes:  # a cluster's node failed: its replica may be primary now
                await self.refresh()
            result = await work
        except self._down_errors as exc:
            raise self.failed(exc) from exc
        finally:
            slots.give()
        if self._backoff or self.then is not None or self._lost_nodes:
            self._succeeded()
        return result

    def failed(self, exc: BaseException) -> RedisUnavailableError:
        """Start or lengthen the rest after ``exc`` (module rules); the error to raise."""
        now = asyncio.get_running_loop().time()
        if now < self._down_until:  # a call sent before this rest began: the rest stands
            return RedisUnavailableError(f"Redis unavailable: {type(exc).__name__}: {exc}")
        self._lost_nodes = self.cluster  # read the topology again before the next call
        first = self._backoff == 0.0
        rest = BACKOFF_FIRST if first else min(self._backoff * 2, BACKOFF_MAX)
        self._backoff = rest
        self._down_until = now + rest
        if first:
            log.warning(
                "Redis unavailable (%s: %s); going on without it (local coalescing, nothing "
                "stored); next attempt in %.1f s, then with backoff up to %.0f s. Later failures "
                "of this outage are logged at DEBUG.",
                type(exc).__name__,
                exc,
                rest,
                BACKOFF_MAX,
            )
        else:
            log.debug("Redis still unavailable (%r); next attempt in %.1f s", exc, rest)
        return RedisUnavailableError(f"Redis unavailable: {type(exc).__name__}: {exc}")

    def _starved(self, exc: BaseException) -> RedisUnavailableError:
        """No connection free in time: this call is Redis unreachable, but Redis answers the
        others, so no rest begins (module rules); logged once per storage, then at DEBUG."""
        level = logging.DEBUG if self._starved_logged else logging.WARNING
        self._starved_logged = True
        log.log(level, "Redis unavailable for this call (%s); it goes on without Redis", exc)
        return RedisUnavailableError(f"Redis unavailable: {exc}")

    def _succeeded(self) -> None:
        self._lost_nodes = False
        if self._backoff:
            log.info("Redis reachable again; storage and the fleet's flight resumed")
            self._backoff = 0.0
            self._down_until = 0.0
        then, self.then = self.then, None
        if then is not None:
            then()

    async def close(self) -> None:
        """Close the clients if they were built here."""
        if self.owns_clients:
            await self.client.aclose()
            if self.pubsub_client is not None:
                await self.pubsub_client.aclose()


_NODE_OPTIONS = frozenset(
    {
        "username",
        "password",
        "credential_provider",
        "ssl",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_cert_reqs",
        "socket_connect_timeout",
        "retry",
        "retry_on_timeout",
        "protocol",
    }
)


def _options(socket_timeout: float) -> dict[str, Any]:
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    # Bounded, and no retries of redis-py's own: the backoff decides when to try.
    return {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "retry": Retry(NoBackoff(), 0),
        "retry_on_timeout": False,
    }


class _Slots:
    """At most ``max_connections`` calls at once: a slot given back goes straight to the call
    that waited longest (one loop turn; no task, no race for it), and a wait has a deadline."""

    __slots__ = ("_free", "_size", "_waiting")

    def __init__(self, size: int) -> None:
        self._size = size
        self._free = size
        self._waiting: deque[asyncio.Future[None]] = deque()

    def take_nowait(self) -> bool:
        if self._free:
            self._free -= 1
            return True
        return False

    async def take(self, timeout: float) -> None:
        """A slot within ``timeout`` seconds, else ``asyncio.TimeoutError``."""
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[None] = loop.create_future()
        self._waiting.append(turn)
        timer = loop.call_later(timeout, self._expire, turn, timeout)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # handed a slot as it was cancelled
                self.give()
            raise
        finally:
            timer.cancel()

    def _expire(self, turn: asyncio.Future[None], timeout: float) -> None:
        if not turn.done():
            turn.set_exception(
                asyncio.TimeoutError(
                    f"no Redis connection free within socket_timeout={timeout} s "
                    f"(max_connections={self._size} in use)"
                )
            )

    def give(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes on: _free is unchanged
                return
        self._free += 1


def _close(work: Awaitable[Any]) -> None:
    """A command never awaited (no slot for it) is closed, not left to warn."""
    close = getattr(work, "close", None)
    if close is not None:
        close()


async def _nothing() -> None:
    return None
