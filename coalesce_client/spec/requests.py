"""What a request asks of a cache, as plain data: the rules both faces share.

Rules of this module: pure (standard library only, no asyncio), ``now`` is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass

from .snapshot import Snapshot

__all__ = ["Wanted"]


@dataclass(frozen=True, slots=True)
class Wanted:
    """What a caller's own request directives accept of a stored response (RFC 9111 §5.2.1).

    ``max_age``: at most this old (§5.2.1.1); ``min_fresh``: still fresh for at least this long
    (§5.2.1.3); ``max_stale``: a stale response will do if stale for at most this long
    (§5.2.1.2); ``only_if_cached``: never go to the origin, answer without a response instead
    (§5.2.1.7: the face then answers 504).
    """

    max_age: float | None = None
    min_fresh: float | None = None
    only_if_cached: bool = False
    max_stale: float | None = None

    def accepts(self, snap: Snapshot, now: float) -> bool:
        """Whether a fresh stored response will do."""
        if self.max_age is not None and snap.age(now) > self.max_age:
            return False
        return self.min_fresh is None or snap.expires_at - now >= self.min_fresh

    def accepts_stale(self, snap: Snapshot, now: float) -> bool:
        """Whether this stale stored response will do (``max-stale``)."""
        if self.max_stale is None or self.min_fresh is not None:
            return False
        if self.max_age is not None and snap.age(now) > self.max_age:
            return False
        return now - snap.expires_at <= self.max_stale
