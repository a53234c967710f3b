"""What storage keeps: responses (``Snapshot``) and two records of its own bookkeeping.

Rules of this module (plain data, shared by the storage layer and the core):

* A storage keeps ``Record`` values: a response (``Snapshot``), a ``VaryPointer`` or a ``UrlIndex``.
  The two bookkeeping records are never responses: no code path replays them, listings
  (``entries()``) never show them, and they are told apart from a response by their type (on the
  wire by the codec's record kind, ``codec.py``), never by a field of an HTTP message.
* Every record carries ``stored_at`` and ``expires_at`` (wall-clock seconds), so that a backend
  keeps each kind alike: the same expiry and the same bound on size.
* A ``VaryPointer`` sits under a request's own key when its URL's responses vary (RFC 9110
  §12.5.5, RFC 9111 §4.1): the header names they vary on and the variant keys stored so far,
  oldest first, so that a lookup knows which variant to read and an invalidation which ones to
  drop. It lasts as long as the variants it lists.
* A ``UrlIndex`` sits under a URL key (``KeyMaker.url_key_of``): the storage keys stored for that
  URL (every method's key, every credential partition, every Vary pointer and variant), oldest
  first, so that an invalidation of the URL (RFC 9111 §4.4) reaches each of them, in this process or
  in another one sharing the storage. It is written when a response is stored and read only when
  invalidating; it expires with the latest entry it lists. The writer (``core/writer.py``) keeps
  both records bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from ..spec.snapshot import Snapshot

__all__ = ["Record", "Snapshot", "UrlIndex", "VaryPointer"]


@dataclass(frozen=True, slots=True)
class VaryPointer:
    """The record under a URL's own key when its responses vary (see the module rules).

    >>> p = VaryPointer(("accept",), ("k1", "k2"), "http://x/", 10.0, 70.0)
    >>> p.names, p.variants[-1]
    (('accept',), 'k2')
    """

    names: tuple[str, ...]  # the header names varied on: lower-case, sorted, once each
    variants: tuple[str, ...]  # variant keys stored so far, oldest first
    url: str  # the URL of the responses it points to (for humans and listings)
    stored_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class UrlIndex:
    """The record under a URL key: the storage keys of that URL (see the module rules).

    >>> UrlIndex(("k1", "k2"), "http://x/", 10.0, 70.0).keys
    ('k1', 'k2')
    """

    keys: tuple[str, ...]  # storage keys stored for the URL, oldest first
    url: str
    stored_at: float
    expires_at: float


Record: TypeAlias = Snapshot | VaryPointer | UrlIndex
"""Whatever a storage keeps under a key."""
