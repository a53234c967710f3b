"""``CacheInfo``: where a response came from, for any response a face of ours answered.

Rules of this module: ``cache_info`` reads what a face attached to a response and never changes
the response. The meanings are ``CachedResponse``'s (``client/response.py`` computes them: the
same object answers here, so both client faces say the same thing of the same response).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from ..client.response import CachedResponse
from ..core.records import CacheStatus
from ..spec.decisions.reasons import CacheReason
from ..spec.snapshot import Snapshot

__all__ = ["CacheInfo", "Served", "cache_info"]


@dataclass(frozen=True, slots=True)
class CacheInfo:
    """Where one caller's response came from (``coalesce_client.cache_info(resp)``).

    Attributes:
        status: ``"hit"``, ``"miss"``, ``"coalesced"``, ``"stale"``, ``"revalidated"`` or
            ``"bypass"``, as ``CachedResponse.cache_status``.
        from_cache: served from storage (a hit, stale or revalidated).
        age: its current age in seconds when served (RFC 9111 §4.2.3), the origin's own
            ``Age`` included, on every path (a miss whose origin sent ``Age: 30`` is 30).
        created_at: when the origin's response arrived (an aware UTC ``datetime``).
        expires: when its stored freshness ends, or None: not stored.
        reason: why it was neither stored nor served from storage (a code of the guide's
            table, ``docs/guide/observability.md``); None when it was.
    """

    status: CacheStatus
    from_cache: bool
    age: float
    created_at: datetime
    expires: datetime | None
    reason: str | None = None


class Served(NamedTuple):
    """What the middleware attaches to each response it answers (read by ``cache_info``)."""

    snapshot: Snapshot
    status: CacheStatus
    now: float  # when it was served, on the middleware's clock
    reason: CacheReason | None = None  # why it was not stored (reasons.py)


ATTRIBUTE = "_coalesce_served"  # the attribute of a ClientResponse that holds its ``Served``


def cache_info(response: object) -> CacheInfo | None:
    """What a face of ours says of ``response`` (an ``aiohttp.ClientResponse`` the client
    middleware returned, or a ``CachedResponse``), or None for a response none of ours answered.

    >>> cache_info(object()) is None
    True
    """
    if isinstance(response, CachedResponse):
        source = response
    else:
        served = getattr(response, ATTRIBUTE, None)
        if not isinstance(served, Served):
            return None
        source = CachedResponse(served.snapshot, served.status, now=served.now)
        source.cache_reason = served.reason
    return CacheInfo(
        source.cache_status,
        source.from_cache,
        source.age,
        source.created_at,
        source.expires,
        source.cache_reason,
    )
