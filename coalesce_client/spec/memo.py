"""A bounded memo: values already worked out, by what they were worked out from.

Rules of this module:

* Pure (standard library only), as the rest of ``spec/``, so that the rules below and the
  layers above bound their memos one way: ``spec/dates.py`` and ``spec/cache_control.py`` (an
  origin's usual field values, read once), ``core/keys.py`` (keys, and the request parts seen).
* A memo holds at most ``limit`` entries; a memo that is full is cleared, not pruned: the bound
  costs one ``len`` a write, and the values in use come back at once.
* A value may depend on its key alone (or on what the caller folds into the key): it is the
  same whenever it is worked out.
* Reads are the dict's own (``get``, ``in``): a memo read is on the hot paths.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

__all__ = ["Memo"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Memo(dict[K, V]):
    """A dict of at most ``limit`` entries, cleared when full (module rules).

    >>> memo: Memo[str, int] = Memo(2)
    >>> memo.remember("a", 1), memo.remember("b", 2), memo.remember("c", 3)
    (1, 2, 3)
    >>> dict(memo)
    {'c': 3}
    """

    __slots__ = ("limit",)

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def remember(self, key: K, value: V) -> V:
        """Keep ``value`` under ``key`` (the memo cleared first if full); ``value``."""
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value
