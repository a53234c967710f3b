"""Invalidation (RFC 9111 §4.4): which stored responses belong to one URL, and when to drop them.

Rules of this module (pure functions over plain data, no framework):

* A *URL key* names a resource apart from who asks and how: the digest of the key's URL part
  (namespace, scheme, host, port, path, query, normalized as ``keys.py`` does), without the
  method, the credentials, ``key_headers`` or a Vary part. ``KeyMaker.url_key_of`` makes it.
* Under its URL key, storage keeps a *URL index*, a record of its own listing the storage keys
  stored for that URL (``storage/records.py``; bounded and kept by ``core/writer.py``): never a
  response, and not this module's. A hit never touches it.
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

__all__ = [
    "SAFE_METHODS",
    "Origin",
    "invalidates",
    "invalidation_targets",
]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1


def invalidates(method: str, status: int) -> bool:
    """Does this response to this request invalidate its URL? (RFC 9111 §4.4)

    >>> invalidates("POST", 201), invalidates("DELETE", 404), invalidates("GET", 200)
    (True, False, False)
    """
    return status < 400 and method.upper() not in SAFE_METHODS


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
