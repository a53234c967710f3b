"""Invalidation (RFC 9111 §4.4): which stored responses belong to one URL, and when to drop them.

Rules of this module (pure functions over plain data, no framework):

* A *URL key* names a resource apart from who asks and how: the digest of the key's URL part
  (namespace, scheme, host, port, path, query, normalized as ``keys.py`` does), without the
  method, the credentials, ``key_headers`` or a Vary part. ``KeyMaker.url_key`` makes it.
* Under its URL key, storage keeps an *index*: a record listing the storage keys stored for that
  URL (every method's key, every credential partition, every Vary pointer and variant), oldest
  first. It is ``Snapshot``-shaped, like a Vary pointer, so every storage keeps it as it keeps a
  response, and processes sharing a ``DiskStorage`` see one another's keys. It is told apart by
  ``INDEX_METHOD``, which no request can have (not an HTTP token); no code path replays it.
* Bounded: an index lists at most ``MAX_KEYS`` keys; the writer deletes from storage the key that
  falls out of it, so a stored response is never out of reach of an invalidation. The index
  expires with the latest entry it lists.
* The index is written when a response is stored and read only when invalidating: a hit never
  touches it.
* What invalidates (§4.4): a non-error response (status below 400) to a method other than the
  safe ones (GET, HEAD, OPTIONS, TRACE), for the request's URL and for its ``Location`` and
  ``Content-Location`` when they are on the request's origin (a cross-origin header could be used
  to wipe another site's entries). ``invalidation_targets`` picks those two for both faces; each
  face resolves them with its own URL parser, the one its keys are built with, so that a target's
  URL key is exactly the one its stored responses were indexed under.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeVar

from .snapshot import Snapshot

__all__ = [
    "INDEX_METHOD",
    "MAX_KEYS",
    "SAFE_METHODS",
    "Origin",
    "index",
    "invalidates",
    "invalidation_targets",
    "listed",
]

INDEX_METHOD = "URL INDEX"  # a space: no HTTP method can be it (RFC 9110 §9.1, a token)
MAX_KEYS = 256  # storage keys an index lists at most; the oldest go (and are deleted) first
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1


def invalidates(method: str, status: int) -> bool:
    """Does this response to this request invalidate its URL? (RFC 9111 §4.4)

    >>> invalidates("POST", 201), invalidates("DELETE", 404), invalidates("GET", 200)
    (True, False, False)
    """
    return status < 400 and method.upper() not in SAFE_METHODS


def index(keys: tuple[str, ...], url: str, stored_at: float, expires_at: float) -> Snapshot:
    """The record kept under a URL key: the storage keys of that URL, oldest first."""
    return Snapshot(
        status=200,
        reason="",
        headers=(),
        url=url,
        method=INDEX_METHOD,
        body="\n".join(keys).encode(),
        stored_at=stored_at,
        expires_at=expires_at,
    )


def listed(snap: Snapshot | None) -> tuple[str, ...]:
    """The storage keys an index lists; () for anything that is not an index."""
    if snap is None or snap.method != INDEX_METHOD or not snap.body:
        return ()
    return tuple(snap.body.decode("ascii", "replace").split("\n"))


_U = TypeVar("_U")


class Origin(NamedTuple):
    """A URL's origin (RFC 9110 §4.3.1): scheme, host, and port (the scheme's default when the
    URL names none); ``host`` None for a URL without one (``mailto:``, ``urn:``)."""

    scheme: str
    host: str | None
    port: int | None


def invalidation_targets(
    field: Callable[[str], str | None],
    resolve: Callable[[str], _U],
    origin_of: Callable[[_U], Origin],
    origin: Origin,
) -> list[_U]:
    """The URLs besides its own that a response to an unsafe request invalidates (module rules,
    §4.4): its ``Location`` then its ``Content-Location`` (``field`` gives a response field's
    first value, or None), each trimmed and resolved by ``resolve`` (the face's URL parser; it
    raises ``ValueError`` or ``TypeError`` for what is no URI reference), kept when its
    ``origin_of`` is the request's ``origin``. An empty field, a value that is no URI reference
    and another origin's URL (``mailto:`` included) are passed over.

    >>> from urllib.parse import urljoin, urlsplit
    >>> def origin_of(url):
    ...     u = urlsplit(url)
    ...     return Origin(u.scheme, u.hostname, u.port or {"http": 80, "https": 443}.get(u.scheme))
    >>> fields = {"Location": " /new", "Content-Location": "https://other.example/x"}
    >>> here = "https://example.com/a/b"
    >>> invalidation_targets(fields.get, lambda ref: urljoin(here, ref), origin_of, origin_of(here))
    ['https://example.com/new']
    """
    targets = []
    for name in ("Location", "Content-Location"):
        value = field(name)
        if not value:
            continue
        try:
            target = resolve(value.strip())
        except (TypeError, ValueError):
            continue  # not a URI reference: nothing to invalidate
        if origin_of(target) == origin:  # another origin's entries are not ours to drop
            targets.append(target)
    return targets
