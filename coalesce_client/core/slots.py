"""Frozen records built on every miss, without their ``__init__`` (issue 20).

Rules of this module:

* A frozen dataclass's ``__init__`` sets each field with ``object.__setattr__``, which makes a
  bound wrapper for every call: about 1,200 instructions a field, 25,000 for a ``Snapshot``
  (through each slot's own descriptor, 800 a field). A record built on every miss is built
  instead in its *shell* (``shell_of``): a plain class with the record's slots, in the same
  order, whose attributes are set as any object's (a few dozen instructions each); once its
  builder has set every slot, the shell becomes the record (``__class__`` assigned: the two
  have the same layout, which Python checks), about 2,400 instructions for a ``Snapshot``: the
  same type, the same fields, the same equality and hash, frozen from then on.
* A shell never leaves its builder: it is a record, or it is garbage.
* Only for records without ``__post_init__`` (nothing to check or derive): ``shell_of`` checks
  the record's slots against the names its builder spells out here, so that a field added to the
  record stops the import until this module lists it (and the builders set it: a slot left unset
  is an ``AttributeError`` at its first read; the tests compare every field).
"""

from __future__ import annotations

from typing import Any

from ..spec.freshness import ResponseFacts
from ..spec.snapshot import Snapshot
from ..storage.records import UrlIndex
from .records import Fetched

__all__ = ["FactsShell", "FetchedShell", "IndexShell", "SnapshotShell", "shell_of"]


def shell_of(cls: type, names: tuple[str, ...]) -> type[Any]:
    """The shell of ``cls``, whose slots must be ``names`` in order (module rules).

    >>> shell = shell_of(UrlIndex, ("keys", "url", "stored_at", "expires_at"))
    >>> index = shell()
    >>> index.keys, index.url, index.stored_at, index.expires_at = ("k",), "u", 1.0, 2.0
    >>> index.__class__ = UrlIndex
    >>> index == UrlIndex(("k",), "u", 1.0, 2.0)
    True
    """
    if getattr(cls, "__slots__", None) != names or hasattr(cls, "__post_init__"):
        raise ImportError(f"{cls.__qualname__}'s slots are not {names}: update its builder")
    return type(f"{cls.__name__}Shell", (), {"__slots__": names, "__module__": __name__})


SnapshotShell = shell_of(
    Snapshot,
    (
        "status",
        "reason",
        "headers",
        "url",
        "method",
        "body",
        "stored_at",
        "expires_at",
        "history",
        "request_time",
        "response_time",
        "stream",
        "_initial_age",
        "replay_form",
    ),
)
FactsShell = shell_of(
    ResponseFacts,
    (
        "status",
        "headers",
        "request_time",
        "response_time",
        "session_ttl",
        "call_ttl",
        "url",
        "shared_cache",
    ),
)
IndexShell = shell_of(UrlIndex, ("keys", "url", "stored_at", "expires_at"))
FetchedShell = shell_of(Fetched, ("snapshot", "storable", "withheld"))
