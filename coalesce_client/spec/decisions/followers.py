"""Followers: does a caller that joined a flight take its leader's answer (RFC 9111 §4.1)?

Rules of this module (pure):

* A follower takes the flight's shared response, ``"coalesced"``, or the stale one the flight
  fell back on (``failure.py``), ``"stale"``. It never takes what was not shared: it sends its
  own request, never stored (``storing.py``'s ``Neither``).
* Vary: a response that varies answers only callers whose values of the named headers equal
  those of the request that fetched it (trimmed; absent differs from empty). A follower whose
  values differ does not take it: in its first round it looks up again on its own variant's key
  and coalesces there with the callers of its variant; a second round that meets yet another
  variant sends alone. So a call has two rounds at most.

Transition table (the first row that matches)::

    shared by the leader  served     varies  follower's values  round   -> variant     reason
    no                    -          -       -                  -       -> SendAlone   not shared
    yes                   stale      -       -                  -       -> Take        (stale)
    yes                   otherwise  no      -                  -       -> Take        (coalesced)
    yes                   otherwise  yes     the leader's       -       -> Take        (coalesced)
    yes                   otherwise  yes     others             first   -> OwnVariant
    yes                   otherwise  yes     others             second  -> SendAlone   other variant
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from ..vary import Header, values_of
from .reasons import NotTakenReason

__all__ = [
    "Follow",
    "OwnVariant",
    "SendAlone",
    "Served",
    "Take",
    "Variant",
    "follow",
    "variant_of",
]

Served = Literal["stale", "revalidated"]
"""How a flight answered when not with a new response: the stored one, stale (stale-if-error)
or confirmed by a 304."""


class Variant(NamedTuple):
    """What a response varies on: the header names (``vary.vary_names``), and the values of
    them of the request it answered (``vary.values_of``)."""

    names: tuple[str, ...]
    values: tuple[str | None, ...]


def variant_of(names: tuple[str, ...], header: Header) -> Variant | None:
    """The variant of a request for a response that varies on ``names``; None when it does not
    vary."""
    return Variant(names, values_of(names, header)) if names else None


@dataclass(frozen=True, slots=True)
class Take:
    """The follower takes the flight's shared response."""

    status: Literal["coalesced", "stale"]


@dataclass(frozen=True, slots=True)
class OwnVariant:
    """Another variant than the follower's: a round of its own on its variant's key."""

    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SendAlone:
    """The follower sends its own request, which is not stored."""

    reason: NotTakenReason


Follow = Take | OwnVariant | SendAlone

_COALESCED = Take("coalesced")
_STALE = Take("stale")
_NOT_SHARED = SendAlone("not shared")
_OTHER_VARIANT = SendAlone("other variant")


def follow(
    shared: bool,
    served: Served | None,
    variant: Variant | None,
    mine: tuple[str | None, ...] | None,
    second_round: bool,
) -> Follow:
    """What a follower does with its leader's answer (the module's table). ``shared``: the flight
    has a response for followers; ``variant``: what it varies on and the leader's values;
    ``mine``: the follower's values of those names (None when it does not vary).

    >>> leader = Variant(("accept-language",), ("fr",))
    >>> follow(True, None, leader, ("fr",), False), follow(True, None, leader, ("de",), False)
    (Take(status='coalesced'), OwnVariant(names=('accept-language',)))
    """
    if not shared:
        return _NOT_SHARED
    if served == "stale":
        return _STALE
    if variant is None or mine == variant.values:
        return _COALESCED
    return _OTHER_VARIANT if second_round else OwnVariant(variant.names)
