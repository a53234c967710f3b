"""Frozen records built on every miss, without their ``__init__`` (issue 20).

Rules of this module:

* A frozen dataclass's ``__init__`` sets each field with ``object.__setattr__``, which makes a
  bound wrapper for every call: about 1,200 instructions a field, 25,000 for a ``Snapshot``. A
  record built on every miss is built instead by setting each slot through its own descriptor,
  spelt out at the place that builds it (a loop over them costs half as much again): the same
  type, the same fields, the same equality and hash.
* Only for records without ``__post_init__`` (nothing to check or derive) whose slots are all
  set by the builder: ``slot_setters`` checks the slots against the names the builder spells
  out, so that a field added to the record stops the import until its builder sets it too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["slot_setters"]

SlotSetter = Callable[[Any, Any], None]


def slot_setters(cls: type, names: tuple[str, ...]) -> tuple[SlotSetter, ...]:
    """The setters of ``cls``'s slots, which must be ``names`` in order (module rules).

    >>> from coalesce_client.storage.records import UrlIndex
    >>> keys, url, stored_at, expires_at = slot_setters(
    ...     UrlIndex, ("keys", "url", "stored_at", "expires_at"))
    >>> index = object.__new__(UrlIndex)
    >>> keys(index, ("k",)); url(index, "u"); stored_at(index, 1.0); expires_at(index, 2.0)
    >>> index == UrlIndex(("k",), "u", 1.0, 2.0)
    True
    """
    if getattr(cls, "__slots__", None) != names or hasattr(cls, "__post_init__"):
        raise ImportError(f"{cls.__qualname__}'s slots are not {names}: update its builder")
    return tuple(getattr(cls, name).__set__ for name in names)
