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
* The pub/sub connection waits for messages as long as it lives: its client has no read timeout.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ...options import check_string
from ..base import StorageUnavailableError

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["BACKOFF_FIRST", "BACKOFF_MAX", "Link", "RedisUnavailableError", "load"]

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


class Link:
    """The clients of one storage and the state of its outage, if any (see the module rules)."""

    __slots__ = (
        "_backoff",
        "_down_errors",
        "_down_until",
        "client",
        "owns_clients",
        "pubsub_client",
        "then",
    )

    def __init__(self, client: aioredis.Redis, pubsub_client: aioredis.Redis, owned: bool) -> None:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        self.client = client  # commands, each bounded by socket_timeout when built here
        self.pubsub_client = pubsub_client  # the event connection: no read timeout
        self.owns_clients = owned  # built from a URL, so closed with the storage
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

    @classmethod
    def open(cls, url: str | None, client: aioredis.Redis | None, socket_timeout: float) -> Link:
        """A link over ``client`` (the caller's to close), or over clients built from ``url``."""
        aioredis = load()
        if url is not None and client is not None:
            raise ValueError("give url or client, not both")
        if client is not None:
            if not isinstance(client, aioredis.Redis):
                raise ValueError(f"client must be a redis.asyncio.Redis, got {client!r}")
            return cls(client, client, False)
        if url is not None:
            check_string(url, "url")
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        # Bounded, and no retries of redis-py's own: the backoff decides when to try.
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": socket_timeout,
            "retry": Retry(NoBackoff(), 0),
            "retry_on_timeout": False,
        }
        commands = aioredis.Redis.from_url(url or DEFAULT_URL, **options)
        events = aioredis.Redis.from_url(url or DEFAULT_URL, **{**options, "socket_timeout": None})
        return cls(commands, events, True)

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
        """Await one Redis command (made by the caller after ``ready``)."""
        try:
            result = await work
        except self._down_errors as exc:
            raise self.failed(exc) from exc
        if self._backoff or self.then is not None:
            self._succeeded()
        return result

    def failed(self, exc: BaseException) -> RedisUnavailableError:
        """Start or lengthen the rest after ``exc`` (module rules); the error to raise."""
        now = asyncio.get_running_loop().time()
        if now < self._down_until:  # a call sent before this rest began: the rest stands
            return RedisUnavailableError(f"Redis unavailable: {type(exc).__name__}: {exc}")
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

    def _succeeded(self) -> None:
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
            await self.pubsub_client.aclose()
