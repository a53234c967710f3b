"""RedisStorage: the storage itself, its reads and writes, and the commands of the fleet's lease.

Rules of this module (the public class; what lives in Redis is ``layout.py``'s, when Redis may be
asked ``link.py``'s, what is heard on the event connection ``events.py``'s):

* A read is decided by the expiry in the value (``layout.py``), as ``DiskStorage`` does: the
  same answer on every host whatever Redis's clock says, and Redis's own expiry (``SET ... PX``)
  frees the memory. Every kind of record is kept alike. A value that does not unpack is a miss:
  deleted, logged once, never served.
* Concurrent reads of one key share one ``GET`` (a burst of callers in one process reads storage
  before any of them leads a flight: a hundred would otherwise cost a hundred commands and as many
  connections). A read joins one in progress only if no write of this storage began since it was
  sent, so a read never answers with what this process has already replaced.
* The distributed flight's lease (``SharesFlights``; ``core/fleet.py`` holds the algorithm):
  ``SET NX PX lease_ttl`` with the caller's random token; renewal and release are the scripts of
  ``layout.py``. A delete publishes ``dropped {key}`` and a clear ``clear`` on the drops channel,
  so that every process's memory front (``TieredStorage``) drops its copy (``PublishesDrops``).
* On a Redis Cluster (``cluster=True``, or a ``RedisCluster`` given as ``client``) a key's value,
  lease and channel share its slot (``layout.py``), every publication is sharded, and ``clear()``
  scans every primary.
* A response whose body streams (``Snapshot.stream``, issue 24: ``StoresStreams``) is read to its
  end, then written as one value like any other, if its body is at most ``stream_limit`` bytes
  (64 MiB by default): a Redis string is at most 512 MiB, a ``GET`` reads a value whole and
  holds Redis's connection (and every caller sharing it) for as long as it takes, and Redis keeps
  every value in memory, so Redis takes large bodies only up to a size that costs its memory and
  a hit little. Past the limit its ``set`` raises ``StreamTooLargeError`` and nothing is kept
  (not the older value either); a body that ends short raises ``TruncatedBodyError``, nothing
  written. A hit on it is a response whose body is in memory, as any other.
* Every call first asks the link (``link.py``): while Redis rests after a failure it raises
  ``RedisUnavailableError`` at once.
* A value read again and again (a hot key) is unpacked once (issue 20: the decode was most of a
  hit's own cost), as ``DiskStorage`` does: every read still sends its ``GET`` and checks the
  expiry; a remembered record is served only for the very bytes it was unpacked from (whose
  checksum passed), else they are unpacked and checked anew. The records are immutable, shared
  by the hits; at most ``_REMEMBERED`` bytes of values (each at most ``_REMEMBER_MAX``), the
  oldest forgotten first.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from ...options import check_callable, check_count, check_flag, check_seconds
from ...spec.snapshot import Snapshot, StreamedBody
from ..base import Clock, StorageBase, StreamTooLargeError, wall_clock
from ..codec import SnapshotError
from ..records import Record
from .events import Events
from .layout import CLEAR, RELEASE, RENEW, Names, dropped, milliseconds, pack, unpack
from .link import Link, RedisUnavailableError, Setup

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["RedisStorage"]

log = logging.getLogger("coalesce_client")

_SCAN_COUNT = 500
_CHUNK = 1024 * 1024  # bytes asked of a streamed body per read
_MAX_STRING = 512 * 1024 * 1024 - 64 * 1024  # a Redis string's bound, less the record's fields
_REMEMBERED = 4 * 1024 * 1024  # bytes of values whose unpacked records a storage keeps
_REMEMBER_MAX = 64 * 1024  # a larger value is unpacked on each read, never remembered


async def _read_whole(stream: StreamedBody, limit: int) -> bytes:
    """The whole of a streamed body, if it is at most ``limit`` bytes (module rules)."""
    if stream.length is not None and stream.length > limit:
        raise StreamTooLargeError(f"a body of {stream.length} bytes, over {limit}")
    reader = stream.reader()
    try:
        parts, size = [], 0
        while chunk := await reader.read(_CHUNK):
            size += len(chunk)
            if size > limit:
                raise StreamTooLargeError(f"a body of more than {limit} bytes")
            parts.append(chunk)
    finally:
        reader.close()
    return b"".join(parts)


_Read = asyncio.Future[tuple[Record, float] | None]


class _Unpacked:
    """Values read and what they unpack to, by the very bytes (module rules)."""

    __slots__ = ("_bytes", "_entries")

    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[Record, float]] = {}  # oldest first
        self._bytes = 0

    def unpack(self, raw: bytes) -> tuple[Record, float]:
        """``layout.unpack(raw)``: remembered when these bytes were unpacked before."""
        known = self._entries.get(raw)  # hashed and compared whole: the very bytes
        if known is not None:
            return known
        unpacked = unpack(raw)  # raises SnapshotError: nothing remembered
        if len(raw) <= _REMEMBER_MAX:
            self._entries[raw] = unpacked
            self._bytes += len(raw)
            while self._bytes > _REMEMBERED:
                oldest = next(iter(self._entries))
                del self._entries[oldest]
                self._bytes -= len(oldest)
        return unpacked


class _Abandoned(Exception):
    """The read another caller joined was cancelled with its caller: read again."""


class RedisStorage(StorageBase):
    """Responses kept in Redis, shared by every process and host that uses the same namespace.

    ``url`` (default ``redis://localhost:6379/0``) or ``client`` (a ``redis.asyncio.Redis`` or
    ``RedisCluster`` that stays yours to close, like ``session=``), not both; ``cluster=True``
    reads ``url`` as a Redis Cluster's node. ``namespace`` keeps several caches apart in
    one database; ``clear()`` removes only its own entries. ``lease_ttl`` is how long a lease of
    the fleet's flight lasts when its holder dies (renewed every third of it while the holder
    lives). ``socket_timeout`` bounds every Redis call (connect and read) of a client built from
    ``url``. At most ``max_connections`` calls are in progress at once (a call that waits longer
    than ``socket_timeout`` for one is Redis unreachable). ``health_check_interval`` is how long a
    silent event connection may go unchecked: a ``PING``, then reconnected if unanswered.
    ``stream_limit`` (64 MiB by default, at most 512 MiB, 0: none) is the largest body of a
    streamed response it stores (read whole, then written as one value: see the module rules).

    >>> import asyncio
    >>> async def main() -> None:
    ...     store = RedisStorage("redis://127.0.0.1:6379/0", namespace="docs")
    ...     print(store)  # nothing is connected until the first call
    ...     await store.close()
    >>> asyncio.run(main())
    <RedisStorage namespace='docs' lease_ttl=10.0>

    Raises:
        ImportError: redis-py is not installed (the ``[redis]`` extra).
        ValueError: an option out of its domain (naming it). Redis itself being unreachable,
            slow or failing never raises into a request: the session goes on without storage.
        StorageClosedError: an operation after ``close()``.
    """

    __slots__ = (
        "_client",
        "_clock",
        "_events",
        "_link",
        "_logged",
        "_names",
        "_publish",
        "_reads",
        "_release",
        "_renew",
        "_unpacked",
        "_writes",
        "cluster",
        "health_check_interval",
        "lease_ttl",
        "max_connections",
        "namespace",
        "socket_timeout",
        "stream_limit",
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
        cluster: bool = False,
        max_connections: int = 64,
        health_check_interval: float = 5.0,
        stream_limit: int = 64 * 1024 * 1024,
    ) -> None:
        self._names = Names.of(namespace)
        self.namespace = self._names.namespace
        self.lease_ttl = check_seconds(lease_ttl, "lease_ttl", positive=True)
        self.socket_timeout = check_seconds(socket_timeout, "socket_timeout", positive=True)
        self._clock: Clock = check_callable(clock, "clock")
        self.max_connections = check_count(
            max_connections, "max_connections", minimum=1, unit="connections"
        )
        self.health_check_interval = check_seconds(
            health_check_interval, "health_check_interval", positive=True
        )
        self.stream_limit = check_count(stream_limit, "stream_limit")
        if self.stream_limit > _MAX_STRING:  # what a Redis string can hold (module rules)
            raise ValueError(f"stream_limit must be at most {_MAX_STRING}, got {stream_limit}")
        setup = Setup(self.socket_timeout, self.max_connections, check_flag(cluster, "cluster"))
        self._link = Link.open(url, client, setup)
        self.cluster = self._link.cluster
        super().__init__()
        self._client = self._link.client
        self._logged: set[type[BaseException]] = set()  # undecodable values logged, by type
        # key -> (the read in progress, self._writes when it was sent); see the module rules
        self._reads: dict[str, tuple[_Read, int]] = {}
        self._writes = 0  # bumped by every set, delete and clear
        self._unpacked = _Unpacked()  # values read, unpacked once (module rules)
        self._renew = self._client.register_script(RENEW)
        self._release = self._client.register_script(RELEASE)
        self._events = Events(self._link, self._names, self._heard, self.health_check_interval)
        self._publish = "spublish" if self.cluster else "publish"

    def _ready(self) -> None:
        """Raise at once when closed, or while Redis rests after a failure."""
        self._check_open()
        self._link.ready()

    # -- Storage ----------------------------------------------------------------------------------

    async def get(self, key: str) -> Record | None:
        entry = await self.get_with_expiry(key)
        return None if entry is None else entry[0]

    async def get_with_expiry(self, key: str) -> tuple[Record, float] | None:
        """The entry for ``key`` and its absolute expiry on this storage's clock, or None."""
        self._ready()
        reading = self._reads.get(key)
        if reading is not None and reading[1] == self._writes:
            with contextlib.suppress(_Abandoned):  # its reader left: read for ourselves
                return await asyncio.shield(reading[0])  # leaving cancels nobody's read
        # The first reader reads itself (no task: this is a hit's whole cost), and shares.
        shared: _Read = asyncio.get_running_loop().create_future()
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

    async def _read(self, key: str) -> tuple[Record, float] | None:
        raw = await self._link.call(self._client.get(self._names.value(key)))
        if raw is None:
            return None
        try:
            record, expires_at = self._unpacked.unpack(raw)
        except SnapshotError as exc:
            await self._unreadable(key, exc)
            return None
        if not expires_at > self._clock():  # NaN included
            return None
        return record, expires_at

    async def set(self, key: str, value: Record, ttl: float) -> None:
        self._ready()
        self._writes += 1
        name = self._names.value(key)
        if not ttl > 0:  # NaN included: "for 0 seconds" leaves nothing, not the old value
            await self._link.call(self._client.unlink(name))
            return
        if isinstance(value, Snapshot) and value.stream is not None:
            try:
                body = await _read_whole(value.stream, self.stream_limit)
            except StreamTooLargeError:  # not kept, nor the older value (contract)
                await self._link.call(self._client.unlink(name))
                raise
            value = dataclasses.replace(value, body=body, stream=None)
        data = pack(self._clock() + ttl, value)
        await self._link.call(self._client.set(name, data, px=milliseconds(ttl)))

    async def delete(self, key: str) -> None:
        self._ready()
        self._writes += 1
        async with self._client.pipeline(transaction=False) as pipe:
            pipe.execute_command("UNLINK", self._names.value(key))  # (a cluster's own unlink
            # is a coroutine: execute_command is a pipeline's on both)
            pipe.execute_command(self._publish, self._names.drops, dropped(key))  # every front
            await self._link.call(pipe.execute())

    async def clear(self) -> None:
        """Remove this namespace's entries (``SCAN`` and ``UNLINK``: never ``FLUSHDB``)."""
        self._ready()
        self._writes += 1
        nodes = self._client.get_primaries() if self.cluster else [None]
        for node in nodes:
            await self._clear_node(node)
        drops = self._names.drops
        await self._link.call(self._client.execute_command(self._publish, drops, CLEAR))

    async def _clear_node(self, node: object) -> None:
        """SCAN and UNLINK this namespace's values on one Redis, or one primary of a cluster."""
        where = {} if node is None else {"target_nodes": node}
        cursor: int = 0
        while True:
            scan = ("SCAN", cursor, "MATCH", self._names.values, "COUNT", _SCAN_COUNT)
            cursor, names = await self._link.call(self._client.execute_command(*scan, **where))
            if isinstance(cursor, dict):  # a cluster's cursor is by node: the one asked
                (cursor,) = cursor.values()
            for name in names if self.cluster else ():  # one slot each: no CROSSSLOT
                await self._link.call(self._client.unlink(name))
            if names and not self.cluster:
                await self._link.call(self._client.unlink(*names))
            if not cursor:
                break

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._events.close()
        await self._link.close()

    async def _unreadable(self, key: str, exc: Exception) -> None:
        kind = type(exc)
        level = logging.DEBUG if kind in self._logged else logging.WARNING
        self._logged.add(kind)
        log.log(level, "Redis entry %s is unreadable (%s); treated as a miss and deleted", key, exc)
        with contextlib.suppress(RedisUnavailableError):
            await self._link.call(self._client.unlink(self._names.value(key)))

    def __repr__(self) -> str:
        state = " closed" if self._closed else (" unavailable" if self._link.resting else "")
        return f"<RedisStorage namespace={self.namespace!r} lease_ttl={self.lease_ttl}{state}>"

    # -- SharesFlights: the fleet's lease (storage/base.py, core/fleet.py) ------------------------

    async def acquire(self, key: str, token: str) -> bool:
        """Take the lease of ``key`` for ``lease_ttl`` if nobody holds it."""
        self._ready()
        lease, px = self._names.lease(key), milliseconds(self.lease_ttl)
        return bool(await self._link.call(self._client.set(lease, token, nx=True, px=px)))

    async def renew(self, key: str, token: str) -> bool:
        """Extend the lease of ``key`` to ``lease_ttl`` from now, if ``token`` still holds it."""
        self._ready()
        args: list[str | int] = [token, milliseconds(self.lease_ttl)]
        return bool(await self._link.call(self._renew(keys=[self._names.lease(key)], args=args)))

    async def release(self, key: str, token: str, outcome: bytes) -> bool:
        """Publish ``outcome`` for ``key`` ("stored" only if an entry is there, else
        "released": one waiter takes over) and drop its lease if ``token`` still holds it, in
        one script; True if the lease was ours."""
        self._ready()
        keys = [self._names.lease(key), self._names.value(key)]
        args: list[str | bytes] = [token, self._names.channel(key), outcome, self._publish]
        return bool(await self._link.call(self._release(keys=keys, args=args)))

    async def leased(self, key: str) -> bool:
        """Does anybody hold the lease of ``key``?"""
        self._ready()
        return bool(await self._link.call(self._client.exists(self._names.lease(key))))

    async def watch(self, key: str) -> asyncio.Future[bytes]:
        """A future for the next outcome published for ``key``, registered now; the key's
        subscription is made first if it is not there (waiting at most ``socket_timeout``).
        Give it back with ``unwatch``: the last waiter of a key unsubscribes."""
        self._ready()
        await self._link.routes()
        return await self._events.watch(key, self.socket_timeout)

    def unwatch(self, key: str, waiter: asyncio.Future[bytes]) -> None:
        self._events.unwatch(key, waiter)

    @property
    def subscribed(self) -> bool:
        """Is every event connection answered by its server now? (publications reach us)"""
        return self._events.subscribed

    # -- PublishesDrops: invalidations reach every process (TieredStorage) -----------------------

    def on_drop(self, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(key)`` for every key deleted by any process of this namespace, and
        ``callback(None)`` for every clear, from the next call of this storage on."""
        self._events.on_drop(callback)

    def _heard(self, key: str, data: bytes) -> None:
        """A publication for ``key`` reached this process (events.py)."""
        self._events.deliver(key, data)
