"""Reuse: what a call does with the response stored for its request (RFC 9111 §4, RFC 5861).

Rules of this module (pure: ``now`` and the origin's stale terms are parameters):

* A fresh stored response answers the call unless the caller's own directives refuse it
  (``Wanted``: ``max-age``, ``min-fresh``); a stale one answers it at once only within its
  stale-while-revalidate window (RFC 5861 §3, then refreshed in the background) or when the
  caller's ``max-stale`` accepts it and the origin allows stale at all (RFC 9111 §4.2.4); a
  caller with directives of its own never gets stale-while-revalidate (its ``max-age`` or
  ``min-fresh`` asked for more).
* Anything else goes to the origin with what is stored as the *prior*, which the flight
  revalidates (a conditional request when it has a validator) or serves if the origin fails
  (``failure.py``). ``only-if-cached`` (§5.2.1.7) turns every trip to the origin into a miss
  answered without a response (the faces answer 504).
* ``refresh`` (the caller's ``no-cache``, ``max-age=0``, ``Pragma: no-cache``, or the client's
  ``refresh=True``) goes to the origin whatever is stored (§5.2.1.4).

Transition table (the first row that matches; ``OIC``: the caller sent ``only-if-cached``)::

    stored  refresh  it is  the caller's directives          -> variant           reason
    none    -        -      OIC                              -> OnlyIfCachedMiss  not stored
    none    -        -      otherwise                        -> Miss              not stored
    some    yes      -      OIC                              -> OnlyIfCachedMiss  request no-cache
    some    yes      -      otherwise                        -> Revalidate        request no-cache
    some    no       fresh  none, or they accept it          -> Hit
    some    no       fresh  older than max-age; OIC          -> OnlyIfCachedMiss  max-age
    some    no       fresh  older than max-age               -> Revalidate        max-age
    some    no       fresh  not fresh for min-fresh; OIC     -> OnlyIfCachedMiss  min-fresh
    some    no       fresh  not fresh for min-fresh          -> Revalidate        min-fresh
    some    no       stale  none; within stale-while-reval.  -> ServeStale        (and refresh)
    some    no       stale  max-stale accepts, origin allows -> ServeStale        (max-stale)
    some    no       stale  otherwise; OIC                   -> OnlyIfCachedMiss  stale
    some    no       stale  otherwise                        -> Revalidate        stale
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, get_args

from ..freshness import StaleWindows
from ..requests import Wanted
from ..snapshot import Snapshot
from .reasons import NotReusedReason

__all__ = [
    "NOT_STALE",
    "Hit",
    "Miss",
    "OnlyIfCachedMiss",
    "Reuse",
    "Revalidate",
    "ServeStale",
    "StaleTerms",
    "reuse",
]


class StaleTerms(NamedTuple):
    """What the origin allows of a stored response once it is stale, as the core's policy reads
    its headers: the stale windows, and whether it may be served stale at all (RFC 9111 §4.2.4,
    for a caller's ``max-stale``). Needed only for a stale response: ``NOT_STALE`` otherwise."""

    windows: StaleWindows
    may_serve_stale: bool


NOT_STALE = StaleTerms(StaleWindows(0.0, 0.0), False)


@dataclass(frozen=True, slots=True)
class Hit:
    """The stored response answers the call as it is."""


@dataclass(frozen=True, slots=True)
class ServeStale:
    """The stored response answers the call, stale: within its stale-while-revalidate window
    (its flight's key is then refreshed in the background), or by the caller's ``max-stale``."""

    by: Literal["stale-while-revalidate", "max-stale"]


@dataclass(frozen=True, slots=True)
class Revalidate:
    """To the origin, with the stored response as the flight's prior."""

    reason: NotReusedReason


@dataclass(frozen=True, slots=True)
class Miss:
    """To the origin: nothing is stored."""

    reason: NotReusedReason = "not stored"


@dataclass(frozen=True, slots=True)
class OnlyIfCachedMiss:
    """Nothing usable stored, and the caller forbids the origin: a miss without a response."""

    reason: NotReusedReason


Reuse = Hit | ServeStale | Revalidate | Miss | OnlyIfCachedMiss

HIT = Hit()
_MISS = Miss()
_BY_WINDOW = ServeStale("stale-while-revalidate")
_BY_MAX_STALE = ServeStale("max-stale")
_REVALIDATE: dict[NotReusedReason, Revalidate] = {}
_ONLY_IF_CACHED: dict[NotReusedReason, OnlyIfCachedMiss] = {}
for _reason in get_args(NotReusedReason):
    _REVALIDATE[_reason] = Revalidate(_reason)
    _ONLY_IF_CACHED[_reason] = OnlyIfCachedMiss(_reason)


def reuse(
    stored: Snapshot | None,
    now: float,
    wanted: Wanted | None,
    refresh: bool,
    stale: StaleTerms,
) -> Reuse:
    """What the call does with ``stored`` (the module's table). ``now`` and ``stale`` are read
    only when something is stored, ``stale`` only when it is stale.

    >>> s = Snapshot(200, "OK", (), "http://x/", "GET", b"", expires_at=100.0)
    >>> reuse(s, 50.0, None, False, NOT_STALE), reuse(None, 50.0, None, False, NOT_STALE)
    (Hit(), Miss(reason='not stored'))
    """
    only_if_cached = wanted is not None and wanted.only_if_cached
    if stored is None:
        return _ONLY_IF_CACHED["not stored"] if only_if_cached else _MISS
    reason: NotReusedReason
    if refresh:
        reason = "request no-cache"
    elif stored.expires_at > now:
        if wanted is None or wanted.accepts(stored, now):
            return HIT
        too_old = wanted.max_age is not None and stored.age(now) > wanted.max_age
        reason = "max-age" if too_old else "min-fresh"
    else:
        served = _served_stale(stored, now, wanted, stale)
        if served is not None:
            return served
        reason = "stale"
    return _ONLY_IF_CACHED[reason] if only_if_cached else _REVALIDATE[reason]


def _served_stale(
    stored: Snapshot, now: float, wanted: Wanted | None, stale: StaleTerms
) -> ServeStale | None:
    if wanted is not None:  # the caller's own terms: max-stale, if the origin allows stale
        accepted = stale.may_serve_stale and wanted.accepts_stale(stored, now)
        return _BY_MAX_STALE if accepted else None
    window = stale.windows.while_revalidate
    return _BY_WINDOW if window > 0 and now - stored.expires_at <= window else None
