"""The records that cross the core's boundary, and those its stages hand each other.

Rules of this module: frozen records only, slotted dataclasses or NamedTuples (a NamedTuple
where one is built on a call's path: it costs a third as much to build), with no behaviour
beyond reading them (but ``Setup.of``, which checks the options a face was given). A face
builds a ``Setup`` per session
or middleware, a ``Call`` per request and a ``Send`` closure that holds its own objects; the core
answers with an ``Answer``. ``Stats`` is the counters' frozen snapshot. Inside the core, a
``Flight`` carries what a flight's leader needs, a ``FlightResult`` what the flight gave, a
``ViaPointer`` what a lookup read through a Vary pointer.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from ..options import Seconds, check_callable, check_seconds, check_seconds_or_none
from ..spec.decisions.followers import Served, Variant
from ..spec.decisions.reasons import CacheReason, NotSharedReason
from ..spec.requests import Wanted
from ..spec.snapshot import Headers, Snapshot
from ..spec.vary import Header
from ..storage.base import Clock
from .policy import CachePolicy

__all__ = [
    "Answer",
    "CacheStatus",
    "Call",
    "Fetched",
    "Flight",
    "FlightResult",
    "Send",
    "Setup",
    "Stats",
    "ViaPointer",
    "no_headers",
]

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
    # Why ``snapshot`` is None, when the face knows better than "streamed" (a body too large).
    withheld: NotSharedReason = "streamed"


class Answer(NamedTuple):
    """What one call gets: the response to replay, and where it came from.

    ``snapshot`` is None only for a caller whose own ``send`` returned None: its face still holds
    the response in its closure. ``reason``: why it was neither stored nor served from storage
    (``spec/decisions/reasons.py``), None when it was.
    """

    snapshot: Snapshot | None
    status: CacheStatus
    reason: CacheReason | None = None


def no_headers(name: str) -> str | None:
    return None


class Call(NamedTuple):
    """One call's request-side facts, as a face hands them to ``Coalescer.fetch``. A NamedTuple:
    built for every call, where a frozen dataclass costs three times as much to build (a burst's
    followers each build one).

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
    reason: CacheReason | None = None  # why ``key`` is None (a bypass), as the face decided


class Send(Protocol):
    """A face's real request for one call. ``conditional`` holds the request headers of a
    conditional revalidation (``If-None-Match``, ``If-Modified-Since``) that it adds to its
    request; ``detached`` says that its caller was answered already (a background refresh):
    nothing may reach that caller's connection any more. The coalescer passes them only when
    it revalidates or refreshes."""

    def __call__(self, conditional: Headers = ..., detached: bool = ...) -> Awaitable[Fetched]: ...


@dataclass(frozen=True, slots=True)
class Setup:
    """The options a face gives its coalescer, checked (``Setup.of``): one value per session or
    middleware, read by every stage."""

    policy: CachePolicy
    ttl: float  # seconds a stored response stays fresh, by default (the session's ``ttl``)
    clock: Clock  # wall-clock seconds, injected (tests move a fake one)
    wait_timeout: float | None  # seconds a follower waits for its leader, or None: as long
    shared_cache: bool  # RFC 9111's shared cache (the middleware; a session with shared=True)

    @classmethod
    def of(
        cls,
        *,
        policy: CachePolicy | None,
        ttl: Seconds,
        clock: Clock,
        wait_timeout: Seconds | None = None,
        shared_cache: bool = False,
    ) -> Setup:
        """The options both faces share, checked once, with the user's option names: a bad one
        raises ``ValueError`` naming it. ``policy`` None: ``CachePolicy()``."""
        ttl = check_seconds(ttl, "ttl")
        wait_timeout = check_seconds_or_none(wait_timeout, "wait_timeout", positive=True)
        clock = check_callable(clock, "clock")
        if policy is None:
            policy = CachePolicy()
        elif not isinstance(policy, CachePolicy):
            raise ValueError(f"policy must be a CachePolicy, got {policy!r}")
        return cls(policy, ttl, clock, wait_timeout, shared_cache)


class Flight(NamedTuple):
    """What the leader of one flight needs (``leader.py``, ``fleet_leader.py``). A NamedTuple:
    built for every call that goes to a flight, where a frozen dataclass costs three times as
    much to build.

    ``key`` is the call's key (never None here); ``fkey`` the flight's: the call's key, or its
    variant's once a Vary pointer (or a first round) said what the URL varies on; ``names``
    those names in a call's second round (``followers.py``), else (). ``prior`` is what is stored
    for ``fkey`` (stale, or refused by the caller): the flight revalidates it, or serves it if
    the origin fails. ``detached``: a background refresh, whose caller was answered already.
    """

    call: Call
    send: Send
    key: str
    fkey: str
    names: tuple[str, ...] = ()
    prior: Snapshot | None = None
    detached: bool = False


class FlightResult(NamedTuple):
    """The value of one flight: the leader's own response, and what its followers may have (a
    NamedTuple, as ``Flight``)."""

    own: Snapshot | None  # as received: the leader's (Set-Cookie and all)
    shared: Snapshot | None  # stripped for replay; None: not for the followers, who send their own
    # When the response varies: the names, and the leader's values of them. A follower takes
    # ``shared`` only if its own values are the same (followers.py).
    variant: Variant | None = None
    # How the flight answered when not with a new response: "revalidated" (the stored one,
    # confirmed by a 304) or "stale" (the stored one, the origin having failed: stale-if-error).
    served: Served | None = None
    remote: bool = False  # read from storage after another process's flight (fleet.py)
    reason: CacheReason | None = None  # why the response was not stored (reasons.py)


class ViaPointer(NamedTuple):
    """What a lookup read for a request through a Vary pointer (``lookup.py``): its variant's
    key, the call's flight key from then on, and the response stored under it, fresh or not, or
    None."""

    fkey: str
    response: Snapshot | None
