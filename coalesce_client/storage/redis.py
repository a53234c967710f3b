"""RedisStorage: stored responses in Redis (or Valkey), shared by a fleet of processes and hosts.

Rules of this module (the ``[redis]`` extra, redis-py's asyncio client; issue 14):

* redis-py is imported when a ``RedisStorage`` is built, never when this module is: the package
  imports without the extra, and building one without it raises ``ImportError`` naming the extra.
* Names: every key is ``{namespace}:{kind}:{{digest}}``: the value (``v``), the lease (``lease``)
  and the event channel (``ev``) of one digest share a Redis Cluster slot (the hash tag), and
  ``clear()`` can find what is ours with ``SCAN MATCH {namespace}:v:*``. The namespace is letters,
  digits, ``_``, ``-`` and ``.`` only, so no namespace's pattern matches another's keys.
* A value is the entry's absolute expiry on this storage's clock (8 bytes), then
  ``snapshot.encode`` bytes (versioned, checksummed, never pickle), kept with Redis's own expiry
  (``SET ... PX``). A read is decided by the expiry in the value, as ``DiskStorage`` does: the
  same answer on every host whatever Redis's clock says, and the Redis expiry frees the memory.
  A value that does not decode is a miss: deleted, logged once, never served.
* Redis down or slow is never a failed request (DESIGN, Scale-out item 7): every call is bounded
  by ``socket_timeout`` (connect and read; redis-py's own retries off); a call that fails for
  want of Redis logs once per outage (then at DEBUG) and the storage rests: until its backoff
  ends (0.5 s, doubling to 30 s) every call raises ``RedisUnavailableError`` at once, which the
  coalescer treats as it treats any storage failure (a miss, nothing stored, local coalescing).
  The first call after the backoff tries Redis again; success ends the outage (logged at INFO).
  Backoff runs on the event loop's clock.
* Concurrent reads of one key share one ``GET`` (a burst of callers in one process reads storage
  before any of them leads a flight: a hundred would otherwise cost a hundred commands and as many
  connections). A read joins one in progress only if no write of this storage began since it was
  sent, so a read never answers with what this process has already replaced.
* Events (the fleet's publications and invalidations) travel on one pub/sub connection per
  storage: a single pattern subscription to ``{namespace}:ev:*``, made on first need and made
  again after a drop (with the same backoff). ``watch`` registers a local waiter for one digest's
  outcome; ``on_drop`` callbacks (``TieredStorage``) hear every key deleted and every clear.
* The distributed flight's lease (``SharesFlights``, ``fleet.py`` holds the algorithm):
  ``SET NX PX lease_ttl`` with the caller's random token; renewal and release are Lua scripts
  that touch the lease only while it holds that token; the release publishes the outcome in the
  same script, so that no waiter sees the lease gone before the publication is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..options import check_callable, check_seconds, check_string
from ..spec.snapshot import Snapshot
from .base import Clock, StorageBase, StorageUnavailableError, wall_clock
from .codec import SnapshotError, decode, encode_parts

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["RedisStorage", "RedisUnavailableError"]

log = logging.getLogger("coalesce_client")

DEFAULT_URL = "redis://localhost:6379/0"
EXTRA = "pip install 'coalesce_client[redis]'"
BACKOFF_FIRST = 0.5  # seconds Redis rests after the first failure of an outage
BACKOFF_MAX = 30.0  # the backoff doubles up to this
_MAX_PX = 2**47  # milliseconds (4,000 years): Redis refuses an expiry past 2**63 ms
_SCAN_COUNT = 500
_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]+")
_EXPIRY = struct.Struct(">d")

# Outcomes a lease holder publishes (fleet.py); "dropped" and "clear" are invalidations.
STORED = b"stored"
NOT_STORED = b"not stored"
RELEASED = b"released"
DROPPED = b"dropped"
CLEAR = b"clear"

# KEYS[1] the lease; ARGV[1] the token, ARGV[2] the lease's milliseconds.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS[1] the lease, KEYS[2] the value; ARGV[1] the token, ARGV[2] the channel, ARGV[3] the
# outcome. The outcome is published whether or not the lease was still ours: the response is good
# either way (Scale-out 2); "stored" only if the value is there, else "not stored".
_RELEASE = """
local mine = 0
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  mine = 1
end
local outcome = ARGV[3]
if outcome == 'stored' and redis.call('exists', KEYS[2]) == 0 then
  outcome = 'not stored'
end
redis.call('publish', ARGV[2], outcome)
return mine
"""


class _Abandoned(Exception):
    """The read another caller joined was cancelled with its caller: read again."""


class RedisUnavailableError(StorageUnavailableError):
    """Redis could not be reached (or answered too slowly); the storage rests until its backoff
    ends. The coalescer treats it as any storage failure: no request fails because of it."""


def _load() -> Any:
    try:
        import redis.asyncio as aioredis
    except ImportError as exc:  # pragma: no cover - exercised in a subprocess
        raise ImportError(
            f"RedisStorage needs redis-py's asyncio client (redis>=5): {EXTRA}"
        ) from exc
    return aioredis


class RedisStorage(StorageBase):
    """Responses kept in Redis, shared by every process and host that uses the same namespace.

    ``url`` (default ``redis://localhost:6379/0``) or ``client`` (a ``redis.asyncio.Redis`` that
    stays yours to close, like ``session=``), not both. ``namespace`` keeps several caches apart in
    one database; ``clear()`` removes only its own entries. ``lease_ttl`` is how long a lease of
    the fleet's flight lasts when its holder dies (renewed every third of it while the holder
    lives). ``socket_timeout`` bounds every Redis call (connect and read) of a client built from
    ``url``.

    >>> import asyncio
    >>> async def main() -> None:
    ...     store = RedisStorage("redis://127.0.0.1:6379/0", namespace="docs")
    ...     print(store)  # nothing is connected until the first call
    ...     await store.close()
    >>> asyncio.run(main())
    <RedisStorage namespace='docs' lease_ttl=10.0>
    """

    __slots__ = (
        "_backoff",
        "_client",
        "_clock",
        "_down_errors",
        "_down_until",
        "_drop_callbacks",
        "_listener",
        "_logged",
        "_owns_client",
        "_pattern",
        "_pubsub_client",
        "_reads",
        "_release",
        "_renew",
        "_subscribed",
        "_watchers",
        "_writes",
        "lease_ttl",
        "namespace",
        "socket_timeout",
    )

    def __init__(
        self,
        url: str | None = None,
        *,
        client: aioredis.Redis | None = None,
        namespace: str = "coalesce",
        lease_ttl: float = 10.0,
        socket_timeout: float = 0.5,
        clock: Clock = wall_clock,
    ) -> None:
        aioredis = _load()
        if url is not None and client is not None:
            raise ValueError("give url or client, not both")
        namespace = check_string(namespace, "namespace")
        if not _NAMESPACE.fullmatch(namespace):
            raise ValueError(
                "namespace must be letters, digits, '_', '-' or '.' (at least one), "
                f"got {namespace!r}"
            )
        self.namespace = namespace
        self.lease_ttl = check_seconds(lease_ttl, "lease_ttl", positive=True)
        self.socket_timeout = check_seconds(socket_timeout, "socket_timeout", positive=True)
        self._clock: Clock = check_callable(clock, "clock")
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        if client is None:
            if url is not None:
                check_string(url, "url")
            # Bounded, and no retries of redis-py's own: the backoff below decides when to try.
            options: dict[str, Any] = {
                "socket_timeout": self.socket_timeout,
                "socket_connect_timeout": self.socket_timeout,
                "retry": Retry(NoBackoff(), 0),
                "retry_on_timeout": False,
            }
            client = aioredis.Redis.from_url(url or DEFAULT_URL, **options)
            # The pub/sub connection waits for messages for as long as it lives: no read timeout.
            self._pubsub_client = aioredis.Redis.from_url(
                url or DEFAULT_URL, **{**options, "socket_timeout": None}
            )
            self._owns_client = True
        else:
            if not isinstance(client, aioredis.Redis):
                raise ValueError(f"client must be a redis.asyncio.Redis, got {client!r}")
            self._pubsub_client = client
            self._owns_client = False
        super().__init__()
        self._client = client
        self._down_errors: tuple[type[BaseException], ...] = (
            RedisConnectionError,
            RedisTimeoutError,
            OSError,
            asyncio.TimeoutError,
        )
        self._down_until = 0.0  # loop time until which Redis rests (0: not down)
        self._backoff = 0.0  # the rest after the next failure (0: not in an outage)
        self._logged: set[type[BaseException]] = set()  # undecodable values logged, by type
        # key -> (the read in progress, self._writes when it was sent); see the module rules
        self._reads: dict[str, tuple[asyncio.Future[tuple[Snapshot, float] | None], int]] = {}
        self._writes = 0  # bumped by every set, delete and clear
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._pattern = f"{namespace}:ev:*"  # no glob character can be in a namespace
        # digest -> futures of the local waiters for its outcome (watch / unwatch)
        self._watchers: dict[str, set[asyncio.Future[bytes]]] = {}
        self._drop_callbacks: list[Callable[[str | None], None]] = []
        self._listener: asyncio.Task[None] | None = None
        self._subscribed: asyncio.Event | None = None  # set while the pattern subscription holds

    # -- names ------------------------------------------------------------------------------------

    def _value(self, key: str) -> str:
        return f"{self.namespace}:v:{{{key}}}"

    def _lease(self, key: str) -> str:
        return f"{self.namespace}:lease:{{{key}}}"

    def _channel(self, key: str) -> str:
        return f"{self.namespace}:ev:{{{key}}}"

    # -- availability (module rules) -------------------------------------------------------------

    def _ready(self) -> None:
        """Raise at once while Redis rests after a failure."""
        self._check_open()
        if self._down_until and asyncio.get_running_loop().time() < self._down_until:
            raise RedisUnavailableError(
                f"Redis unavailable; next attempt in "
                f"{self._down_until - asyncio.get_running_loop().time():.1f} s"
            )

    def _failed(self, exc: BaseException) -> RedisUnavailableError:
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
        if self._listener is None and self._drop_callbacks:
            self._listen()

    async def _call(self, work: Any) -> Any:
        """Await one Redis command (a coroutine made by the caller after ``_ready``)."""
        try:
            result = await work
        except self._down_errors as exc:
            raise self._failed(exc) from exc
        if self._backoff or (self._listener is None and self._drop_callbacks):
            self._succeeded()
        return result

    # -- Storage ----------------------------------------------------------------------------------

    async def get(self, key: str) -> Snapshot | None:
        entry = await self.get_with_expiry(key)
        return None if entry is None else entry[0]

    async def get_with_expiry(self, key: str) -> tuple[Snapshot, float] | None:
        """The entry for ``key`` and its absolute expiry on this storage's clock, or None."""
        self._ready()
        reading = self._reads.get(key)
        if reading is not None and reading[1] == self._writes:
            with contextlib.suppress(_Abandoned):  # its reader left: read for ourselves
                return await asyncio.shield(reading[0])  # leaving cancels nobody's read
        # The first reader reads itself (no task: this is a hit's whole cost), and shares.
        shared: asyncio.Future[tuple[Snapshot, float] | None]
        shared = asyncio.get_running_loop().create_future()
        entry = (shared, self._writes)
        self._reads[key] = entry
        try:
            result = await self._read(key)
        except BaseException as exc:
            cancelled = isinstance(exc, asyncio.CancelledError)
            shared.set_exception(_Abandoned() if cancelled else exc)
            shared.exception()  # retrieved, whether or not anybody joined
            raise
        else:
            shared.set_result(result)
        finally:
            if self._reads.get(key) is entry:
                del self._reads[key]
        return result

    async def _read(self, key: str) -> tuple[Snapshot, float] | None:
        raw = await self._call(self._client.get(self._value(key)))
        if raw is None:
            return None
        try:
            if len(raw) < _EXPIRY.size:
                raise SnapshotError("truncated value")
            (expires_at,) = _EXPIRY.unpack_from(raw)
            snap = decode(memoryview(raw)[_EXPIRY.size :])
        except SnapshotError as exc:
            await self._unreadable(key, exc)
            return None
        if not expires_at > self._clock():  # NaN included
            return None
        return snap, expires_at

    async def set(self, key: str, value: Snapshot, ttl: float) -> None:
        self._ready()
        self._writes += 1
        name = self._value(key)
        if not ttl > 0:  # NaN included: "for 0 seconds" leaves nothing, not the old value
            await self._call(self._client.unlink(name))
            return
        expires_at = self._clock() + ttl
        px = min(_MAX_PX, max(1, math.ceil(ttl * 1000))) if math.isfinite(ttl) else _MAX_PX
        head, body, check = encode_parts(value)
        data = b"".join((_EXPIRY.pack(expires_at), head, body, check))
        await self._call(self._client.set(name, data, px=px))

    async def delete(self, key: str) -> None:
        self._ready()
        self._writes += 1
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.unlink(self._value(key))
            pipe.publish(self._channel(key), DROPPED)  # every process drops its memory front's copy
            await self._call(pipe.execute())

    async def clear(self) -> None:
        """Remove this namespace's entries (``SCAN`` and ``UNLINK``: never ``FLUSHDB``)."""
        self._ready()
        self._writes += 1
        pattern = f"{self.namespace}:v:*"  # no glob character can be in a namespace
        cursor: int = 0
        while True:
            cursor, names = await self._call(
                self._client.scan(cursor, match=pattern, count=_SCAN_COUNT)
            )
            if names:
                await self._call(self._client.unlink(*names))
            if not cursor:
                break
        await self._call(self._client.publish(self._channel("*"), CLEAR))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
        for waiters in self._watchers.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.cancel()
        self._watchers.clear()
        if self._owns_client:
            await self._client.aclose()
            await self._pubsub_client.aclose()

    async def _unreadable(self, key: str, exc: Exception) -> None:
        kind = type(exc)
        level = logging.DEBUG if kind in self._logged else logging.WARNING
        self._logged.add(kind)
        log.log(level, "Redis entry %s is unreadable (%s); treated as a miss and deleted", key, exc)
        with contextlib.suppress(RedisUnavailableError):
            await self._call(self._client.unlink(self._value(key)))

    def __repr__(self) -> str:
        state = " closed" if self._closed else (" unavailable" if self._backoff else "")
        return f"<RedisStorage namespace={self.namespace!r} lease_ttl={self.lease_ttl}{state}>"

    # -- SharesFlights: the fleet's lease (storage/base.py, fleet.py) -----------------------------

    async def acquire(self, key: str, token: str) -> bool:
        """Take the lease of ``key`` for ``lease_ttl`` if nobody holds it."""
        self._ready()
        px = max(1, math.ceil(self.lease_ttl * 1000))
        return bool(await self._call(self._client.set(self._lease(key), token, nx=True, px=px)))

    async def renew(self, key: str, token: str) -> bool:
        """Extend the lease of ``key`` to ``lease_ttl`` from now, if ``token`` still holds it."""
        self._ready()
        px = max(1, math.ceil(self.lease_ttl * 1000))
        return bool(await self._call(self._renew(keys=[self._lease(key)], args=[token, px])))

    async def release(self, key: str, token: str, outcome: bytes) -> bool:
        """Publish ``outcome`` for ``key`` ("stored" only if an entry is there, else "not
        stored") and drop its lease if ``token`` still holds it, in one script; True if the
        lease was ours."""
        self._ready()
        keys = [self._lease(key), self._value(key)]
        args: list[str | bytes] = [token, self._channel(key), outcome]
        return bool(await self._call(self._release(keys=keys, args=args)))

    async def leased(self, key: str) -> bool:
        """Does anybody hold the lease of ``key``?"""
        self._ready()
        return bool(await self._call(self._client.exists(self._lease(key))))

    async def watch(self, key: str) -> asyncio.Future[bytes]:
        """A future for the next outcome published for ``key``, registered now; the pattern
        subscription is made first if it is not there (waiting at most ``socket_timeout``).
        Give it back with ``unwatch``."""
        self._ready()
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._watchers.setdefault(key, set()).add(waiter)
        subscribed = self._listen()
        if not subscribed.is_set():
            # Not within the bound: the waiter relies on its re-checks (fleet.py) until it is.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(subscribed.wait(), self.socket_timeout)
        return waiter

    def unwatch(self, key: str, waiter: asyncio.Future[bytes]) -> None:
        waiters = self._watchers.get(key)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._watchers[key]

    @property
    def subscribed(self) -> bool:
        """Does the pattern subscription hold now? (publications reach this process)"""
        return self._subscribed is not None and self._subscribed.is_set()

    # -- PublishesDrops: invalidations reach every process (TieredStorage) ---------------------

    def on_drop(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(key)`` for every key deleted by any process of this namespace, and
        ``callback(None)`` for every clear, from the next call of this storage on."""
        self._drop_callbacks.append(callback)

    # -- the one pub/sub connection (module rules) ------------------------------------------------

    def _listen(self) -> asyncio.Event:
        if self._subscribed is None:
            self._subscribed = asyncio.Event()
        if self._listener is None or self._listener.done():
            self._listener = asyncio.ensure_future(self._run_listener(self._subscribed))
        return self._subscribed

    async def _run_listener(self, subscribed: asyncio.Event) -> None:
        prefix = f"{self.namespace}:ev:{{"
        rest = BACKOFF_FIRST
        while not self._closed:
            pubsub: Any = self._pubsub_client.pubsub()  # PubSub; its aclose is untyped
            try:
                await pubsub.psubscribe(self._pattern)
                async for message in pubsub.listen():
                    kind = message["type"]
                    if kind == "psubscribe":
                        subscribed.set()
                        rest = BACKOFF_FIRST
                        continue
                    if kind != "pmessage":
                        continue
                    channel = message["channel"].decode("utf-8", "replace")
                    if channel.startswith(prefix) and channel.endswith("}"):
                        self._heard(channel[len(prefix) : -1], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                subscribed.clear()
                log.debug("Redis pub/sub connection lost (%r); again in %.1f s", exc, rest)
            finally:
                subscribed.clear()
                with contextlib.suppress(Exception):  # a dead connection may fail to close
                    await pubsub.aclose()
            # Waiters meanwhile rely on their re-checks (fleet.py); try again after a rest.
            await asyncio.sleep(rest)
            rest = min(rest * 2, BACKOFF_MAX)

    def _heard(self, key: str, data: bytes) -> None:
        if data in (DROPPED, CLEAR):
            for callback in self._drop_callbacks:
                callback(None if data == CLEAR else key)
            return
        for waiter in self._watchers.get(key, ()):
            if not waiter.done():
                waiter.set_result(data)
