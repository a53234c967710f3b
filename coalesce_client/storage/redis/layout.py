"""What RedisStorage keeps in Redis and says on it: names, values, outcomes, the Lua scripts.

Rules of this module (data and text only: no I/O, no redis-py import):

* Names: every key is ``{namespace}:{kind}:{{digest}}``: the value (``v``), the lease (``lease``)
  and the event channel (``ev``) of one digest share a Redis Cluster slot (the hash tag), and
  ``clear()`` can find what is ours with ``SCAN MATCH {namespace}:v:*``. The namespace is letters,
  digits, ``_``, ``-`` and ``.`` only, so no namespace's pattern matches another's keys. A
  process subscribes to a key's channel only while it waits on that key (issue 23): nobody hears
  the outcomes of keys it does not wait for. Invalidations travel on one channel of the
  namespace, ``{namespace}:drops``, that every memory front (``TieredStorage``) listens to.
* A value is the entry's absolute expiry on the storage's clock (8 bytes), then ``codec.encode``
  bytes (versioned, checksummed, never pickle), whatever the kind of record. A value that does
  not unpack raises ``SnapshotError``.
* A lease holder publishes ``stored``, ``not stored`` or ``released`` on its key's channel
  (``core/fleet.py``); ``dropped {key}`` (a key deleted) and ``clear`` on the drops channel are
  invalidations. On a Redis Cluster every publication is sharded (``SPUBLISH``): a key's channel
  lives in the key's slot, and its message goes to that slot's shard only.
* Renewal and release are Lua scripts that touch the lease only while it holds the caller's
  token; the release publishes the outcome in the same script, so that no waiter sees the lease
  gone before the publication is sent.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass

from ...options import check_string
from ..codec import SnapshotError, decode, encode_parts
from ..records import Record

__all__ = [
    "CLEAR",
    "DROPPED",
    "NOT_STORED",
    "RELEASE",
    "RELEASED",
    "RENEW",
    "STORED",
    "Names",
    "dropped",
    "invalidation",
    "milliseconds",
    "pack",
    "unpack",
]

STORED = b"stored"
NOT_STORED = b"not stored"
RELEASED = b"released"
DROPPED = b"dropped"
CLEAR = b"clear"

_MAX_PX = 2**47  # milliseconds (4,000 years): Redis refuses an expiry past 2**63 ms
_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]+")
_EXPIRY = struct.Struct(">d")

# KEYS[1] the lease; ARGV[1] the token, ARGV[2] the lease's milliseconds.
RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS[1] the lease, KEYS[2] the value; ARGV[1] the token, ARGV[2] the channel, ARGV[3] the
# outcome, ARGV[4] the publishing command (publish, or spublish on a cluster). The outcome is
# published whether or not the lease was still ours: the response is good either way; "stored"
# only if the value is there, else "released": a store meant but lost (a failover, an eviction) is
# taken over by one waiter, not sent again by every process as "not stored" would have it.
RELEASE = """
local mine = 0
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[1])
  mine = 1
end
local outcome = ARGV[3]
if outcome == 'stored' and redis.call('exists', KEYS[2]) == 0 then
  outcome = 'released'
end
redis.call(ARGV[4], ARGV[2], outcome)
return mine
"""


@dataclass(frozen=True, slots=True)
class Names:
    """The Redis names of one namespace (module rules).

    >>> Names.of("docs").value("ab"), Names.of("docs").channel("ab"), Names.of("docs").drops
    ('docs:v:{ab}', 'docs:ev:{ab}', 'docs:drops')
    """

    namespace: str

    @classmethod
    def of(cls, namespace: str) -> Names:
        """The names of ``namespace``, checked (``ValueError`` naming the option)."""
        namespace = check_string(namespace, "namespace")
        if not _NAMESPACE.fullmatch(namespace):
            raise ValueError(
                "namespace must be letters, digits, '_', '-' or '.' (at least one), "
                f"got {namespace!r}"
            )
        return cls(namespace)

    def value(self, key: str) -> str:
        return f"{self.namespace}:v:{{{key}}}"

    def lease(self, key: str) -> str:
        return f"{self.namespace}:lease:{{{key}}}"

    def channel(self, key: str) -> str:
        return f"{self.namespace}:ev:{{{key}}}"

    @property
    def values(self) -> str:
        """The pattern of every value of the namespace (no glob character can be in it)."""
        return f"{self.namespace}:v:*"

    @property
    def drops(self) -> str:
        """The channel of the namespace's invalidations (module rules)."""
        return f"{self.namespace}:drops"

    def key_of(self, channel: str) -> str | None:
        """The key whose channel ``channel`` is, or None for another channel."""
        prefix = f"{self.namespace}:ev:{{"
        if channel.startswith(prefix) and channel.endswith("}"):
            return channel[len(prefix) : -1]
        return None


def dropped(key: str) -> bytes:
    """The invalidation of ``key``, on the drops channel."""
    return DROPPED + b" " + key.encode()


def invalidation(data: bytes) -> tuple[str, bytes] | None:
    """What an invalidation says: ``(key, DROPPED)``, ``("*", CLEAR)``, or None for another
    message."""
    if data == CLEAR:
        return "*", CLEAR
    kind, _, key = data.partition(b" ")
    return (key.decode("utf-8", "replace"), DROPPED) if kind == DROPPED and key else None


def milliseconds(seconds: float) -> int:
    """A TTL for ``PX``: at least 1 ms, at most what Redis takes (an infinite TTL included)."""
    return min(_MAX_PX, max(1, math.ceil(seconds * 1000))) if math.isfinite(seconds) else _MAX_PX


def pack(expires_at: float, record: Record) -> bytes:
    """A value: ``expires_at``, then the encoded record (module rules)."""
    head, body, check = encode_parts(record)
    return b"".join((_EXPIRY.pack(expires_at), head, body, check))


def unpack(raw: bytes) -> tuple[Record, float]:
    """The record of a value and its absolute expiry; ``SnapshotError`` if it is not one."""
    if len(raw) < _EXPIRY.size:
        raise SnapshotError("truncated value")
    (expires_at,) = _EXPIRY.unpack_from(raw)
    return decode(memoryview(raw)[_EXPIRY.size :]), expires_at
