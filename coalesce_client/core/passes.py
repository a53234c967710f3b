"""The pass-through list: keys whose responses could not be shared (Varnish's hit-for-miss).

Rules of this module:

* In a shared cache, a key whose flight's response could not reach its followers (``Set-Cookie``,
  ``private``, ``no-store``, streamed, too large: ``storing.py``'s ``Neither``) goes straight
  through for ``pass_ttl`` seconds: later calls neither wait on a flight nor coalesce, so such
  routes are not serialized. A private cache never remembers one (``pass_ttl`` 0).
* Bounded (``MAX_PASSES`` keys, the oldest dropped first); an expired key is dropped when it is
  next asked about. An invalidation of the key forgets it.
* ``until`` is the list itself (key -> when it ends, on the coalescer's clock; insertion order is
  age): ``Coalescer.peek`` reads it directly, a dict lookup being the whole cost of that check.
"""

from __future__ import annotations

from ..storage.base import Clock

__all__ = ["MAX_PASSES", "Passes"]

MAX_PASSES = 10_000  # keys remembered as pass-through at most (bounded everything)


class Passes:
    """The keys that go straight through, and until when (module rules)."""

    __slots__ = ("_clock", "ttl", "until")

    def __init__(self, clock: Clock, ttl: float) -> None:
        self._clock = clock
        self.ttl = ttl  # seconds a key goes straight through; 0: never remembered
        self.until: dict[str, float] = {}  # key -> until (clock); insertion order = age

    def __repr__(self) -> str:
        return f"<Passes keys={len(self.until)} ttl={self.ttl}>"

    def passing(self, key: str) -> bool:
        """Whether ``key`` goes straight through now."""
        until = self.until.get(key)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self.until[key]
        return False

    def remember(self, key: str) -> None:
        """``key`` goes straight through for ``ttl`` seconds from now (if ``ttl`` is above 0)."""
        if self.ttl <= 0:
            return
        until = self.until
        until.pop(key, None)
        until[key] = self._clock() + self.ttl
        while len(until) > MAX_PASSES:  # bounded: the oldest go first
            del until[next(iter(until))]

    def forget(self, key: str) -> None:
        self.until.pop(key, None)
