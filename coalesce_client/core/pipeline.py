"""The driver of ``Coalescer.fetch``: one call through lookup, single-flight, and the decisions.

Rules of this module:

* It knows no HTTP framework and holds none of a face's objects: a face hands it a ``Call`` and
  a ``Send`` closure that performs the real request and returns a ``Fetched`` (the complete
  response as a ``Snapshot``, or None when it cannot be replayed from bytes). Whatever the face
  needs of its own objects stays in that closure.
* The RFC's questions are answered by ``spec/decisions`` (what is stored: ``reuse``; a
  follower's share: ``followers``); this module does the I/O between them, matches on every
  variant and ends each match with ``assert_never``.
* One call, one ``Tally`` (``counters.py``): counted once in ``requests`` and once in one
  outcome, however it ends. The common ways out (a hit, a miss, a follower) write nothing to
  it: a call sent alone commits its status before it sends, a follower's failure sets its own.
* A caller that finds a flight in progress on its key joins it without reading storage; in its
  first round it waits in ``fetch``'s own frame (``SingleFlight.wait``): a burst's followers
  each pay for every frame twice, once asleep and once woken (issue 20). A call
  whose flight answered another Vary variant than its own makes a second round on its own
  variant's key: two rounds at most, written out in ``fetch`` (``followers.py`` never asks a
  second round for a third), never a call of ``fetch`` by itself.
* A caller that comes after a flight ended with a streamed response whose body still arrives,
  not handed to the writer (``streaming.py``), takes it as a follower of that flight would
  (``_share``, and its own directives: ``Call.wanted``), without a request; a refresh does not.
  One dict lookup on a miss's path, none on a hit's.
* A second round's flight starts its work one turn of the loop later (``_regrouped``): the
  followers woken by one outcome all join their variant's flight first, whatever order the loop
  wakes them in (a flight starts eagerly on Python 3.12+, ``flight.py``). A first round's flight
  starts at once.
* With a metrics recorder (the face's ``metrics=``), each real request is timed (``_Timed``)
  and each answer not stored counted by its reason; without one, nothing is wrapped.
* A key that takes no part (None), or is remembered as pass-through (``passes.py``), goes
  straight to the origin alone; so does a follower that stopped waiting (``wait_timeout``, as
  nginx's ``proxy_cache_lock_timeout``) or could not share: its request is never stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Literal

from ..metrics.base import Recorder
from ..spec.decisions import assert_never
from ..spec.decisions.followers import OwnVariant, SendAlone, Take, follow
from ..spec.decisions.reasons import CacheReason
from ..spec.decisions.reuse import (
    NOT_STALE,
    Hit,
    Miss,
    OnlyIfCachedMiss,
    Revalidate,
    ServeStale,
    StaleTerms,
    reuse,
)
from ..spec.snapshot import Headers, Snapshot
from ..spec.vary import values_of
from ..storage.base import Clock
from .counters import Counters, Tally
from .flight import Joined, WaitTimeout
from .keys import variant_key
from .lookup import Lookup
from .passes import Passes
from .records import (
    Answer,
    CacheStatus,
    Call,
    Fetched,
    Flight,
    FlightResult,
    Send,
    Setup,
    ViaPointer,
)

__all__ = ["Lead", "Pipeline"]

Waiter = asyncio.Future[FlightResult]  # a follower's own (flight.py)
Lead = Callable[[Flight], Awaitable[FlightResult]]
"""The work of a flight: ``Leader.lead``, or ``FleetLeader.lead`` with a storage that shares
flights."""


class Pipeline:
    """``fetch`` for one coalescer (module rules)."""

    __slots__ = (
        "_clock",
        "_counters",
        "_flight",
        "_flying",
        "_lead",
        "_lookup",
        "_passes",
        "_refreshes",
        "_refreshing",
        "_setup",
        "_streamed",
        "_streaming",
    )

    def __init__(
        self, setup: Setup, counters: Counters, lookup: Lookup, passes: Passes, lead: Lead
    ) -> None:
        self._setup = setup
        self._clock = setup.clock
        self._counters = counters
        self._lookup = lookup
        self._passes = passes
        self._lead = lead
        self._flight = lookup.flight
        self._flying = lookup.flight.keys  # fkey -> its flight, tested on every call's path
        self._refreshes = lookup.refreshes
        self._refreshing = lookup.refreshes.tasks  # fkey -> task, tested on every call's path
        self._streaming = lookup.streaming
        self._streamed = lookup.streaming.entries  # fkey -> entry, tested on a miss's path

    async def fetch(self, call: Call, send: Send) -> Answer:
        """The response for one call: from storage, from a flight in progress, or sent now.

        One tally, closed on every way out (module rules); a second round, once, for a call
        whose flight answered another Vary variant than its own (``followers.py``).
        """
        counters = self._counters
        counters.requests += 1  # the call begins (counters.py); its outcome is still to come
        tally = Tally()
        recorder = counters.recorder
        if recorder is not None:  # metrics: each real request timed (module rules)
            send = _Timed(send, recorder, self._clock)
        try:
            key = call.key
            passes = self._passes
            if key is None:
                answer = await self._alone(send, "bypass", tally, call.reason)
            elif passes.until and passes.passing(key):
                answer = await self._alone(send, "bypass", tally, "pass-through key")
            else:
                joined = self._joined(call, key) if key in self._flying else None
                if joined is None:
                    step = await self._round(call, send, (), tally)
                else:  # a follower: its own wait on the flight, in this frame (module rules)
                    flight, waiter = joined
                    del joined  # not kept while it waits: one object less per follower
                    try:
                        result = await waiter
                    except BaseException:
                        self._flight.leave(key, flight, waiter)
                        tally.status = "coalesced"  # counted as the caller would have been
                        raise
                    share: Answer | OwnVariant | CacheReason = flight.shared  # the same for
                    if share is None:  # every follower when it does not vary: found once
                        share = self._share(result, call, ())
                        if result.variant is None:
                            flight.shared = share
                    step = (  # a str: its own request, not stored, and why
                        await self._alone(send, "miss", tally, share)
                        if isinstance(share, str)
                        else share
                    )
                if isinstance(step, OwnVariant):
                    step = await self._round(call, send, step.names, tally)
                    # followers.follow answers OwnVariant in a first round only
                    assert not isinstance(step, OwnVariant)
                answer = step
        except BaseException:
            counters.fail(tally)
            raise
        if tally.counted:  # committed before it sent: close checks it is the same
            counters.close(tally, answer.status)
        else:  # counters.close(tally, answer.status), inlined
            counters._outcomes[answer.status] += 1
        if recorder is not None and answer.reason is not None:
            recorder.not_stored(answer.reason)
        return answer

    def _joined(self, call: Call, key: str) -> tuple[Joined[FlightResult], Waiter] | None:
        """A first round's own waiter on the flight in progress for its key, and that flight
        (``SingleFlight.wait``), where ``_round`` would join it at once: no background refresh
        (not a flight to join), no ``wait_timeout`` to bound the wait, not ``only-if-cached``
        (``reuse`` answers it a miss). None: the call makes its round (``_round``)."""
        if key in self._refreshing or self._setup.wait_timeout is not None:
            return None
        wanted = call.wanted
        if wanted is not None and wanted.only_if_cached:
            return None
        return self._flight.wait(key)

    async def _round(
        self, call: Call, send: Send, names: tuple[str, ...], tally: Tally
    ) -> Answer | OwnVariant:
        """One round of a call: what storage answers, else its share of its flight (``_share``)."""
        key = call.key
        assert key is not None  # fetch: a call without a key is sent alone
        # The flight's key: the request's, or its variant's once a pointer (or names) says so.
        fkey = variant_key(key, names, values_of(names, call.header)) if names else key
        flights = self._flight
        # A background refresh is no flight to join: its callers are served what is stored.
        joining = fkey not in self._refreshing and flights.joinable(fkey)
        stored = None  # what is stored: the flight's prior, to revalidate or serve if it fails
        if not joining:
            late = self._late(call, names, fkey) if fkey in self._streamed else None
            if late is not None:  # a late caller of a streamed body (module rules)
                return late
            lookup = self._lookup
            found = await (lookup.variant(fkey) if names else lookup.resolve(key, call.header))
            if isinstance(found, ViaPointer):  # through a Vary pointer: its variant's flight
                fkey, stored = found
            else:
                stored = found
            joining = flights.joinable(fkey)  # a slow storage read may have let a flight start
        now = 0.0 if stored is None else self._clock()  # read only then (reuse.py)
        stale = (  # the origin's stale terms: a parse of its fields, for a stale response only
            NOT_STALE
            if stored is None or call.refresh or stored.expires_at > now
            else self._stale_terms(stored)
        )
        decision = reuse(stored, now, call.wanted, call.refresh, stale)
        match decision:  # the most frequent answered from storage first: a hit
            case Hit():
                return Answer(stored, "hit")
            case Miss() | Revalidate():
                pass  # to the flight, below
            case ServeStale(by=by):
                if by == "stale-while-revalidate":  # one background refresh per key
                    self._refresh(Flight(call, send, key, fkey, names, stored, detached=True))
                return Answer(stored, "stale")
            case OnlyIfCachedMiss():  # nothing usable stored; the origin is not asked
                return Answer(None, "miss", "only-if-cached")
            case _:
                assert_never(decision)
        if not joining:  # the leader: its flight's work is its request (module rules)
            flight = Flight(call, send, key, fkey, names, stored)
            result = await flights.do(
                fkey, partial(self._regrouped if names else self._lead, flight)
            )
            # "coalesced": answered by another process's flight (fleet.py)
            status: CacheStatus = "coalesced" if result.remote else (result.served or "miss")
            return Answer(result.own, status, result.reason)
        try:  # a follower: its own wait on the flight in progress, and nothing built for it
            result = await flights.join(fkey, timeout=self._setup.wait_timeout)
        except WaitTimeout:  # our own request, never stored (nginx proxy_cache_lock_timeout)
            return await self._alone(send, "miss", tally, "wait timeout")
        except BaseException:
            tally.status = "coalesced"  # counted as the caller would have been (counters.py)
            raise
        share = self._share(result, call, names)  # a str: its own request, not stored, and why
        return await self._alone(send, "miss", tally, share) if isinstance(share, str) else share

    async def _regrouped(self, flight: Flight) -> FlightResult:
        """The work of a second round's flight: the lead, after one turn of the loop (issue 26).

        The followers of a flight whose response was another variant than theirs are woken in
        one step of the loop, and regroup on their own variant's flight in that order. A flight
        starts eagerly on Python 3.12+ (``flight.py``): a lead that did not suspend would end
        before the next follower of its variant even ran, and each would send its own request.
        """
        await asyncio.sleep(0)
        return await self._lead(flight)

    def _stale_terms(self, stored: Snapshot) -> StaleTerms:
        """What the origin allows of a stale stored response, as the policy reads it."""
        setup = self._setup
        policy, shared = setup.policy, setup.shared_cache
        return StaleTerms(
            policy.stale_windows(stored.headers, shared_cache=shared),
            policy.may_serve_stale(stored.headers, shared_cache=shared),
        )

    def _share(
        self, result: FlightResult, call: Call, names: tuple[str, ...]
    ) -> Answer | OwnVariant | CacheReason:
        """A follower's share of its flight's result (``followers.py``); ``names``: those of the
        call's second round, () in its first. A reason when it sends its own request instead:
        the leader's (the response was not for the followers), or "other variant"."""
        variant = result.variant
        mine = None if variant is None else values_of(variant.names, call.header)
        second_round = bool(names)
        decision = follow(result.shared is not None, result.served, variant, mine, second_round)
        match decision:
            case Take(status=taken):
                return Answer(result.shared, taken, result.reason)
            case OwnVariant():
                return decision
            case SendAlone(reason=why):
                return result.reason or "streamed" if why == "not shared" else why
            case _:
                assert_never(decision)

    def _late(self, call: Call, names: tuple[str, ...], fkey: str) -> Answer | OwnVariant | None:
        """A late caller's share of an ended flight whose streamed body still arrives
        (``streaming.py``), as a follower's, if its own directives accept it; None: it goes on
        as any call (to storage, then a flight of its own)."""
        result = None if call.refresh else self._streaming.take(fkey)
        if result is None:
            return None
        wanted = call.wanted
        assert result.shared is not None  # Streaming keeps shared responses only
        if wanted is not None and not wanted.accepts(result.shared, self._clock()):
            return None
        share = self._share(result, call, names)
        return None if isinstance(share, str) else share

    def _refresh(self, flight: Flight) -> None:
        """Refresh the flight's key in the background (``refreshes.py``)."""
        self._refreshes.start(flight.fkey, partial(self._lead, flight))

    async def _alone(
        self,
        send: Send,
        status: Literal["miss", "bypass"],
        tally: Tally,
        reason: CacheReason | None,
    ) -> Answer:
        """One request for this caller only, outside any flight; never stored (``reason``).

        A bypass, or a follower's own request (it stopped waiting, or the flight's outcome was not
        for it), which is a miss.
        """
        self._counters.commit(tally, status)  # before it sends: the call is placed
        self._counters.upstream += 1
        fetched = await send()
        return Answer(fetched.snapshot, status, reason)


class _Timed:
    """A call's ``send``, each real request counted and timed on a metrics recorder."""

    __slots__ = ("_clock", "_recorder", "_send")

    def __init__(self, send: Send, recorder: Recorder, clock: Clock) -> None:
        self._send = send
        self._recorder = recorder
        self._clock = clock

    async def __call__(self, conditional: Headers = (), detached: bool = False) -> Fetched:
        started = self._clock()
        try:
            send = self._send
            return await (send(conditional, detached) if conditional or detached else send())
        finally:
            self._recorder.upstream(self._clock() - started)
