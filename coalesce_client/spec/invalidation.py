"""Invalidation (RFC 9111 §4.4): which stored responses belong to one URL, and when to drop them.

Rules of this module (pure functions over plain data, no framework):

* A *URL key* names a resource apart from who asks and how: the digest of the key's URL part
  (namespace, scheme, host, port, path, query, normalized as ``keys.py`` does), without the
  method, the credentials, ``key_headers`` or a Vary part. ``KeyMaker.url_key`` makes it.
* Under its URL key, storage keeps a *URL index*, a record of its own listing the storage keys
  stored for that URL (``storage/records.py``; bounded and kept by ``core/writer.py``): never a
  response, and not this module's. A hit never touches it.
* What invalidates (§4.4): a non-error response (status below 400) to a method other than the
  safe ones (GET, HEAD, OPTIONS, TRACE), for the request's URL and for its ``Location`` and
  ``Content-Location`` when they are on the request's origin (a cross-origin header could be used
  to wipe another site's entries).
"""

from __future__ import annotations

__all__ = ["SAFE_METHODS", "invalidates"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})  # RFC 9110 §9.2.1


def invalidates(method: str, status: int) -> bool:
    """Does this response to this request invalidate its URL? (RFC 9111 §4.4)

    >>> invalidates("POST", 201), invalidates("DELETE", 404), invalidates("GET", 200)
    (True, False, False)
    """
    return status < 400 and method.upper() not in SAFE_METHODS
