"""The URL indexes of a writer: which storage keys a URL's index lists, and what to write.

Rules of this module (part of the framework-free core; the storage reads and writes are the
writer's, ``writer.py``: this module only decides):

* An index (``UrlIndex``) lists the storage keys of one URL, newest last, at most ``max_keys``:
  the keys that fall out are to be deleted from storage (``IndexUpdate.dropped``), so that
  whatever is stored can be invalidated.
* The process keeps its own copy of the indexes it wrote (at most ``max_urls`` URLs, the least
  recent forgotten first), so that a storage that evicted an index record (an LRU under
  pressure) still has this process's entries of that URL dropped. The storage's record comes
  first (other processes' keys), then what only this process remembers.
* An index that lists the keys already, in that order, and lasts long enough is not written
  again (issue 20: a response stored again paid a second write for nothing); one written lasts
  as long as the longest of the entries it lists.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from ..storage.base import Clock
from ..storage.records import Record, UrlIndex
from .slots import IndexShell

__all__ = ["IndexUpdate", "UrlIndexes"]


class IndexUpdate(NamedTuple):
    """What adding keys to an index asks of the storage: the keys to delete, then the index to
    write for ``ttl`` seconds (None: the stored one stands)."""

    dropped: tuple[str, ...]
    record: UrlIndex | None
    ttl: float


class UrlIndexes:
    """This process's copy of the URL indexes it wrote (module rules): url key -> storage keys,
    oldest first; the dict's end is the URL stored most recently."""

    __slots__ = ("_clock", "_copies", "max_keys", "max_urls")

    def __init__(self, clock: Clock, max_keys: int, max_urls: int) -> None:
        self._clock = clock
        self.max_keys = max_keys  # storage keys an index lists at most
        self.max_urls = max_urls  # URLs whose index is copied here at most
        self._copies: OrderedDict[str, tuple[str, ...]] = OrderedDict()

    def add(
        self, url_key: str, keys: tuple[str, ...], current: Record | None, url: str, until: float
    ) -> IndexUpdate:
        """Add ``keys`` (of a response of ``url`` stored ``until``) to the index of ``url_key``,
        of which the storage holds ``current``, newest last; the oldest past the bound go."""
        copies = self._copies
        mine = copies.pop(url_key, ())
        listed = current.keys if isinstance(current, UrlIndex) else ()
        kept = keys
        if listed or mine:
            known = dict.fromkeys(listed + mine)
            kept = tuple(k for k in known if k not in keys) + keys
        excess = len(kept) - self.max_keys
        dropped: tuple[str, ...] = ()
        if excess > 0:
            dropped, kept = kept[:excess], kept[excess:]
        copies[url_key] = kept
        while len(copies) > self.max_urls:
            del copies[next(iter(copies))]
        expires_at = until  # as long as the entries it lists are stored
        if isinstance(current, UrlIndex) and listed:
            if kept == listed and until <= current.expires_at:
                return IndexUpdate(dropped, None, 0.0)  # listed already, long enough
            expires_at = max(expires_at, current.expires_at)
        now = self._clock()
        # UrlIndex(kept, url, now, expires_at), faster: built on every miss of a new URL (slots.py)
        index = IndexShell()
        index.keys, index.url, index.stored_at, index.expires_at = kept, url, now, expires_at
        index.__class__ = UrlIndex
        return IndexUpdate(dropped, index, expires_at - now)

    def pop(self, url_key: str) -> tuple[str, ...]:
        """Forget the index of ``url_key`` (invalidated); the keys it listed."""
        return self._copies.pop(url_key, ())

    def clear(self) -> None:
        """Forget every index (the storage was cleared)."""
        self._copies.clear()
