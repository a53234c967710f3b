"""Storing: what a flight does with the response it received (RFC 9111 §3, §4.2, §5.2.2).

Rules of this module (pure; the core hands in what its policy computed):

* Two questions, in this order. ``sharing``: may the response reach the flight's other callers
  at all? Not when the face could not give it at all, not with ``Vary: *``, and in a shared
  cache not when the policy finds it private (``Set-Cookie``, ``private``, ``no-store`` in the
  directives the cache obeys: RFC 9111 §3, §5.2.2.5, §5.2.2.7, RFC 9213 §2.2). A body over
  ``max_body_size`` is shared too: as it streams (issue 24). ``storing``: is a shared response
  also kept, and for how long? Only if the user's ``should_store`` allows it, for the lifetime
  the policy gives it (``spec/lifetime.py``'s ``decide_lifetime``: a ``Lifetime``, or
  ``NotStored`` with its reason).
* A response for its caller alone (``Neither``) makes its key pass-through in a shared cache
  (``core/passes.py``); a response shared but not stored (``ShareOnly``) does not.

``sharing`` (the first row that matches)::

    response                                           -> variant    reason
    none (the face kept it: a streamed body)           -> Neither    streamed
    Vary: *                                            -> Neither    vary *
    private in a shared cache, with Set-Cookie         -> Neither    set-cookie
    private in a shared cache, directives: private     -> Neither    private
    private in a shared cache, otherwise (no-store)    -> Neither    no-store
    otherwise                                          -> Shareable

A streamed body (``Snapshot.stream``, issue 24: over ``max_body_size``, read as it arrives)
has ``b""`` for ``body``: ``sharing`` shares it as any other. ``storing`` then reads its
``Room``: what the storage takes of a stream, and the policy's ``max_stored_size``.

``storing`` (the first row that matches)::

    should_store  lifetime         size                     -> variant        reason
    says no       (not computed)                            -> ShareOnly      should_store veto
    allows        NotStored(why)                            -> ShareOnly      its reason: ttl 0,
                                                                              no-store, private,
                                                                              status not
                                                                              cacheable, stale
                                                                              on arrival
    allows        Lifetime         streamed, the storage                      storage takes
                                   takes no streams         -> ShareOnly      no streams
    allows        Lifetime         over max_stored_size or  -> ShareOnly      body over
                                   the storage's own limit                    max_stored_size
    allows        Lifetime(fresh,  otherwise (a stream of   -> StoreAndShare  (that lifetime)
                  kept)            unknown length: the
                                   storage stops it at the
                                   limit as it arrives)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from ..freshness import Lifetime
from ..lifetime import NotStored
from ..snapshot import Snapshot
from ..targeted import effective_directives
from ..vary import ANY
from .reasons import NotSharedReason, ShareOnlyReason

__all__ = [
    "Neither",
    "Room",
    "ShareOnly",
    "ShareTerms",
    "Shareable",
    "Sharing",
    "StoreAndShare",
    "Storing",
    "sharing",
    "storing",
]


@dataclass(frozen=True, slots=True)
class Neither:
    """For its own caller only: neither shared nor stored."""

    reason: NotSharedReason


@dataclass(frozen=True, slots=True)
class Shareable:
    """May reach the flight's other callers; ``storing`` says whether it is kept."""


@dataclass(frozen=True, slots=True)
class ShareOnly:
    """Shared with the flight's callers, not stored."""

    reason: ShareOnlyReason


@dataclass(frozen=True, slots=True)
class StoreAndShare:
    """Shared, and stored for ``lifetime``."""

    lifetime: Lifetime


Sharing = Neither | Shareable
Storing = ShareOnly | StoreAndShare


@dataclass(frozen=True, slots=True)
class ShareTerms:
    """What ``sharing`` reads of the policy: one value per coalescer."""

    targeted: tuple[str, ...]  # targeted_cache_control: lower-case field names (RFC 9213)


@dataclass(frozen=True, slots=True)
class Room:
    """What ``storing`` reads of the storage and the policy: one value per coalescer."""

    max_stored_size: int  # the policy's largest body stored
    stream_limit: int  # the largest streamed body the storage takes; 0: it takes none


SHAREABLE = Shareable()
_NEITHER = {reason: Neither(reason) for reason in get_args(NotSharedReason)}
_SHARE_ONLY: dict[ShareOnlyReason, ShareOnly] = {
    reason: ShareOnly(reason) for reason in get_args(ShareOnlyReason)
}


def sharing(
    response: Snapshot | None, names: tuple[str, ...], private: bool, terms: ShareTerms
) -> Sharing:
    """May ``response`` reach other callers (the module's first table)? ``names``: what it
    varies on (``vary.vary_names``); ``private``: the policy found it private, in a shared
    cache (always False in a private cache).

    >>> r = Snapshot(200, "OK", (("Vary", "*"),), "http://x/", "GET", b"four")
    >>> sharing(r, ("*",), False, ShareTerms(())), sharing(r, (), False, ShareTerms(()))
    (Neither(reason='vary *'), Shareable())
    """
    if response is None:
        return _NEITHER["streamed"]
    if names == ANY:
        return _NEITHER["vary *"]
    if not private:
        return SHAREABLE
    if response.header("Set-Cookie") is not None:
        return _NEITHER["set-cookie"]
    cc = effective_directives(response.headers, terms.targeted, shared=True).directives
    return _NEITHER["private" if cc.private else "no-store"]


def storing(
    storable: bool, lifetime: Lifetime | NotStored, response: Snapshot, room: Room
) -> Storing:
    """Is a shared response stored, for how long (the module's second table)? ``storable``:
    the user's ``should_store`` verdict; ``lifetime``: the policy's, for the response as it
    would be stored (not asked when ``storable`` is False); ``room``: what may be stored.

    >>> r, room = Snapshot(200, "OK", (), "http://x/", "GET", b"four"), Room(4, 0)
    >>> storing(True, Lifetime(60.0, 0.0), r, room)
    StoreAndShare(lifetime=Lifetime(fresh=60.0, kept=0.0))
    >>> storing(True, NotStored("ttl 0"), r, room), storing(False, Lifetime(60.0, 0.0), r, room)
    (ShareOnly(reason='ttl 0'), ShareOnly(reason='should_store veto'))
    >>> storing(True, Lifetime(60.0, 0.0), r, Room(3, 0))
    ShareOnly(reason='body over max_stored_size')
    """
    if not storable:
        return _SHARE_ONLY["should_store veto"]
    if isinstance(lifetime, NotStored):
        return _SHARE_ONLY[lifetime.reason]
    stream = response.stream
    if stream is None:
        if len(response.body) > room.max_stored_size:
            return _SHARE_ONLY["body over max_stored_size"]
        return StoreAndShare(lifetime)
    if room.stream_limit <= 0:
        return _SHARE_ONLY["storage takes no streams"]
    length = stream.length
    if length is not None and length > min(room.stream_limit, room.max_stored_size):
        return _SHARE_ONLY["body over max_stored_size"]
    return StoreAndShare(lifetime)
