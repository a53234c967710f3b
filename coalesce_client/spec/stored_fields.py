"""Which response header fields a cache stores and replays (RFC 9110 §7.6.1, RFC 9111 §3.1).

Rules of this module (pure functions, standard library only):

* Hop-by-hop fields mean something for one connection only, so they are never stored nor
  replayed: those RFC 9110 §7.6.1 names, any ``Proxy-*`` field, and every field a ``Connection``
  header lists (§7.6.1: an intermediary "MUST" remove them). No option turns this off.
* On top of those, a policy strips names of its own (``CachePolicy.strip_headers``): exact names,
  or prefixes written with a trailing ``*``.
* Names match in any case; the fields kept keep their order and their repeats.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["HOP_BY_HOP", "FieldFilter", "field_filter", "storable_headers"]

# RFC 9110 §7.6.1: hop-by-hop headers, meaningful for one connection only; never stored or replayed.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
    }
)


@dataclass(frozen=True, slots=True)
class FieldFilter:
    """The fields a cache drops: lower-case ``exact`` names and name ``prefixes``."""

    exact: frozenset[str]
    prefixes: tuple[str, ...]


def field_filter(strip: Iterable[str]) -> FieldFilter:
    """The filter for a policy's ``strip`` names (lower-case; a trailing ``*`` makes a prefix),
    the hop-by-hop fields always included.

    >>> f = field_filter(("set-cookie", "x-ratelimit-*"))
    >>> "set-cookie" in f.exact, "connection" in f.exact, f.prefixes
    (True, True, ('x-ratelimit-', 'proxy-'))
    """
    names = tuple(strip)
    prefixes = tuple(name.rstrip("*") for name in names if name.endswith("*"))
    return FieldFilter(
        frozenset(name for name in names if not name.endswith("*")) | HOP_BY_HOP,
        (*prefixes, "proxy-"),  # Proxy-* is hop-by-hop too
    )


def storable_headers(
    headers: Iterable[tuple[str, str]], dropped: FieldFilter
) -> tuple[tuple[str, str], ...]:
    """``headers`` without the fields ``dropped`` names and those a ``Connection`` field lists.

    >>> storable_headers([("Connection", "X-A"), ("X-A", "1"), ("ETag", '"a"')],
    ...                  field_filter(()))
    (('ETag', '"a"'),)
    """
    exact, prefixes = dropped.exact, dropped.prefixes
    headers = tuple(headers)
    kept = []
    listed = False  # a Connection field seen ("connection" is hop-by-hop: in ``exact``)
    for pair in headers:
        low = pair[0].lower()
        if low in exact or low.startswith(prefixes):
            listed = listed or low == "connection"
            continue
        kept.append(pair)
    if listed:  # the fields a Connection field lists go too (rare: the headers read again)
        names = {
            token.strip().lower()
            for name, value in headers
            if name.lower() == "connection"
            for token in value.split(",")
        }
        kept = [pair for pair in kept if pair[0].lower() not in names]
    return headers if len(kept) == len(headers) else tuple(kept)  # nothing dropped: no copy
