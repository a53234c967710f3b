"""Conditional revalidation of a stored response (RFC 9111 §4.3): pure functions over snapshots.

Rules of this module (standard library only, no framework):

* A stored response with a validator (``ETag``, ``Last-Modified``) is revalidated with a
  conditional request carrying both it has (``If-None-Match``, ``If-Modified-Since``; RFC 9111
  §4.3.1: a cache "SHOULD" send both).
* A 304 updates the stored response only if it selects it (§4.3.4): its strong ``ETag`` must be
  the stored one, a weak one must match weakly, a ``Last-Modified`` alone must be the stored one; a
  304 without validators selects the one stored response the request was made for.
* The update (§3.2): every header field of the 304 replaces the stored fields of that name, but
  ``Content-Length`` (the stored body is what it describes) and what a cache never stores
  (hop-by-hop fields, the policy's ``strip_headers``, removed before this is called).
"""

from __future__ import annotations

from .conditional import opaque_tag
from .snapshot import Headers, Snapshot

__all__ = ["conditional_headers", "selects", "updated_headers"]

# What a 304 never changes of the stored response: the body it describes (RFC 9111 §3.2).
_KEPT = frozenset({"content-length"})


def conditional_headers(stored: Snapshot) -> Headers:
    """The request headers that ask the origin whether ``stored`` is still current; empty when it
    has no validator.

    >>> s = Snapshot(200, "OK", (("ETag", '"v1"'),), "http://x/", "GET", b"")
    >>> conditional_headers(s)
    (('If-None-Match', '"v1"'),)
    """
    out = []
    etag = stored.header("ETag")
    if etag:
        out.append(("If-None-Match", etag))
    last_modified = stored.header("Last-Modified")
    if last_modified:
        out.append(("If-Modified-Since", last_modified))
    return tuple(out)


def selects(stored: Snapshot, not_modified: Snapshot) -> bool:
    """Whether a 304 answer is about ``stored`` (module rules).

    >>> s = Snapshot(200, "OK", (("ETag", '"v1"'),), "http://x/", "GET", b"")
    >>> r = Snapshot(304, "Not Modified", (("ETag", '"v2"'),), "http://x/", "GET", b"")
    >>> selects(s, r)
    False
    """
    etag = not_modified.header("ETag")
    if etag is not None:
        mine = stored.header("ETag")
        if mine is None:
            return False
        tag, own = opaque_tag(etag), opaque_tag(mine)
        if tag is None or tag != own:
            return False  # another representation, or not an entity-tag at all
        # Weak comparison for a weak validator; a strong one is strong on both sides (RFC 9110
        # §8.8.3.2).
        return etag.strip().startswith("W/") or not mine.strip().startswith("W/")
    last_modified = not_modified.header("Last-Modified")
    if last_modified is not None:
        mine = stored.header("Last-Modified")
        return mine is not None and mine.strip() == last_modified.strip()
    return True


def updated_headers(stored: Headers, new: Headers) -> Headers:
    """``stored`` with the fields of ``new`` in place of those of the same name (module rules).

    >>> updated_headers((("ETag", "a"), ("X-A", "1"), ("Content-Length", "3")),
    ...                 (("x-a", "2"), ("Content-Length", "0")))
    (('ETag', 'a'), ('Content-Length', '3'), ('x-a', '2'))
    """
    incoming = tuple((k, v) for k, v in new if k.lower() not in _KEPT)
    replaced = {k.lower() for k, _ in incoming}
    return tuple((k, v) for k, v in stored if k.lower() not in replaced) + incoming
