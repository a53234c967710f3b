"""The counters of one coalescer, and the tally that counts one call.

Rules of this module:

* Every call counts once in ``requests`` when it begins, and once in exactly one outcome when it
  ends: the counter named by the ``cache_status`` its caller sees, cancelled and failed callers
  included (as the caller would have been: a follower's ``"coalesced"``, else ``"miss"``). So
  ``requests`` minus the outcomes is the calls in progress, and nothing once all are done.
* The rule is structural: ``fetch`` counts the call in ``requests`` and opens one ``Tally`` for
  it, and closes it on every way out (``close`` with its answer's status, or ``fail``; ``close``
  inlined where nothing was committed before: a hit, a miss, a follower); a call's outcome is
  counted once whatever calls it (a second ``close`` or ``commit`` with the same status changes
  nothing, another status is a bug). Nothing else counts an outcome but a hit answered without a
  call of ``fetch`` (``Coalescer.peek`` and ``fresh``, and a face that answers a range request
  from ``Coalescer.stored``, through ``count_hit``).
* ``peeked`` counts the hits of ``Coalescer.peek`` without a recorder: each begun and ended at
  once, so one counter holds both, added to ``requests`` and to the hits by ``snapshot`` (two
  counters written per hit cost 700 instructions, a hit's heaviest line, issue 20). With a
  recorder they are counted through ``count_hit``, each recorded.
* With a metrics recorder (``record_to``), every outcome counted is also recorded: the outcomes'
  dict becomes one that records on each write (``_Recorded``), so that the counting code, the
  inlined copies on the hot paths included, stays as it is and costs nothing more without one.
* ``errors`` counts calls that raised (the tally, and the faces' own checks through
  ``count_error``), ``upstream`` real requests sent (the leader, a call sent alone), ``stored``
  successful storage writes (the writer's count, read by ``snapshot``).
"""

from __future__ import annotations

from typing import get_args

from ..metrics.base import Recorder
from .records import CacheStatus, Stats

__all__ = ["Counters", "Tally"]


class Counters:
    """The counters a coalescer keeps (its base class, so that ``peek`` counts a hit on ``self``
    at the cost of two attribute writes: the whole cost of a hit is measured)."""

    __slots__ = ("_outcomes", "errors", "peeked", "recorder", "requests", "upstream")

    def __init__(self) -> None:
        self.requests = 0  # calls begun (fetch, and the hits of fresh and count_hit)
        self.peeked = 0  # peek's hits without a recorder: begun and ended (module rules)
        # Calls by outcome: written by close/commit/fail and count_hit below, and by the inlined
        # copies of close in Pipeline.fetch and of count_hit in Coalescer.peek.
        self._outcomes: dict[CacheStatus, int] = dict.fromkeys(get_args(CacheStatus), 0)
        self.errors = 0  # calls that raised
        self.upstream = 0  # real requests sent: one per flight, one per call alone
        self.recorder: Recorder | None = None  # the face's metrics= (record_to), or None

    def record_to(self, recorder: Recorder) -> None:
        """Record every outcome counted from now on to ``recorder`` too (module rules)."""
        self.recorder = recorder
        self._outcomes = _Recorded(self._outcomes, recorder)

    def snapshot(self, stored: int) -> Stats:
        """The counters now, with ``stored`` (the writer's count)."""
        o = self._outcomes
        return Stats(
            requests=self.requests + self.peeked,
            hits=o["hit"] + self.peeked,
            misses=o["miss"],
            coalesced=o["coalesced"],
            stale=o["stale"],
            revalidated=o["revalidated"],
            stored=stored,
            bypassed=o["bypass"],
            errors=self.errors,
            upstream=self.upstream,
        )

    def count_hit(self) -> None:
        """A call answered from storage outside ``fetch``: begun and ended as a hit."""
        self.requests += 1
        self._outcomes["hit"] += 1

    def count_error(self) -> None:
        """A call raised after its answer was counted (a face raising its own saved exception)."""
        self.errors += 1

    def close(self, tally: Tally, status: CacheStatus) -> None:
        """The call ends with ``status``, the one its caller sees (``commit``, unless done)."""
        if tally.counted:
            if status != tally.status:
                raise RuntimeError(f"a call counted as {tally.status!r} cannot end {status!r}")
            return
        tally.status = status
        tally.counted = True
        self._outcomes[status] += 1

    commit = close
    """Count a call's outcome before it ends (a call sent alone commits before it sends: it is
    then placed); its ``close`` then changes nothing."""

    def fail(self, tally: Tally) -> None:
        """The call raised, or was cancelled: one outcome still (``tally.status``, unless its
        outcome was counted already), and an error."""
        if not tally.counted:
            tally.counted = True
            self._outcomes[tally.status] += 1
        self.errors += 1


class Tally:
    """One call of ``fetch`` (module rules): whether its outcome is counted yet, and what it
    counts as if it failed now (``status``: the stages set it as they learn it). Its counters
    are the coalescer's (``Counters.close``, ``commit``, ``fail``).

    No ``__init__`` and no slots: the class holds the defaults, so that a call that changes
    neither (a hit, a leader's miss) costs only the object's creation, on every call's path.
    """

    status: CacheStatus = "miss"
    counted: bool = False


class _Recorded(dict[CacheStatus, int]):
    """The outcomes' counts, each write of one also recorded (``Counters.record_to``)."""

    __slots__ = ("_call",)

    def __init__(self, counts: dict[CacheStatus, int], recorder: Recorder) -> None:
        super().__init__(counts)
        self._call = recorder.call

    def __setitem__(self, status: CacheStatus, count: int) -> None:
        super().__setitem__(status, count)
        self._call(status)
