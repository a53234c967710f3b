"""The records that cross the core's boundary: what a face hands in for one call, and what it
gets back.

Rules of this module: frozen, slotted records only (no behaviour beyond reading them); a face
builds a ``Call`` per request and a ``Send`` closure that holds its own objects; the core answers
with an ``Answer``. ``Stats`` is the counters' frozen snapshot.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from ..spec.requests import Wanted
from ..spec.snapshot import Headers, Snapshot
from ..spec.vary import Header

__all__ = ["Answer", "CacheStatus", "Call", "Fetched", "Send", "Stats", "no_headers"]

CacheStatus = Literal["hit", "miss", "coalesced", "stale", "revalidated", "bypass"]
"""Where a caller's response came from; each status is also the name of its counter."""


@dataclass(frozen=True, slots=True)
class Stats:
    """Counters of one session or middleware, as a frozen snapshot (see the module rules)."""

    requests: int = 0
    hits: int = 0
    misses: int = 0
    coalesced: int = 0
    stale: int = 0
    revalidated: int = 0
    stored: int = 0
    bypassed: int = 0
    errors: int = 0
    upstream: int = 0


@dataclass(frozen=True, slots=True)
class Fetched:
    """What a face's ``send`` returns for one real request.

    ``snapshot`` is the complete response, or None when it cannot be replayed from bytes (a
    streamed response, an outcome private to its caller): then it is neither stored nor shared,
    and the flight's followers send requests of their own. ``storable`` is the verdict of the
    user's ``should_store`` filter, which the face asks about its own response object.
    """

    snapshot: Snapshot | None
    storable: bool = True


class Answer(NamedTuple):
    """What one call gets: the response to replay, and where it came from.

    ``snapshot`` is None only for a caller whose own ``send`` returned None: its face still holds
    the response in its closure.
    """

    snapshot: Snapshot | None
    status: CacheStatus


def no_headers(name: str) -> str | None:
    return None


@dataclass(frozen=True, slots=True)
class Call:
    """One call's request-side facts, as a face hands them to ``Coalescer.fetch``.

    ``key`` None: the call takes no part (a bypass): no lookup, no flight, nothing stored.
    ``header`` gives the request's header values (for Vary); ``ttl`` is the call's own
    ``cache_ttl``; ``refresh`` skips the storage read (still coalesced and stored); ``url`` the
    request's URL without its scheme, for the policy's ``url_ttl``; ``url_key`` the request's URL
    key (``KeyMaker.url_key``), under whose index a stored response is listed so that an
    invalidation of the URL finds it; ``wanted`` what the caller's own request directives accept
    of a stored response (a stored response it does not accept is a miss).
    """

    key: str | None
    header: Header = no_headers
    ttl: float | None = None
    refresh: bool = False
    url: str | None = None
    url_key: str | None = None
    wanted: Wanted | None = None


class Send(Protocol):
    """A face's real request for one call. ``conditional`` holds the request headers of a
    conditional revalidation (``If-None-Match``, ``If-Modified-Since``) that it adds to its
    request; ``detached`` says that its caller was answered already (a background refresh):
    nothing may reach that caller's connection any more. The coalescer passes them only when
    it revalidates or refreshes."""

    def __call__(self, conditional: Headers = ..., detached: bool = ...) -> Awaitable[Fetched]: ...
